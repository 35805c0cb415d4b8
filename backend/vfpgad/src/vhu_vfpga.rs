//! vhost-user glue: the `VhostUserBackend` implementation. It takes each virtqueue's
//! chains, decodes them (`chain.rs`), has the device answer the request
//! (`dispatch.rs`, which knows nothing of virtqueues) and completes the chain in the
//! used ring (`used.rs`); a run the device defers carries a [`Completion`] for the
//! engine thread that finishes it.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tracing::{debug, info, warn};
use vhost::vhost_user::message::{VhostUserProtocolFeatures, VhostUserVirtioFeatures};
use vhost_user_backend::{VhostUserBackend, VringRwLock, VringT};
use virtio_bindings::virtio_config::VIRTIO_F_VERSION_1;
use virtio_bindings::virtio_ring::{VIRTIO_RING_F_EVENT_IDX, VIRTIO_RING_F_INDIRECT_DESC};
use virtio_queue::desc::split::Descriptor;
use virtio_queue::QueueT;
use vm_memory::{GuestAddressSpace, GuestMemoryAtomic, GuestMemoryMmap};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::event::{
    new_event_consumer_and_notifier, EventConsumer, EventFlag, EventNotifier,
};

use vfpga_proto::{Response, Status, CONTROL_QUEUE};

use crate::chain::{self, write_response, Decoded, Scratch, Walk};
use crate::device::{Device, QueueCtx};
use crate::lock::lock;
use crate::used::{notify, Completion};
use crate::MemGuard;

/// How long a queue stop (or a reset, for all queues) waits for chains in flight.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);

/// What became of a chain.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Answered: put it in the used ring with this length.
    Done {
        /// Head descriptor index.
        head: u16,
        /// Bytes written.
        used: u32,
    },
    /// Handed to the engine threads, which complete it.
    Deferred,
    /// The queue was stopped or reset while it ran: the ring it came from is gone.
    Abandoned,
}

/// Where a chain comes from.
#[derive(Clone, Copy, Debug)]
pub struct Taken {
    /// Its virtqueue.
    pub queue: usize,
    /// The queue's epoch when it was taken.
    pub epoch: u64,
    /// Its head descriptor.
    pub head: u16,
    /// Run again by a worker resuming after a crash.
    pub again: bool,
}

/// Decodes, dispatches and (unless deferred) answers one chain, whose descriptors
/// `chain` yields.
pub fn handle_chain(
    dev: &Arc<Device>,
    taken: Taken,
    chain: impl Iterator<Item = Descriptor>,
    mem: &MemGuard,
    done: &Completion,
    scratch: &mut Scratch,
) -> Outcome {
    let Taken {
        queue,
        epoch,
        head,
        again,
    } = taken;
    let mut op = None;
    let (head, resp_off, resp) = match chain::decode(head, chain, mem, &dev.limits, scratch) {
        Decoded::Unanswerable { head, reason } => {
            dev.tenant.report(format_args!(
                "queue {queue}: returning chain {head} unanswered: {reason}"
            ));
            dev.count(None, Status::BadRequest);
            return Outcome::Done { head, used: 0 };
        }
        Decoded::Refuse {
            head,
            tag,
            err,
            resp_off,
        } => {
            debug!(guest = %dev.name, queue, head, "refused: {err}");
            (head, resp_off, Response::error(&err, tag))
        }
        Decoded::Request(mut req) => {
            req.again = again;
            op = Some(req.op);
            let tag = req.hdr.tag;
            match dev.dispatch(queue, &req, mem, done, scratch) {
                None => return Outcome::Deferred,
                Some(Ok(resp)) => (req.head, req.resp_off, Response { tag, ..resp }),
                Some(Err(err)) => {
                    debug!(guest = %dev.name, queue, op = ?req.op, "refused: {err}");
                    (req.head, req.resp_off, Response::error(&err, tag))
                }
            }
        }
    };
    if dev.queues.get(queue).map(|q| q.epoch()) != Some(epoch) {
        dev.tenant.report(format_args!(
            "queue {queue}: stopped during the run of chain {head}; result dropped"
        ));
        return Outcome::Abandoned;
    }
    dev.count(op, resp.status().unwrap_or(Status::EngineError));
    let used = write_response(&scratch.wr, resp_off, &resp).unwrap_or(0);
    Outcome::Done { head, used }
}

/// The vhost-user backend of one guest's device.
#[derive(Clone, Debug)]
pub struct VhuVfpga {
    dev: Arc<Device>,
    /// The exit events' consumer ends handed to vhost-user-backend, which registers
    /// them in its epoll instances with `into_raw_fd()` and never closes them (0.24):
    /// closed by [`VhuVfpga::close_exit_events`] once the connection is over, or each
    /// connection would leak one descriptor per queue.
    exit_consumers: Arc<Mutex<Vec<RawFd>>>,
}

impl VhuVfpga {
    /// A backend for `dev`.
    pub fn new(dev: Arc<Device>) -> Self {
        Self {
            dev,
            exit_consumers: Arc::default(),
        }
    }

    /// Closes the exit events' consumer ends; call once the daemon serving this
    /// backend is dropped and its epoll threads were told to exit.
    pub fn close_exit_events(&self) {
        for fd in std::mem::take(&mut *lock(&self.exit_consumers)) {
            // SAFETY: vhost-user-backend gave up ownership of these descriptors
            // (`into_raw_fd`) and its epoll instances, the only users, are gone with the
            // daemon; nothing else knows them.
            drop(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) });
        }
    }

    /// The device.
    pub fn device(&self) -> &Arc<Device> {
        &self.dev
    }

    /// Processes every available chain of virtqueue `q`.
    fn process_queue(&self, q: usize, vring: &VringRwLock) {
        let Some(atomic) = self.dev.memory() else {
            self.dev.tenant.report(format_args!(
                "queue {q}: kick before the memory table; ignored"
            ));
            return;
        };
        let mem = atomic.memory();
        let Some(ctx) = self.dev.queues.get(q) else {
            return;
        };
        let mut scratch = lock(&ctx.scratch);
        let event_idx = self.dev.event_idx.load(Ordering::Relaxed);
        let done = Completion::new(vring, ctx.log.clone());
        let mut completed = false;
        if ctx.take_resume() {
            completed |= self.resume(q, ctx, &mem, &done, &mut scratch);
        }
        loop {
            if event_idx {
                if let Err(e) = vring.disable_notification() {
                    warn!(guest = %self.dev.name, queue = q, "cannot disable notifications: {e}");
                }
            }
            loop {
                // In flight from before it is taken from the ring until it is in the
                // used ring, like a run on the engine threads: a queue stop or reset
                // waits for it, and one that gives up starts a new epoch, which
                // `handle_chain` compares with the one read here.
                ctx.start_job();
                let epoch = ctx.epoch();
                // A statement of its own: the vring lock must be released before the
                // chain is handled (completions take it again).
                let popped = {
                    let mut state = vring.get_mut();
                    let queue = state.get_queue_mut();
                    let pos = queue.next_avail();
                    queue.pop_descriptor_chain(mem.clone()).map(|c| (c, pos))
                };
                let Some((chain, pos)) = popped else {
                    ctx.finish_job();
                    break;
                };
                let head = chain.head_index();
                if let Some(log) = &ctx.log {
                    log.taken(head, pos);
                }
                let taken = Taken {
                    queue: q,
                    epoch,
                    head,
                    again: false,
                };
                match handle_chain(&self.dev, taken, chain, &mem, &done, &mut scratch) {
                    Outcome::Done { head, used } => completed |= done.put(head, used),
                    Outcome::Deferred | Outcome::Abandoned => {}
                }
                ctx.finish_job();
            }
            if self.broken(q, vring, &mem) {
                break;
            }
            if !event_idx {
                break;
            }
            // Adaptive polling: the guest hears of this burst now, and the queue is
            // watched a little longer before the next request needs a kick.
            if q != usize::from(CONTROL_QUEUE) && !self.dev.poll.is_zero() {
                if std::mem::take(&mut completed) {
                    notify(vring);
                }
                if self.more_within(vring, &mem, ctx, self.dev.poll) {
                    continue;
                }
            }
            match vring.enable_notification() {
                Ok(true) => continue,
                Ok(false) => break,
                Err(e) => {
                    warn!(guest = %self.dev.name, queue = q, "cannot enable notifications: {e}");
                    break;
                }
            }
        }
        if completed {
            notify(vring);
        }
    }

    /// Whether the driver makes a chain available within `window` (watching the
    /// available index, the thread spinning; notifications stay off meanwhile). A
    /// stop or reset of the queue ends the watch at once.
    fn more_within(
        &self,
        vring: &VringRwLock,
        mem: &MemGuard,
        ctx: &QueueCtx,
        window: Duration,
    ) -> bool {
        let deadline = Instant::now() + window;
        let epoch = ctx.epoch();
        loop {
            if ctx.epoch() != epoch {
                return false;
            }
            {
                let state = vring.get_ref();
                let queue = state.get_queue();
                if let Ok(avail) = queue.avail_idx(&**mem, Ordering::Acquire) {
                    if avail.0 != queue.next_avail() {
                        return true;
                    }
                }
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::hint::spin_loop();
        }
    }

    /// Whether the driver's available index is more than a ring ahead of the chains
    /// taken: the queue cannot be served (virtio-queue takes nothing from it) until
    /// the frontend resets it. Reported rather than retried, or the queue's thread
    /// would spin on it.
    fn broken(&self, q: usize, vring: &VringRwLock, mem: &MemGuard) -> bool {
        let state = vring.get_ref();
        let queue = state.get_queue();
        let Ok(avail) = queue.avail_idx(&**mem, Ordering::Acquire) else {
            return false;
        };
        let ahead = avail.0.wrapping_sub(queue.next_avail());
        if ahead <= queue.size() {
            return false;
        }
        self.dev.tenant.report(format_args!(
            "queue {q}: the available index is {ahead} entries ahead of a ring of {}; queue stopped until the device is reset",
            queue.size()
        ));
        true
    }

    /// Takes over queue `q` from a worker that died: runs again, from their heads, the
    /// chains its log says were in flight (a run's outputs are a function of its
    /// inputs, still in guest memory), and goes on from the available position it
    /// recorded. Returns whether chains were completed.
    fn resume(
        &self,
        q: usize,
        ctx: &QueueCtx,
        mem: &MemGuard,
        done: &Completion,
        scratch: &mut Scratch,
    ) -> bool {
        let Some(log) = &ctx.log else { return false };
        let (used_idx, table, size) = {
            let state = done.vring().get_ref();
            let queue = state.get_queue();
            let used = queue.used_idx(&**mem, Ordering::Acquire);
            (used, queue.desc_table(), queue.size())
        };
        let used_idx = match used_idx {
            Ok(u) => u.0,
            Err(e) => {
                warn!(guest = %self.dev.name, queue = q, "cannot resume: the used ring is unreadable: {e}");
                return false;
            }
        };
        let again = log.recover(used_idx);
        if let Some(next) = again.next_avail {
            done.vring().get_mut().get_queue_mut().set_next_avail(next);
        }
        info!(
            guest = %self.dev.name,
            queue = q,
            again = again.heads.len(),
            next_avail = ?again.next_avail,
            used = used_idx,
            "resumed after a restart"
        );
        RERUN.fetch_add(again.heads.len() as u64, Ordering::Relaxed);
        let mut completed = false;
        for head in again.heads {
            ctx.start_job();
            let taken = Taken {
                queue: q,
                epoch: ctx.epoch(),
                head,
                again: true,
            };
            let chain = Walk::new(mem, table, size, head);
            match handle_chain(&self.dev, taken, chain, mem, done, scratch) {
                Outcome::Done { head, used } => completed |= done.put(head, used),
                Outcome::Deferred | Outcome::Abandoned => {}
            }
            ctx.finish_job();
        }
        completed
    }
}

/// Chains run again by resumed queues in this process.
static RERUN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Chains this process ran again after taking over from a worker that died.
pub fn rerun_chains() -> u64 {
    RERUN.load(Ordering::Relaxed)
}

impl VhostUserBackend for VhuVfpga {
    type Bitmap = ();
    type Vring = VringRwLock;

    fn num_queues(&self) -> usize {
        self.dev.queues.len()
    }

    fn max_queue_size(&self) -> usize {
        usize::from(self.dev.limits.queue_size)
    }

    fn features(&self) -> u64 {
        1 << VIRTIO_F_VERSION_1
            | 1 << VIRTIO_RING_F_EVENT_IDX
            | 1 << VIRTIO_RING_F_INDIRECT_DESC
            | VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits()
            | self.dev.device_features()
    }

    fn protocol_features(&self) -> VhostUserProtocolFeatures {
        VhostUserProtocolFeatures::MQ
            | VhostUserProtocolFeatures::CONFIG
            | VhostUserProtocolFeatures::REPLY_ACK
            | VhostUserProtocolFeatures::RESET_DEVICE
    }

    fn acked_features(&self, features: u64) {
        debug!(guest = %self.dev.name, "features acked: {features:#x}");
    }

    fn reset_device(&self) {
        debug!(guest = %self.dev.name, "device reset");
        // The frontend need not stop the rings before a reset: runs still on the
        // engine threads must not complete into the rings the driver sets up next.
        // One time limit for all queues, not one per queue.
        let deadline = std::time::Instant::now() + STOP_TIMEOUT;
        for (q, ctx) in self.dev.queues.iter().enumerate() {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if !ctx.stop(left) {
                warn!(guest = %self.dev.name, queue = q, "runs still active {STOP_TIMEOUT:?} after the reset; their results will be dropped");
            }
            ctx.clear_log();
        }
        self.dev.reset();
    }

    fn set_event_idx(&self, enabled: bool) {
        self.dev.event_idx.store(enabled, Ordering::Relaxed);
    }

    fn get_config(&self, offset: u32, size: u32) -> Vec<u8> {
        // The frontend expects exactly `size` bytes; bytes past the structure read as 0.
        let config = self.dev.config().to_bytes();
        let mut out = vec![0u8; size as usize];
        let start = (offset as usize).min(config.len());
        let n = (config.len() - start).min(out.len());
        out[..n].copy_from_slice(&config[start..start + n]);
        out
    }

    fn update_memory(&self, mem: GuestMemoryAtomic<GuestMemoryMmap<()>>) -> io::Result<()> {
        self.dev.set_memory(mem);
        Ok(())
    }

    /// One thread per virtqueue: a long control operation or a busy request queue
    /// never holds up another queue.
    fn queues_per_thread(&self) -> Vec<u64> {
        (0..self.num_queues()).map(|q| 1u64 << q).collect()
    }

    fn exit_event(&self, _thread_index: usize) -> Option<(EventConsumer, EventNotifier)> {
        match new_event_consumer_and_notifier(EventFlag::NONBLOCK) {
            Ok(pair) => {
                lock(&self.exit_consumers).push(pair.0.as_raw_fd());
                Some(pair)
            }
            Err(e) => {
                warn!("cannot create an exit event: {e}");
                None
            }
        }
    }

    fn stop_vring(&self, queue_index: u32) -> io::Result<()> {
        if let Some(ctx) = self.dev.queues.get(queue_index as usize) {
            if !ctx.stop(STOP_TIMEOUT) {
                warn!(guest = %self.dev.name, queue = queue_index, "runs still active after {STOP_TIMEOUT:?}; their results will be dropped");
            }
            ctx.clear_log();
        }
        Ok(())
    }

    fn handle_event(
        &self,
        device_event: u16,
        evset: EventSet,
        vrings: &[VringRwLock],
        thread_id: usize,
    ) -> io::Result<()> {
        if evset != EventSet::IN {
            self.dev
                .tenant
                .report(format_args!("unexpected event set {evset:?}"));
            return Ok(());
        }
        // Each thread owns exactly one queue (see `queues_per_thread`), so the thread
        // index is the virtqueue index and `device_event` the thread-local index 0.
        match vrings.get(usize::from(device_event)) {
            Some(vring) => self.process_queue(thread_id + usize::from(device_event), vring),
            None => self
                .dev
                .tenant
                .report(format_args!("event {device_event} for an unknown queue")),
        }
        Ok(())
    }
}
