//! `vfpgad`'s command line: the flags, their help, and how they merge with the
//! configuration file (a flag replaces the file's value; `--socket`/`--listen` replace
//! its guest list).

use std::path::PathBuf;

use clap::Parser;

use crate::config::{Config, ConfigError, GuestConfig, LibraryConfig, TlsSection};

/// Why the command line and the file do not make a configuration.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The file, or the configuration the flags made of it.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Two `--socket`s for one guest.
    #[error("--socket {given}: guest {name} has a socket already")]
    SecondSocket {
        /// The flag's value.
        given: String,
        /// The guest.
        name: String,
    },
    /// A `--listen` without `NAME=`.
    #[error("--listen {0}: give NAME=URI, e.g. vm0=unix:/run/vfpga/vm0.vsock_7000")]
    ListenSyntax(String),
    /// A flag's value is wrong.
    #[error("{flag} {value}: {reason}")]
    Flag {
        /// The flag.
        flag: &'static str,
        /// Its value.
        value: String,
        /// Why.
        reason: String,
    },
    /// `--allow` names bitstreams of no library.
    #[error("--allow needs a library: give --library DIR or [library] dir")]
    AllowWithoutLibrary,
}

impl CliError {
    fn flag(flag: &'static str, value: &str, reason: impl std::fmt::Display) -> Self {
        CliError::Flag {
            flag,
            value: value.to_owned(),
            reason: reason.to_string(),
        }
    }
}

const AFTER_HELP: &str = "\
Examples:
  Serve one guest on the software engine (the socket's folder is created if missing):
    vfpgad --socket vm0=/run/vfpga/vm0.sock
  Serve two guests with four request queues each:
    vfpgad --socket vm0=/run/vfpga/vm0.sock --socket vm1=/run/vfpga/vm1.sock --request-queues 4
  Serve a guest without the kernel module over vsock (vhost-device-vsock started with
  --vm guest-cid=3,socket=/run/vfpga/vm1-vsock.sock,uds-path=/run/vfpga/vm1.vsock):
    vfpgad --listen vm1=unix:/run/vfpga/vm1.vsock_7000
  (in the guest: vfpga --device vsock://2:7000 list)
  Serve guests over mutual TLS (certificates from `vfpga-agent cert`):
    vfpgad --listen vm2=tls:0.0.0.0:7000 --tls-dir /etc/vfpga/pki
  Run as the dom0 service of a Xen host (guest names are the domain names), with
  domu2 reaching dom0 over Xen vchan (in the guest: vfpga --device vchan:// list):
    vfpgad --socket domu1=/run/vfpga/domu1.sock --listen domu2=vchan --xen
  Serve guests that must not notice a crash, an upgrade or a reload (SIGHUP reads the
  configuration again and restarts the daemon from the binary on disk; requests in
  flight are run again):
    vfpgad --supervise --config /etc/vfpga/vfpgad.toml
  Serve metrics to Prometheus on a localhost port, and read them as a person:
    vfpgad --config /etc/vfpga/vfpgad.toml --metrics 127.0.0.1:9464
    vfpgad status --metrics 127.0.0.1:9464
  Check a configuration file and print the QEMU options for its guests:
    vfpgad --config /etc/vfpga/vfpgad.toml --check --print-qemu-args
  Print what guest vm0's libvirt domain needs (merge it with virsh edit):
    vfpgad --config /etc/vfpga/vfpgad.toml --print-libvirt-xml vm0

Each guest's QEMU (10.2 or later) attaches to its socket (start vfpgad first) with
these options, shown for a 4G guest (size= must equal -m) with the default 2 request
queues (num_vqs = 1 control queue + request queues); --print-qemu-args prints them
for a configuration:

  -object memory-backend-memfd,id=mem,size=4G,share=on -numa node,memdev=mem
  -chardev socket,id=vfpga0,path=/run/vfpga/vm0.sock
  -device vhost-user-test-device-pci,chardev=vfpga0,virtio-id=21,num_vqs=3,vq_size=1024,config_size=40

docs/qemu.md explains each option, libvirt, and restarts: QEMU 11.1 cannot reconnect
this device type by itself, so run vfpgad under --supervise (as the systemd unit does)
and a crash or an upgrade does not reach the guests.

With --xen (or [xen] enable = true) vfpgad publishes itself and its guests in xenstore
under --xen-path and closes a guest's sessions when its domain is destroyed; see
docs/xen.md. Under systemd (Type=notify) it reports READY=1 once every socket listens.

Logging: RUST_LOG=debug (or info, warn, vfpgad=trace, ...). SIGTERM or SIGINT stops
the daemon cleanly: connections are closed, running kernels finish, sockets go.";

/// Exposes an FPGA accelerator to virtual machines as a virtio device over vhost-user.
// The field comments are `--help` text, where `[[guest]]` names the file's table, not
// an intra-doc link.
#[allow(rustdoc::broken_intra_doc_links)]
#[derive(Debug, Parser)]
#[command(version, about, after_help = AFTER_HELP)]
pub struct Cli {
    /// TOML configuration file; the flags below override it.
    #[arg(short, long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// vhost-user socket for a guest, as PATH or NAME=PATH; repeat for more guests.
    /// With --listen, replaces the file's [[guest]] list.
    #[arg(short, long = "socket", value_name = "[NAME=]PATH")]
    pub sockets: Vec<String>,

    /// A stream listener for guest NAME, for guests without the virtio_vfpga module:
    /// unix:PATH (a userspace vsock device's socket, e.g. vhost-device-vsock's
    /// uds-path plus _PORT), vsock:CID:PORT (the kernel's vhost-vsock), tls:ADDR:PORT
    /// (mutual TLS, needs --tls-dir) or vchan (Xen, needs --xen). Repeatable; a guest
    /// named only here needs no vhost-user socket. With --socket, replaces the file's
    /// [[guest]] list.
    #[arg(short, long = "listen", value_name = "NAME=URI")]
    pub listens: Vec<String>,

    /// Folder with ca.pem, server.pem and server.key (as `vfpga-agent cert init`
    /// makes them) for tls: listeners; replaces the file's [tls].
    #[arg(long, value_name = "DIR")]
    pub tls_dir: Option<PathBuf>,

    /// Request queues per device, besides the control queue (1 to 63) [default: 2].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=63))]
    pub request_queues: Option<u16>,

    /// Descriptors per virtqueue, a power of two up to 32768 [default: 1024].
    #[arg(long, value_name = "N", value_parser = power_of_two)]
    pub queue_size: Option<u16>,

    /// Sessions a guest may hold open at once [default: 64].
    #[arg(long, value_name = "N")]
    pub max_sessions: Option<u32>,

    /// Kernels running at once, shared fairly between guests (0: one per CPU; at most
    /// 256).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(0..=256))]
    pub engine_threads: Option<u16>,

    /// Folder of bitstream manifests guests may load by name; replaces [library] dir.
    /// Guests load only names --allow (or the file's allow list) gives.
    #[arg(long, value_name = "DIR")]
    pub library: Option<PathBuf>,

    /// A bitstream name guests may load from the library ("*": all); repeatable.
    /// Replaces the file's allow list, and lets every guest load it unless the file's
    /// [device] or [[guest]] bitstreams say otherwise.
    #[arg(long = "allow", value_name = "NAME")]
    pub allow: Vec<String>,

    /// Permissions of the sockets, in octal (e.g. 0660).
    #[arg(long, value_name = "MODE")]
    pub socket_mode: Option<String>,

    /// Group owning the sockets (name or number): the group QEMU runs in.
    #[arg(long, value_name = "GROUP")]
    pub socket_group: Option<String>,

    /// Dom0 service mode: register in xenstore and drop the sessions of guests whose
    /// Xen domain goes away (a guest's domain is its name unless the file says).
    #[arg(long)]
    pub xen: bool,

    /// xenstore path of the registration (with --xen) [default: /local/domain/0/vfpga].
    #[arg(long, value_name = "PATH")]
    pub xen_path: Option<String>,

    /// Check the configuration (and the files it names: certificates, library,
    /// manifests), print what it sets up, and exit: 0 if it can start.
    #[arg(long)]
    pub check: bool,

    /// Print the QEMU options that attach each guest to its socket, and exit.
    #[arg(long)]
    pub print_qemu_args: bool,

    /// Print, for each guest with a socket (or only GUEST), the part of its libvirt
    /// domain XML that attaches it: shared guest memory and the device passed through
    /// with <qemu:commandline>. Merge it into the domain (docs/qemu.md), and exit.
    #[arg(
        long,
        value_name = "GUEST",
        num_args = 0..=1,
        default_missing_value = "",
        conflicts_with_all = ["check", "print_qemu_args"]
    )]
    pub print_libvirt_xml: Option<String>,

    /// Serve metrics over HTTP at ADDR: HOST:PORT (e.g. 127.0.0.1:9464) or unix:PATH.
    /// Prometheus scrapes GET /metrics (OpenMetrics: requests, runs, bytes, engine
    /// time and run durations per guest and kernel, sessions, queue depth, board
    /// health); `vfpgad status` prints the same for a person. Replaces [metrics] listen.
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<String>,

    /// What to do instead of serving guests.
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Run as the supervisor of the daemon: hold every guest's vhost-user connection
    /// (socket, memory, event descriptors) and run the daemon itself as a child of
    /// this binary, restarted at once if it dies. Guests notice no restart: runs in
    /// flight are run again, sessions stay open. SIGHUP reads the configuration again
    /// (guests added and removed, policies changed; a file that is not valid is
    /// refused, nothing changes) and restarts the daemon from the binary on disk (an
    /// upgrade); SIGTERM stops both. See docs/qemu.md.
    #[arg(long, conflicts_with_all = ["check", "print_qemu_args", "print_libvirt_xml", "worker_of"])]
    pub supervise: bool,

    /// Serve as the daemon of a `--supervise` process whose private folder is DIR
    /// (guest sockets DIR/NAME.sock, state files DIR/NAME.state); the supervisor
    /// passes it.
    #[arg(long, value_name = "DIR", hide = true)]
    pub worker_of: Option<PathBuf>,

    /// With --worker-of: a stream listener the supervisor holds, as KEY=FD (KEY as
    /// `Listen::socket_key` names it); repeated.
    #[arg(
        long = "inherit",
        value_name = "KEY=FD",
        hide = true,
        requires = "worker_of"
    )]
    pub inherit: Vec<String>,
}

/// Commands besides serving.
// As for `Cli`: `[metrics]` in the help text names the file's table.
#[allow(rustdoc::broken_intra_doc_links)]
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Print what a running vfpgad counts, for a person: per guest its requests and
    /// failures, its kernels' runs, bytes, engine time and sessions; the boards'
    /// health. Read from the daemon's metrics endpoint (--metrics / [metrics] listen).
    #[command(
        after_help = "Examples:\n  vfpgad status                                 # the endpoint of /etc/vfpga/vfpgad.toml\n  vfpgad status --metrics 127.0.0.1:9464\n  vfpgad status --config /etc/vfpga/vfpgad.toml --openmetrics"
    )]
    Status(StatusArgs),
}

/// `vfpgad status`'s flags.
#[allow(rustdoc::broken_intra_doc_links)]
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// The daemon's metrics address (HOST:PORT or unix:PATH) [default: the config
    /// file's [metrics] listen].
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<String>,
    /// The daemon's configuration file, to find its [metrics] listen.
    #[arg(short, long, value_name = "FILE", default_value = DEFAULT_CONFIG)]
    pub config: PathBuf,
    /// Print the OpenMetrics text Prometheus gets instead of the table.
    #[arg(long)]
    pub openmetrics: bool,
    /// Seconds to wait for the answer.
    #[arg(long, value_name = "S", default_value_t = 10)]
    pub timeout: u64,
}

/// Where the packaged configuration is.
pub const DEFAULT_CONFIG: &str = "/etc/vfpga/vfpgad.toml";

impl StatusArgs {
    /// The endpoint to ask.
    pub fn addr(&self) -> Result<crate::metrics::addr::Addr, CliError> {
        if let Some(m) = &self.metrics {
            return m.parse().map_err(|e| CliError::flag("--metrics", m, e));
        }
        Config::load(&self.config)?.metrics.addr()?.ok_or_else(|| {
            CliError::flag(
                "--config",
                &self.config.display().to_string(),
                "has no [metrics] listen: give --metrics ADDR, or add [metrics] listen = \"127.0.0.1:9464\" and restart vfpgad",
            )
        })
    }
}

impl Cli {
    /// The guests `--socket` and `--listen` name, in order of first mention.
    fn guests(&self) -> Result<Vec<GuestConfig>, CliError> {
        fn entry(guests: &mut Vec<GuestConfig>, name: &str) -> usize {
            guests
                .iter()
                .position(|g| g.name == name)
                .unwrap_or_else(|| {
                    guests.push(GuestConfig::named(name));
                    guests.len() - 1
                })
        }
        let mut guests: Vec<GuestConfig> = Vec::new();
        for (i, s) in self.sockets.iter().enumerate() {
            let (name, path) = match s.split_once('=') {
                Some((name, path)) => (name.to_owned(), path),
                None => (format!("vm{i}"), s.as_str()),
            };
            let g = entry(&mut guests, &name);
            if guests[g].socket.is_some() {
                return Err(CliError::SecondSocket {
                    given: s.clone(),
                    name,
                });
            }
            guests[g].socket = Some(path.into());
        }
        for l in &self.listens {
            let (name, uri) = l
                .split_once('=')
                .ok_or_else(|| CliError::ListenSyntax(l.clone()))?;
            let g = entry(&mut guests, name);
            guests[g].listen.push(uri.to_owned());
        }
        Ok(guests)
    }

    /// The file's configuration with the flags applied, checked.
    pub fn config(&self) -> Result<Config, CliError> {
        let mut c = match &self.config {
            Some(p) => Config::load(p)?,
            None => Config::default(),
        };
        if !self.sockets.is_empty() || !self.listens.is_empty() {
            c.guests = self.guests()?;
        }
        if let Some(dir) = &self.tls_dir {
            c.tls = Some(TlsSection {
                ca: dir.join("ca.pem"),
                cert: dir.join("server.pem"),
                key: dir.join("server.key"),
            });
        }
        let d = &mut c.device;
        d.request_queues = self.request_queues.unwrap_or(d.request_queues);
        d.queue_size = self.queue_size.unwrap_or(d.queue_size);
        d.max_sessions = self.max_sessions.unwrap_or(d.max_sessions);
        if let Some(n) = self.engine_threads {
            c.daemon.engine_threads = usize::from(n);
        }
        // Flags are checked as flags, so a mistake is reported as the flag it is.
        if let Some(m) = &self.socket_mode {
            crate::config::parse_mode(m).map_err(|e| CliError::flag("--socket-mode", m, e))?;
            c.daemon.socket_mode = Some(m.clone());
        }
        if let Some(g) = &self.socket_group {
            crate::config::group_id(g).map_err(|e| CliError::flag("--socket-group", g, e))?;
            c.daemon.socket_group = Some(g.clone());
        }
        if let Some(m) = &self.metrics {
            m.parse::<crate::metrics::addr::Addr>()
                .map_err(|e| CliError::flag("--metrics", m, e))?;
            c.metrics.listen = Some(m.clone());
        }
        c.xen.enable |= self.xen;
        if let Some(p) = &self.xen_path {
            c.xen.path.clone_from(p);
        }
        if !self.allow.is_empty() && c.device.bitstreams.is_empty() {
            c.device.bitstreams.clone_from(&self.allow);
        }
        match (&self.library, &mut c.library) {
            (Some(dir), Some(lib)) => {
                lib.dir.clone_from(dir);
                if !self.allow.is_empty() {
                    lib.allow.clone_from(&self.allow);
                }
            }
            (Some(dir), None) => {
                c.library = Some(LibraryConfig::new(dir.clone(), self.allow.clone()));
            }
            (None, Some(lib)) if !self.allow.is_empty() => lib.allow.clone_from(&self.allow),
            (None, None) if !self.allow.is_empty() => return Err(CliError::AllowWithoutLibrary),
            (None, _) => {}
        }
        c.validate()?;
        if let Some(dir) = &self.worker_of {
            // The supervisor holds the guests' sockets; this daemon serves its own, in
            // the supervisor's private folder.
            for g in c.guests.iter_mut().filter(|g| g.socket.is_some()) {
                g.socket = Some(dir.join(format!("{}.sock", g.name)));
            }
            c.daemon.socket_mode = None;
            c.daemon.socket_group = None;
            c.daemon.state_dir = Some(dir.clone());
            for i in &self.inherit {
                let fd = i
                    .rsplit_once('=')
                    .and_then(|(k, fd)| Some((k.to_owned(), fd.parse::<i32>().ok()?)))
                    .filter(|&(_, fd)| fd > 2)
                    .ok_or_else(|| CliError::flag("--inherit", i, "expected KEY=FD"))?;
                c.daemon.inherited.push(fd);
            }
        }
        Ok(c)
    }
}

/// Parses a `--queue-size`: a power of two from 2 to 32768.
fn power_of_two(s: &str) -> Result<u16, String> {
    s.parse::<u16>()
        .ok()
        .filter(|n| n.is_power_of_two() && *n >= 2)
        .ok_or_else(|| format!("{s} is not a power of two from 2 to 32768"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::config::EngineKind;

    fn cli(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("vfpgad").chain(args.iter().copied())).unwrap()
    }

    /// A configuration file in a temporary folder.
    fn file(text: &str) -> (tempfile::TempDir, String) {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("vfpgad.toml");
        std::fs::write(&p, text).unwrap();
        let p = p.display().to_string();
        (d, p)
    }

    const FILE: &str = r#"
        [device]
        request_queues = 4
        queue_size = 256
        max_sessions = 10
        [xen]
        path = "/local/domain/0/from-file"
        [[guest]]
        name = "fromfile"
        socket = "/run/vfpga/fromfile.sock"
    "#;

    #[test]
    fn a_flag_replaces_the_files_value_and_leaves_the_others() {
        let (_d, p) = file(FILE);
        let c = cli(&[
            "--config",
            &p,
            "--request-queues",
            "2",
            "--max-sessions",
            "5",
        ])
        .config()
        .unwrap();
        assert_eq!(c.device.request_queues, 2);
        assert_eq!(c.device.max_sessions, 5);
        assert_eq!(c.device.queue_size, 256, "the file's value stays");
        assert_eq!(c.guests.len(), 1);
        assert_eq!(c.guests[0].name, "fromfile");
        assert_eq!(c.daemon.engine, EngineKind::Sim);
        assert!(!c.xen.enable);
        let c = cli(&["--config", &p, "--xen", "--xen-path", "/x"])
            .config()
            .unwrap();
        assert!(c.xen.enable);
        assert_eq!(c.xen.path, "/x");
    }

    #[test]
    fn sockets_and_listeners_replace_the_files_guests_in_order_of_mention() {
        let (_d, p) = file(FILE);
        let c = cli(&[
            "--config",
            &p,
            "--socket",
            "/run/a.sock",
            "--listen",
            "b=unix:/run/b.stream",
            "--socket",
            "b=/run/b.sock",
            "--listen",
            "vm0=tls:127.0.0.1:7000",
            "--tls-dir",
            "/etc/vfpga/pki",
        ])
        .config()
        .unwrap();
        let names: Vec<&str> = c.guests.iter().map(|g| g.name.as_str()).collect();
        assert_eq!(names, ["vm0", "b"], "unnamed sockets are vm<index>");
        assert_eq!(c.guests[0].socket.as_deref(), Some("/run/a.sock".as_ref()));
        assert_eq!(c.guests[0].listen, ["tls:127.0.0.1:7000"]);
        assert_eq!(c.guests[1].socket.as_deref(), Some("/run/b.sock".as_ref()));
        assert_eq!(c.guests[1].listen, ["unix:/run/b.stream"]);
        let tls = c.tls.unwrap();
        assert_eq!(tls.ca, PathBuf::from("/etc/vfpga/pki/ca.pem"));
        assert_eq!(tls.cert, PathBuf::from("/etc/vfpga/pki/server.pem"));
        assert_eq!(tls.key, PathBuf::from("/etc/vfpga/pki/server.key"));
    }

    #[test]
    fn mistakes_name_the_flag() {
        let e = |args: &[&str]| cli(args).config().unwrap_err().to_string();
        assert_eq!(
            e(&["--socket", "a=/1", "--socket", "a=/2"]),
            "--socket a=/2: guest a has a socket already"
        );
        assert!(e(&["--listen", "unix:/x"]).starts_with("--listen unix:/x: give NAME=URI"));
        assert!(
            e(&["--socket", "/a", "--socket-mode", "abc"]).starts_with("--socket-mode abc: "),
            "{}",
            e(&["--socket", "/a", "--socket-mode", "abc"])
        );
        assert!(
            e(&["--socket", "/a", "--socket-group", "no-such-group-here"])
                .starts_with("--socket-group no-such-group-here: ")
        );
        assert_eq!(
            e(&["--socket", "/a", "--allow", "base"]),
            "--allow needs a library: give --library DIR or [library] dir"
        );
        // Values clap checks itself.
        for bad in [
            &["--request-queues", "64"][..],
            &["--queue-size", "100"],
            &["--engine-threads", "257"],
        ] {
            let args = std::iter::once("vfpgad").chain(bad.iter().copied());
            assert!(Cli::try_parse_from(args).is_err(), "{bad:?} refused");
        }
        let err = Cli::try_parse_from(["vfpgad", "--queue-size", "100"]).unwrap_err();
        assert!(err.to_string().contains("not a power of two"), "{err}");
    }

    #[test]
    fn allow_and_library_merge_with_the_file() {
        // Flags alone: a library allowing what --allow names, and guests may load it.
        let c = cli(&["--socket", "/a", "--library", "/lib", "--allow", "base"])
            .config()
            .unwrap();
        let lib = c.library.unwrap();
        assert_eq!(
            (lib.dir, lib.allow),
            (PathBuf::from("/lib"), vec!["base".into()])
        );
        assert_eq!(c.device.bitstreams, ["base"]);
        // The file's library: --allow replaces its allow list, --library its folder,
        // and the file's [device] bitstreams stay as they are.
        let (_d, p) = file(
            "[library]\ndir = \"/filelib\"\nallow = [\"a\", \"b\"]\n[device]\nbitstreams = [\"a\"]\n[[guest]]\nname = \"vm0\"\nsocket = \"/s\"\n",
        );
        let c = cli(&["--config", &p, "--allow", "b"]).config().unwrap();
        let lib = c.library.unwrap();
        assert_eq!(lib.dir, PathBuf::from("/filelib"));
        assert_eq!(lib.allow, ["b"]);
        assert_eq!(c.device.bitstreams, ["a"]);
        let c = cli(&["--config", &p, "--library", "/other"])
            .config()
            .unwrap();
        let lib = c.library.unwrap();
        assert_eq!(lib.dir, PathBuf::from("/other"));
        assert_eq!(lib.allow, ["a", "b"], "no --allow: the file's list stays");
    }

    #[test]
    fn the_file_is_checked_after_the_flags() {
        let (_d, p) = file("[daemon]\nengine = \"fpga\"\n");
        let e = cli(&["--config", &p]).config().unwrap_err().to_string();
        assert!(e.contains("engine \"fpga\": use \"sim\""), "{e}");
        // A flag can make a file's configuration valid or invalid.
        let (_d, p) =
            file("[daemon]\nengine = \"pl\"\n[[guest]]\nname = \"vm0\"\nsocket = \"/s\"\n");
        let e = cli(&["--config", &p]).config().unwrap_err().to_string();
        assert!(e.contains("needs a [library]"), "{e}");
        cli(&["--config", &p, "--library", "/lib"])
            .config()
            .unwrap();
    }
}
