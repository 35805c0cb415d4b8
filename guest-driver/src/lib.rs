//! Run accelerator kernels on your buffers from inside a guest.
//!
//! ```no_run
//! use vfpga::{Arg, Device};
//! use vfpga_proto::ElemType;
//!
//! let dev = Device::open("/dev/vfpga0")?;
//! let vadd = dev.session("vadd_u32")?;
//! let (a, b) = (vec![1u32; 1024], vec![2u32; 1024]);
//! let mut c = vec![0u32; 1024];
//! vadd.run(&mut [
//!     Arg::input(&a),
//!     Arg::input(&b),
//!     Arg::output(&mut c),
//!     Arg::scalar(ElemType::U32, 1024),
//! ])?;
//! assert!(c.iter().all(|&x| x == 3));
//! # Ok::<(), vfpga::Error>(())
//! ```
//!
//! Through `/dev/vfpgaN`, buffers stay where they are: the kernel module pins their
//! pages and the device reads and writes them in place.
//!
//! A guest without the kernel module reaches vfpgad on a stream instead, with the same
//! API and the same errors; the endpoint says which:
//!
//! ```no_run
//! # use vfpga::Device;
//! let dev = Device::open("vsock://2:7000")?; // or unix:PATH, tls://HOST:PORT, vchan://
//! println!("{} kernels", dev.kernels()?.len());
//! # Ok::<(), vfpga::Error>(())
//! ```
//!
//! A buffer used run after run can be registered once: its pages are pinned once and
//! later runs name it instead of pinning it again (as io_uring's fixed buffers). Any
//! slice of it passed to a run goes that way; on a stream it is an ordinary buffer.
//!
//! ```no_run
//! use vfpga::{AlignedBuf, Arg, Device};
//! use vfpga_proto::ElemType;
//!
//! let dev = Device::open("/dev/vfpga0")?;
//! let sha = dev.session("sha256")?;
//! // 2 MiB-aligned, on huge pages where the kernel has them: a few descriptors.
//! let mut data = dev.register(AlignedBuf::huge(16 << 20)?)?;
//! let mut digest = [0u8; 32];
//! for round in 0..10u8 {
//!     data.as_mut_slice().fill(round);
//!     sha.run(&mut [Arg::In(ElemType::U8, data.as_slice()), Arg::Out(ElemType::U8, &mut digest)])?;
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! On a stream, a restart of vfpgad is invisible to the program: the next request
//! connects again (for up to [`Options::reconnect`]), reopens the sessions, and a
//! request the restart interrupted is sent once more.

// The `vfpga` command's modules name this library as its users do (`vfpga::Device`).
extern crate self as vfpga;

mod buffer;
pub mod cli;
mod connect;
mod error;
pub mod ioctl;
mod link;
mod vchan;

use std::time::Duration;

use vfpga_proto::wire::name_str;
pub use vfpga_proto::Limits;
use vfpga_proto::{DeviceInfo, ElemType, KernelDesc, KernelSig, Stats, Status, MAX_ARGS};
pub use vfpga_transport::{Endpoint, TlsFiles};

pub use buffer::{AlignedBuf, Pod, HUGE_PAGE};
pub use connect::{tls_dir, Options, DEFAULT_RECONNECT};
pub use error::Error;
use link::Link;

/// The default endpoint: the first vfpga device node.
pub const DEFAULT_DEVICE: &str = "/dev/vfpga0";

/// The largest buffer [`Device::register`] takes (the driver's ceiling, as for one
/// request).
pub const MAX_REGISTERED_BYTES: u64 = 1 << 30;

/// The environment variable naming the endpoint when the program gives none.
pub const DEVICE_ENV: &str = "VFPGA_DEVICE";

/// One argument of a run.
#[derive(Debug)]
pub enum Arg<'a> {
    /// A scalar: its type and bits (zero-extended).
    Scalar(ElemType, u64),
    /// An input buffer of elements of the type.
    In(ElemType, &'a [u8]),
    /// An output buffer of elements of the type.
    Out(ElemType, &'a mut [u8]),
}

impl<'a> Arg<'a> {
    /// A scalar.
    pub fn scalar(ty: ElemType, bits: u64) -> Self {
        Arg::Scalar(ty, bits)
    }

    /// An `f32` scalar.
    pub fn f32(v: f32) -> Self {
        Arg::Scalar(ElemType::F32, u64::from(v.to_bits()))
    }

    /// An input buffer of typed elements.
    pub fn input<T: Pod>(data: &'a [T]) -> Self {
        Arg::In(T::TYPE, buffer::bytes(data))
    }

    /// An output buffer of typed elements.
    pub fn output<T: Pod>(data: &'a mut [T]) -> Self {
        Arg::Out(T::TYPE, buffer::bytes_mut(data))
    }
}

/// What `GET_INFO` says about the device.
#[derive(Clone, Debug)]
pub struct Info {
    /// Device (guest) name in the daemon's configuration.
    pub name: String,
    /// Engine: "sim", "pl" or "remote".
    pub engine: String,
    /// Loaded bitstream or catalogue.
    pub bitstream: String,
    /// Daemon version.
    pub daemon_version: String,
    /// Raw structure.
    pub raw: DeviceInfo,
}

/// Outcome of a successful run.
#[derive(Clone, Copy, Debug)]
pub struct RunStats {
    /// Bytes the device wrote into the output buffers.
    pub written: u64,
    /// Time the engine spent.
    pub engine: Duration,
    /// Descriptors the request took through a device node (header, one per physically
    /// contiguous stretch of each buffer, response; at most 65535); 0 on a stream.
    pub segments: u16,
}

/// An open vfpga device: a device node, or a connection to vfpgad.
#[derive(Debug)]
pub struct Device {
    link: Link,
    endpoint: Endpoint,
}

fn text(field: &[u8]) -> String {
    name_str(field).unwrap_or("?").to_owned()
}

impl Device {
    /// Opens an endpoint: a device node path (`/dev/vfpga0`), `vsock://CID:PORT`,
    /// `unix:PATH`, `tls://HOST:PORT` or `vchan://[DOMID][/PATH]`, with the options
    /// from the environment ([`Options::from_env`]).
    pub fn open(endpoint: impl AsRef<str>) -> Result<Self, Error> {
        Self::open_with(endpoint, &Options::from_env())
    }

    /// The endpoint `VFPGA_DEVICE` names, else [`DEFAULT_DEVICE`].
    pub fn open_default() -> Result<Self, Error> {
        let ep = std::env::var(DEVICE_ENV).unwrap_or_else(|_| DEFAULT_DEVICE.to_owned());
        Self::open(ep)
    }

    /// Opens an endpoint with explicit options.
    pub fn open_with(endpoint: impl AsRef<str>, options: &Options) -> Result<Self, Error> {
        let endpoint =
            Endpoint::parse(endpoint.as_ref()).map_err(|e| Error::Usage(e.to_string()))?;
        let link = connect::open(&endpoint, options)?;
        let dev = Self { link, endpoint };
        if !matches!(dev.endpoint, Endpoint::Device(_)) {
            // One round trip now: a refused certificate or something else listening
            // there shows at open, not on the first real request.
            dev.link.nop().map_err(|e| match e {
                Error::Link { source, .. } => Error::Connect {
                    endpoint: dev.endpoint.to_string(),
                    source,
                },
                e => e,
            })?;
        }
        Ok(dev)
    }

    /// The endpoint it was opened on.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// How often the connection to vfpgad was made again after it broke (a vfpgad
    /// restart or upgrade); always 0 on a device node.
    pub fn reconnects(&self) -> u64 {
        self.link.reconnects()
    }

    /// Device information.
    pub fn info(&self) -> Result<Info, Error> {
        let raw = self.link.info()?;
        Ok(Info {
            name: text(&raw.device_name),
            engine: text(&raw.engine),
            bitstream: text(&raw.bitstream),
            daemon_version: text(&raw.daemon_version),
            raw,
        })
    }

    /// The kernel catalogue with signatures.
    pub fn kernels(&self) -> Result<Vec<KernelSig>, Error> {
        const PAGE: usize = 16;
        let mut out = Vec::new();
        let mut descs = vec![[0u8; KernelDesc::SIZE]; PAGE];
        loop {
            let start = u32::try_from(out.len()).unwrap_or(u32::MAX);
            let (n, total) = self.link.list(start, &mut descs)?;
            for raw in &descs[..n] {
                let sig = KernelSig::from_desc(&KernelDesc::from_bytes(raw)).map_err(|e| {
                    Error::Device {
                        op: "list kernels".into(),
                        status: Status::BadRequest,
                        detail: format!("unreadable kernel descriptor: {e}"),
                    }
                })?;
                out.push(sig);
            }
            if n == 0 || out.len() as u64 >= total {
                return Ok(out);
            }
        }
    }

    /// The signature of kernel `name`; the error lists the available kernels.
    pub fn kernel(&self, name: &str) -> Result<KernelSig, Error> {
        let all = self.kernels()?;
        all.iter()
            .find(|k| k.name == name)
            .cloned()
            .ok_or_else(|| Error::UnknownKernel {
                name: name.to_owned(),
                available: all.into_iter().map(|k| k.name).collect(),
            })
    }

    /// Opens a session on kernel `name`.
    pub fn session(&self, name: &str) -> Result<Session<'_>, Error> {
        let sig = self.kernel(name)?;
        let id = self
            .link
            .open_session(&name_field(name)?, &format!("open session on `{name}`"))?;
        Ok(Session {
            dev: self,
            id,
            run_op: format!("run `{}`", sig.name),
            sig,
        })
    }

    /// Loads bitstream `name` from the daemon's library.
    pub fn load_bitstream(&self, name: &str) -> Result<(), Error> {
        self.link
            .load(&name_field(name)?, &format!("load bitstream `{name}`"))
    }

    /// Device-wide statistics.
    pub fn stats(&self) -> Result<Stats, Error> {
        self.link.stats(0)
    }

    /// The policy this guest runs under (quotas, rates, its share of the engine) and
    /// its use now. `UNSUPPORTED` from a vfpgad older than `GET_LIMITS`.
    pub fn limits(&self) -> Result<Limits, Error> {
        self.link.limits()
    }

    /// One round trip through a request queue; returns the time the driver (or, on a
    /// stream, this process) measured.
    pub fn nop(&self) -> Result<Duration, Error> {
        self.link.nop()
    }

    /// Registers `buf` with the device: through a device node its pages are pinned
    /// now, once, and every run given a slice of it names it instead of pinning it
    /// again. The pages count against the locked-memory limit (`ulimit -l`) until the
    /// buffer is dropped; a buffer holds at most [`MAX_REGISTERED_BYTES`] (1 GiB), and a
    /// device node at most 64 registrations per open file by default (the module's
    /// `max_registered`). On a stream, or with a module older
    /// than registration, this registers nothing: the buffer travels in the stream, or
    /// is pinned per run, like any other.
    pub fn register(&self, buf: AlignedBuf) -> Result<Registered<'_>, Error> {
        if buf.is_empty() {
            return Err(Error::Usage("cannot register an empty buffer".into()));
        }
        if buf.len() as u64 > MAX_REGISTERED_BYTES {
            return Err(Error::Usage(format!(
                "cannot register {} bytes: a registered buffer holds at most 1 GiB (register several, or pass the buffer unregistered)",
                buf.len()
            )));
        }
        let reg = self
            .link
            .register(buf.as_slice().as_ptr() as usize, buf.len())?;
        Ok(Registered {
            dev: self,
            id: reg.map(|r| r.0),
            segments: reg.map_or(0, |r| r.1),
            buf,
        })
    }
}

/// A buffer registered with its device ([`Device::register`]): pinned once, named by
/// id in runs given a slice of it; unregistered (and unpinned once no run uses it) when
/// dropped.
#[derive(Debug)]
pub struct Registered<'d> {
    dev: &'d Device,
    /// The driver's id; `None` on a stream.
    id: Option<u32>,
    segments: u32,
    buf: AlignedBuf,
}

impl Registered<'_> {
    /// Physically contiguous stretches of the buffer (descriptors a run of all of it
    /// takes); 0 when nothing was registered (a stream, or an older module).
    pub fn segments(&self) -> u32 {
        self.segments
    }

    /// The driver's id for it (`None` on a stream).
    pub fn id(&self) -> Option<u32> {
        self.id
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// True if empty (never: registration refuses empty buffers).
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        self.buf.as_slice()
    }

    /// The bytes, mutably.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        self.buf.as_mut_slice()
    }

    /// Unregisters now and gives the buffer back.
    pub fn unregister(mut self) -> Result<AlignedBuf, Error> {
        let r = self.unregister_inner();
        let buf = std::mem::replace(&mut self.buf, AlignedBuf::zeroed(0));
        r.map(|()| buf)
    }

    fn unregister_inner(&mut self) -> Result<(), Error> {
        match self.id.take() {
            Some(id) => self.dev.link.unregister(id),
            None => Ok(()),
        }
    }
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        // An error here (the device was removed) leaves nothing to undo: closing the
        // file ends every registration.
        let _ = self.unregister_inner();
    }
}

fn name_field(name: &str) -> Result<[u8; 32], Error> {
    vfpga_proto::wire::name_field::<32>(name)
        .ok_or_else(|| Error::Usage(format!("name `{name}` must be 1 to 31 bytes without NUL")))
}

/// A kernel bound to this process; closed when dropped.
#[derive(Debug)]
pub struct Session<'d> {
    dev: &'d Device,
    id: u64,
    sig: KernelSig,
    /// "run `KERNEL`", for messages: made once, so a run allocates nothing.
    run_op: String,
}

impl Session<'_> {
    /// The kernel's signature.
    pub fn signature(&self) -> &KernelSig {
        &self.sig
    }

    /// Runs the kernel on `args` (in signature order). Output buffers are written in
    /// place.
    pub fn run(&self, args: &mut [Arg<'_>]) -> Result<RunStats, Error> {
        let name = &self.sig.name;
        if args.len() > MAX_ARGS {
            return Err(Error::Usage(format!(
                "{name}: at most {MAX_ARGS} arguments"
            )));
        }
        let r = self.dev.link.run(self.id, args, &self.run_op)?;
        match r.status {
            Status::Ok => Ok(RunStats {
                written: r.written,
                engine: Duration::from_nanos(r.duration_ns),
                segments: r.segments,
            }),
            s => {
                let detail = if s == Status::BadArgument {
                    let arg = self.sig.args.get(r.detail as usize);
                    arg.map_or(format!("argument {}", r.detail), |x| {
                        format!(
                            "argument {} `{}` of {}",
                            r.detail,
                            x.name,
                            self.sig.render()
                        )
                    })
                } else {
                    String::new()
                };
                Err(Error::Device {
                    op: self.run_op.clone(),
                    status: s,
                    detail,
                })
            }
        }
    }

    /// This session's statistics.
    pub fn stats(&self) -> Result<Stats, Error> {
        self.dev.link.stats(self.id)
    }

    /// Closes the session now (dropping it does the same, ignoring errors).
    pub fn close(mut self) -> Result<(), Error> {
        let r = self.close_inner();
        self.id = 0;
        r
    }

    fn close_inner(&mut self) -> Result<(), Error> {
        if self.id == 0 {
            return Ok(());
        }
        self.dev.link.close_session(self.id)
    }
}

impl Drop for Session<'_> {
    fn drop(&mut self) {
        let _ = self.close_inner();
    }
}
