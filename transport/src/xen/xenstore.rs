//! A small synchronous xenstore client: what a vchan end needs (read, write, set
//! permissions, remove, a transaction), over xenstored's unix socket in dom0 or
//! `/dev/xen/xenbus` in a domU. The wire format is `struct xsd_sockmsg` (type, request
//! id, transaction id, length, as little-endian u32) and a payload of at most 4096
//! bytes (Xen's `io/xs_wire.h`).
//!
//! Written here rather than taken from a crate: xenstore-rs (used by vfpgad's dom0
//! service) has no permission call and is GPL-3.0-only, which this MIT/Apache crate for
//! guest programs cannot link.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

const XS_READ: u32 = 2;
const XS_TRANSACTION_START: u32 = 6;
const XS_TRANSACTION_END: u32 = 7;
const XS_WRITE: u32 = 11;
const XS_RM: u32 = 13;
const XS_SET_PERMS: u32 = 14;
const XS_WATCH_EVENT: u32 = 15;
const XS_ERROR: u32 = 16;

/// Largest payload xenstored sends or accepts.
pub const PAYLOAD_MAX: usize = 4096;

/// Who may do what with a node: the first entry names the owner (and what everyone not
/// listed may do), the others one domain each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Perm {
    /// No access.
    None(u32),
    /// Read.
    Read(u32),
    /// Write.
    Write(u32),
    /// Read and write.
    Both(u32),
}

impl Perm {
    fn encode(self) -> String {
        match self {
            Perm::None(d) => format!("n{d}"),
            Perm::Read(d) => format!("r{d}"),
            Perm::Write(d) => format!("w{d}"),
            Perm::Both(d) => format!("b{d}"),
        }
    }
}

enum Conn {
    Socket(UnixStream),
    Xenbus(File),
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Socket(s) => s.read(buf),
            Conn::Xenbus(f) => f.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Conn::Socket(s) => s.write(buf),
            Conn::Xenbus(f) => f.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A connection to xenstore.
pub struct Xenstore {
    conn: Conn,
    tx: u32,
}

impl std::fmt::Debug for Xenstore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Xenstore").field("tx", &self.tx).finish()
    }
}

/// The errno names xenstored answers with, as I/O errors.
fn xs_error(payload: &[u8]) -> io::Error {
    let name =
        String::from_utf8_lossy(payload.split(|&b| b == 0).next().unwrap_or(&[])).into_owned();
    let (kind, what) = match name.as_str() {
        "ENOENT" => (io::ErrorKind::NotFound, "no such key"),
        "EACCES" | "EPERM" => (io::ErrorKind::PermissionDenied, "permission denied"),
        "EEXIST" => (io::ErrorKind::AlreadyExists, "already exists"),
        "EAGAIN" => (io::ErrorKind::WouldBlock, "conflict, try again"),
        "EINVAL" => (io::ErrorKind::InvalidInput, "invalid request"),
        _ => (io::ErrorKind::Other, "refused"),
    };
    io::Error::new(kind, format!("xenstore: {what} ({name})"))
}

impl Xenstore {
    /// Connects through `$XENSTORED_PATH`, `/run/xenstored/socket`, or (in a domU)
    /// `/dev/xen/xenbus`. Socket reads time out after `timeout`.
    pub fn open(timeout: Duration) -> io::Result<Self> {
        let socket = std::env::var_os("XENSTORED_PATH")
            .map_or_else(|| "/run/xenstored/socket".into(), std::path::PathBuf::from);
        match UnixStream::connect(&socket) {
            Ok(s) => {
                s.set_read_timeout(Some(timeout))?;
                s.set_write_timeout(Some(timeout))?;
                Ok(Self::over(Conn::Socket(s)))
            }
            Err(e) => {
                let xenbus = Path::new("/dev/xen/xenbus");
                match File::options().read(true).write(true).open(xenbus) {
                    Ok(f) => Ok(Self::over(Conn::Xenbus(f))),
                    Err(_) => Err(io::Error::new(
                        io::ErrorKind::Unsupported,
                        format!(
                            "cannot reach xenstore through {} ({e}) or /dev/xen/xenbus (is this a Xen domain with xenfs or the xenbus device?)",
                            socket.display()
                        ),
                    )),
                }
            }
        }
    }

    /// A client on a connected stream (tests give it a peer of their own).
    pub fn on_stream(s: UnixStream) -> Self {
        Self::over(Conn::Socket(s))
    }

    fn over(conn: Conn) -> Self {
        Self { conn, tx: 0 }
    }

    /// One request and its answer; watch events in between are dropped.
    fn request(&mut self, ty: u32, payload: &[u8]) -> io::Result<Vec<u8>> {
        if payload.len() > PAYLOAD_MAX {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "xenstore request longer than 4096 bytes",
            ));
        }
        let len = u32::try_from(payload.len()).map_err(io::Error::other)?;
        let mut msg = Vec::with_capacity(16 + payload.len());
        for v in [ty, 0, self.tx, len] {
            msg.extend_from_slice(&v.to_le_bytes());
        }
        msg.extend_from_slice(payload);
        // The xenbus device takes a message in one write.
        self.conn.write_all(&msg)?;
        loop {
            let mut hdr = [0u8; 16];
            self.conn.read_exact(&mut hdr)?;
            let word = |i: usize| u32::from_le_bytes([hdr[i], hdr[i + 1], hdr[i + 2], hdr[i + 3]]);
            let (rty, len) = (word(0), word(12) as usize);
            if len > PAYLOAD_MAX {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("xenstore answered with {len} bytes (at most {PAYLOAD_MAX})"),
                ));
            }
            let mut body = vec![0u8; len];
            self.conn.read_exact(&mut body)?;
            match rty {
                XS_WATCH_EVENT => continue,
                XS_ERROR => return Err(xs_error(&body)),
                t if t == ty => return Ok(body),
                t => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("xenstore answered type {t} to a request of type {ty}"),
                    ))
                }
            }
        }
    }

    fn path(path: &str) -> io::Result<Vec<u8>> {
        if path.is_empty() || path.bytes().any(|b| b == 0) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{path:?} is not a xenstore path"),
            ));
        }
        let mut p = path.as_bytes().to_vec();
        p.push(0);
        Ok(p)
    }

    /// The value at `path` (relative paths are under this domain's own path).
    pub fn read(&mut self, path: &str) -> io::Result<Vec<u8>> {
        let p = Self::path(path)?;
        self.request(XS_READ, &p)
    }

    /// A value as a decimal number.
    pub fn read_u32(&mut self, path: &str) -> io::Result<u32> {
        let v = self.read(path)?;
        std::str::from_utf8(&v)
            .ok()
            .and_then(|s| s.trim_end_matches('\0').trim().parse().ok())
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "xenstore {path}: {:?} is not a number",
                        String::from_utf8_lossy(&v)
                    ),
                )
            })
    }

    /// Writes `value` at `path`, creating missing parents.
    pub fn write(&mut self, path: &str, value: &[u8]) -> io::Result<()> {
        let mut p = Self::path(path)?;
        p.extend_from_slice(value);
        self.request(XS_WRITE, &p).map(|_| ())
    }

    /// Sets who may access `path` (the first entry is the owner).
    pub fn set_perms(&mut self, path: &str, perms: &[Perm]) -> io::Result<()> {
        let mut p = Self::path(path)?;
        for perm in perms {
            p.extend_from_slice(perm.encode().as_bytes());
            p.push(0);
        }
        self.request(XS_SET_PERMS, &p).map(|_| ())
    }

    /// Removes `path` and everything below it (a missing path is not an error).
    pub fn rm(&mut self, path: &str) -> io::Result<()> {
        let p = Self::path(path)?;
        match self.request(XS_RM, &p) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            r => r.map(|_| ()),
        }
    }

    /// Runs `f` in a transaction, again while xenstored reports a conflict (at most 16
    /// times).
    pub fn transaction(
        &mut self,
        mut f: impl FnMut(&mut Self) -> io::Result<()>,
    ) -> io::Result<()> {
        for _ in 0..16 {
            let id = self.request(XS_TRANSACTION_START, b"\0")?;
            let id = std::str::from_utf8(&id)
                .ok()
                .and_then(|s| s.trim_end_matches('\0').parse::<u32>().ok())
                .ok_or_else(|| {
                    io::Error::new(io::ErrorKind::InvalidData, "xenstore: bad transaction id")
                })?;
            self.tx = id;
            let r = f(self);
            let end = self.request(XS_TRANSACTION_END, if r.is_ok() { b"T\0" } else { b"F\0" });
            self.tx = 0;
            match (r, end) {
                (Err(e), _) => return Err(e),
                (Ok(()), Ok(_)) => return Ok(()),
                (Ok(()), Err(e)) if e.kind() == io::ErrorKind::WouldBlock => continue,
                (Ok(()), Err(e)) => return Err(e),
            }
        }
        Err(io::Error::new(
            io::ErrorKind::WouldBlock,
            "xenstore: the transaction kept conflicting",
        ))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::cast_possible_truncation)]
mod tests {
    use super::*;

    /// A scripted peer: answers each request with the next canned reply.
    fn peer(replies: Vec<Vec<u8>>) -> (Xenstore, std::thread::JoinHandle<Vec<Vec<u8>>>) {
        let (a, mut b) = UnixStream::pair().unwrap();
        let t = std::thread::spawn(move || {
            let mut seen = Vec::new();
            for r in replies {
                let mut hdr = [0u8; 16];
                if b.read_exact(&mut hdr).is_err() {
                    break;
                }
                let len = u32::from_le_bytes(hdr[12..16].try_into().unwrap()) as usize;
                let mut body = vec![0u8; len];
                b.read_exact(&mut body).unwrap();
                let mut m = hdr[..16].to_vec();
                m.extend_from_slice(&body);
                seen.push(m);
                let _ = b.write_all(&r);
            }
            seen
        });
        (Xenstore::on_stream(a), t)
    }

    fn msg(ty: u32, body: &[u8]) -> Vec<u8> {
        let mut m = Vec::new();
        for v in [ty, 0, 0, body.len() as u32] {
            m.extend_from_slice(&v.to_le_bytes());
        }
        m.extend_from_slice(body);
        m
    }

    #[test]
    fn requests_are_framed_and_answers_checked() {
        let (mut xs, t) = peer(vec![
            [msg(XS_WATCH_EVENT, b"@x\0t\0"), msg(XS_READ, b"42")].concat(),
            msg(XS_WRITE, b"OK\0"),
            msg(XS_SET_PERMS, b"OK\0"),
            msg(XS_ERROR, b"ENOENT\0"),
            msg(XS_ERROR, b"EACCES\0"),
        ]);
        assert_eq!(xs.read_u32("vfpga/0/ring-ref").unwrap(), 42);
        xs.write("/local/domain/0/x", b"7").unwrap();
        xs.set_perms("/local/domain/0/x", &[Perm::None(0), Perm::Read(5)])
            .unwrap();
        xs.rm("/nope").unwrap();
        assert_eq!(
            xs.read("/secret").unwrap_err().kind(),
            io::ErrorKind::PermissionDenied
        );
        drop(xs);
        let seen = t.join().unwrap();
        assert_eq!(&seen[0][16..], b"vfpga/0/ring-ref\0");
        assert_eq!(&seen[1][16..], b"/local/domain/0/x\x007");
        assert_eq!(&seen[2][16..], b"/local/domain/0/x\0n0\0r5\0");
        assert_eq!(
            u32::from_le_bytes(seen[2][..4].try_into().unwrap()),
            XS_SET_PERMS
        );
    }

    #[test]
    fn lying_or_broken_answers_are_errors() {
        // A length beyond the protocol's limit, a reply of the wrong type, a peer that
        // hangs up in the middle: errors, not allocations or hangs.
        let mut huge = msg(XS_READ, b"");
        huge[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
        let (mut xs, _t) = peer(vec![huge]);
        assert_eq!(xs.read("a").unwrap_err().kind(), io::ErrorKind::InvalidData);
        let (mut xs, _t) = peer(vec![msg(XS_WRITE, b"OK\0")]);
        assert_eq!(xs.read("a").unwrap_err().kind(), io::ErrorKind::InvalidData);
        let mut cut = msg(XS_READ, b"12345");
        cut.truncate(18);
        let (mut xs, _t) = peer(vec![cut]);
        assert!(xs.read("a").is_err());
        let (mut xs, _t) = peer(vec![msg(XS_READ, b"x9")]);
        assert_eq!(
            xs.read_u32("a").unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
        let (mut xs, _t) = peer(vec![]);
        assert!(xs.read("a\0b").is_err());
        assert!(xs.write(&"x".repeat(5000), b"").is_err());
    }
}
