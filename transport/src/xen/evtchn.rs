//! Interdomain event channels through `/dev/xen/evtchn`: bind a port, notify the peer,
//! wait for the peer's notifications. A port that fires is masked by the kernel until
//! this side writes it back (unmasks it).

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::time::Duration;

use super::{cvt, ioc, IOC_NONE};

const BIND_INTERDOMAIN: libc::c_ulong = ioc(IOC_NONE, b'E', 1, 8);
const BIND_UNBOUND_PORT: libc::c_ulong = ioc(IOC_NONE, b'E', 2, 4);
const NOTIFY: libc::c_ulong = ioc(IOC_NONE, b'E', 4, 4);

/// One `/dev/xen/evtchn` handle with the ports bound through it.
#[derive(Debug)]
pub struct Evtchn {
    file: File,
}

impl Evtchn {
    /// Opens the event-channel device.
    pub fn open() -> io::Result<Self> {
        File::options()
            .read(true)
            .write(true)
            .open("/dev/xen/evtchn")
            .map(|file| Self { file })
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("/dev/xen/evtchn: {e} (is the xen-evtchn module loaded?)"),
                )
            })
    }

    fn ioctl<T>(&self, request: libc::c_ulong, arg: &mut T) -> io::Result<u32> {
        // SAFETY: `arg` is the structure `request` encodes the size of, valid for the
        // whole call; the kernel reads (and for none of these writes) only it.
        let r =
            cvt(unsafe { libc::ioctl(self.file.as_raw_fd(), request, std::ptr::from_mut(arg)) })?;
        u32::try_from(r).map_err(|_| io::Error::other("negative event channel port"))
    }

    /// A new port that domain `remote` may bind to (the server side); returns it.
    pub fn bind_unbound(&self, remote: u32) -> io::Result<u32> {
        let mut a = [remote];
        self.ioctl(BIND_UNBOUND_PORT, &mut a)
    }

    /// Binds to `remote_port` of domain `remote` (the client side); returns the local
    /// port.
    pub fn bind_interdomain(&self, remote: u32, remote_port: u32) -> io::Result<u32> {
        let mut a = [remote, remote_port];
        self.ioctl(BIND_INTERDOMAIN, &mut a)
    }

    /// Notifies the peer of local `port`.
    pub fn notify(&self, port: u32) -> io::Result<()> {
        let mut a = [port];
        self.ioctl(NOTIFY, &mut a).map(|_| ())
    }

    /// Re-enables `port` after it fired.
    pub fn unmask(&self, port: u32) -> io::Result<()> {
        (&self.file).write_all(&port.to_ne_bytes())
    }

    /// Waits up to `timeout` for a notification; `true` if one came (the fired ports are
    /// taken and unmasked again).
    pub fn wait(&self, timeout: Duration) -> io::Result<bool> {
        let mut pfd = libc::pollfd {
            fd: self.file.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
        // SAFETY: one valid pollfd for the call.
        let n = unsafe { libc::poll(&mut pfd, 1, ms) };
        if n < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::Interrupted {
                Ok(false)
            } else {
                Err(e)
            };
        }
        if n == 0 {
            return Ok(false);
        }
        let mut buf = [0u8; 64];
        let got = (&self.file).read(&mut buf)?;
        for p in buf[..got - got % 4].chunks_exact(4) {
            self.unmask(u32::from_ne_bytes([p[0], p[1], p[2], p[3]]))?;
        }
        Ok(true)
    }
}
