//! Errors of `vfpga-pxe`: every one names the file, entry or field it is about.

use std::path::PathBuf;

/// Why a description could not become a boot tree.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The description is not valid TOML or has unknown or mistyped fields.
    #[error("{path}: {message}")]
    Parse {
        /// The description file.
        path: PathBuf,
        /// The TOML parser's message (with line and column).
        message: String,
    },
    /// The description parses but cannot produce a working boot tree. All problems
    /// found are listed, not only the first.
    #[error("{}", list(.0))]
    Invalid(Vec<String>),
    /// A file of the boot tree could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file or folder.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// An external program (gzip, xz, zstd) failed or is missing.
    #[error("{program} {what}: {message}")]
    Tool {
        /// The program.
        program: String,
        /// What it was asked to do, e.g. `-dc /boot/xen.gz`.
        what: String,
        /// What went wrong.
        message: String,
    },
}

fn list(problems: &[String]) -> String {
    match problems {
        [one] => one.clone(),
        many => {
            let mut s = format!("the description has {} problems:", many.len());
            for p in many {
                s.push_str("\n  - ");
                s.push_str(p);
            }
            s
        }
    }
}

impl Error {
    /// One description problem.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::Invalid(vec![message.into()])
    }
}
