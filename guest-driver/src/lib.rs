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
//! Buffers stay where they are: the kernel module pins their pages and the device reads
//! and writes them in place.

mod buffer;
mod error;
pub mod ioctl;

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use vfpga_proto::wire::name_str;
use vfpga_proto::{ArgKind, DeviceInfo, ElemType, KernelDesc, KernelSig, Stats, Status, MAX_ARGS};

pub use buffer::{AlignedBuf, Pod};
pub use error::Error;

/// The default device node.
pub const DEFAULT_DEVICE: &str = "/dev/vfpga0";

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
}

/// An open `/dev/vfpgaN`.
#[derive(Debug)]
pub struct Device {
    file: File,
    path: PathBuf,
}

fn status(raw: u16) -> Status {
    Status::from_raw(raw).unwrap_or(Status::EngineError)
}

fn text(field: &[u8]) -> String {
    name_str(field).unwrap_or("?").to_owned()
}

impl Device {
    /// Opens a vfpga device node.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, Error> {
        let path = path.as_ref().to_owned();
        let file = File::options()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|source| Error::Open {
                path: path.clone(),
                source,
            })?;
        Ok(Self { file, path })
    }

    /// The node's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn ioctl<T>(&self, op: &'static str, request: u64, arg: &mut T) -> Result<(), Error> {
        ioctl::call(self.file.as_raw_fd(), request, arg).map_err(|source| Error::Io { op, source })
    }

    fn check(op: &'static str, raw: u16) -> Result<(), Error> {
        match status(raw) {
            Status::Ok => Ok(()),
            s => Err(Error::Device {
                op: op.into(),
                status: s,
                detail: String::new(),
            }),
        }
    }

    /// Device information.
    pub fn info(&self) -> Result<Info, Error> {
        let mut a = ioctl::IocInfo {
            info: [0; DeviceInfo::SIZE],
            status: 0,
            reserved: [0; 3],
        };
        self.ioctl("info", ioctl::INFO, &mut a)?;
        Self::check("info", a.status)?;
        let raw = DeviceInfo::from_bytes(&a.info);
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
        const PAGE: u32 = 16;
        let mut out = Vec::new();
        let mut descs = vec![[0u8; KernelDesc::SIZE]; PAGE as usize];
        loop {
            let mut a = ioctl::IocList {
                descs: descs.as_mut_ptr() as u64,
                start: u32::try_from(out.len()).unwrap_or(u32::MAX),
                capacity: PAGE,
                ..Default::default()
            };
            self.ioctl("list kernels", ioctl::LIST_KERNELS, &mut a)?;
            Self::check("list kernels", a.status)?;
            for raw in &descs[..a.count.min(PAGE) as usize] {
                let sig = KernelSig::from_desc(&KernelDesc::from_bytes(raw)).map_err(|e| {
                    Error::Device {
                        op: "list kernels".into(),
                        status: Status::BadRequest,
                        detail: format!("unreadable kernel descriptor: {e}"),
                    }
                })?;
                out.push(sig);
            }
            if a.count == 0 || out.len() >= a.total as usize {
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
        let mut a = ioctl::IocSession {
            name: name_field(name)?,
            ..Default::default()
        };
        self.ioctl("open session", ioctl::OPEN_SESSION, &mut a)?;
        Self::check("open session", a.status)
            .map_err(|e| e.with_op(format!("open session on `{name}`")))?;
        Ok(Session {
            dev: self,
            id: a.session,
            sig,
        })
    }

    /// Loads bitstream `name` from the daemon's library; returns the new kernel count.
    pub fn load_bitstream(&self, name: &str) -> Result<(), Error> {
        let mut a = ioctl::IocSession {
            name: name_field(name)?,
            ..Default::default()
        };
        self.ioctl("load bitstream", ioctl::LOAD_BITSTREAM, &mut a)?;
        Self::check("load bitstream", a.status)
            .map_err(|e| e.with_op(format!("load bitstream `{name}`")))
    }

    /// Device-wide statistics.
    pub fn stats(&self) -> Result<Stats, Error> {
        self.stats_of(0)
    }

    fn stats_of(&self, session: u64) -> Result<Stats, Error> {
        let mut a = ioctl::IocStats {
            session,
            stats: [0; Stats::SIZE],
            status: 0,
            reserved: [0; 3],
        };
        self.ioctl("stats", ioctl::STATS, &mut a)?;
        Self::check("stats", a.status)?;
        Ok(Stats::from_bytes(&a.stats))
    }

    /// One round trip through a request queue; returns the time the driver measured.
    pub fn nop(&self) -> Result<Duration, Error> {
        let mut a = ioctl::IocNop::default();
        self.ioctl("nop", ioctl::NOP, &mut a)?;
        Self::check("nop", a.status)?;
        Ok(Duration::from_nanos(a.duration_ns))
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
        let mut a = ioctl::IocRun {
            session: self.id,
            n_args: u32::try_from(args.len()).unwrap_or(u32::MAX),
            ..Default::default()
        };
        for (slot, arg) in a.args.iter_mut().zip(args.iter_mut()) {
            *slot = match arg {
                Arg::Scalar(ty, bits) => ioctl::IocArg {
                    kind: ArgKind::Scalar.raw(),
                    ty: ty.raw(),
                    value: *bits,
                    ..Default::default()
                },
                Arg::In(ty, data) => ioctl::IocArg {
                    kind: ArgKind::In.raw(),
                    ty: ty.raw(),
                    value: data.len() as u64,
                    addr: data.as_ptr() as u64,
                    ..Default::default()
                },
                Arg::Out(ty, data) => ioctl::IocArg {
                    kind: ArgKind::Out.raw(),
                    ty: ty.raw(),
                    value: data.len() as u64,
                    addr: data.as_mut_ptr() as u64,
                    ..Default::default()
                },
            };
        }
        self.dev
            .ioctl("run", ioctl::RUN, &mut a)
            .map_err(|e| e.with_op(format!("run `{name}`")))?;
        match status(a.status) {
            Status::Ok => Ok(RunStats {
                written: a.written,
                engine: Duration::from_nanos(a.duration_ns),
            }),
            s => {
                let detail = if s == Status::BadArgument {
                    let arg = self.sig.args.get(a.detail as usize);
                    arg.map_or(format!("argument {}", a.detail), |x| {
                        format!(
                            "argument {} `{}` of {}",
                            a.detail,
                            x.name,
                            self.sig.render()
                        )
                    })
                } else {
                    String::new()
                };
                Err(Error::Device {
                    op: format!("run `{name}`"),
                    status: s,
                    detail,
                })
            }
        }
    }

    /// This session's statistics.
    pub fn stats(&self) -> Result<Stats, Error> {
        self.dev.stats_of(self.id)
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
        let mut a = ioctl::IocSession {
            session: self.id,
            ..Default::default()
        };
        self.dev
            .ioctl("close session", ioctl::CLOSE_SESSION, &mut a)?;
        Device::check("close session", a.status)
    }
}

impl Drop for Session<'_> {
    fn drop(&mut self) {
        let _ = self.close_inner();
    }
}
