//! What the supervisor holds for the guests, kept in step with the configuration: a
//! relay per vhost-user socket (`relay.rs`) and the listening sockets of the stream
//! listeners and the metrics endpoint, passed down to each worker. A reload binds what
//! the new configuration adds, lets go of what it removes (a removed guest's VMM loses
//! its connection) and keeps the rest as it is, connections included.

use std::ffi::OsString;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::thread::JoinHandle;

use tracing::info;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::relay::Relay;
use super::{Stop, SuperviseError};
use crate::config::Config;
use crate::metrics::addr::Addr;
use crate::sockets::bind;

/// A guest's relay, running.
#[derive(Debug)]
struct HeldRelay {
    /// What makes it the same relay: guest, socket, rings.
    key: (String, PathBuf, u32),
    stop: Arc<Stop>,
    thread: JoinHandle<()>,
}

/// A listening socket passed to workers.
#[derive(Debug)]
struct HeldListener {
    /// The worker's `--inherit` key.
    key: String,
    /// What makes it the same socket (the key, or the metrics address).
    what: String,
    fd: OwnedFd,
    /// A unix socket's path, removed when let go.
    path: Option<PathBuf>,
}

/// What a [`Held::sync`] changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// Sockets bound.
    pub added: Vec<String>,
    /// Sockets let go.
    pub removed: Vec<String>,
}

/// The held sockets.
#[derive(Debug)]
pub struct Held {
    dir: PathBuf,
    relays: Vec<HeldRelay>,
    listeners: Vec<HeldListener>,
}

/// What a configuration asks to hold, before anything is bound.
struct Wanted {
    relays: Vec<(String, PathBuf, u32)>,
    listeners: Vec<(String, String, Bound)>,
}

/// How to bind a listener.
enum Bound {
    Stream(crate::stream::Listen),
    Metrics(Addr),
}

impl Held {
    /// Nothing held yet; workers' sockets and state files go in `dir`.
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_owned(),
            relays: Vec::new(),
            listeners: Vec::new(),
        }
    }

    /// Holds what `config` names: binds what is new, lets go of what is gone, keeps
    /// the rest. If anything cannot be bound, nothing changes.
    pub fn sync(&mut self, config: &Config) -> Result<Changes, SuperviseError> {
        let mode = config.socket_mode()?;
        let gid = config.socket_gid()?;
        let wanted = wanted(config)?;
        let mut changes = Changes::default();
        // Bind everything new first: a failure leaves the old set whole.
        let mut new_relays = Vec::new();
        let mut new_listeners = Vec::new();
        let undo = |relays: &[(String, PathBuf, u32, std::os::unix::net::UnixListener)],
                    listeners: &[HeldListener]| {
            for (_, p, ..) in relays {
                let _ = std::fs::remove_file(p);
            }
            for l in listeners {
                if let Some(p) = &l.path {
                    let _ = std::fs::remove_file(p);
                }
            }
        };
        // A guest renamed or given other rings on the same socket: its old relay goes
        // first, or the socket would look served by another process. (If a bind
        // below fails, that guest stays without a relay until the next reload.)
        let (keep, changed): (Vec<_>, Vec<_>) = std::mem::take(&mut self.relays)
            .into_iter()
            .partition(|r| !wanted.relays.iter().any(|w| w.1 == r.key.1 && *w != r.key));
        self.relays = keep;
        for r in changed {
            changes.removed.push(r.key.1.display().to_string());
            stop_relay(r);
        }
        for (name, path, rings) in &wanted.relays {
            if self
                .relays
                .iter()
                .any(|r| r.key == (name.clone(), path.clone(), *rings))
            {
                continue;
            }
            match bind(path, mode, gid) {
                Ok(l) => new_relays.push((name.clone(), path.clone(), *rings, l)),
                Err(e) => {
                    undo(&new_relays, &new_listeners);
                    return Err(SuperviseError::Listen(name.clone(), path.clone(), e));
                }
            }
        }
        for (key, what, how) in &wanted.listeners {
            if self.listeners.iter().any(|l| l.what == *what) {
                continue;
            }
            let bound = match how {
                Bound::Stream(l) => l
                    .bind(mode, gid)
                    .map(|fd| fd.map(|fd| (fd, unix_path(l))))
                    .map_err(|e| SuperviseError::Listen(key.clone(), what.into(), e)),
                Bound::Metrics(a) => a
                    .bind(mode, gid)
                    .map(|fd| {
                        let path = match a {
                            Addr::Unix(p) => Some(p.clone()),
                            Addr::Tcp(_) => None,
                        };
                        Some((fd, path))
                    })
                    .map_err(|e| SuperviseError::Metrics(a.clone(), e)),
            };
            match bound {
                Ok(Some((fd, path))) => new_listeners.push(HeldListener {
                    key: key.clone(),
                    what: what.clone(),
                    fd,
                    path,
                }),
                Ok(None) => {}
                Err(e) => {
                    undo(&new_relays, &new_listeners);
                    return Err(e);
                }
            }
        }
        // Let go of what is gone.
        let (keep, gone): (Vec<_>, Vec<_>) = std::mem::take(&mut self.relays)
            .into_iter()
            .partition(|r| wanted.relays.contains(&r.key));
        self.relays = keep;
        for r in gone {
            changes.removed.push(r.key.1.display().to_string());
            stop_relay(r);
        }
        let (keep, gone): (Vec<_>, Vec<_>) = std::mem::take(&mut self.listeners)
            .into_iter()
            .partition(|l| wanted.listeners.iter().any(|(_, w, _)| *w == l.what));
        self.listeners = keep;
        for l in gone {
            changes.removed.push(l.what.clone());
            if let Some(p) = &l.path {
                let _ = std::fs::remove_file(p);
            }
        }
        // Start what is new.
        for (name, path, rings, listener) in new_relays {
            changes.added.push(path.display().to_string());
            let stop = Arc::new(Stop {
                flag: AtomicBool::new(false),
                event: EventFd::new(EFD_NONBLOCK)?,
            });
            let relay = Relay {
                name: name.clone(),
                listener,
                worker: self.dir.join(format!("{name}.sock")),
                state: self.dir.join(format!("{name}.state")),
                rings,
                stop: stop.clone(),
            };
            info!(guest = %name, socket = %path.display(), "holding the guest's socket");
            let thread =
                crate::threads::spawn_running(format!("vfpga-hold-{name}"), move || relay.run())?;
            self.relays.push(HeldRelay {
                key: (name, path, rings),
                stop,
                thread,
            });
        }
        for l in new_listeners {
            changes.added.push(l.what.clone());
            self.listeners.push(l);
        }
        Ok(changes)
    }

    /// The vhost-user sockets held.
    pub fn sockets(&self) -> usize {
        self.relays.len()
    }

    /// A worker's `--inherit KEY=FD` arguments.
    pub fn inherit_args(&self) -> Vec<OsString> {
        self.listeners
            .iter()
            .flat_map(|l| {
                [
                    OsString::from("--inherit"),
                    format!("{}={}", l.key, l.fd.as_raw_fd()).into(),
                ]
            })
            .collect()
    }

    /// The descriptors a worker inherits.
    pub fn fds(&self) -> Vec<RawFd> {
        self.listeners.iter().map(|l| l.fd.as_raw_fd()).collect()
    }

    /// Stops every relay (closing the frontends' connections) and lets go of every
    /// socket.
    pub fn release(self) {
        for r in self.relays {
            stop_relay(r);
        }
        for l in self.listeners {
            if let Some(p) = &l.path {
                let _ = std::fs::remove_file(p);
            }
        }
    }
}

fn stop_relay(r: HeldRelay) {
    r.stop.trigger();
    let _ = r.thread.join();
    let _ = std::fs::remove_file(&r.key.1);
    info!(guest = %r.key.0, "let go of the guest's socket");
}

fn unix_path(l: &crate::stream::Listen) -> Option<PathBuf> {
    match l {
        crate::stream::Listen::Unix(p) => Some(p.clone()),
        _ => None,
    }
}

/// What `config` asks to hold.
fn wanted(config: &Config) -> Result<Wanted, SuperviseError> {
    let relays = config
        .guests
        .iter()
        .filter_map(|g| {
            let path = g.socket.clone()?;
            Some((
                g.name.clone(),
                path,
                u32::from(g.limits(&config.device).request_queues) + 1,
            ))
        })
        .collect();
    let mut listeners: Vec<(String, String, Bound)> = Vec::new();
    for g in &config.guests {
        for l in g.listens() {
            let Some(key) = l.socket_key() else { continue };
            if !listeners.iter().any(|(k, ..)| *k == key) {
                listeners.push((key.clone(), key, Bound::Stream(l)));
            }
        }
    }
    if let Some(addr) = config.metrics.addr()? {
        listeners.push((
            crate::metrics::http::INHERIT_KEY.into(),
            format!("metrics {addr}"),
            Bound::Metrics(addr),
        ));
    }
    Ok(Wanted { relays, listeners })
}
