//! Opening an endpoint: the device node, or a connection to vfpgad on a stream.

use std::fs::File;
use std::io;
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls::{ClientConnection, StreamOwned};
use vfpga_transport::vsock::VsockStream;
use vfpga_transport::{Endpoint, TlsFiles};

use crate::error::Error;
use crate::link::Link;

/// How to reach vfpgad on endpoints that need more than an address.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// For `tls://`: the CA that signed vfpgad's certificate, and this guest's
    /// certificate and key (signed by the CA vfpgad trusts, named as vfpgad's
    /// configuration names this guest).
    pub tls: Option<TlsFiles>,
    /// For `tls://`: the name in vfpgad's certificate (default: the host part).
    pub server_name: Option<String>,
}

impl Options {
    /// Options from the environment: `VFPGA_TLS_DIR` (a folder with `ca.pem`,
    /// `client.pem` and `client.key`) and `VFPGA_TLS_SERVER_NAME`.
    pub fn from_env() -> Self {
        Self {
            tls: std::env::var_os("VFPGA_TLS_DIR").map(|d| tls_dir(&PathBuf::from(d))),
            server_name: std::env::var("VFPGA_TLS_SERVER_NAME").ok(),
        }
    }
}

/// The three files `vfpga-agent cert` writes for a client, in `dir`.
pub fn tls_dir(dir: &std::path::Path) -> TlsFiles {
    TlsFiles {
        ca: dir.join("ca.pem"),
        cert: dir.join("client.pem"),
        key: dir.join("client.key"),
    }
}

/// How long a TCP connect and TLS handshake may take.
const CONNECT_TIME: Duration = Duration::from_secs(10);

/// Opens `ep`.
pub(crate) fn open(ep: &Endpoint, o: &Options) -> Result<Link, Error> {
    let failed = |source: io::Error| Error::Connect {
        endpoint: ep.to_string(),
        source,
    };
    match ep {
        Endpoint::Device(path) => File::options()
            .read(true)
            .write(true)
            .open(path)
            .map(Link::Ioctl)
            .map_err(|source| Error::Open {
                path: path.clone(),
                source,
            }),
        Endpoint::Unix(path) => UnixStream::connect(path)
            .map(|s| Link::stream(Box::new(s)))
            .map_err(failed),
        Endpoint::Vsock { cid, port } => VsockStream::connect(*cid, *port)
            .map(|s| Link::stream(Box::new(s)))
            .map_err(failed),
        Endpoint::Tls { host, port } => {
            let files = o.tls.as_ref().ok_or_else(|| {
                Error::Usage(format!(
                    "{ep}: TLS needs this guest's certificate: give --tls-dir DIR or VFPGA_TLS_DIR \
                     (ca.pem, client.pem, client.key)"
                ))
            })?;
            let cfg = vfpga_transport::client_config(files)
                .map_err(|e| Error::Usage(format!("{ep}: {e}")))?;
            let name = o.server_name.clone().unwrap_or_else(|| host.clone());
            tls(host, *port, &name, cfg).map_err(|source| Error::Connect {
                endpoint: format!("{ep} (certificate name {name:?}; --server-name sets another)"),
                source,
            })
        }
        Endpoint::Vchan { domid, path } => crate::vchan::open(*domid, path).map_err(failed),
    }
}

fn tls(host: &str, port: u16, name: &str, cfg: Arc<rustls::ClientConfig>) -> io::Result<Link> {
    let addr = (host, port)
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "the host name has no address"))?;
    let explained = |e: io::Error| io::Error::new(e.kind(), vfpga_transport::explain(&e, name));
    let tcp = TcpStream::connect_timeout(&addr, CONNECT_TIME).map_err(explained)?;
    tcp.set_nodelay(true)?;
    tcp.set_read_timeout(Some(CONNECT_TIME))?;
    tcp.set_write_timeout(Some(CONNECT_TIME))?;
    let server = rustls_pki_types::ServerName::try_from(name.to_owned())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{name:?}: {e}")))?;
    let conn = ClientConnection::new(cfg, server).map_err(io::Error::other)?;
    let mut s = StreamOwned::new(conn, tcp);
    // The handshake now, so a refused certificate shows here and not on the first request.
    while s.conn.is_handshaking() {
        s.conn.complete_io(&mut s.sock).map_err(explained)?;
    }
    s.sock.set_read_timeout(None)?;
    s.sock.set_write_timeout(None)?;
    Ok(Link::stream(Box::new(s)))
}
