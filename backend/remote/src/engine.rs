//! The remote engine: kernels run on boards that run `vfpga-agent`. A pool of boards
//! from the configuration, each with a few TLS connections; a health thread checks them
//! and reconnects with exponential backoff; each request has a deadline; requests go
//! round-robin to healthy boards; a link that drops fails its request with `LINK_DOWN`
//! and takes the board out until it answers again.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rustls::ClientConfig;
use tracing::{info, warn};
use vfpga_engine::{Call, Catalog, Engine, EngineError, EngineInfo, Kernel};
use vfpga_proto::CAP_ENGINE_REMOTE;

use crate::conn::{Conn, ConnError};

/// One board.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BoardConfig {
    /// Name (logs, status).
    pub name: String,
    /// `host:port` of its agent.
    pub address: String,
    /// Name its certificate carries (DNS name or IP address).
    pub server_name: String,
}

/// How the pool behaves.
#[derive(Clone, Debug)]
pub struct RemoteConfig {
    /// The boards.
    pub boards: Vec<BoardConfig>,
    /// Client TLS configuration (see `vfpga_transport::client_config`).
    pub tls: Arc<ClientConfig>,
    /// Longest a request may take, end to end.
    pub timeout: Duration,
    /// Connections per board (concurrent requests per board).
    pub connections: usize,
    /// Pause between health checks.
    pub health_interval: Duration,
    /// Bitstreams guests may have loaded on the boards (vfpgad's `[library] allow`;
    /// `"*"`: any the boards accept). Nothing else is forwarded.
    pub allow: Vec<String>,
}

#[derive(Debug)]
struct Board {
    cfg: BoardConfig,
    idle: Mutex<Vec<Conn>>,
    open: AtomicUsize,
    healthy: AtomicBool,
    failures: AtomicU32,
    retry_at: Mutex<Instant>,
    last_error: Mutex<String>,
    /// Loads made on this board through this engine: a pooled connection whose
    /// sessions predate the last one forgets them (see `Conn::sync_generation`).
    generation: AtomicU64,
    /// The bitstream and kernel names it offered at its last health check, if they
    /// differ from the engine's catalogue (reported once per change).
    differs: Mutex<Option<String>>,
    /// When a failed run on it was last reported (at most one report per interval).
    warned: Mutex<Option<Instant>>,
}

/// Fewest seconds between two reports of failed runs on one board.
const WARN_EVERY: Duration = Duration::from_secs(10);

impl Board {
    fn mark_down(&self, why: &str) {
        let was_up = self.healthy.swap(false, Ordering::AcqRel);
        let changed = *lock(&self.last_error) != why;
        // Down from up, never reached yet, or failing for a new reason: say so (the
        // same reason again, every backoff, is not news).
        if was_up || changed {
            warn!(
                board = %self.cfg.name,
                address = %self.cfg.address,
                "board {}: {why} (retrying, at most every 10 s)",
                if was_up { "down" } else { "unreachable" }
            );
        }
        let n = self.failures.fetch_add(1, Ordering::AcqRel).min(7);
        let backoff = Duration::from_millis(100 << n).min(Duration::from_secs(10));
        *lock(&self.retry_at) = Instant::now() + backoff;
        *lock(&self.last_error) = why.to_owned();
        // Other connections to a board whose link failed are suspect too.
        let stale = std::mem::take(&mut *lock(&self.idle));
        self.open.fetch_sub(stale.len(), Ordering::AcqRel);
    }

    fn mark_up(&self) {
        self.failures.store(0, Ordering::Release);
        if !self.healthy.swap(true, Ordering::AcqRel) {
            info!(board = %self.cfg.name, address = %self.cfg.address, "board up");
            *lock(&self.last_error) = String::new();
        }
    }

    /// Whether a failed run on this board is to be reported now.
    fn warn_due(&self) -> bool {
        let mut last = lock(&self.warned);
        let now = Instant::now();
        if last.is_some_and(|t| now.duration_since(t) < WARN_EVERY) {
            return false;
        }
        *last = Some(now);
        true
    }

    /// An idle connection, or a new one if the board has room for it.
    /// A new connection must be up by `deadline`.
    fn take(
        &self,
        tls: &Arc<ClientConfig>,
        max: usize,
        deadline: Instant,
    ) -> Result<Option<Conn>, ConnError> {
        let generation = self.generation.load(Ordering::Acquire);
        if let Some(mut c) = lock(&self.idle).pop() {
            c.sync_generation(generation);
            return Ok(Some(c));
        }
        if self.open.fetch_add(1, Ordering::AcqRel) >= max {
            self.open.fetch_sub(1, Ordering::AcqRel);
            return Ok(None);
        }
        match Conn::connect_by(
            &self.cfg.address,
            &self.cfg.server_name,
            tls.clone(),
            deadline,
        ) {
            Ok(mut c) => {
                c.sync_generation(generation);
                Ok(Some(c))
            }
            Err(e) => {
                self.open.fetch_sub(1, Ordering::AcqRel);
                Err(e)
            }
        }
    }

    fn give(&self, c: Conn) {
        lock(&self.idle).push(c);
    }

    /// Pools `c` after an exchange that ended with `r`: a status leaves it in step,
    /// any other error (timeout, broken link, protocol) does not.
    fn settle<T>(&self, c: Conn, r: &Result<T, ConnError>) {
        match r {
            Ok(_) | Err(ConnError::Status { .. }) => self.give(c),
            Err(_) => self.discard(),
        }
    }

    fn discard(&self) {
        self.open.fetch_sub(1, Ordering::AcqRel);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The engine.
#[derive(Debug)]
pub struct RemoteEngine {
    boards: Vec<Arc<Board>>,
    cfg: RemoteConfig,
    catalog: RwLock<Arc<Catalog>>,
    next: AtomicUsize,
    stop: Arc<AtomicBool>,
    health: Mutex<Option<JoinHandle<()>>>,
}

impl RemoteEngine {
    /// Connects to every board it can (boards that are down are retried in the
    /// background) and starts the health checks.
    pub fn new(cfg: RemoteConfig) -> Arc<Self> {
        let boards: Vec<Arc<Board>> = cfg
            .boards
            .iter()
            .map(|b| {
                Arc::new(Board {
                    cfg: b.clone(),
                    idle: Mutex::new(Vec::new()),
                    open: AtomicUsize::new(0),
                    healthy: AtomicBool::new(false),
                    failures: AtomicU32::new(0),
                    retry_at: Mutex::new(Instant::now()),
                    last_error: Mutex::new("not yet contacted".into()),
                    generation: AtomicU64::new(0),
                    differs: Mutex::new(None),
                    warned: Mutex::new(None),
                })
            })
            .collect();
        let engine = Arc::new(Self {
            boards,
            catalog: RwLock::new(Arc::new(Catalog::empty("none", "no board reachable yet"))),
            next: AtomicUsize::new(0),
            stop: Arc::new(AtomicBool::new(false)),
            health: Mutex::new(None),
            cfg,
        });
        engine.check_all();
        let weak = Arc::downgrade(&engine);
        let stop = engine.stop.clone();
        let interval = engine.cfg.health_interval;
        let handle = std::thread::Builder::new()
            .name("vfpga-remote-health".into())
            .spawn(move || {
                // Naps of at most 200 ms, so a shutdown is seen quickly.
                let mut next = Instant::now() + interval;
                while !stop.load(Ordering::Acquire) {
                    let now = Instant::now();
                    if now < next {
                        std::thread::sleep((next - now).min(Duration::from_millis(200)));
                        continue;
                    }
                    let Some(e) = weak.upgrade() else { return };
                    e.check_all();
                    next = Instant::now() + interval;
                }
            })
            .ok();
        *lock(&engine.health) = handle;
        engine
    }

    /// Stops the health checks.
    pub fn shutdown(&self) {
        self.stop.store(true, Ordering::Release);
        if let Some(h) = lock(&self.health).take() {
            let _ = h.join();
        }
    }

    /// (name, healthy, last error) for every board.
    pub fn status(&self) -> Vec<(String, bool, String)> {
        self.boards
            .iter()
            .map(|b| {
                (
                    b.cfg.name.clone(),
                    b.healthy.load(Ordering::Acquire),
                    lock(&b.last_error).clone(),
                )
            })
            .collect()
    }

    /// Health pass: boards due for a check get a null round trip (down boards after
    /// their backoff) and are asked what they offer: the first healthy board in the
    /// configuration's order supplies the catalogue whenever its own changes (an agent
    /// restarted, a bitstream uploaded and loaded by another host), and a board that
    /// offers something else is reported.
    fn check_all(&self) {
        let timeout = self.cfg.timeout.min(Duration::from_secs(5));
        let mut first = true;
        for b in &self.boards {
            let up = b.healthy.load(Ordering::Acquire);
            if !up && Instant::now() < *lock(&b.retry_at) {
                continue;
            }
            let deadline = Instant::now() + timeout;
            let result = b
                .take(&self.cfg.tls, self.cfg.connections, deadline)
                .and_then(|c| match c {
                    Some(mut c) => {
                        c.set_deadline(deadline);
                        let mut r = c.nop();
                        if r.is_ok() {
                            r = self.compare_catalog(b, &mut c, first);
                        }
                        b.settle(c, &r);
                        r
                    }
                    // Every connection is busy: the board is working.
                    None => Ok(()),
                });
            match result {
                Ok(()) => {
                    b.mark_up();
                    first = false;
                }
                Err(e) => b.mark_down(&describe(&e)),
            }
        }
    }

    /// Reads what board `b` offers; the catalogue follows it if `authority` (the first
    /// healthy board), otherwise a difference is reported once.
    fn compare_catalog(&self, b: &Board, c: &mut Conn, authority: bool) -> Result<(), ConnError> {
        let info = match c.info() {
            Err(ConnError::Status { .. }) => None,
            r => Some(r?),
        };
        let sigs = match c.kernels() {
            Ok(s) => s,
            Err(ConnError::Status { status, .. }) => {
                warn!(board = %b.cfg.name, "cannot list the board's kernels: it answered {status:?}");
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        let name = info
            .and_then(|i| vfpga_proto::wire::name_str(&i.bitstream).map(str::to_owned))
            .unwrap_or_else(|| "remote".into());
        let ours = self.catalog();
        let same = ours.name == name
            && ours.kernels.len() == sigs.len()
            && ours.kernels.iter().zip(&sigs).all(|(k, s)| &k.sig == s);
        let describe = |n: &str, k: &mut dyn Iterator<Item = &str>| {
            format!("bitstream {n} ({})", k.collect::<Vec<_>>().join(", "))
        };
        let theirs = describe(&name, &mut sigs.iter().map(|s| s.name.as_str()));
        if same {
            *lock(&b.differs) = None;
            return Ok(());
        }
        if authority {
            let before = describe(
                &ours.name,
                &mut ours.kernels.iter().map(|k| k.sig.name.as_str()),
            );
            self.set_catalog(Arc::new(Catalog::from_signatures(
                &name,
                "kernels of the remote boards",
                sigs,
            )));
            info!(
                board = %b.cfg.name,
                "catalogue now {theirs} (was {before}); sessions of the old one get UNKNOWN_KERNEL"
            );
            *lock(&b.differs) = None;
        } else {
            let mut d = lock(&b.differs);
            if d.as_deref() != Some(theirs.as_str()) {
                warn!(
                    board = %b.cfg.name,
                    "the board offers {theirs}, the catalogue (from the first board) is {}: runs of kernels it lacks fail there; load the same bitstream on every board",
                    ours.name
                );
                *d = Some(theirs);
            }
        }
        Ok(())
    }

    fn set_catalog(&self, cat: Arc<Catalog>) {
        match self.catalog.write() {
            Ok(mut g) => *g = cat,
            Err(p) => *p.into_inner() = cat,
        }
    }

    /// Reads the board's catalogue into the engine's. An error other than a status
    /// leaves the connection out of step: the caller must not pool it.
    fn refresh_catalog(&self, c: &mut Conn) -> Result<(), ConnError> {
        let info = match c.info() {
            Err(ConnError::Status { .. }) => None,
            r => Some(r?),
        };
        match c.kernels() {
            Ok(sigs) => {
                let name = info
                    .and_then(|i| vfpga_proto::wire::name_str(&i.bitstream).map(str::to_owned))
                    .unwrap_or_else(|| "remote".into());
                self.set_catalog(Arc::new(Catalog::from_signatures(
                    &name,
                    "kernels of the remote boards",
                    sigs,
                )));
                Ok(())
            }
            Err(e) => {
                warn!("cannot read the board's kernel catalogue: {e}");
                match e {
                    ConnError::Status { .. } => Ok(()),
                    e => Err(e),
                }
            }
        }
    }

    /// Healthy boards, starting with the next in round-robin order.
    fn candidates(&self) -> impl Iterator<Item = &Arc<Board>> {
        let n = self.boards.len().max(1);
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        (0..self.boards.len())
            .map(move |i| &self.boards[(start + i) % n])
            .filter(|b| b.healthy.load(Ordering::Acquire))
    }
}

impl Drop for RemoteEngine {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

/// A link failure in words: a board that closed the connection (its agent stopped or
/// restarted) is not a TLS protocol complaint.
fn describe(e: &ConnError) -> String {
    match e {
        ConnError::Io(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            "the board closed the connection (its agent stopped or restarted?)".into()
        }
        e => e.to_string(),
    }
}

fn link_down(errors: &[String]) -> EngineError {
    EngineError::LinkDown(if errors.is_empty() {
        "no board is reachable".into()
    } else {
        errors.join("; ")
    })
}

impl Engine for RemoteEngine {
    fn info(&self) -> EngineInfo {
        EngineInfo {
            name: "remote",
            capability: CAP_ENGINE_REMOTE,
            can_load: !self.cfg.allow.is_empty(),
        }
    }

    fn boards(&self) -> Vec<vfpga_engine::BoardHealth> {
        self.status()
            .into_iter()
            .map(|(name, up, last_error)| vfpga_engine::BoardHealth {
                name,
                up,
                last_error,
            })
            .collect()
    }

    fn catalog(&self) -> Arc<Catalog> {
        match self.catalog.read() {
            Ok(c) => c.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    fn run(&self, kernel: &Kernel, call: &Call<'_>) -> Result<(), EngineError> {
        // A session of a catalogue replaced since (a load) runs nothing, as on every
        // engine: its kernel may not be the board's any more.
        if kernel.generation != self.catalog().generation {
            return Err(EngineError::KernelGone(kernel.sig.name.clone()));
        }
        let deadline = Instant::now() + self.cfg.timeout;
        let mut errors = Vec::new();
        let mut busy = false;
        for b in self.candidates() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(EngineError::Timeout(self.cfg.timeout));
            }
            let mut conn = match b.take(&self.cfg.tls, self.cfg.connections, deadline) {
                Ok(Some(c)) => c,
                Ok(None) => {
                    // All its connections busy: try the next board.
                    busy = true;
                    continue;
                }
                Err(e) => {
                    // Nothing was sent: another board may take it.
                    b.mark_down(&describe(&e));
                    errors.push(format!("{}: {e}", b.cfg.name));
                    continue;
                }
            };
            conn.set_deadline(deadline);
            return match conn.run(&kernel.sig.name, call) {
                Ok(_) => {
                    b.give(conn);
                    Ok(())
                }
                Err(ConnError::Status { status, detail }) => {
                    b.give(conn);
                    Err(match status {
                        vfpga_proto::Status::BadArgument => EngineError::BadArgument {
                            index: detail as usize,
                            reason: "refused by the board",
                        },
                        vfpga_proto::Status::UnknownKernel => {
                            if b.warn_due() {
                                warn!(
                                    board = %b.cfg.name,
                                    "the board does not know kernel {} of the catalogue (did its bitstream change?); the next health check reads its catalogue again",
                                    kernel.sig.name
                                );
                            }
                            EngineError::KernelGone(kernel.sig.name.clone())
                        }
                        vfpga_proto::Status::Busy => EngineError::Busy,
                        vfpga_proto::Status::TooLarge => EngineError::Failed(format!(
                            "board {} refuses a request this large (vfpga-agent --max-request-mib)",
                            b.cfg.name
                        )),
                        vfpga_proto::Status::Timeout => EngineError::Timeout(self.cfg.timeout),
                        s => EngineError::Failed(format!("board {} answered {s:?}", b.cfg.name)),
                    })
                }
                Err(e) if e.is_timeout() => {
                    // The link state is unknown after a timeout: drop the connection.
                    b.discard();
                    warn!(
                        board = %b.cfg.name,
                        "a run of {} timed out after {:?} ([remote] timeout_ms)",
                        kernel.sig.name,
                        self.cfg.timeout
                    );
                    Err(EngineError::Timeout(self.cfg.timeout))
                }
                Err(e) => {
                    // The link broke (perhaps a pooled connection to a board that died
                    // while idle). Kernels are pure functions of their inputs and the
                    // outputs are rewritten in full by a retry, so another board may
                    // take the request.
                    b.discard();
                    b.mark_down(&describe(&e));
                    errors.push(format!("board {}: {e}", b.cfg.name));
                    continue;
                }
            };
        }
        // Every reachable board was working at capacity: the guest may retry.
        if busy && errors.is_empty() {
            return Err(EngineError::Busy);
        }
        if errors.is_empty() && self.boards.iter().all(|b| b.warn_due()) {
            let why: Vec<String> = self
                .status()
                .into_iter()
                .map(|(name, _, e)| format!("{name}: {e}"))
                .collect();
            warn!(
                "a run of {} found no board up ({})",
                kernel.sig.name,
                why.join("; ")
            );
        }
        Err(link_down(&errors))
    }

    fn cost(&self, _kernel: &Kernel, _call: &Call<'_>) -> u64 {
        // Every remote run waits on the network: give it an engine thread.
        u64::MAX
    }

    fn load_bitstream(&self, name: &str) -> Result<Arc<Catalog>, EngineError> {
        if !vfpga_engine::manifest::valid_name(name) {
            return Err(EngineError::Permission(format!(
                "`{}` is not a bitstream name",
                name.escape_debug()
            )));
        }
        if !self.cfg.allow.iter().any(|a| a == "*" || a == name) {
            return Err(EngineError::Permission(format!(
                "bitstream `{name}` is not in vfpgad's [library] allow"
            )));
        }
        let timeout = self.cfg.timeout;
        let mut loaded = None;
        let mut errors = Vec::new();
        for b in self
            .boards
            .iter()
            .filter(|b| b.healthy.load(Ordering::Acquire))
        {
            let deadline = Instant::now() + timeout;
            let mut c = match b.take(&self.cfg.tls, self.cfg.connections, deadline) {
                Ok(Some(c)) => c,
                Ok(None) => {
                    errors.push(format!("{}: busy", b.cfg.name));
                    continue;
                }
                Err(e) => {
                    b.mark_down(&describe(&e));
                    errors.push(format!("{}: {e}", b.cfg.name));
                    continue;
                }
            };
            c.set_deadline(deadline);
            match c.load(name) {
                Ok(_) => {
                    // Other connections' sessions on this board are of the old bitstream.
                    let g = b.generation.fetch_add(1, Ordering::AcqRel) + 1;
                    c.sync_generation(g);
                    // The catalogue gets a deadline of its own: loading may have used
                    // most of the first.
                    let r = if loaded.is_none() {
                        c.set_timeout(timeout.min(Duration::from_secs(5)));
                        self.refresh_catalog(&mut c)
                    } else {
                        Ok(())
                    };
                    match &r {
                        Ok(()) if loaded.is_none() => loaded = Some(self.catalog()),
                        Ok(()) => {}
                        Err(e) => {
                            errors.push(format!("{}: catalogue after loading: {e}", b.cfg.name))
                        }
                    }
                    b.settle(c, &r);
                }
                Err(ConnError::Status { status, .. }) => {
                    b.give(c);
                    errors.push(format!("{}: {status:?}", b.cfg.name));
                    if status == vfpga_proto::Status::Permission {
                        return Err(EngineError::Permission(format!(
                            "board {} refuses bitstream {name}",
                            b.cfg.name
                        )));
                    }
                    if status == vfpga_proto::Status::UnknownKernel {
                        return Err(EngineError::UnknownBitstream(name.to_owned()));
                    }
                }
                Err(e) => {
                    b.discard();
                    b.mark_down(&describe(&e));
                    errors.push(format!("{}: {e}", b.cfg.name));
                }
            }
        }
        loaded.ok_or_else(|| link_down(&errors))
    }
}
