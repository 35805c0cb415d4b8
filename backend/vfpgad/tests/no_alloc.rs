//! The warm request path allocates nothing: a counting global allocator watches the
//! whole process (daemon threads and test frontend alike) while `vadd` requests run,
//! both on the queue's own thread (small) and on the engine threads (1 MiB), and on a
//! stream connection (a unix socket, the host end of a userspace vsock device).
#![allow(clippy::unwrap_used, clippy::cast_possible_truncation)]

use std::alloc::{GlobalAlloc, Layout as AllocLayout, System};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use vfpga_engine::sim::SimEngine;
use vfpga_proto::{ElemType, Opcode, Status};
use vfpga_vhu_frontend::{Arg, Layout, VhuFrontend};
use vfpgad::config::GuestConfig;
use vfpgad::{Config, Server};

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: AllocLayout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: AllocLayout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: AllocLayout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// The counter is the whole process's: one test at a time.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Allocations made while `n` runs of the prepared `vadd` of `elems` elements go through.
fn allocations(fe: &mut VhuFrontend, session: u64, elems: usize, n: usize) -> u64 {
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
    let before = ALLOCS.load(Ordering::SeqCst);
    for _ in 0..n {
        let (resp, _) = fe.run_prepared(&p).unwrap();
        assert_eq!(resp.status(), Some(Status::Ok));
    }
    let count = ALLOCS.load(Ordering::SeqCst) - before;
    let out = fe.output(&p, 0).unwrap();
    assert_eq!(&out[..8], &[0, 0, 0, 0, 2, 0, 0, 0], "results are real");
    fe.mem.release_to(p.mark);
    count
}

#[test]
fn warm_vadd_requests_allocate_nothing() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
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

    let inline = allocations(&mut fe, session, 1024, 500);
    assert_eq!(
        inline, 0,
        "4 KiB vadd on the queue thread allocated {inline} times in 500 requests"
    );
    let deferred = allocations(&mut fe, session, 256 * 1024, 100);
    assert_eq!(
        deferred, 0,
        "1 MiB vadd on the engine threads allocated {deferred} times in 100 requests"
    );

    drop(fe);
    server.shutdown(Duration::from_secs(10));
}

#[test]
fn warm_vadd_requests_on_a_stream_allocate_nothing() {
    use std::io::{Read, Write};
    use vfpga_proto::stream::{read_response, write_request};
    use vfpga_proto::{ArgEntry, RequestHeader};

    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
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
        let before = ALLOCS.load(Ordering::SeqCst);
        for _ in 0..100 {
            one(&mut c);
        }
        let count = ALLOCS.load(Ordering::SeqCst) - before;
        assert_eq!(
            count, 0,
            "{elems}-element vadd on a stream allocated {count} times in 100 requests"
        );
        assert_eq!(&out[..8], &[0, 0, 0, 0, 2, 0, 0, 0], "results are real");
    }
    drop(c);
    server.shutdown(Duration::from_secs(10));
}
