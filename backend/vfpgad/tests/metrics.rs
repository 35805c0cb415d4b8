//! The metrics endpoint of the real `vfpgad`: a scrape taken while guests run kernels
//! passes Prometheus's own checker (`promtool check metrics`, from Debian's
//! `prometheus` package) and counts exactly what the guests did; `vfpgad status` shows
//! the same; hostile peers (slow, flooding, oversized, garbage) cost a refusal, never
//! a guest's service or a later scrape.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_possible_truncation
)]

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{open, run, vadd_ok, Daemon};
use vfpga::Device;
use vfpga_proto::{ElemType, Opcode, Status};
use vfpga_vhu_frontend::{Arg, Layout};

/// vfpgad with `vm0` on a vhost-user socket, `vm1` on a unix stream listener and the
/// metrics endpoint on a unix socket.
struct Setup {
    d: Daemon,
    metrics: PathBuf,
}

impl Setup {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let p = |n: &str| dir.path().join(n);
        let (vm0, vm1, metrics) = (p("vm0.sock"), p("vm1.sock"), p("metrics.sock"));
        let args = [
            "--socket".to_owned(),
            format!("vm0={}", vm0.display()),
            "--listen".to_owned(),
            format!("vm1=unix:{}", vm1.display()),
            "--metrics".to_owned(),
            format!("unix:{}", metrics.display()),
        ];
        let d = Daemon::launch(dir, vec![vm0, vm1, metrics.clone()], &args);
        Self { d, metrics }
    }

    fn stream(&self) -> Device {
        Device::open(format!(
            "unix:{}",
            self.d.dir.path().join("vm1.sock").display()
        ))
        .unwrap()
    }

    fn get(&self, path: &str) -> (u16, String) {
        get(&self.metrics, path)
    }

    fn scrape(&self) -> String {
        let (code, body) = self.get("/metrics");
        assert_eq!(code, 200, "{body}");
        body
    }
}

/// `GET path` over the unix socket: status code and body (read to the end).
fn get(sock: &Path, path: &str) -> (u16, String) {
    let mut s = UnixStream::connect(sock).unwrap();
    // A refusal may close the connection before the request is written whole.
    let _ = s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
    answer(&mut s)
}

/// Reads an answer to its end. A refusal may come before the request was read; the
/// connection is then reset after the answer, which counts if it is whole.
fn answer(s: &mut UnixStream) -> (u16, String) {
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut raw = Vec::new();
    if let Err(e) = s.read_to_end(&mut raw) {
        let text = String::from_utf8_lossy(&raw);
        let whole = text.split_once("\r\n\r\n").is_some_and(|(head, body)| {
            head.lines()
                .find_map(|l| l.strip_prefix("Content-Length: "))
                .is_some_and(|n| n.parse() == Ok(body.len()))
        });
        assert!(whole, "reading the answer: {e} (so far: {text:?})");
    }
    let raw = String::from_utf8(raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("an HTTP answer");
    let code = head.split(' ').nth(1).unwrap().parse().unwrap();
    (code, body.to_owned())
}

/// The value of the series `series` (name and labels, exactly as exposed).
fn value(scrape: &str, series: &str) -> f64 {
    scrape
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {series} in:\n{scrape}"))
        .parse()
        .unwrap()
}

/// Prometheus's checker on a scrape; its complaints if any.
fn promtool(scrape: &str) -> Result<(), String> {
    let mut p = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian's prometheus package; scripts/setup-tests.sh installs it)");
    p.stdin
        .take()
        .unwrap()
        .write_all(scrape.as_bytes())
        .unwrap();
    let out = p.wait_with_output().unwrap();
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

const RUNS: usize = 200;
const N: usize = 1024;

#[test]
fn a_scrape_during_load_passes_promtool_and_counts_what_the_guests_did() {
    let s = Setup::start();
    let mut fe = s.d.connect(0);
    let session = open(&mut fe, "vadd_u32");
    let a: Vec<u8> = (0..N as u32).flat_map(u32::to_le_bytes).collect();
    let dev = s.stream();
    // The stream guest runs while vm0 runs and the test scrapes.
    let streamer = std::thread::spawn(move || {
        for i in 0..RUNS {
            vadd_ok(&dev, N, i as u64);
        }
        dev
    });
    let mut during = Vec::new();
    for i in 0..RUNS {
        let r = run(
            &mut fe,
            session,
            &[
                Arg::In(ElemType::U32, &a),
                Arg::In(ElemType::U32, &a),
                Arg::Out(ElemType::U32, 4 * N),
                Arg::Scalar(ElemType::U32, N as u64),
            ],
            Layout::Paged(4096),
        );
        assert_eq!(r.status(), Some(Status::Ok));
        if i % 50 == 25 {
            during.push(s.scrape());
        }
    }
    // One refused run on vm0 (a session it never opened) and a bad argument count.
    let bad = run(&mut fe, session ^ 0x10000, &[], Layout::Direct);
    assert_eq!(bad.status(), Some(Status::BadSession));
    let short = run(
        &mut fe,
        session,
        &[Arg::Scalar(ElemType::U32, 1)],
        Layout::Direct,
    );
    assert_eq!(short.status(), Some(Status::BadArgument));
    let dev = streamer.join().unwrap();
    for (i, scrape) in during.iter().enumerate() {
        promtool(scrape).unwrap_or_else(|e| panic!("scrape {i} taken during load: {e}\n{scrape}"));
    }
    let after = s.scrape();
    promtool(&after).unwrap_or_else(|e| panic!("{e}\n{after}"));

    // What the guests did, counted by the test.
    let runs = RUNS as f64;
    let bytes = 4.0 * N as f64;
    assert_eq!(
        value(
            &after,
            r#"vfpgad_requests_total{guest="vm0",op="RUN",status="OK"}"#
        ),
        runs
    );
    assert_eq!(
        value(
            &after,
            r#"vfpgad_requests_total{guest="vm0",op="RUN",status="BAD_SESSION"}"#
        ),
        1.0
    );
    assert_eq!(
        value(
            &after,
            r#"vfpgad_requests_total{guest="vm0",op="RUN",status="BAD_ARGUMENT"}"#
        ),
        1.0
    );
    assert_eq!(
        value(
            &after,
            r#"vfpgad_requests_total{guest="vm0",op="OPEN_SESSION",status="OK"}"#
        ),
        1.0
    );
    assert_eq!(
        value(
            &after,
            r#"vfpgad_runs_total{guest="vm0",kernel="vadd_u32",status="OK"}"#
        ),
        runs
    );
    assert_eq!(
        value(
            &after,
            r#"vfpgad_runs_total{guest="vm0",kernel="vadd_u32",status="BAD_ARGUMENT"}"#
        ),
        1.0,
        "a run refused for its arguments counts on its session's kernel"
    );
    assert_eq!(
        value(
            &after,
            r#"vfpgad_run_bytes_total{guest="vm0",kernel="vadd_u32",direction="in"}"#
        ),
        2.0 * bytes * runs
    );
    assert_eq!(
        value(
            &after,
            r#"vfpgad_run_bytes_total{guest="vm0",kernel="vadd_u32",direction="out"}"#
        ),
        bytes * runs
    );
    assert_eq!(
        value(
            &after,
            r#"vfpgad_run_duration_seconds_count{guest="vm0",kernel="vadd_u32"}"#
        ),
        runs
    );
    assert_eq!(
        value(
            &after,
            r#"vfpgad_run_duration_seconds_bucket{guest="vm0",kernel="vadd_u32",le="+Inf"}"#
        ),
        runs
    );
    assert!(
        value(
            &after,
            r#"vfpgad_engine_busy_seconds_total{guest="vm0",kernel="vadd_u32"}"#
        ) > 0.0
    );
    assert_eq!(
        value(&after, r#"vfpgad_sessions{guest="vm0",kernel="vadd_u32"}"#),
        1.0
    );
    assert_eq!(value(&after, r#"vfpgad_guest_connected{guest="vm0"}"#), 1.0);
    assert_eq!(
        value(&after, r#"vfpgad_queue_depth{guest="vm0",queue="1"}"#),
        0.0
    );
    assert_eq!(value(&after, r#"vfpgad_inflight_runs{guest="vm0"}"#), 0.0);
    // The stream guest: a session per run (opened, run, closed by the library).
    assert_eq!(
        value(
            &after,
            r#"vfpgad_runs_total{guest="vm1",kernel="vadd_u32",status="OK"}"#
        ),
        runs
    );
    assert_eq!(
        value(
            &after,
            r#"vfpgad_requests_total{guest="vm1",op="RUN",status="OK"}"#
        ),
        runs
    );
    assert_eq!(
        value(&after, r#"vfpgad_guest_stream_connections{guest="vm1"}"#),
        1.0
    );
    assert_eq!(
        value(&after, r#"vfpgad_sessions{guest="vm1",kernel="vadd_u32"}"#),
        0.0
    );
    // The scrapes in between saw counts growing, never past the end.
    let mid: Vec<f64> = during
        .iter()
        .map(|d| {
            value(
                d,
                r#"vfpgad_runs_total{guest="vm0",kernel="vadd_u32",status="OK"}"#,
            )
        })
        .collect();
    assert!(
        mid.windows(2).all(|w| w[0] < w[1]) && mid.iter().all(|&m| m < runs),
        "{mid:?}"
    );

    // A session closed is a session less; a frontend gone is a guest not connected.
    let c = fe
        .call(0, Opcode::CloseSession, session, &[], Layout::Direct)
        .unwrap();
    assert_eq!(c.status(), Some(Status::Ok));
    drop(fe);
    drop(dev);
    let quiet = wait_for(&s, |m| {
        value(m, r#"vfpgad_guest_connected{guest="vm0"}"#) == 0.0
            && value(m, r#"vfpgad_guest_stream_connections{guest="vm1"}"#) == 0.0
    });
    assert_eq!(
        value(&quiet, r#"vfpgad_sessions{guest="vm0",kernel="vadd_u32"}"#),
        0.0
    );
    assert_eq!(
        value(
            &quiet,
            r#"vfpgad_runs_total{guest="vm0",kernel="vadd_u32",status="OK"}"#
        ),
        runs,
        "counters outlive the connection"
    );

    // `vfpgad status` shows the same for a person.
    let out = Command::new(env!("CARGO_BIN_EXE_vfpgad"))
        .args([
            "status",
            "--metrics",
            &format!("unix:{}", s.metrics.display()),
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("engine sim"), "{text}");
    let vm0 = text.split("guest vm1").next().unwrap();
    assert!(
        vm0.contains(&format!("requests: {} answered, 2 not OK", RUNS + 4)),
        "{text}"
    );
    assert!(
        vm0.contains("RUN: BAD_SESSION 1, BAD_ARGUMENT 1")
            || vm0.contains("RUN: BAD_ARGUMENT 1, BAD_SESSION 1")
            || vm0.contains("RUN: BAD_SESSION 1"),
        "{text}"
    );
    let om = Command::new(env!("CARGO_BIN_EXE_vfpgad"))
        .args([
            "status",
            "--openmetrics",
            "--metrics",
            &format!("unix:{}", s.metrics.display()),
        ])
        .output()
        .unwrap();
    let om = String::from_utf8_lossy(&om.stdout);
    assert!(
        om.ends_with("# EOF\n") && om.contains("# UNIT vfpgad_run_duration_seconds seconds"),
        "{om}"
    );
    let row = vm0
        .lines()
        .find(|l| l.trim_start().starts_with("vadd_u32"))
        .unwrap();
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cols[1], RUNS.to_string(), "{row}");
    assert_eq!(cols[2], "1", "{row}");
}

/// Scrapes until `done` holds for a scrape (the daemon notices a peer gone on its own
/// threads); that scrape.
fn wait_for(s: &Setup, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let m = s.scrape();
        if done(&m) {
            return m;
        }
        assert!(Instant::now() < deadline, "never reached:\n{m}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn hostile_peers_get_a_refusal_and_cost_no_guest_or_later_scrape() {
    let s = Setup::start();
    let connect = || UnixStream::connect(&s.metrics).unwrap();
    let exchange = |bytes: &[u8]| {
        let mut c = connect();
        c.write_all(bytes).unwrap();
        answer(&mut c)
    };
    // Garbage, a head that never ends within the bound, a method it does not serve,
    // a page it does not have: each answered with its reason.
    assert_eq!(
        exchange(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n").0,
        400
    );
    let mut big = b"GET /metrics HTTP/1.1\r\nX: ".to_vec();
    big.resize(20 << 10, b'a');
    let mut c = connect();
    let _ = c.write_all(&big);
    assert_eq!(answer(&mut c).0, 431);
    let (code, body) = exchange(b"POST /metrics HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n");
    assert_eq!(code, 405, "{body}");
    let (code, body) = exchange(b"GET /../../etc/passwd HTTP/1.1\r\n\r\n");
    assert_eq!(code, 404);
    assert!(body.contains("/metrics"), "{body}");
    // A peer that closes mid-head gets nothing and costs nothing.
    connect().write_all(b"GET /met").unwrap();

    // Slow peers take every request slot: the next peer is refused at once (not made
    // to wait), guests are served meanwhile. The peers above may still hold slots for
    // a moment (the daemon notices them gone on its own threads): until four slow
    // peers all hold one, the attempt is made again.
    let deadline = Instant::now() + Duration::from_secs(60);
    let slow = loop {
        let slow: Vec<UnixStream> = (0..4)
            .map(|_| {
                let mut c = connect();
                let _ = c.write_all(b"GET /metrics HTTP/1.1\r\n");
                c
            })
            .collect();
        let (code, body) = s.get("/metrics");
        let refused = |c: &UnixStream| {
            c.set_nonblocking(true).unwrap();
            let mut b = [0u8; 1];
            let answered =
                !matches!((&*c).read(&mut b), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock);
            c.set_nonblocking(false).unwrap();
            answered
        };
        if !slow.iter().any(refused) {
            assert_eq!(
                code, 503,
                "every slot held, the fifth peer is refused: {body}"
            );
            break slow;
        }
        assert!(
            Instant::now() < deadline,
            "four slow peers never held the slots"
        );
        drop(slow);
        std::thread::sleep(Duration::from_millis(20));
    };
    vadd_ok(&s.stream(), 4096, 1);
    let mut fe = s.d.connect(0);
    common::still_serves(&mut fe);
    drop(slow);
    // Slots come back as the daemon sees the slow peers gone.
    let deadline = Instant::now() + Duration::from_secs(60);
    while s.get("/metrics").0 != 200 {
        assert!(Instant::now() < deadline, "the slots never came back");
        std::thread::sleep(Duration::from_millis(20));
    }

    // A flood: hundreds of connections at once, most dropped unread. Every one is
    // answered or closed; the daemon keeps serving guests and scrapes.
    let flood: Vec<UnixStream> = (0..300)
        .filter_map(|i| {
            let mut c = UnixStream::connect(&s.metrics).ok()?;
            let _ = c.write_all(if i % 2 == 0 {
                b"GET /metrics HTTP/1.1\r\n\r\n"
            } else {
                b"\0\0\0\0"
            });
            Some(c)
        })
        .collect();
    drop(flood);
    vadd_ok(&s.stream(), 4096, 2);
    common::still_serves(&mut fe);
    let deadline = Instant::now() + Duration::from_secs(60);
    let m = loop {
        let (code, m) = s.get("/metrics");
        if code == 200 {
            break m;
        }
        assert!(Instant::now() < deadline, "no scrape after the flood");
        std::thread::sleep(Duration::from_millis(20));
    };
    promtool(&m).unwrap_or_else(|e| panic!("{e}\n{m}"));
    assert_eq!(
        value(
            &m,
            r#"vfpgad_runs_total{guest="vm1",kernel="vadd_u32",status="OK"}"#
        ),
        2.0
    );
    assert!(!s.d.log().contains("panicked"), "{}", s.d.log());
}

#[test]
fn status_says_how_to_reach_the_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let status = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_vfpgad"))
            .arg("status")
            .args(args)
            .output()
            .unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let nobody = dir.path().join("nobody.sock");
    let e = status(&["--metrics", &format!("unix:{}", nobody.display())]);
    assert!(
        e.contains("cannot reach the metrics endpoint") && e.contains("--metrics"),
        "{e}"
    );
    let conf = dir.path().join("vfpgad.toml");
    std::fs::write(
        &conf,
        "[[guest]]\nname = \"vm0\"\nsocket = \"/run/vfpga/vm0.sock\"\n",
    )
    .unwrap();
    let e = status(&["--config", conf.to_str().unwrap()]);
    assert!(
        e.contains("has no [metrics] listen") && e.contains("--metrics ADDR"),
        "{e}"
    );
    let e = status(&["--metrics", "metrics.sock"]);
    assert!(e.contains("unix:"), "{e}");
    // Something that is not vfpgad answers: said as such, not a hang.
    let fake = dir.path().join("fake.sock");
    let l = std::os::unix::net::UnixListener::bind(&fake).unwrap();
    let t = std::thread::spawn(move || {
        let (mut c, _) = l.accept().unwrap();
        let mut buf = [0u8; 1024];
        let _ = c.read(&mut buf);
        c.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\ncut")
            .unwrap();
    });
    let e = status(&["--metrics", &format!("unix:{}", fake.display())]);
    t.join().unwrap();
    assert!(e.contains("cut short"), "{e}");
    // A peer that never answers: a timeout with the address.
    let silent = dir.path().join("silent.sock");
    let _l = std::os::unix::net::UnixListener::bind(&silent).unwrap();
    let e = status(&[
        "--metrics",
        &format!("unix:{}", silent.display()),
        "--timeout",
        "1",
    ]);
    assert!(e.contains("did not answer within"), "{e}");
}

/// A free TCP port on loopback (bound and let go: nothing else here takes ports).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET path` from a TCP server on loopback: the body.
fn http_get(port: u16, path: &str) -> Option<String> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).ok()?;
    let (head, body) = raw.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_owned())
}

/// Ends a child process on drop.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn prometheus_scrapes_the_endpoint_and_sees_the_runs() {
    let dir = tempfile::tempdir().unwrap();
    let (port, prom_port) = (free_port(), free_port());
    let vm1 = dir.path().join("vm1.sock");
    let args = [
        "--listen".to_owned(),
        format!("vm1=unix:{}", vm1.display()),
        "--metrics".to_owned(),
        format!("127.0.0.1:{port}"),
    ];
    let d = Daemon::launch(tempfile::tempdir().unwrap(), vec![vm1.clone()], &args);
    // Asked as Prometheus asks, the endpoint answers OpenMetrics.
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nAccept: application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    assert!(
        raw.contains("Content-Type: application/openmetrics-text; version=1.0.0"),
        "{raw}"
    );
    assert!(raw.ends_with("# EOF\n"), "{raw}");

    let dev = Device::open(format!("unix:{}", vm1.display())).unwrap();
    for i in 0..7 {
        vadd_ok(&dev, 256, i);
    }
    let conf = dir.path().join("prometheus.yml");
    std::fs::write(
        &conf,
        format!(
            "global:\n  scrape_interval: 5s\n  scrape_timeout: 5s\nscrape_configs:\n  - job_name: vfpgad\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\n"
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
    let _prom = Child(
        Command::new("prometheus")
            .arg(format!("--config.file={}", conf.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("prometheus (Debian's prometheus package; scripts/setup-tests.sh installs it)"),
    );
    let query = |q: &str| -> Option<serde_json::Value> {
        let body = http_get(prom_port, &format!("/api/v1/query?query={q}"))?;
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        v["data"]["result"].as_array()?.first().cloned()
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    let runs = loop {
        // vfpgad_runs_total{guest="vm1",kernel="vadd_u32",status="OK"}, URL-encoded.
        let q = "vfpgad_runs_total%7Bguest%3D%22vm1%22%2Ckernel%3D%22vadd_u32%22%2Cstatus%3D%22OK%22%7D";
        if let Some(r) = query(q) {
            break r;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus never scraped the runs: {}",
            std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(runs["value"][1], "7", "{runs}");
    let targets = http_get(prom_port, "/api/v1/targets").unwrap();
    let t: serde_json::Value = serde_json::from_str(&targets).unwrap();
    let target = &t["data"]["activeTargets"][0];
    assert_eq!(target["health"], "up", "{target}");
    assert_eq!(target["lastError"], "", "{target}");
    // A histogram Prometheus can compute with.
    let count = query("vfpgad_run_duration_seconds_count").unwrap();
    assert_eq!(count["value"][1], "7", "{count}");
    drop(d);
}
