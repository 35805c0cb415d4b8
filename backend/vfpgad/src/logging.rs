//! Logging set-up shared by `vfpgad` and `vfpga-agent`: `RUST_LOG` picks what is logged
//! (default: `info`), colour only on a terminal (a journal or a file gets plain text),
//! and chatty libraries stay quiet at `debug` unless named.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Libraries whose `debug` lines (every TLS handshake step, the first event of each new
/// xenstore watch) would drown ours, with the level they keep unless `RUST_LOG` names
/// them.
const QUIET: [(&str, &str); 2] = [
    ("rustls", "rustls=info"),
    ("xenstore_rs", "xenstore_rs=error"),
];

/// Logs to stderr as `RUST_LOG` says (an invalid value falls back to `info`).
pub fn init() {
    let spec = std::env::var("RUST_LOG").unwrap_or_default();
    let mut filter = EnvFilter::try_new(&spec)
        .ok()
        .filter(|_| !spec.trim().is_empty())
        .unwrap_or_else(|| EnvFilter::new("info"));
    for (name, directive) in QUIET {
        if !spec.contains(name) {
            if let Ok(d) = directive.parse() {
                filter = filter.add_directive(d);
            }
        }
    }
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}
