//! Pages shared between domains: granted to a peer through `/dev/xen/gntalloc`, or the
//! peer's grants mapped through `/dev/xen/gntdev`. Either way the pages are one mapping
//! in this process, unmapped on drop; an unmap notification can clear a byte in them and
//! send an event, so the peer learns this side went away even if this process dies.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

use super::{cvt, ioc, IOC_NONE, PAGE};

const GNTALLOC_ALLOC: libc::c_ulong = ioc(IOC_NONE, b'G', 5, 24);
const GNTALLOC_DEALLOC: libc::c_ulong = ioc(IOC_NONE, b'G', 6, 16);
const GNTALLOC_NOTIFY: libc::c_ulong = ioc(IOC_NONE, b'G', 7, 16);
const GNTDEV_MAP: libc::c_ulong = ioc(IOC_NONE, b'G', 0, 24);
const GNTDEV_UNMAP: libc::c_ulong = ioc(IOC_NONE, b'G', 1, 16);
const GNTDEV_NOTIFY: libc::c_ulong = ioc(IOC_NONE, b'G', 7, 16);

const FLAG_WRITABLE: u16 = 1;
const NOTIFY_CLEAR_BYTE: u32 = 1;
const NOTIFY_SEND_EVENT: u32 = 2;
/// Most pages in one allocation or mapping here (a vchan ring is at most 256).
pub const MAX_PAGES: usize = 512;

fn ioctl(file: &File, request: libc::c_ulong, arg: *mut u8) -> io::Result<()> {
    // SAFETY: callers pass a buffer at least as large as `request` encodes (and for
    // the variable-length requests as large as their count implies), valid for the call.
    cvt(unsafe { libc::ioctl(file.as_raw_fd(), request, arg) }).map(|_| ())
}

fn open(dev: &str, module: &str) -> io::Result<File> {
    File::options()
        .read(true)
        .write(true)
        .open(dev)
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("{dev}: {e} (is the {module} module loaded?)"),
            )
        })
}

/// A mapping of `len` bytes at `ptr`.
#[derive(Debug)]
struct Mapping {
    ptr: *mut u8,
    len: usize,
}

impl Mapping {
    fn new(file: &File, index: u64, pages: usize, prot: libc::c_int) -> io::Result<Self> {
        let len = pages * PAGE;
        let off = libc::off_t::try_from(index)
            .map_err(|_| io::Error::other("grant mapping offset out of range"))?;
        // SAFETY: a fresh shared mapping of the device at the offset it returned; the
        // result is checked before use.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                prot,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                off,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Self {
            ptr: ptr.cast(),
            len,
        })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        if self.len > 0 {
            // SAFETY: the mapping made in `new`, unmapped once (`len` is zeroed by an
            // owner that unmapped it already).
            unsafe { libc::munmap(self.ptr.cast(), self.len) };
        }
    }
}

/// Pages this domain grants to another (the vchan server's rings).
#[derive(Debug)]
pub struct Granted {
    map: Mapping,
    refs: Vec<u32>,
    index: u64,
    file: File,
}

// SAFETY: the mapping is owned by this value and only reached through its pointer; the
// users synchronise their accesses (atomics on the shared indices).
unsafe impl Send for Granted {}
// SAFETY: as above.
unsafe impl Sync for Granted {}

impl Granted {
    /// Grants `pages` zeroed pages to domain `domid`, writable by it.
    pub fn new(domid: u16, pages: usize) -> io::Result<Self> {
        if pages == 0 || pages > MAX_PAGES {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "page count"));
        }
        let file = open("/dev/xen/gntalloc", "xen-gntalloc")?;
        // struct ioctl_gntalloc_alloc_gref: u16 domid, u16 flags, u32 count, u64 index,
        // u32 gref_ids[count] (the kernel reads at least 24 bytes).
        let mut buf = vec![0u8; (16 + 4 * pages).max(24)];
        buf[0..2].copy_from_slice(&domid.to_ne_bytes());
        buf[2..4].copy_from_slice(&FLAG_WRITABLE.to_ne_bytes());
        let count = u32::try_from(pages).map_err(io::Error::other)?;
        buf[4..8].copy_from_slice(&count.to_ne_bytes());
        ioctl(&file, GNTALLOC_ALLOC, buf.as_mut_ptr())?;
        let index = u64::from_ne_bytes(buf[8..16].try_into().map_err(io::Error::other)?);
        let refs = buf[16..16 + 4 * pages]
            .chunks_exact(4)
            .map(|c| u32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let map = Mapping::new(&file, index, pages, libc::PROT_READ | libc::PROT_WRITE)?;
        Ok(Self {
            map,
            refs,
            index,
            file,
        })
    }

    /// The grant references, one per page.
    pub fn refs(&self) -> &[u32] {
        &self.refs
    }

    /// The pages in this process.
    pub fn as_ptr(&self) -> *mut u8 {
        self.map.ptr
    }

    /// When these pages are unmapped here (drop, or this process's death), clear the
    /// byte at `offset` and notify local event channel `port`.
    pub fn notify_on_unmap(&self, offset: usize, port: u32) -> io::Result<()> {
        notify(&self.file, GNTALLOC_NOTIFY, self.index, offset, port)
    }
}

impl Drop for Granted {
    fn drop(&mut self) {
        // The fd's hold on the pages; they live on while mapped (here or by the peer).
        let mut a = [0u8; 16];
        a[0..8].copy_from_slice(&self.index.to_ne_bytes());
        a[8..12].copy_from_slice(&u32::try_from(self.refs.len()).unwrap_or(0).to_ne_bytes());
        let _ = ioctl(&self.file, GNTALLOC_DEALLOC, a.as_mut_ptr());
    }
}

fn notify(
    file: &File,
    request: libc::c_ulong,
    index: u64,
    offset: usize,
    port: u32,
) -> io::Result<()> {
    // struct ioctl_gnt{alloc,dev}_unmap_notify: u64 index, u32 action, u32 port.
    let mut a = [0u8; 16];
    a[0..8].copy_from_slice(&(index + offset as u64).to_ne_bytes());
    a[8..12].copy_from_slice(&(NOTIFY_CLEAR_BYTE | NOTIFY_SEND_EVENT).to_ne_bytes());
    a[12..16].copy_from_slice(&port.to_ne_bytes());
    ioctl(file, request, a.as_mut_ptr())
}

/// Another domain's granted pages, mapped here (the vchan client's view).
#[derive(Debug)]
pub struct Mapped {
    map: Mapping,
    index: u64,
    pages: usize,
    file: File,
}

// SAFETY: as for `Granted`.
unsafe impl Send for Mapped {}
// SAFETY: as for `Granted`.
unsafe impl Sync for Mapped {}

impl Mapped {
    /// Maps the pages `refs` of domain `domid`, writable or read-only.
    pub fn new(domid: u16, refs: &[u32], writable: bool) -> io::Result<Self> {
        if refs.is_empty() || refs.len() > MAX_PAGES {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "grant count"));
        }
        let file = open("/dev/xen/gntdev", "xen-gntdev")?;
        // struct ioctl_gntdev_map_grant_ref: u32 count, u32 pad, u64 index, then
        // { u32 domid, u32 ref } per page.
        let mut buf = vec![0u8; 16 + 8 * refs.len()];
        let count = u32::try_from(refs.len()).map_err(io::Error::other)?;
        buf[0..4].copy_from_slice(&count.to_ne_bytes());
        for (i, r) in refs.iter().enumerate() {
            let at = 16 + 8 * i;
            buf[at..at + 4].copy_from_slice(&u32::from(domid).to_ne_bytes());
            buf[at + 4..at + 8].copy_from_slice(&r.to_ne_bytes());
        }
        ioctl(&file, GNTDEV_MAP, buf.as_mut_ptr())?;
        let index = u64::from_ne_bytes(buf[8..16].try_into().map_err(io::Error::other)?);
        let prot = if writable {
            libc::PROT_READ | libc::PROT_WRITE
        } else {
            libc::PROT_READ
        };
        let map = match Mapping::new(&file, index, refs.len(), prot) {
            Ok(m) => m,
            Err(e) => {
                let _ = unmap(&file, index, refs.len());
                return Err(e);
            }
        };
        Ok(Self {
            map,
            index,
            pages: refs.len(),
            file,
        })
    }

    /// The pages in this process.
    pub fn as_ptr(&self) -> *mut u8 {
        self.map.ptr
    }

    /// When these pages are unmapped here (drop, or this process's death), clear the
    /// byte at `offset` and notify local event channel `port`.
    pub fn notify_on_unmap(&self, offset: usize, port: u32) -> io::Result<()> {
        notify(&self.file, GNTDEV_NOTIFY, self.index, offset, port)
    }
}

fn unmap(file: &File, index: u64, pages: usize) -> io::Result<()> {
    let mut a = [0u8; 16];
    a[0..8].copy_from_slice(&index.to_ne_bytes());
    a[8..12].copy_from_slice(&u32::try_from(pages).unwrap_or(0).to_ne_bytes());
    ioctl(file, GNTDEV_UNMAP, a.as_mut_ptr())
}

impl Drop for Mapped {
    fn drop(&mut self) {
        // The mapping must go before the grant can be unmapped (fields drop after this).
        // SAFETY: the mapping made in `new`; zeroing `len` keeps `Mapping::drop` from
        // unmapping it again.
        unsafe { libc::munmap(self.map.ptr.cast(), self.map.len) };
        self.map.len = 0;
        let _ = unmap(&self.file, self.index, self.pages);
    }
}
