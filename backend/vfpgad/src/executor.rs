//! Engine threads: long runs leave the queue's thread so they hold up nobody else, and
//! complete out of order when they finish.
//!
//! A [`Job`] owns everything a deferred run needs — the guest memory guard, the mapped
//! streams, the decoded request — and returns itself to its queue's pool afterwards, so
//! deferring a run allocates nothing.

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};
use tracing::{debug, error, warn};
use vfpga_engine::SegStream;
use vhost_user_backend::VringRwLock;

use crate::chain::{write_response, Request, Scratch};
use crate::device::{lock, Device};
use crate::sessions::Session;
use crate::vhu_vfpga::complete_one;
use crate::MemGuard;

/// A run handed to the engine threads.
pub struct Job {
    dev: Option<Arc<Device>>,
    vring: Option<VringRwLock>,
    mem: Option<MemGuard>,
    session: Option<Arc<Session>>,
    req: Option<Request>,
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
    }

    /// Empties a loaded job that will not run.
    pub fn unload(&mut self) {
        self.dev = None;
        self.vring = None;
        self.mem = None;
        self.session = None;
        self.req = None;
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
        let queue = &dev.queues[self.queue];
        if queue.epoch() == self.epoch {
            let used = write_response(&self.wr, req.resp_off, &resp).unwrap_or(0);
            dev.counters
                .request(resp.status().unwrap_or(vfpga_proto::Status::EngineError));
            // The used ring entry goes out only after the response is written, and the
            // memory guard is dropped only after both.
            complete_one(&vring, req.head, used, true);
        } else {
            warn!(guest = %dev.name, queue = self.queue, head = req.head, "queue stopped during the run; result dropped");
        }
        drop(mem);
        self.rd.clear();
        self.wr.clear();
        lock(&queue.jobs).push(self);
        queue.finish_job();
    }
}

/// A fixed pool of engine threads shared by all devices. Devices hold a sender each;
/// the threads exit once the pool and every device have dropped theirs.
#[derive(Debug)]
pub struct Executor {
    tx: Mutex<Option<Sender<Box<Job>>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Executor {
    /// Starts `threads` engine threads.
    pub fn new(threads: usize) -> std::io::Result<Arc<Self>> {
        let (tx, rx) = crossbeam_channel::bounded::<Box<Job>>(4096);
        let mut handles = Vec::with_capacity(threads);
        for i in 0..threads.max(1) {
            let rx: Receiver<Box<Job>> = rx.clone();
            handles.push(
                std::thread::Builder::new()
                    .name(format!("vfpga-engine-{i}"))
                    .spawn(move || {
                        while let Ok(job) = rx.recv() {
                            job.run();
                        }
                        debug!("engine thread exits");
                    })?,
            );
        }
        Ok(Arc::new(Self {
            tx: Mutex::new(Some(tx)),
            threads: Mutex::new(handles),
        }))
    }

    /// A sender for a new device; `None` once the pool is shutting down.
    pub fn sender(&self) -> Option<Sender<Box<Job>>> {
        lock(&self.tx).clone()
    }

    /// Stops taking devices, lets queued jobs finish and joins the threads (once every
    /// device is gone).
    pub fn shutdown(&self) {
        drop(lock(&self.tx).take());
        let handles = std::mem::take(&mut *lock(&self.threads));
        for h in handles {
            if h.join().is_err() {
                error!("an engine thread panicked");
            }
        }
    }
}
