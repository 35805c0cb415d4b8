//! vhost-user messages as the supervisor relays them: a 12-byte header (request,
//! flags, payload size), the payload, and the descriptors that came with the header.
//! Written here because the vhost crate's framing (`Endpoint`) is private to it; the
//! supervisor needs only to read and write whole messages, not to decode them.

use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

use vmm_sys_util::sock_ctrl_msg::ScmSocket;

/// Bytes of a header.
pub const HEADER: usize = 12;
/// Largest payload a message may carry (the vhost crate's limit too).
pub const MAX_PAYLOAD: usize = 0x1000;
/// Most descriptors one message may carry.
pub const MAX_FDS: usize = 32;
/// Header flag: the sender wants an acknowledgement (with `REPLY_ACK`).
pub const NEED_REPLY: u32 = 0x8;

/// One message.
#[derive(Debug)]
pub struct Msg {
    /// Request code.
    pub req: u32,
    /// Header flags.
    pub flags: u32,
    /// Payload.
    pub payload: Vec<u8>,
    /// Descriptors passed with it.
    pub fds: Vec<OwnedFd>,
}

impl Msg {
    /// The payload's `u32` at `off`, if it has one.
    pub fn u32_at(&self, off: usize) -> Option<u32> {
        let b = self.payload.get(off..off + 4)?;
        Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// The payload's `u64` at `off`, if it has one.
    pub fn u64_at(&self, off: usize) -> Option<u64> {
        let b = self.payload.get(off..off + 8)?;
        let mut raw = [0u8; 8];
        raw.copy_from_slice(b);
        Some(u64::from_le_bytes(raw))
    }

    /// A copy with duplicated descriptors.
    pub fn try_clone(&self) -> io::Result<Self> {
        Ok(Self {
            req: self.req,
            flags: self.flags,
            payload: self.payload.clone(),
            fds: self
                .fds
                .iter()
                .map(OwnedFd::try_clone)
                .collect::<io::Result<_>>()?,
        })
    }
}

/// Why a message could not be read.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// The peer closed the connection between messages.
    #[error("connection closed")]
    Closed,
    /// The message breaks the framing.
    #[error("{0}")]
    Bad(&'static str),
    /// The socket failed.
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Reads one message (blocking).
pub fn read(sock: &UnixStream) -> Result<Msg, WireError> {
    let mut header = [0u8; HEADER];
    let mut raw_fds = [-1 as RawFd; MAX_FDS];
    let mut iov = [libc::iovec {
        iov_base: header.as_mut_ptr().cast(),
        iov_len: HEADER,
    }];
    // SAFETY: the iovec points into `header`, which outlives the call; the received
    // descriptors land in `raw_fds` and are owned below.
    let (n, nfds) = unsafe { sock.recv_with_fds(&mut iov, &mut raw_fds) }
        .map_err(|e| WireError::Io(io::Error::from_raw_os_error(e.errno())))?;
    let fds: Vec<OwnedFd> = raw_fds[..nfds.min(MAX_FDS)]
        .iter()
        .filter(|&&fd| fd >= 0)
        // SAFETY: descriptors just received with SCM_RIGHTS belong to nobody else.
        .map(|&fd| unsafe { OwnedFd::from_raw_fd(fd) })
        .collect();
    if n == 0 {
        return Err(WireError::Closed);
    }
    let mut r = sock;
    if n < HEADER {
        r.read_exact(&mut header[n..])
            .map_err(|_| WireError::Bad("header cut short"))?;
    }
    let word =
        |i: usize| u32::from_le_bytes([header[i], header[i + 1], header[i + 2], header[i + 3]]);
    let size = word(8) as usize;
    if size > MAX_PAYLOAD {
        return Err(WireError::Bad("payload larger than 4096 bytes"));
    }
    let mut payload = vec![0u8; size];
    r.read_exact(&mut payload)
        .map_err(|_| WireError::Bad("payload cut short"))?;
    Ok(Msg {
        req: word(0),
        flags: word(4),
        payload,
        fds,
    })
}

/// Writes one message, its descriptors with the header.
pub fn write(sock: &UnixStream, msg: &Msg) -> io::Result<()> {
    let size = u32::try_from(msg.payload.len()).map_err(|_| io::ErrorKind::InvalidInput)?;
    let mut header = [0u8; HEADER];
    header[..4].copy_from_slice(&msg.req.to_le_bytes());
    header[4..8].copy_from_slice(&msg.flags.to_le_bytes());
    header[8..].copy_from_slice(&size.to_le_bytes());
    let fds: Vec<RawFd> = msg.fds.iter().map(AsRawFd::as_raw_fd).collect();
    let mut all = Vec::with_capacity(HEADER + msg.payload.len());
    all.extend_from_slice(&header);
    all.extend_from_slice(&msg.payload);
    let mut sent = sock
        .send_with_fds(&[&all[..]], &fds)
        .map_err(|e| io::Error::from_raw_os_error(e.errno()))?;
    while sent < all.len() {
        sent += std::io::Write::write(&mut &*sock, &all[sent..])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn messages_and_descriptors_round_trip() {
        let (a, b) = UnixStream::pair().unwrap();
        let fd = OwnedFd::from(std::fs::File::open("/dev/null").unwrap());
        let msg = Msg {
            req: 12,
            flags: 1,
            payload: 5u64.to_le_bytes().to_vec(),
            fds: vec![fd],
        };
        write(&a, &msg).unwrap();
        let got = read(&b).unwrap();
        assert_eq!((got.req, got.flags, got.u64_at(0)), (12, 1, Some(5)));
        assert_eq!(got.fds.len(), 1);
        drop(a);
        assert!(matches!(read(&b), Err(WireError::Closed)));
    }

    #[test]
    fn lying_and_cut_messages_are_errors() {
        // A size beyond the limit.
        let (mut a, b) = UnixStream::pair().unwrap();
        let mut h = [0u8; HEADER];
        h[8..].copy_from_slice(&(u32::MAX).to_le_bytes());
        a.write_all(&h).unwrap();
        assert!(matches!(read(&b), Err(WireError::Bad(_))));
        // A payload shorter than its size, then the peer gone.
        let (mut a, b) = UnixStream::pair().unwrap();
        h[8..].copy_from_slice(&64u32.to_le_bytes());
        a.write_all(&h).unwrap();
        a.write_all(&[0u8; 10]).unwrap();
        drop(a);
        assert!(matches!(read(&b), Err(WireError::Bad(_))));
        // A header cut short.
        let (mut a, b) = UnixStream::pair().unwrap();
        a.write_all(&h[..5]).unwrap();
        drop(a);
        assert!(matches!(read(&b), Err(WireError::Bad(_))));
    }
}
