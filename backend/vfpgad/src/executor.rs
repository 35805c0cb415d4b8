//! Engine threads: long runs leave the queue's thread so they hold up nobody else, and
//! complete out of order when they finish.
//!
//! A [`Job`] owns everything a deferred run needs — the guest memory guard, the mapped
//! streams, the decoded request — and returns itself to its queue's pool afterwards, so
//! deferring a run allocates nothing.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use tracing::{debug, error, warn};
use vfpga_engine::SegStream;
use vhost_user_backend::VringRwLock;

use crate::chain::{write_response, Request, Scratch};
use crate::device::{lock, Device};
use crate::sessions::Session;
use crate::tenant::Admission;
use crate::vhu_vfpga::complete_one;
use crate::MemGuard;

/// A run handed to the engine threads.
pub struct Job {
    dev: Option<Arc<Device>>,
    vring: Option<VringRwLock>,
    mem: Option<MemGuard>,
    session: Option<Arc<Session>>,
    req: Option<Request>,
    /// The run's place in its guest's quota, given back when the run is over.
    admission: Option<Admission>,
    queue: usize,
    epoch: u64,
    /// Readable stream of the request (swapped in from the queue's scratch space).
    pub rd: SegStream,
    /// Writable stream of the request.
    pub wr: SegStream,
}

/// The state a job needs besides its streams.
pub struct JobParts {
    /// The device.
    pub dev: Arc<Device>,
    /// The request's virtqueue.
    pub vring: VringRwLock,
    /// Keeps the guest memory the streams point into mapped.
    pub mem: MemGuard,
    /// The session being run.
    pub session: Arc<Session>,
    /// The decoded request.
    pub req: Request,
    /// Virtqueue index.
    pub queue: usize,
    /// Its guest's admission of the run.
    pub admission: Admission,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("queue", &self.queue)
            .field("head", &self.req.map(|r| r.head))
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for JobParts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobParts")
            .field("queue", &self.queue)
            .field("head", &self.req.head)
            .finish_non_exhaustive()
    }
}

impl Job {
    /// An idle job for chains of at most `max_segments` descriptors.
    pub fn new(max_segments: u32) -> Self {
        Self {
            dev: None,
            vring: None,
            mem: None,
            session: None,
            req: None,
            admission: None,
            queue: 0,
            epoch: 0,
            rd: Scratch::stream(max_segments),
            wr: Scratch::stream(max_segments),
        }
    }

    /// Loads the job with a request whose streams are already in `rd`/`wr`.
    pub fn load(&mut self, parts: JobParts) {
        self.epoch = parts.dev.queues[parts.queue].epoch();
        self.dev = Some(parts.dev);
        self.vring = Some(parts.vring);
        self.mem = Some(parts.mem);
        self.session = Some(parts.session);
        self.queue = parts.queue;
        self.req = Some(parts.req);
        self.admission = Some(parts.admission);
    }

    /// Empties a loaded job that will not run; returns its admission.
    pub fn unload(&mut self) -> Option<Admission> {
        self.dev = None;
        self.vring = None;
        self.mem = None;
        self.session = None;
        self.req = None;
        self.admission.take()
    }

    /// Runs the job and completes its chain (on an engine thread).
    pub(crate) fn run(mut self: Box<Self>) {
        let (Some(dev), Some(vring), Some(mem), Some(session), Some(req)) = (
            self.dev.take(),
            self.vring.take(),
            self.mem.take(),
            self.session.take(),
            self.req.take(),
        ) else {
            error!("engine thread got an unloaded job");
            return;
        };
        let resp = dev.run_now(&session, &req, &self.rd, &self.wr);
        drop(self.admission.take());
        let queue = &dev.queues[self.queue];
        let current = queue.epoch() == self.epoch;
        let used = if current {
            let used = write_response(&self.wr, req.resp_off, &resp).unwrap_or(0);
            dev.counters
                .request(resp.status().unwrap_or(vfpga_proto::Status::EngineError));
            Some(used)
        } else {
            warn!(guest = %dev.name, queue = self.queue, head = req.head, "queue stopped during the run; result dropped");
            None
        };
        // Done with guest memory: release it and put the job back before the driver
        // learns of the completion, so its next request finds this (warm) job.
        drop(mem);
        drop(session);
        self.rd.clear();
        self.wr.clear();
        lock(&queue.jobs).push(self);
        if let Some(used) = used {
            complete_one(&vring, req.head, used, true);
        }
        queue.finish_job();
    }
}

/// The shared job queue: a preallocated ring under a mutex, with a condition variable
/// for the engine threads. (Unlike a channel it never allocates once created, not even
/// in threads that merely wait.)
#[derive(Debug)]
struct Inner {
    queue: Mutex<(VecDeque<Box<Job>>, bool)>,
    ready: Condvar,
    capacity: usize,
}

/// The submitting side of the engine threads' queue, held by each device.
#[derive(Clone, Debug)]
pub struct JobQueue(Arc<Inner>);

impl JobQueue {
    /// Queues a job; gives it back if the queue is full or shutting down.
    pub fn try_send(&self, job: Box<Job>) -> Result<(), Box<Job>> {
        let mut q = lock(&self.0.queue);
        if q.1 || q.0.len() >= self.0.capacity {
            return Err(job);
        }
        q.0.push_back(job);
        drop(q);
        self.0.ready.notify_one();
        Ok(())
    }
}

/// A fixed pool of engine threads shared by all devices.
#[derive(Debug)]
pub struct Executor {
    inner: Arc<Inner>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Executor {
    /// Starts `threads` engine threads.
    pub fn new(threads: usize) -> std::io::Result<Arc<Self>> {
        const CAPACITY: usize = 4096;
        let inner = Arc::new(Inner {
            queue: Mutex::new((VecDeque::with_capacity(CAPACITY), false)),
            ready: Condvar::new(),
            capacity: CAPACITY,
        });
        let mut handles = Vec::with_capacity(threads);
        for i in 0..threads.max(1) {
            let inner = inner.clone();
            handles.push(
                std::thread::Builder::new()
                    .name(format!("vfpga-engine-{i}"))
                    .spawn(move || {
                        while let Some(job) = next_job(&inner) {
                            job.run();
                        }
                        debug!("engine thread exits");
                    })?,
            );
        }
        Ok(Arc::new(Self {
            inner,
            threads: Mutex::new(handles),
        }))
    }

    /// The queue for a new device; `None` once the pool is shutting down.
    pub fn sender(&self) -> Option<JobQueue> {
        (!lock(&self.inner.queue).1).then(|| JobQueue(self.inner.clone()))
    }

    /// Stops taking jobs, lets queued ones finish and joins the threads.
    pub fn shutdown(&self) {
        lock(&self.inner.queue).1 = true;
        self.inner.ready.notify_all();
        let handles = std::mem::take(&mut *lock(&self.threads));
        for h in handles {
            if h.join().is_err() {
                error!("an engine thread panicked");
            }
        }
    }
}

/// The next job, or `None` when the pool is closed and drained.
fn next_job(inner: &Inner) -> Option<Box<Job>> {
    let mut q = lock(&inner.queue);
    loop {
        if let Some(job) = q.0.pop_front() {
            return Some(job);
        }
        if q.1 {
            return None;
        }
        q = match inner.ready.wait(q) {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
    }
}
