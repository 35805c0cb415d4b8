//! `vfpga-agent`: share a board's accelerator with vfpgad hosts on the network.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use vfpga_agent::cli::{CertCommand, Cli, Command, Pki};
use vfpga_agent::{cert, Agent, AgentConfig};
use vfpga_engine::manifest::valid_name;
use vfpga_engine::pl::{PlConfig, PlEngine};
use vfpga_engine::sim::SimEngine;
use vfpga_engine::{Engine, Library};
use vfpga_remote::Conn;
use vfpga_transport::TlsFiles;

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
