//! The `vfpga` command: run accelerator kernels from a guest. The binary is [`main`];
//! [`Cli`] is its definition, from which the packaging's generator (packaging/docgen)
//! writes the man pages and shell completions.
// The comments on flags are their --help text, where brackets (`[NAME=]VALUE`,
// `vchan://[DOMID]`) are syntax, not intra-doc links.
#![allow(rustdoc::broken_intra_doc_links)]

mod bench;
mod bind;
mod data;
mod npy;
mod output;
mod values;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand};
use vfpga::{Device, Error, Options, DEFAULT_DEVICE, DEVICE_ENV};
use vfpga_proto::{ArgKind, KernelSig};

use output::{say, tell};
use values::Format;

const AFTER_HELP: &str = "\
Examples:
  vfpga info
  vfpga kernels
  vfpga run vadd_u32 --in a=1,2,3 --in b=10,20,30          (prints c = [11, 22, 33])
  vfpga run vadd_f32 --in a=@a.npy --in b=@b.npy --out c=@c.npy
  vfpga run vadd_u32 --in @a.bin --in @b.bin --out @c.bin    (raw files; n inferred)
  vfpga run mmult --arg m=64 --arg k=32 --arg n=16 --in a=@A.bin --in b=@B.bin --out c=@C.bin
  vfpga run sha256 --in @data.bin --format hex               (digest = ba7816bf...)
  cat data.bin | vfpga run sha256 --in @- --format raw > digest.bin
  vfpga bench --size 16M

Without the virtio_vfpga kernel module, reach vfpgad on a stream instead:
  vfpga --device vsock://2:7000 kernels             (vsock to the host, CID 2)
  vfpga --device unix:/run/vfpga/vm0.vsock_7000 info (on the host itself)
  vfpga --device tls://10.0.0.1:7000 --tls-dir /etc/vfpga/guest info
  VFPGA_DEVICE=vchan:// vfpga info                   (a Xen domU, to vfpgad in dom0)

Buffers hold elements of the type the kernel's signature gives each argument
(`vfpga kernels` shows it: u8, i16, i32, u32, f32, u64, i64, f64), exactly as many as
it says. An input is @FILE (raw little-endian elements; a .npy file, by its name, of
that dtype in C order), @- (raw from standard input) or values (1,2,3 or [1, 2, 3];
integers also 0x10 or 4K; floats as 1.5, -2e3, inf, nan). A bare FILE, the form
before @, still names a file unless it reads as values. An output goes to @FILE (raw,
or .npy by its name: one-dimensional, reshape it in NumPy) or, without --out, is
printed: one `NAME = [v, v, ...]` line per output (--format values), its bytes in hex
(--format hex, e.g. a digest) or the bytes themselves (--format raw).

Exit status: 0 success, 1 the device or driver refused, 2 bad command line. A reader
that goes away (`| head`) ends vfpga quietly, as it ends any Unix filter (SIGPIPE).";

/// Run accelerator kernels on the vfpga virtio device or, without its kernel module,
/// on vfpgad over vsock, a unix socket, TLS or Xen vchan.
#[derive(Debug, Parser)]
#[command(version, about = "Run accelerator kernels on the vfpga virtio device (or vfpgad over vsock, TLS or Xen vchan)", after_help = AFTER_HELP)]
pub struct Cli {
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
    /// Run a kernel on your data: files, .npy arrays or values typed in.
    Run {
        /// Kernel name (see `vfpga kernels`).
        kernel: String,
        /// Scalar argument, as NAME=VALUE or VALUE (next scalar in signature order).
        /// Integers take 0x and K/M/G suffixes.
        #[arg(long = "arg", value_name = "[NAME=]VALUE", allow_hyphen_values = true)]
        args: Vec<bind::Item>,
        /// Input buffer, as NAME=SOURCE or SOURCE (next input in signature order).
        /// SOURCE: @FILE (raw little-endian, or .npy by its name), @- (standard
        /// input), or values by element type: 1,2,3 or [1, 2, 3] ([] for none).
        #[arg(long = "in", value_name = "[NAME=]SOURCE", allow_hyphen_values = true)]
        ins: Vec<bind::Item>,
        /// Output buffer to a file, as NAME=@FILE or @FILE (raw little-endian, or .npy
        /// by its name; a bare FILE works too). Outputs without --out are printed (see
        /// --format).
        #[arg(long = "out", value_name = "[NAME=]@FILE")]
        outs: Vec<bind::Item>,
        /// How outputs without --out are printed.
        #[arg(long, value_enum, default_value = "values")]
        format: Format,
        /// Print at most N elements of each output (0: all); --format raw prints all.
        #[arg(long, default_value_t = 64, value_name = "N")]
        show: usize,
        /// Run this many times, at least once (outputs from the last run).
        #[arg(long, default_value_t = 1, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
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
    /// Standard output cannot be written (a closed pipe, a full disk).
    Output(std::io::Error),
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
    say!("device:      {} ({})", dev.endpoint(), i.name);
    say!("engine:      {}", i.engine);
    say!(
        "bitstream:   {} ({} kernel{})",
        i.bitstream,
        r.num_kernels,
        if r.num_kernels == 1 { "" } else { "s" }
    );
    say!("daemon:      vfpgad {}", i.daemon_version);
    say!("ABI:         version {}", r.abi_version);
    say!("queues:      1 control + {} request", r.num_request_queues);
    say!(
        "sessions:    {} open of {}",
        r.open_sessions,
        r.max_sessions
    );
    say!(
        "features:    {:#x}  capabilities: {:#x}",
        r.features,
        r.capabilities
    );
    Ok(())
}

fn kernels(dev: &Device) -> Result<(), Fail> {
    for k in dev.kernels()? {
        say!("{}\n    {}", k.render(), k.doc);
    }
    Ok(())
}

/// Options of `vfpga run` that say what to do with the outputs.
struct Show {
    format: Format,
    show: usize,
}

/// Prints the outputs that have no file, as `show` says.
fn print_outputs(sig: &KernelSig, bound: &bind::Bound, o: &Show) -> Result<(), Fail> {
    for (a, out) in sig.args.iter().zip(&bound.outputs) {
        let (ArgKind::Out, Some((buf, None))) = (a.kind, out) else {
            continue;
        };
        if o.format == Format::Raw {
            output::raw(buf.as_slice()).map_err(Fail::Output)?;
            continue;
        }
        let (line, cut) = values::line(&a.name, a.ty, buf.as_slice(), o.format, o.show);
        say!("{line}");
        if cut {
            let (name, total) = (&a.name, buf.len() / a.ty.size());
            tell!(
                "vfpga: {name} has {total} elements, {} shown \
                 (--show 0 prints all, --out {name}=@FILE saves them)",
                o.show
            );
        }
    }
    Ok(())
}

fn run(
    dev: &Device,
    kernel: &str,
    items: [&[bind::Item]; 3],
    repeat: u32,
    show: &Show,
) -> Result<(), Fail> {
    let [args, ins, outs] = items;
    let session = dev.session(kernel)?;
    let sig = session.signature().clone();
    let mut bound =
        bind::bind(&sig, args, ins, outs).map_err(|e| Fail::Usage(format!("{kernel}: {e}")))?;
    let mut stats = None;
    let start = Instant::now();
    for _ in 0..repeat {
        let mut list = bound.args(&sig);
        stats = Some(session.run(&mut list)?);
    }
    let wall = start.elapsed() / repeat;
    for (a, out) in sig.args.iter().zip(&bound.outputs) {
        if let (ArgKind::Out, Some((buf, Some(sink)))) = (a.kind, out) {
            sink.write(a.ty, buf.as_slice())
                .map_err(|e| Fail::Usage(format!("--out {}: {e}", a.name)))?;
        }
    }
    print_outputs(&sig, &bound, show)?;
    if let Some(s) = stats {
        tell!(
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
    say!(
        "requests:      {} ({} errors, {} busy)",
        s.requests,
        s.errors,
        s.busy
    );
    say!("kernel runs:   {}", s.runs);
    say!("bytes in/out:  {} / {}", s.bytes_in, s.bytes_out);
    say!("engine time:   {:.3} ms", s.engine_ns as f64 / 1e6);
    say!("open sessions: {}", s.open_sessions);
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
    say!(
        "runs in flight:  {} now, at most {}",
        l.inflight,
        l.max_inflight
    );
    say!(
        "bytes in flight: {} now, at most {}",
        l.inflight_bytes,
        l.max_inflight_bytes
    );
    say!("request size:    at most {} bytes", l.max_request_bytes);
    say!("sessions:        at most {} open", l.max_sessions);
    say!(
        "rate:            {}, {}",
        rate(l.rate_runs, "runs"),
        rate(l.rate_bytes, "bytes")
    );
    say!("engine share:    weight {}", l.weight);
    say!(
        "kernels:         {}",
        if l.flags & vfpga_proto::LIMIT_F_ALL_KERNELS != 0 {
            "all (`vfpga kernels` lists them)"
        } else {
            "some (`vfpga kernels` lists those allowed)"
        }
    );
    say!(
        "bitstreams:      {}",
        if l.flags & vfpga_proto::LIMIT_F_LOAD != 0 {
            "may load some or all of the host's library"
        } else {
            "may not load any"
        }
    );
    Ok(())
}

/// Runs the `vfpga` command on this process's arguments.
pub fn main() -> ExitCode {
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
                format,
                show,
                repeat,
            } => run(
                &dev,
                kernel,
                [args, ins, outs],
                *repeat,
                &Show {
                    format: *format,
                    show: *show,
                },
            ),
            Command::Bench(opts) => bench::run(&dev, opts),
            Command::Stats => stats(&dev),
            Command::Limits => limits(&dev),
            Command::Load { name } => {
                dev.load_bitstream(name)?;
                say!("loaded bitstream {name}");
                Ok(())
            }
        })
        .and_then(|()| output::flush().map_err(Fail::Output));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Fail::Output(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            output::end_by_sigpipe()
        }
        Err(Fail::Output(e)) => {
            tell!("vfpga: cannot write to standard output: {e}");
            ExitCode::from(1)
        }
        Err(Fail::Usage(m)) => {
            tell!("vfpga: {m}");
            ExitCode::from(2)
        }
        Err(Fail::Device(e)) => {
            tell!("vfpga: {e}");
            ExitCode::from(1)
        }
    }
}
