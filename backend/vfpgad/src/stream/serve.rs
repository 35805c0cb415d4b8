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
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rustls::{ServerConnection, StreamOwned};
use tracing::debug;
use vfpga_engine::SegStream;
use vfpga_proto::stream::{
    read_request, skip, Deadline, StreamError, StreamRequest, TimeoutSocket,
};
use vfpga_proto::{AbiError, ChainLayout, Opcode, Response, Status};

use crate::chain::{bind, Request};
use crate::device::{lock, Device};

/// A connected stream whose transfers can be bounded in time.
pub trait Conn: Read + Write {
    /// Every transfer from now on must end by `until` (`None`: no bound).
    fn set_deadline(&mut self, until: Option<Instant>);
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
pub fn io_time(bytes: u64) -> Duration {
    Duration::from_secs(30 + (bytes >> 20))
}

/// A counting semaphore bounding the runs that execute at once on stream connections
/// (each connection runs its kernels on its own thread).
#[derive(Debug)]
pub struct Slots {
    free: Mutex<usize>,
    cv: Condvar,
}

/// A held slot; dropping it frees the slot.
#[derive(Debug)]
pub struct Slot<'a>(&'a Slots);

impl Slots {
    /// `n` slots (at least one).
    pub fn new(n: usize) -> Self {
        Self {
            free: Mutex::new(n.max(1)),
            cv: Condvar::new(),
        }
    }

    /// Waits for a free slot.
    pub fn acquire(&self) -> Slot<'_> {
        let mut n: MutexGuard<'_, usize> = lock(&self.free);
        while *n == 0 {
            n = self.cv.wait(n).unwrap_or_else(|p| p.into_inner());
        }
        *n -= 1;
        Slot(self)
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        *lock(&self.0.free) += 1;
        self.0.cv.notify_one();
    }
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
    /// Bounds the runs executing at once.
    pub slots: &'a Slots,
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

/// Serves requests on `conn` with `dev`'s sessions and engine until the peer goes away
/// or breaks the protocol.
pub fn serve<C: Conn>(conn: &mut C, dev: &Device, rules: &Rules<'_>) -> End {
    let mut bufs = Buffers {
        inputs: Vec::new(),
        outputs: Vec::new(),
        rd: SegStream::with_capacity(1),
        wr: SegStream::with_capacity(1),
    };
    loop {
        conn.set_deadline(rules.idle.and_then(|t| Instant::now().checked_add(t)));
        let req = match read_request(conn, rules.max_request_bytes) {
            Ok(r) => r,
            Err(StreamError::Closed) => return End::Closed,
            Err(e @ StreamError::TooLarge { tag, in_bytes, .. }) => {
                // Refused, but the stream stays in step: skip the inputs and answer with
                // the request's tag.
                debug!(guest = %dev.name, "refused: {e}");
                dev.counters.request(Status::TooLarge);
                conn.set_deadline(Instant::now().checked_add(io_time(in_bytes)));
                let resp = Response::error(
                    &AbiError::new(Status::TooLarge, "request larger than this device accepts"),
                    tag,
                );
                if let Err(e) = skip(conn, in_bytes).and_then(|()| send(conn, &resp, &[])) {
                    return End::Io(e);
                }
                continue;
            }
            Err(StreamError::Abi(e)) => {
                // A header that cannot be trusted: the stream cannot be resynchronised.
                dev.counters.request(e.status);
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

fn send<C: Conn>(conn: &mut C, resp: &Response, outputs: &[u8]) -> io::Result<()> {
    conn.write_all(&resp.to_bytes())?;
    conn.write_all(outputs)?;
    conn.flush()
}

/// A connection's buffers, reused by every request.
struct Buffers {
    inputs: Vec<u8>,
    outputs: Vec<u8>,
    rd: SegStream,
    wr: SegStream,
}

/// Reads the request's inputs and computes its response (outputs into `bufs.outputs`).
fn receive_and_answer<C: Conn>(
    conn: &mut C,
    dev: &Device,
    rules: &Rules<'_>,
    req: &StreamRequest,
    bufs: &mut Buffers,
) -> io::Result<Response> {
    let Buffers {
        inputs,
        outputs,
        rd,
        wr,
    } = bufs;
    let n_in = usize::try_from(req.layout.in_bytes).map_err(|_| io::ErrorKind::InvalidData)?;
    let n_out = usize::try_from(req.layout.out_bytes).map_err(|_| io::ErrorKind::InvalidData)?;
    conn.set_deadline(Instant::now().checked_add(io_time(req.layout.in_bytes)));
    inputs.clear();
    inputs.resize(n_in, 0);
    conn.read_exact(inputs)?;
    // The kernel may run as long as it needs; only moving bytes is bounded.
    conn.set_deadline(None);
    outputs.clear();
    outputs.resize(n_out, 0);
    let tag = req.hdr.tag;
    let result = match rules.extra {
        Some((op, handler)) if op == req.op => handler(req, inputs),
        _ => {
            rd.clear();
            wr.clear();
            rd.push(inputs.as_mut_ptr(), inputs.len());
            wr.push(outputs.as_mut_ptr(), outputs.len());
            answer(dev, rules, req, rd, wr)
        }
    };
    let resp = match result {
        Ok(r) => Response { tag, ..r },
        Err(e) => {
            debug!(guest = %dev.name, op = ?req.op, "refused: {e}");
            Response::error(&e, tag)
        }
    };
    if req.op != Opcode::Run {
        // Runs count themselves (`run_now`); everything else is counted here.
        dev.counters
            .request(resp.status().unwrap_or(Status::EngineError));
    }
    Ok(resp)
}

/// Runs the operation through the same device logic the virtio path uses, on the
/// request's inputs and outputs as `rd` and `wr` map them.
fn answer(
    dev: &Device,
    rules: &Rules<'_>,
    req: &StreamRequest,
    rd: &SegStream,
    wr: &SegStream,
) -> Result<Response, AbiError> {
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
    };
    if req.op == Opcode::Run {
        let session = dev.session_for(&r).inspect_err(|e| {
            dev.counters.request(e.status);
        })?;
        let _admission = dev.admit(&r).inspect_err(|e| {
            dev.counters.request(e.status);
        })?;
        let _slot = rules.slots.acquire();
        let resp = dev.run_now(&session, &r, rd, wr);
        dev.counters
            .request(resp.status().unwrap_or(Status::EngineError));
        return Ok(resp);
    }
    // SAFETY: the streams map the connection's input and output buffers, which are not
    // touched while this runs; the lengths are the table's (checked by `read_request`).
    let bufs = unsafe { bind(r.args(), 0, rd, wr) };
    dev.answer(&r, &bufs)
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
