//! vfpgad under `--supervise` with a guest at work: the daemon is killed three times
//! and upgraded once while four guest processes run kernels, then kept down while
//! the guest resets its device. The guest sees no error, every result is right, and
//! every request it sent completed once. The daemon runs the pl engine on the
//! register-level model, whose mmult core holds a run until the kill: a request is
//! in flight at every kill, whatever the machine's speed.
#![allow(clippy::unwrap_used, clippy::cast_possible_truncation)]

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use vfpga_engine::pl::model::{Faults, ModelBoard};
use vfpga_reference::Rng;
use vfpga_vm_tests::{env, put, vm_lock, Daemon, Guest, GuestOpts};

const WAIT: Duration = Duration::from_secs(180);

/// The processes whose parent is `pid`.
fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(p) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
            continue;
        };
        // "pid (comm) state ppid ...": the last ')' ends the command.
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        if rest.split(' ').nth(1).and_then(|v| v.parse().ok()) == Some(pid) {
            out.push(p);
        }
    }
    out
}

/// The supervisor's worker once one runs (other than `not`).
fn worker(d: &Daemon, not: Option<u32>) -> u32 {
    let deadline = Instant::now() + WAIT;
    loop {
        if let [w] = children(d.pid().unwrap())[..] {
            if Some(w) != not {
                return w;
            }
        }
        assert!(Instant::now() < deadline, "no new worker");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn signal(pid: u32, sig: i32) {
    let pid = i32::try_from(pid).unwrap();
    // SAFETY: kill(2) on the supervisor this test started or its worker.
    assert_eq!(unsafe { libc::kill(pid, sig) }, 0);
}

/// Waits until the model has completed `n` more core runs than `from`.
fn progress(board: &ModelBoard, from: u64, n: u64) {
    let deadline = Instant::now() + WAIT;
    while board.model.runs() < from + n {
        assert!(
            Instant::now() < deadline,
            "the guest made no progress after the restart"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Replaces `exe` with a fresh copy of vfpgad, as a package upgrade does (a new file
/// renamed over the old).
fn upgrade(exe: &Path) {
    let new = exe.with_extension("new");
    std::fs::copy(&env().vfpgad, &new).unwrap();
    std::fs::rename(&new, exe).unwrap();
}

#[test]
#[ignore = "boots a VM; run by scripts/test-all.sh"]
fn guests_notice_no_daemon_restart_under_the_supervisor() {
    let _vm = vm_lock();
    let share = tempfile::tempdir().unwrap();
    let s = share.path();
    let mut rng = Rng(1301);
    kernel_inputs(s, &mut rng);
    for (p, want) in concurrent_inputs(s, &mut rng).iter().enumerate() {
        put(s, &format!("in/want{p}.bin"), want);
    }
    let board_dir = tempfile::tempdir().unwrap();
    let b = board_dir.path();
    let board = ModelBoard::start(b, &["vadd_u32", "sha256", "sobel", "mmult"], 600_000).unwrap();
    put(
        b,
        "vfpgad.toml",
        format!(
            "[daemon]\nengine = \"pl\"\n[library]\ndir = {:?}\nallow = [\"base\"]\n[pl]\nroot = {:?}\nbitstream = \"base\"\n",
            board.library, board.root
        )
        .as_bytes(),
    );
    // The supervisor runs a copy of vfpgad, so the test can replace and remove it.
    let exe: PathBuf = b.join("vfpgad");
    std::fs::copy(&env().vfpgad, &exe).unwrap();
    let socket = b.join("vm0.sock");
    let args = [
        "--supervise".to_owned(),
        "--config".to_owned(),
        b.join("vfpgad.toml").display().to_string(),
        "--socket".to_owned(),
        format!("vm0={}", socket.display()),
    ];
    let d = Daemon::start_from(&exe, &args, std::slice::from_ref(&socket));
    let guest = Guest::spawn(&GuestOpts {
        timeout: 600,
        ..GuestOpts::new("supervised", std::slice::from_ref(&socket), s)
    });
    assert!(
        guest.wait_for("VFPGA-STEP running", WAIT),
        "the guest's processes never started"
    );
    let mut last = worker(&d, None);
    progress(&board, 0, 8);
    // Three kills, each with the mmult process's request held on the core.
    for kill in 1..=3 {
        board.model.set_faults(Faults {
            hold: vec!["mmult".into()],
            ..Faults::default()
        });
        let deadline = Instant::now() + WAIT;
        while board
            .model
            .events()
            .iter()
            .filter(|e| e.contains("held"))
            .count()
            < kill
        {
            assert!(Instant::now() < deadline, "no run reached the held core");
            std::thread::sleep(Duration::from_millis(10));
        }
        signal(last, libc::SIGKILL);
        board.model.set_faults(Faults::default());
        last = worker(&d, Some(last));
        progress(&board, board.model.runs(), 8);
    }
    // An upgrade: a new binary in place, then SIGHUP.
    upgrade(&exe);
    signal(d.pid().unwrap(), libc::SIGHUP);
    last = worker(&d, Some(last));
    progress(&board, board.model.runs(), 8);
    put(s, "stop", b"");
    // The daemon down (its binary gone, so the supervisor cannot start it) while the
    // guest resets its device; then back.
    assert!(
        guest.wait_for("VFPGA-STEP down?", WAIT),
        "the processes never ended"
    );
    let away = exe.with_extension("away");
    std::fs::rename(&exe, &away).unwrap();
    signal(last, libc::SIGKILL);
    let deadline = Instant::now() + WAIT;
    while !children(d.pid().unwrap()).is_empty() {
        assert!(Instant::now() < deadline, "the worker did not die");
        std::thread::sleep(Duration::from_millis(10));
    }
    put(s, "down", b"");
    assert!(
        guest.wait_for("supervised: resetting", WAIT),
        "the guest never reset its device"
    );
    // The reset's messages wait for the daemon, however long it is away; a few
    // seconds make it likely they reach the supervisor first (either order must work).
    std::thread::sleep(Duration::from_secs(3));
    std::fs::rename(&away, &exe).unwrap();
    let out = guest.finish();
    assert_ok("supervised", &out);
    let said: Vec<&str> = out
        .console
        .lines()
        .filter_map(|l| l.trim().strip_prefix("supervised: "))
        .collect();
    for p in 0..4 {
        let line = said
            .iter()
            .find_map(|l| l.strip_prefix(&format!("process {p} sent/completed: ")))
            .unwrap_or_else(|| panic!("no count from process {p}:\n{}", out.console));
        let v: Vec<u64> = line
            .split_whitespace()
            .map(|x| x.parse().unwrap())
            .collect();
        assert_eq!(v.len(), 2, "{line}");
        assert!(
            v[0] > 0 && v[0] == v[1],
            "process {p}: sent/completed {line}"
        );
        eprintln!("process {p}: {} requests sent, {} completed", v[0], v[1]);
    }
    assert!(
        !said
            .iter()
            .any(|l| l.contains("failed") || l.contains("wrong")),
        "{}",
        out.console
    );
    // The kernel's log since the start: the driver's probe line after the rebind,
    // nothing else of the driver's (no bad completion, no timeout, no reset).
    let dmesg: Vec<&&str> = said.iter().filter(|l| l.starts_with("dmesg:")).collect();
    assert!(
        !dmesg
            .iter()
            .any(|l| l.contains("vfpga") && !l.contains("request queues, ring")),
        "the driver complained: {dmesg:?}"
    );
}
