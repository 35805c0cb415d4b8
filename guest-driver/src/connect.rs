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
use crate::link::{Link, Stream};

/// How to reach vfpgad on endpoints that need more than an address, and what to do
/// when a stream connection breaks.
#[derive(Clone, Debug)]
pub struct Options {
    /// For `tls://`: the CA that signed vfpgad's certificate, and this guest's
    /// certificate and key (signed by the CA vfpgad trusts, named as vfpgad's
    /// configuration names this guest).
    pub tls: Option<TlsFiles>,
    /// For `tls://`: the name in vfpgad's certificate (default: the host part).
    pub server_name: Option<String>,
    /// On a stream: how long to keep trying to reach vfpgad again when the connection
    /// breaks (vfpgad restarted or upgraded). The sessions are reopened and a request
    /// that was interrupted is sent once more (a run's outputs depend only on its
    /// inputs); zero turns this off, a broken connection then fails every request.
    pub reconnect: Duration,
}

/// How long a stream client waits for vfpgad to come back, unless told otherwise.
pub const DEFAULT_RECONNECT: Duration = Duration::from_secs(30);

impl Default for Options {
    fn default() -> Self {
        Self {
            tls: None,
            server_name: None,
            reconnect: DEFAULT_RECONNECT,
        }
    }
}

impl Options {
    /// Options from the environment: `VFPGA_TLS_DIR` (a folder with `ca.pem`,
    /// `client.pem` and `client.key`), `VFPGA_TLS_SERVER_NAME` and
    /// `VFPGA_RECONNECT_SECS` (seconds, 0 for never; an unreadable value keeps the
    /// default).
    pub fn from_env() -> Self {
        Self {
            tls: std::env::var_os("VFPGA_TLS_DIR").map(|d| tls_dir(&PathBuf::from(d))),
            server_name: std::env::var("VFPGA_TLS_SERVER_NAME").ok(),
            reconnect: std::env::var("VFPGA_RECONNECT_SECS")
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .map_or(DEFAULT_RECONNECT, Duration::from_secs),
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
    match ep {
        Endpoint::Device(path) => File::options()
            .read(true)
            .write(true)
            .open(path)
            .map(|f| Link::Ioctl(crate::link::IoctlLink::new(f)))
            .map_err(|source| Error::Open {
                path: path.clone(),
                source,
            }),
        _ => {
            // A connection cut before vfpgad answered it (a daemon restarting under
            // a supervisor, whose listener takes connections meanwhile) is tried again
            // within the reconnect window; nothing listening fails at once.
            let deadline = std::time::Instant::now() + o.reconnect;
            let mut pause = Duration::from_millis(20);
            loop {
                match stream(ep, o) {
                    Ok(s) => return Ok(Link::stream(s, ep.clone(), o.clone())),
                    Err(Error::Connect { source, .. })
                        if crate::link::lost(&source)
                            && std::time::Instant::now() + pause < deadline =>
                    {
                        std::thread::sleep(pause);
                        pause = (pause * 2).min(Duration::from_millis(500));
                    }
                    Err(e) => return Err(e),
                }
            }
        }
    }
}

/// Connects to vfpgad on the stream endpoint `ep` (again, after a restart).
pub(crate) fn stream(ep: &Endpoint, o: &Options) -> Result<Box<dyn Stream>, Error> {
    let failed = |source: io::Error| Error::Connect {
        endpoint: ep.to_string(),
        source,
    };
    match ep {
        Endpoint::Device(path) => Err(Error::Usage(format!(
            "{} is a device node, not a stream endpoint",
            path.display()
        ))),
        Endpoint::Unix(path) => UnixStream::connect(path)
            .map(|s| Box::new(s) as Box<dyn Stream>)
            .map_err(failed),
        Endpoint::Vsock { cid, port } => VsockStream::connect(*cid, *port)
            .map(|s| Box::new(s) as Box<dyn Stream>)
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

fn tls(
    host: &str,
    port: u16,
    name: &str,
    cfg: Arc<rustls::ClientConfig>,
) -> io::Result<Box<dyn Stream>> {
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
    Ok(Box::new(s))
}
