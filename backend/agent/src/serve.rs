//! The agent's server: TCP with mutual TLS, one thread per connection, each connection a
//! device of its own (its sessions end with it), runs bounded by a semaphore, and a
//! graceful stop that lets running kernels finish.

use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rustls::{ServerConfig, ServerConnection, StreamOwned};
use tracing::{debug, info, warn};
use vfpga_engine::manifest::valid_name;
use vfpga_engine::{Catalog, Engine};
use vfpga_proto::stream::{Deadline, StreamRequest};
use vfpga_proto::{AbiError, ArgKind, Opcode, Response, Status};
use vfpgad::config::DeviceLimits;
use vfpgad::device::Device;
use vfpgad::limited::Limited;
use vfpgad::sched::Scheduler;
use vfpgad::stream::serve::{log_end, serve, End, Rules, TlsStream};
use vfpgad::tenant::{Policy, Tenant};

/// What the agent serves and how much of it.
#[derive(Debug)]
pub struct AgentConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Server TLS configuration (client certificates required).
    pub tls: Arc<ServerConfig>,
    /// The board's engine.
    pub engine: Arc<dyn Engine>,
    /// Library folder uploads go to (none: uploads refused).
    pub library: Option<PathBuf>,
    /// Most connections at once.
    pub max_connections: usize,
    /// Most kernels running at once.
    pub max_concurrent: usize,
    /// Largest request (inputs plus outputs) accepted.
    pub max_request_bytes: u64,
    /// Revocation list (SHA-256 fingerprints, one per line), read again when it changes.
    pub revoked: Option<PathBuf>,
}

/// The revocation list as last read, and when the file was last changed.
#[derive(Debug, Default)]
struct Revoked {
    stamp: Option<std::time::SystemTime>,
    fingerprints: Vec<String>,
}

struct Shared {
    cfg: AgentConfig,
    /// Turns on the engine, fair between connections.
    sched: Scheduler<()>,
    /// Warnings peers can trigger (refused connections, failed handshakes, bad
    /// requests and uploads): at most one every ten seconds.
    peers: Limited,
    revoked: Mutex<Revoked>,
    /// TLS handshakes in progress, by peer address: counted apart from the hosts
    /// served, so silent TCP connections cannot take their places.
    handshakes: Mutex<std::collections::HashMap<std::net::IpAddr, usize>>,
    stop: AtomicBool,
    active: AtomicUsize,
    /// Sockets of live connections, to wake their readers at shutdown.
    conns: Mutex<Vec<(u64, TcpStream)>>,
}

/// A running agent.
#[derive(Debug)]
pub struct Agent {
    shared: Arc<Shared>,
    addr: SocketAddr,
    accept: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("active", &self.active)
            .finish_non_exhaustive()
    }
}

impl Agent {
    /// Binds and starts serving.
    pub fn start(cfg: AgentConfig) -> std::io::Result<Self> {
        let listener = TcpListener::bind(cfg.listen)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            sched: Scheduler::new(cfg.max_concurrent, Duration::ZERO),
            peers: Limited::new(),
            revoked: Mutex::default(),
            handshakes: Mutex::default(),
            stop: AtomicBool::new(false),
            active: AtomicUsize::new(0),
            conns: Mutex::new(Vec::new()),
            cfg,
        });
        let s = shared.clone();
        let accept = std::thread::Builder::new()
            .name("agent-accept".into())
            .spawn(move || accept_loop(&s, &listener))?;
        info!(%addr, "agent listening");
        Ok(Self {
            shared,
            addr,
            accept: Some(accept),
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, lets running requests finish (up to `grace`), closes the rest.
    pub fn shutdown(mut self, grace: Duration) {
        self.shared.stop.store(true, Ordering::Release);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
        // Idle connections are blocked reading the next request: end their reads.
        for (_, s) in self
            .shared
            .conns
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let _ = s.shutdown(Shutdown::Read);
        }
        let deadline = Instant::now() + grace;
        while self.shared.active.load(Ordering::Acquire) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let left = self.shared.active.load(Ordering::Acquire);
        if left > 0 {
            warn!("{left} connections still busy after {grace:?}; closing them");
            for (_, s) in self
                .shared
                .conns
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
            {
                let _ = s.shutdown(Shutdown::Both);
            }
        }
        info!("agent stopped");
    }
}

/// TLS handshakes in progress at once: at that many the agent stops accepting, and
/// connections wait in the kernel's backlog until one ends.
const MAX_HANDSHAKES: usize = 32;
/// TLS handshakes in progress from one address: a flood from one peer is refused
/// without taking the others' turns.
const MAX_HANDSHAKES_PER_PEER: usize = 4;

impl Shared {
    fn handshakes(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<std::net::IpAddr, usize>> {
        self.handshakes.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn accept_loop(shared: &Arc<Shared>, listener: &TcpListener) {
    let mut next_id = 0u64;
    while !shared.stop.load(Ordering::Acquire) {
        if shared.handshakes().values().sum::<usize>() >= MAX_HANDSHAKES {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        }
        match listener.accept() {
            Ok((tcp, peer)) => {
                {
                    let mut h = shared.handshakes();
                    let n = h.entry(peer.ip()).or_default();
                    if *n >= MAX_HANDSHAKES_PER_PEER {
                        drop(h);
                        vfpgad::warn_limited!(
                            shared.peers,
                            %peer,
                            "refused: {MAX_HANDSHAKES_PER_PEER} TLS handshakes from this address already"
                        );
                        continue;
                    }
                    *n += 1;
                }
                next_id += 1;
                let id = next_id;
                let _ = tcp.set_nonblocking(false);
                let s = shared.clone();
                let spawned = std::thread::Builder::new()
                    .name(format!("agent-conn-{id}"))
                    .spawn(move || {
                        let tls = handshake(&s, tcp, peer);
                        {
                            let mut h = s.handshakes();
                            if let Some(n) = h.get_mut(&peer.ip()) {
                                *n -= 1;
                                if *n == 0 {
                                    h.remove(&peer.ip());
                                }
                            }
                        }
                        if let Some(tls) = tls {
                            serve_counted(&s, id, tls, peer);
                        }
                    });
                if spawned.is_err() {
                    let mut h = shared.handshakes();
                    if let Some(n) = h.get_mut(&peer.ip()) {
                        *n = n.saturating_sub(1);
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(e) => {
                warn!("accept: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// How long a host has to finish the TLS handshake.
const HANDSHAKE_TIME: Duration = Duration::from_secs(10);

/// Serves an authenticated host, counted among the `max_connections` served.
fn serve_counted(shared: &Shared, id: u64, tls: TlsStream, peer: SocketAddr) {
    if shared.active.fetch_add(1, Ordering::AcqRel) >= shared.cfg.max_connections {
        shared.active.fetch_sub(1, Ordering::AcqRel);
        vfpgad::warn_limited!(
            shared.peers,
            %peer,
            "refused: {} hosts served already (--max-connections)",
            shared.cfg.max_connections
        );
        return;
    }
    if let Ok(clone) = tls.sock.get_ref().try_clone() {
        shared
            .conns
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((id, clone));
    }
    serve_conn(shared, tls, peer);
    shared
        .conns
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .retain(|(i, _)| *i != id);
    shared.active.fetch_sub(1, Ordering::AcqRel);
}

/// The TLS handshake, bounded as a whole by [`HANDSHAKE_TIME`]; `None` if it failed.
fn handshake(shared: &Shared, tcp: TcpStream, peer: SocketAddr) -> Option<TlsStream> {
    let _ = tcp.set_nodelay(true);
    let conn = ServerConnection::new(shared.cfg.tls.clone()).ok()?;
    // The whole handshake, not each read, is bounded: a peer trickling bytes must not
    // hold a connection slot.
    let mut sock = Deadline::new(tcp);
    sock.set_in(HANDSHAKE_TIME);
    let mut tls: TlsStream = StreamOwned::new(conn, sock);
    while tls.conn.is_handshaking() {
        if let Err(e) = tls.conn.complete_io(&mut tls.sock) {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                debug!(%peer, "closed before the TLS handshake (port probe?)");
            } else {
                vfpgad::warn_limited!(shared.peers, %peer, "refused: TLS handshake failed: {e}");
            }
            return None;
        }
    }
    Some(tls)
}

fn serve_conn(shared: &Shared, mut tls: TlsStream, peer: SocketAddr) {
    let Some(cert) = tls
        .conn
        .peer_certificates()
        .and_then(|c| c.first())
        .cloned()
    else {
        return;
    };
    if is_revoked(shared, &cert) {
        vfpgad::warn_limited!(shared.peers, %peer, "refused: its certificate is revoked");
        return;
    }
    // What the host may do is written in its certificate: run-only hosts load and
    // upload nothing (a bitstream is a DMA master: full control of the board).
    let admin = crate::cert::is_admin(&cert);
    let who = format!("{peer} ({})", if admin { "admin" } else { "run only" });
    info!(peer = %who, "host connected");
    let limits = DeviceLimits {
        max_request_bytes: shared.cfg.max_request_bytes,
        ..DeviceLimits::default()
    };
    // A host may do what the agent's engine and library let it (the agent has no
    // per-host policy of its own).
    let policy = if admin {
        Policy::open()
    } else {
        Policy {
            bitstreams: Vec::new(),
            ..Policy::open()
        }
    };
    let dev = Device::for_stream(
        Tenant::new(&peer.ip().to_string(), policy),
        limits,
        shared.cfg.engine.clone(),
        Default::default(),
    );
    let upload = |req: &StreamRequest, inputs: &[u8]| {
        if !admin {
            return Err(AbiError::new(
                Status::Permission,
                "this host's certificate is run-only: uploads need one issued with `cert client --role admin`",
            ));
        }
        upload(shared, req, inputs)
    };
    let rules = Rules {
        max_request_bytes: shared.cfg.max_request_bytes,
        // Between requests a connection may idle as long as the host keeps it.
        idle: None,
        turns: &shared.sched,
        stop: &shared.stop,
        extra: Some((Opcode::UploadBitstream, &upload)),
    };
    match serve(&mut tls, &dev, &rules) {
        End::Refused(why) => vfpgad::warn_limited!(shared.peers, peer = %who, "refused: {why}"),
        end => log_end(&dev.name, &who, &end),
    }
    info!(peer = %who, "host disconnected");
}

/// Stores an uploaded bitstream: `[name][manifest][file]`, all U8 inputs.
fn upload(shared: &Shared, req: &StreamRequest, inputs: &[u8]) -> Result<Response, AbiError> {
    let Some(dir) = &shared.cfg.library else {
        return Err(AbiError::new(
            Status::Unsupported,
            "this agent has no library to upload into",
        ));
    };
    let args = req.args();
    if args.len() != 3 || args.iter().any(|a| a.kind != ArgKind::In.raw()) {
        return Err(AbiError::new(
            Status::BadArgument,
            "upload takes three inputs: name, manifest, file",
        ));
    }
    let lens: Vec<usize> = args
        .iter()
        .map(|a| usize::try_from(a.value).unwrap_or(usize::MAX))
        .collect();
    let (name, rest) = inputs.split_at(lens[0]);
    let (manifest, file) = rest.split_at(lens[1]);
    let bad = |i, r| AbiError::arg(Status::BadArgument, i, r);
    let name = std::str::from_utf8(name).map_err(|_| bad(0, "name is not UTF-8"))?;
    if !valid_name(name) {
        return Err(bad(0, "not a bitstream name"));
    }
    let text = std::str::from_utf8(manifest).map_err(|_| bad(1, "manifest is not UTF-8"))?;
    let catalog = Catalog::from_toml(text, "upload").map_err(|e| {
        vfpgad::warn_limited!(shared.peers, "upload {name}: {e}");
        bad(1, "manifest does not parse")
    })?;
    if catalog.name != name {
        return Err(bad(1, "manifest names another bitstream"));
    }
    // A bitstream's files are its own: `NAME.*`, so no upload replaces another
    // bitstream's file (or a manifest: those are `NAME.toml`).
    let own = |f: &str| {
        f.strip_prefix(name)
            .is_some_and(|r| r.starts_with('.') && r != ".toml")
    };
    if let Some(f) = catalog
        .hw
        .file
        .iter()
        .chain(&catalog.hw.overlay)
        .find(|f| !own(f))
    {
        vfpgad::warn_limited!(shared.peers, "upload {name}: refused file name {f}");
        return Err(bad(
            1,
            "the manifest's file must be named after its bitstream: NAME.bit.bin, NAME.dtbo, ...",
        ));
    }
    let file_name = catalog
        .hw
        .file
        .as_deref()
        .or(catalog.hw.overlay.as_deref())
        .ok_or(bad(1, "manifest names no bitstream file"))?;
    let store = |path: PathBuf, data: &[u8]| {
        std::fs::write(&path, data).map_err(|e| {
            vfpgad::warn_limited!(
                shared.peers,
                "upload {name}: cannot write {}: {e}",
                path.display()
            );
            AbiError::new(Status::EngineError, "cannot store the upload")
        })
    };
    store(dir.join(file_name), file)?;
    store(dir.join(format!("{name}.toml")), manifest)?;
    info!(bitstream = name, bytes = file.len(), "bitstream uploaded");
    Ok(Response {
        value: file.len() as u64,
        ..Response::new(Status::Ok, 0)
    })
}

/// Whether `cert` is on the revocation list (read again whenever the file changed; a
/// list that cannot be read refuses everyone rather than no one).
fn is_revoked(shared: &Shared, cert: &rustls_pki_types::CertificateDer<'_>) -> bool {
    let Some(path) = &shared.cfg.revoked else {
        return false;
    };
    let mut r = shared.revoked.lock().unwrap_or_else(|p| p.into_inner());
    let stamp = std::fs::metadata(path).and_then(|m| m.modified()).ok();
    if stamp.is_none() || stamp != r.stamp {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                r.fingerprints = text
                    .lines()
                    .map(|l| l.trim().to_ascii_lowercase())
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                    .collect();
                r.stamp = stamp;
            }
            Err(e) => {
                vfpgad::warn_limited!(
                    shared.peers,
                    "cannot read the revocation list {}: {e}; refusing every host until it can",
                    path.display()
                );
                return true;
            }
        }
    }
    let fp = crate::cert::fingerprint(cert);
    r.fingerprints.contains(&fp)
}
