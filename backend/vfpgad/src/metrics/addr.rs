//! Where the metrics endpoint listens, and a connection to it of either kind.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use crate::sockets::bind;

/// Where the endpoint listens: `HOST:PORT` or `unix:PATH`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Addr {
    /// A TCP address.
    Tcp(SocketAddr),
    /// A unix socket.
    Unix(PathBuf),
}

impl FromStr for Addr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if let Some(p) = s.strip_prefix("unix:") {
            if !p.starts_with('/') {
                return Err(format!(
                    "{s}: the socket path must be absolute (unix:/run/vfpga/metrics.sock)"
                ));
            }
            return Ok(Addr::Unix(p.into()));
        }
        if s.starts_with('/') {
            return Err(format!("{s}: write a socket path as unix:{s}"));
        }
        // Only names that need no lookup: an address is what the operator meant to
        // expose, and "localhost" is the usual exception.
        let s2 = s
            .strip_prefix("localhost:")
            .map(|p| format!("127.0.0.1:{p}"));
        s2.as_deref()
            .unwrap_or(s)
            .parse::<SocketAddr>()
            .map(Addr::Tcp)
            .map_err(|_| {
                format!("{s}: expected HOST:PORT with an IP address (127.0.0.1:9464, [::1]:9464, localhost:9464) or unix:PATH")
            })
    }
}

impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Addr::Tcp(a) => write!(f, "{a}"),
            Addr::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

impl Addr {
    /// Binds the listening socket (a unix socket gets `mode` and `gid`).
    pub fn bind(&self, mode: Option<u32>, gid: Option<u32>) -> io::Result<OwnedFd> {
        match self {
            Addr::Tcp(a) => TcpListener::bind(a).map(OwnedFd::from),
            Addr::Unix(p) => bind(p, mode, gid).map(OwnedFd::from),
        }
    }

    /// Connects to it (for `vfpgad status`).
    pub fn connect(&self, timeout: Duration) -> io::Result<Conn> {
        match self {
            Addr::Tcp(a) => TcpStream::connect_timeout(a, timeout).map(Conn::Tcp),
            Addr::Unix(p) => UnixStream::connect(p).map(Conn::Unix),
        }
    }
}

/// A connection of either kind.
#[derive(Debug)]
pub enum Conn {
    /// TCP.
    Tcp(TcpStream),
    /// Unix.
    Unix(UnixStream),
}

impl Conn {
    /// Bounds every read by `t`.
    pub fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        match self {
            Conn::Tcp(s) => s.set_read_timeout(t),
            Conn::Unix(s) => s.set_read_timeout(t),
        }
    }

    /// Bounds every write by `t`.
    pub fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        match self {
            Conn::Tcp(s) => s.set_write_timeout(t),
            Conn::Unix(s) => s.set_write_timeout(t),
        }
    }

    /// Ends the sending side (the peer reads the end of the answer).
    pub fn shutdown_write(&self) -> io::Result<()> {
        match self {
            Conn::Tcp(s) => s.shutdown(std::net::Shutdown::Write),
            Conn::Unix(s) => s.shutdown(std::net::Shutdown::Write),
        }
    }

    /// Makes reads and writes return at once.
    pub fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        match self {
            Conn::Tcp(s) => s.set_nonblocking(on),
            Conn::Unix(s) => s.set_nonblocking(on),
        }
    }
}

impl Read for Conn {
    fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Tcp(s) => s.read(b),
            Conn::Unix(s) => s.read(b),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        match self {
            Conn::Tcp(s) => s.write(b),
            Conn::Unix(s) => s.write(b),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Conn::Tcp(s) => s.flush(),
            Conn::Unix(s) => s.flush(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_or_say_what_is_expected() {
        assert_eq!(
            "127.0.0.1:9464".parse(),
            Ok(Addr::Tcp("127.0.0.1:9464".parse().unwrap()))
        );
        assert_eq!(
            "localhost:9".parse(),
            Ok(Addr::Tcp("127.0.0.1:9".parse().unwrap()))
        );
        assert_eq!("[::1]:9".parse(), Ok(Addr::Tcp("[::1]:9".parse().unwrap())));
        assert_eq!(
            "unix:/run/m.sock".parse(),
            Ok(Addr::Unix("/run/m.sock".into()))
        );
        for bad in [
            "unix:rel.sock",
            "/run/m.sock",
            "example:9",
            "9464",
            "127.0.0.1",
        ] {
            let e = bad.parse::<Addr>().unwrap_err();
            assert!(e.starts_with(bad), "{e}");
        }
    }
}
