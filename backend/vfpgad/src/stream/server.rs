//! The stream listeners: one accept thread per listening socket, one thread per
//! connection, a registry of each guest's connections (to bound them, to close them when
//! the guest's Xen domain dies, and to close them all at shutdown).

use std::collections::HashMap;
use std::io::{self, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::panic::{self, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rustls::{ServerConfig, ServerConnection, StreamOwned};
use tracing::{debug, error, info, warn};
use vfpga_engine::Engine;
use vfpga_proto::stream::Deadline;
use vfpga_transport::vsock::{VsockListener, VsockStream};

use super::listen::Listen;
use super::serve::{log_end, serve, Conn, End, Rules};
use crate::config::DeviceLimits;
use crate::device::Device;
use crate::limited::Limited;
use crate::lock::lock;
use crate::sched::Turns;
use crate::shelf::Shelf;
use crate::sockets::{bind, wait_readable};
use crate::stats::Counters;
use crate::tenant::Tenant;

/// How long a TLS client has to finish its handshake.
const HANDSHAKE_TIME: Duration = Duration::from_secs(5);
/// TLS handshakes in progress per listener: at that many, the listener stops accepting
/// until one ends (connections wait in the kernel's backlog).
const MAX_HANDSHAKES: usize = 32;
/// TLS handshakes in progress from one address: a flood from one peer is refused
/// without taking the others' turns.
const MAX_HANDSHAKES_PER_PEER: usize = 4;

/// A guest with stream listeners.
#[derive(Clone, Debug)]
pub struct StreamGuest {
    /// Its name.
    pub name: String,
    /// Where it is served.
    pub listen: Vec<Listen>,
    /// The name its TLS client certificate must carry.
    pub tls_name: String,
    /// Its policy and quotas, shared with its virtio device.
    pub tenant: Arc<Tenant>,
    /// Its device limits.
    pub limits: DeviceLimits,
}

/// How streams are served.
#[derive(Clone, Debug)]
pub struct StreamConfig {
    /// Connections per guest.
    pub max_connections: usize,
    /// Longest wait for a connection's next request.
    pub idle: Option<Duration>,
    /// Turns on the engine for runs, shared with the virtio devices' engine threads.
    pub turns: Arc<dyn Turns>,
    /// The time-shared bitstreams offered to every guest.
    pub shelf: Arc<Shelf>,
    /// Server TLS set-up (client certificates required), for `tls:` listeners.
    pub tls: Option<Arc<ServerConfig>>,
    /// Mode of `unix:` sockets.
    pub socket_mode: Option<u32>,
    /// Group of `unix:` sockets.
    pub socket_gid: Option<u32>,
    /// Listening sockets a supervisor holds and passed down, by
    /// [`Listen::socket_key`]: used instead of binding (and left in place at the end).
    pub inherited: Vec<(String, RawFd)>,
}

impl StreamConfig {
    /// The inherited listening socket for `l`, if the supervisor passed one; taken
    /// once.
    fn take_inherited(&mut self, l: &Listen) -> Option<OwnedFd> {
        let key = l.socket_key()?;
        let i = self.inherited.iter().position(|(k, _)| *k == key)?;
        let (_, fd) = self.inherited.swap_remove(i);
        // SAFETY: the supervisor passed this descriptor, open and listening, for this
        // socket only; it is removed from the list, so it is owned once.
        Some(unsafe { OwnedFd::from_raw_fd(fd) })
    }
}

/// Why the stream listeners could not start.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// A socket could not be created.
    #[error("guest {guest}: cannot listen on {listen}: {source}")]
    Listen {
        /// Guest name.
        guest: String,
        /// The entry.
        listen: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Two guests claim the same thing, or a listener lacks what it needs.
    #[error("{0}")]
    Config(String),
    /// Threads could not be created.
    #[error("cannot start the stream listeners: {0}")]
    Start(#[from] io::Error),
}

/// Closes a connection from another thread (wakes its reader).
pub(super) type Closer = Box<dyn Fn() + Send + Sync>;

struct Entry {
    id: u64,
    since: Instant,
    dev: Arc<Device>,
    close: Closer,
}

pub(super) struct GuestState {
    pub(super) name: String,
    tls_name: String,
    tenant: Arc<Tenant>,
    limits: DeviceLimits,
    counters: Arc<Counters>,
    /// Whether it listens on vchan.
    pub(super) vchan: bool,
    /// The domain its vchan channels are offered to.
    pub(super) vchan_domain: Mutex<Option<super::vchan::Offer>>,
    conns: Mutex<Vec<Entry>>,
    warned: Limited,
}

pub(super) struct Shared {
    pub(super) cfg: StreamConfig,
    engine: Arc<dyn Engine>,
    pub(super) guests: Vec<GuestState>,
    /// Refusals of connections no guest can be named for (an unknown CID, a
    /// certificate of nobody served): a network peer must not flood the log.
    strangers: Limited,
    pub(super) stop: AtomicBool,
    next_id: AtomicU64,
    /// Connection (and vchan channel) threads alive, and a signal when one ends.
    pub(super) active: Mutex<usize>,
    pub(super) ended: Condvar,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("guests", &self.guests.len())
            .finish_non_exhaustive()
    }
}

/// The running listeners.
#[derive(Debug)]
pub struct StreamServer {
    shared: Arc<Shared>,
    /// Written to at shutdown: wakes every accept thread.
    wake: UnixStream,
    accept: Vec<JoinHandle<()>>,
    unix_paths: Vec<PathBuf>,
}

/// The guests' stream connections, for closing those of a guest whose domain died.
#[derive(Clone, Debug)]
pub struct StreamGuests(Arc<Shared>);

impl StreamGuests {
    /// Closes the connections of `guest` made no later than `before` (a later one
    /// belongs to a new domain of the same name); returns the sessions they had open.
    pub fn drop_guest(&self, guest: &str, before: Instant) -> usize {
        let Some(g) = self.0.guests.iter().find(|g| g.name == guest) else {
            return 0;
        };
        // Its vchan channels go (and, below, their connections).
        if let Some(o) = lock(&g.vchan_domain).take() {
            o.stop.store(true, Ordering::Release);
        }
        let conns = lock(&g.conns);
        let mut sessions = 0;
        for e in conns.iter().filter(|e| e.since <= before) {
            sessions += e.dev.sessions.clear();
            (e.close)();
        }
        sessions
    }
}

impl StreamGuests {
    /// `guest`'s open connections.
    pub fn connections(&self, guest: &str) -> usize {
        self.0
            .guests
            .iter()
            .find(|g| g.name == guest)
            .map_or(0, |g| lock(&g.conns).len())
    }

    /// The Xen domain of `guest` is up as `domid`: offer it vchan channels, if it
    /// listens on vchan (channels offered to an earlier domain end).
    pub fn domain_up(&self, guest: &str, domid: u32) {
        let Some(g) = self.0.guests.iter().position(|g| g.name == guest) else {
            return;
        };
        if self.0.guests[g].vchan && !self.0.stop.load(Ordering::Acquire) {
            super::vchan::offer(&self.0, g, domid);
        }
    }
}

/// A listening socket and who may come through it.
enum Bound {
    Unix(std::os::unix::net::UnixListener, usize),
    Vsock(VsockListener, HashMap<u32, usize>),
    Tls(TcpListener, SocketAddr, Vec<usize>),
}

impl StreamServer {
    /// Binds every guest's stream listeners and starts accepting. `vchan` entries are
    /// not sockets: the Xen side serves them.
    pub fn start(
        mut cfg: StreamConfig,
        guests: &[StreamGuest],
        engine: Arc<dyn Engine>,
    ) -> Result<Self, StreamError> {
        let mut bound = Vec::new();
        let mut unix_paths = Vec::new();
        let mut vsock: HashMap<u32, HashMap<u32, usize>> = HashMap::new();
        let mut tls: HashMap<SocketAddr, Vec<usize>> = HashMap::new();
        let mut unix = Vec::new();
        for (g, guest) in guests.iter().enumerate() {
            for l in &guest.listen {
                match l {
                    // Bound last, below: a unix socket's file is what callers wait for.
                    Listen::Unix(path) => unix.push((path.clone(), g, l.to_string())),
                    Listen::Vsock { cid, port } => {
                        if let Some(o) = vsock.entry(*port).or_default().insert(*cid, g) {
                            return Err(StreamError::Config(format!(
                                "guests {} and {} both listen on vsock CID {cid} port {port}",
                                guests[o].name, guest.name
                            )));
                        }
                    }
                    Listen::Tls(addr) => tls.entry(*addr).or_default().push(g),
                    Listen::Vchan => {}
                }
            }
        }
        for (port, cids) in vsock {
            let held = cfg.take_inherited(&Listen::Vsock { cid: 3, port });
            let l = match held {
                Some(fd) => VsockListener::from(fd),
                None => VsockListener::bind(port).map_err(|source| StreamError::Listen {
                    guest: guests[*cids.values().next().unwrap_or(&0)].name.clone(),
                    listen: format!("vsock port {port}"),
                    source,
                })?,
            };
            bound.push(Bound::Vsock(l, cids));
        }
        if !tls.is_empty() && cfg.tls.is_none() {
            return Err(StreamError::Config(
                "tls: listeners need the server's certificate: give [tls] ca, cert and key".into(),
            ));
        }
        for (addr, gs) in tls {
            let l = match cfg.take_inherited(&Listen::Tls(addr)) {
                Some(fd) => TcpListener::from(fd),
                None => TcpListener::bind(addr).map_err(|source| StreamError::Listen {
                    guest: guests[gs[0]].name.clone(),
                    listen: format!("tls:{addr}"),
                    source,
                })?,
            };
            let local = l.local_addr()?;
            bound.push(Bound::Tls(l, local, gs));
        }
        for (path, g, listen) in unix {
            if let Some(fd) = cfg.take_inherited(&Listen::Unix(path.clone())) {
                // The supervisor's socket: it stays when this process ends.
                bound.push(Bound::Unix(fd.into(), g));
                continue;
            }
            let u = bind(&path, cfg.socket_mode, cfg.socket_gid).map_err(|source| {
                StreamError::Listen {
                    guest: guests[g].name.clone(),
                    listen,
                    source,
                }
            })?;
            unix_paths.push(path);
            bound.push(Bound::Unix(u, g));
        }
        let (wake, wait) = UnixStream::pair()?;
        let shared = Arc::new(Shared {
            cfg,
            engine,
            guests: guests
                .iter()
                .map(|g| GuestState {
                    name: g.name.clone(),
                    tls_name: g.tls_name.clone(),
                    tenant: g.tenant.clone(),
                    limits: g.limits.clone(),
                    counters: Arc::default(),
                    vchan: g.listen.contains(&Listen::Vchan),
                    vchan_domain: Mutex::new(None),
                    conns: Mutex::new(Vec::new()),
                    warned: Limited::new(),
                })
                .collect(),
            strangers: Limited::new(),
            stop: AtomicBool::new(false),
            next_id: AtomicU64::new(1),
            active: Mutex::new(0),
            ended: Condvar::new(),
        });
        let mut server = Self {
            shared,
            wake,
            accept: Vec::new(),
            unix_paths,
        };
        for b in bound {
            let (shared, wait) = (server.shared.clone(), wait.try_clone()?);
            let what = describe(&b, guests);
            info!("listening: {what}");
            let t = crate::threads::spawn_running("vfpga-accept".into(), move || {
                accept_loop(&shared, &b, wait.as_raw_fd());
            })?;
            server.accept.push(t);
        }
        Ok(server)
    }

    /// A handle on the guests' connections.
    pub fn guests(&self) -> StreamGuests {
        StreamGuests(self.shared.clone())
    }

    /// Stops accepting, closes every connection, waits (up to `grace`) for their threads
    /// (a running kernel finishes first) and removes the unix sockets.
    pub fn shutdown(mut self, grace: Duration) {
        self.shared.stop.store(true, Ordering::Release);
        let _ = self.wake.write_all(b"x");
        for t in self.accept.drain(..) {
            let _ = t.join();
        }
        for g in &self.shared.guests {
            if let Some(o) = lock(&g.vchan_domain).take() {
                o.stop.store(true, Ordering::Release);
            }
            for e in lock(&g.conns).iter() {
                (e.close)();
            }
        }
        let deadline = Instant::now() + grace;
        let mut n = lock(&self.shared.active);
        while *n > 0 {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                warn!("{} stream connections still busy after {grace:?}", *n);
                break;
            };
            n = match self.shared.ended.wait_timeout(n, left) {
                Ok((n, _)) => n,
                Err(p) => p.into_inner().0,
            };
        }
        drop(n);
        for p in &self.unix_paths {
            let _ = std::fs::remove_file(p);
        }
    }
}

fn describe(b: &Bound, guests: &[StreamGuest]) -> String {
    match b {
        Bound::Unix(l, g) => format!(
            "guest {} on unix:{}",
            guests[*g].name,
            l.local_addr()
                .ok()
                .and_then(|a| a.as_pathname().map(|p| p.display().to_string()))
                .unwrap_or_default()
        ),
        Bound::Vsock(_, cids) => {
            let mut v: Vec<String> = cids
                .iter()
                .map(|(cid, g)| format!("{} (CID {cid})", guests[*g].name))
                .collect();
            v.sort();
            format!("vsock for {}", v.join(", "))
        }
        Bound::Tls(_, addr, gs) => {
            let names: Vec<&str> = gs.iter().map(|g| guests[*g].name.as_str()).collect();
            format!("tls:{addr} for {}", names.join(", "))
        }
    }
}

fn listener_fd(b: &Bound) -> RawFd {
    match b {
        Bound::Unix(l, _) => l.as_raw_fd(),
        Bound::Vsock(l, _) => l.as_raw_fd(),
        Bound::Tls(l, ..) => l.as_raw_fd(),
    }
}

fn accept_loop(shared: &Arc<Shared>, b: &Bound, wait: RawFd) {
    let handshakes = Arc::new(AtomicUsize::new(0));
    let per_peer: Arc<Mutex<HashMap<std::net::IpAddr, usize>>> = Arc::default();
    while !shared.stop.load(Ordering::Acquire) {
        if matches!(b, Bound::Tls(..)) && handshakes.load(Ordering::Acquire) >= MAX_HANDSHAKES {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        }
        match wait_readable(listener_fd(b), wait) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => {
                warn!("waiting for stream connections: {e}");
                std::thread::sleep(Duration::from_millis(200));
                continue;
            }
        }
        let r = match b {
            Bound::Unix(l, g) => l.accept().map(|(s, _)| {
                let close = closer_unix(&s);
                spawn(shared, *g, "unix".into(), close, Deadline::new(s));
            }),
            Bound::Vsock(l, cids) => l.accept().map(|(s, cid)| match cids.get(&cid) {
                Some(g) => {
                    let close = closer_vsock(&s);
                    spawn(
                        shared,
                        *g,
                        format!("vsock CID {cid}"),
                        close,
                        Deadline::new(s),
                    );
                }
                None if shared.strangers.due().is_some() => {
                    warn!("vsock: refused a connection from CID {cid}: no guest has that CID");
                }
                None => {}
            }),
            Bound::Tls(l, addr, gs) => l.accept().map(|(s, peer)| {
                {
                    let mut pp = lock(&per_peer);
                    let n = pp.entry(peer.ip()).or_insert(0);
                    if *n >= MAX_HANDSHAKES_PER_PEER {
                        debug!(%peer, "tls:{addr}: {MAX_HANDSHAKES_PER_PEER} handshakes from there already; refused");
                        return;
                    }
                    *n += 1;
                }
                handshakes.fetch_add(1, Ordering::AcqRel);
                let (shared, gs, addr, hs, pp) = (
                    shared.clone(),
                    gs.clone(),
                    *addr,
                    handshakes.clone(),
                    per_peer.clone(),
                );
                let done = move || {
                    hs.fetch_sub(1, Ordering::AcqRel);
                    let mut pp = lock(&pp);
                    if let Some(n) = pp.get_mut(&peer.ip()) {
                        *n -= 1;
                        if *n == 0 {
                            pp.remove(&peer.ip());
                        }
                    }
                };
                let spawned = std::thread::Builder::new()
                    .name("vfpga-tls".into())
                    .spawn(move || {
                        let who = tls_guest(&shared, s, peer, addr, &gs);
                        done();
                        if let Some((g, tls, close)) = who {
                            serve_conn(&shared, g, format!("{peer}"), close, tls);
                        }
                    });
                if let Err(e) = spawned {
                    warn!("cannot start a TLS handshake thread: {e}");
                }
            }),
        };
        if let Err(e) = r {
            if e.kind() != io::ErrorKind::WouldBlock {
                warn!("accepting a stream connection: {e}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

fn closer_unix(s: &UnixStream) -> Closer {
    match s.try_clone() {
        Ok(c) => Box::new(move || {
            let _ = c.shutdown(Shutdown::Both);
        }),
        Err(_) => Box::new(|| {}),
    }
}

fn closer_tcp(s: &TcpStream) -> Closer {
    match s.try_clone() {
        Ok(c) => Box::new(move || {
            let _ = c.shutdown(Shutdown::Both);
        }),
        Err(_) => Box::new(|| {}),
    }
}

fn closer_vsock(s: &VsockStream) -> Closer {
    match s.try_clone() {
        Ok(c) => Box::new(move || {
            let _ = c.shutdown();
        }),
        Err(_) => Box::new(|| {}),
    }
}

type TlsConn = StreamOwned<ServerConnection, Deadline<TcpStream>>;

/// Completes the TLS handshake and finds the guest whose name the client certificate
/// carries among those served on this listener.
fn tls_guest(
    shared: &Shared,
    tcp: TcpStream,
    peer: SocketAddr,
    addr: SocketAddr,
    gs: &[usize],
) -> Option<(usize, TlsConn, Closer)> {
    let cfg = shared.cfg.tls.clone()?;
    let _ = tcp.set_nodelay(true);
    let close = closer_tcp(&tcp);
    let conn = ServerConnection::new(cfg).ok()?;
    let mut sock = Deadline::new(tcp);
    sock.set_in(HANDSHAKE_TIME);
    let mut tls = StreamOwned::new(conn, sock);
    while tls.conn.is_handshaking() {
        if let Err(e) = tls.conn.complete_io(&mut tls.sock) {
            debug!(%peer, "tls:{addr}: handshake failed: {e}");
            return None;
        }
    }
    let cert = tls.conn.peer_certificates().and_then(|c| c.first())?;
    match gs
        .iter()
        .find(|g| vfpga_transport::cert_names(cert, &shared.guests[**g].tls_name))
    {
        Some(g) => Some((*g, tls, close)),
        None => {
            if shared.strangers.due().is_some() {
                warn!(%peer, "tls:{addr}: refused: the client certificate names no guest served here");
            }
            None
        }
    }
}

/// Starts the thread of a connection already tied to guest `g`.
fn spawn<C: Conn + Send + 'static>(
    shared: &Arc<Shared>,
    g: usize,
    peer: String,
    close: Closer,
    conn: C,
) {
    let s = shared.clone();
    let r = std::thread::Builder::new()
        .name(format!("vfpga-{}", shared.guests[g].name))
        .spawn(move || serve_conn(&s, g, peer, close, conn));
    if let Err(e) = r {
        warn!("cannot start a stream connection's thread: {e}");
    }
}

/// Serves one connection of guest `g` until it ends.
pub(super) fn serve_conn<C: Conn>(
    shared: &Shared,
    g: usize,
    peer: String,
    close: Closer,
    mut conn: C,
) {
    let gs = &shared.guests[g];
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    let dev = {
        let mut conns = lock(&gs.conns);
        if shared.stop.load(Ordering::Acquire) {
            return;
        }
        if conns.len() >= shared.cfg.max_connections {
            drop(conns);
            if gs.warned.due().is_some() {
                warn!(
                    guest = %gs.name,
                    %peer,
                    "refused a stream connection: {} open already (the guest's limit)",
                    shared.cfg.max_connections
                );
            }
            close();
            return;
        }
        let dev = Arc::new(
            Device::for_stream(
                gs.tenant.clone(),
                gs.limits.clone(),
                shared.engine.clone(),
                gs.counters.clone(),
            )
            .with_shelf(shared.cfg.shelf.clone()),
        );
        conns.push(Entry {
            id,
            since: Instant::now(),
            dev: dev.clone(),
            close,
        });
        *lock(&shared.active) += 1;
        dev
    };
    // Whatever way the connection ends, even by a panic in the device logic, it leaves
    // the registry and the count shutdown waits on.
    let _registered = Registered {
        shared,
        g,
        id,
        dev: dev.clone(),
    };
    debug!(guest = %gs.name, %peer, "stream connected");
    let rules = Rules {
        max_request_bytes: gs.limits.max_request_bytes,
        idle: shared.cfg.idle,
        turns: &*shared.cfg.turns,
        stop: &shared.stop,
        extra: None,
    };
    let served = panic::catch_unwind(AssertUnwindSafe(|| serve(&mut conn, &dev, &rules)));
    match served {
        Ok(End::Refused(why)) if gs.warned.due().is_some() => {
            warn!(guest = %gs.name, %peer, "stream closed: {why}");
        }
        Ok(end) => log_end(&gs.name, &peer, &end),
        Err(_) => error!(guest = %gs.name, %peer, "stream closed: the request loop panicked"),
    }
    drop(conn);
}

/// A connection's place in its guest's registry and in the count of live connections,
/// given back on drop.
struct Registered<'a> {
    shared: &'a Shared,
    g: usize,
    id: u64,
    dev: Arc<Device>,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        lock(&self.shared.guests[self.g].conns).retain(|e| e.id != self.id);
        self.dev.reset();
        *lock(&self.shared.active) -= 1;
        self.shared.ended.notify_all();
    }
}
