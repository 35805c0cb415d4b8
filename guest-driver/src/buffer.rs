//! Buffers: typed slices seen as bytes, and page-aligned storage (fewer pages to pin).

use std::alloc::{alloc_zeroed, dealloc, Layout};
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
}

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
            };
        }
        let layout = Layout::from_size_align(len, ALIGN)
            .unwrap_or_else(|_| std::alloc::handle_alloc_error(Layout::new::<u8>()));
        // SAFETY: `layout` has a non-zero size.
        let ptr = unsafe { alloc_zeroed(layout) };
        let ptr = NonNull::new(ptr).unwrap_or_else(|| std::alloc::handle_alloc_error(layout));
        Self { ptr, len }
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

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        if self.len > 0 {
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
    fn typed_slices_as_bytes() {
        let v = [1u32, 0x0102_0304];
        assert_eq!(bytes(&v), &[1, 0, 0, 0, 4, 3, 2, 1]);
    }
}
