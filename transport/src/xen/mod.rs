//! What a vchan end needs from Xen, through Linux's device files: event channels
//! (`/dev/xen/evtchn`), sharing pages with another domain (`/dev/xen/gntalloc`) and
//! mapping another domain's pages (`/dev/xen/gntdev`), and xenstore. The ioctl numbers
//! and structures are those of Linux's `include/uapi/xen/{evtchn,gntalloc,gntdev}.h`.

pub mod evtchn;
pub mod grant;
pub mod xenstore;

use std::io;

/// Size of a page shared with another domain.
pub const PAGE: usize = 4096;

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// `_IOC(dir, type, nr, size)` as Linux encodes it on x86 and Arm (32 bits).
#[allow(clippy::cast_possible_truncation)] // sizes of a few bytes
const fn ioc(dir: u32, ty: u8, nr: u8, size: usize) -> libc::c_ulong {
    (dir << 30 | (size as u32) << 16 | (ty as u32) << 8 | nr as u32) as libc::c_ulong
}

const IOC_NONE: u32 = 0;
