//! `vfpga-docgen OUT`: writes the man pages and shell completions of every vfpga
//! command into OUT, from the clap definitions the commands themselves parse:
//!
//! - `OUT/COMMAND/man/COMMAND.1` and one page per subcommand (`COMMAND-SUB.1`, ...);
//! - `OUT/COMMAND/bash/COMMAND`, `OUT/COMMAND/zsh/_COMMAND`,
//!   `OUT/COMMAND/fish/COMMAND.fish`.
//!
//! One folder per command, so that each package's assets (`[package.metadata.deb]`
//! in the command's Cargo.toml; packaging/build-debs.sh runs this first) take its own
//! files with a glob.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Command, CommandFactory};
use clap_complete::Shell;
use roff::{roman, Roff};

/// Every user-facing command, as its binary parses it.
fn commands() -> Vec<Command> {
    vec![
        vfpgad::cli::Cli::command(),
        vfpga_agent::cli::Cli::command(),
        vfpga::cli::Cli::command(),
        vfpga_xen::cli::Cli::command(),
        vfpga_pxe::cli::Cli::command(),
    ]
}

/// Why a file could not be written.
#[derive(Debug, thiserror::Error)]
#[error("{}: {error}", what.display())]
struct Failed {
    what: PathBuf,
    error: std::io::Error,
}

fn dir(path: PathBuf) -> Result<PathBuf, Failed> {
    std::fs::create_dir_all(&path).map_err(|error| Failed {
        what: path.clone(),
        error,
    })?;
    Ok(path)
}

/// The text after the options (`after_help`) as a section of its own, line for line:
/// examples are commands to copy, which filled text would break and justify.
fn notes(cmd: &Command) -> Option<Roff> {
    let text = cmd
        .get_after_long_help()
        .or_else(|| cmd.get_after_help())?
        .to_string();
    let (heading, body) = match text.strip_prefix("Examples:\n") {
        Some(rest) => ("EXAMPLES", rest),
        None => ("NOTES", text.as_str()),
    };
    let mut roff = Roff::new();
    roff.control("SH", [heading]).control("nf", []);
    for line in body.lines() {
        roff.text([roman(line)]);
    }
    roff.control("fi", []);
    Some(roff)
}

/// Writes the page of `cmd` (clap_mangen's sections, with [`notes`] in place of its
/// filled EXTRA section) and those of its visible subcommands, into `dir`.
fn pages(cmd: &Command, dir: &Path) -> Result<(), Failed> {
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        pages(sub, dir)?;
    }
    let man = clap_mangen::Man::new(cmd.clone());
    let path = dir.join(man.get_filename());
    let mut page: Vec<u8> = Vec::new();
    let failed = |error| Failed {
        what: path.clone(),
        error,
    };
    man.render_title(&mut page).map_err(failed)?;
    man.render_name_section(&mut page).map_err(failed)?;
    man.render_synopsis_section(&mut page).map_err(failed)?;
    man.render_description_section(&mut page).map_err(failed)?;
    man.render_options_section(&mut page).map_err(failed)?;
    if cmd.get_subcommands().any(|s| !s.is_hide_set()) {
        man.render_subcommands_section(&mut page).map_err(failed)?;
    }
    if let Some(roff) = notes(cmd) {
        roff.to_writer(&mut page).map_err(failed)?;
    }
    if cmd.get_version().is_some() || cmd.get_long_version().is_some() {
        man.render_version_section(&mut page).map_err(failed)?;
    }
    std::fs::write(&path, page).map_err(failed)
}

/// Writes the pages and completions of `cmd` into `out/NAME`.
fn write(cmd: Command, out: &Path) -> Result<(), Failed> {
    let name = cmd.get_name().to_owned();
    let out = out.join(&name);
    // Built once from the top, as clap_mangen::generate_to does: subcommands then carry
    // their display names (vfpga-agent-cert-init) and the help subcommand is left out.
    let mut built = cmd.clone().disable_help_subcommand(true);
    built.build();
    pages(&built, &dir(out.join("man"))?)?;
    let hidden = hidden_options(&built);
    let mut cmd = cmd;
    // bash-completion looks a command up by its own name; zsh by _NAME in its fpath;
    // fish by NAME.fish.
    for (shell, file) in [
        (Shell::Bash, name.clone()),
        (Shell::Zsh, format!("_{name}")),
        (Shell::Fish, format!("{name}.fish")),
    ] {
        let path = dir(out.join(shell.to_string()))?.join(file);
        let mut script = Vec::new();
        clap_complete::generate(shell, &mut cmd, &name, &mut script);
        let script = without_hidden(shell, &String::from_utf8_lossy(&script), &hidden);
        std::fs::write(&path, script).map_err(|error| Failed { what: path, error })?;
    }
    Ok(())
}

/// The long names of the options hidden from `--help` (internal ones, such as those
/// vfpgad's supervisor passes its worker) anywhere in `cmd`, unless some command shows
/// an option of the same name.
fn hidden_options(cmd: &Command) -> Vec<String> {
    fn walk(cmd: &Command, hidden: &mut Vec<String>, shown: &mut Vec<String>) {
        for a in cmd.get_arguments() {
            if let Some(long) = a.get_long() {
                let list = if a.is_hide_set() {
                    &mut *hidden
                } else {
                    &mut *shown
                };
                list.push(long.to_owned());
            }
        }
        for sub in cmd.get_subcommands() {
            walk(sub, hidden, shown);
        }
    }
    let (mut hidden, mut shown) = (Vec::new(), Vec::new());
    walk(cmd, &mut hidden, &mut shown);
    hidden.retain(|h| !shown.contains(h));
    hidden
}

/// The completion script without the options in `hidden`: clap_complete 4.6 leaves out
/// hidden options from none of its scripts. Each shell's script has one line per option
/// (zsh, fish) or one line listing them (bash's `opts=`).
fn without_hidden(shell: Shell, script: &str, hidden: &[String]) -> String {
    let mut out = String::with_capacity(script.len());
    for line in script.lines() {
        let spec = line.trim_start();
        let drop = hidden.iter().any(|h| match shell {
            Shell::Zsh => ["'--", "'*--"].iter().any(|p| {
                spec.strip_prefix(p)
                    .and_then(|rest| rest.strip_prefix(h.as_str()))
                    .is_some_and(|rest| rest.starts_with(['=', '[', '\'']))
            }),
            Shell::Fish => line
                .split_whitespace()
                .collect::<Vec<_>>()
                .windows(2)
                .any(|w| w[0] == "-l" && w[1] == h),
            _ => false,
        });
        if drop {
            continue;
        }
        if shell == Shell::Bash && spec.starts_with("opts=\"") {
            let kept: Vec<&str> = line
                .split(' ')
                .filter(|word| {
                    !hidden
                        .iter()
                        .any(|h| word.strip_prefix("--") == Some(h.as_str()))
                })
                .collect();
            out.push_str(&kept.join(" "));
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    out
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [out] = args.as_slice() else {
        eprintln!(
            "usage: vfpga-docgen OUT\n\
             Writes OUT/COMMAND/man/*.1 and OUT/COMMAND/{{bash,zsh,fish}}/ for vfpgad, vfpga-agent,\n\
             vfpga, vfpga-xen and vfpga-pxe."
        );
        return ExitCode::from(2);
    };
    for cmd in commands() {
        let name = cmd.get_name().to_owned();
        if let Err(e) = write(cmd, Path::new(out)) {
            eprintln!("vfpga-docgen: {name}: {e}");
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn every_command_is_consistent_and_named_as_its_binary() {
        let names: Vec<String> = commands()
            .into_iter()
            .map(|c| {
                // clap's own checks of a definition (conflicting flags, bad defaults...).
                c.clone().debug_assert();
                c.get_name().to_owned()
            })
            .collect();
        assert_eq!(
            names,
            ["vfpgad", "vfpga-agent", "vfpga", "vfpga-xen", "vfpga-pxe"]
        );
    }

    #[test]
    fn examples_keep_their_lines_and_roff_characters_are_escaped() {
        let cmd = Command::new("demo")
            .version("1.0")
            .after_help("Examples:\n  demo --x \\\n      --y\n.not a request\n'not either")
            .arg(clap::Arg::new("shown").long("shown"))
            .arg(clap::Arg::new("internal").long("internal").hide(true));
        let dir = tempfile::tempdir().unwrap();
        write(cmd, dir.path()).unwrap();
        let page = std::fs::read_to_string(dir.path().join("demo/man/demo.1")).unwrap();
        let notes = &page[page.find(".SH EXAMPLES").unwrap()..];
        assert!(notes.starts_with(".SH EXAMPLES\n.nf\n"), "{notes}");
        // Each line stays a line; a backslash, and a line starting with . or ', are
        // text, not requests.
        assert!(
            notes.contains("\n  demo \\-\\-x \\\\\n      \\-\\-y\n"),
            "{notes}"
        );
        assert!(notes.contains("\n\\&.not a request\n"), "{notes}");
        assert!(notes.contains("\n\\*(Aqnot either\n.fi\n"), "{notes}");
        for f in ["demo/bash/demo", "demo/zsh/_demo", "demo/fish/demo.fish"] {
            assert!(dir.path().join(f).is_file(), "{f} missing");
        }
    }
}
