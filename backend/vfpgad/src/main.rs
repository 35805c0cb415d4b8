//! `vfpgad`: serve an FPGA accelerator (or its software model) to virtual machines.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use tracing::{info, warn};
use vfpga_proto::DEFAULT_VIRTIO_ID;
use vfpgad::cli::{Cli, Command, StatusArgs};
use vfpgad::notify::notify;
use vfpgad::{build_engine, Config, Server};

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

/// `vfpgad status`: the running daemon's counts, from its metrics endpoint.
fn status(args: &StatusArgs) -> ExitCode {
    let page = if args.openmetrics {
        "/metrics"
    } else {
        "/status"
    };
    let text = args.addr().map_err(|e| e.to_string()).and_then(|addr| {
        vfpgad::metrics::client::get(&addr, page, Duration::from_secs(args.timeout.max(1)))
            .map_err(|e| e.to_string())
    });
    match text {
        Ok(t) => {
            let mut out = std::io::stdout().lock();
            match out.write_all(t.as_bytes()).and_then(|()| out.flush()) {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                    eprintln!("vfpgad: {e}");
                    ExitCode::FAILURE
                }
                _ => ExitCode::SUCCESS,
            }
        }
        Err(e) => {
            eprintln!("vfpgad status: {e}");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    vfpgad::logging::init();
    let cli = Cli::parse();
    if let Some(Command::Status(args)) = &cli.command {
        return status(args);
    }
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
    if let Some(guest) = &cli.print_libvirt_xml {
        let mut out = std::io::stdout().lock();
        let only = Some(guest.as_str()).filter(|g| !g.is_empty());
        let printed = vfpgad::libvirt::print(&mut out, &config, only)
            .and_then(|()| out.flush().map_err(Into::into));
        return match printed {
            Err(vfpgad::libvirt::LibvirtError::Io(e))
                if e.kind() == std::io::ErrorKind::BrokenPipe =>
            {
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("vfpgad: {e}");
                ExitCode::from(2)
            }
            Ok(()) => ExitCode::SUCCESS,
        };
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
    if cli.supervise {
        let reload = || -> Result<vfpgad::Config, String> {
            let c = Cli::try_parse_from(std::env::args_os())
                .map_err(|e| e.to_string())?
                .config()
                .map_err(|e| e.to_string())?;
            let found = vfpgad::check::files(&c);
            if found.errors.is_empty() {
                Ok(c)
            } else {
                Err(found.errors.join("; "))
            }
        };
        let args = std::env::args_os().skip(1).collect();
        return match vfpgad::supervise::run(&config, args, &reload) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("vfpgad: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let engine = match build_engine(&config) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("vfpgad: {e}");
            return ExitCode::from(2);
        }
    };
    let mut signals = match Signals::new([SIGTERM, SIGINT, SIGHUP]) {
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
    for sig in signals.forever() {
        if sig == SIGHUP {
            // Reloading means new sockets and a new daemon under the same guests:
            // the supervisor's job.
            warn!("SIGHUP: vfpgad reads its configuration again only under --supervise (as the systemd units run it); nothing changed");
            continue;
        }
        info!(signal = sig, "stopping");
        break;
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
