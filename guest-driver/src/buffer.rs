//! Buffers: typed slices seen as bytes, and page-aligned storage (fewer pages to pin),
//! on 4 KiB pages or huge pages (a few physically contiguous stretches: short
//! descriptor chains, and an engine that walks memory at its speed).

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::io;
use std::ptr::NonNull;

use vfpga_proto::ElemType;

mod sealed {
    pub trait Sealed {}
}

/// Plain element types the device understands: every bit pattern is a valid value and
/// there is no padding, so a slice of them can be seen as bytes.
pub trait Pod: Copy + sealed::Sealed {
    /// The ABI element type.
    const TYPE: ElemType;
}

macro_rules! pod {
    ($($t:ty => $e:ident),*) => {$(
        impl sealed::Sealed for $t {}
        impl Pod for $t {
            const TYPE: ElemType = ElemType::$e;
        }
    )*};
}
pod!(u8 => U8, i16 => I16, i32 => I32, u32 => U32, f32 => F32, u64 => U64, i64 => I64, f64 => F64);

// The device is little-endian; so is every host this library builds for.
#[cfg(not(target_endian = "little"))]
compile_error!(
    "the vfpga guest library passes buffers in host byte order: little-endian hosts only"
);

/// `data` as bytes.
pub(crate) fn bytes<T: Pod>(data: &[T]) -> &[u8] {
    // SAFETY: `T: Pod` has no padding and any byte pattern is valid; the byte view
    // covers exactly the slice's memory and borrows it for the same lifetime.
    unsafe { std::slice::from_raw_parts(data.as_ptr().cast(), std::mem::size_of_val(data)) }
}

/// `data` as mutable bytes.
pub(crate) fn bytes_mut<T: Pod>(data: &mut [T]) -> &mut [u8] {
    // SAFETY: as for `bytes`; any bytes written form valid `T` values.
    unsafe { std::slice::from_raw_parts_mut(data.as_mut_ptr().cast(), std::mem::size_of_val(data)) }
}

/// A zeroed, page-aligned byte buffer.
#[derive(Debug)]
pub struct AlignedBuf {
    ptr: NonNull<u8>,
    len: usize,
    /// Bytes mapped with `mmap` (huge pages), or 0 for the heap.
    mapped: usize,
}

/// The huge page size of x86-64 and arm64 with 4 KiB pages.
pub const HUGE_PAGE: usize = 2 << 20;

// SAFETY: the buffer owns its memory exclusively, like a `Vec<u8>`.
unsafe impl Send for AlignedBuf {}
// SAFETY: shared access only reads, like `&Vec<u8>`.
unsafe impl Sync for AlignedBuf {}

const ALIGN: usize = 4096;

impl AlignedBuf {
    /// `len` zero bytes aligned to 4 KiB.
    pub fn zeroed(len: usize) -> Self {
        if len == 0 {
            return Self {
                ptr: NonNull::dangling(),
                len,
                mapped: 0,
            };
        }
        let layout = Layout::from_size_align(len, ALIGN)
            .unwrap_or_else(|_| std::alloc::handle_alloc_error(Layout::new::<u8>()));
        // SAFETY: `layout` has a non-zero size.
        let ptr = unsafe { alloc_zeroed(layout) };
        let ptr = NonNull::new(ptr).unwrap_or_else(|| std::alloc::handle_alloc_error(layout));
        Self {
            ptr,
            len,
            mapped: 0,
        }
    }

    /// `len` zero bytes aligned to 2 MiB in memory the kernel is asked to back with
    /// transparent huge pages (`madvise(MADV_HUGEPAGE)`); where it has none to give, or
    /// THP is off, the buffer is on 4 KiB pages and works the same.
    pub fn huge(len: usize) -> io::Result<Self> {
        let mapped = huge_len(len)?;
        // A huge page more than needed, to cut an aligned stretch out of it.
        let over = mapped
            .checked_add(HUGE_PAGE)
            .ok_or_else(|| io::Error::from(io::ErrorKind::OutOfMemory))?;
        let base = map(over, 0)?;
        // Page-aligned, so the head is a multiple of 4 KiB below a huge page.
        let head = (HUGE_PAGE - base.as_ptr() as usize % HUGE_PAGE) % HUGE_PAGE;
        // SAFETY: both ranges are inside the mapping just made, page-aligned, and
        // nothing refers to them: `unmap` gives them back.
        unsafe {
            unmap(base.as_ptr(), head);
            unmap(base.as_ptr().add(head + mapped), over - head - mapped);
        }
        // SAFETY: `head < HUGE_PAGE`, so the aligned range is inside the mapping.
        let ptr = unsafe { base.as_ptr().add(head) };
        // SAFETY: a range of our own mapping; the advice changes no content.
        if unsafe { libc::madvise(ptr.cast(), mapped, libc::MADV_HUGEPAGE) } != 0 {
            // EINVAL: a kernel without THP. The memory is usable on small pages.
        }
        Ok(Self {
            // SAFETY: inside a successful mapping, so not null.
            ptr: unsafe { NonNull::new_unchecked(ptr) },
            len,
            mapped,
        })
    }

    /// `len` zero bytes in 2 MiB huge pages from the kernel's reserved pool
    /// (`MAP_HUGETLB | MAP_HUGE_2MB`: `/proc/sys/vm/nr_hugepages`); fails when the pool
    /// has too few free.
    pub fn hugetlb(len: usize) -> io::Result<Self> {
        let mapped = huge_len(len)?;
        let ptr = map(mapped, libc::MAP_HUGETLB | libc::MAP_HUGE_2MB)?;
        Ok(Self { ptr, len, mapped })
    }

    /// A copy of `data`, page-aligned.
    pub fn from_slice(data: &[u8]) -> Self {
        let mut b = Self::zeroed(data.len());
        b.as_mut_slice().copy_from_slice(data);
        b
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True if empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: `ptr` is valid for `len` initialised bytes owned by `self`.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// The bytes, mutably.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as above, with exclusive access through `&mut self`.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

/// `len` (at least 1) rounded up to whole huge pages; out of memory past what a slice
/// may hold.
fn huge_len(len: usize) -> io::Result<usize> {
    len.max(1)
        .checked_next_multiple_of(HUGE_PAGE)
        .filter(|&m| isize::try_from(m).is_ok())
        .ok_or_else(|| io::Error::from(io::ErrorKind::OutOfMemory))
}

/// Anonymous private memory: `len` bytes, zeroed, with extra `mmap` flags.
fn map(len: usize, flags: libc::c_int) -> io::Result<NonNull<u8>> {
    // SAFETY: a new anonymous mapping at an address the kernel chooses: it overlaps
    // nothing of ours.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | flags,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    NonNull::new(p.cast()).ok_or_else(|| io::Error::from(io::ErrorKind::OutOfMemory))
}

/// Unmaps `len` bytes at `p` (nothing for 0).
///
/// # Safety
/// `p..p + len` is a page-aligned range of a mapping of ours nothing refers to.
unsafe fn unmap(p: *mut u8, len: usize) {
    if len > 0 {
        // SAFETY: as the caller promises. munmap of our own range cannot fail.
        unsafe { libc::munmap(p.cast(), len) };
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        if self.mapped > 0 {
            // SAFETY: the mapping made by `huge` or `hugetlb`, owned by `self`.
            unsafe { unmap(self.ptr.as_ptr(), self.mapped) };
        } else if self.len > 0 {
            if let Ok(layout) = Layout::from_size_align(self.len, ALIGN) {
                // SAFETY: allocated in `zeroed` with this same layout.
                unsafe { dealloc(self.ptr.as_ptr(), layout) };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_and_zeroed() {
        let mut b = AlignedBuf::zeroed(10_000);
        assert_eq!(b.as_slice().as_ptr() as usize % ALIGN, 0);
        assert!(b.as_slice().iter().all(|&x| x == 0));
        b.as_mut_slice()[9_999] = 7;
        assert_eq!(AlignedBuf::from_slice(b.as_slice()).as_slice()[9_999], 7);
        assert!(AlignedBuf::zeroed(0).is_empty());
    }

    #[test]
    fn huge_buffers_are_2_mib_aligned_and_zeroed() {
        let empty = AlignedBuf::huge(0).unwrap();
        assert!(empty.is_empty() && empty.as_slice().is_empty());
        for len in [usize::MAX, usize::MAX - HUGE_PAGE, isize::MAX as usize] {
            let e = AlignedBuf::huge(len).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::OutOfMemory, "{len}");
        }
        for len in [1, HUGE_PAGE - 1, HUGE_PAGE, 3 * HUGE_PAGE + 5] {
            let mut b = AlignedBuf::huge(len).unwrap();
            assert_eq!(b.as_slice().as_ptr() as usize % HUGE_PAGE, 0);
            assert_eq!(b.len(), len);
            assert!(b.as_slice().iter().all(|&x| x == 0));
            b.as_mut_slice()[len - 1] = 9;
            assert_eq!(b.as_slice()[len - 1], 9);
        }
    }

    #[test]
    fn typed_slices_as_bytes() {
        let v = [1u32, 0x0102_0304];
        assert_eq!(bytes(&v), &[1, 0, 0, 0, 4, 3, 2, 1]);
    }
}
