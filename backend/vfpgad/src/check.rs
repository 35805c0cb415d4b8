//! What `--check` adds to parsing: the files a configuration names (certificates and
//! keys, the bitstream library and its manifests, the pl engine's root) exist and
//! load, checked before anything starts; and what the daemon will set up, as a TOML
//! file one can reuse: a summary in words (TOML comments), then the whole
//! configuration, flags applied and defaults spelt out, which given back as
//! `--config` is the same configuration.

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

/// Writes what `c` (read from `file`, if any) sets up: [`words`] as TOML comments,
/// then [`to_toml`]'s file. The whole output is valid TOML for `--config`.
pub fn summary(out: &mut impl Write, c: &Config, file: Option<&Path>) -> io::Result<()> {
    let toml = to_toml(c).map_err(io::Error::other)?;
    let mut said = Vec::new();
    words(&mut said, c, file)?;
    for line in String::from_utf8_lossy(&said).lines() {
        writeln!(out, "# {line}")?;
    }
    writeln!(
        out,
        "#\n# The configuration in full, defaults included (give it back as --config FILE):\n"
    )?;
    out.write_all(toml.as_bytes())
}

/// Why a configuration cannot be written as TOML.
#[derive(Debug, thiserror::Error)]
#[error("cannot write the configuration as TOML: {0} (a path that is not UTF-8?)")]
pub struct ToToml(#[from] toml::ser::Error);

/// `c` as a configuration file: every key, defaults included, so that it reads back as
/// `c` whatever later versions change in the defaults (`Config::load` of it equals
/// `c`).
pub fn to_toml(c: &Config) -> Result<String, ToToml> {
    Ok(toml::to_string(c)?)
}

/// Writes what `c` (read from `file`, if any) sets up, in words.
pub fn words(out: &mut impl Write, c: &Config, file: Option<&Path>) -> io::Result<()> {
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// Every section and every kind of value a file can hold, none at its default.
    const FULL: &str = r#"
[daemon]
engine = "remote"
engine_threads = 3
inline_cost = 4096
socket_mode = "0660"
socket_group = "0"

[device]
request_queues = 4
queue_size = 256
max_segments = 512
max_request_bytes = 1048576
max_sessions = 9
kernels = ["vadd_u32", "base/mmult"]
bitstreams = ["*"]
max_inflight = 7
max_inflight_bytes = 123456
rate_runs = 100
rate_bytes = 9999999
weight = 5

[library]
dir = "/var/lib/vfpga/bitstreams"
allow = ["base", "video"]
share = ["base"]
min_slice_ms = 40

[pl]
root = "/tmp/board"
bitstream = "base"
fpga = "fpga1"

[remote]
ca = "/etc/vfpga/pki/ca.pem"
cert = "/etc/vfpga/pki/client.pem"
key = "/etc/vfpga/pki/client.key"
timeout_ms = 2500
connections = 3
health_interval_ms = 700
[[remote.board]]
name = "pynq1"
address = "192.168.42.20:7447"
[[remote.board]]
name = "pynq2"
address = "[fd00::2]:7447"
server_name = "board two"

[xen]
enable = true
path = "/local/domain/0/other"

[tls]
ca = "/etc/vfpga/pki/ca.pem"
cert = "/etc/vfpga/pki/server.pem"
key = "/etc/vfpga/pki/server.key"

[stream]
max_connections = 2
idle_timeout_ms = 0

[[guest]]
name = "vm0"
socket = "/run/vfpga/vm \"zero\".sock"
domain = "domu0"

[[guest]]
name = "vm1"
listen = ["unix:/run/vfpga/vm1.vsock_7000", "tls:0.0.0.0:7000"]
tls_name = "vm1.example"
max_sessions = 2
kernels = []
bitstreams = ["base"]
max_inflight = 1
max_inflight_bytes = 4096
rate_runs = 0
rate_bytes = 1
weight = 1000
"#;

    /// What `Config::load` (the parser vfpgad reads `--config` with) makes of `text`.
    fn load(text: &str) -> Config {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("vfpgad.toml");
        std::fs::write(&f, text).unwrap();
        Config::load(&f).unwrap_or_else(|e| panic!("{e}:\n{text}"))
    }

    #[test]
    fn every_key_reads_back_the_same() {
        let c = load(FULL);
        assert_ne!(c, Config::default());
        let text = to_toml(&c).unwrap();
        assert_eq!(load(&text), c, "{text}");
        // Nothing is left out, so what was not given reads back as the default.
        assert!(text.contains("server_name = \"board two\""), "{text}");
    }

    #[test]
    fn defaults_are_spelt_out_and_read_back_the_same() {
        let c = load("[[guest]]\nname = \"vm0\"\nsocket = \"/run/vfpga/vm0.sock\"\n");
        let text = to_toml(&c).unwrap();
        assert_eq!(load(&text), c, "{text}");
        for key in [
            "engine = \"sim\"",
            "queue_size = 1024",
            "max_inflight = 64",
            "[stream]",
        ] {
            assert!(text.contains(key), "{key:?} missing:\n{text}");
        }
    }

    #[test]
    fn the_whole_summary_is_the_same_configuration() {
        for text in [FULL, ""] {
            let c = load(text);
            let mut out = Vec::new();
            summary(&mut out, &c, Some(Path::new("vfpgad.toml"))).unwrap();
            let out = String::from_utf8(out).unwrap();
            assert!(out.starts_with("# vfpgad.toml: OK\n# engine:"), "{out}");
            assert_eq!(load(&out), c, "{out}");
        }
    }

    #[test]
    fn a_path_toml_cannot_hold_is_a_clear_error() {
        use std::os::unix::ffi::OsStrExt;
        let c = Config {
            library: Some(crate::config::LibraryConfig::new(
                std::ffi::OsStr::from_bytes(b"/srv/\xff").into(),
                Vec::new(),
            )),
            ..Config::default()
        };
        let e = to_toml(&c).unwrap_err().to_string();
        assert!(e.contains("not UTF-8"), "{e}");
        assert!(summary(&mut Vec::new(), &c, None).is_err());
    }
}
