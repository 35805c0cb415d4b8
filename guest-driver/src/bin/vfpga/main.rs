//! `vfpga`: run accelerator kernels from a guest.

mod bench;
mod bind;

use std::io::Write as _;
use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use vfpga::cli::{Cli, Command, Item};
use vfpga::{Device, Error, Options};
use vfpga_proto::{ArgKind, ElemType};

/// A failure and its exit status.
enum Fail {
    Usage(String),
    Device(Error),
}

impl From<Error> for Fail {
    fn from(e: Error) -> Self {
        match e {
            Error::Usage(m) => Fail::Usage(m),
            e => Fail::Device(e),
        }
    }
}

fn info(dev: &Device) -> Result<(), Fail> {
    let i = dev.info()?;
    let r = &i.raw;
    println!("device:      {} ({})", dev.endpoint(), i.name);
    println!("engine:      {}", i.engine);
    println!(
        "bitstream:   {} ({} kernel{})",
        i.bitstream,
        r.num_kernels,
        if r.num_kernels == 1 { "" } else { "s" }
    );
    println!("daemon:      vfpgad {}", i.daemon_version);
    println!("ABI:         version {}", r.abi_version);
    println!("queues:      1 control + {} request", r.num_request_queues);
    println!(
        "sessions:    {} open of {}",
        r.open_sessions, r.max_sessions
    );
    println!(
        "features:    {:#x}  capabilities: {:#x}",
        r.features, r.capabilities
    );
    Ok(())
}

fn kernels(dev: &Device) -> Result<(), Fail> {
    for k in dev.kernels()? {
        println!("{}\n    {}", k.render(), k.doc);
    }
    Ok(())
}

fn print_output(name: &str, ty: ElemType, data: &[u8]) {
    let shown: Vec<String> = data.iter().take(64).map(|b| format!("{b:02x}")).collect();
    let more = if data.len() > 64 {
        format!(" ... ({} bytes; use --out {name}=FILE to save)", data.len())
    } else {
        String::new()
    };
    println!(
        "{name} ({}[{}]): {}{more}",
        ty.name(),
        data.len() / ty.size(),
        shown.join("")
    );
}

fn run(
    dev: &Device,
    kernel: &str,
    args: &[Item],
    ins: &[Item],
    outs: &[Item],
    repeat: u32,
) -> Result<(), Fail> {
    let session = dev.session(kernel)?;
    let sig = session.signature().clone();
    let mut bound =
        bind::bind(&sig, args, ins, outs).map_err(|e| Fail::Usage(format!("{kernel}: {e}")))?;
    let mut stats = None;
    let start = Instant::now();
    for _ in 0..repeat.max(1) {
        let mut list = bound.args(&sig);
        stats = Some(session.run(&mut list)?);
    }
    let wall = start.elapsed() / repeat.max(1);
    for (a, out) in sig.args.iter().zip(&bound.outputs) {
        let (ArgKind::Out, Some((buf, file))) = (a.kind, out) else {
            continue;
        };
        match file {
            Some(f) => std::fs::write(f, buf.as_slice())
                .map_err(|e| Fail::Usage(format!("cannot write {}: {e}", f.display())))?,
            None => print_output(&a.name, a.ty, buf.as_slice()),
        }
    }
    if let Some(s) = stats {
        eprintln!(
            "{kernel}: ok, {} bytes out, engine {:.1} us, round trip {:.1} us",
            s.written,
            s.engine.as_secs_f64() * 1e6,
            wall.as_secs_f64() * 1e6
        );
    }
    session.close()?;
    Ok(())
}

fn stats(dev: &Device) -> Result<(), Fail> {
    let s = dev.stats()?;
    println!(
        "requests:      {} ({} errors, {} busy)",
        s.requests, s.errors, s.busy
    );
    println!("kernel runs:   {}", s.runs);
    println!("bytes in/out:  {} / {}", s.bytes_in, s.bytes_out);
    println!("engine time:   {:.3} ms", s.engine_ns as f64 / 1e6);
    println!("open sessions: {}", s.open_sessions);
    Ok(())
}

fn limits(dev: &Device) -> Result<(), Fail> {
    let l = dev.limits()?;
    let rate = |v: u64, unit: &str| {
        if v == 0 {
            "no limit".to_owned()
        } else {
            format!("{v} {unit}/s")
        }
    };
    println!(
        "runs in flight:  {} now, at most {}",
        l.inflight, l.max_inflight
    );
    println!(
        "bytes in flight: {} now, at most {}",
        l.inflight_bytes, l.max_inflight_bytes
    );
    println!("request size:    at most {} bytes", l.max_request_bytes);
    println!("sessions:        at most {} open", l.max_sessions);
    println!(
        "rate:            {}, {}",
        rate(l.rate_runs, "runs"),
        rate(l.rate_bytes, "bytes")
    );
    println!("engine share:    weight {}", l.weight);
    println!(
        "kernels:         {}",
        if l.flags & vfpga_proto::LIMIT_F_ALL_KERNELS != 0 {
            "all (`vfpga kernels` lists them)"
        } else {
            "some (`vfpga kernels` lists those allowed)"
        }
    );
    println!(
        "bitstreams:      {}",
        if l.flags & vfpga_proto::LIMIT_F_LOAD != 0 {
            "may load some or all of the host's library"
        } else {
            "may not load any"
        }
    );
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let options = Options {
        tls: cli.tls_dir.as_deref().map(vfpga::tls_dir),
        server_name: cli.server_name.clone(),
        reconnect: std::time::Duration::from_secs(cli.reconnect),
    };
    let result = Device::open_with(&cli.device, &options)
        .map_err(Fail::from)
        .and_then(|dev| match &cli.command {
            Command::Info => info(&dev),
            Command::Kernels => kernels(&dev),
            Command::Run {
                kernel,
                args,
                ins,
                outs,
                repeat,
            } => run(&dev, kernel, args, ins, outs, *repeat),
            Command::Bench(opts) => bench::run(&dev, opts).map_err(Fail::from),
            Command::Stats => stats(&dev),
            Command::Limits => limits(&dev),
            Command::Load { name } => {
                dev.load_bitstream(name)?;
                println!("loaded bitstream {name}");
                Ok(())
            }
        });
    let _ = std::io::stdout().flush();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Fail::Usage(m)) => {
            eprintln!("vfpga: {m}");
            ExitCode::from(2)
        }
        Err(Fail::Device(e)) => {
            eprintln!("vfpga: {e}");
            ExitCode::from(1)
        }
    }
}
