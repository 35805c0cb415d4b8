//! The warm request path allocates nothing: a counting global allocator watches the
//! whole process (daemon threads and test frontend alike) while `vadd` requests run,
//! both on the queue's own thread (small) and on the engine threads (1 MiB), and on a
//! stream connection (a unix socket, the host end of a userspace vsock device), raw and
//! through the guest library's `Session::run`.
#![allow(clippy::unwrap_used, clippy::cast_possible_truncation)]

use std::alloc::{GlobalAlloc, Layout as AllocLayout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use vfpga_engine::sim::SimEngine;
use vfpga_proto::{ElemType, Opcode, Status};
use vfpga_vhu_frontend::{Arg, Layout, VhuFrontend};
use vfpgad::config::GuestConfig;
use vfpgad::{Config, Server};

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);
/// While set, each counted allocation also records where it was made (the first few),
/// so a failure says which code allocated.
static TRACING: AtomicBool = AtomicBool::new(false);
static WHERE: Mutex<Vec<String>> = Mutex::new(Vec::new());
/// Backtraces being recorded now (a recording is slow: `measure` waits for them).
static RECORDINGS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// Set while this thread records a backtrace (whose own allocations do not count).
    static RECORDING: Cell<bool> = const { Cell::new(false) };
}

fn count() {
    if RECORDING.with(Cell::get) {
        return;
    }
    ALLOCS.fetch_add(1, Ordering::Relaxed);
    if TRACING.load(Ordering::Relaxed) {
        RECORDINGS.fetch_add(1, Ordering::SeqCst);
        RECORDING.with(|r| r.set(true));
        let thread = std::thread::current().name().unwrap_or("?").to_owned();
        let bt = std::backtrace::Backtrace::force_capture().to_string();
        let mut w = WHERE.lock().unwrap_or_else(|p| p.into_inner());
        if w.len() < 4 {
            w.push(format!("thread {thread}:\n{bt}"));
        }
        drop(w);
        RECORDING.with(|r| r.set(false));
        RECORDINGS.fetch_sub(1, Ordering::SeqCst);
    }
}

// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: AllocLayout) -> *mut u8 {
        count();
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: AllocLayout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: AllocLayout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Counts (and records where) allocations are made while `f` runs.
fn measure(f: impl FnOnce()) -> (u64, String) {
    WHERE.lock().unwrap_or_else(|p| p.into_inner()).clear();
    TRACING.store(true, Ordering::SeqCst);
    let before = ALLOCS.load(Ordering::SeqCst);
    f();
    let n = ALLOCS.load(Ordering::SeqCst) - before;
    TRACING.store(false, Ordering::SeqCst);
    while RECORDINGS.load(Ordering::SeqCst) > 0 {
        std::thread::yield_now();
    }
    let w = WHERE.lock().unwrap_or_else(|p| p.into_inner()).join("\n");
    (n, w)
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations made (and where) while `n` runs of the prepared `vadd` of `elems`
/// elements go through.
fn allocations(fe: &mut VhuFrontend, session: u64, elems: usize, n: usize) -> (u64, String) {
    let a: Vec<u8> = (0..elems as u32).flat_map(|x| x.to_le_bytes()).collect();
    let p = fe
        .prepare(
            1,
            Opcode::Run,
            session,
            &[
                Arg::In(ElemType::U32, &a),
                Arg::In(ElemType::U32, &a),
                Arg::Out(ElemType::U32, elems * 4),
                Arg::Scalar(ElemType::U32, elems as u64),
            ],
            Layout::Paged(4096),
        )
        .unwrap();
    for _ in 0..20 {
        let (resp, _) = fe.run_prepared(&p).unwrap();
        assert_eq!(resp.status(), Some(Status::Ok));
    }
    let count = measure(|| {
        for _ in 0..n {
            let (resp, _) = fe.run_prepared(&p).unwrap();
            assert_eq!(resp.status(), Some(Status::Ok));
        }
    });
    let out = fe.output(&p, 0).unwrap();
    assert_eq!(&out[..8], &[0, 0, 0, 0, 2, 0, 0, 0], "results are real");
    fe.mem.release_to(p.mark);
    count
}

/// One test for the whole binary: the counter is the process's, and a second test's
/// thread, started by the harness at once but scheduled whenever the system likes,
/// would do its start-up allocations in the middle of this one's measurement.
#[test]
fn warm_requests_allocate_nothing() {
    on_a_virtio_device();
    on_a_stream();
    through_the_guest_library();
}

fn on_a_virtio_device() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("vm0.sock");
    let config = Config {
        guests: vec![GuestConfig::new("vm0", socket.clone())],
        ..Config::default()
    };
    config.validate().unwrap();
    let server = Server::start(&config, Arc::new(SimEngine::new(None).unwrap())).unwrap();
    let mut fe = VhuFrontend::connect(&socket, Default::default()).unwrap();
    let r = fe
        .call(
            0,
            Opcode::OpenSession,
            0,
            &[Arg::In(ElemType::U8, b"vadd_u32")],
            Layout::Direct,
        )
        .unwrap();
    let session = r.resp.value;
    // Every queue's thread runs once before anything is counted: a thread's first
    // request has one-time set-up costs (its share of the guest memory map's
    // reclamation list, in arc-swap), and a loaded host may schedule a thread's first
    // event late, during the measurement.
    for q in 0..fe.queues.len() {
        let r = fe.call(q, Opcode::Nop, 0, &[], Layout::Direct).unwrap();
        assert_eq!(r.status(), Some(Status::Ok));
    }

    let (inline, at) = allocations(&mut fe, session, 1024, 500);
    assert_eq!(
        inline, 0,
        "4 KiB vadd on the queue thread allocated {inline} times in 500 requests:\n{at}"
    );
    let (deferred, at) = allocations(&mut fe, session, 256 * 1024, 100);
    assert_eq!(
        deferred, 0,
        "1 MiB vadd on the engine threads allocated {deferred} times in 100 requests:\n{at}"
    );

    drop(fe);
    server.shutdown(Duration::from_secs(10));
}

fn on_a_stream() {
    use std::io::{Read, Write};
    use vfpga_proto::stream::{read_response, write_request};
    use vfpga_proto::{ArgEntry, RequestHeader};

    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("vm0.stream");
    let mut guest = GuestConfig::named("vm0");
    guest.listen = vec![format!("unix:{}", socket.display())];
    let config = Config {
        guests: vec![guest],
        ..Config::default()
    };
    config.validate().unwrap();
    let server = Server::start(&config, Arc::new(SimEngine::new(None).unwrap())).unwrap();
    let mut c = std::os::unix::net::UnixStream::connect(&socket).unwrap();
    write_request(
        &mut c,
        &RequestHeader::new(Opcode::OpenSession, 1, 0, 1),
        &[ArgEntry::input(ElemType::U8, 8)],
    )
    .unwrap();
    c.write_all(b"vadd_u32").unwrap();
    let session = read_response(&mut c).unwrap().value;
    for elems in [1024usize, 256 * 1024] {
        let a: Vec<u8> = (0..elems as u32).flat_map(|x| x.to_le_bytes()).collect();
        let mut out = vec![0u8; elems * 4];
        let args = [
            ArgEntry::input(ElemType::U32, a.len() as u64),
            ArgEntry::input(ElemType::U32, a.len() as u64),
            ArgEntry::output(ElemType::U32, out.len() as u64),
            ArgEntry::scalar(ElemType::U32, elems as u64),
        ];
        let hdr = RequestHeader::new(Opcode::Run, 2, session, 4);
        let mut one = |c: &mut std::os::unix::net::UnixStream| {
            write_request(c, &hdr, &args).unwrap();
            c.write_all(&a).unwrap();
            c.write_all(&a).unwrap();
            let r = read_response(c).unwrap();
            assert_eq!(r.status(), Some(Status::Ok));
            c.read_exact(&mut out).unwrap();
        };
        for _ in 0..20 {
            one(&mut c);
        }
        let (count, at) = measure(|| {
            for _ in 0..100 {
                one(&mut c);
            }
        });
        assert_eq!(
            count, 0,
            "{elems}-element vadd on a stream allocated {count} times in 100 requests:\n{at}"
        );
        assert_eq!(&out[..8], &[0, 0, 0, 0, 2, 0, 0, 0], "results are real");
    }
    drop(c);
    server.shutdown(Duration::from_secs(10));
}

/// The guest library's run on a stream: the client side of a request allocates nothing
/// either (the daemon, in this process too, is counted with it).
fn through_the_guest_library() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("vm0.stream");
    let mut guest = GuestConfig::named("vm0");
    guest.listen = vec![format!("unix:{}", socket.display())];
    let config = Config {
        guests: vec![guest],
        ..Config::default()
    };
    config.validate().unwrap();
    let server = Server::start(&config, Arc::new(SimEngine::new(None).unwrap())).unwrap();
    let dev = vfpga::Device::open(format!("unix:{}", socket.display())).unwrap();
    let vadd = dev.session("vadd_u32").unwrap();
    let a: Vec<u32> = (0..1024).collect();
    let mut c = vec![0u32; 1024];
    let mut one = || {
        vadd.run(&mut [
            vfpga::Arg::input(&a),
            vfpga::Arg::input(&a),
            vfpga::Arg::output(&mut c),
            vfpga::Arg::scalar(ElemType::U32, 1024),
        ])
        .unwrap();
    };
    for _ in 0..20 {
        one();
    }
    let (count, at) = measure(|| {
        for _ in 0..100 {
            one();
        }
    });
    assert_eq!(
        count, 0,
        "Session::run on a stream allocated {count} times in 100 requests:\n{at}"
    );
    assert_eq!(&c[..3], &[0, 2, 4], "results are real");
    drop(vadd);
    drop(dev);
    server.shutdown(Duration::from_secs(10));
}
