//! Where a guest reaches the accelerator, written as one string: the guest library takes
//! it from the program, the CLI's `--device` or `VFPGA_DEVICE`.
//!
//! | Form | Transport |
//! | --- | --- |
//! | `/dev/vfpga0` (any path) | the virtio device through the `virtio_vfpga` kernel module |
//! | `vsock://CID:PORT` | AF_VSOCK to CID (2 is the host) |
//! | `unix:PATH` | a unix socket (a host's userspace vsock socket, or vfpgad on the same machine) |
//! | `tls://HOST:PORT` | TCP with mutual TLS |
//! | `vchan://[DOMID][/PATH]` | Xen vchan to DOMID (default 0, dom0) at xenstore PATH (default: `vfpga` under the guest's own domain path) |

use std::fmt;
use std::path::PathBuf;

/// A parsed endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// A vfpga device node.
    Device(PathBuf),
    /// AF_VSOCK.
    Vsock {
        /// Peer CID.
        cid: u32,
        /// Port.
        port: u32,
    },
    /// A unix stream socket.
    Unix(PathBuf),
    /// TCP with mutual TLS.
    Tls {
        /// Host name or address (brackets removed from IPv6 addresses).
        host: String,
        /// Port.
        port: u16,
    },
    /// Xen vchan.
    Vchan {
        /// The server's domain id.
        domid: u16,
        /// xenstore path of the channels (relative: under the guest's own domain path).
        path: String,
    },
}

/// The xenstore path, relative to a guest's own domain path, where vfpgad offers its
/// vchan channels to that guest.
pub const VCHAN_PATH: &str = "vfpga";

/// A string that is not an endpoint, with what would be.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{uri:?}: {reason} (use /dev/vfpgaN, vsock://CID:PORT, unix:PATH, tls://HOST:PORT or vchan://[DOMID][/PATH])")]
pub struct UriError {
    uri: String,
    reason: &'static str,
}

fn split_port(s: &str) -> Option<(&str, &str)> {
    let (host, port) = s.rsplit_once(':')?;
    Some((host, port))
}

impl Endpoint {
    /// Parses `s`.
    pub fn parse(s: &str) -> Result<Self, UriError> {
        let bad = |reason| UriError {
            uri: s.to_owned(),
            reason,
        };
        if let Some(rest) = s.strip_prefix("vsock://") {
            let (cid, port) = split_port(rest).ok_or(bad("vsock needs CID:PORT"))?;
            let cid = cid.parse().map_err(|_| bad("the CID is not a number"))?;
            let port = port.parse().map_err(|_| bad("the port is not a number"))?;
            return Ok(Endpoint::Vsock { cid, port });
        }
        if let Some(path) = s.strip_prefix("unix:") {
            let path = path.strip_prefix("//").unwrap_or(path);
            if path.is_empty() {
                return Err(bad("unix needs a socket path"));
            }
            return Ok(Endpoint::Unix(path.into()));
        }
        if let Some(rest) = s.strip_prefix("tls://") {
            let rest = rest.trim_end_matches('/');
            let (host, port) = split_port(rest).ok_or(bad("tls needs HOST:PORT"))?;
            let port = port
                .parse()
                .ok()
                .filter(|p| *p > 0)
                .ok_or(bad("the port is not a number from 1 to 65535"))?;
            let host = host
                .strip_prefix('[')
                .and_then(|h| h.strip_suffix(']'))
                .unwrap_or(host);
            if host.is_empty() {
                return Err(bad("tls needs a host"));
            }
            return Ok(Endpoint::Tls {
                host: host.to_owned(),
                port,
            });
        }
        if let Some(rest) = s.strip_prefix("vchan:") {
            let rest = rest.strip_prefix("//").unwrap_or(rest);
            let (dom, path) = match rest.split_once('/') {
                Some((d, p)) => (d, p),
                None => (rest, ""),
            };
            let domid = match dom {
                "" => 0,
                d => d
                    .parse()
                    .map_err(|_| bad("the domain id is not a number"))?,
            };
            let path = match path {
                "" => VCHAN_PATH.to_owned(),
                p => p.to_owned(),
            };
            if !path
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"/_-@".contains(&b))
                || path.contains("//")
                || path.ends_with('/')
            {
                return Err(bad("the xenstore path has characters xenstore refuses"));
            }
            return Ok(Endpoint::Vchan { domid, path });
        }
        if s.contains("://") {
            return Err(bad("unknown scheme"));
        }
        if s.is_empty() {
            return Err(bad("empty"));
        }
        Ok(Endpoint::Device(s.into()))
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Device(p) => write!(f, "{}", p.display()),
            Endpoint::Vsock { cid, port } => write!(f, "vsock://{cid}:{port}"),
            Endpoint::Unix(p) => write!(f, "unix:{}", p.display()),
            Endpoint::Tls { host, port } if host.contains(':') => {
                write!(f, "tls://[{host}]:{port}")
            }
            Endpoint::Tls { host, port } => write!(f, "tls://{host}:{port}"),
            Endpoint::Vchan { domid, path } => write!(f, "vchan://{domid}/{path}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_parses_and_prints_back() {
        for (s, want) in [
            ("/dev/vfpga1", Endpoint::Device("/dev/vfpga1".into())),
            ("vsock://2:7000", Endpoint::Vsock { cid: 2, port: 7000 }),
            (
                "unix:/run/vfpga/vm0.vsock_7000",
                Endpoint::Unix("/run/vfpga/vm0.vsock_7000".into()),
            ),
            (
                "tls://10.0.0.1:7000",
                Endpoint::Tls {
                    host: "10.0.0.1".into(),
                    port: 7000,
                },
            ),
            (
                "tls://[::1]:7000",
                Endpoint::Tls {
                    host: "::1".into(),
                    port: 7000,
                },
            ),
            (
                "vchan://",
                Endpoint::Vchan {
                    domid: 0,
                    path: VCHAN_PATH.into(),
                },
            ),
            (
                "vchan://3/data/vfpga",
                Endpoint::Vchan {
                    domid: 3,
                    path: "data/vfpga".into(),
                },
            ),
        ] {
            let e = Endpoint::parse(s).unwrap();
            assert_eq!(e, want, "{s}");
            assert_eq!(Endpoint::parse(&e.to_string()).unwrap(), want, "{e}");
        }
        assert_eq!(
            Endpoint::parse("unix://tmp/x").unwrap(),
            Endpoint::Unix("tmp/x".into())
        );
    }

    #[test]
    fn mistakes_are_named() {
        for (s, why) in [
            ("vsock://2", "CID:PORT"),
            ("vsock://host:7000", "CID is not a number"),
            ("vsock://2:x", "port is not a number"),
            ("tls://host", "HOST:PORT"),
            ("tls://host:0", "1 to 65535"),
            ("tls://:7000", "needs a host"),
            ("unix:", "socket path"),
            ("vchan://dom0", "domain id"),
            ("vchan://0/a b", "xenstore refuses"),
            ("http://x:1", "unknown scheme"),
            ("", "empty"),
        ] {
            let e = Endpoint::parse(s).unwrap_err().to_string();
            assert!(e.contains(why), "{s}: {e}");
            assert!(e.contains("vsock://CID:PORT"), "{e}");
        }
    }
}
