//! `vfpgad`: serve an FPGA accelerator (or its software model) to virtual machines.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use tracing::{info, warn};
use vfpga_proto::DEFAULT_VIRTIO_ID;
use vfpgad::config::{GuestConfig, LibraryConfig, TlsSection};
use vfpgad::notify::notify;
use vfpgad::{build_engine, Config, Server};

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
  Check a configuration file and print the QEMU options for its guests:
    vfpgad --config /etc/vfpga/vfpgad.toml --check --print-qemu-args

Each guest's QEMU (10.2 or later) attaches to its socket (start vfpgad first) with
these options, shown for a 4G guest (size= must equal -m) with the default 2 request
queues (num_vqs = 1 control queue + request queues); --print-qemu-args prints them
for a configuration:

  -object memory-backend-memfd,id=mem,size=4G,share=on -numa node,memdev=mem
  -chardev socket,id=vfpga0,path=/run/vfpga/vm0.sock
  -device vhost-user-test-device-pci,chardev=vfpga0,virtio-id=21,num_vqs=3,vq_size=1024,config_size=40

docs/qemu.md explains each option, libvirt, and how to re-attach a guest after a
daemon restart (QEMU 11.1 cannot reconnect this device type by itself).

With --xen (or [xen] enable = true) vfpgad publishes itself and its guests in xenstore
under --xen-path and closes a guest's sessions when its domain is destroyed; see
docs/xen.md. Under systemd (Type=notify) it reports READY=1 once every socket listens.

Logging: RUST_LOG=debug (or info, warn, vfpgad=trace, ...). SIGTERM or SIGINT stops
the daemon cleanly: connections are closed, running kernels finish, sockets go.";

/// Exposes an FPGA accelerator to virtual machines as a virtio device over vhost-user.
#[derive(Debug, Parser)]
#[command(version, about, after_help = AFTER_HELP)]
struct Cli {
    /// TOML configuration file; the flags below override it.
    #[arg(short, long, value_name = "FILE")]
    config: Option<PathBuf>,

    /// vhost-user socket for a guest, as PATH or NAME=PATH; repeat for more guests.
    /// With --listen, replaces the file's [[guest]] list.
    #[arg(short, long = "socket", value_name = "[NAME=]PATH")]
    sockets: Vec<String>,

    /// A stream listener for guest NAME, for guests without the virtio_vfpga module:
    /// unix:PATH (a userspace vsock device's socket, e.g. vhost-device-vsock's
    /// uds-path plus _PORT), vsock:CID:PORT (the kernel's vhost-vsock), tls:ADDR:PORT
    /// (mutual TLS, needs --tls-dir) or vchan (Xen, needs --xen). Repeatable; a guest
    /// named only here needs no vhost-user socket. With --socket, replaces the file's
    /// [[guest]] list.
    #[arg(short, long = "listen", value_name = "NAME=URI")]
    listens: Vec<String>,

    /// Folder with ca.pem, server.pem and server.key (as `vfpga-agent cert init`
    /// makes them) for tls: listeners; replaces the file's [tls].
    #[arg(long, value_name = "DIR")]
    tls_dir: Option<PathBuf>,

    /// Request queues per device, besides the control queue (1 to 63) [default: 2].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=63))]
    request_queues: Option<u16>,

    /// Descriptors per virtqueue, a power of two up to 32768 [default: 1024].
    #[arg(long, value_name = "N", value_parser = power_of_two)]
    queue_size: Option<u16>,

    /// Sessions a guest may hold open at once [default: 64].
    #[arg(long, value_name = "N")]
    max_sessions: Option<u32>,

    /// Kernels running at once, shared fairly between guests (0: one per CPU; at most
    /// 256).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(0..=256))]
    engine_threads: Option<u16>,

    /// Folder of bitstream manifests guests may load by name; replaces [library] dir.
    /// Guests load only names --allow (or the file's allow list) gives.
    #[arg(long, value_name = "DIR")]
    library: Option<PathBuf>,

    /// A bitstream name guests may load from the library ("*": all); repeatable.
    /// Replaces the file's allow list, and lets every guest load it unless the file's
    /// [device] or [[guest]] bitstreams say otherwise.
    #[arg(long = "allow", value_name = "NAME")]
    allow: Vec<String>,

    /// Permissions of the sockets, in octal (e.g. 0660).
    #[arg(long, value_name = "MODE")]
    socket_mode: Option<String>,

    /// Group owning the sockets (name or number): the group QEMU runs in.
    #[arg(long, value_name = "GROUP")]
    socket_group: Option<String>,

    /// Dom0 service mode: register in xenstore and drop the sessions of guests whose
    /// Xen domain goes away (a guest's domain is its name unless the file says).
    #[arg(long)]
    xen: bool,

    /// xenstore path of the registration (with --xen) [default: /local/domain/0/vfpga].
    #[arg(long, value_name = "PATH")]
    xen_path: Option<String>,

    /// Check the configuration (and the files it names: certificates, library,
    /// manifests), print what it sets up, and exit: 0 if it can start.
    #[arg(long)]
    check: bool,

    /// Print the QEMU options that attach each guest to its socket, and exit.
    #[arg(long)]
    print_qemu_args: bool,
}

impl Cli {
    /// The guests `--socket` and `--listen` name, in order of first mention.
    fn guests(&self) -> Result<Vec<GuestConfig>, String> {
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
                return Err(format!("--socket {s}: guest {name} has a socket already"));
            }
            guests[g].socket = Some(path.into());
        }
        for l in &self.listens {
            let (name, uri) = l.split_once('=').ok_or_else(|| {
                format!("--listen {l}: give NAME=URI, e.g. vm0=unix:/run/vfpga/vm0.vsock_7000")
            })?;
            let g = entry(&mut guests, name);
            guests[g].listen.push(uri.to_owned());
        }
        Ok(guests)
    }

    /// The file's configuration with the flags applied.
    fn config(&self) -> Result<Config, String> {
        let mut c = match &self.config {
            Some(p) => Config::load(p).map_err(|e| e.to_string())?,
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
            vfpgad::config::parse_mode(m).map_err(|e| format!("--socket-mode {m}: {e}"))?;
            c.daemon.socket_mode = Some(m.clone());
        }
        if let Some(g) = &self.socket_group {
            vfpgad::config::group_id(g).map_err(|e| format!("--socket-group {g}: {e}"))?;
            c.daemon.socket_group = Some(g.clone());
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
            (None, None) if !self.allow.is_empty() => {
                return Err("--allow needs a library: give --library DIR or [library] dir".into())
            }
            (None, _) => {}
        }
        c.validate().map_err(|e| e.to_string())?;
        Ok(c)
    }
}

/// Prints the QEMU options of each guest; a closed stdout (`| head`) ends it quietly.
fn print_qemu_args(out: &mut impl Write, c: &Config) -> std::io::Result<()> {
    writeln!(
        out,
        "# Once per VM (its memory shared with vfpgad; size= must equal the VM's -m):\n\
         -object memory-backend-memfd,id=mem,size=4G,share=on -numa node,memdev=mem"
    )?;
    for (i, (g, socket)) in c
        .guests
        .iter()
        .filter_map(|g| g.socket.as_ref().map(|s| (g, s)))
        .enumerate()
    {
        writeln!(
            out,
            "# guest {}: one device (start vfpgad before QEMU; docs/qemu.md)\n\
             -chardev socket,id=vfpga{i},path={} \
             -device vhost-user-test-device-pci,chardev=vfpga{i},virtio-id={DEFAULT_VIRTIO_ID},num_vqs={},vq_size={},config_size={}",
            g.name,
            socket.display(),
            1 + c.device.request_queues,
            c.device.queue_size.min(1024),
            vfpga_proto::DeviceConfig::SIZE,
        )?;
    }
    Ok(())
}

/// Parses a `--queue-size`: a power of two from 2 to 32768.
fn power_of_two(s: &str) -> Result<u16, String> {
    s.parse::<u16>()
        .ok()
        .filter(|n| n.is_power_of_two() && *n >= 2)
        .ok_or_else(|| format!("{s} is not a power of two from 2 to 32768"))
}

fn main() -> ExitCode {
    vfpgad::logging::init();
    let cli = Cli::parse();
    let config = match cli.config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("vfpgad: {e}");
            return ExitCode::from(2);
        }
    };
    // The files the configuration names, before anything starts (and for --check):
    // what would stop it is an error, what a later upload may fix a warning.
    let found = vfpgad::check::files(&config);
    for w in &found.warnings {
        if cli.check {
            eprintln!("vfpgad: warning: {w}");
        } else {
            warn!("{w}");
        }
    }
    if !found.errors.is_empty() {
        for e in &found.errors {
            eprintln!("vfpgad: {e}");
        }
        return ExitCode::from(2);
    }
    if cli.check || cli.print_qemu_args {
        let mut out = std::io::stdout().lock();
        let mut printed = Ok(());
        if cli.check {
            printed = vfpgad::check::summary(&mut out, &config, cli.config.as_deref());
        }
        if cli.print_qemu_args && printed.is_ok() {
            printed = print_qemu_args(&mut out, &config);
        }
        return match printed.and_then(|()| out.flush()) {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                eprintln!("vfpgad: {e}");
                ExitCode::FAILURE
            }
            _ => ExitCode::SUCCESS,
        };
    }
    let engine = match build_engine(&config) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("vfpgad: engine: {e}");
            return ExitCode::from(2);
        }
    };
    let mut signals = match Signals::new([SIGTERM, SIGINT]) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("vfpgad: cannot install signal handlers: {e}");
            return ExitCode::FAILURE;
        }
    };
    let server = match Server::start(&config, engine) {
        Ok(s) => s,
        Err(e) => {
            // Once, on stderr, whatever RUST_LOG says (the journal keeps stderr).
            eprintln!("vfpgad: {e}");
            return ExitCode::FAILURE;
        }
    };
    let xen = match vfpgad::xen::start(&config, server.live_devices()) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("vfpgad: {e}");
            server.shutdown(Duration::from_secs(5));
            return ExitCode::FAILURE;
        }
    };
    info!(
        engine = %config.daemon.engine,
        guests = config.guests.len(),
        request_queues = config.device.request_queues,
        xen = xen.is_some(),
        "vfpgad {} ready",
        env!("CARGO_PKG_VERSION")
    );
    if let Err(e) = notify("READY=1") {
        warn!("cannot tell systemd we are ready: {e}");
    }
    if let Some(sig) = signals.forever().next() {
        info!(signal = sig, "stopping");
    }
    let _ = notify("STOPPING=1");
    if let Some(x) = &xen {
        x.set_state("stopping");
    }
    server.shutdown(Duration::from_secs(30));
    if let Some(x) = xen {
        x.stop();
    }
    ExitCode::SUCCESS
}
