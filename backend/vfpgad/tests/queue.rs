//! The virtqueue path in process, without a frontend: chains built in guest memory
//! with virtio-queue's `MockSplitQueue`, fed to the vhost-user glue (`VhuVfpga`'s
//! `handle_event`, as vhost-user-backend calls it), answers read back from the used
//! ring. Each malformed shape gets its status and used length; a queue stop or a
//! device reset with a run held on a slow engine either waits for it or drops its
//! late result; the features and configuration space the frontend reads.
#![allow(clippy::unwrap_used, clippy::cast_possible_truncation)]

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use vfpga_engine::sim::SimEngine;
use vfpga_engine::{Call, Catalog, Engine, EngineError, EngineInfo, Kernel};
use vfpga_proto::{
    ArgEntry, DeviceConfig, ElemType, Opcode, RequestHeader, Response, Status, ABI_VERSION,
    CONFIG_MAGIC,
};
use vfpgad::config::DeviceLimits;
use vfpgad::device::Device;
use vfpgad::executor::Executor;
use vfpgad::vhu_vfpga::VhuVfpga;
use vhost_user_backend::{VhostUserBackend, VringRwLock, VringT};
use virtio_queue::desc::split::Descriptor as SplitDescriptor;
use virtio_queue::desc::RawDescriptor;
use virtio_queue::mock::MockSplitQueue;
use vm_memory::{Bytes, GuestAddress, GuestAddressSpace, GuestMemoryAtomic, GuestMemoryMmap};
use vmm_sys_util::epoll::EventSet;

const QUEUE_SIZE: u16 = 64;
const MEM_BYTES: usize = 4 << 20;
const WRITE: u16 = 2; // VRING_DESC_F_WRITE
const NEXT: u16 = 1; // VRING_DESC_F_NEXT

/// An engine whose runs wait at a gate the test opens: "a run in flight" for as long
/// as the test wants, with no timing involved.
#[derive(Debug)]
struct Gated {
    sim: SimEngine,
    open: Mutex<bool>,
    changed: Condvar,
    started: Mutex<u32>,
}

impl Gated {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            sim: SimEngine::new(None).unwrap(),
            open: Mutex::new(true),
            changed: Condvar::new(),
            started: Mutex::new(0),
        })
    }

    fn set_open(&self, open: bool) {
        *self.open.lock().unwrap() = open;
        self.changed.notify_all();
    }

    /// Waits until `n` runs have reached the engine.
    fn wait_started(&self, n: u32) {
        let mut g = self.started.lock().unwrap();
        while *g < n {
            g = self.changed.wait(g).unwrap();
        }
    }
}

impl Engine for Gated {
    fn info(&self) -> EngineInfo {
        self.sim.info()
    }
    fn catalog(&self) -> Arc<Catalog> {
        self.sim.catalog()
    }
    fn run(&self, kernel: &Kernel, call: &Call<'_>) -> Result<(), EngineError> {
        *self.started.lock().unwrap() += 1;
        self.changed.notify_all();
        let mut open = self.open.lock().unwrap();
        while !*open {
            open = self.changed.wait(open).unwrap();
        }
        drop(open);
        self.sim.run(kernel, call)
    }
    fn cost(&self, kernel: &Kernel, call: &Call<'_>) -> u64 {
        self.sim.cost(kernel, call)
    }
    fn load_bitstream(&self, name: &str) -> Result<Arc<Catalog>, EngineError> {
        self.sim.load_bitstream(name)
    }
}

/// One device with its glue, guest memory and the rings of queues 0 and 1.
struct Rig {
    mem: GuestMemoryAtomic<GuestMemoryMmap>,
    backend: VhuVfpga,
    dev: Arc<Device>,
    engine: Arc<Gated>,
    exec: Arc<Executor>,
    vrings: [VringRwLock; 2],
    /// The driver's side of each queue (created once: creating one zeroes the rings).
    mocks: [MockSplitQueue<'static, GuestMemoryMmap>; 2],
    /// Next free descriptor of each queue, next free data address.
    next_desc: [u16; 2],
    next_data: u64,
}

/// Where queue `q`'s rings live.
fn ring_base(q: usize) -> GuestAddress {
    GuestAddress(0x1_0000 * q as u64)
}

impl Rig {
    fn new(limits: DeviceLimits) -> Self {
        Self::with_polling(limits, Duration::ZERO)
    }

    /// A rig whose device watches a request queue for `poll` after it ran dry, with
    /// EVENT_IDX negotiated when `poll` is not zero (polling needs it).
    fn with_polling(limits: DeviceLimits, poll: Duration) -> Self {
        let mmap = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM_BYTES)]).unwrap();
        // The mocks borrow the memory for the whole test; a clone shares its regions.
        let driver: &'static GuestMemoryMmap = Box::leak(Box::new(mmap.clone()));
        let mem = GuestMemoryAtomic::new(mmap);
        let mocks = [0, 1].map(|q| MockSplitQueue::create(driver, ring_base(q), QUEUE_SIZE));
        let engine = Gated::new();
        let exec = Executor::new(1, Duration::ZERO).unwrap();
        // Every run is handed to the engine threads (inline cost 0), as long runs are.
        let dev = Arc::new(
            Device::new("vm0", limits, engine.clone() as Arc<dyn Engine>)
                .with_engine_threads(&exec, 0)
                .with_polling(poll),
        );
        let backend = VhuVfpga::new(dev.clone());
        backend.update_memory(mem.clone()).unwrap();
        let event_idx = !poll.is_zero();
        backend.set_event_idx(event_idx);
        let vrings = [0, 1].map(|q| {
            let v = VringRwLock::new(mem.clone(), QUEUE_SIZE).unwrap();
            let mock = &mocks[q];
            v.set_queue_size(QUEUE_SIZE);
            v.set_queue_info(
                mock.desc_table_addr().0,
                mock.avail_addr().0,
                mock.used_addr().0,
            )
            .unwrap();
            v.set_queue_ready(true);
            v.set_enabled(true);
            v.set_queue_event_idx(event_idx);
            v
        });
        Self {
            mem,
            backend,
            dev,
            engine,
            exec,
            vrings,
            mocks,
            next_desc: [0; 2],
            next_data: 0x10_0000,
        }
    }

    /// Guest memory for `bytes`, filled with `fill`.
    fn alloc(&mut self, bytes: &[u8], len: u32) -> u64 {
        let addr = self.next_data;
        self.next_data += u64::from(len).next_multiple_of(64).max(64);
        let m = self.mem.memory();
        m.write_slice(&vec![0xEEu8; len as usize], GuestAddress(addr))
            .unwrap();
        m.write_slice(bytes, GuestAddress(addr)).unwrap();
        addr
    }

    /// Puts a chain of `(addr, len, writable)` descriptors on queue `q`'s avail ring.
    fn post(&mut self, q: usize, descs: &[(u64, u32, bool)]) -> u16 {
        let first = self.next_desc[q];
        let raw: Vec<RawDescriptor> = descs
            .iter()
            .enumerate()
            .map(|(i, &(addr, len, w))| {
                let last = i + 1 == descs.len();
                let flags = if w { WRITE } else { 0 } | if last { 0 } else { NEXT };
                let next = if last { 0 } else { first + i as u16 + 1 };
                RawDescriptor::from(SplitDescriptor::new(addr, len, flags, next))
            })
            .collect();
        self.next_desc[q] += descs.len() as u16;
        self.mocks[q].add_desc_chains(&raw, first).unwrap();
        first
    }

    /// A kick on queue `q`: the glue handles every available chain.
    fn kick(&self, q: usize) {
        self.backend
            .handle_event(0, EventSet::IN, std::slice::from_ref(&self.vrings[q]), q)
            .unwrap();
    }

    /// The used ring of queue `q`: `(head, len)` entries so far.
    fn used(&self, q: usize) -> Vec<(u16, u32)> {
        let mock = &self.mocks[q];
        let n = mock.used().idx().load();
        (0..n)
            .map(|i| {
                let e = mock.used().ring().ref_at(usize::from(i)).unwrap().load();
                (e.id() as u16, e.len())
            })
            .collect()
    }

    fn read(&self, addr: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        self.mem
            .memory()
            .read_slice(&mut v, GuestAddress(addr))
            .unwrap();
        v
    }

    fn response(&self, addr: u64) -> Response {
        let raw = self.read(addr, Response::SIZE);
        Response::from_bytes(raw.as_slice().try_into().unwrap())
    }

    /// A well-formed request: header, argument table and inputs in one readable
    /// descriptor, each output and the response in writable ones. Returns the
    /// response's address and the outputs' addresses.
    fn request(
        &mut self,
        q: usize,
        op: Opcode,
        tag: u64,
        session: u64,
        args: &[ArgEntry],
        inputs: &[&[u8]],
    ) -> (u64, Vec<u64>) {
        let mut rd = RequestHeader::new(op, tag, session, args.len())
            .to_bytes()
            .to_vec();
        for a in args {
            rd.extend_from_slice(&a.to_bytes());
        }
        for i in inputs {
            rd.extend_from_slice(i);
        }
        let rd_addr = self.alloc(&rd, rd.len() as u32);
        let mut descs = vec![(rd_addr, rd.len() as u32, false)];
        let mut outs = Vec::new();
        for a in args
            .iter()
            .filter(|a| a.kind == vfpga_proto::ArgKind::Out.raw())
        {
            let len = a.value as u32;
            let addr = self.alloc(&[], len);
            outs.push(addr);
            descs.push((addr, len, true));
        }
        let resp = self.alloc(&[], Response::SIZE as u32);
        descs.push((resp, Response::SIZE as u32, true));
        self.post(q, &descs);
        (resp, outs)
    }

    /// Opens a session on `kernel` (control queue).
    fn open(&mut self, kernel: &str) -> u64 {
        let (resp, _) = self.request(
            0,
            Opcode::OpenSession,
            1,
            0,
            &[ArgEntry::input(ElemType::U8, kernel.len() as u64)],
            &[kernel.as_bytes()],
        );
        self.kick(0);
        let r = self.response(resp);
        assert_eq!(r.status, Status::Ok.raw(), "open {kernel}");
        r.value
    }

    /// Posts a `vadd_u32` of `n` elements on queue 1 (not kicked): the response's and
    /// the output's addresses and the expected sums.
    fn post_vadd(&mut self, session: u64, n: u32) -> (u64, u64, Vec<u8>) {
        let a: Vec<u8> = (0..n).flat_map(|i| (i * 3).to_le_bytes()).collect();
        let b: Vec<u8> = (0..n).flat_map(|i| (i + 7).to_le_bytes()).collect();
        let want: Vec<u8> = (0..n).flat_map(|i| (i * 4 + 7).to_le_bytes()).collect();
        let bytes = u64::from(n) * 4;
        let (resp, outs) = self.request(
            1,
            Opcode::Run,
            42,
            session,
            &[
                ArgEntry::input(ElemType::U32, bytes),
                ArgEntry::input(ElemType::U32, bytes),
                ArgEntry::output(ElemType::U32, bytes),
                ArgEntry::scalar(ElemType::U32, u64::from(n)),
            ],
            &[&a, &b],
        );
        (resp, outs[0], want)
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.engine.set_open(true);
        self.exec.shutdown();
    }
}

fn limits() -> DeviceLimits {
    DeviceLimits {
        max_segments: 8,
        max_request_bytes: 1 << 20,
        ..DeviceLimits::default()
    }
}

#[test]
fn features_and_the_configuration_space() {
    let rig = Rig::new(limits());
    let f = rig.backend.features();
    for bit in [32u32, 29, 28, 30] {
        // VERSION_1, EVENT_IDX, INDIRECT_DESC, vhost-user's PROTOCOL_FEATURES
        assert_ne!(f & (1u64 << bit), 0, "feature bit {bit} in {f:#x}");
    }
    let p = rig.backend.protocol_features();
    use vhost::vhost_user::message::VhostUserProtocolFeatures as P;
    assert!(
        p.contains(P::MQ | P::CONFIG | P::REPLY_ACK | P::RESET_DEVICE),
        "{p:?}"
    );
    assert_eq!(
        rig.backend.num_queues(),
        usize::from(limits().request_queues) + 1
    );
    let raw = rig.backend.get_config(0, DeviceConfig::SIZE as u32);
    let c = DeviceConfig::from_bytes(raw.as_slice().try_into().unwrap());
    assert_eq!(
        (c.magic, c.abi_version, c.num_request_queues, c.max_segments),
        (CONFIG_MAGIC, ABI_VERSION, limits().request_queues, 8)
    );
    // A read at an offset gets those bytes; past the structure, zeros of the size asked.
    assert_eq!(rig.backend.get_config(4, 4), raw[4..8].to_vec());
    assert_eq!(rig.backend.get_config(1000, 6), vec![0u8; 6]);
    let tail = DeviceConfig::SIZE as u32 - 2;
    assert_eq!(
        rig.backend.get_config(tail, 8),
        [&raw[tail as usize..], &[0u8; 6][..]].concat()
    );
}

#[test]
fn a_run_completes_with_its_outputs_and_the_used_length() {
    let mut rig = Rig::new(limits());
    let s = rig.open("vadd_u32");
    let (resp, out, want) = rig.post_vadd(s, 100);
    rig.kick(1);
    // Deferred to the engine thread: wait for the queue to be idle.
    assert!(rig.dev.queues[1].wait_idle(Duration::from_secs(60)));
    let used = rig.used(1);
    assert_eq!(used, vec![(0, 400 + Response::SIZE as u32)]);
    let r = rig.response(resp);
    assert_eq!((r.status, r.tag, r.written), (Status::Ok.raw(), 42, 400));
    assert_eq!(rig.read(out, 400), want);
}

#[test]
fn each_malformed_chain_gets_its_status_and_used_length() {
    let mut rig = Rig::new(limits());
    let ok_hdr = RequestHeader::new(Opcode::Nop, 7, 0, 0).to_bytes();
    let resp_len = Response::SIZE as u32;
    let mut cases: Vec<(&str, u16, Option<u64>, Option<Status>)> = Vec::new();
    let mut expect = |rig: &mut Rig, what, descs: Vec<(u64, u32, bool)>, status| {
        let resp = descs.iter().rev().find(|d| d.2).map(|d| d.0);
        let head = rig.post(0, &descs);
        cases.push((what, head, resp, status));
    };
    // No writable bytes at all: nowhere to answer.
    let h = rig.alloc(&ok_hdr, ok_hdr.len() as u32);
    expect(
        &mut rig,
        "readable only",
        vec![(h, ok_hdr.len() as u32, false)],
        None,
    );
    // A writable descriptor shorter than a response.
    let h = rig.alloc(&ok_hdr, ok_hdr.len() as u32);
    let w = rig.alloc(&[], 20);
    expect(
        &mut rig,
        "response too short",
        vec![(h, ok_hdr.len() as u32, false), (w, 20, true)],
        None,
    );
    // A readable descriptor after a writable one.
    let h = rig.alloc(&ok_hdr, ok_hdr.len() as u32);
    let w = rig.alloc(&[], resp_len);
    let w0 = rig.alloc(&[], 8);
    expect(
        &mut rig,
        "writable then readable",
        vec![
            (w0, 8, true),
            (h, ok_hdr.len() as u32, false),
            (w, resp_len, true),
        ],
        Some(Status::BadRequest),
    );
    // A header cut short.
    let h = rig.alloc(&ok_hdr[..8], 8);
    let w = rig.alloc(&[], resp_len);
    expect(
        &mut rig,
        "short header",
        vec![(h, 8, false), (w, resp_len, true)],
        Some(Status::BadRequest),
    );
    // A descriptor outside guest memory.
    let w = rig.alloc(&[], resp_len);
    expect(
        &mut rig,
        "outside memory",
        vec![(MEM_BYTES as u64 + 4096, 64, false), (w, resp_len, true)],
        Some(Status::BadRequest),
    );
    // A bad magic, another ABI version, an unknown opcode.
    for (what, patch, status) in [
        ("bad magic", (0usize, 0xFFu8), Status::BadRequest),
        ("other version", (4, 0x7F), Status::BadVersion),
        ("unknown opcode", (6, 0xFE), Status::Unsupported),
    ] {
        let mut hdr = ok_hdr;
        hdr[patch.0] = patch.1;
        let h = rig.alloc(&hdr, hdr.len() as u32);
        let w = rig.alloc(&[], resp_len);
        expect(
            &mut rig,
            what,
            vec![(h, hdr.len() as u32, false), (w, resp_len, true)],
            Some(status),
        );
    }
    // An argument table announced but not there, and lengths that do not add up.
    let hdr = RequestHeader::new(Opcode::Nop, 7, 0, 2).to_bytes();
    let h = rig.alloc(&hdr, hdr.len() as u32);
    let w = rig.alloc(&[], resp_len);
    expect(
        &mut rig,
        "missing argument table",
        vec![(h, hdr.len() as u32, false), (w, resp_len, true)],
        Some(Status::BadRequest),
    );
    let h = rig.alloc(&ok_hdr, ok_hdr.len() as u32 + 16);
    let w = rig.alloc(&[], resp_len);
    expect(
        &mut rig,
        "readable bytes the table does not describe",
        vec![(h, ok_hdr.len() as u32 + 16, false), (w, resp_len, true)],
        Some(Status::BadRequest),
    );
    // More descriptors than max_segments (8).
    let h = rig.alloc(&ok_hdr, ok_hdr.len() as u32);
    let mut descs = vec![(h, ok_hdr.len() as u32, false)];
    for _ in 0..8 {
        let w = rig.alloc(&[], resp_len);
        descs.push((w, resp_len, true));
    }
    expect(&mut rig, "too many segments", descs, Some(Status::TooLarge));
    // A run on the control queue.
    let run = RequestHeader::new(Opcode::Run, 7, 1, 0).to_bytes();
    let h = rig.alloc(&run, run.len() as u32);
    let w = rig.alloc(&[], resp_len);
    expect(
        &mut rig,
        "run on the control queue",
        vec![(h, run.len() as u32, false), (w, resp_len, true)],
        Some(Status::BadRequest),
    );
    rig.kick(0);
    let used = rig.used(0);
    assert_eq!(used.len(), cases.len(), "every chain is returned: {used:?}");
    for ((what, head, resp, status), (got_head, len)) in cases.iter().zip(&used) {
        assert_eq!(head, got_head, "{what}: returned in order");
        match status {
            None => assert_eq!(*len, 0, "{what}: returned with nothing written"),
            Some(st) => {
                assert_eq!(*len, resp_len, "{what}: the response's length");
                let r = rig.response(resp.unwrap());
                assert_eq!(r.status, st.raw(), "{what}: status {r:?}");
                if *st != Status::Ok && !what.contains("short header") {
                    assert!(r.tag == 7 || r.tag == 0, "{what}: tag {}", r.tag);
                }
            }
        }
    }
    // And the queue still serves.
    let (resp, _) = rig.request(0, Opcode::Nop, 9, 0, &[], &[]);
    rig.kick(0);
    assert_eq!(rig.response(resp).status, Status::Ok.raw());
}

#[test]
fn a_stop_waits_for_the_run_in_flight_and_a_stop_that_gives_up_drops_it() {
    let mut rig = Rig::new(limits());
    let s = rig.open("vadd_u32");
    // A stop that gives up at once: the run goes on, its result is dropped.
    rig.engine.set_open(false);
    let (resp, out, _) = rig.post_vadd(s, 64);
    rig.kick(1);
    rig.engine.wait_started(1);
    assert!(
        !rig.dev.queues[1].stop(Duration::ZERO),
        "a run is in flight"
    );
    rig.engine.set_open(true);
    assert!(rig.dev.queues[1].wait_idle(Duration::from_secs(60)));
    // The engine wrote the outputs in place as it ran; nothing after that happens.
    assert_eq!(rig.read(out, 4), vec![7, 0, 0, 0]);
    assert!(
        rig.used(1).is_empty(),
        "a run of a stopped queue completes nothing"
    );
    assert_eq!(rig.read(resp, 4), vec![0xEE; 4], "nor writes its response");
    // A stop through the glue (GET_VRING_BASE) waits for the run.
    rig.engine.set_open(false);
    let (resp, out, want) = rig.post_vadd(s, 64);
    rig.kick(1);
    rig.engine.wait_started(2);
    std::thread::scope(|t| {
        let stop = t.spawn(|| rig.backend.stop_vring(1));
        rig.engine.set_open(true);
        stop.join().unwrap().unwrap();
    });
    // Its chain is the second on queue 1: descriptors 3 to 5.
    assert_eq!(rig.used(1), vec![(3, 256 + Response::SIZE as u32)]);
    assert_eq!(rig.response(resp).status, Status::Ok.raw());
    assert_eq!(rig.read(out, 256), want);
}

#[test]
fn a_reset_waits_for_the_run_then_forgets_the_sessions() {
    let mut rig = Rig::new(limits());
    let s = rig.open("vadd_u32");
    rig.engine.set_open(false);
    let (resp, _, _) = rig.post_vadd(s, 16);
    rig.kick(1);
    rig.engine.wait_started(1);
    std::thread::scope(|t| {
        let reset = t.spawn(|| rig.backend.reset_device());
        rig.engine.set_open(true);
        reset.join().unwrap();
    });
    assert_eq!(
        rig.used(1).len(),
        1,
        "the run in flight completed before the reset"
    );
    assert_eq!(rig.response(resp).status, Status::Ok.raw());
    // The session is gone with the reset.
    let (resp, _, _) = rig.post_vadd(s, 16);
    rig.kick(1);
    assert!(rig.dev.queues[1].wait_idle(Duration::from_secs(60)));
    assert_eq!(rig.response(resp).status, Status::BadSession.raw());
}

#[test]
fn an_available_index_beyond_the_ring_stops_the_queue_instead_of_spinning() {
    let mut rig = Rig::new(limits());
    rig.backend.set_event_idx(true);
    rig.vrings[1].set_queue_event_idx(true);
    let s = rig.open("vadd_u32");
    // The driver claims 1000 chains on a ring of 64: nothing can be taken, and with
    // EVENT_IDX re-enabling notifications would say "more" for ever.
    rig.mocks[1].avail().idx().store(1000);
    let (tx, rx) = std::sync::mpsc::channel();
    let (backend, vring) = (rig.backend.clone(), rig.vrings[1].clone());
    std::thread::spawn(move || {
        backend
            .handle_event(0, EventSet::IN, std::slice::from_ref(&vring), 1)
            .unwrap();
        tx.send(()).unwrap();
    });
    rx.recv_timeout(Duration::from_secs(60))
        .expect("the kick returned");
    assert!(rig.used(1).is_empty());
    // The other queues serve on.
    let (resp, _) = rig.request(0, Opcode::Nop, 5, s, &[], &[]);
    rig.kick(0);
    assert_eq!(rig.response(resp).status, Status::Ok.raw());
}

#[test]
fn a_queue_watched_after_work_serves_the_next_request_without_a_kick() {
    // A window far longer than any test step: the verdict cannot depend on speed. The
    // queue's stop ends the watch at the end.
    let mut rig = Rig::with_polling(limits(), Duration::from_secs(600));
    let (first, _) = rig.request(1, Opcode::Nop, 1, 0, &[], &[]);
    let backend = rig.backend.clone();
    let vring = rig.vrings[1].clone();
    let kick = std::thread::spawn(move || {
        backend
            .handle_event(0, EventSet::IN, std::slice::from_ref(&vring), 1)
            .unwrap();
    });
    // The first request is answered (and the guest told) while the queue is watched.
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while rig.used(1).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "first request not served"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(rig.response(first).status, Status::Ok.raw());
    assert!(!kick.is_finished(), "still watching the queue");
    // The next request, posted with no kick, is served by the watch.
    let (second, _) = rig.request(1, Opcode::Nop, 2, 0, &[], &[]);
    while rig.used(1).len() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "second request not served"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    let r = rig.response(second);
    assert_eq!((r.status, r.tag), (Status::Ok.raw(), 2));
    // A stop of the queue ends the watch at once.
    assert!(rig.dev.queues[1].stop(Duration::from_secs(60)));
    while !kick.is_finished() {
        assert!(
            std::time::Instant::now() < deadline,
            "the stop did not end the watch"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    kick.join().unwrap();
}

#[test]
fn without_polling_a_kick_is_handled_and_the_thread_goes_back_to_waiting() {
    let mut rig = Rig::with_polling(limits(), Duration::ZERO);
    let (first, _) = rig.request(1, Opcode::Nop, 1, 0, &[], &[]);
    rig.kick(1);
    assert_eq!(rig.response(first).status, Status::Ok.raw());
    // A short watch ends by itself when nothing comes: the kick returns.
    let mut rig = Rig::with_polling(limits(), Duration::from_micros(200));
    let (first, _) = rig.request(1, Opcode::Nop, 1, 0, &[], &[]);
    rig.kick(1);
    assert_eq!(rig.response(first).status, Status::Ok.raw());
    assert_eq!(rig.used(1).len(), 1);
}

/// Decodes a `vadd_u32` chain of 16 elements whose readable bytes come as `rd` and
/// writable bytes as `wr` (descriptors as `(guest address, length)`, each list laid
/// over one request's bytes in order); returns the host segments of each stream as
/// `(guest address, length)`.
fn decoded_segments(rd: &[(u64, u32)], wr: &[(u64, u32)]) -> [Vec<(u64, usize)>; 2] {
    use vfpgad::chain::{decode, Decoded, Scratch};
    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
    let bytes = 64u64;
    let mut head = RequestHeader::new(Opcode::Run, 9, 1, 4).to_bytes().to_vec();
    for a in [
        ArgEntry::input(ElemType::U32, bytes),
        ArgEntry::input(ElemType::U32, bytes),
        ArgEntry::output(ElemType::U32, bytes),
        ArgEntry::scalar(ElemType::U32, 16),
    ] {
        head.extend_from_slice(&a.to_bytes());
    }
    head.resize(head.len() + 2 * bytes as usize, 3);
    // The readable bytes, written piece by piece where the descriptors put them.
    let mut off = 0;
    for &(addr, len) in rd {
        let piece = &head[off..off + len as usize];
        mem.write_slice(piece, GuestAddress(addr)).unwrap();
        off += len as usize;
    }
    assert_eq!(off, head.len());
    let descs = rd
        .iter()
        .map(|&(a, l)| (a, l, 0))
        .chain(wr.iter().map(|&(a, l)| (a, l, WRITE)));
    let n = rd.len() + wr.len();
    let chain = descs.enumerate().map(|(i, (addr, len, flags))| {
        let next = if i + 1 < n { NEXT } else { 0 };
        SplitDescriptor::new(addr, len, flags | next, i as u16 + 1)
    });
    let mut scratch = Scratch::new(limits().max_segments);
    let decoded = decode(0, chain, &mem, &limits(), &mut scratch);
    assert!(matches!(decoded, Decoded::Request(_)), "{decoded:?}");
    let base =
        vm_memory::GuestMemoryBackend::get_host_address(&mem, GuestAddress(0)).unwrap() as u64;
    [&scratch.rd, &scratch.wr].map(|s| {
        s.segs()
            .iter()
            .map(|g| (g.ptr() as u64 - base, g.len()))
            .collect()
    })
}

#[test]
fn adjacent_descriptors_are_mapped_as_one_segment_and_others_apart() {
    let head = (RequestHeader::SIZE + 4 * ArgEntry::SIZE) as u32;
    let resp = Response::SIZE as u32;
    let rd_len = head + 128;
    // Readable bytes as three descriptors back to back in guest memory; writable
    // output and response back to back: one segment each.
    let [rd, wr] = decoded_segments(
        &[
            (0x1000, 40),
            (0x1000 + 40, head - 40),
            (0x1000 + u64::from(head), 128),
        ],
        &[(0x8000, 64), (0x8000 + 64, resp)],
    );
    assert_eq!(rd, vec![(0x1000, rd_len as usize)]);
    assert_eq!(wr, vec![(0x8000, 64 + Response::SIZE)]);
    // A gap of one byte, a piece given before the one it follows in memory, and the
    // same guest bytes named twice: separate segments, in chain order.
    let [rd, wr] = decoded_segments(
        &[(0x1000, head), (0x3000 + 64, 64), (0x3000, 64)],
        &[(0x8000, 32), (0x8000 + 33, 32), (0x9000, resp)],
    );
    assert_eq!(
        rd,
        vec![(0x1000, head as usize), (0x3040, 64), (0x3000, 64)]
    );
    assert_eq!(
        wr,
        vec![(0x8000, 32), (0x8021, 32), (0x9000, Response::SIZE)]
    );
    let [_, wr] = decoded_segments(&[(0x1000, rd_len)], &[(0x8000, 64), (0x8000, resp)]);
    assert_eq!(wr, vec![(0x8000, 64), (0x8000, Response::SIZE)]);
}
