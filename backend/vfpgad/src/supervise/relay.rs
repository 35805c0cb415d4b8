//! One guest's vhost-user connection, held across daemon restarts: messages from the
//! frontend are noted in the journal and passed to the daemon serving the guest (the
//! worker), its answers passed back. When the worker goes, the frontend's connection
//! stays; the next worker is given the journal, then a kick on every ring, and takes
//! over the rings from the state file. The data path (rings, memory, interrupts)
//! never passes through here.

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{info, warn};
use vhost::vhost_user::message::FrontendReq;

use super::journal::{always_answered, relayable_protocol_features, Journal};
use super::wire::{self, Msg, WireError, NEED_REPLY};
use super::Stop;
use crate::sockets::wait_readable;

/// A daemon that drops the connection sooner than this after the replay is waited
/// for before the next attach.
const QUICK_DROP: Duration = Duration::from_millis(100);

/// Header flags of a reply: version 1, `REPLY`.
const REPLY_FLAGS: u32 = 0x1 | 0x4;

/// One guest's side of the supervisor.
#[derive(Debug)]
pub struct Relay {
    /// Guest name.
    pub name: String,
    /// The socket the frontend connects to.
    pub listener: UnixListener,
    /// The worker's socket for this guest.
    pub worker: PathBuf,
    /// The guest's state file.
    pub state: PathBuf,
    /// Virtqueues of the guest's device.
    pub rings: u32,
    /// Stop signal.
    pub stop: Arc<Stop>,
}

/// What woke the relay.
enum Ready {
    Frontend,
    Worker,
    Stop,
}

impl Relay {
    /// Serves frontends one after another until stopped.
    pub fn run(self) {
        while !self.stop.requested() {
            match wait_readable(self.listener.as_raw_fd(), self.stop.fd()) {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => {
                    warn!(guest = %self.name, "waiting for a frontend: {e}");
                    self.stop.sleep(Duration::from_millis(200));
                    continue;
                }
            }
            let frontend = match self.listener.accept() {
                Ok((s, _)) => s,
                Err(e) => {
                    warn!(guest = %self.name, "accepting a frontend: {e}");
                    continue;
                }
            };
            // A new frontend is a new device: nothing to resume.
            if let Err(e) = crate::resume::reset(&self.state) {
                warn!(guest = %self.name, "{}: {e}", self.state.display());
            }
            info!(guest = %self.name, "frontend connected");
            match self.serve(&frontend) {
                Ok(()) => info!(guest = %self.name, "frontend disconnected"),
                Err(e) => warn!(guest = %self.name, "frontend connection closed: {e}"),
            }
        }
    }

    /// Relays one frontend's messages until it goes or the supervisor stops.
    fn serve(&self, frontend: &UnixStream) -> Result<(), String> {
        let mut journal = Journal::for_rings(self.rings);
        let mut worker: Option<UnixStream> = None;
        // A daemon that drops the connection as soon as it has it (a set-up it refuses,
        // a frontend's nonsense) is attached again ever more slowly, not in a spin.
        let mut attached = Instant::now();
        let mut pause = Duration::ZERO;
        loop {
            let Some(w) = worker.as_ref() else {
                match self.attach(&journal) {
                    Some(w) => worker = Some(w),
                    None => return Ok(()),
                }
                attached = Instant::now();
                continue;
            };
            match self.wait(frontend, w) {
                Ready::Stop => return Ok(()),
                Ready::Worker => {
                    // A worker says nothing unasked: it went.
                    info!(guest = %self.name, "the daemon went; holding the connection for the next");
                    worker = None;
                    pause = if attached.elapsed() < QUICK_DROP {
                        (pause * 2).clamp(QUICK_DROP / 2, Duration::from_secs(1))
                    } else {
                        Duration::ZERO
                    };
                    self.stop.sleep(pause);
                }
                Ready::Frontend => {
                    let msg = match wire::read(frontend) {
                        Ok(m) => m,
                        Err(WireError::Closed) => return Ok(()),
                        Err(e) => return Err(format!("frontend: {e}")),
                    };
                    journal.record(&msg).map_err(|e| e.to_string())?;
                    let answered = always_answered(msg.req)
                        || (msg.flags & NEED_REPLY != 0 && journal.reply_ack());
                    if !self.pass(&msg, answered, frontend, &mut worker, &mut journal)? {
                        return Ok(());
                    }
                }
            }
        }
    }

    /// Passes `msg` to the worker and its answer, if `answered`, back; a worker that
    /// goes meanwhile is replaced first. `false` if the supervisor stopped.
    fn pass(
        &self,
        msg: &Msg,
        answered: bool,
        frontend: &UnixStream,
        worker: &mut Option<UnixStream>,
        journal: &mut Journal,
    ) -> Result<bool, String> {
        let kept = journal.holds(msg.req) && !always_answered(msg.req);
        let mut attempt = 0;
        loop {
            if worker.is_none() {
                match self.attach(journal) {
                    Some(w) => *worker = Some(w),
                    None => return Ok(false),
                }
                // The replay applied a setting message already: acknowledge it.
                if kept && attempt > 0 {
                    if answered {
                        let ack = Msg {
                            req: msg.req,
                            flags: REPLY_FLAGS,
                            payload: 0u64.to_le_bytes().to_vec(),
                            fds: Vec::new(),
                        };
                        wire::write(frontend, &ack).map_err(|e| format!("frontend: {e}"))?;
                    }
                    return Ok(true);
                }
            }
            attempt += 1;
            if attempt > 3 {
                // Not a restart: this worker drops the connection on this message.
                return Err(format!("the daemon refuses request {} every time", msg.req));
            }
            let Some(w) = worker.as_ref() else { continue };
            if wire::write(w, msg).is_ok() {
                if !answered {
                    return Ok(true);
                }
                if let Ok(mut reply) = wire::read(w) {
                    if reply.req == FrontendReq::GET_FEATURES as u32 {
                        journal.offered(reply.u64_at(0).unwrap_or(0));
                    }
                    if reply.req == FrontendReq::GET_PROTOCOL_FEATURES as u32 {
                        if let Some(v) = reply.u64_at(0) {
                            let masked = v & relayable_protocol_features();
                            reply.payload[..8].copy_from_slice(&masked.to_le_bytes());
                        }
                    }
                    wire::write(frontend, &reply).map_err(|e| format!("frontend: {e}"))?;
                    return Ok(true);
                }
            }
            info!(guest = %self.name, request = msg.req, "the daemon went during a request; passing it to the next");
            *worker = None;
        }
    }

    /// Connects to the (next) worker and gives it the journal; `None` if stopped.
    fn attach(&self, journal: &Journal) -> Option<UnixStream> {
        let mut waited = false;
        loop {
            if self.stop.requested() {
                return None;
            }
            if let Ok(s) = UnixStream::connect(&self.worker) {
                match self.replay(&s, journal) {
                    Ok(n) => {
                        info!(guest = %self.name, replayed = n, "daemon attached");
                        return Some(s);
                    }
                    Err(e) => warn!(guest = %self.name, "replaying the setup: {e}"),
                }
            } else if !waited {
                info!(guest = %self.name, "waiting for the daemon");
                waited = true;
            }
            self.stop.sleep(Duration::from_millis(10));
        }
    }

    /// Sends the journal to a new worker, then kicks every ring so queues with runs
    /// in flight resume at once. Returns the messages sent.
    fn replay(&self, worker: &UnixStream, journal: &Journal) -> std::io::Result<usize> {
        let msgs = journal.replay(|ring| crate::resume::next_avail(&self.state, ring as usize))?;
        for m in &msgs {
            wire::write(worker, m)?;
            if always_answered(m.req) {
                // Asked again for the worker's sake; the frontend has its answer.
                wire::read(worker).map_err(|e| std::io::Error::other(e.to_string()))?;
            }
        }
        for kick in journal.kicks() {
            // A spurious kick is harmless: the queue finds nothing new.
            let mut f = File::from(kick.as_fd().try_clone_to_owned()?);
            f.write_all(&1u64.to_le_bytes())?;
        }
        Ok(msgs.len())
    }

    fn wait(&self, frontend: &UnixStream, worker: &UnixStream) -> Ready {
        let mut fds = [
            libc::pollfd {
                fd: frontend.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: worker.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: self.stop.fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        loop {
            // SAFETY: `fds` is a valid array of three pollfd for the call's duration.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), 3, -1) };
            if n < 0 {
                if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Ready::Stop;
            }
            if fds[2].revents != 0 {
                return Ready::Stop;
            }
            if fds[0].revents != 0 {
                return Ready::Frontend;
            }
            if fds[1].revents != 0 {
                return Ready::Worker;
            }
        }
    }
}
