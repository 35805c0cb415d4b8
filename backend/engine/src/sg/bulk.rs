//! Many elements at a time over a stream's segments: the next segment fetched before a
//! cursor gets there, tiles moved between guest memory and a kernel's stack a contiguous
//! run at a time, and `zip_map`'s loops over the runs three buffers have contiguous.
//! (A child of `sg`: it works on the cursors' private state.)

use std::ptr;

use super::{load_run, store_run, Elem, SgReader, SgWriter};

/// How far ahead of a cursor, in bytes, the next segment is fetched. The hardware
/// prefetcher stops at every 4 KiB page edge and a guest's pages come in no order, so
/// each segment would otherwise start with a miss to memory (and a TLB miss); this is
/// about a memory latency's worth of streaming, for each buffer.
const AHEAD: usize = 1024;

/// Asks the CPU to fetch the cache line holding `p`. A hint: it never faults, whatever
/// the address, and changes no result. A no-op where no portable intrinsic exists.
#[inline(always)]
fn prefetch(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `prefetcht0` only hints; it cannot fault or change memory. (Safe to call
    // from Rust 1.87 on; the block is for older compilers.)
    #[allow(unused_unsafe)]
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(p.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// The segment a cursor goes on to after its current run, fetched [`AHEAD`] bytes
/// before the cursor gets there.
#[derive(Clone, Copy)]
struct Ahead {
    next: *const u8,
    /// Bytes of the next segment worth fetching (0: none).
    next_len: usize,
    /// Bytes left in the current segment where the run starts.
    run: usize,
}

impl Ahead {
    /// For `r` positioned at the start of a run of `run` bytes.
    #[inline]
    fn of(r: &SgReader<'_>, run: usize) -> Self {
        let next = r.segs.get(r.idx + 1).filter(|_| run < r.left);
        Self {
            next: next.map_or(ptr::null(), |s| s.ptr.cast_const()),
            next_len: next.map_or(0, |s| s.len.min(r.left - run)),
            run,
        }
    }

    /// Fetches what lies [`AHEAD`] bytes past `done` bytes into the run, if that is
    /// in the next segment.
    #[inline(always)]
    fn fetch(&self, done: usize) {
        let at = (done + AHEAD).wrapping_sub(self.run);
        if at < self.next_len {
            prefetch(self.next.wrapping_add(at));
        }
    }
}

/// A kernel's vector step for [`zip_map_bulk`]: `out[i] = f(a[i], b[i])` for `k`
/// elements at the three addresses, which are aligned for their element types and
/// valid for `k` elements each (the caller's promise; they may overlap, as a guest's
/// buffers may).
pub(crate) type Bulk = unsafe fn(a: *const u8, b: *const u8, out: *mut u8, k: usize);

/// `out[i] = f(a[i], b[i])` for the next `n` elements of each cursor, streaming over
/// the segments in place: tight aligned loops over each stretch the three buffers
/// have contiguous, one element at a time across segment edges or misaligned data.
/// Returns `false` if a cursor runs out first.
#[inline]
pub fn zip_map<A: Elem, B: Elem, O: Elem>(
    a: &mut SgReader<'_>,
    b: &mut SgReader<'_>,
    out: &mut SgWriter<'_>,
    n: usize,
    f: impl FnMut(A, B) -> O,
) -> bool {
    zip_map_bulk(a, b, out, n, f, None)
}

/// [`zip_map`], with the stretches the three buffers have contiguous (and aligned)
/// handed to `bulk`, a vector loop computing the same `f`, when there is one for the
/// machine.
#[inline]
pub(crate) fn zip_map_bulk<A: Elem, B: Elem, O: Elem>(
    a: &mut SgReader<'_>,
    b: &mut SgReader<'_>,
    out: &mut SgWriter<'_>,
    n: usize,
    mut f: impl FnMut(A, B) -> O,
    bulk: Option<Bulk>,
) -> bool {
    let aligned = |p: *mut u8, align: usize| (p as usize) % align == 0;
    let mut left = n;
    while left > 0 {
        let (Some((pa, la)), Some((pb, lb)), Some((po, lo))) =
            (a.contiguous(), b.contiguous(), out.0.contiguous())
        else {
            return false;
        };
        let k = (la / A::SIZE).min(lb / B::SIZE).min(lo / O::SIZE).min(left);
        if k > 0
            && aligned(pa, core::mem::align_of::<A>())
            && aligned(pb, core::mem::align_of::<B>())
            && aligned(po, core::mem::align_of::<O>())
        {
            let ahead = [Ahead::of(a, la), Ahead::of(b, lb), Ahead::of(&out.0, lo)];
            // Blocks of a cache line of output: one look ahead per block and buffer.
            const BLOCK: usize = 16;
            let mut i = 0;
            if let Some(bulk) = bulk {
                // Longer blocks, to keep the call off the inner loop; the same look
                // ahead, a cache line of output at a time.
                const BULK: usize = 16 * BLOCK;
                while i < k {
                    let end = (i + BULK).min(k);
                    let mut j = i;
                    while j < end {
                        ahead[0].fetch(j * A::SIZE);
                        ahead[1].fetch(j * B::SIZE);
                        ahead[2].fetch(j * O::SIZE);
                        j += BLOCK;
                    }
                    // SAFETY: `end - i` elements from `i` lie in each contiguous run
                    // (computed above), which are valid for the view's lifetime and
                    // aligned for their element types: `Bulk`'s contract.
                    unsafe {
                        bulk(
                            pa.add(i * A::SIZE),
                            pb.add(i * B::SIZE),
                            po.add(i * O::SIZE),
                            end - i,
                        );
                    }
                    i = end;
                }
            }
            while i < k {
                let end = (i + BLOCK).min(k);
                ahead[0].fetch(i * A::SIZE);
                ahead[1].fetch(i * B::SIZE);
                ahead[2].fetch(i * O::SIZE);
                for j in i..end {
                    // SAFETY: `j < k` elements fit in each contiguous run (computed
                    // above), the runs are valid for the view's lifetime (`SgBuf::new`'s
                    // contract), and the pointers are aligned for their element types.
                    unsafe {
                        let x = A::load(pa.add(j * A::SIZE));
                        let y = B::load(pb.add(j * B::SIZE));
                        f(x, y).store(po.add(j * O::SIZE));
                    }
                }
                i = end;
            }
            a.advance(k * A::SIZE);
            b.advance(k * B::SIZE);
            out.0.advance(k * O::SIZE);
            left -= k;
        } else {
            let (Some(x), Some(y)) = (A::read(a), B::read(b)) else {
                return false;
            };
            if !f(x, y).write(out) {
                return false;
            }
            left -= 1;
        }
    }
    true
}

impl SgReader<'_> {
    /// Fetches the part of the next `span` bytes past [`AHEAD`] that lies in the next
    /// segment (the current one the hardware prefetcher follows).
    #[inline]
    fn fetch_ahead(&self, span: usize) {
        let Some((_, run)) = self.contiguous() else {
            return;
        };
        let ahead = Ahead::of(self, run);
        let mut at = 0;
        while at < span {
            ahead.fetch(at);
            at += 64;
        }
    }

    /// Copies the next `dst.len()` bytes into `dst` (a kernel's tile, on its stack),
    /// a contiguous run at a time with volatile word loads; `false` (consuming
    /// nothing) if fewer remain. Also fetches what follows across a segment edge.
    pub fn read_tile(&mut self, dst: &mut [u8]) -> bool {
        if dst.len() > self.left {
            return false;
        }
        self.fetch_ahead(dst.len());
        let mut off = 0;
        while off < dst.len() {
            let Some((p, n)) = self.contiguous() else {
                return false;
            };
            let n = n.min(dst.len() - off);
            // SAFETY: the run is valid for reads of `n` bytes (`SgBuf::new`'s contract);
            // `dst[off..off + n]` is a distinct, writable local range.
            unsafe { load_run(p, dst[off..].as_mut_ptr(), n) };
            self.advance(n);
            off += n;
        }
        true
    }
}

impl SgWriter<'_> {
    /// Copies `src` (a kernel's tile) to the next `src.len()` bytes, a contiguous run
    /// at a time with volatile word stores; `false` (writing nothing) if fewer remain.
    pub fn write_tile(&mut self, src: &[u8]) -> bool {
        let r = &mut self.0;
        if src.len() > r.left {
            return false;
        }
        r.fetch_ahead(src.len());
        let mut off = 0;
        while off < src.len() {
            let Some((p, n)) = r.contiguous() else {
                return false;
            };
            let n = n.min(src.len() - off);
            // SAFETY: the run is valid for writes of `n` bytes (`SgBuf::new`'s
            // contract); the source is a distinct local range of `n` bytes.
            unsafe { store_run(src[off..].as_ptr(), p, n) };
            r.advance(n);
            off += n;
        }
        true
    }
}
