//! Guests as tenants, against the real daemon: what a guest's policy lets it see and do
//! (kernels, bitstreams), the limits it can read back, and quotas that hold across all
//! of a guest's ways in (its virtio device and its streams) without touching another
//! guest.
#![allow(clippy::unwrap_used, clippy::cast_possible_truncation)]

mod common;

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use common::Daemon;
use vfpga_proto::stream::{read_response, write_request};
use vfpga_proto::*;
use vfpga_vhu_frontend::{Arg, Layout, VhuFrontend};

/// A sim bitstream the library offers besides the built-in catalogue: two kernels.
const EXTRA: &str = r#"
[bitstream]
name = "extra"
[[kernel]]
name = "vadd_u32"
sim = "vadd_u32"
args = [
  { name = "a", kind = "in", type = "u32", dims = ["n"] },
  { name = "b", kind = "in", type = "u32", dims = ["n"] },
  { name = "c", kind = "out", type = "u32", dims = ["n"] },
  { name = "n", kind = "scalar", type = "u32" },
]
[[kernel]]
name = "sha256"
sim = "sha256"
args = [
  { name = "data", kind = "in", type = "u8", dims = ["n"] },
  { name = "digest", kind = "out", type = "u8", count = 32 },
  { name = "n", kind = "scalar", type = "u64" },
]
"#;

/// vfpgad with `toml` as its configuration (plus paths under its folder): returns the
/// daemon; guests' sockets are `<dir>/<name>.sock` and streams `<dir>/<name>.stream`.
fn daemon(guests: &[&str], toml: &str) -> Daemon {
    let dir = tempfile::tempdir().unwrap();
    let lib = dir.path().join("lib");
    std::fs::create_dir_all(&lib).unwrap();
    std::fs::write(lib.join("extra.toml"), EXTRA).unwrap();
    let text = toml
        .replace("@DIR@", &dir.path().display().to_string())
        .replace("@LIB@", &lib.display().to_string());
    let config = dir.path().join("vfpgad.toml");
    std::fs::write(&config, text).unwrap();
    let wait = guests
        .iter()
        .flat_map(|g| {
            [
                dir.path().join(format!("{g}.sock")),
                dir.path().join(format!("{g}.stream")),
            ]
        })
        .collect();
    Daemon::launch(
        dir,
        wait,
        &["--config".into(), config.display().to_string()],
    )
}

fn guest(name: &str, extra: &str) -> String {
    format!(
        "\n[[guest]]\nname = \"{name}\"\nsocket = \"@DIR@/{name}.sock\"\nlisten = [\"unix:@DIR@/{name}.stream\"]\n{extra}\n"
    )
}

fn control(fe: &mut VhuFrontend, op: Opcode, args: &[Arg<'_>]) -> vfpga_vhu_frontend::Reply {
    fe.call(0, op, 0, args, Layout::Direct).unwrap()
}

fn limits(fe: &mut VhuFrontend) -> Limits {
    let r = control(
        fe,
        Opcode::GetLimits,
        &[Arg::Out(ElemType::U8, Limits::SIZE)],
    );
    assert_eq!(r.status(), Some(Status::Ok));
    Limits::from_bytes(&r.outputs[0].clone().try_into().unwrap())
}

fn kernel_names(fe: &mut VhuFrontend) -> Vec<String> {
    let r = control(
        fe,
        Opcode::ListKernels,
        &[
            Arg::Scalar(ElemType::U32, 0),
            Arg::Out(ElemType::U8, 16 * KernelDesc::SIZE),
        ],
    );
    assert_eq!(r.status(), Some(Status::Ok));
    let n = r.resp.written as usize / KernelDesc::SIZE;
    assert_eq!(
        n as u64, r.resp.value,
        "the total counts what the guest may see"
    );
    r.outputs[0][..n * KernelDesc::SIZE]
        .chunks(KernelDesc::SIZE)
        .map(|c| {
            let d = KernelDesc::from_bytes(c.try_into().unwrap());
            wire::name_str(&d.name).unwrap().to_owned()
        })
        .collect()
}

fn stream(dir: &Path, g: &str) -> UnixStream {
    UnixStream::connect(dir.join(format!("{g}.stream"))).unwrap()
}

/// One request on a stream: its response (outputs read and dropped).
fn call(
    s: &mut UnixStream,
    op: Opcode,
    session: u64,
    args: &[ArgEntry],
    inputs: &[u8],
) -> Response {
    write_request(s, &RequestHeader::new(op, 1, session, args.len()), args).unwrap();
    s.write_all(inputs).unwrap();
    let r = read_response(s).unwrap();
    if r.status() == Some(Status::Ok) {
        std::io::copy(
            &mut std::io::Read::take(&mut *s, r.written),
            &mut std::io::sink(),
        )
        .unwrap();
    }
    r
}

fn open_on(s: &mut UnixStream, kernel: &str) -> Response {
    call(
        s,
        Opcode::OpenSession,
        0,
        &[ArgEntry::input(ElemType::U8, kernel.len() as u64)],
        kernel.as_bytes(),
    )
}

/// A 4-element vadd on a stream.
fn vadd(s: &mut UnixStream, session: u64) -> Response {
    let a = [1u8; 16];
    call(
        s,
        Opcode::Run,
        session,
        &[
            ArgEntry::input(ElemType::U32, 16),
            ArgEntry::input(ElemType::U32, 16),
            ArgEntry::output(ElemType::U32, 16),
            ArgEntry::scalar(ElemType::U32, 4),
        ],
        &[a, a].concat(),
    )
}

#[test]
fn a_guest_sees_and_does_what_its_policy_says() {
    let toml = format!(
        "[library]\ndir = \"@LIB@\"\nallow = [\"extra\"]\n{}{}",
        guest(
            "vm0",
            "kernels = [\"vadd_u32\", \"sha256\"]\nbitstreams = [\"extra\"]\nmax_inflight = 5\nmax_inflight_bytes = 1000000\nrate_runs = 700\nweight = 3\nmax_sessions = 9"
        ),
        guest("vm1", "")
    );
    let d = daemon(&["vm0", "vm1"], &toml);
    let dir = d.dir.path().to_owned();
    let mut fe0 = VhuFrontend::connect(&dir.join("vm0.sock"), Default::default()).unwrap();
    let mut fe1 = VhuFrontend::connect(&dir.join("vm1.sock"), Default::default()).unwrap();
    assert_eq!(kernel_names(&mut fe0), ["vadd_u32", "sha256"]);
    assert_eq!(kernel_names(&mut fe1).len(), 6, "vm1: every kernel");
    let info = control(
        &mut fe0,
        Opcode::GetInfo,
        &[Arg::Out(ElemType::U8, DeviceInfo::SIZE)],
    );
    assert_eq!(
        DeviceInfo::from_bytes(&info.outputs[0].clone().try_into().unwrap()).num_kernels,
        2
    );
    // A kernel outside its list: PERMISSION, on the virtio device and on a stream.
    let r = control(
        &mut fe0,
        Opcode::OpenSession,
        &[Arg::In(ElemType::U8, b"mmult")],
    );
    assert_eq!(r.status(), Some(Status::Permission));
    assert_eq!(
        open_on(&mut stream(&dir, "vm0"), "mmult").status(),
        Some(Status::Permission)
    );
    assert_eq!(
        open_on(&mut stream(&dir, "vm1"), "mmult").status(),
        Some(Status::Ok)
    );
    // What it can read back.
    let l = limits(&mut fe0);
    assert_eq!(
        (
            l.max_inflight,
            l.max_inflight_bytes,
            l.rate_runs,
            l.rate_bytes,
            l.weight,
            l.max_sessions
        ),
        (5, 1_000_000, 700, 0, 3, 9)
    );
    assert_eq!(l.flags, LIMIT_F_LOAD, "may load, not every kernel");
    let l1 = limits(&mut fe1);
    assert_eq!(l1.flags, LIMIT_F_ALL_KERNELS, "vm1: every kernel, no loads");
    assert_eq!((l1.max_inflight, l1.weight), (64, 1), "[device] defaults");
    // Loads: vm1 may load nothing (the default); vm0 may load `extra`.
    let load = |fe: &mut VhuFrontend, name: &[u8]| {
        control(fe, Opcode::LoadBitstream, &[Arg::In(ElemType::U8, name)]).status()
    };
    assert_eq!(load(&mut fe1, b"extra"), Some(Status::Permission));
    assert_eq!(
        load(&mut fe0, b"sim-base"),
        Some(Status::Permission),
        "not in its list"
    );
    assert_eq!(load(&mut fe0, b"extra"), Some(Status::Ok));
    assert_eq!(
        kernel_names(&mut fe1),
        ["vadd_u32", "sha256"],
        "the catalogue changed for all"
    );
    // Refusals are counted in the device's statistics.
    let st = control(
        &mut fe0,
        Opcode::GetStats,
        &[Arg::Out(ElemType::U8, Stats::SIZE)],
    );
    let st = Stats::from_bytes(&st.outputs[0].clone().try_into().unwrap());
    assert!(st.errors >= 2, "{st:?}");
}

#[test]
fn a_rate_limit_refuses_what_goes_past_it() {
    let toml = guest("vm0", "rate_runs = 2") + &guest("vm1", "");
    let d = daemon(&["vm0", "vm1"], &toml);
    let dir = d.dir.path().to_owned();
    let mut s = stream(&dir, "vm0");
    let session = open_on(&mut s, "vadd_u32").value;
    let start = Instant::now();
    let mut ok = 0u64;
    let mut busy = 0u64;
    for _ in 0..20 {
        match vadd(&mut s, session).status() {
            Some(Status::Ok) => ok += 1,
            Some(Status::Busy) => busy += 1,
            other => panic!("{other:?}"),
        }
    }
    // The bucket starts with a second's worth (2) and refills 2 a second: however long
    // the loop took, no more than that got through.
    let allowed = 2 + (start.elapsed().as_secs_f64() * 2.0).ceil() as u64;
    assert!(
        ok <= allowed,
        "{ok} runs passed a rate of 2/s in {:?}",
        start.elapsed()
    );
    assert!(busy > 0 && ok >= 1, "ok {ok}, busy {busy}");
    // The other guest has its own rate (none).
    let mut s1 = stream(&dir, "vm1");
    let s1s = open_on(&mut s1, "vadd_u32").value;
    for _ in 0..20 {
        assert_eq!(vadd(&mut s1, s1s).status(), Some(Status::Ok));
    }
}

#[test]
fn runs_in_flight_are_bounded_per_guest_across_its_devices_and_streams() {
    use vfpga_engine::pl::model::{Faults, ModelBoard};
    let board_dir = tempfile::tempdir().unwrap();
    let board = ModelBoard::start(board_dir.path(), &["mmult", "vadd_u32"], 600_000).unwrap();
    let toml = format!(
        "[daemon]\nengine = \"pl\"\n[library]\ndir = {:?}\nallow = [\"base\"]\n[pl]\nroot = {:?}\nbitstream = \"base\"\n{}{}",
        board.library,
        board.root,
        guest("vm0", "max_inflight = 1"),
        guest("vm1", "max_inflight = 1")
    );
    let d = daemon(&["vm0", "vm1"], &toml);
    let dir = d.dir.path().to_owned();
    // vm0's virtio device runs an mmult the model's core holds.
    board.model.set_faults(Faults {
        hold: vec!["mmult".into()],
        ..Faults::default()
    });
    let mut fe = VhuFrontend::connect(&dir.join("vm0.sock"), Default::default()).unwrap();
    let mm = control(
        &mut fe,
        Opcode::OpenSession,
        &[Arg::In(ElemType::U8, b"mmult")],
    )
    .resp
    .value;
    let a = vec![0u8; 16 * 16 * 4];
    let long = fe
        .prepare(
            1,
            Opcode::Run,
            mm,
            &[
                Arg::In(ElemType::F32, &a),
                Arg::In(ElemType::F32, &a),
                Arg::Out(ElemType::F32, a.len()),
                Arg::Scalar(ElemType::U32, 16),
                Arg::Scalar(ElemType::U32, 16),
                Arg::Scalar(ElemType::U32, 16),
            ],
            Layout::Direct,
        )
        .unwrap();
    fe.start_prepared(&long).unwrap();
    board
        .model
        .wait_event("held", Duration::from_secs(60))
        .unwrap();
    assert_eq!(limits(&mut fe).inflight, 1);
    // Its stream is the same guest: its one run in flight is taken.
    let mut s = stream(&dir, "vm0");
    let va = open_on(&mut s, "vadd_u32").value;
    assert_eq!(vadd(&mut s, va).status(), Some(Status::Busy));
    // Another guest is not held back.
    let mut s1 = stream(&dir, "vm1");
    let va1 = open_on(&mut s1, "vadd_u32").value;
    assert_eq!(vadd(&mut s1, va1).status(), Some(Status::Ok));
    // Released: the held run completes, and vm0's quota is free again.
    board.model.set_faults(Faults::default());
    fe.queues[1]
        .wait_used(&fe.mem, Duration::from_secs(60))
        .unwrap();
    assert_eq!(fe.response(&long).unwrap().status(), Some(Status::Ok));
    assert_eq!(vadd(&mut s, va).status(), Some(Status::Ok));
    assert_eq!(limits(&mut fe).inflight, 0);
}

/// Submits `p` on its queue, then a `NOP` behind it on the same queue, and waits for the
/// `NOP`: the queue's thread takes chains in order, so every run before it has been
/// decoded and handed to the scheduler.
fn submitted(fe: &mut VhuFrontend, q: usize, runs: &[vfpga_vhu_frontend::Prepared]) {
    for p in runs {
        fe.start_prepared(p).unwrap();
    }
    let nop = fe.prepare(q, Opcode::Nop, 0, &[], Layout::Direct).unwrap();
    let head = fe.start_prepared(&nop).unwrap();
    let (used, _) = fe.queues[q]
        .wait_used(&fe.mem, Duration::from_secs(60))
        .unwrap();
    assert_eq!(used, head, "the NOP is the first answer: the runs wait");
}

#[test]
fn a_guest_flooding_the_engine_delays_another_by_one_run_at_most() {
    use vfpga_engine::pl::model::{Faults, ModelBoard};
    let board_dir = tempfile::tempdir().unwrap();
    let board = ModelBoard::start(board_dir.path(), &["mmult", "vadd_u32"], 600_000).unwrap();
    // One engine thread: the engine runs one kernel at a time, so the order the model
    // completes runs in is the order the scheduler chose.
    let toml = format!(
        "[daemon]\nengine = \"pl\"\nengine_threads = 1\n[library]\ndir = {:?}\nallow = [\"base\"]\n[pl]\nroot = {:?}\nbitstream = \"base\"\n{}{}",
        board.library,
        board.root,
        guest("flood", ""),
        guest("quiet", "")
    );
    let d = daemon(&["flood", "quiet"], &toml);
    let dir = d.dir.path().to_owned();
    board.model.set_faults(Faults {
        hold: vec!["mmult".into()],
        ..Faults::default()
    });
    // `flood` queues twenty mmults; the first is on the core, held.
    let mut fa = VhuFrontend::connect(&dir.join("flood.sock"), Default::default()).unwrap();
    let mm = control(
        &mut fa,
        Opcode::OpenSession,
        &[Arg::In(ElemType::U8, b"mmult")],
    )
    .resp
    .value;
    let m = vec![0u8; 16 * 16 * 4];
    let runs: Vec<_> = (0..20)
        .map(|_| {
            fa.prepare(
                1,
                Opcode::Run,
                mm,
                &[
                    Arg::In(ElemType::F32, &m),
                    Arg::In(ElemType::F32, &m),
                    Arg::Out(ElemType::F32, m.len()),
                    Arg::Scalar(ElemType::U32, 16),
                    Arg::Scalar(ElemType::U32, 16),
                    Arg::Scalar(ElemType::U32, 16),
                ],
                Layout::Direct,
            )
            .unwrap()
        })
        .collect();
    submitted(&mut fa, 1, &runs);
    board
        .model
        .wait_event("held", Duration::from_secs(60))
        .unwrap();
    // `quiet` asks for one vadd behind them.
    let mut fb = VhuFrontend::connect(&dir.join("quiet.sock"), Default::default()).unwrap();
    let va = control(
        &mut fb,
        Opcode::OpenSession,
        &[Arg::In(ElemType::U8, b"vadd_u32")],
    )
    .resp
    .value;
    let (x, y) = ([3u8; 64], [4u8; 64]);
    let vadd = fb
        .prepare(
            1,
            Opcode::Run,
            va,
            &[
                Arg::In(ElemType::U32, &x),
                Arg::In(ElemType::U32, &y),
                Arg::Out(ElemType::U32, 64),
                Arg::Scalar(ElemType::U32, 16),
            ],
            Layout::Direct,
        )
        .unwrap();
    submitted(&mut fb, 1, std::slice::from_ref(&vadd));
    board.model.set_faults(Faults::default());
    fb.queues[1]
        .wait_used(&fb.mem, Duration::from_secs(60))
        .unwrap();
    assert_eq!(fb.response(&vadd).unwrap().status(), Some(Status::Ok));
    // 0x03030303 + 0x04040404 in every word.
    assert_eq!(fb.output(&vadd, 0).unwrap(), [7u8; 64]);
    for _ in 0..20 {
        fa.queues[1]
            .wait_used(&fa.mem, Duration::from_secs(60))
            .unwrap();
    }
    for p in &runs {
        assert_eq!(fa.response(p).unwrap().status(), Some(Status::Ok));
    }
    // The vadd ran right after the mmult that was on the engine when it came, not after
    // the nineteen queued before it (one FIFO for all guests ran it last).
    let order = board.model.completions();
    assert_eq!(order.len(), 21, "{order:?}");
    let at = order.iter().position(|c| c == "vadd_u32");
    assert_eq!(at, Some(1), "{order:?}");
}
