//! How requests reach vfpgad: through the `virtio_vfpga` kernel module's ioctls on
//! `/dev/vfpgaN`, or as the stream encoding (docs/protocol.md section 10) on a socket
//! or a Xen vchan. Both answer the same operations with the same statuses; the
//! [`Device`](crate::Device) above does not know which it has.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use vfpga_transport::Endpoint;

use vfpga_proto::stream::{read_response, write_request_with, StreamError};
use vfpga_proto::{
    ArgEntry, ArgKind, DeviceInfo, ElemType, KernelDesc, Limits, Opcode, RequestHeader, Response,
    Stats, Status, MAX_ARGS,
};

use crate::connect::{self, Options};
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
    /// Descriptors of the chain (device node only; 0 on a stream).
    pub segments: u16,
}

/// A buffer registered through a device node: its place in this process and its id.
#[derive(Clone, Copy, Debug)]
struct Span {
    start: usize,
    len: usize,
    id: u32,
}

/// `/dev/vfpgaN`, and the buffers registered through it.
#[derive(Debug)]
pub(crate) struct IoctlLink {
    file: File,
    /// At most the module's `max_registered` (64 by default): a scan is cheap.
    regs: Mutex<Vec<Span>>,
}

impl IoctlLink {
    pub fn new(file: File) -> Self {
        Self {
            file,
            regs: Mutex::new(Vec::new()),
        }
    }

    /// The registrations, locked (once per run).
    fn regs(&self) -> MutexGuard<'_, Vec<Span>> {
        self.regs.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The registration in `regs` holding all of the `len` bytes at `start`, as (id, offset).
fn registered(regs: &[Span], start: *const u8, len: usize) -> Option<(u32, u64)> {
    let start = start as usize;
    regs.iter().find_map(|r| {
        let off = start.checked_sub(r.start)?;
        (off.checked_add(len)? <= r.len).then_some((r.id, off as u64))
    })
}

impl AsRawFd for IoctlLink {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.file.as_raw_fd()
    }
}

/// A byte stream to vfpgad.
pub(crate) trait Stream: Read + Write + Send {
    /// Bounds how long a read waits (`None`: for ever), where the transport can.
    fn read_timeout(&self, t: Option<Duration>) -> io::Result<()>;
}

impl Stream for std::os::unix::net::UnixStream {
    fn read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        self.set_read_timeout(t)
    }
}

impl Stream for vfpga_transport::vsock::VsockStream {
    fn read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        vfpga_proto::stream::TimeoutSocket::set_read_timeout(self, t)
    }
}

impl Stream for rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream> {
    fn read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        self.sock.set_read_timeout(t)
    }
}

impl Stream for vfpga_transport::vchan::Vchan {
    /// A vchan is no socket; its ring ends when the other domain's end does.
    fn read_timeout(&self, _t: Option<Duration>) -> io::Result<()> {
        Ok(())
    }
}

/// Longest wait for vfpgad's first answer on a new connection after a restart. A
/// connection waits in a supervisor's listen queue until the new daemon takes it
/// (milliseconds, seconds if the daemon keeps failing); one that gets no answer at
/// all was lost on the way (a userspace vsock device has lost such a connection's
/// events when the guest reconnected at once) and is made again.
const RESUME_TIME: Duration = Duration::from_secs(10);

/// The stream side: one connection, one request at a time. When the connection
/// breaks (vfpgad restarted), the next request connects again, reopens the sessions
/// and is sent; a request interrupted by the break is sent once more.
pub(crate) struct StreamLink {
    /// `None` once the connection broke (or went out of step).
    conn: Option<Box<dyn Stream>>,
    tag: u64,
    endpoint: Endpoint,
    options: Options,
    /// Sessions by the handle the caller holds; vfpgad's ids change with connections.
    sessions: HashMap<u64, Reopen>,
    last_handle: u64,
    reconnects: u64,
}

/// A session as vfpgad knows it on the current connection.
struct Reopen {
    kernel: [u8; 32],
    /// vfpgad's id; `None` when the kernel was not offered any more after a reconnect.
    id: Option<u64>,
}

/// A link to vfpgad.
pub(crate) enum Link {
    /// `/dev/vfpgaN`.
    Ioctl(IoctlLink),
    /// A socket or a vchan.
    Stream(Box<Mutex<StreamLink>>),
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Link::Ioctl(l) => write!(f, "Link::Ioctl({:?})", l.file),
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
    /// A stream link over `conn`, opened on `endpoint` with `options` (used again to
    /// reconnect).
    pub fn stream(conn: Box<dyn Stream>, endpoint: Endpoint, options: Options) -> Self {
        Link::Stream(Box::new(Mutex::new(StreamLink {
            conn: Some(conn),
            tag: 0,
            endpoint,
            options,
            sessions: HashMap::new(),
            last_handle: 0,
            reconnects: 0,
        })))
    }

    /// How often a stream link connected again after its connection broke.
    pub fn reconnects(&self) -> u64 {
        match self {
            Link::Ioctl(_) => 0,
            Link::Stream(s) => Self::locked(s).reconnects,
        }
    }

    fn ioctl<T>(
        link: &IoctlLink,
        op: &'static str,
        request: u64,
        arg: &mut T,
    ) -> Result<(), Error> {
        ioctl::call(link.as_raw_fd(), request, arg).map_err(|source| Error::Io { op, source })
    }

    /// Registers `len` bytes at `addr` (memory the caller keeps mapped until
    /// [`Link::unregister`]): (id, physically contiguous stretches). `None` on a stream,
    /// where buffers travel in the stream and nothing is pinned.
    pub fn register(&self, addr: usize, len: usize) -> Result<Option<(u32, u32)>, Error> {
        let Link::Ioctl(l) = self else {
            return Ok(None);
        };
        let mut a = ioctl::IocRegister {
            addr: addr as u64,
            len: len as u64,
            ..Default::default()
        };
        match ioctl::call(l.as_raw_fd(), ioctl::REGISTER, &mut a) {
            Ok(()) => {}
            // A module older than registration: runs pin the buffer each time.
            Err(e) if e.raw_os_error() == Some(libc::ENOTTY) => return Ok(None),
            Err(source) => {
                return Err(Error::Io {
                    op: "register a buffer",
                    source,
                })
            }
        }
        l.regs().push(Span {
            start: addr,
            len,
            id: a.id,
        });
        Ok(Some((a.id, a.segments)))
    }

    /// Ends registration `id`: runs stop naming it at once; the driver unpins its
    /// pages once the runs that used it are over.
    pub fn unregister(&self, id: u32) -> Result<(), Error> {
        let Link::Ioctl(l) = self else {
            return Ok(());
        };
        l.regs().retain(|r| r.id != id);
        let mut id = id;
        Self::ioctl(l, "unregister a buffer", ioctl::UNREGISTER, &mut id)
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
            Link::Stream(s) => Self::locked(s).open_session(name, op),
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
            Link::Stream(s) => Self::locked(s).close_session(session),
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
                let regs = f.regs();
                for (slot, arg) in a.args.iter_mut().zip(args.iter_mut()) {
                    let (kind, ty, start, len) = match arg {
                        Arg::Scalar(ty, bits) => {
                            *slot = ioctl::IocArg {
                                kind: ArgKind::Scalar.raw(),
                                ty: ty.raw(),
                                value: *bits,
                                ..Default::default()
                            };
                            continue;
                        }
                        Arg::In(ty, d) => (ArgKind::In, *ty, d.as_ptr(), d.len()),
                        // The driver writes outputs: their address from the exclusive borrow.
                        Arg::Out(ty, d) => {
                            (ArgKind::Out, *ty, d.as_mut_ptr().cast_const(), d.len())
                        }
                    };
                    // Inside a registered buffer: named by id, nothing to pin.
                    let (flags, buf_id, addr) = match registered(&regs, start, len) {
                        Some((id, off)) => (ioctl::ARG_REGISTERED, id, off),
                        None => (0, 0, start as u64),
                    };
                    *slot = ioctl::IocArg {
                        kind: kind.raw(),
                        ty: ty.raw(),
                        flags,
                        buf_id,
                        value: len as u64,
                        addr,
                    };
                }
                drop(regs);
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
                    segments: a.segments,
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
                    segments: 0,
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

    /// `OPEN_SESSION`: the handle the caller keeps across reconnections.
    fn open_session(&mut self, kernel: &[u8; 32], op: &str) -> Result<u64, Error> {
        let r = self.named(op, Opcode::OpenSession, kernel)?;
        check(op, r.status)?;
        self.last_handle += 1;
        let handle = self.last_handle;
        self.sessions.insert(
            handle,
            Reopen {
                kernel: *kernel,
                id: Some(r.value),
            },
        );
        Ok(handle)
    }

    /// `CLOSE_SESSION`; never reconnects (a session dies with its connection).
    fn close_session(&mut self, handle: u64) -> Result<(), Error> {
        let Some(Reopen { id: Some(id), .. }) = self.sessions.remove(&handle) else {
            return Ok(());
        };
        let Some(conn) = self.conn.as_mut() else {
            return Ok(());
        };
        self.tag = self.tag.wrapping_add(1);
        let hdr = RequestHeader::new(Opcode::CloseSession, self.tag, id, 0);
        match exchange(conn.as_mut(), &hdr, &[], &[], &mut []) {
            Ok(r) => check("close session", r.status),
            Err(_) => {
                self.conn = None;
                Ok(())
            }
        }
    }

    /// One request (`session` is a handle from [`Self::open_session`], or 0): the
    /// request with its inputs, then the response and, when it is OK, the outputs,
    /// read straight into the caller's buffers. A broken connection is made again
    /// (for up to [`Options::reconnect`]) and the request sent once more.
    fn call(
        &mut self,
        op: &str,
        code: Opcode,
        session: u64,
        args: &[ArgEntry],
        inputs: &[&[u8]],
        outputs: &mut [&mut [u8]],
    ) -> Result<Response, Error> {
        let mut interrupted = false;
        loop {
            if self.conn.is_none() {
                self.reconnect(op)?;
            }
            let id = match self.sessions.get(&session) {
                None => session,
                Some(Reopen { id: Some(id), .. }) => *id,
                Some(Reopen { id: None, .. }) => {
                    return Err(Error::Device {
                        op: op.to_owned(),
                        status: Status::UnknownKernel,
                        detail: "vfpgad restarted and no longer offers this session's kernel"
                            .into(),
                    })
                }
            };
            self.tag = self.tag.wrapping_add(1);
            let hdr = RequestHeader::new(code, self.tag, id, args.len());
            let Some(conn) = self.conn.as_mut() else {
                continue;
            };
            let failure = match exchange(conn.as_mut(), &hdr, args, inputs, outputs) {
                Ok(r) => return Ok(r),
                Err(e) => e,
            };
            // Whatever failed, the connection may be out of step: never reuse it.
            self.conn = None;
            if interrupted || !lost(&failure) || self.options.reconnect.is_zero() {
                let source = if interrupted {
                    io::Error::new(
                        failure.kind(),
                        format!("{failure} (again after reconnecting; not tried a third time)"),
                    )
                } else {
                    failure
                };
                return Err(Error::Link {
                    op: op.to_owned(),
                    source,
                });
            }
            interrupted = true;
        }
    }

    /// Connects again, for up to [`Options::reconnect`], and reopens the sessions.
    fn reconnect(&mut self, op: &str) -> Result<(), Error> {
        let window = self.options.reconnect;
        if window.is_zero() {
            return Err(Error::Link {
                op: op.to_owned(),
                source: io::Error::new(
                    io::ErrorKind::NotConnected,
                    "an earlier request on this connection failed half-way (reconnecting is off)",
                ),
            });
        }
        let deadline = Instant::now() + window;
        let mut pause = Duration::from_millis(20);
        loop {
            let why = match connect::stream(&self.endpoint, &self.options) {
                Ok(conn) => match self.resume(conn) {
                    Ok(()) => {
                        self.reconnects += 1;
                        return Ok(());
                    }
                    // A dying vfpgad's listener still takes connections until it is
                    // closed; they are reset unanswered. That is "not back yet", as is
                    // a connection that never answers.
                    Err(e)
                        if lost(&e)
                            || matches!(
                                e.kind(),
                                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                            ) =>
                    {
                        e.to_string()
                    }
                    Err(source) => {
                        return Err(Error::Link {
                            op: op.to_owned(),
                            source: io::Error::new(
                                source.kind(),
                                format!("reopening the sessions after reconnecting: {source}"),
                            ),
                        })
                    }
                },
                Err(e @ Error::Usage(_)) => return Err(e),
                Err(e) => e.to_string(),
            };
            if Instant::now() + pause >= deadline {
                return Err(Error::Link {
                    op: op.to_owned(),
                    source: io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "vfpgad did not come back within {} s: {why}",
                            window.as_secs_f32()
                        ),
                    ),
                });
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(500));
        }
    }

    /// On a new connection: one round trip (is vfpgad really there?), then every
    /// session reopened; the connection is kept only if all of it went through.
    fn resume(&mut self, mut conn: Box<dyn Stream>) -> io::Result<()> {
        conn.read_timeout(Some(RESUME_TIME))?;
        self.tag = self.tag.wrapping_add(1);
        let hdr = RequestHeader::new(Opcode::Nop, self.tag, 0, 0);
        exchange(conn.as_mut(), &hdr, &[], &[], &mut [])?;
        for s in self.sessions.values_mut() {
            let len = s.kernel.iter().position(|&b| b == 0).unwrap_or(32);
            self.tag = self.tag.wrapping_add(1);
            let hdr = RequestHeader::new(Opcode::OpenSession, self.tag, 0, 1);
            let arg = [ArgEntry::input(ElemType::U8, len as u64)];
            let r = exchange(conn.as_mut(), &hdr, &arg, &[&s.kernel[..len]], &mut [])?;
            // A kernel no longer offered (or no longer allowed): its runs say so.
            s.id = (r.status == Status::Ok.raw()).then_some(r.value);
        }
        // A run takes as long as it takes.
        conn.read_timeout(None)?;
        self.conn = Some(conn);
        Ok(())
    }
}

/// Whether a failure means the connection was lost (vfpgad went away), as opposed to
/// vfpgad answering nonsense: only the former is worth a reconnection.
pub(crate) fn lost(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::UnexpectedEof
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::NotConnected
    )
}

/// One exchange of `hdr` on `conn`.
fn exchange(
    conn: &mut dyn Stream,
    hdr: &RequestHeader,
    args: &[ArgEntry],
    inputs: &[&[u8]],
    outputs: &mut [&mut [u8]],
) -> io::Result<Response> {
    let mut conn = conn;
    // Header, table and inputs in one vectored write: a small request is one system
    // call (and over TLS one record), not one per piece.
    write_request_with(&mut conn, hdr, args, inputs)?;
    conn.flush()?;
    let resp = match read_response(&mut conn) {
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
    if resp.tag != hdr.tag {
        return Err(bad(format!(
            "an answer for tag {} while waiting for {}",
            resp.tag, hdr.tag
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
        conn.read_exact(&mut o[..n])?;
        left -= n as u64;
    }
    Ok(resp)
}
