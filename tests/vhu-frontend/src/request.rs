//! Well-formed requests: header, argument table and buffers laid out in guest memory
//! as the ABI says, submitted as one chain, answered with a response.

use vfpga_proto::{ArgEntry, ElemType, Opcode, RequestHeader, Response, MAX_ARGS};
use vm_memory::{Address, GuestAddress};

use crate::queue::{write_indirect_table, Seg};
use crate::{Error, VhuFrontend};

/// One argument of a request.
#[derive(Clone, Copy, Debug)]
pub enum Arg<'a> {
    /// A scalar: type and bits.
    Scalar(ElemType, u64),
    /// An input buffer.
    In(ElemType, &'a [u8]),
    /// An output buffer of this many bytes.
    Out(ElemType, usize),
}

/// How buffers become descriptors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// One direct descriptor per buffer.
    Direct,
    /// One descriptor per buffer, in an indirect table.
    Indirect,
    /// Buffers cut at `n`-byte guest page boundaries, as a guest driver pinning user
    /// pages produces them, in an indirect table.
    Paged(u64),
}

/// Bytes of unused memory around each output buffer, checked for stray writes.
const GUARD: u64 = 64;
const GUARD_BYTE: u8 = 0x5a;

/// A request laid out once in guest memory, submittable any number of times without
/// allocating.
#[derive(Debug)]
pub struct Prepared {
    /// Queue it goes to.
    pub q: usize,
    segs: Vec<Seg>,
    table: Option<GuestAddress>,
    resp: GuestAddress,
    outs: Vec<(GuestAddress, usize)>,
    /// Memory mark before the request was laid out.
    pub mark: u64,
}

/// What the device answered.
#[derive(Debug)]
pub struct Reply {
    /// The response structure.
    pub resp: Response,
    /// Used length reported in the used ring.
    pub used: u32,
    /// Output buffers, in argument order.
    pub outputs: Vec<Vec<u8>>,
}

impl Reply {
    /// The status, as the ABI enum.
    pub fn status(&self) -> Option<vfpga_proto::Status> {
        self.resp.status()
    }
}

fn push_buf(segs: &mut Vec<Seg>, at: GuestAddress, len: u64, write: bool, layout: Layout) {
    let page = match layout {
        Layout::Paged(p) => p,
        _ => u64::MAX,
    };
    let (mut addr, end) = (at.0, at.0 + len);
    while addr < end {
        let boundary = if page == u64::MAX {
            end
        } else {
            (addr / page + 1) * page
        };
        let n = boundary.min(end) - addr;
        segs.push(Seg {
            addr,
            len: u32::try_from(n).unwrap_or(u32::MAX),
            write,
        });
        addr += n;
    }
}

impl VhuFrontend {
    /// Lays out a request in guest memory.
    pub fn prepare(
        &mut self,
        q: usize,
        op: Opcode,
        session: u64,
        args: &[Arg<'_>],
        layout: Layout,
    ) -> Result<Prepared, Error> {
        if args.len() > MAX_ARGS {
            return Err(Error::Protocol("too many arguments"));
        }
        let mark = self.mem.mark();
        let tag = self.tag();
        let mut head = RequestHeader::new(op, tag, session, args.len())
            .to_bytes()
            .to_vec();
        for a in args {
            let e = match *a {
                Arg::Scalar(t, v) => ArgEntry::scalar(t, v),
                Arg::In(t, d) => ArgEntry::input(t, d.len() as u64),
                Arg::Out(t, n) => ArgEntry::output(t, n as u64),
            };
            head.extend_from_slice(&e.to_bytes());
        }
        let head_at = self.mem.alloc(head.len() as u64, 64)?;
        self.mem.write(head_at, &head)?;
        let mut segs = Vec::new();
        push_buf(&mut segs, head_at, head.len() as u64, false, Layout::Direct);
        let page = match layout {
            Layout::Paged(p) => p,
            _ => 4096,
        };
        for a in args {
            if let Arg::In(_, d) = *a {
                // Start mid-page so buffers straddle page boundaries.
                let at = self
                    .mem
                    .alloc(d.len() as u64 + 128, page)?
                    .unchecked_add(100);
                self.mem.write(at, d)?;
                push_buf(&mut segs, at, d.len() as u64, false, layout);
            }
        }
        let mut outs = Vec::new();
        for a in args {
            if let Arg::Out(_, n) = *a {
                let region = self.mem.alloc(n as u64 + 2 * GUARD + 100, page)?;
                self.mem
                    .write(region, &vec![GUARD_BYTE; n + 2 * GUARD as usize + 100])?;
                let at = region.unchecked_add(GUARD + 100);
                push_buf(&mut segs, at, n as u64, true, layout);
                outs.push((at, n));
            }
        }
        let resp = self.mem.alloc(Response::SIZE as u64, 8)?;
        self.mem.write(resp, &[0xee; Response::SIZE])?;
        segs.push(Seg::wr(resp, Response::SIZE as u32));
        let table = if layout == Layout::Direct {
            None
        } else {
            let t = self.mem.alloc(16 * segs.len() as u64, 16)?;
            write_indirect_table(&self.mem, t, &segs)?;
            Some(t)
        };
        Ok(Prepared {
            q,
            segs,
            table,
            resp,
            outs,
            mark,
        })
    }

    /// Submits a prepared request and waits for its response. Allocates nothing.
    pub fn run_prepared(&mut self, p: &Prepared) -> Result<(Response, u32), Error> {
        let queue = self
            .queues
            .get_mut(p.q)
            .ok_or(Error::Protocol("no such queue"))?;
        let head = match p.table {
            Some(t) => {
                queue.add_indirect(&self.mem, t, u32::try_from(p.segs.len()).unwrap_or(0))?
            }
            None => queue.add_chain(&self.mem, &p.segs)?,
        };
        let used = self.submit_and_wait(p.q, head)?;
        Ok((self.response(p)?, used))
    }

    /// Submits a prepared request without waiting; returns its head.
    pub fn start_prepared(&mut self, p: &Prepared) -> Result<u16, Error> {
        let queue = self
            .queues
            .get_mut(p.q)
            .ok_or(Error::Protocol("no such queue"))?;
        let head = match p.table {
            Some(t) => {
                queue.add_indirect(&self.mem, t, u32::try_from(p.segs.len()).unwrap_or(0))?
            }
            None => queue.add_chain(&self.mem, &p.segs)?,
        };
        queue.submit(&self.mem, head)?;
        Ok(head)
    }

    /// The response a prepared request got.
    pub fn response(&self, p: &Prepared) -> Result<Response, Error> {
        let mut raw = [0u8; Response::SIZE];
        self.mem.read(p.resp, &mut raw)?;
        Ok(Response::from_bytes(&raw))
    }

    /// Output buffer `i` of a prepared request.
    pub fn output(&self, p: &Prepared, i: usize) -> Result<Vec<u8>, Error> {
        let (at, n) = *p.outs.get(i).ok_or(Error::Protocol("no such output"))?;
        let mut v = vec![0u8; n];
        self.mem.read(at, &mut v)?;
        Ok(v)
    }

    /// Checks that nothing was written around the output buffers.
    pub fn guards_intact(&self, p: &Prepared) -> Result<bool, Error> {
        for &(at, n) in &p.outs {
            let mut before = [0u8; GUARD as usize];
            let mut after = [0u8; GUARD as usize];
            self.mem.read(GuestAddress(at.0 - GUARD), &mut before)?;
            self.mem.read(at.unchecked_add(n as u64), &mut after)?;
            if before.iter().chain(&after).any(|&b| b != GUARD_BYTE) {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Prepares, runs and releases a request; returns the response and outputs.
    pub fn call(
        &mut self,
        q: usize,
        op: Opcode,
        session: u64,
        args: &[Arg<'_>],
        layout: Layout,
    ) -> Result<Reply, Error> {
        let p = self.prepare(q, op, session, args, layout)?;
        let result = self.run_prepared(&p).and_then(|(resp, used)| {
            if !self.guards_intact(&p)? {
                return Err(Error::Protocol("device wrote outside an output buffer"));
            }
            let outputs = (0..p.outs.len())
                .map(|i| self.output(&p, i))
                .collect::<Result<_, _>>()?;
            Ok(Reply {
                resp,
                used,
                outputs,
            })
        });
        self.mem.release_to(p.mark);
        result
    }
}
