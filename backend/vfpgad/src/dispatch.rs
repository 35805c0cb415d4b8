//! Dispatch: what each operation does once a chain has been decoded, and the
//! response it gets. Long runs are handed to the engine threads; everything else is
//! answered on the queue's own thread.

use std::sync::Arc;
use std::time::Instant;

use crate::chain::{bind, Request, Scratch};
use crate::device::Device;
#[cfg(feature = "vhost")]
use crate::executor::JobParts;
use crate::lock::lock;
use crate::sessions::Session;
use crate::tenant::Admission;
#[cfg(feature = "vhost")]
use crate::used::Completion;
#[cfg(feature = "vhost")]
use crate::MemGuard;
use tracing::{debug, error};
use vfpga_engine::{Call, EngineError, Kernel, SegStream, SgBuf};
use vfpga_proto::{
    AbiError, ArgKind, DeviceInfo, ElemType, KernelDesc, Limits, Opcode, Response, Stats, Status,
    CONTROL_QUEUE, MAX_ARGS, MAX_NAME_LEN,
};

/// An operation's answer, or why it is refused.
pub type OpResult = Result<Response, AbiError>;

impl Device {
    /// Runs the operation a virtqueue brought (in `scratch`'s streams, over `mem`);
    /// `None` when a run was handed to the engine threads, which complete it through
    /// `done`.
    #[cfg(feature = "vhost")]
    pub fn dispatch(
        self: &Arc<Self>,
        queue: usize,
        req: &Request,
        mem: &MemGuard,
        done: &Completion,
        scratch: &mut Scratch,
    ) -> Option<OpResult> {
        let control = queue == usize::from(CONTROL_QUEUE);
        let allowed = match req.op {
            Opcode::Run => !control,
            Opcode::Nop | Opcode::GetStats => true,
            _ => control,
        };
        if !allowed {
            return Some(Err(AbiError::new(
                Status::BadRequest,
                "operation not allowed on this queue (control operations go to queue 0, runs to request queues)",
            )));
        }
        if req.op == Opcode::Run {
            return self.op_run(queue, req, mem, done, scratch);
        }
        // SAFETY: `mem` keeps the streams' guest memory mapped while the views live
        // (until the end of this function); `decode` checked the lengths.
        let bufs = unsafe { bind(req.args(), req.layout.head_bytes, &scratch.rd, &scratch.wr) };
        Some(self.answer(req, &bufs))
    }

    /// Answers every operation but `RUN` (which `dispatch` handles first): the same for
    /// every transport (the board agent calls it too).
    pub fn answer(&self, req: &Request, bufs: &Bufs<'_>) -> OpResult {
        match req.op {
            Opcode::Nop => expect(req, &[]).map(|()| Response::new(Status::Ok, 0)),
            Opcode::GetInfo => self.op_info(req, bufs),
            Opcode::ListKernels => self.op_list(req, bufs),
            Opcode::OpenSession => self.op_open(req, bufs),
            Opcode::CloseSession => self.op_close(req),
            Opcode::LoadBitstream => self.op_load(req, bufs),
            Opcode::GetStats => self.op_stats(req, bufs),
            Opcode::GetLimits => self.op_limits(req, bufs),
            Opcode::Run => Err(AbiError::new(Status::BadRequest, "RUN needs a session")),
            Opcode::UploadBitstream => Err(AbiError::new(
                Status::Unsupported,
                "bitstream upload is for board agents; guests load by name",
            )),
        }
    }

    fn op_info(&self, req: &Request, bufs: &Bufs<'_>) -> OpResult {
        expect(req, &[(ArgKind::Out, ElemType::U8)])?;
        write_out(bufs, 0, &self.info().to_bytes(), DeviceInfo::SIZE)
    }

    fn op_list(&self, req: &Request, bufs: &Bufs<'_>) -> OpResult {
        expect(
            req,
            &[
                (ArgKind::Scalar, ElemType::U32),
                (ArgKind::Out, ElemType::U8),
            ],
        )?;
        let start = usize::try_from(req.args[0].value).unwrap_or(usize::MAX);
        let out = buf(bufs, 1)?;
        let catalog = self.engine.catalog();
        // The guest sees the kernels its policy lets it run: the loaded catalogue's,
        // then the time-shared bitstreams' under their qualified names.
        let visible = || {
            catalog
                .kernels
                .iter()
                .filter(|k| self.tenant.may_run(&k.sig.name))
                .chain(
                    self.shelf
                        .kernels()
                        .filter(|(q, k)| self.may_run_shared(q, k))
                        .map(|(_, k)| k),
                )
        };
        let mut written = 0usize;
        for k in visible().skip(start) {
            if written + KernelDesc::SIZE > out.len() {
                break;
            }
            if !out.write_from(written, &k.desc.to_bytes()) {
                return Err(AbiError::arg(
                    Status::BadArgument,
                    1,
                    "output buffer unwritable",
                ));
            }
            written += KernelDesc::SIZE;
        }
        Ok(Response {
            value: visible().count() as u64,
            written: written as u64,
            ..Response::new(Status::Ok, 0)
        })
    }

    fn op_open(&self, req: &Request, bufs: &Bufs<'_>) -> OpResult {
        expect(req, &[(ArgKind::In, ElemType::U8)])?;
        let mut raw = [0u8; MAX_NAME_LEN];
        let name = read_name(buf(bufs, 0)?, &mut raw)?;
        let (kernel, bitstream) = self.resolve(name)?;
        let session = self
            .sessions
            .open(kernel, bitstream, name)
            .ok_or(AbiError::new(Status::Busy, "all sessions are in use"))?;
        debug!(guest = %self.name, kernel = name, id = session.id, "session opened");
        Ok(Response {
            value: session.id,
            ..Response::new(Status::Ok, 0)
        })
    }

    /// The kernel a session named `name` runs, and its shared bitstream if it is one's,
    /// if the guest may run it.
    pub fn resolve(&self, name: &str) -> Result<(Arc<Kernel>, Option<u16>), AbiError> {
        match self.shelf.find(name) {
            // A kernel of a time-shared bitstream, loaded or not.
            Some(f) => {
                if !self.may_run_shared(name, &f.kernel) {
                    return Err(self
                        .tenant
                        .refuse(Status::Permission, "kernel not in the guest's kernels"));
                }
                Ok((f.kernel, Some(f.bitstream)))
            }
            None => {
                let catalog = self.engine.catalog();
                let kernel = catalog.find(name).ok_or(AbiError::new(
                    Status::UnknownKernel,
                    "no kernel with that name",
                ))?;
                if !self.tenant.may_run(name) {
                    return Err(self
                        .tenant
                        .refuse(Status::Permission, "kernel not in the guest's kernels"));
                }
                Ok((kernel.clone(), None))
            }
        }
    }

    fn op_close(&self, req: &Request) -> OpResult {
        expect(req, &[])?;
        if !self.sessions.close(req.hdr.session) {
            return Err(AbiError::new(Status::BadSession, "no such session"));
        }
        Ok(Response::new(Status::Ok, 0))
    }

    fn op_load(&self, req: &Request, bufs: &Bufs<'_>) -> OpResult {
        expect(req, &[(ArgKind::In, ElemType::U8)])?;
        let mut raw = [0u8; MAX_NAME_LEN];
        let name = read_name(buf(bufs, 0)?, &mut raw)?;
        if !self.engine.info().can_load {
            return Err(AbiError::new(
                Status::Unsupported,
                "this device loads no bitstreams (no library configured)",
            ));
        }
        if !self.tenant.may_load(name) {
            return Err(self.tenant.refuse(
                Status::Permission,
                "bitstream not in the guest's bitstreams",
            ));
        }
        // A load run again after a restart must not reprogram the fabric under the
        // sessions opened since it first ran: only load if another is loaded.
        let loaded = if req.again {
            self.engine.ensure_loaded(name)
        } else {
            self.engine.load_bitstream(name)
        };
        match loaded {
            Ok(catalog) => {
                tracing::info!(guest = %self.name, bitstream = name, "bitstream loaded");
                Ok(Response {
                    value: catalog.kernels.len() as u64,
                    ..Response::new(Status::Ok, 0)
                })
            }
            Err(e) => {
                self.tenant
                    .report(format_args!("load of bitstream {name} refused: {e}"));
                let (status, detail) = e.status();
                Err(AbiError {
                    status,
                    detail,
                    reason: "bitstream load failed",
                })
            }
        }
    }

    fn op_limits(&self, req: &Request, bufs: &Bufs<'_>) -> OpResult {
        expect(req, &[(ArgKind::Out, ElemType::U8)])?;
        let l = self
            .tenant
            .limits(self.limits.max_sessions, self.limits.max_request_bytes);
        write_out(bufs, 0, &l.to_bytes(), Limits::SIZE)
    }

    fn op_stats(&self, req: &Request, bufs: &Bufs<'_>) -> OpResult {
        expect(req, &[(ArgKind::Out, ElemType::U8)])?;
        let stats = match req.hdr.session {
            0 => self.counters.snapshot(self.sessions.count()),
            id => self
                .sessions
                .get(id)
                .ok_or(AbiError::new(Status::BadSession, "no such session"))?
                .counters
                .snapshot(1),
        };
        write_out(bufs, 0, &stats.to_bytes(), Stats::SIZE)
    }

    #[cfg(feature = "vhost")]
    fn op_run(
        self: &Arc<Self>,
        queue: usize,
        req: &Request,
        mem: &MemGuard,
        done: &Completion,
        scratch: &mut Scratch,
    ) -> Option<OpResult> {
        let session = match self.session_for(req) {
            Ok(s) => s,
            Err(e) => return Some(Err(e)),
        };
        let admission = match self.admit(req) {
            Ok(a) => a,
            Err(e) => return Some(Err(e)),
        };
        let cost = {
            // SAFETY: `mem` keeps the streams mapped while the views live (this block).
            let bufs = unsafe { bind(req.args(), req.layout.head_bytes, &scratch.rd, &scratch.wr) };
            self.engine
                .cost(&session.kernel, &Call::new(req.args(), &bufs))
        };
        // Held until the run is over, wherever it runs.
        // Time-shared runs always go through the scheduler, which batches them by
        // bitstream (one run inline could reprogram the fabric at any moment).
        let admission = if cost > self.inline_cost || session.bitstream.is_some() {
            match self.defer(queue, req, mem, done, &session, scratch, admission) {
                Ok(()) => return None,
                Err(a) => a,
            }
        } else {
            Some(admission)
        };
        let resp = self.run_now(&session, req, &scratch.rd, &scratch.wr);
        drop(admission);
        Some(Ok(resp))
    }

    /// Admits a run against the guest's quotas (runs and bytes in flight, rates).
    pub fn admit(&self, req: &Request) -> Result<Admission, AbiError> {
        self.tenant
            .admit(req.layout.in_bytes.saturating_add(req.layout.out_bytes))
    }

    /// The session a `RUN` names, once its arguments are checked against the kernel's
    /// signature.
    pub fn session_for(&self, req: &Request) -> Result<Arc<Session>, AbiError> {
        let session = self
            .sessions
            .get(req.hdr.session)
            .ok_or(AbiError::new(Status::BadSession, "no such session"))?;
        if let Err(e) = session.kernel.sig.check_call(req.args()) {
            session.ended(e.status);
            return Err(e);
        }
        Ok(session)
    }

    /// Hands a run to the engine threads; gives the admission back if none can take it
    /// now.
    #[cfg(feature = "vhost")]
    #[allow(clippy::too_many_arguments)]
    fn defer(
        self: &Arc<Self>,
        queue: usize,
        req: &Request,
        mem: &MemGuard,
        done: &Completion,
        session: &Arc<Session>,
        scratch: &mut Scratch,
        admission: Admission,
    ) -> Result<(), Option<Admission>> {
        let Some(tx) = &self.jobs_tx else {
            return Err(Some(admission));
        };
        let ctx = &self.queues[queue];
        let Some(mut job) = lock(&ctx.jobs).pop() else {
            return Err(Some(admission));
        };
        std::mem::swap(&mut job.rd, &mut scratch.rd);
        std::mem::swap(&mut job.wr, &mut scratch.wr);
        job.load(JobParts {
            dev: self.clone(),
            done: done.clone(),
            mem: mem.clone(),
            session: session.clone(),
            req: *req,
            queue,
            admission,
        });
        ctx.start_job();
        match tx.try_send(job) {
            Ok(()) => Ok(()),
            Err(mut job) => {
                // Engine threads saturated: take the streams back and run here.
                std::mem::swap(&mut job.rd, &mut scratch.rd);
                std::mem::swap(&mut job.wr, &mut scratch.wr);
                let admission = job.unload();
                lock(&ctx.jobs).push(job);
                ctx.finish_job();
                Err(admission)
            }
        }
    }

    /// Runs the session's kernel on the request's buffers and builds the response.
    pub fn run_now(
        &self,
        session: &Session,
        req: &Request,
        rd: &SegStream,
        wr: &SegStream,
    ) -> Response {
        // SAFETY: the caller holds the memory guard the streams were mapped under.
        let bufs = unsafe { bind(req.args(), req.layout.head_bytes, rd, wr) };
        let call = Call::new(req.args(), &bufs);
        let start = Instant::now();
        // A bug in an engine must cost one request, not the engine thread (and with it
        // the chain, which the guest would wait for forever).
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            match session.bitstream.and_then(|b| self.shelf.name(b)) {
                Some(b) => self.engine.run_in(b, &session.kernel.sig.name, &call),
                None => self.engine.run(&session.kernel, &call),
            }
        }))
        .unwrap_or_else(|_| {
            error!(guest = %self.name, kernel = %session.kernel.sig.name, "the engine panicked; request failed");
            Err(EngineError::Failed("the engine panicked".into()))
        });
        let ns = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let resp = match result {
            Ok(()) => {
                let (bytes_in, bytes_out) = call.io_bytes();
                session.ran(bytes_in, bytes_out, ns);
                self.counters.run(bytes_in, bytes_out, ns);
                Response {
                    written: bytes_out,
                    ..Response::new(Status::Ok, req.hdr.tag)
                }
            }
            Err(e) => {
                // The engine's own failures are the operator's to see; a guest's bad
                // arguments or a session of a replaced catalogue are the guest's.
                if matches!(
                    e,
                    EngineError::LinkDown(_) | EngineError::Failed(_) | EngineError::Timeout(_)
                ) {
                    self.tenant.report(format_args!(
                        "a run of {} failed: {e}",
                        session.kernel.sig.name
                    ));
                } else {
                    debug!(guest = %self.name, kernel = %session.kernel.sig.name, "run failed: {e}");
                }
                let (status, detail) = e.status();
                Response {
                    detail,
                    ..Response::new(status, req.hdr.tag)
                }
            }
        };
        session.ended(resp.status().unwrap_or(Status::EngineError));
        Response {
            duration_ns: ns,
            ..resp
        }
    }
}

/// Views of a request's buffer arguments, by argument index.
pub type Bufs<'a> = [Option<SgBuf<'a>>; MAX_ARGS];

/// Checks the argument table of a control operation against its fixed shape.
fn expect(req: &Request, shape: &[(ArgKind, ElemType)]) -> Result<(), AbiError> {
    if req.n_args != shape.len() {
        return Err(AbiError::arg(
            Status::BadArgument,
            req.n_args.min(shape.len()),
            "wrong number of arguments for this operation",
        ));
    }
    for (i, (a, &(kind, ty))) in req.args().iter().zip(shape).enumerate() {
        if a.kind != kind.raw() || a.ty != ty.raw() {
            return Err(AbiError::arg(
                Status::BadArgument,
                i,
                "argument kind or type wrong for this operation",
            ));
        }
    }
    Ok(())
}

fn buf<'a>(bufs: &Bufs<'a>, i: usize) -> Result<SgBuf<'a>, AbiError> {
    bufs[i].ok_or(AbiError::arg(Status::BadArgument, i, "buffer not mapped"))
}

/// Writes a fixed-size answer into output buffer `i`, which must hold `size` bytes.
fn write_out(bufs: &Bufs<'_>, i: usize, bytes: &[u8], size: usize) -> OpResult {
    let out = buf(bufs, i)?;
    if out.len() < size || !out.write_from(0, bytes) {
        return Err(AbiError::arg(
            Status::BadArgument,
            i,
            "output buffer smaller than the answer",
        ));
    }
    Ok(Response {
        written: size as u64,
        ..Response::new(Status::Ok, 0)
    })
}

/// Reads a 1..=31-byte name from an input buffer.
fn read_name<'r>(b: SgBuf<'_>, raw: &'r mut [u8; MAX_NAME_LEN]) -> Result<&'r str, AbiError> {
    let bad = |r| AbiError::arg(Status::BadArgument, 0, r);
    if b.is_empty() || b.len() > MAX_NAME_LEN {
        return Err(bad("name must be 1 to 31 bytes"));
    }
    let raw = &mut raw[..b.len()];
    if !b.read_into(0, raw) {
        return Err(bad("name unreadable"));
    }
    std::str::from_utf8(raw).map_err(|_| bad("name is not UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DeviceLimits;
    use vfpga_engine::sim::SimEngine;
    use vfpga_engine::{Catalog, Engine, EngineInfo, Kernel};
    use vfpga_proto::{ArgEntry, ChainLayout, RequestHeader};

    /// The sim engine's catalogue with a `run` that panics: a stand-in for an engine bug.
    #[derive(Debug)]
    struct Panics(SimEngine);

    impl Engine for Panics {
        fn info(&self) -> EngineInfo {
            self.0.info()
        }
        fn catalog(&self) -> Arc<Catalog> {
            self.0.catalog()
        }
        fn run(&self, _: &Kernel, _: &Call<'_>) -> Result<(), EngineError> {
            panic!("engine bug");
        }
        fn cost(&self, k: &Kernel, c: &Call<'_>) -> u64 {
            self.0.cost(k, c)
        }
        fn load_bitstream(&self, name: &str) -> Result<Arc<Catalog>, EngineError> {
            self.0.load_bitstream(name)
        }
    }

    #[test]
    fn a_panicking_engine_fails_the_request_and_the_device_goes_on() {
        let engine = Arc::new(Panics(SimEngine::new(None).expect("sim engine")));
        let kernel = engine
            .catalog()
            .find("sha256")
            .expect("sha256 in the catalogue")
            .clone();
        let dev = Device::new("vm0", DeviceLimits::default(), engine);
        let session = dev.sessions.open(kernel, None, "k").expect("a session");
        let mut args = [ArgEntry::default(); MAX_ARGS];
        args[..3].copy_from_slice(&[
            ArgEntry::input(ElemType::U8, 0),
            ArgEntry::output(ElemType::U8, 32),
            ArgEntry::scalar(ElemType::U64, 0),
        ]);
        let layout = ChainLayout::of(&args[..3]).expect("layout");
        let req = Request {
            head: 0,
            hdr: RequestHeader::new(Opcode::Run, 7, session.id, 3),
            op: Opcode::Run,
            args,
            n_args: 3,
            layout: ChainLayout {
                head_bytes: 0,
                ..layout
            },
            resp_off: 0,
            again: false,
        };
        let mut out = [0u8; 32];
        let rd = SegStream::with_capacity(1);
        let mut wr = SegStream::with_capacity(1);
        assert!(wr.push(out.as_mut_ptr(), out.len()));
        for _ in 0..2 {
            let resp = dev.run_now(&session, &req, &rd, &wr);
            assert_eq!(resp.status(), Some(Status::EngineError));
        }
        assert!(
            dev.sessions.get(session.id).is_some(),
            "the session outlives the bug"
        );
    }

    /// The sim engine's catalogue, as if loaded from a library: counts the loads that
    /// reach the "fabric".
    #[derive(Debug)]
    struct CountsLoads {
        sim: SimEngine,
        loads: std::sync::atomic::AtomicUsize,
    }

    impl Engine for CountsLoads {
        fn info(&self) -> EngineInfo {
            EngineInfo {
                can_load: true,
                ..self.sim.info()
            }
        }
        fn catalog(&self) -> Arc<Catalog> {
            self.sim.catalog()
        }
        fn run(&self, k: &Kernel, c: &Call<'_>) -> Result<(), EngineError> {
            self.sim.run(k, c)
        }
        fn cost(&self, k: &Kernel, c: &Call<'_>) -> u64 {
            self.sim.cost(k, c)
        }
        fn load_bitstream(&self, _: &str) -> Result<Arc<Catalog>, EngineError> {
            self.loads
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Ok(self.sim.catalog())
        }
    }

    #[test]
    fn a_load_run_again_after_a_restart_does_not_reprogram_what_is_loaded() {
        let engine = Arc::new(CountsLoads {
            sim: SimEngine::new(None).expect("sim engine"),
            loads: std::sync::atomic::AtomicUsize::new(0),
        });
        let dev = Device::new("vm0", DeviceLimits::default(), engine.clone());
        let load = |name: &str, again: bool| {
            let mut args = [ArgEntry::default(); MAX_ARGS];
            args[0] = ArgEntry::input(ElemType::U8, name.len() as u64);
            let req = Request {
                head: 0,
                hdr: RequestHeader::new(Opcode::LoadBitstream, 1, 0, 1),
                op: Opcode::LoadBitstream,
                args,
                n_args: 1,
                layout: ChainLayout::of(&args[..1]).expect("layout"),
                resp_off: 0,
                again,
            };
            let mut raw = name.as_bytes().to_vec();
            let mut rd = SegStream::with_capacity(1);
            assert!(rd.push(raw.as_mut_ptr(), raw.len()));
            let wr = SegStream::with_capacity(1);
            // SAFETY: the streams map `raw` (and nothing), alive for this call.
            let bufs = unsafe { bind(&args[..1], 0, &rd, &wr) };
            dev.answer(&req, &bufs)
                .map(|r| r.status())
                .map_err(|e| e.status)
        };
        let loaded = engine.catalog().name.clone();
        let count = || engine.loads.load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(load(&loaded, false), Ok(Some(Status::Ok)));
        assert_eq!(count(), 1, "a guest's load programs the fabric");
        assert_eq!(load(&loaded, true), Ok(Some(Status::Ok)));
        assert_eq!(count(), 1, "run again, it finds its bitstream loaded");
        assert_eq!(load("other", true), Ok(Some(Status::Ok)));
        assert_eq!(count(), 2, "run again over another bitstream, it loads");
    }
}
