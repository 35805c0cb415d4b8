//! What `--check` adds to parsing: the files a configuration names (certificates and
//! keys, the bitstream library and its manifests, the pl engine's root) exist and
//! load, checked before anything starts; and a summary of what the daemon will set up,
//! in words rather than as a dump of its structures.

use std::io::{self, Write};
use std::path::Path;

use vfpga_engine::Library;
use vfpga_transport::TlsFiles;

use crate::config::{Config, EngineKind};
use crate::shelf::Shelf;

/// What is wrong with the files a configuration names, each a sentence saying what to
/// fix.
#[derive(Debug, Default)]
pub struct Found {
    /// What stops vfpgad from starting (or from working at all).
    pub errors: Vec<String>,
    /// What fails only when used, and may be fixed meanwhile (a manifest not there yet).
    pub warnings: Vec<String>,
}

/// Checks the files `c` names.
pub fn files(c: &Config) -> Found {
    let mut found = Found::default();
    let problems = &mut found.errors;
    if let Some(t) = &c.tls {
        let f = TlsFiles {
            ca: t.ca.clone(),
            cert: t.cert.clone(),
            key: t.key.clone(),
        };
        if let Err(e) = vfpga_transport::server_config(&f) {
            problems.push(format!(
                "[tls] (or --tls-dir): {e} (make them with `vfpga-agent cert init DIR`)"
            ));
        }
    }
    if c.daemon.engine == EngineKind::Remote {
        if let Some(r) = &c.remote {
            let f = TlsFiles {
                ca: r.ca.clone(),
                cert: r.cert.clone(),
                key: r.key.clone(),
            };
            if let Err(e) = vfpga_transport::client_config(&f) {
                problems.push(format!(
                    "[remote]: {e} (the host's client certificate from `vfpga-agent cert init` or `cert client`)"
                ));
            }
        }
    }
    // With the remote engine the manifests live on the boards; vfpgad's library is its
    // allowlist, and holds manifests only of what it time-shares.
    let local = c.daemon.engine != EngineKind::Remote
        || c.library.as_ref().is_some_and(|l| !l.share.is_empty());
    if let Some(l) = c.library.as_ref().filter(|_| local) {
        if !l.dir.is_dir() {
            problems.push(format!(
                "[library] dir {}: not a folder (create it and put NAME.toml manifests in it)",
                l.dir.display()
            ));
        } else {
            let lib = Library {
                dir: l.dir.clone(),
                allow: l.allow.clone(),
            };
            for name in l
                .allow
                .iter()
                .filter(|n| *n != "*" && c.daemon.engine != EngineKind::Remote)
            {
                if let Err(e) = lib.open(name) {
                    found.warnings.push(format!(
                        "[library] allow {name:?}: {e} (loads of it fail until it is there)"
                    ));
                }
            }
            if let Err(e) = Shelf::open(&lib, &l.share) {
                problems.push(e);
            }
        }
    }
    if c.daemon.engine == EngineKind::Pl {
        if let Some(p) = &c.pl {
            if !p.root.is_dir() {
                problems.push(format!("[pl] root {}: not a folder", p.root.display()));
            }
        }
    }
    found
}

fn or_none(v: &[String]) -> String {
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

fn limit(v: u64, unit: &str) -> String {
    if v == 0 {
        "no limit".into()
    } else {
        format!("{v} {unit}/s")
    }
}

/// Writes what `c` (read from `file`, if any) sets up.
pub fn summary(out: &mut impl Write, c: &Config, file: Option<&Path>) -> io::Result<()> {
    match file {
        Some(f) => writeln!(out, "{}: OK", f.display())?,
        None => writeln!(out, "flags: OK")?,
    }
    let d = &c.daemon;
    writeln!(
        out,
        "engine:   {} (runs at most {} kernels at once; runs estimated under {} element operations stay on the queue's thread)",
        d.engine,
        c.engine_threads(),
        d.inline_cost
    )?;
    if let Some(l) = &c.library {
        writeln!(
            out,
            "library:  {} (loadable: {}; time-shared: {}, slices of at least {} ms)",
            l.dir.display(),
            or_none(&l.allow),
            or_none(&l.share),
            l.min_slice_ms
        )?;
    }
    if let Some(p) = &c.pl {
        writeln!(
            out,
            "pl:       root {}, fpga_manager {}, loads {} at start",
            p.root.display(),
            p.fpga,
            p.bitstream.as_deref().unwrap_or("nothing")
        )?;
    }
    if let Some(r) = &c.remote {
        for b in &r.boards {
            writeln!(out, "board:    {} at {}", b.name, b.address)?;
        }
    }
    let dev = &c.device;
    writeln!(
        out,
        "device:   {} request queues of {} descriptors, requests up to {} bytes in {} segments",
        dev.request_queues, dev.queue_size, dev.max_request_bytes, dev.max_segments
    )?;
    if c.xen.enable {
        let reachable = Path::new("/dev/xen/xenbus").exists()
            || Path::new(
                &std::env::var("XENSTORED_PATH").unwrap_or_else(|_| "/run/xenstored/socket".into()),
            )
            .exists();
        writeln!(
            out,
            "xen:      dom0 service, registered at {}{}",
            c.xen.path,
            if reachable {
                ""
            } else {
                " (no xenstore on this host: it must be reachable when vfpgad starts)"
            }
        )?;
    }
    for g in &c.guests {
        let p = g.policy(&c.device);
        let mut ways = Vec::new();
        if let Some(s) = &g.socket {
            ways.push(format!("vhost-user {}", s.display()));
        }
        ways.extend(g.listen.iter().cloned());
        writeln!(out, "guest {}: {}", g.name, ways.join(", "))?;
        writeln!(
            out,
            "  kernels {}; may load {}; {} runs and {} bytes in flight; {}, {}; weight {}; {} sessions",
            or_none(&p.kernels),
            or_none(&p.bitstreams),
            p.max_inflight,
            p.max_inflight_bytes,
            limit(p.rate_runs, "runs"),
            limit(p.rate_bytes, "bytes"),
            p.weight,
            g.limits(&c.device).max_sessions
        )?;
        if c.xen.enable {
            writeln!(out, "  Xen domain {}", g.domain())?;
        }
    }
    Ok(())
}
