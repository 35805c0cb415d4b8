//! Time-sharing the fabric between bitstreams, against the real daemon on the pl engine
//! and the register-level model: two guests whose kernels come from two bitstreams
//! (`base` with `vadd_u32`, `alt` with `mmult`) both make progress; the daemon batches
//! their runs by bitstream and reprograms between batches, at most as often as the
//! minimum slice allows; sessions opened as `BITSTREAM/KERNEL` survive every switch.
#![allow(clippy::unwrap_used, clippy::cast_possible_truncation)]

mod common;

use std::time::Duration;

use common::Daemon;
use vfpga::{Arg as GArg, Device};
use vfpga_engine::pl::model::{Faults, ModelBoard};
use vfpga_proto::*;
use vfpga_reference::{self as reference, le, Rng};
use vfpga_vhu_frontend::{Arg, Layout, Prepared, VhuFrontend};

struct Board {
    board: ModelBoard,
    d: Daemon,
    _dir: tempfile::TempDir,
}

/// The model with bitstreams `base` (vadd_u32) and `alt` (mmult), both shared, and
/// vfpgad (one engine thread) serving guests `a` and `b` on virtio and unix streams.
fn board(min_slice_ms: u64) -> Board {
    let dir = tempfile::tempdir().unwrap();
    let board = ModelBoard::start_with(
        dir.path(),
        &[("base", &["vadd_u32"]), ("alt", &["mmult"])],
        600_000,
    )
    .unwrap();
    let run = tempfile::tempdir().unwrap();
    let r = run.path();
    let mut toml = format!(
        "[daemon]\nengine = \"pl\"\nengine_threads = 1\n\
         [library]\ndir = {:?}\nallow = [\"base\", \"alt\"]\nshare = [\"base\", \"alt\"]\nmin_slice_ms = {min_slice_ms}\n\
         [pl]\nroot = {:?}\nbitstream = \"base\"\n",
        board.library, board.root
    );
    for g in ["a", "b"] {
        toml.push_str(&format!(
            "[[guest]]\nname = \"{g}\"\nsocket = {:?}\nlisten = [\"unix:{}\"]\n",
            r.join(format!("{g}.sock")),
            r.join(format!("{g}.stream")).display()
        ));
    }
    std::fs::write(r.join("vfpgad.toml"), toml).unwrap();
    // Every listener, streams included (they are bound after the vhost-user sockets).
    let wait = ["a.sock", "b.sock", "a.stream", "b.stream"]
        .map(|f| r.join(f))
        .to_vec();
    let config = r.join("vfpgad.toml").display().to_string();
    let d = Daemon::launch(run, wait, &["--config".into(), config]);
    Board {
        board,
        d,
        _dir: dir,
    }
}

const N: usize = 64;
const M: usize = 12;

/// `count` runs of `kernel` prepared on queue 1, with their expected first output.
fn prepare(
    fe: &mut VhuFrontend,
    kernel: &str,
    count: usize,
    rng: &mut Rng,
) -> Vec<(Prepared, Vec<u8>)> {
    let s = common::open(fe, kernel);
    (0..count)
        .map(|_| {
            if kernel.ends_with("vadd_u32") {
                let a: Vec<u32> = (0..N).map(|_| rng.next() as u32).collect();
                let b: Vec<u32> = (0..N).map(|_| rng.next() as u32).collect();
                let (ab, bb) = (le(&a, u32::to_le_bytes), le(&b, u32::to_le_bytes));
                let p = fe
                    .prepare(
                        1,
                        Opcode::Run,
                        s,
                        &[
                            Arg::In(ElemType::U32, &ab),
                            Arg::In(ElemType::U32, &bb),
                            Arg::Out(ElemType::U32, N * 4),
                            Arg::Scalar(ElemType::U32, N as u64),
                        ],
                        Layout::Direct,
                    )
                    .unwrap();
                (p, le(&reference::vadd_u32(&a, &b), u32::to_le_bytes))
            } else {
                let a: Vec<f32> = (0..M * M)
                    .map(|_| (rng.next() % 100) as f32 / 4.0)
                    .collect();
                let ab = le(&a, f32::to_le_bytes);
                let p = fe
                    .prepare(
                        1,
                        Opcode::Run,
                        s,
                        &[
                            Arg::In(ElemType::F32, &ab),
                            Arg::In(ElemType::F32, &ab),
                            Arg::Out(ElemType::F32, M * M * 4),
                            Arg::Scalar(ElemType::U32, M as u64),
                            Arg::Scalar(ElemType::U32, M as u64),
                            Arg::Scalar(ElemType::U32, M as u64),
                        ],
                        Layout::Direct,
                    )
                    .unwrap();
                (p, le(&reference::mmult(&a, &a, M, M, M), f32::to_le_bytes))
            }
        })
        .collect()
}

/// Submits the runs, then a NOP behind them on the same queue, and waits for the NOP:
/// the queue's thread takes chains in order, so every run has reached the scheduler.
fn submit(fe: &mut VhuFrontend, runs: &[(Prepared, Vec<u8>)]) {
    for (p, _) in runs {
        fe.start_prepared(p).unwrap();
    }
    let nop = fe.prepare(1, Opcode::Nop, 0, &[], Layout::Direct).unwrap();
    let head = fe.start_prepared(&nop).unwrap();
    let (used, _) = fe.queues[1]
        .wait_used(&fe.mem, Duration::from_secs(60))
        .unwrap();
    assert_eq!(used, head, "the NOP is answered first: the runs wait");
}

fn finish(fe: &mut VhuFrontend, runs: &[(Prepared, Vec<u8>)]) {
    for _ in runs {
        fe.queues[1]
            .wait_used(&fe.mem, Duration::from_secs(120))
            .unwrap();
    }
    for (p, want) in runs {
        assert_eq!(fe.response(p).unwrap().status(), Some(Status::Ok));
        assert_eq!(&fe.output(p, 0).unwrap(), want, "bit-exact");
    }
}

/// Guest a queues ten `base/vadd_u32`, guest b ten `alt/mmult`, all behind a held run;
/// returns the order the model completed them in and the times it was programmed.
fn two_guests(min_slice_ms: u64) -> (Vec<String>, u64) {
    let b = board(min_slice_ms);
    let dir = b.d.dir.path().to_owned();
    let programmed_at_start = b.board.model.programmed();
    b.board.model.set_faults(Faults {
        hold: vec!["vadd_u32".into()],
        ..Faults::default()
    });
    let mut rng = Rng(31);
    let mut fa = VhuFrontend::connect(&dir.join("a.sock"), Default::default()).unwrap();
    let ra = prepare(&mut fa, "base/vadd_u32", 10, &mut rng);
    submit(&mut fa, &ra);
    b.board
        .model
        .wait_event("held", Duration::from_secs(60))
        .unwrap();
    let mut fb = VhuFrontend::connect(&dir.join("b.sock"), Default::default()).unwrap();
    let rb = prepare(&mut fb, "alt/mmult", 10, &mut rng);
    submit(&mut fb, &rb);
    b.board.model.set_faults(Faults::default());
    finish(&mut fa, &ra);
    finish(&mut fb, &rb);
    let events = b.board.model.events();
    assert!(!events.iter().any(|e| e.contains("lost")), "{events:?}");
    (
        b.board.model.completions(),
        b.board.model.programmed() - programmed_at_start,
    )
}

#[test]
fn runs_of_two_bitstreams_are_batched_with_a_long_slice() {
    let (order, programmed) = two_guests(600_000);
    assert_eq!(order[..10], ["vadd_u32"; 10], "{order:?}");
    assert_eq!(order[10..], ["mmult"; 10], "{order:?}");
    assert_eq!(programmed, 1, "one switch, base to alt");
}

#[test]
fn without_a_slice_the_fabric_follows_the_guests_turns() {
    let (order, programmed) = two_guests(0);
    // a's held vadd, then the guests alternate (each switch a reprogramming).
    assert_eq!(order, ["vadd_u32", "mmult"].repeat(10), "{order:?}");
    assert_eq!(programmed, 19, "{order:?}");
}

#[test]
fn shared_kernels_are_listed_and_survive_loads_on_streams() {
    let b = board(100);
    let dir = b.d.dir.path().to_owned();
    let at_start = b.board.model.programmed();
    let dev = Device::open(format!("unix:{}", dir.join("a.stream").display())).unwrap();
    let names: Vec<String> = dev.kernels().unwrap().into_iter().map(|k| k.name).collect();
    assert_eq!(names, ["vadd_u32", "base/vadd_u32", "alt/mmult"]);
    let plain = dev.session("vadd_u32").unwrap();
    let (va, mm) = (
        dev.session("base/vadd_u32").unwrap(),
        dev.session("alt/mmult").unwrap(),
    );
    let mut rng = Rng(32);
    for _ in 0..3 {
        let a: Vec<u32> = (0..N).map(|_| rng.next() as u32).collect();
        let mut c = vec![0u32; N];
        va.run(&mut [
            GArg::input(&a),
            GArg::input(&a),
            GArg::output(&mut c),
            GArg::scalar(ElemType::U32, N as u64),
        ])
        .unwrap();
        assert_eq!(c, reference::vadd_u32(&a, &a));
        let x: Vec<f32> = (0..M * M).map(|_| (rng.next() % 50) as f32).collect();
        let mut y = vec![0f32; M * M];
        mm.run(&mut [
            GArg::input(&x),
            GArg::input(&x),
            GArg::output(&mut y),
            GArg::scalar(ElemType::U32, M as u64),
            GArg::scalar(ElemType::U32, M as u64),
            GArg::scalar(ElemType::U32, M as u64),
        ])
        .unwrap();
        assert_eq!(y, reference::mmult(&x, &x, M, M, M));
    }
    // The session bound to the catalogue loaded when it opened lost its kernel at the
    // first switch, as every load does to such sessions.
    let a = vec![1u32; N];
    let mut c = vec![0u32; N];
    let e = plain
        .run(&mut [
            GArg::input(&a),
            GArg::input(&a),
            GArg::output(&mut c),
            GArg::scalar(ElemType::U32, N as u64),
        ])
        .unwrap_err();
    assert_eq!(e.status(), Some(Status::UnknownKernel), "{e}");
    // base was loaded; then alt, base, alt, base, alt.
    assert_eq!(
        b.board.model.programmed() - at_start,
        5,
        "base and alt took turns"
    );
}
