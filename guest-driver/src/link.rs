//! How requests reach vfpgad: through the `virtio_vfpga` kernel module's ioctls on
//! `/dev/vfpgaN`, or as the stream encoding (docs/protocol.md section 10) on a socket
//! or a Xen vchan. Both answer the same operations with the same statuses; the
//! [`Device`](crate::Device) above does not know which it has.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use vfpga_proto::stream::{read_response, write_request, StreamError};
use vfpga_proto::{
    ArgEntry, ArgKind, DeviceInfo, ElemType, KernelDesc, Limits, Opcode, RequestHeader, Response,
    Stats, Status, MAX_ARGS,
};

use crate::error::Error;
use crate::ioctl;
use crate::Arg;

/// What a run came back with.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RunOutcome {
    pub status: Status,
    pub detail: u32,
    pub written: u64,
    pub duration_ns: u64,
}

/// A byte stream to vfpgad.
pub(crate) trait Stream: Read + Write + Send {}
impl<T: Read + Write + Send> Stream for T {}

/// The stream side: one connection, one request at a time.
pub(crate) struct StreamLink {
    conn: Box<dyn Stream>,
    tag: u64,
    /// Set once the connection is out of step (a request failed half-way).
    broken: bool,
}

/// A link to vfpgad.
pub(crate) enum Link {
    /// `/dev/vfpgaN`.
    Ioctl(File),
    /// A socket or a vchan.
    Stream(Mutex<StreamLink>),
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Link::Ioctl(file) => write!(f, "Link::Ioctl({file:?})"),
            Link::Stream(_) => f.write_str("Link::Stream"),
        }
    }
}

fn status(raw: u16) -> Status {
    Status::from_raw(raw).unwrap_or(Status::EngineError)
}

/// `Ok` for an OK status, else the device error for `op`.
fn check(op: &str, raw: u16) -> Result<(), Error> {
    match status(raw) {
        Status::Ok => Ok(()),
        s => Err(Error::Device {
            op: op.into(),
            status: s,
            detail: String::new(),
        }),
    }
}

impl Link {
    /// A stream link over `conn`.
    pub fn stream(conn: Box<dyn Stream>) -> Self {
        Link::Stream(Mutex::new(StreamLink {
            conn,
            tag: 0,
            broken: false,
        }))
    }

    fn ioctl<T>(file: &File, op: &'static str, request: u64, arg: &mut T) -> Result<(), Error> {
        ioctl::call(file.as_raw_fd(), request, arg).map_err(|source| Error::Io { op, source })
    }

    fn locked(m: &Mutex<StreamLink>) -> MutexGuard<'_, StreamLink> {
        m.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `GET_INFO`.
    pub fn info(&self) -> Result<DeviceInfo, Error> {
        match self {
            Link::Ioctl(f) => {
                let mut a = ioctl::IocInfo {
                    info: [0; DeviceInfo::SIZE],
                    status: 0,
                    reserved: [0; 3],
                };
                Self::ioctl(f, "info", ioctl::INFO, &mut a)?;
                check("info", a.status)?;
                Ok(DeviceInfo::from_bytes(&a.info))
            }
            Link::Stream(s) => {
                let mut raw = [0u8; DeviceInfo::SIZE];
                let r = Self::locked(s).call(
                    "info",
                    Opcode::GetInfo,
                    0,
                    &[ArgEntry::output(ElemType::U8, DeviceInfo::SIZE as u64)],
                    &[],
                    &mut [&mut raw],
                )?;
                check("info", r.status)?;
                Ok(DeviceInfo::from_bytes(&raw))
            }
        }
    }

    /// `LIST_KERNELS` from `start` into `descs`: (records written, kernels in all).
    pub fn list(
        &self,
        start: u32,
        descs: &mut [[u8; KernelDesc::SIZE]],
    ) -> Result<(usize, u64), Error> {
        let capacity = u32::try_from(descs.len()).unwrap_or(u32::MAX);
        match self {
            Link::Ioctl(f) => {
                let mut a = ioctl::IocList {
                    descs: descs.as_mut_ptr() as u64,
                    start,
                    capacity,
                    ..Default::default()
                };
                Self::ioctl(f, "list kernels", ioctl::LIST_KERNELS, &mut a)?;
                check("list kernels", a.status)?;
                Ok(((a.count.min(capacity)) as usize, u64::from(a.total)))
            }
            Link::Stream(s) => {
                let bytes = descs.as_flattened_mut();
                let len = bytes.len() as u64;
                let r = Self::locked(s).call(
                    "list kernels",
                    Opcode::ListKernels,
                    0,
                    &[
                        ArgEntry::scalar(ElemType::U32, u64::from(start)),
                        ArgEntry::output(ElemType::U8, len),
                    ],
                    &[],
                    &mut [bytes],
                )?;
                check("list kernels", r.status)?;
                let n = usize::try_from(r.written).unwrap_or(0) / KernelDesc::SIZE;
                Ok((n.min(descs.len()), r.value))
            }
        }
    }

    /// `OPEN_SESSION` (op names the kernel, for messages).
    pub fn open_session(&self, name: &[u8; 32], op: &str) -> Result<u64, Error> {
        match self {
            Link::Ioctl(f) => {
                let mut a = ioctl::IocSession {
                    name: *name,
                    ..Default::default()
                };
                Self::ioctl(f, "open session", ioctl::OPEN_SESSION, &mut a)?;
                check(op, a.status)?;
                Ok(a.session)
            }
            Link::Stream(s) => {
                let r = Self::locked(s).named(op, Opcode::OpenSession, name)?;
                check(op, r.status)?;
                Ok(r.value)
            }
        }
    }

    /// `LOAD_BITSTREAM`.
    pub fn load(&self, name: &[u8; 32], op: &str) -> Result<(), Error> {
        match self {
            Link::Ioctl(f) => {
                let mut a = ioctl::IocSession {
                    name: *name,
                    ..Default::default()
                };
                Self::ioctl(f, "load bitstream", ioctl::LOAD_BITSTREAM, &mut a)?;
                check(op, a.status)
            }
            Link::Stream(s) => {
                let r = Self::locked(s).named(op, Opcode::LoadBitstream, name)?;
                check(op, r.status)
            }
        }
    }

    /// `CLOSE_SESSION`.
    pub fn close_session(&self, session: u64) -> Result<(), Error> {
        match self {
            Link::Ioctl(f) => {
                let mut a = ioctl::IocSession {
                    session,
                    ..Default::default()
                };
                Self::ioctl(f, "close session", ioctl::CLOSE_SESSION, &mut a)?;
                check("close session", a.status)
            }
            Link::Stream(s) => {
                let r = Self::locked(s).call(
                    "close session",
                    Opcode::CloseSession,
                    session,
                    &[],
                    &[],
                    &mut [],
                )?;
                check("close session", r.status)
            }
        }
    }

    /// `GET_STATS` of the device (0) or a session.
    pub fn stats(&self, session: u64) -> Result<Stats, Error> {
        match self {
            Link::Ioctl(f) => {
                let mut a = ioctl::IocStats {
                    session,
                    stats: [0; Stats::SIZE],
                    status: 0,
                    reserved: [0; 3],
                };
                Self::ioctl(f, "stats", ioctl::STATS, &mut a)?;
                check("stats", a.status)?;
                Ok(Stats::from_bytes(&a.stats))
            }
            Link::Stream(s) => {
                let mut raw = [0u8; Stats::SIZE];
                let r = Self::locked(s).call(
                    "stats",
                    Opcode::GetStats,
                    session,
                    &[ArgEntry::output(ElemType::U8, Stats::SIZE as u64)],
                    &[],
                    &mut [&mut raw],
                )?;
                check("stats", r.status)?;
                Ok(Stats::from_bytes(&raw))
            }
        }
    }

    /// `GET_LIMITS`.
    pub fn limits(&self) -> Result<Limits, Error> {
        match self {
            Link::Ioctl(f) => {
                let mut a = ioctl::IocLimits {
                    limits: [0; Limits::SIZE],
                    status: 0,
                    reserved: [0; 3],
                };
                Self::ioctl(f, "limits", ioctl::LIMITS, &mut a)?;
                check("limits", a.status)?;
                Ok(Limits::from_bytes(&a.limits))
            }
            Link::Stream(s) => {
                let mut raw = [0u8; Limits::SIZE];
                let r = Self::locked(s).call(
                    "limits",
                    Opcode::GetLimits,
                    0,
                    &[ArgEntry::output(ElemType::U8, Limits::SIZE as u64)],
                    &[],
                    &mut [&mut raw],
                )?;
                check("limits", r.status)?;
                Ok(Limits::from_bytes(&raw))
            }
        }
    }

    /// `NOP`: the round trip as the driver (ioctl) or this process (stream) timed it.
    pub fn nop(&self) -> Result<Duration, Error> {
        match self {
            Link::Ioctl(f) => {
                let mut a = ioctl::IocNop::default();
                Self::ioctl(f, "nop", ioctl::NOP, &mut a)?;
                check("nop", a.status)?;
                Ok(Duration::from_nanos(a.duration_ns))
            }
            Link::Stream(s) => {
                let t = Instant::now();
                let r = Self::locked(s).call("nop", Opcode::Nop, 0, &[], &[], &mut [])?;
                check("nop", r.status)?;
                Ok(t.elapsed())
            }
        }
    }

    /// `RUN` of `session` on `args` (at most [`MAX_ARGS`], checked by the caller).
    pub fn run(&self, session: u64, args: &mut [Arg<'_>], op: &str) -> Result<RunOutcome, Error> {
        match self {
            Link::Ioctl(f) => {
                let mut a = ioctl::IocRun {
                    session,
                    n_args: u32::try_from(args.len()).unwrap_or(u32::MAX),
                    ..Default::default()
                };
                for (slot, arg) in a.args.iter_mut().zip(args.iter_mut()) {
                    let (kind, ty, value, addr) = match arg {
                        Arg::Scalar(ty, bits) => (ArgKind::Scalar, *ty, *bits, 0),
                        Arg::In(ty, d) => (ArgKind::In, *ty, d.len() as u64, d.as_ptr() as u64),
                        Arg::Out(ty, d) => {
                            (ArgKind::Out, *ty, d.len() as u64, d.as_mut_ptr() as u64)
                        }
                    };
                    *slot = ioctl::IocArg {
                        kind: kind.raw(),
                        ty: ty.raw(),
                        value,
                        addr,
                        ..Default::default()
                    };
                }
                ioctl::call(f.as_raw_fd(), ioctl::RUN, &mut a).map_err(|source| {
                    Error::IoDuring {
                        op: op.to_owned(),
                        source,
                    }
                })?;
                Ok(RunOutcome {
                    status: status(a.status),
                    detail: a.detail,
                    written: a.written,
                    duration_ns: a.duration_ns,
                })
            }
            Link::Stream(s) => {
                let n = args.len();
                let mut table = [ArgEntry::default(); MAX_ARGS];
                let mut ins: [&[u8]; MAX_ARGS] = [&[]; MAX_ARGS];
                let mut outs: [&mut [u8]; MAX_ARGS] = Default::default();
                let (mut ni, mut no) = (0, 0);
                for (slot, arg) in table.iter_mut().zip(args.iter_mut()) {
                    *slot = match arg {
                        Arg::Scalar(ty, bits) => ArgEntry::scalar(*ty, *bits),
                        Arg::In(ty, d) => {
                            ins[ni] = d;
                            ni += 1;
                            ArgEntry::input(*ty, d.len() as u64)
                        }
                        Arg::Out(ty, d) => {
                            let len = d.len() as u64;
                            outs[no] = d;
                            no += 1;
                            ArgEntry::output(*ty, len)
                        }
                    };
                }
                let r = Self::locked(s).call(
                    op,
                    Opcode::Run,
                    session,
                    &table[..n],
                    &ins[..ni],
                    &mut outs[..no],
                )?;
                Ok(RunOutcome {
                    status: status(r.status),
                    detail: r.detail,
                    written: r.written,
                    duration_ns: r.duration_ns,
                })
            }
        }
    }
}

impl StreamLink {
    fn named(&mut self, op: &str, code: Opcode, name: &[u8; 32]) -> Result<Response, Error> {
        let len = name.iter().position(|&b| b == 0).unwrap_or(name.len());
        self.call(
            op,
            code,
            0,
            &[ArgEntry::input(ElemType::U8, len as u64)],
            &[&name[..len]],
            &mut [],
        )
    }

    /// One exchange: the request with its inputs, then the response and, when it is
    /// OK, the outputs, read straight into the caller's buffers.
    fn call(
        &mut self,
        op: &str,
        code: Opcode,
        session: u64,
        args: &[ArgEntry],
        inputs: &[&[u8]],
        outputs: &mut [&mut [u8]],
    ) -> Result<Response, Error> {
        if self.broken {
            return Err(Error::Link {
                op: op.to_owned(),
                source: io::Error::new(
                    io::ErrorKind::BrokenPipe,
                    "an earlier request on this connection failed half-way",
                ),
            });
        }
        self.tag = self.tag.wrapping_add(1);
        self.exchange(code, session, args, inputs, outputs)
            .map_err(|source| {
                // Whatever failed, the connection may be out of step: never reuse it.
                self.broken = true;
                Error::Link {
                    op: op.to_owned(),
                    source,
                }
            })
    }

    fn exchange(
        &mut self,
        code: Opcode,
        session: u64,
        args: &[ArgEntry],
        inputs: &[&[u8]],
        outputs: &mut [&mut [u8]],
    ) -> io::Result<Response> {
        let hdr = RequestHeader::new(code, self.tag, session, args.len());
        write_request(&mut self.conn, &hdr, args)?;
        for i in inputs {
            self.conn.write_all(i)?;
        }
        self.conn.flush()?;
        let resp = match read_response(&mut self.conn) {
            Ok(r) => r,
            Err(StreamError::Io(e)) => return Err(e),
            Err(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "vfpgad closed the connection",
                ))
            }
        };
        let bad = |m: String| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("vfpgad broke the protocol: {m}"),
            )
        };
        if resp.tag != self.tag {
            return Err(bad(format!(
                "an answer for tag {} while waiting for {}",
                resp.tag, self.tag
            )));
        }
        if resp.status != Status::Ok.raw() {
            return Ok(resp);
        }
        let room: u64 = outputs.iter().map(|o| o.len() as u64).sum();
        if resp.written > room {
            return Err(bad(format!(
                "vfpgad announced {} output bytes for {room}",
                resp.written
            )));
        }
        let mut left = resp.written;
        for o in outputs.iter_mut() {
            let n = usize::try_from(left).unwrap_or(usize::MAX).min(o.len());
            self.conn.read_exact(&mut o[..n])?;
            left -= n as u64;
        }
        Ok(resp)
    }
}
