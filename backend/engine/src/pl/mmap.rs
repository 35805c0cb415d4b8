//! A shared memory mapping of a device node (UIO registers, u-dma-buf memory).

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::ptr::NonNull;

use crate::EngineError;

/// `len` bytes of a file mapped shared, read-write.
#[derive(Debug)]
pub struct Mmap {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain shared memory; all access goes through volatile
// operations and the owner decides who touches which part.
unsafe impl Send for Mmap {}
// SAFETY: as above.
unsafe impl Sync for Mmap {}

impl Mmap {
    /// Maps `len` bytes of `path` at `offset`.
    pub fn open(path: &Path, len: usize, offset: u64) -> Result<Self, EngineError> {
        let file = File::options()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| EngineError::io(format!("opening {}", path.display()), e))?;
        if len == 0 {
            return Err(EngineError::Failed(format!(
                "{}: nothing to map (size 0)",
                path.display()
            )));
        }
        let off = libc::off_t::try_from(offset).map_err(|_| {
            EngineError::Failed(format!("{}: offset {offset} too large", path.display()))
        })?;
        // SAFETY: a fresh shared mapping of an open file; the kernel checks the range.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                off,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(EngineError::io(
                format!("mapping {len} bytes of {} at {offset:#x}", path.display()),
                std::io::Error::last_os_error(),
            ));
        }
        let ptr = NonNull::new(p.cast::<u8>()).ok_or_else(|| {
            EngineError::Failed(format!("{}: mapped at address 0", path.display()))
        })?;
        Ok(Self { ptr, len })
    }

    /// Base address.
    pub fn ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// Reads the 32-bit register at byte offset `off`.
    pub fn read32(&self, off: usize) -> Option<u32> {
        if off % 4 != 0 || !off.checked_add(4).is_some_and(|end| end <= self.len) {
            return None;
        }
        // SAFETY: in bounds (without overflow) and aligned (checked above; mappings are
        // page-aligned).
        Some(u32::from_le(unsafe {
            std::ptr::read_volatile(self.ptr().add(off).cast::<u32>())
        }))
    }

    /// Writes the 32-bit register at byte offset `off`.
    pub fn write32(&self, off: usize, v: u32) -> bool {
        if off % 4 != 0 || !off.checked_add(4).is_some_and(|end| end <= self.len) {
            return false;
        }
        // SAFETY: in bounds and aligned (checked above).
        unsafe { std::ptr::write_volatile(self.ptr().add(off).cast::<u32>(), v.to_le()) };
        true
    }
}

impl Drop for Mmap {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `open`, once.
        unsafe { libc::munmap(self.ptr().cast(), self.len) };
    }
}
