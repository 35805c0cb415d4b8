//! Decoding: a descriptor chain becomes a [`Request`] (or a refusal), with its readable
//! and writable bytes mapped as two streams of guest-memory segments.
//!
//! Every address, length and count the guest wrote is checked here before anything
//! else touches it. A chain that breaks the framing is answered with an error status
//! when its last 40 writable bytes can be found, and is otherwise returned with 0 bytes
//! written; it is never dropped.

use vfpga_engine::{SegStream, SgBuf};
use vfpga_proto::{
    AbiError, ArgEntry, ChainLayout, Opcode, RequestHeader, Response, Status, MAX_ARGS,
};
#[cfg(feature = "vhost")]
use virtio_queue::desc::split::Descriptor;
#[cfg(feature = "vhost")]
use vm_memory::{Address, GuestAddress, GuestMemoryBackend, GuestMemoryRegion};

use crate::config::DeviceLimits;
#[cfg(feature = "vhost")]
use crate::GuestMem;

/// Writable descriptors remembered from the end of a chain, to answer a chain that is
/// refused before (or instead of) being mapped.
const TAIL: usize = 8;

/// Per-queue scratch space reused from request to request.
#[derive(Debug)]
pub struct Scratch {
    /// Device-readable stream.
    pub rd: SegStream,
    /// Device-writable stream.
    pub wr: SegStream,
    tail: [(u64, u32); TAIL],
    tail_len: usize,
}

impl Scratch {
    /// Scratch for chains of at most `max_segments` descriptors.
    pub fn new(max_segments: u32) -> Self {
        Self {
            rd: Self::stream(max_segments),
            wr: Self::stream(max_segments),
            tail: [(0, 0); TAIL],
            tail_len: 0,
        }
    }

    /// An empty stream for chains of at most `max_segments` descriptors (one descriptor
    /// can span two guest memory regions).
    pub fn stream(max_segments: u32) -> SegStream {
        let limit = max_segments as usize * 2 + 2;
        SegStream::with_limit(limit, 64)
    }

    fn clear(&mut self) {
        self.rd.clear();
        self.wr.clear();
        self.tail_len = 0;
    }

    fn remember_tail(&mut self, addr: u64, len: u32) {
        if self.tail_len == TAIL {
            self.tail.copy_within(1.., 0);
            self.tail_len -= 1;
        }
        self.tail[self.tail_len] = (addr, len);
        self.tail_len += 1;
    }
}

/// A request whose framing is valid.
#[derive(Clone, Copy, Debug)]
pub struct Request {
    /// Head descriptor index, for the used ring.
    pub head: u16,
    /// The header.
    pub hdr: RequestHeader,
    /// The operation.
    pub op: Opcode,
    /// Argument table (first `n_args` entries).
    pub args: [ArgEntry; MAX_ARGS],
    /// Entries used in `args`.
    pub n_args: usize,
    /// Byte counts implied by the argument table (equal to the chain's).
    pub layout: ChainLayout,
    /// Offset of the response in the writable stream.
    pub resp_off: u64,
    /// Run again by a worker that resumed after a crash: it may have had its effect.
    pub again: bool,
}

impl Request {
    /// The argument table.
    pub fn args(&self) -> &[ArgEntry] {
        &self.args[..self.n_args]
    }
}

/// Outcome of decoding one chain.
#[derive(Debug)]
pub enum Decoded {
    /// A well-framed request, streams mapped in the scratch space.
    Request(Request),
    /// A request to refuse; the response location is mapped in the scratch space.
    Refuse {
        /// Head descriptor index.
        head: u16,
        /// Tag to echo (0 when the header could not be read).
        tag: u64,
        /// Status and detail.
        err: AbiError,
        /// Offset of the response in the writable stream.
        resp_off: u64,
    },
    /// No room to answer: return the chain with 0 bytes written.
    Unanswerable {
        /// Head descriptor index.
        head: u16,
        /// Why, for logs.
        reason: &'static str,
    },
}

/// Maps `len` bytes at guest address `addr` into `stream`; `false` if any byte is
/// outside guest memory or the stream is full. Bytes that continue the stream's last
/// segment in the same guest memory region extend it ([`SegStream::push_in`]).
#[cfg(feature = "vhost")]
fn map(mem: &GuestMem, stream: &mut SegStream, addr: u64, len: u32) -> bool {
    let mut at = addr;
    for slice in GuestMemoryBackend::get_slices(mem, GuestAddress(addr), len as usize) {
        let Ok(s) = slice else {
            return false;
        };
        // The region, named by its guest start address (a few regions: a short search).
        let Some(region) = GuestMemoryBackend::find_region(mem, GuestAddress(at)) else {
            return false;
        };
        if !stream.push_in(
            s.ptr_guard_mut().as_ptr(),
            s.len(),
            region.start_addr().raw_value(),
        ) {
            return false;
        }
        at = at.wrapping_add(s.len() as u64);
    }
    true
}

/// Decodes the chain of head `head`, whose descriptors `chain` yields (a
/// `virtio_queue::DescriptorChain` or a [`Walk`]), into `scratch`.
#[cfg(feature = "vhost")]
pub fn decode(
    head: u16,
    chain: impl Iterator<Item = Descriptor>,
    mem: &GuestMem,
    limits: &DeviceLimits,
    scratch: &mut Scratch,
) -> Decoded {
    scratch.clear();
    let mut count = 0u32;
    let mut total = 0u64;
    let mut last_has_next = false;
    let mut seen_writable = false;
    let mut problem: Option<AbiError> = None;
    for desc in chain {
        count = count.saturating_add(1);
        last_has_next = desc.has_next();
        total = total.saturating_add(u64::from(desc.len()));
        let writable = desc.is_write_only();
        if writable {
            seen_writable = true;
            scratch.remember_tail(desc.addr().0, desc.len());
        } else if seen_writable {
            problem.get_or_insert(AbiError::new(
                Status::BadRequest,
                "device-readable descriptor after a device-writable one",
            ));
        }
        if problem.is_some() {
            continue;
        }
        if count > limits.max_segments {
            problem = Some(AbiError::new(Status::TooLarge, "too many segments"));
            continue;
        }
        if total > limits.max_request_bytes {
            problem = Some(AbiError::new(
                Status::TooLarge,
                "request larger than max_request_bytes",
            ));
            continue;
        }
        let stream = if writable {
            &mut scratch.wr
        } else {
            &mut scratch.rd
        };
        if !map(mem, stream, desc.addr().0, desc.len()) {
            problem = Some(AbiError::new(
                Status::BadRequest,
                "descriptor outside guest memory",
            ));
        }
    }
    if count == 0 {
        return Decoded::Unanswerable {
            head,
            reason: "empty or unreadable descriptor chain",
        };
    }
    if last_has_next {
        // The walk stopped early: a loop, a bad `next` index or a broken indirect table.
        problem.get_or_insert(AbiError::new(
            Status::BadRequest,
            "descriptor chain is cyclic or truncated",
        ));
    }
    if let Some(err) = problem {
        return refuse_via_tail(head, 0, err, mem, scratch);
    }
    let Some(resp_off) = scratch.wr.total().checked_sub(Response::SIZE as u64) else {
        return Decoded::Unanswerable {
            head,
            reason: "fewer than 40 device-writable bytes",
        };
    };
    let refuse = |tag, err| Decoded::Refuse {
        head,
        tag,
        err,
        resp_off,
    };
    let rd = scratch.rd.segs();
    let mut raw = [0u8; RequestHeader::SIZE];
    if !read(rd, 0, &mut raw) {
        return refuse(
            0,
            AbiError::new(Status::BadRequest, "request shorter than its header"),
        );
    }
    let hdr = RequestHeader::from_bytes(&raw);
    let tag = hdr.tag;
    let op = match hdr.check(MAX_ARGS) {
        Ok(op) => op,
        Err(e) => return refuse(tag, e),
    };
    let n_args = hdr.n_args as usize;
    let mut args = [ArgEntry::default(); MAX_ARGS];
    for (i, a) in args[..n_args].iter_mut().enumerate() {
        let mut raw = [0u8; ArgEntry::SIZE];
        let off = (RequestHeader::SIZE + i * ArgEntry::SIZE) as u64;
        if !read(rd, off, &mut raw) {
            return refuse(
                tag,
                AbiError::new(
                    Status::BadRequest,
                    "argument table extends past the readable bytes",
                ),
            );
        }
        *a = ArgEntry::from_bytes(&raw);
    }
    let layout = match ChainLayout::of(&args[..n_args]) {
        Ok(l) => l,
        Err(e) => return refuse(tag, e),
    };
    if layout.readable() != scratch.rd.total() || layout.writable() != scratch.wr.total() {
        return refuse(
            tag,
            AbiError::new(
                Status::BadRequest,
                "chain lengths differ from what the argument table describes",
            ),
        );
    }
    Decoded::Request(Request {
        head,
        hdr,
        op,
        args,
        n_args,
        layout,
        resp_off,
        again: false,
    })
}

/// The descriptors of the chain of head `head` in the descriptor table at
/// `desc_table` of a queue of `queue_size` entries, followed as
/// `virtio_queue::DescriptorChain` follows them (which only the queue can make, from an
/// available entry): a resumed worker walks the chains in flight at a crash from their
/// heads. Stops early, the last descriptor yielded still saying `NEXT`, on a loop, an
/// index out of range, a nested or misaligned indirect table, or unreadable memory.
#[cfg(feature = "vhost")]
#[derive(Debug)]
pub struct Walk<'a> {
    mem: &'a GuestMem,
    table: u64,
    size: u16,
    next: u16,
    ttl: u16,
    indirect: bool,
    bytes: u32,
}

#[cfg(feature = "vhost")]
impl<'a> Walk<'a> {
    /// A walk of the chain of head `head`.
    pub fn new(mem: &'a GuestMem, desc_table: u64, queue_size: u16, head: u16) -> Self {
        Self {
            mem,
            table: desc_table,
            size: queue_size,
            next: head,
            ttl: queue_size,
            indirect: false,
            bytes: 0,
        }
    }
}

#[cfg(feature = "vhost")]
impl Iterator for Walk<'_> {
    type Item = Descriptor;

    fn next(&mut self) -> Option<Descriptor> {
        use vm_memory::Bytes;
        const DESC: u64 = 16;
        loop {
            if self.ttl == 0 || self.next >= self.size {
                return None;
            }
            let at = self.table.checked_add(u64::from(self.next) * DESC)?;
            let desc: Descriptor = self.mem.read_obj(GuestAddress(at)).ok()?;
            if desc.refers_to_indirect_table() {
                let entries = desc.len() / 16;
                if self.indirect || desc.len() % 16 != 0 || entries > u32::from(u16::MAX) {
                    return None;
                }
                self.table = desc.addr().0;
                self.size = u16::try_from(entries).ok()?;
                self.next = 0;
                self.ttl = self.size;
                self.indirect = true;
                continue;
            }
            self.bytes = self.bytes.checked_add(desc.len())?;
            if desc.has_next() {
                self.next = desc.next();
                self.ttl -= 1;
            } else {
                self.ttl = 0;
            }
            return Some(desc);
        }
    }
}

/// Reads `dst.len()` bytes at offset `off` of the stream `segs`.
fn read(segs: &[vfpga_engine::RawSeg], off: u64, dst: &mut [u8]) -> bool {
    // SAFETY: the segments map guest memory kept alive by the caller's memory guard for
    // the duration of this call.
    unsafe { SgBuf::new(segs, off, dst.len()) }.is_some_and(|b| b.read_into(0, dst))
}

/// Maps only the last 40 writable bytes (from the remembered tail descriptors) so a
/// refused chain can still get its status.
#[cfg(feature = "vhost")]
fn refuse_via_tail(
    head: u16,
    tag: u64,
    err: AbiError,
    mem: &GuestMem,
    scratch: &mut Scratch,
) -> Decoded {
    scratch.wr.clear();
    let mut need = Response::SIZE as u64;
    let mut first = scratch.tail_len;
    while need > 0 && first > 0 {
        first -= 1;
        need = need.saturating_sub(u64::from(scratch.tail[first].1));
    }
    let (tail, n) = (scratch.tail, scratch.tail_len);
    let mapped = need == 0
        && tail[first..n]
            .iter()
            .all(|&(addr, len)| map(mem, &mut scratch.wr, addr, len));
    match scratch.wr.total().checked_sub(Response::SIZE as u64) {
        Some(resp_off) if mapped => Decoded::Refuse {
            head,
            tag,
            err,
            resp_off,
        },
        _ => Decoded::Unanswerable {
            head,
            reason: err.reason,
        },
    }
}

/// Writes `resp` at `resp_off` of the writable stream; returns the used length to
/// report (`written` plus the response), or `None` if the response could not be written.
pub fn write_response(wr: &SegStream, resp_off: u64, resp: &Response) -> Option<u32> {
    // SAFETY: the writable stream maps device-writable guest memory kept alive by the
    // caller's memory guard for the duration of this call.
    let view = unsafe { SgBuf::new(wr.segs(), resp_off, Response::SIZE) }?;
    if !view.write_from(0, &resp.to_bytes()) {
        return None;
    }
    Some(u32::try_from(resp.written.saturating_add(Response::SIZE as u64)).unwrap_or(u32::MAX))
}

/// Views of the buffer arguments of `args`: inputs in order after the header and
/// argument table in the readable stream, outputs in order in the writable stream.
///
/// # Safety
///
/// The streams must map guest memory that stays mapped (the caller holds the memory
/// guard they were built under) for `'a`, and the argument table's lengths must have
/// been checked against the streams ([`decode`] does).
pub unsafe fn bind<'a>(
    args: &[ArgEntry],
    head_bytes: u64,
    rd: &'a SegStream,
    wr: &'a SegStream,
) -> [Option<SgBuf<'a>>; MAX_ARGS] {
    let mut bufs = [None; MAX_ARGS];
    let (mut in_off, mut out_off) = (head_bytes, 0u64);
    for (slot, a) in bufs.iter_mut().zip(args) {
        let (stream, off) = match vfpga_proto::ArgKind::from_raw(a.kind) {
            Some(vfpga_proto::ArgKind::In) => (rd, &mut in_off),
            Some(vfpga_proto::ArgKind::Out) => (wr, &mut out_off),
            _ => continue,
        };
        let Ok(len) = usize::try_from(a.value) else {
            continue;
        };
        // SAFETY: guaranteed by this function's contract.
        *slot = unsafe { SgBuf::new(stream.segs(), *off, len) };
        *off = off.saturating_add(a.value);
    }
    bufs
}
