//! `vfpga`: run accelerator kernels from a guest.

mod bench;
mod bind;

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand};
use vfpga::{Device, Error, Options, DEFAULT_DEVICE, DEVICE_ENV};
use vfpga_proto::{ArgKind, ElemType};

const AFTER_HELP: &str = "\
Examples:
  vfpga info
  vfpga kernels
  vfpga run vadd_u32 --in a.bin --in b.bin --out c.bin        (n inferred from a.bin)
  vfpga run mmult --arg m=64 --arg k=32 --arg n=16 --in a=A.bin --in b=B.bin --out c=C.bin
  vfpga run sha256 --in data.bin                             (digest printed in hex)
  vfpga bench --size 16M

Without the virtio_vfpga kernel module, reach vfpgad on a stream instead:
  vfpga --device vsock://2:7000 kernels             (vsock to the host, CID 2)
  vfpga --device unix:/run/vfpga/vm0.vsock_7000 info (on the host itself)
  vfpga --device tls://10.0.0.1:7000 --tls-dir /etc/vfpga/guest info
  VFPGA_DEVICE=vchan:// vfpga info                   (a Xen domU, to vfpgad in dom0)

Buffers are raw little-endian element arrays, exactly as long as the kernel's
signature says (`vfpga kernels` shows it). Exit status: 0 success, 1 the device or
driver refused, 2 bad command line.";

/// Run accelerator kernels on the vfpga virtio device or, without its kernel module,
/// on vfpgad over vsock, a unix socket, TLS or Xen vchan.
#[derive(Debug, Parser)]
#[command(version, about = "Run accelerator kernels on the vfpga virtio device (or vfpgad over vsock, TLS or Xen vchan)", after_help = AFTER_HELP)]
struct Cli {
    /// Where vfpgad is: a device node (/dev/vfpgaN), vsock://CID:PORT, unix:PATH,
    /// tls://HOST:PORT or vchan://[DOMID][/PATH].
    #[arg(short, long, global = true, env = DEVICE_ENV, default_value = DEFAULT_DEVICE, value_name = "ENDPOINT")]
    device: String,

    /// For tls://: a folder with ca.pem (the CA of vfpgad's certificate) and this
    /// guest's client.pem and client.key.
    #[arg(long, global = true, env = "VFPGA_TLS_DIR", value_name = "DIR")]
    tls_dir: Option<PathBuf>,

    /// For tls://: the name in vfpgad's certificate [default: the host of the endpoint].
    #[arg(
        long,
        global = true,
        env = "VFPGA_TLS_SERVER_NAME",
        value_name = "NAME"
    )]
    server_name: Option<String>,

    /// On a stream endpoint: seconds to wait for vfpgad to come back when the
    /// connection breaks (a restart); sessions are reopened and an interrupted request
    /// is sent once more. 0: fail at once.
    #[arg(
        long,
        global = true,
        env = "VFPGA_RECONNECT_SECS",
        default_value_t = vfpga::DEFAULT_RECONNECT.as_secs(),
        value_name = "SECS"
    )]
    reconnect: u64,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show the device: engine, bitstream, queues, limits.
    Info,
    /// List the kernels and their argument signatures.
    Kernels,
    /// Run a kernel on files.
    Run {
        /// Kernel name (see `vfpga kernels`).
        kernel: String,
        /// Scalar argument, as NAME=VALUE or VALUE (next scalar in signature order).
        /// Integers take 0x and K/M/G suffixes.
        #[arg(long = "arg", value_name = "[NAME=]VALUE")]
        args: Vec<bind::Item>,
        /// Input buffer from a file, as NAME=FILE or FILE (next input in order).
        #[arg(long = "in", value_name = "[NAME=]FILE")]
        ins: Vec<bind::Item>,
        /// Output buffer to a file, as NAME=FILE or FILE. Outputs without a file are
        /// printed (in hex, up to 64 bytes).
        #[arg(long = "out", value_name = "[NAME=]FILE")]
        outs: Vec<bind::Item>,
        /// Run this many times (outputs from the last run).
        #[arg(long, default_value_t = 1, value_name = "N")]
        repeat: u32,
    },
    /// Measure null-op latency and kernel throughput.
    Bench(bench::Opts),
    /// Show device-wide statistics.
    Stats,
    /// Show what this guest may do and how much: the host's policy for it.
    Limits,
    /// Load a bitstream from the host's library (by name; the host decides which).
    Load {
        /// Bitstream name.
        name: String,
    },
}

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
    args: &[bind::Item],
    ins: &[bind::Item],
    outs: &[bind::Item],
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
