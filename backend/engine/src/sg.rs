//! Scatter-gather views of buffers that live in guest memory.
//!
//! A request's device-readable (or device-writable) bytes form one *stream* made of
//! [`RawSeg`]s: host mappings of the guest pages its descriptors name, in chain order.
//! A buffer argument is a byte range of that stream, seen through an [`SgBuf`]. Kernels
//! read and write guest memory through it in place, with volatile accesses (the guest
//! may touch the same memory concurrently, so the compiler must not assume otherwise);
//! no payload byte is staged in a daemon-side buffer.

use std::ptr;

mod bulk;

pub use bulk::zip_map;
pub(crate) use bulk::{zip_map_bulk, Bulk};

/// One contiguous, mapped piece of a stream.
#[derive(Clone, Copy, Debug)]
pub struct RawSeg {
    ptr: *mut u8,
    len: usize,
    /// Offset of the segment's first byte within its stream.
    start: u64,
}

// SAFETY: a `RawSeg` is an address range, not access to it. Only `SgBuf::new`, whose
// caller vouches that the range is mapped for the view's lifetime, dereferences it; the
// memory is shared guest memory, valid from any thread.
unsafe impl Send for RawSeg {}
// SAFETY: as for `Send`: `&RawSeg` gives no access without an `SgBuf`.
unsafe impl Sync for RawSeg {}

impl RawSeg {
    /// The `len` bytes at `ptr`, placed at stream offset `start`.
    pub fn new(ptr: *mut u8, len: usize, start: u64) -> Self {
        Self { ptr, len, start }
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True for a zero-length segment.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Host address of the first byte.
    pub fn ptr(&self) -> *mut u8 {
        self.ptr
    }

    fn end(&self) -> u64 {
        self.start + self.len as u64
    }
}

/// A stream under construction: segments appended in order, offsets kept.
///
/// Its storage only grows, so a stream reused for request after request stops
/// allocating once it has held its largest request.
#[derive(Debug, Default)]
pub struct SegStream {
    segs: Vec<RawSeg>,
    total: u64,
    limit: usize,
    /// The mapping the last segment lies in, when its pusher said ([`Self::push_in`]).
    last_region: Option<u64>,
}

impl SegStream {
    /// An empty stream of at most `cap` segments, with room for all of them.
    pub fn with_capacity(cap: usize) -> Self {
        Self::with_limit(cap, cap)
    }

    /// An empty stream of at most `limit` segments, with room for `initial` now.
    pub fn with_limit(limit: usize, initial: usize) -> Self {
        Self {
            segs: Vec::with_capacity(initial.min(limit)),
            total: 0,
            limit,
            last_region: None,
        }
    }

    /// Empties the stream, keeping its capacity.
    pub fn clear(&mut self) {
        self.segs.clear();
        self.total = 0;
        self.last_region = None;
    }

    /// Appends `len` bytes at `ptr` as a segment of their own. Returns `false` (and
    /// appends nothing) if the stream holds its limit of segments, or its total would
    /// overflow; a zero-length push adds nothing and always succeeds.
    pub fn push(&mut self, ptr: *mut u8, len: usize) -> bool {
        self.push_at(ptr, len, None)
    }

    /// Appends `len` bytes at `ptr`, which lie in mapping `region` (any number naming
    /// it, e.g. its guest start address), like [`Self::push`] but for one difference.
    ///
    /// Bytes that start exactly where the last segment ends, in the same mapping, extend
    /// that segment instead of adding one: physically contiguous guest pages named by
    /// separate descriptors (or one range the guest split) become one run that kernels
    /// walk at memory speed. Such a push never adds a segment, so it succeeds even at the
    /// limit. Nothing else is merged: the same address given twice, overlapping or
    /// earlier ranges stay separate segments (each a range of the stream of its own);
    /// two mappings that happen to lie back to back stay apart (a pointer into one is
    /// never used to reach the other); addresses are compared as integers with checked
    /// arithmetic, so no range ending at the top of the address space wraps into a merge.
    pub fn push_in(&mut self, ptr: *mut u8, len: usize, region: u64) -> bool {
        self.push_at(ptr, len, Some(region))
    }

    fn push_at(&mut self, ptr: *mut u8, len: usize, region: Option<u64>) -> bool {
        if len == 0 {
            return true;
        }
        let Some(total) = self.total.checked_add(len as u64) else {
            return false;
        };
        if let (Some(last), Some(r)) = (self.segs.last_mut(), region) {
            let end = (last.ptr as usize).checked_add(last.len);
            if self.last_region == Some(r) && end == Some(ptr as usize) {
                if let Some(merged) = last.len.checked_add(len) {
                    last.len = merged;
                    self.total = total;
                    return true;
                }
            }
        }
        if self.segs.len() >= self.limit {
            return false;
        }
        self.segs.push(RawSeg::new(ptr, len, self.total));
        self.total = total;
        self.last_region = region;
        true
    }

    /// Total bytes.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// The segments, in stream order.
    pub fn segs(&self) -> &[RawSeg] {
        &self.segs
    }

    /// Most segments the stream may hold.
    pub fn limit(&self) -> usize {
        self.limit
    }
}

/// `len` bytes of a stream starting at stream offset `base`, possibly spread over many
/// segments. Copy is cheap: it is a view.
#[derive(Clone, Copy, Debug)]
pub struct SgBuf<'a> {
    /// Segments overlapping the view (first and last may stick out).
    segs: &'a [RawSeg],
    /// Offset of the view's first byte inside `segs[0]`.
    skip: usize,
    len: usize,
}

impl<'a> SgBuf<'a> {
    /// A view of `len` bytes at stream offset `base` of the stream made of `segs`.
    /// Returns `None` if the range is not inside the stream.
    ///
    /// # Safety
    ///
    /// `segs` must come from one stream (ordered, contiguous offsets, as a [`SegStream`]
    /// builds them) and every byte of every segment overlapping the range must stay mapped
    /// and valid for volatile reads — and for volatile writes if the view is written —
    /// for `'a`.
    pub unsafe fn new(segs: &'a [RawSeg], base: u64, len: usize) -> Option<Self> {
        let end = base.checked_add(len as u64)?;
        let stream_end = segs.last().map_or(0, RawSeg::end);
        if end > stream_end || segs.first().is_some_and(|s| s.start > base) {
            return None;
        }
        if len == 0 {
            return Some(Self {
                segs: &[],
                skip: 0,
                len: 0,
            });
        }
        let first = segs.partition_point(|s| s.end() <= base);
        let last = segs.partition_point(|s| s.start < end);
        let segs = segs.get(first..last)?;
        let skip = usize::try_from(base - segs.first()?.start).ok()?;
        Some(Self { segs, skip, len })
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True if the view is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Sub-view of `len` bytes at offset `pos`; `None` if out of range.
    pub fn slice(&self, pos: usize, len: usize) -> Option<SgBuf<'a>> {
        if pos.checked_add(len)? > self.len {
            return None;
        }
        if len == 0 {
            return Some(SgBuf {
                segs: &[],
                skip: 0,
                len: 0,
            });
        }
        let (idx, skip) = self.locate(pos)?;
        Some(SgBuf {
            segs: &self.segs[idx..],
            skip,
            len,
        })
    }

    /// The host pieces of the view, in order, for vectored I/O.
    pub fn pieces(&self) -> impl Iterator<Item = (*mut u8, usize)> + 'a {
        let (skip, mut left) = (self.skip, self.len);
        self.segs.iter().enumerate().map_while(move |(i, s)| {
            let off = if i == 0 { skip } else { 0 };
            let n = (s.len - off).min(left);
            left -= n;
            // SAFETY: `off < s.len` for the first segment (construction) and 0 otherwise,
            // so the pointer stays inside the segment.
            (n > 0).then(|| (unsafe { s.ptr.add(off) }, n))
        })
    }

    /// Segment index and offset in it of view byte `pos` (`pos < len`).
    fn locate(&self, pos: usize) -> Option<(usize, usize)> {
        if pos >= self.len {
            return None;
        }
        let abs = self.segs.first()?.start + (self.skip + pos) as u64;
        let idx = self.segs.partition_point(|s| s.end() <= abs);
        let s = self.segs.get(idx)?;
        Some((idx, usize::try_from(abs - s.start).ok()?))
    }

    /// Copies `dst.len()` bytes at view offset `pos` out of guest memory. For small
    /// control data (names); kernels use [`SgBuf::reader`] or [`SgBuf::get`].
    pub fn read_into(&self, pos: usize, dst: &mut [u8]) -> bool {
        let Some(view) = self.slice(pos, dst.len()) else {
            return false;
        };
        let mut r = view.reader();
        dst.iter_mut()
            .all(|b| r.take::<1>().map(|[x]| *b = x).is_some())
    }

    /// Copies `src` into guest memory at view offset `pos`.
    pub fn write_from(&self, pos: usize, src: &[u8]) -> bool {
        let Some(view) = self.slice(pos, src.len()) else {
            return false;
        };
        let mut w = view.writer();
        src.iter().all(|&b| w.put([b]))
    }

    /// Copies the whole view into `dst` (same length), a piece at a time, with volatile
    /// word loads: for engines that must stage data (hardware DMA buffers, network).
    pub fn copy_to_slice(&self, dst: &mut [u8]) -> bool {
        if dst.len() != self.len {
            return false;
        }
        let mut off = 0;
        for (p, n) in self.pieces() {
            // SAFETY: each piece is valid for reads of `n` bytes (`SgBuf::new`'s contract).
            unsafe { volatile_copy(p, dst[off..off + n].as_mut_ptr(), n) };
            off += n;
        }
        true
    }

    /// Copies `src` (same length as the view) into the view, with volatile word stores.
    pub fn copy_from_slice(&self, src: &[u8]) -> bool {
        if src.len() != self.len {
            return false;
        }
        let mut off = 0;
        for (p, n) in self.pieces() {
            // SAFETY: each piece is valid for writes of `n` bytes (`SgBuf::new`'s contract).
            unsafe { volatile_copy(src[off..off + n].as_ptr().cast_mut(), p, n) };
            off += n;
        }
        true
    }

    /// Element `idx` (of type `T`, little-endian) by random access.
    pub fn get<T: Elem>(&self, idx: usize) -> Option<T> {
        T::read(&mut self.slice(idx.checked_mul(T::SIZE)?, T::SIZE)?.reader())
    }

    /// Stores element `idx` by random access.
    pub fn set<T: Elem>(&self, idx: usize, v: T) -> bool {
        idx.checked_mul(T::SIZE)
            .and_then(|pos| self.slice(pos, T::SIZE))
            .is_some_and(|s| v.write(&mut s.writer()))
    }

    /// A sequential reader from the start of the view.
    pub fn reader(&self) -> SgReader<'a> {
        SgReader {
            segs: self.segs,
            idx: 0,
            off: self.skip,
            left: self.len,
        }
    }

    /// A sequential writer from the start of the view.
    pub fn writer(&self) -> SgWriter<'a> {
        SgWriter(self.reader())
    }
}

/// Copies `n` bytes with volatile accesses: 8-byte words where both sides are aligned,
/// bytes elsewhere.
///
/// # Safety
///
/// `src` must be valid for reads and `dst` for writes of `n` bytes; they may not overlap.
unsafe fn volatile_copy(src: *mut u8, dst: *mut u8, n: usize) {
    let mut i = 0;
    // SAFETY: every access is within `[0, n)` of both ranges (the caller's contract);
    // word accesses happen only where both addresses are 8-aligned.
    unsafe {
        while i < n && (src.add(i) as usize % 8 != 0 || dst.add(i) as usize % 8 != 0) {
            if (src as usize ^ dst as usize) % 8 != 0 {
                break;
            }
            ptr::write_volatile(dst.add(i), ptr::read_volatile(src.add(i)));
            i += 1;
        }
        if (src.add(i) as usize) % 8 == 0 && (dst.add(i) as usize) % 8 == 0 {
            while i + 8 <= n {
                let w = ptr::read_volatile(src.add(i).cast::<u64>());
                ptr::write_volatile(dst.add(i).cast::<u64>(), w);
                i += 8;
            }
        }
        while i < n {
            ptr::write_volatile(dst.add(i), ptr::read_volatile(src.add(i)));
            i += 1;
        }
    }
}

/// Copies `n` bytes of guest memory at `src` to the local buffer `dst`: volatile loads
/// (8-byte words once `src` is aligned), plain stores whatever `dst`'s alignment.
///
/// # Safety
///
/// `src` must be valid for reads and `dst` for writes of `n` bytes; they may not overlap.
#[inline]
unsafe fn load_run(src: *const u8, dst: *mut u8, n: usize) {
    let head = src.align_offset(8).min(n);
    // SAFETY: every access is within `[0, n)` of both ranges (the caller's contract);
    // the word loads are from 8-aligned addresses, the stores unaligned.
    unsafe {
        for i in 0..head {
            *dst.add(i) = ptr::read_volatile(src.add(i));
        }
        let mut i = head;
        while i + 8 <= n {
            let w = ptr::read_volatile(src.add(i).cast::<u64>());
            ptr::write_unaligned(dst.add(i).cast::<u64>(), w);
            i += 8;
        }
        while i < n {
            *dst.add(i) = ptr::read_volatile(src.add(i));
            i += 1;
        }
    }
}

/// Copies `n` bytes of the local buffer `src` to guest memory at `dst`: plain loads,
/// volatile stores (8-byte words once `dst` is aligned).
///
/// # Safety
///
/// `src` must be valid for reads and `dst` for writes of `n` bytes; they may not overlap.
#[inline]
unsafe fn store_run(src: *const u8, dst: *mut u8, n: usize) {
    let head = dst.align_offset(8).min(n);
    // SAFETY: every access is within `[0, n)` of both ranges (the caller's contract);
    // the word stores are to 8-aligned addresses, the loads unaligned.
    unsafe {
        for i in 0..head {
            ptr::write_volatile(dst.add(i), *src.add(i));
        }
        let mut i = head;
        while i + 8 <= n {
            let w = ptr::read_unaligned(src.add(i).cast::<u64>());
            ptr::write_volatile(dst.add(i).cast::<u64>(), w);
            i += 8;
        }
        while i < n {
            ptr::write_volatile(dst.add(i), *src.add(i));
            i += 1;
        }
    }
}

/// Sequential volatile reads over an [`SgBuf`].
#[derive(Debug)]
pub struct SgReader<'a> {
    segs: &'a [RawSeg],
    idx: usize,
    off: usize,
    left: usize,
}

impl SgReader<'_> {
    /// Bytes not yet consumed.
    pub fn remaining(&self) -> usize {
        self.left
    }

    /// Next `N` bytes, or `None` if fewer remain.
    #[inline]
    pub fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        if self.left < N {
            return None;
        }
        let seg = self.segs.get(self.idx)?;
        let out = if seg.len - self.off >= N {
            // SAFETY: `off + N <= seg.len`, and the segment is valid for reads for the
            // view's lifetime (`SgBuf::new`'s contract). `[u8; N]` has alignment 1.
            let v = unsafe { ptr::read_volatile(seg.ptr.add(self.off).cast::<[u8; N]>()) };
            self.off += N;
            v
        } else {
            let mut v = [0u8; N];
            for b in &mut v {
                *b = self.take_byte()?;
            }
            v
        };
        self.left -= N;
        self.normalize();
        Some(out)
    }

    fn take_byte(&mut self) -> Option<u8> {
        self.normalize();
        let seg = self.segs.get(self.idx)?;
        // SAFETY: `normalize` leaves `off < seg.len`; the segment is valid for reads.
        let v = unsafe { ptr::read_volatile(seg.ptr.add(self.off)) };
        self.off += 1;
        Some(v)
    }

    /// Steps over an exhausted segment.
    #[inline]
    fn normalize(&mut self) {
        while self.segs.get(self.idx).is_some_and(|s| self.off >= s.len) {
            self.idx += 1;
            self.off = 0;
        }
    }

    /// Skips `n` bytes; `false` if fewer remain.
    pub fn skip(&mut self, mut n: usize) -> bool {
        if n > self.left {
            return false;
        }
        self.left -= n;
        while n > 0 {
            self.normalize();
            let Some(seg) = self.segs.get(self.idx) else {
                return false;
            };
            let step = (seg.len - self.off).min(n);
            self.off += step;
            n -= step;
        }
        self.normalize();
        true
    }
}

/// Sequential volatile writes over an [`SgBuf`].
#[derive(Debug)]
pub struct SgWriter<'a>(SgReader<'a>);

impl SgWriter<'_> {
    /// Bytes not yet written.
    pub fn remaining(&self) -> usize {
        self.0.left
    }

    /// Writes `N` bytes; `false` (writing nothing) if fewer remain.
    #[inline]
    pub fn put<const N: usize>(&mut self, bytes: [u8; N]) -> bool {
        let r = &mut self.0;
        if r.left < N {
            return false;
        }
        let Some(seg) = r.segs.get(r.idx) else {
            return false;
        };
        if seg.len - r.off >= N {
            // SAFETY: `off + N <= seg.len`; the view is valid for writes (`SgBuf::new`'s
            // contract) and `[u8; N]` has alignment 1.
            unsafe { ptr::write_volatile(seg.ptr.add(r.off).cast::<[u8; N]>(), bytes) };
            r.off += N;
            r.left -= N;
        } else {
            for b in bytes {
                r.normalize();
                let Some(seg) = r.segs.get(r.idx) else {
                    return false;
                };
                // SAFETY: `normalize` leaves `off < seg.len`; the view is writable.
                unsafe { ptr::write_volatile(seg.ptr.add(r.off), b) };
                r.off += 1;
                r.left -= 1;
            }
        }
        r.normalize();
        true
    }
}

/// An element type kernels read and write, little-endian in guest memory.
pub trait Elem: Copy {
    /// Size in bytes.
    const SIZE: usize;
    /// Reads the next element.
    fn read(r: &mut SgReader<'_>) -> Option<Self>;
    /// Writes one element.
    fn write(self, w: &mut SgWriter<'_>) -> bool;
    /// Volatile little-endian load.
    ///
    /// # Safety
    ///
    /// `p` must be aligned for `Self` and valid for reads of `SIZE` bytes.
    unsafe fn load(p: *const u8) -> Self;
    /// Volatile little-endian store.
    ///
    /// # Safety
    ///
    /// `p` must be aligned for `Self` and valid for writes of `SIZE` bytes.
    unsafe fn store(self, p: *mut u8);
}

macro_rules! elem {
    ($($t:ty => $bits:ty),*) => {$(
        impl Elem for $t {
            const SIZE: usize = core::mem::size_of::<$t>();
            #[inline]
            fn read(r: &mut SgReader<'_>) -> Option<Self> {
                r.take::<{ core::mem::size_of::<$t>() }>().map(<$t>::from_le_bytes)
            }
            #[inline]
            fn write(self, w: &mut SgWriter<'_>) -> bool {
                w.put(self.to_le_bytes())
            }
            #[inline(always)]
            unsafe fn load(p: *const u8) -> Self {
                // SAFETY: the caller guarantees alignment and validity.
                let bits = unsafe { ptr::read_volatile(p.cast::<$bits>()) };
                <$t>::from_le_bytes(bits.to_ne_bytes())
            }
            #[inline(always)]
            unsafe fn store(self, p: *mut u8) {
                let bits = <$bits>::from_ne_bytes(self.to_le_bytes());
                // SAFETY: the caller guarantees alignment and validity.
                unsafe { ptr::write_volatile(p.cast::<$bits>(), bits) }
            }
        }
    )*};
}
elem!(u8 => u8, i16 => u16, u16 => u16, i32 => u32, u32 => u32, f32 => u32, u64 => u64, i64 => u64, f64 => u64);

impl SgReader<'_> {
    /// The contiguous bytes at the cursor (bounded by what remains), if any.
    #[inline]
    fn contiguous(&self) -> Option<(*mut u8, usize)> {
        let seg = self.segs.get(self.idx)?;
        let n = (seg.len - self.off).min(self.left);
        // SAFETY: `off < seg.len` (kept by `normalize`), so the pointer is in the segment.
        (n > 0).then(|| (unsafe { seg.ptr.add(self.off) }, n))
    }

    /// Moves past `n` bytes of the current contiguous run (`n` at most its length).
    #[inline]
    fn advance(&mut self, n: usize) {
        self.off += n;
        self.left -= n;
        self.normalize();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stream over `mem` cut at `cuts` (segment lengths), as a guest's pages would be.
    /// The segments are appended as they are, unmerged (`push_in` would join them all),
    /// so that the tests cross segment edges.
    fn stream(mem: &mut [u8], cuts: &[usize]) -> SegStream {
        let mut s = SegStream::with_capacity(cuts.len());
        let mut p = mem.as_mut_ptr();
        for &c in cuts {
            s.segs.push(RawSeg::new(p, c, s.total));
            s.total += c as u64;
            // SAFETY: the cuts sum to at most `mem.len()`.
            p = unsafe { p.add(c) };
        }
        s
    }

    #[test]
    fn elements_straddling_segments_read_and_write() {
        let mut mem: Vec<u8> = (0u8..=40).collect();
        let s = stream(&mut mem, &[3, 1, 5, 2, 30]);
        // SAFETY: `mem` outlives the view and is not otherwise accessed meanwhile.
        let buf = unsafe { SgBuf::new(s.segs(), 2, 16) }.unwrap();
        let mut r = buf.reader();
        for i in 0..4u8 {
            let b = 2 + 4 * i;
            assert_eq!(
                u32::read(&mut r),
                Some(u32::from_le_bytes([b, b + 1, b + 2, b + 3]))
            );
        }
        assert_eq!(u32::read(&mut r), None);
        assert_eq!(buf.get::<u16>(3), Some(u16::from_le_bytes([8, 9])));
        assert!(buf.set::<u32>(0, 0xdead_beef));
        assert!(!buf.set::<u32>(4, 1));
        assert_eq!(buf.get::<u32>(0), Some(0xdead_beef));
        drop(s);
        assert_eq!(&mem[2..6], &0xdead_beef_u32.to_le_bytes());
        assert_eq!(mem[1], 1);
    }

    #[test]
    fn views_outside_the_stream_are_refused() {
        let mut mem = [0u8; 8];
        let s = stream(&mut mem, &[4, 4]);
        // SAFETY: `mem` outlives the views.
        unsafe {
            assert!(SgBuf::new(s.segs(), 4, 5).is_none());
            assert!(SgBuf::new(s.segs(), u64::MAX, 2).is_none());
            assert!(SgBuf::new(s.segs(), 8, 0).is_some());
        }
    }

    #[test]
    fn pieces_cover_exactly_the_view() {
        let mut mem = [0u8; 20];
        let s = stream(&mut mem, &[5, 5, 5, 5]);
        // SAFETY: `mem` outlives the view.
        let buf = unsafe { SgBuf::new(s.segs(), 3, 10) }.unwrap();
        let lens: Vec<usize> = buf.pieces().map(|(_, n)| n).collect();
        assert_eq!(lens, vec![2, 5, 3]);
        let sub = buf.slice(4, 6).unwrap();
        assert_eq!(sub.pieces().map(|(_, n)| n).collect::<Vec<_>>(), vec![3, 3]);
        let mut r = buf.reader();
        assert!(r.skip(9));
        assert_eq!(r.remaining(), 1);
        assert!(!r.skip(2));
    }

    #[test]
    fn zip_map_across_edges_and_misalignment() {
        let mut mem: Vec<u8> = (0..=255).collect();
        let mut out = vec![0u8; 64];
        // Input at odd offsets with uneven cuts; output in one piece.
        let s = stream(&mut mem[1..], &[6, 7, 3, 100]);
        let o = stream(&mut out, &[5, 59]);
        // SAFETY: the vectors outlive the views.
        let (a, w) = unsafe {
            (
                SgBuf::new(s.segs(), 0, 64).unwrap(),
                SgBuf::new(o.segs(), 0, 64).unwrap(),
            )
        };
        let b = a.slice(0, 64).unwrap();
        assert!(!zip_map(
            &mut a.reader(),
            &mut b.reader(),
            &mut w.writer(),
            17,
            |x: u32, y: u32| x ^ y
        ));
        assert!(zip_map(
            &mut a.reader(),
            &mut b.reader(),
            &mut w.writer(),
            16,
            |x: u32, y: u32| x.wrapping_add(y)
        ));
        drop((s, o));
        for i in 0..16 {
            let x = u32::from_le_bytes(mem[1 + 4 * i..5 + 4 * i].try_into().unwrap());
            let got = u32::from_le_bytes(out[4 * i..4 * i + 4].try_into().unwrap());
            assert_eq!(got, x.wrapping_add(x), "element {i}");
        }
    }

    #[test]
    fn bulk_copies_cover_the_view() {
        let mut mem: Vec<u8> = (0..=200).collect();
        let s = stream(&mut mem, &[3, 50, 1, 147]);
        // SAFETY: `mem` outlives the view.
        let buf = unsafe { SgBuf::new(s.segs(), 2, 190) }.unwrap();
        let mut out = vec![0u8; 190];
        assert!(buf.copy_to_slice(&mut out));
        assert!(!buf.copy_to_slice(&mut [0u8; 3]));
        assert_eq!(out, (2u8..192).collect::<Vec<_>>());
        let back: Vec<u8> = out.iter().map(|b| b.wrapping_mul(3)).collect();
        assert!(buf.copy_from_slice(&back));
        drop(s);
        assert_eq!(&mem[2..192], &back[..]);
        assert_eq!((mem[1], mem[192]), (1, 192));
    }

    /// (host address, length) of each segment.
    fn shape(s: &SegStream) -> Vec<(usize, usize)> {
        s.segs()
            .iter()
            .map(|g| (g.ptr() as usize, g.len()))
            .collect()
    }

    #[test]
    fn adjacent_pushes_become_one_segment_and_nothing_else_merges() {
        let mut mem = [0u8; 64];
        let base = mem.as_mut_ptr();
        let at = |off: usize| base.wrapping_add(off);
        let mut s = SegStream::with_capacity(8);
        // Adjacent: one segment, even at the limit of one.
        let mut one = SegStream::with_capacity(1);
        for off in [0, 8, 16] {
            assert!(one.push_in(at(off), 8, 0));
        }
        assert_eq!(shape(&one), vec![(base as usize, 24)]);
        assert_eq!(one.total(), 24);
        // A gap, the same range again, an overlap, an earlier range: all separate.
        assert!(s.push_in(at(0), 8, 0));
        assert!(s.push_in(at(8), 4, 0));
        assert!(s.push_in(at(16), 4, 0));
        assert!(s.push_in(at(16), 4, 0));
        assert!(s.push_in(at(18), 4, 0));
        assert!(s.push_in(at(0), 2, 0));
        // Zero-length pushes add nothing and do not break a run.
        assert!(s.push_in(at(2), 0, 0));
        assert!(s.push_in(at(40), 0, 0));
        assert!(s.push_in(at(2), 6, 0));
        let b = base as usize;
        assert_eq!(
            shape(&s),
            vec![(b, 12), (b + 16, 4), (b + 16, 4), (b + 18, 4), (b, 8)]
        );
        assert_eq!(s.total(), 32);
        let starts: Vec<u64> = s.segs().iter().map(|g| g.start).collect();
        assert_eq!(starts, vec![0, 12, 16, 20, 24]);
        // Full: a new segment is refused, an extension of the last one is not.
        let mut full = SegStream::with_capacity(2);
        assert!(full.push_in(at(0), 4, 0) && full.push_in(at(8), 4, 0));
        assert!(!full.push_in(at(32), 4, 0));
        assert!(full.push_in(at(12), 4, 0));
        assert!(full.push_in(at(8), 0, 0));
        assert_eq!(shape(&full), vec![(b, 4), (b + 8, 8)]);
        // Back to back but in two mappings, or pushed without one: never merged.
        let mut two = SegStream::with_capacity(4);
        assert!(two.push_in(at(0), 8, 1) && two.push_in(at(8), 8, 2));
        assert!(two.push(at(16), 8));
        assert!(two.push_in(at(24), 8, 2));
        assert_eq!(
            shape(&two),
            vec![(b, 8), (b + 8, 8), (b + 16, 8), (b + 24, 8)]
        );
        // A merged stream reads back in stream order.
        for (x, v) in mem.iter_mut().zip(0u8..) {
            *x = v;
        }
        let mut s = SegStream::with_capacity(4);
        assert!(s.push_in(at(4), 4, 0) && s.push_in(at(8), 4, 0) && s.push_in(at(0), 4, 0));
        // SAFETY: `mem` outlives the view and is only read through it meanwhile.
        let v = unsafe { SgBuf::new(s.segs(), 0, 12) }.unwrap();
        let mut out = [0u8; 12];
        assert!(v.copy_to_slice(&mut out));
        assert_eq!(out, [4, 5, 6, 7, 8, 9, 10, 11, 0, 1, 2, 3]);
    }

    #[test]
    fn ranges_at_the_top_of_the_address_space_never_wrap_into_a_merge() {
        // Addresses only (nothing is dereferenced): a segment ending exactly at the top
        // of the address space, then one at address 0 or just below the top.
        let top = usize::MAX - 15;
        let p = |a: usize| core::ptr::null_mut::<u8>().wrapping_add(a);
        let mut s = SegStream::with_capacity(4);
        assert!(s.push_in(p(top), 16, 0));
        assert!(s.push_in(p(0), 16, 0));
        assert!(s.push_in(p(top), 8, 0));
        assert!(s.push_in(p(top + 8), 8, 0));
        assert_eq!(shape(&s), vec![(top, 16), (0, 16), (top, 16)]);
        // A range that would wrap past the top never extends the last segment (on
        // 64-bit hosts the stream's total refuses it first).
        let mut t = SegStream::with_capacity(4);
        assert!(t.push_in(p(0), usize::MAX - 1, 0));
        let pushed = t.push_in(p(usize::MAX - 1), 2, 0);
        assert_eq!(t.segs()[0].len(), usize::MAX - 1);
        assert_eq!(
            t.total(),
            (usize::MAX - 1) as u64 + if pushed { 2 } else { 0 }
        );
        // The total never overflows: a push that would make it is refused.
        let mut u = SegStream::with_capacity(4);
        assert!(u.push_in(p(0), usize::MAX, 0));
        assert!(!u.push_in(p(0), 1, 0));
        assert_eq!((u.segs().len(), u.total()), (1, usize::MAX as u64));
    }

    #[test]
    fn stream_refuses_beyond_capacity() {
        let mut mem = [0u8; 4];
        let mut s = SegStream::with_capacity(1);
        assert!(s.push(mem.as_mut_ptr(), 2));
        assert!(!s.push(mem.as_mut_ptr(), 2));
        assert_eq!(s.total(), 2);
    }
}
