//! Serving guests: one vhost-user socket and thread per guest, a fresh device for every
//! frontend connection (so a restarted VMM or a reconnecting QEMU finds a clean
//! device), and an orderly stop on request.

use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tracing::{error, info, warn};
use vfpga_engine::Engine;
use vhost::vhost_user::{Error as VhostUserError, Listener};
use vhost_user_backend::{ShutdownHandle, VhostUserDaemon};
use vm_memory::{GuestMemoryAtomic, GuestMemoryMmap};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use crate::config::{Config, DeviceLimits, GuestConfig};
use crate::device::Device;
use crate::executor::Executor;
use crate::lock::lock;
use crate::metrics::expose::Exposition;
use crate::metrics::http::{self, Endpoint};
use crate::resume::StateFile;
use crate::sched::Turns;
use crate::shelf::Shelf;
use crate::sockets::{bind, wait_readable};
use crate::stream::{StreamConfig, StreamError, StreamGuest, StreamGuests, StreamServer};
use crate::tenant::Tenant;
use crate::vhu_vfpga::VhuVfpga;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A socket could not be created.
    #[error("guest {guest}: cannot listen on {path}: {source}")]
    Listen {
        /// Guest name.
        guest: String,
        /// Socket path.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Threads or events could not be created.
    #[error("cannot start: {0}")]
    Start(#[from] io::Error),
    /// The configuration cannot be applied.
    #[error(transparent)]
    Config(crate::config::ConfigError),
    /// The stream listeners could not start.
    #[error(transparent)]
    Streams(StreamError),
    /// The metrics endpoint could not start.
    #[error("cannot serve metrics on {addr}: {source}")]
    Metrics {
        /// Where.
        addr: crate::metrics::addr::Addr,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// Shared stop signal: a flag, an eventfd to wake threads waiting for connections, and
/// the live connections to cut.
struct Stop {
    flag: AtomicBool,
    event: EventFd,
    conns: Mutex<Vec<(String, ShutdownHandle)>>,
}

impl std::fmt::Debug for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stop")
            .field("flag", &self.flag)
            .finish_non_exhaustive()
    }
}

impl Stop {
    fn requested(&self) -> bool {
        self.flag.load(Ordering::Acquire)
    }

    fn trigger(&self) {
        self.flag.store(true, Ordering::Release);
        let _ = self.event.write(1);
        for (_, h) in lock(&self.conns).iter() {
            h.shutdown();
        }
    }
}

/// The device each guest's connected frontend is using now, by guest name, with the
/// time the frontend connected.
#[derive(Debug, Default)]
pub struct LiveDevices {
    vhost: Mutex<Vec<(String, Arc<Device>, Instant)>>,
    streams: OnceLock<StreamGuests>,
}

impl LiveDevices {
    fn set(&self, guest: &str, dev: Arc<Device>) {
        let mut l = lock(&self.vhost);
        l.retain(|(n, ..)| n != guest);
        l.push((guest.to_owned(), dev, Instant::now()));
    }

    fn remove(&self, guest: &str) {
        lock(&self.vhost).retain(|(n, ..)| n != guest);
    }

    /// Closes every session of `guest`'s device if its frontend connected no later
    /// than `before` (a later connection is someone else's, e.g. a new domain of the
    /// same name), and its stream connections made by then; returns how many sessions
    /// were open.
    pub fn drop_sessions(&self, guest: &str, before: Instant) -> usize {
        let dev = lock(&self.vhost)
            .iter()
            .find(|(n, _, since)| n == guest && *since <= before)
            .map(|(_, d, _)| d.clone());
        let streams = self
            .streams
            .get()
            .map_or(0, |s| s.drop_guest(guest, before));
        dev.map_or(0, |d| d.sessions.clear()) + streams
    }

    /// Chains each virtqueue of `guest`'s device has taken and not yet answered;
    /// `None` when no VMM is attached.
    pub fn queues_inflight(&self, guest: &str) -> Option<Vec<usize>> {
        lock(&self.vhost)
            .iter()
            .find(|(n, ..)| n == guest)
            .map(|(_, d, _)| d.queues.iter().map(|q| q.inflight()).collect())
    }

    /// `guest`'s open stream connections.
    pub fn stream_connections(&self, guest: &str) -> usize {
        self.streams.get().map_or(0, |s| s.connections(guest))
    }

    /// The Xen domain of `guest` runs as `domid` (its vchan channels are offered).
    pub fn domain_up(&self, guest: &str, domid: u32) {
        if let Some(s) = self.streams.get() {
            s.domain_up(guest, domid);
        }
    }
}

/// A running daemon.
#[derive(Debug)]
pub struct Server {
    stop: Arc<Stop>,
    live: Arc<LiveDevices>,
    threads: Vec<JoinHandle<()>>,
    exec: Arc<Executor>,
    sockets: Vec<PathBuf>,
    streams: Option<StreamServer>,
    metrics: Option<Endpoint>,
}

impl Server {
    /// Binds every guest's vhost-user socket and stream listeners, then serves them on
    /// their own threads. Returns once all of them accept connections.
    pub fn start(config: &Config, engine: Arc<dyn Engine>) -> Result<Self, ServerError> {
        let min_slice =
            Duration::from_millis(config.library.as_ref().map_or(0, |l| l.min_slice_ms));
        let exec = Executor::new(config.engine_threads(), min_slice)?;
        let shelf = Arc::new(match &config.library {
            Some(l) if !l.share.is_empty() => {
                let library = vfpga_engine::Library {
                    dir: l.dir.clone(),
                    allow: l.allow.clone(),
                };
                Shelf::open(&library, &l.share)
                    .map_err(|e| ServerError::Config(crate::config::ConfigError::Invalid(e)))?
            }
            _ => Shelf::default(),
        });
        let stop = Arc::new(Stop {
            flag: AtomicBool::new(false),
            event: EventFd::new(EFD_NONBLOCK)?,
            conns: Mutex::new(Vec::new()),
        });
        let mode = config.socket_mode().map_err(ServerError::Config)?;
        let gid = config.socket_gid().map_err(ServerError::Config)?;
        // One tenant per guest, shared by its virtio device and its streams.
        let tenants: Vec<Arc<Tenant>> = config
            .guests
            .iter()
            .map(|g| Tenant::new(&g.name, g.policy(&config.device)))
            .collect();
        // The metrics endpoint first, stream listeners next, vhost-user sockets last:
        // whoever waits for a socket file to appear finds every listener bound.
        let live = Arc::new(LiveDevices::default());
        let metrics = match config.metrics.addr().map_err(ServerError::Config)? {
            None => None,
            Some(addr) => {
                let pages = Arc::new(Exposition::new(
                    tenants.clone(),
                    live.clone(),
                    engine.clone(),
                ));
                let mut inherited = config.daemon.inherited.clone();
                let held = http::take_inherited(&mut inherited);
                Some(
                    Endpoint::start(&addr, held, mode, gid, pages)
                        .map_err(|source| ServerError::Metrics { addr, source })?,
                )
            }
        };
        let streams = start_streams(
            config,
            &tenants,
            &engine,
            exec.scheduler().clone(),
            shelf.clone(),
            mode,
            gid,
        )?;
        let mut listeners = Vec::with_capacity(config.guests.len());
        for g in &config.guests {
            let Some(path) = &g.socket else { continue };
            match bind(path, mode, gid) {
                Ok(l) => listeners.push((g.clone(), path.clone(), l)),
                Err(source) => {
                    if let Some(s) = streams {
                        s.shutdown(Duration::from_secs(5));
                    }
                    for (_, p, _) in &listeners {
                        let _ = std::fs::remove_file(p);
                    }
                    return Err(ServerError::Listen {
                        guest: g.name.clone(),
                        path: path.clone(),
                        source,
                    });
                }
            }
        }
        if let Some(s) = &streams {
            let _ = live.streams.set(s.guests());
        }
        let mut server = Self {
            stop,
            live,
            threads: Vec::new(),
            exec,
            sockets: listeners.iter().map(|(_, p, _)| p.clone()).collect(),
            streams,
            metrics,
        };
        for (g, path, listener) in listeners {
            let tenant = config
                .guests
                .iter()
                .position(|c| c.name == g.name)
                .map(|i| tenants[i].clone())
                .unwrap_or_else(|| Tenant::new(&g.name, g.policy(&config.device)));
            let guest = GuestLoop {
                limits: g.limits(&config.device),
                tenant,
                guest: g.clone(),
                inline_cost: config.daemon.inline_cost,
                poll: Duration::from_micros(config.daemon.poll_us),
                state_dir: config.daemon.state_dir.clone(),
                engine: engine.clone(),
                shelf: shelf.clone(),
                exec: server.exec.clone(),
                stop: server.stop.clone(),
                live: server.live.clone(),
            };
            let t = crate::threads::spawn_running(format!("vfpga-{}", g.name), move || {
                guest.run(listener);
            })?;
            server.threads.push(t);
            info!(guest = %g.name, socket = %path.display(), "listening");
        }
        Ok(server)
    }

    /// The devices of the connected guests.
    pub fn live_devices(&self) -> Arc<LiveDevices> {
        self.live.clone()
    }

    /// The stream listeners, if any guest has some.
    pub fn streams(&self) -> Option<&StreamServer> {
        self.streams.as_ref()
    }

    /// The metrics endpoint's address, if it serves one.
    pub fn metrics_addr(&self) -> Option<&crate::metrics::addr::Addr> {
        self.metrics.as_ref().map(Endpoint::addr)
    }

    /// Cuts every connection, lets runs on the engine threads finish, removes the
    /// sockets. Returns once everything has stopped (or after `grace`).
    pub fn shutdown(self, grace: Duration) {
        if let Some(m) = self.metrics {
            m.stop();
        }
        self.stop.trigger();
        let deadline = Instant::now() + grace;
        if let Some(s) = self.streams {
            s.shutdown(grace);
        }
        for t in self.threads {
            while !t.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if t.is_finished() {
                let _ = t.join();
            } else {
                warn!("a guest thread did not stop within {grace:?}");
            }
        }
        self.exec.shutdown();
        for s in &self.sockets {
            let _ = std::fs::remove_file(s);
        }
        info!("stopped");
    }
}

/// Starts the stream listeners of the guests that have some.
fn start_streams(
    config: &Config,
    tenants: &[Arc<Tenant>],
    engine: &Arc<dyn Engine>,
    turns: Arc<dyn Turns>,
    shelf: Arc<Shelf>,
    socket_mode: Option<u32>,
    socket_gid: Option<u32>,
) -> Result<Option<StreamServer>, ServerError> {
    let guests: Vec<StreamGuest> = config
        .guests
        .iter()
        .zip(tenants)
        .filter(|(g, _)| !g.listen.is_empty())
        .map(|(g, t)| StreamGuest {
            name: g.name.clone(),
            listen: g.listens(),
            tls_name: g.tls_name().to_owned(),
            tenant: t.clone(),
            limits: g.limits(&config.device),
        })
        .collect();
    if guests.is_empty() {
        return Ok(None);
    }
    let tls = config
        .tls
        .as_ref()
        .map(|t| {
            vfpga_transport::server_config(&vfpga_transport::TlsFiles {
                ca: t.ca.clone(),
                cert: t.cert.clone(),
                key: t.key.clone(),
            })
        })
        .transpose()
        .map_err(|e| ServerError::Streams(StreamError::Config(format!("[tls]: {e}"))))?;
    let cfg = StreamConfig {
        max_connections: config.stream.max_connections,
        idle: (config.stream.idle_timeout_ms > 0)
            .then(|| Duration::from_millis(config.stream.idle_timeout_ms)),
        turns,
        shelf,
        tls,
        socket_mode,
        socket_gid,
        inherited: config.daemon.inherited.clone(),
    };
    StreamServer::start(cfg, &guests, engine.clone())
        .map(Some)
        .map_err(ServerError::Streams)
}

/// Closes a connection's exit events once its daemon is gone (see
/// [`VhuVfpga::close_exit_events`]).
struct ExitEvents(VhuVfpga);

impl Drop for ExitEvents {
    fn drop(&mut self) {
        self.0.close_exit_events();
    }
}

/// One guest's serving loop.
struct GuestLoop {
    guest: GuestConfig,
    tenant: Arc<Tenant>,
    limits: DeviceLimits,
    inline_cost: u64,
    poll: Duration,
    state_dir: Option<PathBuf>,
    engine: Arc<dyn Engine>,
    shelf: Arc<Shelf>,
    exec: Arc<Executor>,
    stop: Arc<Stop>,
    live: Arc<LiveDevices>,
}

impl GuestLoop {
    fn run(self, listener: UnixListener) {
        let mut listener = Listener::from(listener);
        let name = &self.guest.name;
        while !self.stop.requested() {
            match wait_readable(listener.as_raw_fd(), self.stop.event.as_raw_fd()) {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => {
                    error!(guest = %name, "waiting for a connection: {e}");
                    std::thread::sleep(Duration::from_millis(200));
                    continue;
                }
            }
            if let Err(e) = self.serve_one(&mut listener) {
                error!(guest = %name, "connection failed: {e}");
            }
        }
    }

    /// Accepts one frontend and serves it until it disconnects or the server stops.
    fn serve_one(&self, listener: &mut Listener) -> Result<(), vhost_user_backend::Error> {
        let name = &self.guest.name;
        let mut dev = Device::new(name, self.limits.clone(), self.engine.clone())
            .with_tenant(self.tenant.clone())
            .with_shelf(self.shelf.clone())
            .with_engine_threads(&self.exec, self.inline_cost)
            .with_polling(self.poll);
        if let Some(dir) = &self.state_dir {
            let path = dir.join(format!("{name}.state"));
            match StateFile::open(&path, dev.state_geometry()) {
                Ok((file, resumed)) => {
                    if resumed {
                        info!(guest = %name, "taking over from the previous worker");
                    }
                    dev = dev.with_state(&file, resumed);
                }
                Err(e) => {
                    warn!(guest = %name, "{}: {e}; runs in flight at a restart will be lost", path.display())
                }
            }
        }
        let dev = Arc::new(dev);
        let backend = VhuVfpga::new(dev.clone());
        // Declared before the daemon, so dropped after it, on every way out.
        let _exit_events = ExitEvents(backend.clone());
        let mem = GuestMemoryAtomic::new(GuestMemoryMmap::new());
        let mut daemon = VhostUserDaemon::new(format!("vfpga-{name}"), backend, mem)?;
        daemon.start(listener)?;
        info!(guest = %name, "frontend connected");
        if let Some(h) = daemon.shutdown_handle() {
            lock(&self.stop.conns).push((name.clone(), h.clone()));
            if self.stop.requested() {
                h.shutdown();
            }
        }
        self.live.set(name, dev.clone());
        let result = daemon.wait();
        self.live.remove(name);
        lock(&self.stop.conns).retain(|(n, _)| n != name);
        for h in daemon.get_epoll_handlers() {
            h.send_exit_event();
        }
        drop(daemon);
        for q in &dev.queues {
            q.wait_idle(Duration::from_secs(30));
        }
        // Not a device reset: a supervisor's next worker may take the sessions over.
        dev.sessions.forget();
        match result {
            Ok(())
            | Err(vhost_user_backend::Error::HandleRequest(
                VhostUserError::Disconnected | VhostUserError::PartialMessage,
            )) => {
                info!(guest = %name, "frontend disconnected");
                Ok(())
            }
            Err(e) => Err(e),
        }
    }
}
