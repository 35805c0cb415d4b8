//! Connection lifecycle and concurrency: out-of-order completion, several guests at
//! once, frontend reconnects, daemon restarts, SIGTERM.
#![allow(clippy::unwrap_used, clippy::cast_possible_truncation)]

mod common;

use std::time::{Duration, Instant};

use common::{open, still_serves, Daemon, PlDaemon, Rng};
use vfpga_proto::*;
use vfpga_vhu_frontend::{Arg, Layout, VhuFrontend};

fn f32s(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Lays out an `n`×`n`×`n` mmult on queue `q`.
fn big_mmult(fe: &mut VhuFrontend, q: usize, s: u64, n: usize) -> vfpga_vhu_frontend::Prepared {
    let a = f32s(&vec![1.5; n * n]);
    fe.prepare(
        q,
        Opcode::Run,
        s,
        &[
            Arg::In(ElemType::F32, &a),
            Arg::In(ElemType::F32, &a),
            Arg::Out(ElemType::F32, n * n * 4),
            Arg::Scalar(ElemType::U32, n as u64),
            Arg::Scalar(ElemType::U32, n as u64),
            Arg::Scalar(ElemType::U32, n as u64),
        ],
        Layout::Paged(4096),
    )
    .unwrap()
}

#[test]
fn a_long_kernel_does_not_hold_up_a_short_one() {
    // The long run is an mmult the model's core holds until the short one is back: it
    // is still running when the short one completes, however fast the machine is.
    let pl = PlDaemon::start(1, &["mmult", "vadd_u32"]);
    let mut fe = pl.daemon.connect(0);
    let (mm, va) = (open(&mut fe, "mmult"), open(&mut fe, "vadd_u32"));
    let long = big_mmult(&mut fe, 1, mm, 64);
    let x: Vec<u8> = (0..256u32).flat_map(|v| v.to_le_bytes()).collect();
    let short = fe
        .prepare(
            1,
            Opcode::Run,
            va,
            &[
                Arg::In(ElemType::U32, &x),
                Arg::In(ElemType::U32, &x),
                Arg::Out(ElemType::U32, 1024),
                Arg::Scalar(ElemType::U32, 256),
            ],
            Layout::Direct,
        )
        .unwrap();
    pl.hold(&["mmult"]);
    let h_long = fe.start_prepared(&long).unwrap();
    pl.wait_held();
    let h_short = fe.start_prepared(&short).unwrap();
    let timeout = Duration::from_secs(60);
    let (first, _) = fe.queues[1].wait_used(&fe.mem, timeout).unwrap();
    assert_eq!(
        first, h_short,
        "the short run completed first, on the same queue"
    );
    assert_eq!(fe.response(&short).unwrap().status(), Some(Status::Ok));
    pl.hold(&[]);
    let (second, _) = fe.queues[1].wait_used(&fe.mem, timeout).unwrap();
    assert_eq!(second, h_long);
    assert_eq!(fe.response(&long).unwrap().status(), Some(Status::Ok));
    let c = fe.output(&long, 0).unwrap();
    let want = (0..64).fold(0f32, |acc, _| acc + 1.5 * 1.5);
    assert!(c
        .chunks(4)
        .all(|w| f32::from_le_bytes(w.try_into().unwrap()) == want));
}

#[test]
fn several_guests_at_once() {
    let d = Daemon::start(3, &[]);
    let sockets = d.sockets.clone();
    let workers: Vec<_> = sockets
        .into_iter()
        .enumerate()
        .map(|(g, sock)| {
            std::thread::spawn(move || {
                let mut fe = VhuFrontend::connect(&sock, Default::default()).unwrap();
                let s = open(&mut fe, "vadd_u32");
                let mut rng = Rng(g as u64 + 100);
                for i in 0..40 {
                    let n = 1000 + i;
                    let a: Vec<u32> = (0..n).map(|_| rng.next() as u32).collect();
                    let b: Vec<u32> = (0..n).map(|_| rng.next() as u32).collect();
                    let bytes =
                        |v: &[u32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
                    let q = 1 + i % 2;
                    let r = fe
                        .call(
                            q,
                            Opcode::Run,
                            s,
                            &[
                                Arg::In(ElemType::U32, &bytes(&a)),
                                Arg::In(ElemType::U32, &bytes(&b)),
                                Arg::Out(ElemType::U32, n * 4),
                                Arg::Scalar(ElemType::U32, n as u64),
                            ],
                            Layout::Paged(4096),
                        )
                        .unwrap();
                    let want: Vec<u32> =
                        a.iter().zip(&b).map(|(x, y)| x.wrapping_add(*y)).collect();
                    assert_eq!(r.outputs[0], bytes(&want), "guest {g} request {i}");
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
}

#[test]
fn serves_again_after_the_frontend_disconnects() {
    let d = Daemon::start(1, &[]);
    let mut fe = d.connect(0);
    let s = open(&mut fe, "sha256");
    drop(fe);
    let mut fe = d.connect(0);
    let r = fe
        .call(
            1,
            Opcode::Run,
            s,
            &[
                Arg::In(ElemType::U8, b"x"),
                Arg::Out(ElemType::U8, 32),
                Arg::Scalar(ElemType::U64, 1),
            ],
            Layout::Direct,
        )
        .unwrap();
    assert_eq!(
        r.status(),
        Some(Status::BadSession),
        "sessions end with the connection"
    );
    still_serves(&mut fe);
    // One frontend per guest socket: the next one is served once this one leaves.
    drop(fe);
    // Many quick connects in a row.
    for _ in 0..20 {
        drop(d.connect(0));
    }
    still_serves(&mut d.connect(0));
}

/// The daemon's open descriptors.
fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count)
}

#[test]
fn connections_leave_no_descriptors_behind() {
    let d = Daemon::start(1, &[]);
    let base = fds(d.pid());
    for _ in 0..5 {
        let mut fe = d.connect(0);
        still_serves(&mut fe);
        drop(fe);
        // The connection's teardown is the daemon's: wait for it, bounded.
        let deadline = Instant::now() + Duration::from_secs(60);
        while fds(d.pid()) > base {
            assert!(
                Instant::now() < deadline,
                "{} descriptors open after a disconnect, {base} before",
                fds(d.pid())
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[test]
fn a_restarted_daemon_serves_new_connections() {
    let mut d = Daemon::start(1, &[]);
    still_serves(&mut d.connect(0));
    assert!(d
        .signal_and_wait(libc::SIGKILL, Duration::from_secs(5))
        .is_some());
    d.restart(&[]);
    still_serves(&mut d.connect(0));
}

#[test]
fn sigterm_stops_cleanly_with_a_kernel_running() {
    let mut pl = PlDaemon::start(2, &["mmult", "vadd_u32"]);
    let mut fe = pl.daemon.connect(0);
    let mm = open(&mut fe, "mmult");
    let long = big_mmult(&mut fe, 1, mm, 64);
    pl.hold(&["mmult"]);
    fe.start_prepared(&long).unwrap();
    pl.wait_held();
    // SIGTERM while the kernel runs; the daemon stops listening, then waits for the run,
    // which the core finishes once released.
    let pid = i32::try_from(pl.daemon.pid()).unwrap();
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::os::unix::net::UnixStream::connect(&pl.daemon.sockets[1]).is_ok() {
        assert!(Instant::now() < deadline, "still accepting after SIGTERM");
        std::thread::sleep(Duration::from_millis(10));
    }
    pl.hold(&[]);
    let status = pl
        .daemon
        .signal_and_wait(libc::SIGTERM, Duration::from_secs(30))
        .expect("exits on SIGTERM");
    assert!(status.success(), "exit status {status:?}");
    for s in &pl.daemon.sockets {
        assert!(!s.exists(), "socket {} removed", s.display());
    }
}

#[test]
fn a_second_daemon_refuses_a_live_socket() {
    let d = Daemon::start(1, &[]);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vfpgad"))
        .arg("--socket")
        .arg(&d.sockets[0])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("another process is serving this socket"),
        "{err}"
    );
    still_serves(&mut d.connect(0));
}

#[test]
fn sockets_get_the_configured_mode_and_group() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let d = Daemon::start(1, &["--socket-mode", "0660", "--socket-group", "0"]);
    let m = std::fs::metadata(&d.sockets[0]).unwrap();
    assert_eq!(m.permissions().mode() & 0o777, 0o660);
    assert_eq!(m.gid(), 0);
    still_serves(&mut d.connect(0));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vfpgad"))
        .args(["--socket", "/tmp/x.sock", "--socket-mode", "abc", "--check"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("octal"));
}
