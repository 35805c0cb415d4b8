//! Small checks the plan makes of names, hosts, command-line text and the files and
//! folders a description names; each reports into the list of problems.

use std::path::{Path, PathBuf};

pub(super) fn is_name(s: &str) -> bool {
    let mut c = s.chars();
    c.next().is_some_and(|f| f.is_ascii_alphanumeric())
        && c.all(|x| x.is_ascii_alphanumeric() || x == '-' || x == '_')
        && s.len() <= 32
}

pub(super) fn is_host(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
}

pub(super) fn one_line(what: &str, s: &str, p: &mut Vec<String>) {
    if s.chars().any(|c| c.is_control()) {
        p.push(format!(
            "{what}: must be one line without control characters"
        ));
    }
}

/// The length a command line will have once iPXE expands the variables we put in.
pub(super) fn expanded_len(s: &str) -> usize {
    s.replace("${netX/mac:hexhyp}", "00-00-00-00-00-00")
        .replace("${next-server}", "255.255.255.255")
        .len()
}

pub(super) fn check_file(what: &str, path: &Path, p: &mut Vec<String>) -> Option<Vec<u8>> {
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            p.push(format!("{what} {}: no such file", path.display()));
            None
        }
        Err(e) => {
            p.push(format!("{what} {}: {e}", path.display()));
            None
        }
        Ok(m) if !m.is_file() => {
            p.push(format!("{what} {}: not a regular file", path.display()));
            None
        }
        Ok(_) => match std::fs::read(path) {
            Ok(d) => Some(d),
            Err(e) => {
                p.push(format!("{what} {}: cannot read it: {e}", path.display()));
                None
            }
        },
    }
}

pub(super) fn check_dir(what: &str, path: &Path, p: &mut Vec<String>) -> Option<PathBuf> {
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            p.push(format!("{what} {}: no such folder", path.display()));
            None
        }
        Err(e) => {
            p.push(format!("{what} {}: {e}", path.display()));
            None
        }
        Ok(m) if !m.is_dir() => {
            p.push(format!("{what} {}: not a folder", path.display()));
            None
        }
        Ok(_) => match (std::fs::read_dir(path), path.canonicalize()) {
            (Ok(_), Ok(c)) => Some(c),
            (Err(e), _) | (_, Err(e)) => {
                p.push(format!("{what} {}: cannot be read: {e}", path.display()));
                None
            }
        },
    }
}
