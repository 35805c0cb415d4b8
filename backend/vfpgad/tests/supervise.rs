//! `vfpgad --supervise`: the daemon under a frontend dies (SIGKILL) or is restarted
//! (SIGHUP) and the frontend notices nothing: its connection stays open, a run in
//! flight at the kill is run again and completes exactly once with the right
//! result, its sessions still work, and nothing is set up again. Runs are held in
//! flight on the pl engine's register-level model, so "killed during a run" is
//! certain, not a matter of timing.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{open, PlDaemon};
use vfpga_proto::{ElemType, Opcode, Status};
use vfpga_vhu_frontend::{Arg, Layout, Prepared, VhuFrontend};

const TIMEOUT: Duration = Duration::from_secs(120);

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
        // "pid (comm) state ppid ...": the command may hold spaces, the last ')' ends it.
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        let ppid: u32 = rest.split(' ').nth(1).unwrap().parse().unwrap();
        if ppid == pid {
            out.push(p);
        }
    }
    out
}

/// The supervisor's worker, once it runs.
fn worker(pl: &PlDaemon) -> u32 {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if let [w] = children(pl.daemon.pid())[..] {
            return w;
        }
        assert!(Instant::now() < deadline, "no worker");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn vadd(fe: &mut VhuFrontend, session: u64, n: u32, seed: u32) -> (Prepared, Vec<u32>) {
    let a: Vec<u32> = (0..n).map(|i| i.wrapping_mul(seed)).collect();
    let b: Vec<u32> = (0..n).map(|i| i ^ seed).collect();
    let want = a.iter().zip(&b).map(|(x, y)| x.wrapping_add(*y)).collect();
    let bytes = |v: &[u32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    let p = fe
        .prepare(
            1,
            Opcode::Run,
            session,
            &[
                Arg::In(ElemType::U32, &bytes(&a)),
                Arg::In(ElemType::U32, &bytes(&b)),
                Arg::Out(ElemType::U32, n as usize * 4),
                Arg::Scalar(ElemType::U32, u64::from(n)),
            ],
            Layout::Paged(4096),
        )
        .unwrap();
    (p, want)
}

fn check(fe: &VhuFrontend, p: &Prepared, want: &[u32]) {
    assert_eq!(fe.response(p).unwrap().status(), Some(Status::Ok));
    let out = fe.output(p, 0).unwrap();
    let got: Vec<u32> = out
        .chunks(4)
        .map(|w| u32::from_le_bytes(w.try_into().unwrap()))
        .collect();
    assert_eq!(got, want);
}

/// A run completes once, then the queue has nothing more to return.
fn completes_once(fe: &mut VhuFrontend, head: u16) {
    let (h, _) = fe.queues[1].wait_used(&fe.mem, TIMEOUT).unwrap();
    assert_eq!(h, head);
    assert!(
        fe.queues[1].poll_used(&fe.mem).unwrap().is_none(),
        "a second completion"
    );
}

fn signal(pid: u32, sig: i32) {
    let pid = i32::try_from(pid).unwrap();
    // SAFETY: kill(2) on a process this test started (or its supervisor did).
    assert_eq!(unsafe { libc::kill(pid, sig) }, 0);
}

fn kill(pid: u32) {
    signal(pid, libc::SIGKILL);
}

#[test]
fn a_run_in_flight_at_a_kill_completes_once_and_sessions_survive() {
    let pl = PlDaemon::start_with(1, &["vadd_u32"], &["--supervise"]);
    let mut fe = pl.daemon.connect(0);
    let s = open(&mut fe, "vadd_u32");
    let (p, want) = vadd(&mut fe, s, 3000, 7);
    fe.call(1, Opcode::Nop, 0, &[], Layout::Direct).unwrap();
    pl.hold(&["vadd_u32"]);
    let head = fe.start_prepared(&p).unwrap();
    pl.wait_held();
    let first = worker(&pl);
    kill(first);
    // The next worker runs it again, on the core that is no longer held.
    pl.hold(&[]);
    completes_once(&mut fe, head);
    check(&fe, &p, &want);
    let second = worker(&pl);
    assert_ne!(first, second, "a new worker");
    // The session opened before the kill still runs; nothing was set up again.
    let (p, want) = vadd(&mut fe, s, 100, 3);
    fe.run_prepared(&p).unwrap();
    check(&fe, &p, &want);
    // Killed while idle: the next requests on every queue are served.
    kill(second);
    for q in 0..3 {
        let r = fe.call(q, Opcode::Nop, 0, &[], Layout::Direct).unwrap();
        assert_eq!(r.status(), Some(Status::Ok), "queue {q}");
    }
    let (p, want) = vadd(&mut fe, s, 10, 9);
    fe.run_prepared(&p).unwrap();
    check(&fe, &p, &want);
}

#[test]
fn a_planned_restart_finishes_the_run_in_flight() {
    let pl = PlDaemon::start_with(1, &["vadd_u32"], &["--supervise"]);
    let mut fe = pl.daemon.connect(0);
    let s = open(&mut fe, "vadd_u32");
    let (p, want) = vadd(&mut fe, s, 2000, 5);
    pl.hold(&["vadd_u32"]);
    let head = fe.start_prepared(&p).unwrap();
    pl.wait_held();
    let first = worker(&pl);
    signal(pl.daemon.pid(), libc::SIGHUP);
    // The old worker waits for its run; once the core lets go, it completes it.
    pl.hold(&[]);
    completes_once(&mut fe, head);
    check(&fe, &p, &want);
    let deadline = Instant::now() + TIMEOUT;
    while children(pl.daemon.pid()) == [first] {
        assert!(Instant::now() < deadline, "the worker was not restarted");
        std::thread::sleep(Duration::from_millis(10));
    }
    let (p, want) = vadd(&mut fe, s, 100, 11);
    fe.run_prepared(&p).unwrap();
    check(&fe, &p, &want);
}

/// Sends `bytes` as a frontend would and waits for the supervisor to close the
/// connection; returns what it answered first.
fn hostile(socket: &std::path::Path, bytes: &[u8]) -> Vec<u8> {
    use std::io::{Read, Write};
    let mut s = std::os::unix::net::UnixStream::connect(socket).unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    s.write_all(bytes).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut got = Vec::new();
    // The supervisor ends the connection: read_to_end returns instead of timing out.
    s.read_to_end(&mut got).expect("the connection was closed");
    got
}

fn header(req: u32, flags: u32, size: u32) -> Vec<u8> {
    [req, flags, size]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect()
}

#[test]
fn hostile_frontends_are_cut_off_and_the_next_one_is_served() {
    let d = common::Daemon::start(1, &["--supervise"]);
    let sock = &d.sockets[0];
    // A payload size beyond any message.
    assert!(hostile(sock, &header(1, 1, u32::MAX)).is_empty());
    // A header cut short, a payload shorter than its size.
    assert!(hostile(sock, &header(5, 1, 64)[..7]).is_empty());
    let mut short = header(5, 1, 64);
    short.extend_from_slice(&[0; 10]);
    assert!(hostile(sock, &short).is_empty());
    // A question answered, then nonsense: the answer came back, then the end.
    let mut q = header(1, 1, 0); // GET_FEATURES
    q.extend(header(0x7fff_ffff, 1, 0)); // no such request
    let got = hostile(sock, &q);
    assert_eq!(got.len(), 12 + 8, "the features' answer only: {got:?}");
    // Ring messages for rings no device has, set-ups out of order: refused by the
    // daemon, which drops the connection; the supervisor gives up after three tries.
    let mut junk = Vec::new();
    for i in 0..200u32 {
        junk.extend(header(8, 1, 8)); // SET_VRING_NUM
        junk.extend(i.wrapping_mul(7919).to_le_bytes());
        junk.extend(256u32.to_le_bytes());
    }
    let _ = hostile(sock, &junk);
    // A real frontend is served as if nothing happened.
    let mut fe = d.connect(0);
    common::still_serves(&mut fe);
}

/// Waits until `done` holds (checked every few milliseconds), at most [`TIMEOUT`].
fn wait_until(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + TIMEOUT;
    while !done() {
        assert!(Instant::now() < deadline, "never: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn sha_args(data: &[u8]) -> [Arg<'_>; 2] {
    [Arg::In(ElemType::U8, data), Arg::Out(ElemType::U8, 32)]
}

#[test]
fn a_reload_adds_and_removes_guests_and_changes_policy_leaving_the_rest_connected() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    let (vm0, vm1, vm2, conf) = (
        p("vm0.sock"),
        p("vm1.sock"),
        p("vm2.sock"),
        p("vfpgad.toml"),
    );
    let guest0 = |kernels: &str| {
        format!(
            "[[guest]]\nname = \"vm0\"\nsocket = \"{}\"\nkernels = {kernels}\n",
            vm0.display()
        )
    };
    let guest1 = format!(
        "[[guest]]\nname = \"vm1\"\nlisten = [\"unix:{}\"]\n",
        vm1.display()
    );
    let guest2 = format!(
        "[[guest]]\nname = \"vm2\"\nsocket = \"{}\"\n",
        vm2.display()
    );
    std::fs::write(&conf, format!("{}{guest1}", guest0("[\"*\"]"))).unwrap();
    let args: Vec<String> = ["--supervise", "--config", conf.to_str().unwrap()]
        .map(str::to_owned)
        .to_vec();
    let d = common::Daemon::launch(
        tempfile::tempdir().unwrap(),
        vec![vm0.clone(), vm1.clone()],
        &args,
    );
    let the_worker = || {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let [w] = children(d.pid())[..] {
                return w;
            }
            assert!(Instant::now() < deadline, "no worker");
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    let mut fe = VhuFrontend::connect(&vm0, Default::default()).unwrap();
    let vadd_session = open(&mut fe, "vadd_u32");
    let (pr, want) = vadd(&mut fe, vadd_session, 500, 3);
    fe.run_prepared(&pr).unwrap();
    check(&fe, &pr, &want);
    let sha_session = open(&mut fe, "sha256");
    // Without reconnecting: its guest's removal must end the connection, not stall it.
    let stream = vfpga::Device::open_with(
        format!("unix:{}", vm1.display()),
        &vfpga::Options {
            reconnect: Duration::ZERO,
            ..Default::default()
        },
    )
    .unwrap();
    stream.info().unwrap();
    let first = the_worker();

    // vm0 may run vadd_u32 only now, vm1 goes, vm2 comes.
    std::fs::write(&conf, format!("{}{guest2}", guest0("[\"vadd_u32\"]"))).unwrap();
    signal(d.pid(), libc::SIGHUP);
    wait_until("vm2's socket and vm1's gone", || {
        vm2.exists() && !vm1.exists()
    });
    wait_until("a new worker", || the_worker() != first);
    // vm0 kept its connection and its vadd session, and runs under the new policy.
    let (pr, want) = vadd(&mut fe, vadd_session, 700, 5);
    fe.run_prepared(&pr).unwrap();
    check(&fe, &pr, &want);
    let r = fe
        .call(
            0,
            Opcode::OpenSession,
            0,
            &[Arg::In(ElemType::U8, b"sha256")],
            Layout::Direct,
        )
        .unwrap();
    assert_eq!(
        r.status(),
        Some(Status::Permission),
        "sha256 no longer allowed"
    );
    let data = [7u8; 64];
    let r = fe
        .call(
            1,
            Opcode::Run,
            sha_session,
            &sha_args(&data),
            Layout::Direct,
        )
        .unwrap();
    assert_eq!(
        r.status(),
        Some(Status::BadSession),
        "its sha256 session was closed"
    );
    // vm2 is served; vm1 is not.
    let mut fe2 = VhuFrontend::connect(&vm2, Default::default()).unwrap();
    let s2 = open(&mut fe2, "vadd_u32");
    let (pr, want) = vadd(&mut fe2, s2, 300, 11);
    fe2.run_prepared(&pr).unwrap();
    check(&fe2, &pr, &want);
    assert!(std::os::unix::net::UnixStream::connect(&vm1).is_err());
    assert!(
        stream.info().is_err(),
        "vm1's connection ended with its guest"
    );

    // A file that is not a configuration, or not a valid one, is refused with its
    // reason; nothing changes, the worker is not even restarted.
    let second = the_worker();
    for (n, (bad, reason)) in [
        ("[[guest]\nname = ", "TOML parse error"),
        (
            "[daemon]\nengine = \"fpga\"\n",
            "engine \"fpga\": use \"sim\"",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        std::fs::write(&conf, bad).unwrap();
        signal(d.pid(), libc::SIGHUP);
        wait_until("the refusal logged", || {
            d.log().matches("reload refused, nothing changed").count() > n
        });
        let log = d.log();
        let refusal = log.match_indices("reload refused").nth(n).unwrap().0;
        let said = &log[refusal..];
        assert!(said.contains(reason), "{said}");
        assert_eq!(the_worker(), second);
        assert!(vm0.exists() && vm2.exists());
        let (pr, want) = vadd(&mut fe, vadd_session, 64, 13 + u32::try_from(n).unwrap());
        fe.run_prepared(&pr).unwrap();
        check(&fe, &pr, &want);
    }

    // The guest on vm0's socket renamed: a changed guest on the same socket, whose
    // old relay must give the socket up for the new one (not look like another
    // process serving it). Its VMM attaches again and is served.
    std::fs::write(
        &conf,
        format!(
            "[[guest]]\nname = \"vm0b\"\nsocket = \"{}\"\n{guest2}",
            vm0.display()
        ),
    )
    .unwrap();
    signal(d.pid(), libc::SIGHUP);
    wait_until("a worker for the renamed guest", || the_worker() != second);
    drop(fe);
    wait_until("vm0's socket bound again", || {
        VhuFrontend::connect(&vm0, Default::default()).is_ok()
    });
    let mut fe = VhuFrontend::connect(&vm0, Default::default()).unwrap();
    let s = open(&mut fe, "vadd_u32");
    let (pr, want) = vadd(&mut fe, s, 100, 21);
    fe.run_prepared(&pr).unwrap();
    check(&fe, &pr, &want);
    assert!(
        !d.log()
            .contains("reload refused, nothing changed: guest vm0b"),
        "{}",
        d.log()
    );
}
