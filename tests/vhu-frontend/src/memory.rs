//! Guest memory shared with the backend: one memfd, mapped here and passed to the
//! backend in the memory table, with a bump allocator for rings and buffers.

use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd};

use vm_memory::{Bytes, FileOffset, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

use crate::Error;

/// Guest memory at guest-physical address 0.
#[derive(Debug)]
pub struct TestMemory {
    file: File,
    mem: GuestMemoryMmap<()>,
    size: u64,
    next: u64,
}

impl TestMemory {
    /// `size` bytes of shared memory.
    pub fn new(size: u64) -> Result<Self, Error> {
        // SAFETY: the name is a NUL-terminated string; the flags are valid.
        let fd = unsafe { libc::memfd_create(c"vfpga-test-guest".as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return Err(Error::Io(std::io::Error::last_os_error()));
        }
        // SAFETY: `fd` is a fresh descriptor nothing else owns.
        let file = unsafe { File::from_raw_fd(fd) };
        file.set_len(size).map_err(Error::Io)?;
        let region_file = file.try_clone().map_err(Error::Io)?;
        let len = usize::try_from(size).map_err(|_| Error::Protocol("memory too large"))?;
        let mem = GuestMemoryMmap::from_ranges_with_files([(
            GuestAddress(0),
            len,
            Some(FileOffset::new(region_file, 0)),
        )])
        .map_err(|_| Error::Protocol("cannot map guest memory"))?;
        Ok(Self {
            file,
            mem,
            size,
            next: 0,
        })
    }

    /// The mapping.
    pub fn mem(&self) -> &GuestMemoryMmap<()> {
        &self.mem
    }

    /// Size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Descriptor of the memfd, for the memory table.
    pub fn fd(&self) -> i32 {
        self.file.as_raw_fd()
    }

    /// Host address of guest address 0 (the "userspace address" of vhost-user).
    pub fn host_base(&self) -> u64 {
        self.mem
            .get_host_address(GuestAddress(0))
            .map_or(0, |p| p as u64)
    }

    /// Reserves `len` bytes aligned to `align` (a power of two).
    pub fn alloc(&mut self, len: u64, align: u64) -> Result<GuestAddress, Error> {
        let start = self.next.div_ceil(align) * align;
        let end = start.checked_add(len).ok_or(Error::OutOfMemory)?;
        if end > self.size {
            return Err(Error::OutOfMemory);
        }
        self.next = end;
        Ok(GuestAddress(start))
    }

    /// Current allocation mark, for [`TestMemory::release_to`].
    pub fn mark(&self) -> u64 {
        self.next
    }

    /// Frees everything allocated after `mark`.
    pub fn release_to(&mut self, mark: u64) {
        self.next = mark.min(self.next);
    }

    /// Copies `data` to guest address `at`.
    pub fn write(&self, at: GuestAddress, data: &[u8]) -> Result<(), Error> {
        self.mem
            .write_slice(data, at)
            .map_err(|_| Error::Protocol("write outside guest memory"))
    }

    /// Copies guest memory at `at` into `out`.
    pub fn read(&self, at: GuestAddress, out: &mut [u8]) -> Result<(), Error> {
        self.mem
            .read_slice(out, at)
            .map_err(|_| Error::Protocol("read outside guest memory"))
    }
}
