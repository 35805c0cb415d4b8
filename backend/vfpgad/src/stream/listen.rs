//! What a guest's `listen` entries mean: where vfpgad accepts that guest's streams, and
//! how it knows a connection is that guest's.
//!
//! | Entry | Accepts | The guest is known by |
//! | --- | --- | --- |
//! | `unix:PATH` | a unix socket of its own (a userspace vsock device's `uds_path_PORT`) | the socket: only its VMM reaches it |
//! | `vsock:CID:PORT` | AF_VSOCK port PORT (the kernel's vhost-vsock), shared by guests | the peer CID the kernel reports |
//! | `tls:ADDR:PORT` | TCP with mutual TLS on ADDR:PORT, shared by guests | the name in its client certificate |
//! | `vchan` | Xen vchan channels offered under its domain's xenstore path | the domain id Xen gives |

use std::fmt;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::path::PathBuf;

/// One listening entry of a guest.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Listen {
    /// `unix:PATH`.
    Unix(PathBuf),
    /// `vsock:CID:PORT`.
    Vsock {
        /// The guest's CID.
        cid: u32,
        /// The port.
        port: u32,
    },
    /// `tls:ADDR:PORT`.
    Tls(SocketAddr),
    /// `vchan`.
    Vchan,
}

impl Listen {
    /// The listening socket this entry needs, as a supervisor holding it for its
    /// workers names it (vsock listeners are one per port, whatever the CID); `None`
    /// for vchan, which is no socket.
    pub fn socket_key(&self) -> Option<String> {
        match self {
            Listen::Unix(p) => Some(format!("unix:{}", p.display())),
            Listen::Vsock { port, .. } => Some(format!("vsock-port:{port}")),
            Listen::Tls(a) => Some(format!("tls:{a}")),
            Listen::Vchan => None,
        }
    }

    /// Binds the listening socket of [`Listen::socket_key`], for a supervisor to
    /// hold; a unix socket gets `mode` and group `gid`.
    pub fn bind(&self, mode: Option<u32>, gid: Option<u32>) -> std::io::Result<Option<OwnedFd>> {
        Ok(match self {
            Listen::Unix(p) => Some(crate::sockets::bind(p, mode, gid)?.into()),
            Listen::Vsock { port, .. } => {
                Some(vfpga_transport::vsock::VsockListener::bind(*port)?.into())
            }
            Listen::Tls(a) => Some(std::net::TcpListener::bind(a)?.into()),
            Listen::Vchan => None,
        })
    }

    /// Parses an entry; the error says what is expected.
    pub fn parse(s: &str) -> Result<Self, String> {
        let bad = |why: &str| {
            format!("listen {s:?}: {why} (use unix:PATH, vsock:CID:PORT, tls:ADDR:PORT or vchan)")
        };
        if let Some(p) = s.strip_prefix("unix:") {
            if p.is_empty() {
                return Err(bad("no socket path"));
            }
            if p.len() >= 108 {
                return Err(bad(
                    "the path is longer than a unix socket allows (107 bytes)",
                ));
            }
            return Ok(Listen::Unix(p.into()));
        }
        if let Some(rest) = s.strip_prefix("vsock:") {
            let (cid, port) = rest
                .split_once(':')
                .ok_or_else(|| bad("vsock needs the guest's CID and a port"))?;
            let cid: u32 = cid.parse().map_err(|_| bad("the CID is not a number"))?;
            if cid < 3 || cid == u32::MAX {
                return Err(bad(
                    "guest CIDs are 3 and up (0-2 are the hypervisor, loopback and host)",
                ));
            }
            let port = port.parse().map_err(|_| bad("the port is not a number"))?;
            return Ok(Listen::Vsock { cid, port });
        }
        if let Some(addr) = s.strip_prefix("tls:") {
            let addr = addr.parse().map_err(|_| {
                bad("tls needs ADDR:PORT with a numeric address, e.g. tls:0.0.0.0:7000")
            })?;
            return Ok(Listen::Tls(addr));
        }
        if s == "vchan" {
            return Ok(Listen::Vchan);
        }
        Err(bad("unknown kind"))
    }
}

impl fmt::Display for Listen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Listen::Unix(p) => write!(f, "unix:{}", p.display()),
            Listen::Vsock { cid, port } => write!(f, "vsock:{cid}:{port}"),
            Listen::Tls(a) => write!(f, "tls:{a}"),
            Listen::Vchan => f.write_str("vchan"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_parse_and_print_back() {
        for s in [
            "unix:/run/vfpga/vm0.vsock_7000",
            "vsock:3:7000",
            "tls:0.0.0.0:7000",
            "tls:[::1]:7000",
            "vchan",
        ] {
            assert_eq!(Listen::parse(s).unwrap().to_string(), s);
        }
        for (s, why) in [
            ("unix:", "no socket path"),
            ("vsock:7000", "CID and a port"),
            ("vsock:2:7000", "3 and up"),
            ("vsock:x:1", "CID is not a number"),
            ("tls:host:7000", "numeric address"),
            ("tcp:1", "unknown kind"),
        ] {
            let e = Listen::parse(s).unwrap_err();
            assert!(e.contains(why) && e.contains("vsock:CID:PORT"), "{s}: {e}");
        }
    }
}
