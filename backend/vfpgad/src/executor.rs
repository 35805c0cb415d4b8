//! Engine threads: long runs leave the queue's thread so they hold up nobody else, and
//! complete out of order when they finish. Which run goes next is the fair scheduler's
//! choice ([`crate::sched`]).
//!
//! A [`Job`] owns everything a deferred run needs — the guest memory guard, the mapped
//! streams, the decoded request — and returns itself to its queue's pool afterwards, so
//! deferring a run allocates nothing.

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use tracing::{debug, error};
use vfpga_engine::SegStream;

use crate::chain::{write_response, Request, Scratch};
use crate::device::Device;
use crate::lock::lock;
use crate::sched::{LaneId, Scheduler, Turns};
use crate::sessions::Session;
use crate::tenant::{Admission, Tenant};
use crate::used::Completion;
use crate::MemGuard;

/// A run handed to the engine threads.
pub struct Job {
    dev: Option<Arc<Device>>,
    done: Option<Completion>,
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
    /// Where the chain is completed (the request's virtqueue, for the glue).
    pub done: Completion,
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
            done: None,
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
        self.done = Some(parts.done);
        self.mem = Some(parts.mem);
        self.session = Some(parts.session);
        self.queue = parts.queue;
        self.req = Some(parts.req);
        self.admission = Some(parts.admission);
    }

    /// Empties a loaded job that will not run; returns its admission.
    pub fn unload(&mut self) -> Option<Admission> {
        self.dev = None;
        self.done = None;
        self.mem = None;
        self.session = None;
        self.req = None;
        self.admission.take()
    }

    /// Runs the job and completes its chain (on an engine thread).
    pub(crate) fn run(mut self: Box<Self>) {
        let (Some(dev), Some(done), Some(mem), Some(session), Some(req)) = (
            self.dev.take(),
            self.done.take(),
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
            dev.count(
                Some(req.op),
                resp.status().unwrap_or(vfpga_proto::Status::EngineError),
            );
            Some(used)
        } else {
            dev.tenant.report(format_args!(
                "queue {}: stopped during the run of chain {}; result dropped",
                self.queue, req.head
            ));
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
            done.complete(req.head, used);
        }
        queue.finish_job();
    }
}

/// Where a device hands its long runs: its guest's lane of the shared scheduler.
#[derive(Clone, Debug)]
pub struct JobQueue {
    sched: Arc<Scheduler<Box<Job>>>,
    lane: LaneId,
}

impl JobQueue {
    /// Queues a job; gives it back if the guest's lane is full or the engine threads are
    /// shutting down.
    pub fn try_send(&self, job: Box<Job>) -> Result<(), Box<Job>> {
        let bitstream = job.session.as_ref().and_then(|s| s.bitstream);
        self.sched.submit(self.lane, bitstream, job)
    }
}

/// A fixed pool of engine threads shared by all devices, fed by the fair scheduler
/// (which stream connections use for their turns too).
#[derive(Debug)]
pub struct Executor {
    sched: Arc<Scheduler<Box<Job>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Executor {
    /// Starts `threads` engine threads; a time-shared bitstream keeps the fabric at
    /// least `min_slice` while its runs and others' wait.
    pub fn new(threads: usize, min_slice: Duration) -> std::io::Result<Arc<Self>> {
        let sched: Arc<Scheduler<Box<Job>>> = Arc::new(Scheduler::new(threads, min_slice));
        let mut handles = Vec::with_capacity(sched.tokens());
        for i in 0..sched.tokens() {
            let sched = sched.clone();
            handles.push(crate::threads::spawn_running(
                format!("vfpga-engine-{i}"),
                move || {
                    while let Some((job, token)) = sched.next_job() {
                        job.run();
                        drop(token);
                    }
                    debug!("engine thread exits");
                },
            )?);
        }
        Ok(Arc::new(Self {
            sched,
            threads: Mutex::new(handles),
        }))
    }

    /// The scheduler (for stream connections' turns).
    pub fn scheduler(&self) -> &Arc<Scheduler<Box<Job>>> {
        &self.sched
    }

    /// Where `tenant`'s devices queue their long runs.
    pub fn sender(&self, tenant: &Arc<Tenant>) -> JobQueue {
        JobQueue {
            sched: self.sched.clone(),
            lane: self.sched.lane(tenant),
        }
    }

    /// Stops taking jobs, lets queued ones finish and joins the threads.
    pub fn shutdown(&self) {
        self.sched.close();
        let handles = std::mem::take(&mut *lock(&self.threads));
        for h in handles {
            if h.join().is_err() {
                error!("an engine thread panicked");
            }
        }
    }
}
