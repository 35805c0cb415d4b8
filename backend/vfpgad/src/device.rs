//! The state of one vfpga device (one guest): limits, sessions, counters, per-queue
//! scratch space and the engine it forwards to.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};

use crate::lock::lock;
use std::time::{Duration, Instant};

use vfpga_engine::Engine;
use vfpga_proto::{
    wire::name_field, DeviceConfig, DeviceInfo, ABI_VERSION, CAP_LIMITS, CAP_OUT_OF_ORDER,
    CONFIG_MAGIC, MAX_ARGS, VIRTIO_VFPGA_F_LOAD_BITSTREAM,
};
use vfpga_proto::{Opcode, Status};
#[cfg(feature = "vhost")]
use vm_memory::GuestMemoryAtomic;

use crate::chain::Scratch;
use crate::config::DeviceLimits;
#[cfg(feature = "vhost")]
use crate::executor::{Executor, Job, JobQueue};
use crate::resume::{Geometry, QueueLog, StateFile};
use crate::sessions::Sessions;
use crate::shelf::Shelf;
use crate::stats::Counters;
use crate::tenant::{Policy, Tenant};
#[cfg(feature = "vhost")]
use crate::GuestMem;

/// Per-virtqueue state.
#[derive(Debug)]
pub struct QueueCtx {
    /// Decode space for the queue's thread.
    pub scratch: Mutex<Scratch>,
    /// Idle jobs for runs handed to the engine threads.
    #[cfg(feature = "vhost")]
    pub jobs: Mutex<Vec<Box<Job>>>,
    /// Chains taken from the ring and not yet back in the used ring: the one the
    /// queue's thread is handling and the runs on the engine threads.
    inflight: AtomicUsize,
    /// Threads in `wait_idle`; finishers notify `idle` (under `idle_lock`) only when
    /// there are some: the common case, nobody stopping the queue, costs no lock and
    /// no system call.
    waiters: AtomicUsize,
    idle_lock: Mutex<()>,
    idle: Condvar,
    /// Bumped when the frontend stops the queue: runs that started before must not
    /// touch the queue or guest memory afterwards (the driver may have freed it).
    epoch: AtomicU64,
    /// Its in-flight log, under a supervisor.
    pub log: Option<QueueLog>,
    /// The log holds chains a previous worker left: run them before taking more.
    resume: AtomicBool,
}

/// Jobs each queue can have on the engine threads at once; further long runs execute
/// on the queue's own thread.
#[cfg(feature = "vhost")]
const JOBS_PER_QUEUE: usize = 32;

impl QueueCtx {
    fn new(limits: &DeviceLimits) -> Self {
        Self {
            scratch: Mutex::new(Scratch::new(limits.max_segments)),
            #[cfg(feature = "vhost")]
            jobs: Mutex::new(
                (0..JOBS_PER_QUEUE)
                    .map(|_| Box::new(Job::new(limits.max_segments)))
                    .collect(),
            ),
            inflight: AtomicUsize::new(0),
            waiters: AtomicUsize::new(0),
            idle_lock: Mutex::new(()),
            idle: Condvar::new(),
            epoch: AtomicU64::new(0),
            log: None,
            resume: AtomicBool::new(false),
        }
    }

    /// Whether the queue has chains of a previous worker to resume; `true` once.
    pub fn take_resume(&self) -> bool {
        self.resume.swap(false, Ordering::AcqRel)
    }

    /// The frontend stopped or reset the queue: its log holds nothing in flight any
    /// more, and a resume not yet made is void (the ring it was for is gone).
    pub fn clear_log(&self) {
        self.resume.store(false, Ordering::Release);
        if let Some(log) = &self.log {
            log.clear();
        }
    }

    /// Marks a chain as in flight.
    pub fn start_job(&self) {
        self.inflight.fetch_add(1, Ordering::SeqCst);
    }

    /// Marks an in-flight chain as back in the used ring (or abandoned).
    pub fn finish_job(&self) {
        // SeqCst pairs with `wait_idle`: either the waiter sees the count drop, or
        // this sees the waiter and wakes it under the lock it waits with.
        let before = self
            .inflight
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        if before == Ok(1) && self.waiters.load(Ordering::SeqCst) > 0 {
            let _g = lock(&self.idle_lock);
            self.idle.notify_all();
        }
    }

    /// The queue's current epoch.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Stops the queue: waits up to `timeout` for its chains in flight, then starts a
    /// new epoch so any run still going is abandoned (its completion is not written).
    /// Returns `false` if runs had to be abandoned.
    pub fn stop(&self, timeout: Duration) -> bool {
        let idle = self.wait_idle(timeout);
        self.epoch.fetch_add(1, Ordering::AcqRel);
        idle
    }

    /// Chains taken and not yet answered.
    pub fn inflight(&self) -> usize {
        self.inflight.load(Ordering::Acquire)
    }

    /// Waits until no chain of this queue is in flight; `false` on timeout.
    pub fn wait_idle(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut g = lock(&self.idle_lock);
        self.waiters.fetch_add(1, Ordering::SeqCst);
        let idle = loop {
            if self.inflight.load(Ordering::SeqCst) == 0 {
                break true;
            }
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                break false;
            };
            g = match self.idle.wait_timeout(g, left) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        };
        self.waiters.fetch_sub(1, Ordering::SeqCst);
        idle
    }
}

/// One guest's device.
#[derive(Debug)]
pub struct Device {
    /// Guest name.
    pub name: String,
    /// The guest as a tenant: its policy and quotas, shared by all its devices.
    pub tenant: Arc<Tenant>,
    /// The time-shared bitstreams whose kernels it offers as `BITSTREAM/KERNEL`.
    pub shelf: Arc<Shelf>,
    /// Limits announced in the config space.
    pub limits: DeviceLimits,
    /// The engine (shared by all guests).
    pub engine: Arc<dyn Engine>,
    /// Queue of the engine threads (shared by all guests); `None` when shutting down.
    #[cfg(feature = "vhost")]
    pub jobs_tx: Option<JobQueue>,
    /// Runs estimated costlier than this go to the engine threads.
    pub inline_cost: u64,
    /// Open sessions.
    pub sessions: Sessions,
    /// Device-wide counters (shared by a guest's stream connections).
    pub counters: Arc<Counters>,
    /// Per-virtqueue state; index 0 is the control queue.
    pub queues: Vec<QueueCtx>,
    /// Whether the driver negotiated EVENT_IDX.
    pub event_idx: AtomicBool,
    /// How long a request queue is watched after it ran dry ([`Device::with_polling`]).
    pub poll: Duration,
    #[cfg(feature = "vhost")]
    mem: RwLock<Option<GuestMemoryAtomic<GuestMem>>>,
}

impl Device {
    /// A device for guest `name` that runs everything on the caller's thread
    /// ([`Device::with_engine_threads`] hands long runs over).
    /// Its tenant has an open policy ([`Device::with_tenant`] sets the guest's).
    pub fn new(name: &str, limits: DeviceLimits, engine: Arc<dyn Engine>) -> Self {
        let n = usize::from(limits.request_queues) + 1;
        Self::with_queues(Tenant::new(name, Policy::open()), limits, engine, n)
    }

    /// The device behind one stream connection of `tenant`: sessions of its own, the
    /// guest's `counters` (every stream of a guest adds to the same statistics), the
    /// engine, and no virtqueue state (a stream has none).
    pub fn for_stream(
        tenant: Arc<Tenant>,
        limits: DeviceLimits,
        engine: Arc<dyn Engine>,
        counters: Arc<Counters>,
    ) -> Self {
        Self {
            counters,
            ..Self::with_queues(tenant, limits, engine, 0)
        }
    }

    /// The same device, offering the kernels of the time-shared bitstreams on `shelf`.
    pub fn with_shelf(mut self, shelf: Arc<Shelf>) -> Self {
        self.shelf = shelf;
        self
    }

    /// The same device, its guest under `tenant`'s policy and quotas.
    pub fn with_tenant(mut self, tenant: Arc<Tenant>) -> Self {
        self.name.clone_from(&tenant.name);
        self.sessions = Sessions::new(self.limits.max_sessions as usize, tenant.metrics.clone());
        self.tenant = tenant;
        self
    }

    /// Counts a request answered with `status`, on the device (`GET_STATS`) and for
    /// the operator; `op` is `None` for a request refused before it was decoded.
    pub fn count(&self, op: Option<Opcode>, status: Status) {
        self.counters.request(status);
        self.tenant.metrics.request(op, status);
    }

    fn with_queues(
        tenant: Arc<Tenant>,
        limits: DeviceLimits,
        engine: Arc<dyn Engine>,
        n: usize,
    ) -> Self {
        let max_sessions = limits.max_sessions as usize;
        let queues = (0..n).map(|_| QueueCtx::new(&limits)).collect();
        Self {
            name: tenant.name.clone(),
            sessions: Sessions::new(max_sessions, tenant.metrics.clone()),
            tenant,
            shelf: Arc::default(),
            limits,
            engine,
            #[cfg(feature = "vhost")]
            jobs_tx: None,
            inline_cost: u64::MAX,
            counters: Arc::default(),
            queues,
            event_idx: AtomicBool::new(false),
            poll: Duration::ZERO,
            #[cfg(feature = "vhost")]
            mem: RwLock::new(None),
        }
    }

    /// The same device, its chains in flight and sessions kept in `file` (under a
    /// supervisor); `resumed`: the file holds a previous worker's, to take over.
    pub fn with_state(mut self, file: &Arc<StateFile>, resumed: bool) -> Self {
        for (q, ctx) in self.queues.iter_mut().enumerate() {
            ctx.log = file.queue(q);
            ctx.resume = AtomicBool::new(resumed);
        }
        let max = self.limits.max_sessions as usize;
        self.sessions =
            Sessions::persisted(max, self.tenant.metrics.clone(), file.clone(), |name| {
                self.resolve(name).ok()
            });
        self
    }

    /// The geometry of this device's state file.
    pub fn state_geometry(&self) -> Geometry {
        Geometry {
            queues: self.queues.len(),
            queue_size: self.limits.queue_size,
            sessions: self.limits.max_sessions as usize,
        }
    }

    /// Watches each request queue for `poll` after it ran dry before waiting for a
    /// kick (only with EVENT_IDX, which lets the driver skip the kick meanwhile).
    pub fn with_polling(mut self, poll: Duration) -> Self {
        self.poll = poll;
        self
    }

    /// Hands runs estimated costlier than `inline_cost` to `exec`'s threads.
    #[cfg(feature = "vhost")]
    pub fn with_engine_threads(mut self, exec: &Executor, inline_cost: u64) -> Self {
        self.jobs_tx = Some(exec.sender(&self.tenant));
        self.inline_cost = inline_cost;
        self
    }

    /// Device feature bits (the device-specific range).
    pub fn device_features(&self) -> u64 {
        if self.engine.info().can_load {
            1 << VIRTIO_VFPGA_F_LOAD_BITSTREAM
        } else {
            0
        }
    }

    /// Capability bits.
    pub fn capabilities(&self) -> u64 {
        CAP_OUT_OF_ORDER | CAP_LIMITS | self.engine.info().capability
    }

    /// The config space.
    pub fn config(&self) -> DeviceConfig {
        DeviceConfig {
            magic: CONFIG_MAGIC,
            abi_version: ABI_VERSION,
            num_request_queues: self.limits.request_queues,
            max_segments: self.limits.max_segments,
            max_args: u32::try_from(MAX_ARGS).unwrap_or(u32::MAX),
            max_request_bytes: self.limits.max_request_bytes,
            capabilities: self.capabilities(),
            max_sessions: self.limits.max_sessions,
            reserved: 0,
        }
    }

    /// The `GET_INFO` answer.
    pub fn info(&self) -> DeviceInfo {
        let catalog = self.engine.catalog();
        let text = |s: &str| name_field::<32>(s).unwrap_or_default();
        let kernels = catalog
            .kernels
            .iter()
            .filter(|k| self.tenant.may_run(&k.sig.name))
            .count()
            + self
                .shelf
                .kernels()
                .filter(|(q, k)| self.may_run_shared(q, k))
                .count();
        DeviceInfo {
            abi_version: ABI_VERSION,
            num_request_queues: self.limits.request_queues,
            num_kernels: u32::try_from(kernels).unwrap_or(u32::MAX),
            capabilities: self.capabilities(),
            features: self.device_features(),
            max_sessions: self.limits.max_sessions,
            open_sessions: self.sessions.count(),
            engine: text(self.engine.info().name),
            daemon_version: text(env!("CARGO_PKG_VERSION")),
            device_name: text(&self.name),
            bitstream: text(&catalog.name),
        }
    }

    /// Records the guest memory map.
    #[cfg(feature = "vhost")]
    pub fn set_memory(&self, mem: GuestMemoryAtomic<GuestMem>) {
        match self.mem.write() {
            Ok(mut m) => *m = Some(mem),
            Err(p) => *p.into_inner() = Some(mem),
        }
    }

    /// The guest memory map, once the frontend has sent it.
    #[cfg(feature = "vhost")]
    pub fn memory(&self) -> Option<GuestMemoryAtomic<GuestMem>> {
        match self.mem.read() {
            Ok(m) => m.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Whether the guest may run shared kernel `k`, named `qualified`: its policy names
    /// the qualified name or the kernel's own.
    pub fn may_run_shared(&self, qualified: &str, k: &vfpga_engine::Kernel) -> bool {
        self.tenant.may_run(qualified) || self.tenant.may_run(&k.sig.name)
    }

    /// Forgets sessions (device reset or disconnect).
    pub fn reset(&self) {
        let _ = self.sessions.clear();
        self.event_idx.store(false, Ordering::Relaxed);
    }
}
