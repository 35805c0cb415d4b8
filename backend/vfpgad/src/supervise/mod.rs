//! `vfpgad --supervise`: the part that must never restart. It binds the guests'
//! vhost-user sockets, holds each frontend's connection (`relay.rs`, with what the
//! frontend set up in `journal.rs`), binds their stream listeners too and passes
//! them down (a guest library's connection made during a restart waits in the
//! listen queue for the next worker), and runs the daemon proper — this binary with
//! `--worker-of DIR` — as its child, started again at once when it dies and, on
//! SIGHUP, once the configuration read again is valid and held (`held.rs`), stopped
//! gracefully and started from the binary on disk. Everything a new
//! worker needs besides the setup it is replayed is in the guests' state files
//! (`resume.rs`) in the private folder DIR.
//!
//! It runs no kernel and maps no guest memory.

mod held;
pub mod journal;
mod relay;
pub mod wire;

use std::ffi::OsString;
use std::os::fd::AsRawFd;
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use signal_hook::consts::{SIGCHLD, SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use tracing::{error, info, warn};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use crate::config::Config;
use crate::notify::notify;
use held::Held;

/// How long a stopping worker gets before it is killed.
const WORKER_GRACE: Duration = Duration::from_secs(35);
/// A worker that died sooner than this after its start failed to start: after two
/// such deaths in a row the next start waits, longer each time.
const QUICK_EXIT: Duration = Duration::from_millis(250);
/// Longest wait between starts of a worker that keeps failing.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// A stop signal: the supervisor's own (its waits), and one per relay (`held.rs`).
#[derive(Debug)]
pub struct Stop {
    flag: AtomicBool,
    event: EventFd,
}

impl Stop {
    fn requested(&self) -> bool {
        self.flag.load(Ordering::Acquire)
    }

    fn fd(&self) -> i32 {
        self.event.as_raw_fd()
    }

    fn trigger(&self) {
        self.flag.store(true, Ordering::Release);
        let _ = self.event.write(1);
    }

    /// Sleeps `d`, or less if stopped meanwhile.
    fn sleep(&self, d: Duration) {
        let mut fd = libc::pollfd {
            fd: self.fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = i32::try_from(d.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: one valid pollfd for the call's duration.
        unsafe { libc::poll(&mut fd, 1, ms) };
    }
}

/// Why the supervisor could not start.
#[derive(Debug, thiserror::Error)]
pub enum SuperviseError {
    /// The private folder.
    #[error("cannot make the supervisor's folder {0}: {1}")]
    Folder(PathBuf, #[source] std::io::Error),
    /// A guest's socket.
    #[error("guest {0}: cannot listen on {1}: {2}")]
    Listen(String, PathBuf, #[source] std::io::Error),
    /// The metrics endpoint's socket.
    #[error("cannot serve metrics on {0}: {1}")]
    Metrics(crate::metrics::addr::Addr, #[source] std::io::Error),
    /// Signals, events, threads.
    #[error("cannot start: {0}")]
    Start(#[from] std::io::Error),
    /// The configuration.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
}

/// The supervisor's private folder: under systemd's `RuntimeDirectory`, else beside
/// the first guest's socket (vhost-user, then unix stream), else in
/// `XDG_RUNTIME_DIR`, else in /run/vfpga.
fn private_dir(config: &Config) -> PathBuf {
    let env_dir = |name: &str| {
        std::env::var_os(name).and_then(|v| {
            v.to_str()
                .and_then(|s| s.split(':').next().map(PathBuf::from))
        })
    };
    let beside = |p: &Path| p.parent().map(Path::to_path_buf);
    let socket = config
        .guests
        .iter()
        .find_map(|g| g.socket.as_deref().and_then(beside));
    let stream = config.guests.iter().find_map(|g| {
        g.listens().into_iter().find_map(|l| match l {
            crate::stream::Listen::Unix(p) => beside(&p),
            _ => None,
        })
    });
    let base = env_dir("RUNTIME_DIRECTORY")
        .or(socket)
        .or(stream)
        .or_else(|| env_dir("XDG_RUNTIME_DIR"))
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| PathBuf::from("/run/vfpga"));
    base.join(format!(".vfpgad-supervisor-{}", std::process::id()))
}

/// Reads the configuration again (on SIGHUP): the configuration, or why it is not
/// one vfpgad can start with.
pub type Reload<'a> = dyn Fn() -> Result<Config, String> + 'a;

/// Runs the supervisor with `config`; `args` are vfpgad's own arguments, given to
/// each worker with `--supervise` left out; `reload` reads the configuration again.
pub fn run(
    config: &Config,
    args: Vec<OsString>,
    reload: &Reload<'_>,
) -> Result<ExitCode, SuperviseError> {
    let exe = std::env::current_exe()?;
    // A replaced binary leaves /proc/self/exe pointing at the old file: start workers
    // by the path, which names the new one.
    let exe = match exe.to_str().and_then(|s| s.strip_suffix(" (deleted)")) {
        Some(p) => PathBuf::from(p),
        None => exe,
    };
    let dir = private_dir(config);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(|e| SuperviseError::Folder(dir.clone(), e))?;
    let result = supervise(config, args, reload, &exe, &dir);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn supervise(
    config: &Config,
    args: Vec<OsString>,
    reload: &Reload<'_>,
    exe: &Path,
    dir: &Path,
) -> Result<ExitCode, SuperviseError> {
    let mut signals = Signals::new([SIGTERM, SIGINT, SIGHUP, SIGCHLD])?;
    let stop = Arc::new(Stop {
        flag: AtomicBool::new(false),
        event: EventFd::new(EFD_NONBLOCK)?,
    });
    let mut held = Held::new(dir);
    held.sync(config)?;
    let base_args: Vec<OsString> = args
        .into_iter()
        .filter(|a| a != "--supervise")
        .chain([OsString::from("--worker-of"), dir.as_os_str().to_owned()])
        .collect();
    let start = |n: &mut u32, held: &Held| -> Option<(Child, Instant)> {
        let mut cmd = Command::new(exe);
        cmd.args(&base_args)
            .args(held.inherit_args())
            .env_remove("NOTIFY_SOCKET");
        let inherit = held.fds();
        // SAFETY: prctl and fcntl are async-signal-safe and touch no memory of the
        // parent's but the vector read here; prctl asks the kernel to send the child
        // SIGTERM if the supervisor dies (no worker outlives it), fcntl lets the held
        // listeners through exec.
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                for &fd in &inherit {
                    if libc::fcntl(fd, libc::F_SETFD, 0) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        *n += 1;
        match cmd.spawn() {
            Ok(c) => {
                info!(pid = c.id(), start = *n, "daemon started");
                Some((c, Instant::now()))
            }
            Err(e) => {
                error!("cannot start {}: {e}", exe.display());
                None
            }
        }
    };
    let mut starts = 0u32;
    let mut worker = start(&mut starts, &held);
    let mut backoff = Duration::ZERO;
    let mut quick_deaths = 0u32;
    let mut requested = false;
    if let Err(e) = notify("READY=1") {
        warn!("cannot tell systemd we are ready: {e}");
    }
    info!(
        guests = held.sockets(),
        folder = %dir.display(),
        "vfpgad {} supervising",
        env!("CARGO_PKG_VERSION")
    );
    let mut stopping = false;
    while !stopping {
        // A worker that could not be started is tried again after the backoff.
        let wait = if worker.is_none() {
            Some(backoff.max(Duration::from_millis(100)))
        } else {
            None
        };
        let sigs: Vec<i32> = match wait {
            None => signals.forever().next().into_iter().collect(),
            Some(d) => {
                stop.sleep(d);
                signals.pending().collect()
            }
        };
        for sig in sigs {
            match sig {
                SIGTERM | SIGINT => stopping = true,
                SIGHUP => match reload_config(reload, &mut held) {
                    Ok(()) => {
                        if let Some((c, _)) = &worker {
                            info!(pid = c.id(), "restarting the daemon from {}", exe.display());
                            terminate(c);
                            requested = true;
                        }
                    }
                    Err(e) => error!("reload refused, nothing changed: {e}"),
                },
                _ => {}
            }
        }
        if stopping {
            break;
        }
        if let Some((c, since)) = &mut worker {
            match c.try_wait() {
                Ok(Some(status)) => {
                    if std::mem::take(&mut requested) {
                        info!(pid = c.id(), %status, "the daemon stopped; starting it again");
                        quick_deaths = 0;
                    } else {
                        warn!(pid = c.id(), %status, "the daemon exited; starting it again");
                        quick_deaths = if since.elapsed() < QUICK_EXIT {
                            quick_deaths + 1
                        } else {
                            0
                        };
                    }
                    // A crash is restarted at once; a daemon that cannot start is
                    // retried ever more slowly.
                    backoff = match quick_deaths {
                        0 | 1 => Duration::ZERO,
                        n => (Duration::from_millis(100) * 2u32.saturating_pow(n - 2))
                            .min(MAX_BACKOFF),
                    };
                    worker = None;
                    if !backoff.is_zero() {
                        stop.sleep(backoff);
                    }
                }
                Ok(None) => continue,
                Err(e) => {
                    error!("cannot wait for the daemon: {e}");
                    continue;
                }
            }
        }
        if worker.is_none() {
            worker = start(&mut starts, &held);
            if worker.is_none() {
                backoff = (backoff * 2).clamp(Duration::from_millis(100), MAX_BACKOFF);
            }
        }
    }
    info!("stopping");
    let _ = notify("STOPPING=1");
    if let Some((mut c, _)) = worker {
        terminate(&c);
        let deadline = Instant::now() + WORKER_GRACE;
        while matches!(c.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = c.kill();
        let _ = c.wait();
    }
    stop.trigger();
    held.release();
    info!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// Reads the configuration again and holds what it names: `Err` (and nothing
/// changed) if it is not valid or cannot be held.
fn reload_config(reload: &Reload<'_>, held: &mut Held) -> Result<(), String> {
    info!("SIGHUP: reading the configuration again");
    let config = reload()?;
    let changes = held.sync(&config).map_err(|e| e.to_string())?;
    info!(added = ?changes.added, removed = ?changes.removed, "configuration reloaded");
    Ok(())
}

/// Asks a worker to stop gracefully.
fn terminate(c: &Child) {
    if let Ok(pid) = i32::try_from(c.id()) {
        // SAFETY: kill(2) on our own child, which has not been reaped (we hold it).
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }
}
