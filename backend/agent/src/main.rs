//! `vfpga-agent`: share a board's accelerator with vfpgad hosts on the network.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use vfpga_agent::{cert, Agent, AgentConfig};
use vfpga_engine::manifest::valid_name;
use vfpga_engine::pl::{PlConfig, PlEngine};
use vfpga_engine::sim::SimEngine;
use vfpga_engine::{Engine, Library};
use vfpga_remote::Conn;
use vfpga_transport::TlsFiles;

const AFTER_HELP: &str = "\
Examples:
  Create a CA and certificates (board reachable as pynq1 / 192.168.42.20):
    vfpga-agent cert init --dir /etc/vfpga/pki --server-name pynq1 --server-name 192.168.42.20
  Serve the board's programmable logic, letting hosts switch between two bitstreams:
    vfpga-agent serve --pki /etc/vfpga/pki --engine pl --library /lib/firmware/vfpga --bitstream base --allow base --allow filters
  Serve the software model (no FPGA):
    vfpga-agent serve --pki ./pki --listen 127.0.0.1:7447
  Upload a bitstream from a host:
    vfpga-agent upload --to pynq1:7447 --pki ./pki --name base base.toml base.bit.bin

docs/remote.md covers building for the PYNQ-Z1 (armv7) and running as a service.
SIGTERM or SIGINT stops the agent: running kernels finish, connections close.";

/// Serves a board's FPGA (or its software model) to vfpgad hosts over TCP with mutual TLS.
#[derive(Debug, Parser)]
#[command(version, about = "Serve a board's FPGA accelerator to vfpgad hosts over TCP with mutual TLS", after_help = AFTER_HELP)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Args)]
struct Pki {
    /// Folder holding ca.pem and this side's certificate and key (from `cert init`).
    #[arg(long, value_name = "DIR")]
    pki: PathBuf,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the accelerator.
    Serve {
        #[command(flatten)]
        pki: Pki,
        /// Address and port to listen on.
        #[arg(long, default_value = "0.0.0.0:7447")]
        listen: SocketAddr,
        /// `pl` (this board's programmable logic) or `sim` (software model).
        #[arg(long, default_value = "sim")]
        engine: String,
        /// Bitstream library: NAME.toml manifests and their files (uploads go here).
        #[arg(long, value_name = "DIR")]
        library: Option<PathBuf>,
        /// A bitstream hosts may load from the library; repeatable ("*": all). None by
        /// default: the board owner says which bitstreams its fabric may take.
        #[arg(long = "allow", value_name = "NAME")]
        allow: Vec<String>,
        /// Bitstream to load at start (pl engine); allowed by naming it here.
        #[arg(long, value_name = "NAME")]
        bitstream: Option<String>,
        /// Root of sysfs and /dev for the pl engine.
        #[arg(long, default_value = "/", value_name = "DIR")]
        root: PathBuf,
        /// Most host connections at once.
        #[arg(long, default_value_t = 16)]
        max_connections: usize,
        /// Most kernels running at once.
        #[arg(long, default_value_t = 2)]
        max_concurrent: usize,
        /// Largest request in MiB (inputs plus outputs).
        #[arg(long, default_value_t = 256, value_name = "MIB")]
        max_request_mib: u64,
        /// Revocation list (`cert revoke` writes it): certificates listed there are
        /// refused; the file is read again when it changes.
        #[arg(long, value_name = "FILE")]
        revoked: Option<PathBuf>,
    },
    /// Create or extend the deployment's certificates.
    Cert {
        #[command(subcommand)]
        command: CertCommand,
    },
    /// Upload a bitstream and its manifest to an agent (and optionally load it).
    Upload {
        #[command(flatten)]
        pki: Pki,
        /// Agent address (host:port).
        #[arg(long, value_name = "HOST:PORT")]
        to: String,
        /// Name in the agent's certificate (default: the host part of --to).
        #[arg(long)]
        server_name: Option<String>,
        /// Bitstream name (the manifest's [bitstream] name).
        #[arg(long)]
        name: String,
        /// Load it once uploaded.
        #[arg(long)]
        load: bool,
        /// The manifest (TOML).
        manifest: PathBuf,
        /// The bitstream (or overlay) file the manifest names.
        bitstream: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum CertCommand {
    /// Create a CA plus server.pem/key (for agents) and client.pem/key (for vfpgad).
    Init {
        /// Folder to create them in.
        #[arg(long)]
        dir: PathBuf,
        /// Names (DNS or IP) the board is reached by; repeatable.
        #[arg(long = "server-name", required = true)]
        server_names: Vec<String>,
        /// Name of the client certificate.
        #[arg(long, default_value = "vfpgad")]
        client_name: String,
    },
    /// Issue another server certificate (e.g. for a second board) as PREFIX.pem/key.
    Server {
        /// Folder holding the CA.
        #[arg(long)]
        dir: PathBuf,
        /// File prefix.
        #[arg(long)]
        prefix: String,
        /// Names (DNS or IP) the board is reached by; repeatable.
        #[arg(long = "name", required = true)]
        names: Vec<String>,
        /// Days the certificate is valid.
        #[arg(long, default_value_t = cert::DEFAULT_DAYS)]
        days: u32,
        /// Replace PREFIX.pem/key if they exist.
        #[arg(long)]
        force: bool,
    },
    /// Issue another client certificate as PREFIX.pem/key.
    Client {
        /// Folder holding the CA.
        #[arg(long)]
        dir: PathBuf,
        /// File prefix.
        #[arg(long)]
        prefix: String,
        /// The client's name.
        #[arg(long)]
        name: String,
        /// What it may do on the boards: run kernels (run), or also upload and load
        /// bitstreams (admin).
        #[arg(long, value_enum, default_value = "run")]
        role: cert::Role,
        /// Days the certificate is valid.
        #[arg(long, default_value_t = cert::DEFAULT_DAYS)]
        days: u32,
        /// Replace PREFIX.pem/key if they exist.
        #[arg(long)]
        force: bool,
    },
    /// Revoke a certificate: add it to a revocation list the boards read (`serve
    /// --revoked FILE`).
    Revoke {
        /// The certificate (PEM) to revoke.
        #[arg(long, value_name = "FILE")]
        cert: PathBuf,
        /// The revocation list to add it to (created if missing).
        #[arg(long, value_name = "FILE")]
        list: PathBuf,
    },
}

fn files(pki: &Pki, side: &str) -> TlsFiles {
    TlsFiles {
        ca: pki.pki.join("ca.pem"),
        cert: pki.pki.join(format!("{side}.pem")),
        key: pki.pki.join(format!("{side}.key")),
    }
}

fn serve(cmd: Command) -> Result<(), String> {
    let Command::Serve {
        pki,
        listen,
        engine,
        library,
        allow,
        bitstream,
        root,
        max_connections,
        max_concurrent,
        max_request_mib,
        revoked,
    } = cmd
    else {
        return Err("internal: not a serve command".into());
    };
    let tls = vfpga_transport::server_config(&files(&pki, "server")).map_err(|e| e.to_string())?;
    if let Some(n) = allow.iter().find(|n| *n != "*" && !valid_name(n)) {
        return Err(format!(
            "--allow {n}: not a bitstream name (1-31 characters of [A-Za-z0-9_.-]) or \"*\""
        ));
    }
    let mut allow = allow;
    allow.extend(bitstream.clone());
    let lib = library.clone().map(|dir| Library { dir, allow });
    let engine: Arc<dyn Engine> = match engine.as_str() {
        "sim" => Arc::new(SimEngine::new(lib).map_err(|e| e.to_string())?),
        "pl" => {
            let library =
                lib.ok_or("--engine pl needs --library DIR (manifests and bitstreams)")?;
            Arc::new(
                PlEngine::new(PlConfig {
                    root,
                    library,
                    bitstream,
                    fpga: "fpga0".into(),
                    load_timeout: Duration::from_secs(30),
                })
                .map_err(|e| format!("pl engine: {e}"))?,
            )
        }
        other => return Err(format!("--engine {other}: use pl or sim")),
    };
    let mut signals = Signals::new([SIGTERM, SIGINT]).map_err(|e| e.to_string())?;
    let agent = Agent::start(AgentConfig {
        listen,
        tls,
        engine,
        library,
        max_connections,
        max_concurrent,
        max_request_bytes: max_request_mib.saturating_mul(1 << 20),
        revoked,
    })
    .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    if let Some(sig) = signals.forever().next() {
        tracing::info!(signal = sig, "stopping");
    }
    agent.shutdown(Duration::from_secs(30));
    Ok(())
}

fn upload(cmd: Command) -> Result<(), String> {
    let Command::Upload {
        pki,
        to,
        server_name,
        name,
        load,
        manifest,
        bitstream,
    } = cmd
    else {
        return Err("internal: not an upload command".into());
    };
    let text =
        std::fs::read_to_string(&manifest).map_err(|e| format!("{}: {e}", manifest.display()))?;
    // The board would refuse these only after every byte crossed: check them here.
    let catalog = vfpga_engine::Catalog::load(&manifest).map_err(|e| e.to_string())?;
    if catalog.name != name {
        return Err(format!(
            "--name {name}, but {} names the bitstream {:?} ([bitstream] name): they must match",
            manifest.display(),
            catalog.name
        ));
    }
    let mut file =
        std::fs::File::open(&bitstream).map_err(|e| format!("{}: {e}", bitstream.display()))?;
    let len = file.metadata().map_err(|e| e.to_string())?.len();
    let tls = vfpga_transport::client_config(&files(&pki, "client")).map_err(|e| e.to_string())?;
    let host = server_name.unwrap_or_else(|| vfpga_transport::default_server_name(&to));
    let mut conn = Conn::connect(&to, &host, tls, Duration::from_secs(10))
        .map_err(|e| format!("{to}: {e}"))?;
    // The whole upload, not each write: two minutes plus a second per MiB.
    conn.set_timeout(Duration::from_secs(120 + (len >> 20)));
    let mut last = u64::MAX;
    conn.upload(&name, &text, &mut file, len, &mut |sent, total| {
        let pct = (sent * 100).checked_div(total).unwrap_or(100);
        if pct / 10 != last / 10 || sent == total {
            println!("uploading {name}: {pct:3}% ({sent}/{total} bytes)");
            last = pct;
        }
    })
    .map_err(|e| format!("upload to {to}: {e}"))?;
    if load {
        let n = conn.load(&name).map_err(|e| format!("load on {to}: {e}"))?;
        println!(
            "loaded {name} on {to}: {n} kernel{}",
            if n == 1 { "" } else { "s" }
        );
    }
    Ok(())
}

fn main() -> ExitCode {
    vfpgad::logging::init();
    let cli = Cli::parse();
    let r = match cli.command {
        c @ Command::Serve { .. } => serve(c),
        c @ Command::Upload { .. } => upload(c),
        Command::Cert { command } => match command {
            CertCommand::Init {
                dir,
                server_names,
                client_name,
            } => cert::init(&dir, &server_names, &client_name).map(|()| {
                println!("created ca.pem/key, server.pem/key ({}) and client.pem/key ({client_name}) in {}", server_names.join(", "), dir.display());
                println!("keep ca.key offline; give boards server.*, hosts client.*, both ca.pem");
            }),
            CertCommand::Server {
                dir,
                prefix,
                names,
                days,
                force,
            } => cert::issue(&dir, &prefix, &names, cert::Kind::Server, days, force)
                .map(|w| println!("{w}")),
            CertCommand::Client {
                dir,
                prefix,
                name,
                role,
                days,
                force,
            } => cert::issue(&dir, &prefix, &[name], cert::Kind::Client(role), days, force)
                .map(|w| println!("{w}")),
            CertCommand::Revoke { cert, list } => {
                cert::revoke(&cert, &list).map(|w| println!("{w}"))
            }
        },
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vfpga-agent: {e}");
            ExitCode::FAILURE
        }
    }
}
