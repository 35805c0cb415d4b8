//! A dom0 service in xenstore: a daemon publishes itself and the guests it serves under
//! one path, watches `@introduceDomain`/`@releaseDomain`, and is told when the domain
//! behind one of its guests goes away, so it can drop that guest's sessions.
//!
//! Layout under the service path `P` (default [`DEFAULT_PATH`]):
//!
//! ```text
//! P/daemon/version           the daemon's version
//! P/daemon/pid               its process id
//! P/daemon/engine            the engine it runs (sim, pl, remote)
//! P/daemon/state             starting | running | stopping
//! P/guests/NAME/socket       the guest's vhost-user socket
//! P/guests/NAME/domain       the Xen domain name it belongs to
//! P/guests/NAME/domid        that domain's id while it runs, empty otherwise
//! P/guests/NAME/sessions-dropped   sessions closed because the domain went away
//! ```
//!
//! The daemon removes its keys when it stops (and `P`, when nothing else is there). xenstore is reached through xenstored's socket
//! (`XENSTORED_PATH`, default `/run/xenstored/socket`) or `/dev/xen/xenbus`.

use std::collections::HashMap;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};
use xenstore_rs::tokio::XsTokio;
use xenstore_rs::{AsyncWatch, AsyncXs};

/// Where a daemon registers unless told otherwise: dom0's own part of the tree.
pub const DEFAULT_PATH: &str = "/local/domain/0/vfpga";

/// How long one xenstore operation may take before the connection counts as lost.
const OP_TIMEOUT: Duration = Duration::from_secs(5);
/// A rescan this often even without events: a domain's entries may disappear after
/// `@releaseDomain` fired (the toolstack removes them, not xenstored).
const RESCAN_EVERY: Duration = Duration::from_secs(5);
/// Extra rescans after `@releaseDomain`, for the same reason.
const RELEASE_FOLLOW_UPS: [Duration; 2] = [Duration::from_millis(300), Duration::from_secs(2)];
/// Wait before reconnecting after xenstore went away (doubling up to the maximum).
const RECONNECT_FIRST: Duration = Duration::from_millis(500);
const RECONNECT_MAX: Duration = Duration::from_secs(30);
/// How long [`Service::start`] waits for the registration. The xenbus device answers
/// some requests inside a blocking write, which no async time limit can interrupt.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long [`Service::stop`] waits for the record's removal before leaving the thread.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Top-level parts of xenstore that belong to Xen and the toolstack: a service path
/// must not be one of them (or a domain's home), as the service writes below it.
const RESERVED_PATHS: [&str; 6] = ["/local", "/local/domain", "/vm", "/libxl", "/tool", "/vss"];

/// What the daemon publishes about itself.
#[derive(Clone, Debug)]
pub struct ServiceInfo {
    /// xenstore path of the record.
    pub path: String,
    /// Daemon version.
    pub version: String,
    /// Daemon process id.
    pub pid: u32,
    /// Engine name.
    pub engine: String,
}

/// One guest the daemon serves.
#[derive(Clone, Debug)]
pub struct ServiceGuest {
    /// Guest name (unique within the daemon).
    pub name: String,
    /// Its vhost-user socket.
    pub socket: String,
    /// The Xen domain name whose death ends its sessions.
    pub domain: String,
}

/// What the service calls back into the daemon.
pub trait DomainEvents: Send + Sync + 'static {
    /// The domain of `guest` went away: close the sessions of its connection, if that
    /// connection was made no later than `alive_at` (when the domain was last seen
    /// alive; a later one belongs to a new domain of the same name), and say how many
    /// there were.
    fn domain_gone(&self, guest: &str, alive_at: Instant) -> usize;

    /// The domain of `guest` runs as `domid` (found by a scan, at start or later, or
    /// replacing an earlier domain of the same name after [`Self::domain_gone`]).
    fn domain_up(&self, _guest: &str, _domid: u32) {}
}

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// Neither xenstored's socket nor the xenbus device answered.
    #[error(
        "cannot reach xenstore through {socket} or /dev/xen/xenbus: {source} \
         (is this dom0 with xenstored running? XENSTORED_PATH selects another socket)"
    )]
    Connect {
        /// The socket tried first.
        socket: String,
        /// The last error.
        #[source]
        source: io::Error,
    },
    /// A xenstore operation failed.
    #[error("xenstore {op} {path}: {source}")]
    Store {
        /// The operation.
        op: &'static str,
        /// The path.
        path: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The service path or a guest is not usable in xenstore.
    #[error("{0}")]
    Invalid(String),
    /// The service thread could not start.
    #[error("cannot start the xenstore thread: {0}")]
    Thread(#[source] io::Error),
}

/// The characters xenstored accepts in a node name besides letters and digits.
fn xs_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"_-@".contains(&b)
}

/// Checks that `path` is an absolute xenstore path (letters, digits and `_-@/`, as
/// xenstored allows, no empty component, no trailing slash) that is not one of Xen's
/// own trees or a domain's home.
pub fn check_path(path: &str) -> Result<(), ServiceError> {
    let ok = path.len() > 1
        && path.len() <= 1024
        && path.starts_with('/')
        && !path.ends_with('/')
        && !path.contains("//")
        && path.bytes().all(|b| b == b'/' || xs_char(b));
    if !ok {
        return Err(ServiceError::Invalid(format!(
            "xenstore path {path:?}: give an absolute path of letters, digits and _-@/ \
             without a trailing slash, e.g. {DEFAULT_PATH}"
        )));
    }
    let domain_home = path
        .strip_prefix("/local/domain/")
        .is_some_and(|id| id.bytes().all(|b| b.is_ascii_digit()));
    if RESERVED_PATHS.contains(&path) || domain_home {
        return Err(ServiceError::Invalid(format!(
            "xenstore path {path:?} belongs to Xen and its toolstack: give a path of the \
             service's own below it, e.g. {DEFAULT_PATH}"
        )));
    }
    Ok(())
}

/// Checks a guest name (one rule everywhere: [`crate::names::guest_name`]), which is a
/// path component of the record.
pub fn check_component(name: &str) -> Result<(), ServiceError> {
    crate::names::guest_name(name).map_err(ServiceError::Invalid)
}

/// How a guest's domain changed between two scans.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// The domain appeared with this id.
    Up(u32),
    /// The domain that had this id is gone.
    Gone(u32),
    /// The name now belongs to another domain (destroyed and recreated between two
    /// scans): the old one's sessions end.
    Replaced {
        /// The id that went away.
        old: u32,
        /// The new id.
        new: u32,
    },
}

/// Compares a guest's domain id before and after a scan.
pub fn change(before: Option<u32>, now: Option<u32>) -> Option<Change> {
    match (before, now) {
        (None, Some(id)) => Some(Change::Up(id)),
        (Some(id), None) => Some(Change::Gone(id)),
        (Some(old), Some(new)) if old != new => Some(Change::Replaced { old, new }),
        _ => None,
    }
}

/// The running service. Dropping it unregisters as [`Service::stop`] does.
#[derive(Debug)]
pub struct Service {
    commands: mpsc::UnboundedSender<Command>,
    /// Closed when the service thread ends.
    done: Option<std::sync::mpsc::Receiver<()>>,
}

#[derive(Debug)]
enum Command {
    State(&'static str),
    Stop,
}

impl Service {
    /// Connects to xenstore, publishes the record with state `running`, scans the
    /// domains once and starts watching. Returns once all of that has happened.
    pub fn start(
        info: ServiceInfo,
        guests: Vec<ServiceGuest>,
        events: Arc<dyn DomainEvents>,
    ) -> Result<Self, ServiceError> {
        check_path(&info.path)?;
        for g in &guests {
            check_component(&g.name)?;
        }
        let (commands, rx) = mpsc::unbounded_channel();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (done_tx, done) = std::sync::mpsc::channel::<()>();
        std::thread::Builder::new()
            .name("vfpga-xenstore".into())
            .spawn(move || {
                let _done = done_tx;
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(ServiceError::Thread(e)));
                        return;
                    }
                };
                rt.block_on(run(info, guests, events, rx, ready_tx));
            })
            .map_err(ServiceError::Thread)?;
        // On an error the thread has ended or is left behind (stuck in the xenbus
        // device): the daemon is about to exit either way.
        match ready_rx.recv_timeout(START_TIMEOUT) {
            Ok(Ok(())) => Ok(Self {
                commands,
                done: Some(done),
            }),
            Ok(Err(e)) => Err(e),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => Err(ServiceError::Store {
                op: "register",
                path: String::new(),
                source: io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("xenstore did not answer within {START_TIMEOUT:?}"),
                ),
            }),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Err(ServiceError::Thread(
                io::Error::other("the xenstore thread ended before registering"),
            )),
        }
    }

    /// Publishes a new daemon state (`stopping` before a shutdown that may take a
    /// while, so tools see it).
    pub fn set_state(&self, state: &'static str) {
        let _ = self.commands.send(Command::State(state));
    }

    /// Removes the record and stops watching.
    pub fn stop(mut self) {
        self.finish();
    }

    fn finish(&mut self) {
        let _ = self.commands.send(Command::Stop);
        if let Some(done) = self.done.take() {
            if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = done.recv_timeout(STOP_TIMEOUT)
            {
                warn!("xenstore did not answer within {STOP_TIMEOUT:?}: the record may remain");
            }
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.finish();
    }
}

/// xenstore operations with a time limit and the path in the error.
struct Store {
    xs: XsTokio,
}

impl Store {
    async fn connect() -> Result<Self, ServiceError> {
        let socket =
            std::env::var("XENSTORED_PATH").unwrap_or_else(|_| "/run/xenstored/socket".to_string());
        match tokio::time::timeout(OP_TIMEOUT, XsTokio::new()).await {
            Ok(Ok(xs)) => Ok(Self { xs }),
            Ok(Err(source)) => Err(ServiceError::Connect { socket, source }),
            Err(_) => Err(ServiceError::Connect {
                socket,
                source: io::Error::new(io::ErrorKind::TimedOut, "no answer"),
            }),
        }
    }

    async fn op<T>(
        op: &'static str,
        path: &str,
        f: impl std::future::Future<Output = io::Result<T>>,
    ) -> Result<T, ServiceError> {
        let r = match tokio::time::timeout(OP_TIMEOUT, f).await {
            Ok(r) => r,
            Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "no answer")),
        };
        r.map_err(|source| ServiceError::Store {
            op,
            path: path.to_owned(),
            source,
        })
    }

    async fn write(&self, path: &str, value: &str) -> Result<(), ServiceError> {
        Self::op("write", path, self.xs.write(path, value)).await
    }

    async fn read(&self, path: &str) -> Result<Option<String>, ServiceError> {
        match Self::op("read", path, self.xs.read(path)).await {
            Ok(v) => Ok(Some(v.into_string())),
            Err(ServiceError::Store { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    async fn is_empty(&self, path: &str) -> Result<bool, ServiceError> {
        match Self::op("directory", path, self.xs.directory(path)).await {
            Ok(children) => Ok(children.is_empty()),
            Err(ServiceError::Store { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                Ok(true)
            }
            Err(e) => Err(e),
        }
    }

    async fn rm(&self, path: &str) -> Result<(), ServiceError> {
        match Self::op("rm", path, self.xs.rm(path)).await {
            Err(ServiceError::Store { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                Ok(())
            }
            r => r,
        }
    }

    /// Domain name → the ids of the domains of that name, from
    /// `/local/domain/*/name` (two while a dying domain's entries remain beside its
    /// successor's). A domain whose entries are being removed while we look is skipped.
    async fn domains(&self) -> Result<HashMap<String, Vec<u32>>, ServiceError> {
        let ids = Self::op(
            "directory",
            "/local/domain",
            self.xs.directory("/local/domain"),
        )
        .await?;
        let mut out: HashMap<String, Vec<u32>> = HashMap::with_capacity(ids.len());
        for id in ids {
            let Ok(domid) = id.parse::<u32>() else {
                continue;
            };
            let path = format!("/local/domain/{domid}/name");
            match Self::op("read", &path, self.xs.read(&path)).await {
                Ok(name) => out.entry(name.into_string()).or_default().push(domid),
                Err(ServiceError::Store { source, .. })
                    if source.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }
}

/// What the watch forwarders report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Event {
    Introduced,
    Released,
    Lost,
}

/// The record and the last scan's view of each guest's domain.
struct Record {
    info: ServiceInfo,
    guests: Vec<ServiceGuest>,
    domids: Vec<Option<u32>>,
    /// When each guest's domain was last seen alive.
    alive_at: Vec<Instant>,
    dropped: Vec<u64>,
    events: Arc<dyn DomainEvents>,
}

/// Whether `pid` is a running vfpgad other than this one (another daemon registered at
/// the same path).
fn is_live_vfpgad(pid: &str) -> bool {
    pid.parse::<u32>().is_ok_and(|p| {
        p != std::process::id()
            && std::fs::read_to_string(format!("/proc/{p}/comm"))
                .is_ok_and(|c| c.trim_end() == "vfpgad")
    })
}

impl Record {
    fn guest_path(&self, i: usize, key: &str) -> String {
        format!("{}/guests/{}/{key}", self.info.path, self.guests[i].name)
    }

    async fn publish(&self, xs: &Store, state: &str) -> Result<(), ServiceError> {
        let p = &self.info.path;
        if let Some(pid) = xs
            .read(&format!("{p}/daemon/pid"))
            .await?
            .filter(|pid| is_live_vfpgad(pid))
        {
            return Err(ServiceError::Invalid(format!(
                "another vfpgad (pid {pid}) is registered at {p}: give this one its own [xen] path"
            )));
        }
        // A record left by a daemon that died without cleaning up would keep guests it
        // no longer serves. Only the service's own keys go: P itself may hold others.
        xs.rm(&format!("{p}/daemon")).await?;
        xs.rm(&format!("{p}/guests")).await?;
        xs.write(&format!("{p}/daemon/version"), &self.info.version)
            .await?;
        xs.write(&format!("{p}/daemon/pid"), &self.info.pid.to_string())
            .await?;
        xs.write(&format!("{p}/daemon/engine"), &self.info.engine)
            .await?;
        for (i, g) in self.guests.iter().enumerate() {
            xs.write(&self.guest_path(i, "socket"), &g.socket).await?;
            xs.write(&self.guest_path(i, "domain"), &g.domain).await?;
            let id = self.domids[i].map(|d| d.to_string()).unwrap_or_default();
            xs.write(&self.guest_path(i, "domid"), &id).await?;
            xs.write(
                &self.guest_path(i, "sessions-dropped"),
                &self.dropped[i].to_string(),
            )
            .await?;
        }
        xs.write(&format!("{p}/daemon/state"), state).await
    }

    /// Rescans the domains and applies what changed for each guest. The record in
    /// memory changes before xenstore is written, so a change is never applied twice;
    /// writes lost with the connection are made again by `publish` after reconnecting.
    async fn rescan(&mut self, xs: &Store) -> Result<(), ServiceError> {
        let domains = xs.domains().await?;
        let listed_at = Instant::now();
        let mut changed = Vec::new();
        for i in 0..self.guests.len() {
            let ids = domains.get(&self.guests[i].domain);
            // The id already known while it is still listed, else the newest.
            let now = match (self.domids[i], ids) {
                (Some(known), Some(ids)) if ids.contains(&known) => Some(known),
                (_, ids) => ids.and_then(|ids| ids.iter().copied().max()),
            };
            let Some(c) = change(self.domids[i], now) else {
                if now.is_some() {
                    self.alive_at[i] = listed_at;
                }
                continue;
            };
            let name = &self.guests[i].name;
            let domain = &self.guests[i].domain;
            match c {
                Change::Up(id) => {
                    info!(guest = %name, domain = %domain, domid = id, "domain up");
                    self.events.domain_up(name, id);
                }
                Change::Gone(old) | Change::Replaced { old, .. } => {
                    let n = self.events.domain_gone(name, self.alive_at[i]);
                    self.dropped[i] += u64::try_from(n).unwrap_or(u64::MAX);
                    info!(guest = %name, domain = %domain, domid = old, sessions = n,
                          "domain gone: its sessions are closed");
                    if let Change::Replaced { new, .. } = c {
                        self.events.domain_up(name, new);
                    }
                }
            }
            self.domids[i] = now;
            self.alive_at[i] = listed_at;
            changed.push(i);
        }
        for i in changed {
            let id = self.domids[i].map(|d| d.to_string()).unwrap_or_default();
            xs.write(&self.guest_path(i, "domid"), &id).await?;
            xs.write(
                &self.guest_path(i, "sessions-dropped"),
                &self.dropped[i].to_string(),
            )
            .await?;
        }
        Ok(())
    }

    /// Removes the service's keys, and its path when nothing else is left there.
    async fn unpublish(&self, xs: &Store) -> Result<(), ServiceError> {
        let p = &self.info.path;
        xs.rm(&format!("{p}/guests")).await?;
        xs.rm(&format!("{p}/daemon")).await?;
        if xs.is_empty(p).await? {
            xs.rm(p).await?;
        }
        Ok(())
    }
}

/// Forwards a watch's events (coalescing is up to the receiver) and reports the end of
/// the stream. The caller aborts the task when it gives up the connection: xenstore-rs
/// does not always end the stream when the connection breaks.
async fn forward(
    xs: &XsTokio,
    path: &'static str,
    kind: Event,
    tx: mpsc::UnboundedSender<Event>,
) -> Result<tokio::task::JoinHandle<()>, ServiceError> {
    let mut w = Store::op("watch", path, xs.watch(path)).await?;
    Ok(tokio::spawn(async move {
        while w.next().await.is_some() {
            if tx.send(kind).is_err() {
                return;
            }
        }
        let _ = tx.send(Event::Lost);
    }))
}

/// Aborts the watch forwarders when a connection ends, however it ends.
struct Forwarders(Vec<tokio::task::JoinHandle<()>>);

impl Drop for Forwarders {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

/// How one connection to xenstore ended.
enum End {
    Stopped,
    Lost(ServiceError),
}

/// The service thread: connect, publish, watch; reconnect when xenstore goes away.
async fn run(
    info: ServiceInfo,
    guests: Vec<ServiceGuest>,
    events: Arc<dyn DomainEvents>,
    mut commands: mpsc::UnboundedReceiver<Command>,
    ready: std::sync::mpsc::Sender<Result<(), ServiceError>>,
) {
    let n = guests.len();
    let mut rec = Record {
        info,
        guests,
        domids: vec![None; n],
        alive_at: vec![Instant::now(); n],
        dropped: vec![0; n],
        events,
    };
    let mut state = "running";
    let mut ready = Some(ready);
    let mut backoff = RECONNECT_FIRST;
    loop {
        match connection(&mut rec, &mut state, &mut commands, &mut ready).await {
            End::Stopped => return,
            End::Lost(e) => {
                if let Some(r) = ready.take() {
                    let _ = r.send(Err(e));
                    return;
                }
                warn!("xenstore: {e}; reconnecting in {backoff:?}");
            }
        }
        // Wait before reconnecting, but obey a stop meanwhile.
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            cmd = commands.recv() => match cmd {
                Some(Command::State(s)) => state = s,
                Some(Command::Stop) | None => return,
            },
        }
        backoff = (backoff * 2).min(RECONNECT_MAX);
    }
}

/// One connection's life. Domain changes seen while disconnected are applied at the
/// first scan after reconnecting.
async fn connection(
    rec: &mut Record,
    state: &mut &'static str,
    commands: &mut mpsc::UnboundedReceiver<Command>,
    ready: &mut Option<std::sync::mpsc::Sender<Result<(), ServiceError>>>,
) -> End {
    let xs = match Store::connect().await {
        Ok(xs) => xs,
        Err(e) => return End::Lost(e),
    };
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut forwarders = Forwarders(Vec::new());
    let setup = async {
        rec.publish(&xs, "starting").await?;
        for (path, kind) in [
            ("@introduceDomain", Event::Introduced),
            ("@releaseDomain", Event::Released),
        ] {
            let task = forward(&xs.xs, path, kind, tx.clone()).await?;
            forwarders.0.push(task);
        }
        rec.rescan(&xs).await?;
        xs.write(&format!("{}/daemon/state", rec.info.path), state)
            .await
    };
    if let Err(e) = setup.await {
        return End::Lost(e);
    }
    drop(tx);
    info!(path = %rec.info.path, "registered in xenstore");
    if let Some(r) = ready.take() {
        let _ = r.send(Ok(()));
    }
    let mut follow_ups: Vec<tokio::time::Instant> = Vec::new();
    loop {
        let now = tokio::time::Instant::now();
        let next = follow_ups
            .iter()
            .copied()
            .min()
            .unwrap_or(now + RESCAN_EVERY);
        let scan = tokio::select! {
            ev = rx.recv() => match ev {
                Some(Event::Lost) | None => {
                    return End::Lost(ServiceError::Store {
                        op: "watch",
                        path: "@releaseDomain".into(),
                        source: io::Error::new(io::ErrorKind::BrokenPipe, "connection closed"),
                    })
                }
                Some(ev) => {
                    debug!(?ev, "xenstore watch");
                    if ev == Event::Released {
                        follow_ups.extend(RELEASE_FOLLOW_UPS.iter().map(|d| now + *d));
                    }
                    // Several events waiting need one scan.
                    while let Ok(more) = rx.try_recv() {
                        if more == Event::Lost {
                            return End::Lost(ServiceError::Store {
                                op: "watch",
                                path: "@releaseDomain".into(),
                                source: io::Error::new(io::ErrorKind::BrokenPipe, "connection closed"),
                            });
                        }
                        if more == Event::Released {
                            follow_ups.extend(RELEASE_FOLLOW_UPS.iter().map(|d| now + *d));
                        }
                    }
                    true
                }
            },
            () = tokio::time::sleep_until(next) => {
                let now = tokio::time::Instant::now();
                follow_ups.retain(|t| *t > now);
                true
            }
            cmd = commands.recv() => match cmd {
                Some(Command::State(s)) => {
                    *state = s;
                    let path = format!("{}/daemon/state", rec.info.path);
                    if let Err(e) = xs.write(&path, s).await {
                        return End::Lost(e);
                    }
                    false
                }
                Some(Command::Stop) | None => {
                    if let Err(e) = rec.unpublish(&xs).await {
                        warn!("cannot remove the xenstore record: {e}");
                    } else {
                        info!(path = %rec.info.path, "unregistered from xenstore");
                    }
                    return End::Stopped;
                }
            },
        };
        if scan {
            if let Err(e) = rec.rescan(&xs).await {
                return End::Lost(e);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_between_scans() {
        assert_eq!(change(None, None), None);
        assert_eq!(change(None, Some(3)), Some(Change::Up(3)));
        assert_eq!(change(Some(3), Some(3)), None);
        assert_eq!(change(Some(3), None), Some(Change::Gone(3)));
        assert_eq!(
            change(Some(3), Some(4)),
            Some(Change::Replaced { old: 3, new: 4 })
        );
    }

    #[test]
    fn paths_are_checked() {
        assert!(check_path(DEFAULT_PATH).is_ok());
        assert!(check_path("/vfpga").is_ok());
        assert!(check_path("/local/domain/0/vfpga-2").is_ok());
        for bad in ["", "/", "vfpga", "/a/", "/a//b", "/a b", "/a\u{e9}", "/a.b"] {
            let e = check_path(bad).expect_err(bad).to_string();
            assert!(e.contains("absolute path"), "{bad}: {e}");
        }
        for reserved in [
            "/local",
            "/local/domain",
            "/local/domain/0",
            "/local/domain/17",
            "/vm",
            "/libxl",
            "/tool",
        ] {
            let e = check_path(reserved).expect_err(reserved).to_string();
            assert!(e.contains("belongs to Xen"), "{reserved}: {e}");
        }
        assert!(check_component("vm-1_a").is_ok());
        for bad in ["", "a/b", "a b", "web.lab", "a@b"] {
            assert!(check_component(bad).is_err(), "{bad}");
        }
    }
}
