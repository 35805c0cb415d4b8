//! A stream guest across vfpgad restarts: the guest library connects again, reopens
//! its sessions and sends an interrupted request once more, so a program sees no
//! error; a request interrupted twice fails instead of being tried a third time.
//! vfpgad is killed with SIGKILL (no chance to say goodbye); runs are held in flight
//! on the pl engine's register-level model, so "killed during a run" is certain, not
//! a matter of timing.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{Daemon, PlDaemon};
use vfpga::{Arg, Device, Options, Session};
use vfpga_proto::ElemType;

/// Long enough for a loaded machine to start vfpgad again.
const WINDOW: Duration = Duration::from_secs(120);

fn options(reconnect: Duration) -> Options {
    Options {
        reconnect,
        ..Options::default()
    }
}

/// vfpgad (sim engine) serving guest `vm0` on a unix stream socket only.
fn sim_daemon() -> (Daemon, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let stream = dir.path().join("vm0.stream");
    let args = [
        "--listen".to_owned(),
        format!("vm0=unix:{}", stream.display()),
    ];
    (Daemon::launch(dir, vec![stream.clone()], &args), stream)
}

fn uri(p: &Path) -> String {
    format!("unix:{}", p.display())
}

/// Runs `vadd_u32` on `n` elements and checks the sums.
fn vadd(s: &Session<'_>, n: u32, seed: u32) -> Result<(), vfpga::Error> {
    let a: Vec<u32> = (0..n).map(|i| i.wrapping_mul(seed)).collect();
    let b: Vec<u32> = (0..n).map(|i| i ^ seed).collect();
    let mut c = vec![0u32; n as usize];
    s.run(&mut [
        Arg::input(&a),
        Arg::input(&b),
        Arg::output(&mut c),
        Arg::scalar(ElemType::U32, u64::from(n)),
    ])?;
    for i in 0..n as usize {
        assert_eq!(c[i], a[i].wrapping_add(b[i]), "element {i}");
    }
    Ok(())
}

fn kill(d: &mut Daemon) {
    d.signal_and_wait(libc::SIGKILL, Duration::from_secs(30))
        .expect("vfpgad dies on SIGKILL");
}

#[test]
fn a_restart_between_runs_is_invisible_and_sessions_are_reopened() {
    let (mut d, stream) = sim_daemon();
    let dev = Device::open_with(uri(&stream), &options(WINDOW)).unwrap();
    let vadd_s = dev.session("vadd_u32").unwrap();
    let sha = dev.session("sha256").unwrap();
    vadd(&vadd_s, 1000, 3).unwrap();
    kill(&mut d);
    std::thread::scope(|t| {
        // The run starts while vfpgad is down (its socket file left behind): it waits
        // for the new process.
        let run = t.spawn(|| vadd(&vadd_s, 4096, 7));
        d.relaunch();
        run.join().unwrap().unwrap();
    });
    assert_eq!(dev.reconnects(), 1);
    // Both sessions were reopened on the new connection, not only the one used.
    let data = b"abc".to_vec();
    let mut digest = [0u8; 32];
    sha.run(&mut [
        Arg::input(&data),
        Arg::output(&mut digest),
        Arg::scalar(ElemType::U64, 3),
    ])
    .unwrap();
    assert_eq!(digest.to_vec(), vfpga_reference::sha256(&data));
    let stats = vadd_s.stats().unwrap();
    assert_eq!(
        stats.runs, 1,
        "the new vfpgad counts the reopened session's runs"
    );
    vadd_s.close().unwrap();
    sha.close().unwrap();
    assert_eq!(dev.reconnects(), 1);
}

#[test]
fn with_reconnecting_off_a_restart_fails_the_next_request() {
    let (mut d, stream) = sim_daemon();
    let dev = Device::open_with(uri(&stream), &options(Duration::ZERO)).unwrap();
    let s = dev.session("vadd_u32").unwrap();
    vadd(&s, 16, 1).unwrap();
    kill(&mut d);
    d.relaunch();
    let e = vadd(&s, 16, 1).unwrap_err();
    assert!(matches!(e, vfpga::Error::Link { .. }), "{e}");
    let e = dev.nop().unwrap_err().to_string();
    assert!(e.contains("reconnecting is off"), "{e}");
}

#[test]
fn a_vfpgad_that_does_not_come_back_is_reported_after_the_window() {
    let (mut d, stream) = sim_daemon();
    let dev = Device::open_with(uri(&stream), &options(Duration::from_millis(300))).unwrap();
    dev.nop().unwrap();
    kill(&mut d);
    let t = Instant::now();
    let e = dev.nop().unwrap_err().to_string();
    assert!(e.contains("did not come back within 0.3 s"), "{e}");
    assert!(e.contains("nothing listens there"), "{e}");
    assert!(
        t.elapsed() < Duration::from_secs(60),
        "gave up in {:?}",
        t.elapsed()
    );
}

/// The pl model with `vm0` on a stream socket in the board's folder.
fn pl_daemon() -> (PlDaemon, String) {
    let pl = PlDaemon::start_with(1, &["vadd_u32"], &["--listen", "vm0=unix:{dir}/vm0.stream"]);
    let path = pl.board.root.parent().unwrap().join("vm0.stream");
    assert!(path.exists(), "stream socket at {}", path.display());
    let u = uri(&path);
    (pl, u)
}

/// Releases the held core and waits until the model has finished `runs` runs in all
/// (those the dead vfpgad processes had started), so the next vfpgad finds an idle
/// core.
fn release(pl: &PlDaemon, runs: u64) {
    pl.hold(&[]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while pl.board.model.runs() < runs {
        assert!(Instant::now() < deadline, "the held run did not end");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_run_interrupted_by_a_crash_is_sent_once_more() {
    let (mut pl, u) = pl_daemon();
    let dev = Device::open_with(&u, &options(WINDOW)).unwrap();
    let s = dev.session("vadd_u32").unwrap();
    vadd(&s, 256, 5).unwrap();
    let before = pl.board.model.runs();
    pl.hold(&["vadd_u32"]);
    std::thread::scope(|t| {
        let run = t.spawn(|| vadd(&s, 1024, 9));
        pl.wait_held();
        kill(&mut pl.daemon);
        release(&pl, before + 1);
        pl.daemon.relaunch();
        run.join().unwrap().unwrap();
    });
    assert_eq!(dev.reconnects(), 1);
    // The first try ran on the dead vfpgad's core, the second on the new one's.
    assert_eq!(pl.board.model.runs(), before + 2);
    vadd(&s, 64, 2).unwrap();
}

#[test]
fn a_run_interrupted_twice_fails_and_is_not_tried_a_third_time() {
    let (mut pl, u) = pl_daemon();
    let dev = Device::open_with(&u, &options(WINDOW)).unwrap();
    let s = dev.session("vadd_u32").unwrap();
    pl.hold(&["vadd_u32"]);
    let e = std::thread::scope(|t| {
        let run = t.spawn(|| vadd(&s, 1024, 9));
        pl.wait_held_runs(1);
        kill(&mut pl.daemon);
        // One core holds one run at a time: let the dead vfpgad's run end, hold again.
        release(&pl, 1);
        pl.hold(&["vadd_u32"]);
        pl.daemon.relaunch();
        pl.wait_held_runs(2);
        kill(&mut pl.daemon);
        // A third vfpgad would serve a third try at once: none may come.
        release(&pl, 2);
        pl.daemon.relaunch();
        run.join().unwrap().unwrap_err()
    });
    let text = e.to_string();
    assert!(matches!(e, vfpga::Error::Link { .. }), "{text}");
    assert!(text.contains("not tried a third time"), "{text}");
    assert_eq!(dev.reconnects(), 1);
    // The program may go on: the next request connects to the third vfpgad.
    vadd(&s, 64, 2).unwrap();
    assert_eq!(dev.reconnects(), 2);
    let held = pl
        .board
        .model
        .events()
        .iter()
        .filter(|e| e.contains("held"))
        .count();
    assert_eq!(held, 2, "exactly two tries reached a core");
}
