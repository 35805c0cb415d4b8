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
//! The daemon removes its keys when it stops (and `P`, when nothing else is there).
//! xenstore is reached through xenstored's socket (`XENSTORED_PATH`, default
//! `/run/xenstored/socket`) or `/dev/xen/xenbus`.
//!
//! Here: the public face (the record's contents, the events, [`Service`]); in
//! `paths.rs` the paths allowed, in `store.rs` xenstore operations with a time limit,
//! in `record.rs` the record and what a scan of the domains changes, in `watch.rs` the
//! service thread's loop.

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tracing::warn;

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

mod paths;
mod record;
mod store;
mod watch;

pub use paths::{check_component, check_path};
pub use record::{change, Change};
use watch::run;

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
