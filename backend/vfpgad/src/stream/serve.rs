//! One stream connection's request loop, the same for every byte-stream transport and
//! for the board agent: read a request (docs/protocol.md section 10), its inputs, answer
//! it through the device logic, write the response and outputs; refuse what the spec
//! refuses, and close the stream when it cannot be kept in step.
//!
//! Inputs and outputs pass through two buffers owned by the connection and reused from
//! one request to the next (a stream has to land its bytes somewhere; they grow to the
//! largest request seen, never past the device's `max_request_bytes`), so a warm
//! connection allocates nothing per request.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::{ServerConnection, StreamOwned};
use tracing::debug;
use vfpga_engine::SegStream;
use vfpga_proto::stream::{
    read_request, skip, write_all_parts, Deadline, StreamError, StreamRequest, TimeoutSocket,
};
use vfpga_proto::{AbiError, ChainLayout, Opcode, Response, Status};

use crate::chain::{bind, Request};
use crate::device::Device;
use crate::sched::{LaneId, Turns};
use crate::sessions::Session;
use crate::tenant::Admission;

/// A connected stream whose transfers can be bounded in time.
pub trait Conn: Read + Write {
    /// Every transfer from now on must end by `until` (`None`: no bound).
    fn set_deadline(&mut self, until: Option<Instant>);
}

impl<C: Conn + ?Sized> Conn for &mut C {
    fn set_deadline(&mut self, until: Option<Instant>) {
        (**self).set_deadline(until);
    }
}

impl<S: TimeoutSocket> Conn for Deadline<S> {
    fn set_deadline(&mut self, until: Option<Instant>) {
        self.set(until);
    }
}

impl<S: TimeoutSocket> Conn for StreamOwned<ServerConnection, Deadline<S>> {
    fn set_deadline(&mut self, until: Option<Instant>) {
        self.sock.set(until);
    }
}

/// A TLS stream on TCP, as the agent and vfpgad's TLS listeners serve it.
pub type TlsStream = StreamOwned<ServerConnection, Deadline<TcpStream>>;

/// How long moving `bytes` of a request or answer may take: 30 s plus 1 s per MiB
/// (slower than 1 MiB/s means a stalled or hostile peer holding a connection slot).
/// It bounds a request's inputs and its answer.
pub fn io_time(bytes: u64) -> Duration {
    Duration::from_secs(30 + (bytes >> 20))
}

/// An operation the device logic does not know (the agent's bitstream upload): the
/// request and its inputs in, the answer out.
pub type Extra<'a> = &'a (dyn Fn(&StreamRequest, &[u8]) -> Result<Response, AbiError> + Sync);

/// What a connection may do.
#[derive(Clone, Copy)]
pub struct Rules<'a> {
    /// Largest request, inputs plus outputs.
    pub max_request_bytes: u64,
    /// Longest a connection may wait for the next request (`None`: as long as it likes).
    pub idle: Option<Duration>,
    /// Gives runs their turn on the engine, fairly between guests.
    pub turns: &'a dyn Turns,
    /// Set when the server stops: a run waiting for its turn gives up.
    pub stop: &'a AtomicBool,
    /// Opcodes handled outside the device logic, with their handler.
    pub extra: Option<(Opcode, Extra<'a>)>,
}

impl std::fmt::Debug for Rules<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rules")
            .field("max_request_bytes", &self.max_request_bytes)
            .field("idle", &self.idle)
            .finish_non_exhaustive()
    }
}

/// Why a connection ended.
#[derive(Debug)]
pub enum End {
    /// The peer closed it between requests.
    Closed,
    /// It sent something that cannot be answered in step (the answer, if any, was sent).
    Refused(String),
    /// Transport failure or timeout.
    Io(io::Error),
}

/// The most input bytes a refused request may make the connection skip to stay in
/// step, as a multiple of `max_request_bytes`; past it the stream is closed instead (no
/// honest client sends gigabytes to be thrown away).
const SKIP_FACTOR: u64 = 4;

/// Buffers larger than this are given back when a request needs less than a quarter of
/// them, so a connection holds about what its current requests need (a stream of
/// same-sized requests reuses its buffers and allocates nothing).
const KEEP_BYTES: usize = 1 << 20;

/// How long the rest of a request's header and argument table (at most 152 bytes) may
/// take once its first byte arrived, or the idle limit if that ends first: a peer cannot
/// hold a connection with half a header, even where idle connections are kept forever.
const HEADER_TIME: Duration = Duration::from_secs(10);

/// Serves requests on `conn` with `dev`'s sessions and engine until the peer goes away
/// or breaks the protocol.
pub fn serve<C: Conn>(conn: &mut C, dev: &Device, rules: &Rules<'_>) -> End {
    let mut bufs = Buffers {
        inputs: Vec::new(),
        outputs: Vec::new(),
        rd: SegStream::with_capacity(1),
        wr: SegStream::with_capacity(1),
        lane: rules.turns.lane(&dev.tenant),
    };
    loop {
        let idle = rules.idle.and_then(|t| Instant::now().checked_add(t));
        conn.set_deadline(idle);
        let req = match read_request(&mut FirstByte::new(conn, idle), rules.max_request_bytes) {
            Ok(r) => r,
            Err(StreamError::Closed) => return End::Closed,
            Err(e @ StreamError::TooLarge { tag, in_bytes, .. }) => {
                debug!(guest = %dev.name, "refused: {e}");
                dev.count(None, Status::TooLarge);
                let resp = Response::error(
                    &AbiError::new(Status::TooLarge, "request larger than this device accepts"),
                    tag,
                );
                if in_bytes > rules.max_request_bytes.saturating_mul(SKIP_FACTOR) {
                    let _ = send(conn, &resp, &[]);
                    return End::Refused(e.to_string());
                }
                // Refused, but the stream stays in step: skip the inputs and answer with
                // the request's tag.
                conn.set_deadline(Instant::now().checked_add(io_time(in_bytes)));
                if let Err(e) = skip(conn, in_bytes).and_then(|()| send(conn, &resp, &[])) {
                    return End::Io(e);
                }
                continue;
            }
            Err(StreamError::Abi(e)) => {
                // A header that cannot be trusted: the stream cannot be resynchronised.
                dev.count(None, e.status);
                let _ = send(conn, &Response::error(&e, 0), &[]);
                return End::Refused(e.to_string());
            }
            Err(StreamError::Io(e)) => return End::Io(e),
        };
        let resp = match receive_and_answer(conn, dev, rules, &req, &mut bufs) {
            Ok(r) => r,
            Err(e) => return End::Io(e),
        };
        let written = if resp.status == Status::Ok.raw() {
            usize::try_from(resp.written)
                .unwrap_or(0)
                .min(bufs.outputs.len())
        } else {
            0
        };
        conn.set_deadline(Instant::now().checked_add(io_time(written as u64)));
        if let Err(e) = send(conn, &resp, &bufs.outputs[..written]) {
            return End::Io(e);
        }
    }
}

/// Reads through to the connection and, once the first byte of a request arrived, bounds
/// the rest of its header and argument table by [`HEADER_TIME`] (or the idle deadline
/// `idle`, whichever comes first).
struct FirstByte<'a, C: Conn> {
    conn: &'a mut C,
    idle: Option<Instant>,
    started: bool,
}

impl<'a, C: Conn> FirstByte<'a, C> {
    fn new(conn: &'a mut C, idle: Option<Instant>) -> Self {
        Self {
            conn,
            idle,
            started: false,
        }
    }
}

impl<C: Conn> Read for FirstByte<'_, C> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.conn.read(buf)?;
        if !self.started && n > 0 {
            self.started = true;
            let header = Instant::now().checked_add(HEADER_TIME);
            let until = match (self.idle, header) {
                (Some(i), Some(h)) => Some(i.min(h)),
                (i, h) => i.or(h),
            };
            self.conn.set_deadline(until);
        }
        Ok(n)
    }
}

fn send<C: Conn>(conn: &mut C, resp: &Response, outputs: &[u8]) -> io::Result<()> {
    if outputs.len() <= GATHER_MAX {
        // One vectored write: a small answer is one system call (one TLS record).
        write_all_parts(conn, &[&resp.to_bytes(), outputs])?;
    } else {
        // Large outputs are written as they are (rustls encrypts a gathered write
        // more slowly than one buffer).
        conn.write_all(&resp.to_bytes())?;
        conn.write_all(outputs)?;
    }
    conn.flush()
}

/// Outputs up to this size leave in the response's write.
const GATHER_MAX: usize = 16 << 10;

/// A connection's buffers, reused by every request, and its guest's lane of the
/// scheduler.
struct Buffers {
    inputs: Vec<u8>,
    outputs: Vec<u8>,
    rd: SegStream,
    wr: SegStream,
    lane: LaneId,
}

/// Empties `buf` for a request of `n` bytes, giving back a large buffer this request
/// would use less than a quarter of.
fn fit(buf: &mut Vec<u8>, n: usize) {
    buf.clear();
    if buf.capacity() > KEEP_BYTES && n < buf.capacity() / 4 {
        buf.shrink_to(n.max(KEEP_BYTES));
    }
}

/// What a run holds from before its inputs are read until its answer: its session and
/// its admission into the guest's bounds.
struct Ticket {
    session: Arc<Session>,
    _admission: Admission,
}

/// Reads the request's inputs and computes its response (outputs into `bufs.outputs`).
/// A run the guest's policy refuses is refused before its inputs land in memory.
fn receive_and_answer<C: Conn>(
    conn: &mut C,
    dev: &Device,
    rules: &Rules<'_>,
    req: &StreamRequest,
    bufs: &mut Buffers,
) -> io::Result<Response> {
    let tag = req.hdr.tag;
    let r = Request {
        head: 0,
        hdr: req.hdr,
        op: req.op,
        args: req.args,
        n_args: req.n_args,
        layout: ChainLayout {
            head_bytes: 0,
            ..req.layout
        },
        resp_off: 0,
        again: false,
    };
    conn.set_deadline(Instant::now().checked_add(io_time(req.layout.in_bytes)));
    let ticket = match ticket(dev, &r) {
        Ok(t) => t,
        Err(e) => {
            debug!(guest = %dev.name, op = ?req.op, "refused: {e}");
            dev.count(Some(req.op), e.status);
            skip(conn, req.layout.in_bytes)?;
            bufs.outputs.clear();
            return Ok(Response::error(&e, tag));
        }
    };
    let Buffers {
        inputs,
        outputs,
        rd,
        wr,
        lane,
    } = bufs;
    let n_in = usize::try_from(req.layout.in_bytes).map_err(|_| io::ErrorKind::InvalidData)?;
    let n_out = usize::try_from(req.layout.out_bytes).map_err(|_| io::ErrorKind::InvalidData)?;
    // Filled as the bytes arrive: a header that lies about its inputs costs no memory.
    fit(inputs, n_in);
    if Read::take(&mut *conn, req.layout.in_bytes).read_to_end(inputs)? < n_in {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    // The kernel may run as long as it needs; only moving bytes is bounded.
    conn.set_deadline(None);
    fit(outputs, n_out);
    outputs.resize(n_out, 0);
    let result = match (rules.extra, ticket) {
        (Some((op, handler)), _) if op == req.op => handler(req, inputs),
        (_, ticket) => {
            rd.clear();
            wr.clear();
            rd.push(inputs.as_mut_ptr(), inputs.len());
            wr.push(outputs.as_mut_ptr(), outputs.len());
            match ticket {
                Some(t) => run(dev, rules, *lane, &t, &r, rd, wr),
                // SAFETY: the streams map the connection's input and output buffers,
                // which are not touched while this runs; the lengths are the table's
                // (checked by `read_request`).
                None => dev.answer(&r, &unsafe { bind(r.args(), 0, rd, wr) }),
            }
        }
    };
    let resp = match result {
        Ok(r) => Response { tag, ..r },
        Err(e) => {
            debug!(guest = %dev.name, op = ?req.op, "refused: {e}");
            Response::error(&e, tag)
        }
    };
    // Every answer is counted once, here, on the device (a run's session counts itself
    // in `session_for` and `run_now`).
    dev.count(Some(req.op), resp.status().unwrap_or(Status::EngineError));
    Ok(resp)
}

/// Waits for the guest's turn on the engine, then runs.
fn run(
    dev: &Device,
    rules: &Rules<'_>,
    lane: LaneId,
    t: &Ticket,
    r: &Request,
    rd: &SegStream,
    wr: &SegStream,
) -> Result<Response, AbiError> {
    let Ok(_turn) = rules.turns.turn(lane, t.session.bitstream, rules.stop) else {
        return Err(AbiError::new(Status::Busy, "the server is stopping"));
    };
    // The guest may have gone (its sessions closed) while this waited.
    if dev.sessions.get(r.hdr.session).is_none() {
        return Err(AbiError::new(
            Status::BadSession,
            "the session closed while the run waited",
        ));
    }
    Ok(dev.run_now(&t.session, r, rd, wr))
}

/// For a run, its session and admission (`None` for other operations); a refusal is
/// answered without reading the inputs.
fn ticket(dev: &Device, r: &Request) -> Result<Option<Ticket>, AbiError> {
    if r.op != Opcode::Run {
        return Ok(None);
    }
    let session = dev.session_for(r)?;
    let admission = dev.admit(r)?;
    Ok(Some(Ticket {
        session,
        _admission: admission,
    }))
}

/// Logs how a connection ended, for debugging: what a peer sends must not flood the
/// log (callers warn about refusals at a rate they choose).
pub fn log_end(guest: &str, peer: &str, end: &End) {
    match end {
        End::Closed => debug!(guest, peer, "stream closed"),
        End::Refused(why) => debug!(guest, peer, "stream closed: {why}"),
        End::Io(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
            debug!(guest, peer, "stream ended in the middle of a request")
        }
        End::Io(e) => debug!(guest, peer, "stream ended: {e}"),
    }
}
