//! AF_VSOCK stream sockets: a guest connects to its host (CID 2) without a network, and
//! the host learns the peer's CID from the kernel, which the guest cannot forge.
//!
//! Written on libc directly: the operations are few (socket, bind, listen, accept,
//! connect, send, recv, two socket options) and a crate for them would bring an async
//! runtime or a second socket abstraction the rest of the project does not use.

use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use vfpga_proto::stream::TimeoutSocket;

/// The host's CID as seen from a guest.
pub const HOST_CID: u32 = 2;
/// Any CID (listening).
pub const CID_ANY: u32 = u32::MAX;

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn addr(cid: u32, port: u32) -> libc::sockaddr_vm {
    // SAFETY: sockaddr_vm is plain data; all-zero is a valid value.
    let mut a: libc::sockaddr_vm = unsafe { std::mem::zeroed() };
    a.svm_family = AF_VSOCK_FAMILY;
    a.svm_cid = cid;
    a.svm_port = port;
    a
}

/// `AF_VSOCK` (40) as a `sa_family_t`.
const AF_VSOCK_FAMILY: libc::sa_family_t = 40;
const _: () = assert!(AF_VSOCK_FAMILY as libc::c_int == libc::AF_VSOCK);

/// Size of a `sockaddr_vm` (16 bytes).
#[allow(clippy::cast_possible_truncation)] // a few bytes
const ADDR_LEN: libc::socklen_t = std::mem::size_of::<libc::sockaddr_vm>() as libc::socklen_t;
/// Size of a `timeval` (16 bytes, 8 on 32-bit boards).
#[allow(clippy::cast_possible_truncation)] // a few bytes
const TIMEVAL_LEN: libc::socklen_t = std::mem::size_of::<libc::timeval>() as libc::socklen_t;

fn socket() -> io::Result<OwnedFd> {
    // SAFETY: socket(2) with constant arguments; the result is checked.
    let fd =
        cvt(unsafe { libc::socket(libc::AF_VSOCK, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: `fd` was just returned by socket(2) and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A listening vsock socket.
#[derive(Debug)]
pub struct VsockListener {
    fd: OwnedFd,
}

impl From<OwnedFd> for VsockListener {
    /// A listening vsock socket made elsewhere (a supervisor's, inherited).
    fn from(fd: OwnedFd) -> Self {
        Self { fd }
    }
}

impl VsockListener {
    /// Listens on `port` for any peer CID.
    pub fn bind(port: u32) -> io::Result<Self> {
        let fd = socket()?;
        let a = addr(CID_ANY, port);
        // SAFETY: `a` is a valid sockaddr_vm of ADDR_LEN bytes for the call.
        cvt(unsafe {
            libc::bind(
                fd.as_raw_fd(),
                std::ptr::from_ref(&a).cast::<libc::sockaddr>(),
                ADDR_LEN,
            )
        })?;
        // SAFETY: listen(2) on a socket we own.
        cvt(unsafe { libc::listen(fd.as_raw_fd(), 128) })?;
        Ok(Self { fd })
    }

    /// Waits for a connection; returns it with the peer's CID.
    pub fn accept(&self) -> io::Result<(VsockStream, u32)> {
        // SAFETY: as in `addr`.
        let mut a: libc::sockaddr_vm = unsafe { std::mem::zeroed() };
        let mut len = ADDR_LEN;
        loop {
            // SAFETY: `a` and `len` are valid for writes of the address for the call.
            let r = unsafe {
                libc::accept4(
                    self.fd.as_raw_fd(),
                    std::ptr::from_mut(&mut a).cast::<libc::sockaddr>(),
                    &mut len,
                    libc::SOCK_CLOEXEC,
                )
            };
            match cvt(r) {
                // SAFETY: accept4 returned a new descriptor that nobody else owns.
                Ok(fd) => return Ok((VsockStream(unsafe { OwnedFd::from_raw_fd(fd) }), a.svm_cid)),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

impl From<VsockListener> for OwnedFd {
    fn from(l: VsockListener) -> Self {
        l.fd
    }
}

impl AsRawFd for VsockListener {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// A connected vsock stream.
#[derive(Debug)]
pub struct VsockStream(OwnedFd);

impl VsockStream {
    /// Connects to `port` of `cid` (the host is [`HOST_CID`]).
    pub fn connect(cid: u32, port: u32) -> io::Result<Self> {
        let fd = socket()?;
        let a = addr(cid, port);
        loop {
            // SAFETY: `a` is a valid sockaddr_vm of ADDR_LEN bytes for the call.
            let r = unsafe {
                libc::connect(
                    fd.as_raw_fd(),
                    std::ptr::from_ref(&a).cast::<libc::sockaddr>(),
                    ADDR_LEN,
                )
            };
            match cvt(r) {
                Ok(_) => return Ok(Self(fd)),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Another handle on the same connection.
    pub fn try_clone(&self) -> io::Result<Self> {
        self.0.try_clone().map(Self)
    }

    /// Ends the connection in both directions (wakes a thread blocked on it).
    pub fn shutdown(&self) -> io::Result<()> {
        // SAFETY: shutdown(2) on a socket we own.
        cvt(unsafe { libc::shutdown(self.0.as_raw_fd(), libc::SHUT_RDWR) }).map(|_| ())
    }

    fn set_timeout(&self, opt: libc::c_int, t: Option<Duration>) -> io::Result<()> {
        let tv = match t {
            None => libc::timeval {
                tv_sec: 0,
                tv_usec: 0,
            },
            Some(d) if d.is_zero() => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "a zero timeout is not a timeout",
                ))
            }
            Some(d) => libc::timeval {
                tv_sec: libc::time_t::try_from(d.as_secs()).unwrap_or(libc::time_t::MAX),
                // Below 1 µs, wait 1 µs rather than forever. Under a million: fits the
                // 32-bit suseconds_t of armv7 as well as x86-64's 64-bit one.
                tv_usec: micros(d),
            },
        };
        // SAFETY: `tv` is a valid timeval for the call; the length is its size.
        cvt(unsafe {
            libc::setsockopt(
                self.0.as_raw_fd(),
                libc::SOL_SOCKET,
                opt,
                std::ptr::from_ref(&tv).cast::<libc::c_void>(),
                TIMEVAL_LEN,
            )
        })
        .map(|_| ())
    }
}

impl AsRawFd for VsockStream {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

impl Read for VsockStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: `buf` is valid for writes of its length for the call.
        let n = unsafe {
            libc::recv(
                self.0.as_raw_fd(),
                buf.as_mut_ptr().cast::<libc::c_void>(),
                buf.len(),
                0,
            )
        };
        usize::try_from(n).map_err(|_| io::Error::last_os_error())
    }
}

impl Write for VsockStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // SAFETY: `buf` is valid for reads of its length for the call.
        let n = unsafe {
            libc::send(
                self.0.as_raw_fd(),
                buf.as_ptr().cast::<libc::c_void>(),
                buf.len(),
                libc::MSG_NOSIGNAL,
            )
        };
        usize::try_from(n).map_err(|_| io::Error::last_os_error())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl TimeoutSocket for VsockStream {
    fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        self.set_timeout(libc::SO_RCVTIMEO, t)
    }
    fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        self.set_timeout(libc::SO_SNDTIMEO, t)
    }
}

/// The microseconds of `d` below a second as `suseconds_t` (at least 1 when `d` is
/// below a second: a 0 timeout would mean forever).
fn micros(d: Duration) -> libc::suseconds_t {
    let us = d.subsec_micros().max(u32::from(d.as_secs() == 0));
    // Under a million: fits the 32-bit suseconds_t of armv7 and the 64-bit one of
    // x86-64, where a conversion would be fallible on one and lossless on the other.
    #[allow(clippy::cast_lossless, clippy::cast_possible_wrap)]
    let us = us as libc::suseconds_t;
    us
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_listener_binds_and_a_connect_to_nowhere_fails_cleanly() {
        // These machines have AF_VSOCK but no vhost-vsock: binding works, and a connect
        // to a CID nobody serves fails with an error rather than hanging forever.
        match VsockListener::bind(0x7fff_0001) {
            Ok(l) => assert!(l.as_raw_fd() >= 0),
            // A kernel without vsock at all: nothing to test.
            Err(e) if e.raw_os_error() == Some(libc::EAFNOSUPPORT) => return,
            Err(e) => panic!("bind: {e}"),
        }
        let r = VsockStream::connect(0x7fff_ff00, 1);
        assert!(r.is_err(), "connected to a CID that does not exist");
    }
}
