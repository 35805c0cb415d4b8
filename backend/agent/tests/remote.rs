//! The remote path end to end: `vfpga-agent` processes (sim engine) on loopback behind
//! an in-process vfpgad with the remote engine, driven by the vhost-user test frontend:
//! bit-exact results, an agent killed mid-request, a stalled link, a client without a
//! valid certificate, one of two agents down, and bitstream upload.
//!
//! `VFPGA_AGENT=PATH` runs another agent binary, `VFPGA_AGENT_RUNNER="CMD ARGS"` under a
//! runner: scripts/test-arm-agent.sh runs these tests against the armv7 build under
//! qemu-arm.
#![allow(clippy::unwrap_used, clippy::cast_possible_truncation)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use vfpga_engine::pl::model::{Faults, HlsModel, ModelBoard};
use vfpga_engine::Engine as _;
use vfpga_proto::{ElemType, Opcode, Status};
use vfpga_reference::{self as reference, le, Rng};
use vfpga_remote::{BoardConfig, Conn, RemoteConfig, RemoteEngine};
use vfpga_transport::TlsFiles;
use vfpga_vhu_frontend::{Arg, Layout, VhuFrontend};
use vfpgad::config::{BoardSection, Config, GuestConfig, LibraryConfig, RemoteSection};
use vfpgad::{build_engine, Server};

/// A deployment's certificates in a temporary folder.
fn pki() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    vfpga_agent::cert::init(
        d.path(),
        &["localhost".into(), "127.0.0.1".into()],
        "vfpgad",
    )
    .unwrap();
    d
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `vfpga-agent` process.
struct AgentProc {
    child: Option<Child>,
    port: u16,
    pki: PathBuf,
    extra: Vec<String>,
}

impl AgentProc {
    fn start(pki: &Path, port: u16, extra: &[&str]) -> Self {
        let mut a = Self {
            child: None,
            port,
            pki: pki.to_owned(),
            extra: extra.iter().map(|s| (*s).to_owned()).collect(),
        };
        a.spawn();
        a
    }

    fn spawn(&mut self) {
        let agent = std::env::var_os("VFPGA_AGENT").map_or_else(
            || PathBuf::from(env!("CARGO_BIN_EXE_vfpga-agent")),
            PathBuf::from,
        );
        let runner = std::env::var("VFPGA_AGENT_RUNNER").unwrap_or_default();
        let mut runner = runner.split_whitespace();
        let mut cmd = match runner.next() {
            Some(r) => {
                let mut c = Command::new(r);
                c.args(runner).arg(&agent);
                c
            }
            None => Command::new(&agent),
        };
        let child = cmd
            .args(["serve", "--pki"])
            .arg(&self.pki)
            .args(["--listen", &format!("127.0.0.1:{}", self.port)])
            .args(&self.extra)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "agent did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for AgentProc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// vfpgad (in this process) with the remote engine over `boards`, and a frontend.
struct Host {
    fe: VhuFrontend,
    server: Option<Server>,
    _dir: tempfile::TempDir,
}

impl Host {
    fn start(pki: &Path, boards: &[String], timeout_ms: u64) -> Self {
        Self::start_with_health(pki, boards, timeout_ms, 100)
    }

    /// With health checks every `health_ms`.
    fn start_with_health(pki: &Path, boards: &[String], timeout_ms: u64, health_ms: u64) -> Self {
        Self::start_with(pki, boards, timeout_ms, health_ms, &[])
    }

    /// With health checks every `health_ms`, and bitstreams `allow` guests may load
    /// (a library folder of its own; the remote engine forwards only those names).
    fn start_with(
        pki: &Path,
        boards: &[String],
        timeout_ms: u64,
        health_ms: u64,
        allow: &[&str],
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("vm0.sock");
        let mut config = Config {
            guests: vec![GuestConfig::new("vm0", socket.clone())],
            remote: Some(RemoteSection {
                ca: pki.join("ca.pem"),
                cert: pki.join("client.pem"),
                key: pki.join("client.key"),
                timeout_ms,
                connections: 2,
                health_interval_ms: health_ms,
                boards: boards
                    .iter()
                    .enumerate()
                    .map(|(i, a)| BoardSection {
                        name: format!("board{i}"),
                        address: a.clone(),
                        server_name: None,
                    })
                    .collect(),
            }),
            library: (!allow.is_empty()).then(|| {
                LibraryConfig::new(
                    dir.path().to_owned(),
                    allow.iter().map(|a| (*a).to_owned()).collect(),
                )
            }),
            ..Config::default()
        };
        config.daemon.engine = vfpgad::config::EngineKind::Remote;
        config.metrics.listen = Some(format!(
            "unix:{}",
            dir.path().join("metrics.sock").display()
        ));
        // Every guest may load what the library allows.
        config.device.bitstreams = vec!["*".into()];
        config.validate().unwrap();
        let server = Server::start(&config, build_engine(&config).unwrap()).unwrap();
        let fe = VhuFrontend::connect(&socket, Default::default()).unwrap();
        Self {
            fe,
            server: Some(server),
            _dir: dir,
        }
    }

    /// A page of the metrics endpoint.
    fn page(&self, path: &str) -> String {
        let addr = self.server.as_ref().unwrap().metrics_addr().unwrap();
        vfpgad::metrics::client::get(addr, path, Duration::from_secs(30)).unwrap()
    }

    fn open(&mut self, kernel: &str) -> u64 {
        let r = self
            .fe
            .call(
                0,
                Opcode::OpenSession,
                0,
                &[Arg::In(ElemType::U8, kernel.as_bytes())],
                Layout::Direct,
            )
            .unwrap();
        assert_eq!(r.status(), Some(Status::Ok), "open {kernel}");
        r.resp.value
    }

    /// Waits until a board answers: a small run goes through.
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let r = self
                .fe
                .call(
                    0,
                    Opcode::OpenSession,
                    0,
                    &[Arg::In(ElemType::U8, b"vadd_u32")],
                    Layout::Direct,
                )
                .unwrap();
            if r.status() == Some(Status::Ok) {
                let s = r.resp.value;
                let ok = self.vadd(s, 16, &mut Rng(1)) == (Some(Status::Ok), true);
                self.fe
                    .call(0, Opcode::CloseSession, s, &[], Layout::Direct)
                    .unwrap();
                if ok {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "no board answered");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn vadd(&mut self, session: u64, n: usize, rng: &mut Rng) -> (Option<Status>, bool) {
        let a: Vec<u32> = (0..n).map(|_| rng.next() as u32).collect();
        let b: Vec<u32> = (0..n).map(|_| rng.next() as u32).collect();
        let r = self
            .fe
            .call(
                1,
                Opcode::Run,
                session,
                &[
                    Arg::In(ElemType::U32, &le(&a, u32::to_le_bytes)),
                    Arg::In(ElemType::U32, &le(&b, u32::to_le_bytes)),
                    Arg::Out(ElemType::U32, n * 4),
                    Arg::Scalar(ElemType::U32, n as u64),
                ],
                Layout::Paged(4096),
            )
            .unwrap();
        let exact = r.outputs[0] == le(&reference::vadd_u32(&a, &b), u32::to_le_bytes);
        (r.status(), exact)
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown(Duration::from_secs(5));
        }
    }
}

#[test]
fn every_kernel_bit_exact_through_an_agent() {
    let pki = pki();
    let agent = AgentProc::start(pki.path(), free_port(), &[]);
    let mut host = Host::start(pki.path(), &[agent.address()], 10_000);
    host.wait_ready();
    let mut rng = Rng(41);
    let s = host.open("vadd_u32");
    assert_eq!(
        host.vadd(s, 300_000, &mut rng),
        (Some(Status::Ok), true),
        "1.2 MB vectors"
    );

    let (m, k, n) = (33usize, 47usize, 29usize);
    let a: Vec<f32> = (0..m * k)
        .map(|_| (rng.next() % 999) as f32 / 7.0)
        .collect();
    let b: Vec<f32> = (0..k * n)
        .map(|_| (rng.next() % 999) as f32 / 9.0)
        .collect();
    let s = host.open("mmult");
    let r = host
        .fe
        .call(
            1,
            Opcode::Run,
            s,
            &[
                Arg::In(ElemType::F32, &le(&a, f32::to_le_bytes)),
                Arg::In(ElemType::F32, &le(&b, f32::to_le_bytes)),
                Arg::Out(ElemType::F32, m * n * 4),
                Arg::Scalar(ElemType::U32, m as u64),
                Arg::Scalar(ElemType::U32, k as u64),
                Arg::Scalar(ElemType::U32, n as u64),
            ],
            Layout::Paged(4096),
        )
        .unwrap();
    assert_eq!(
        r.outputs[0],
        le(&reference::mmult(&a, &b, m, k, n), f32::to_le_bytes),
        "mmult"
    );

    let x: Vec<i16> = (0..5000).map(|_| rng.next() as i16).collect();
    let taps: Vec<i32> = (0..33).map(|_| (rng.next() as i32) >> 9).collect();
    let s = host.open("fir");
    let r = host
        .fe
        .call(
            1,
            Opcode::Run,
            s,
            &[
                Arg::In(ElemType::I16, &le(&x, i16::to_le_bytes)),
                Arg::In(ElemType::I32, &le(&taps, i32::to_le_bytes)),
                Arg::Out(ElemType::I32, 20_000),
                Arg::Scalar(ElemType::U32, 5000),
                Arg::Scalar(ElemType::U32, 33),
            ],
            Layout::Paged(4096),
        )
        .unwrap();
    assert_eq!(
        r.outputs[0],
        le(&reference::fir(&x, &taps), i32::to_le_bytes),
        "fir"
    );

    let data = rng.bytes(200_001);
    let s = host.open("sha256");
    let r = host
        .fe
        .call(
            1,
            Opcode::Run,
            s,
            &[
                Arg::In(ElemType::U8, &data),
                Arg::Out(ElemType::U8, 32),
                Arg::Scalar(ElemType::U64, 200_001),
            ],
            Layout::Paged(4096),
        )
        .unwrap();
    assert_eq!(r.outputs[0], reference::sha256(&data), "sha256");

    let (w, h) = (211usize, 97usize);
    let img = rng.bytes(w * h);
    let s = host.open("sobel");
    let r = host
        .fe
        .call(
            1,
            Opcode::Run,
            s,
            &[
                Arg::In(ElemType::U8, &img),
                Arg::Out(ElemType::U8, w * h),
                Arg::Scalar(ElemType::U32, w as u64),
                Arg::Scalar(ElemType::U32, h as u64),
            ],
            Layout::Paged(4096),
        )
        .unwrap();
    assert_eq!(r.outputs[0], reference::sobel(&img, w, h), "sobel");

    // Arguments the board refuses come back as the board's status.
    let s = host.open("fir");
    let r = host
        .fe
        .call(
            1,
            Opcode::Run,
            s,
            &[
                Arg::In(ElemType::I16, &[0u8; 2]),
                Arg::In(ElemType::I32, &[0u8; 300 * 4]),
                Arg::Out(ElemType::I32, 4),
                Arg::Scalar(ElemType::U32, 1),
                Arg::Scalar(ElemType::U32, 300),
            ],
            Layout::Direct,
        )
        .unwrap();
    assert_eq!((r.status(), r.resp.detail), (Some(Status::BadArgument), 4));
}

#[test]
fn an_agent_killed_mid_request_fails_it_with_link_down_and_recovers() {
    let pki = pki();
    let board = PlBoard::new();
    let mut agent = AgentProc::start(pki.path(), free_port(), &board.agent_args());
    let mut host = Host::start(pki.path(), &[agent.address()], 20_000);
    host.wait_ready();
    let s = host.open("vadd_u32");
    // The model's core starts the run and holds it: the request is in flight on the
    // agent for as long as the test wants, whatever the machine's speed.
    board.model.set_faults(Faults {
        hold: vec!["vadd_u32".into()],
        ..Faults::default()
    });
    let a = le(&vec![1u32; 1000], u32::to_le_bytes);
    let p = host
        .fe
        .prepare(
            1,
            Opcode::Run,
            s,
            &[
                Arg::In(ElemType::U32, &a),
                Arg::In(ElemType::U32, &a),
                Arg::Out(ElemType::U32, a.len()),
                Arg::Scalar(ElemType::U32, 1000),
            ],
            Layout::Paged(4096),
        )
        .unwrap();
    host.fe.start_prepared(&p).unwrap();
    board.wait_event("held");
    let killed = Instant::now();
    agent.kill();
    board.model.set_faults(Faults::default());
    host.fe.queues[1]
        .wait_used(&host.fe.mem, Duration::from_secs(30))
        .unwrap();
    let resp = host.fe.response(&p).unwrap();
    assert_eq!(resp.status(), Some(Status::LinkDown), "{resp:?}");
    assert!(
        killed.elapsed() < Duration::from_secs(15),
        "failed when the link dropped, not at the 20 s timeout"
    );
    agent.spawn();
    host.wait_ready();
    let s = host.open("vadd_u32");
    assert_eq!(
        host.vadd(s, 1000, &mut Rng(42)),
        (Some(Status::Ok), true),
        "served again after the restart"
    );
}

/// A TCP proxy that forwards until told to stall (then holds every byte) or to
/// trickle (then passes one byte every 20 ms).
struct Proxy {
    port: u16,
    stall: Arc<AtomicBool>,
    trickle: Arc<AtomicBool>,
}

impl Proxy {
    fn start(to: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let stall = Arc::new(AtomicBool::new(false));
        let trickle = Arc::new(AtomicBool::new(false));
        let (st, tr) = (stall.clone(), trickle.clone());
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = TcpStream::connect(("127.0.0.1", to)) else {
                    continue;
                };
                for (mut from, mut into) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    let (st, tr) = (st.clone(), tr.clone());
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 16384];
                        while let Ok(n) = from.read(&mut buf) {
                            if n == 0 {
                                break;
                            }
                            while st.load(Ordering::Acquire) {
                                std::thread::sleep(Duration::from_millis(50));
                            }
                            let sent = if tr.load(Ordering::Acquire) {
                                buf[..n].iter().try_for_each(|b| {
                                    std::thread::sleep(Duration::from_millis(20));
                                    into.write_all(std::slice::from_ref(b))
                                })
                            } else {
                                into.write_all(&buf[..n])
                            };
                            if sent.is_err() {
                                break;
                            }
                        }
                    });
                }
            }
        });
        Self {
            port,
            stall,
            trickle,
        }
    }
}

#[test]
fn a_stalled_link_times_out_instead_of_hanging() {
    let pki = pki();
    let agent = AgentProc::start(pki.path(), free_port(), &[]);
    let proxy = Proxy::start(agent.port);
    // No health checks in the way: the request is the link's only user, on the pooled
    // connection the first run opened (a health check taking it would make the request
    // open another, whose handshake stalls: LINK_DOWN, also prompt, but not this test).
    let mut host = Host::start_with_health(
        pki.path(),
        &[format!("127.0.0.1:{}", proxy.port)],
        3000,
        3_600_000,
    );
    host.wait_ready();
    let s = host.open("vadd_u32");
    assert_eq!(host.vadd(s, 1000, &mut Rng(43)).0, Some(Status::Ok));
    proxy.stall.store(true, Ordering::Release);
    let start = Instant::now();
    let (status, _) = host.vadd(s, 1000, &mut Rng(44));
    assert_eq!(status, Some(Status::Timeout));
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "took {:?}",
        start.elapsed()
    );
}

#[test]
fn a_trickling_link_is_cut_at_the_request_deadline() {
    // Bytes keep coming, one every 20 ms, so no single read ever waits long: only a
    // deadline on the whole exchange ends the request (the vadd below would otherwise
    // take minutes).
    let pki = pki();
    let agent = AgentProc::start(pki.path(), free_port(), &[]);
    let proxy = Proxy::start(agent.port);
    let mut host = Host::start_with_health(
        pki.path(),
        &[format!("127.0.0.1:{}", proxy.port)],
        3000,
        3_600_000,
    );
    host.wait_ready();
    let s = host.open("vadd_u32");
    assert_eq!(host.vadd(s, 1000, &mut Rng(45)).0, Some(Status::Ok));
    proxy.trickle.store(true, Ordering::Release);
    let start = Instant::now();
    // 12 000 bytes at one per 20 ms: four minutes without the deadline.
    let (status, _) = host.vadd(s, 1000, &mut Rng(46));
    eprintln!("trickling link: {status:?} after {:?}", start.elapsed());
    assert_eq!(status, Some(Status::Timeout));
    assert!(
        start.elapsed() < Duration::from_secs(30),
        "took {:?}",
        start.elapsed()
    );
}

#[test]
fn a_request_too_large_for_the_board_fails_alone_and_keeps_the_board() {
    let pki = pki();
    let agent = AgentProc::start(pki.path(), free_port(), &["--max-request-mib", "1"]);
    let mut host = Host::start(pki.path(), &[agent.address()], 20_000);
    host.wait_ready();
    let s = host.open("vadd_u32");
    // 3 × 400 KiB: more than the agent's 1 MiB. The agent skips the inputs and answers
    // TOO_LARGE on the same connection; the board stays in the pool.
    let (status, _) = host.vadd(s, 100_000, &mut Rng(47));
    assert_eq!(status, Some(Status::EngineError));
    for seed in 0..3 {
        assert_eq!(
            host.vadd(s, 1000, &mut Rng(48 + seed)),
            (Some(Status::Ok), true),
            "the board still serves at once"
        );
    }
}

#[test]
fn clients_without_a_valid_certificate_are_refused() {
    let pki = pki();
    let agent = AgentProc::start(pki.path(), free_port(), &[]);
    let good = vfpga_transport::client_config(&TlsFiles {
        ca: pki.path().join("ca.pem"),
        cert: pki.path().join("client.pem"),
        key: pki.path().join("client.key"),
    })
    .unwrap();
    let mut c = Conn::connect(&agent.address(), "127.0.0.1", good, Duration::from_secs(5)).unwrap();
    c.nop().unwrap();
    // Signed by another CA.
    let other = tempfile::tempdir().unwrap();
    vfpga_agent::cert::init(other.path(), &["127.0.0.1".into()], "intruder").unwrap();
    let foreign = vfpga_transport::client_config(&TlsFiles {
        ca: pki.path().join("ca.pem"),
        cert: other.path().join("client.pem"),
        key: other.path().join("client.key"),
    })
    .unwrap();
    let refused = Conn::connect(
        &agent.address(),
        "127.0.0.1",
        foreign,
        Duration::from_secs(5),
    )
    .and_then(|mut c| c.nop());
    assert!(refused.is_err(), "a certificate from another CA is refused");
    // The server's own certificate cannot be used as a client's (wrong key usage).
    let wrong_use = vfpga_transport::client_config(&TlsFiles {
        ca: pki.path().join("ca.pem"),
        cert: pki.path().join("server.pem"),
        key: pki.path().join("server.key"),
    })
    .unwrap();
    let refused = Conn::connect(
        &agent.address(),
        "127.0.0.1",
        wrong_use,
        Duration::from_secs(5),
    )
    .and_then(|mut c| c.nop());
    assert!(
        refused.is_err(),
        "a server certificate is not a client certificate"
    );
    // No certificate at all.
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls_pki_types::pem::PemObject::from_pem_file(pki.path().join("ca.pem")).unwrap())
        .unwrap();
    let anonymous = Arc::new(
        rustls::ClientConfig::builder_with_provider(vfpga_transport::tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    );
    let refused = Conn::connect(
        &agent.address(),
        "127.0.0.1",
        anonymous,
        Duration::from_secs(5),
    )
    .and_then(|mut c| c.nop());
    assert!(
        refused.is_err(),
        "a client without a certificate is refused"
    );
    c.nop().unwrap();
}

#[test]
fn with_one_of_two_agents_down_requests_go_to_the_other() {
    let pki = pki();
    let mut down = AgentProc::start(pki.path(), free_port(), &[]);
    let up = AgentProc::start(pki.path(), free_port(), &[]);
    let mut host = Host::start(pki.path(), &[down.address(), up.address()], 10_000);
    host.wait_ready();
    assert!(host
        .page("/metrics")
        .contains("vfpgad_board_up{board=\"board0\"} 1"));
    down.kill();
    let s = host.open("vadd_u32");
    let ok_runs = |m: &str| -> u64 {
        let series = "vfpgad_runs_total{guest=\"vm0\",kernel=\"vadd_u32\",status=\"OK\"} ";
        m.lines()
            .find_map(|l| l.strip_prefix(series))
            .map_or(0, |v| v.parse().unwrap())
    };
    let before = ok_runs(&host.page("/metrics"));
    let mut rng = Rng(45);
    for i in 0..12 {
        assert_eq!(
            host.vadd(s, 5000, &mut rng),
            (Some(Status::Ok), true),
            "request {i}"
        );
    }
    // The operator sees which board is down, and why.
    let deadline = Instant::now() + Duration::from_secs(60);
    let m = loop {
        let m = host.page("/metrics");
        if m.contains("vfpgad_board_up{board=\"board0\"} 0") {
            break m;
        }
        assert!(Instant::now() < deadline, "board0 never shown down:\n{m}");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(m.contains("vfpgad_board_up{board=\"board1\"} 1"), "{m}");
    assert_eq!(ok_runs(&m), before + 12, "{m}");
    let status = host.page("/status");
    assert!(status.contains("engine remote"), "{status}");
    assert!(status.contains("board board0: down: "), "{status}");
    assert!(status.contains("board board1: up"), "{status}");
}

#[test]
fn bitstreams_upload_with_progress_and_load() {
    let pki = pki();
    let lib = tempfile::tempdir().unwrap();
    let agent = AgentProc::start(
        pki.path(),
        free_port(),
        &[
            "--library",
            lib.path().to_str().unwrap(),
            "--allow",
            "hashes",
        ],
    );
    let tls = vfpga_transport::client_config(&TlsFiles {
        ca: pki.path().join("ca.pem"),
        cert: pki.path().join("client.pem"),
        key: pki.path().join("client.key"),
    })
    .unwrap();
    let mut c = Conn::connect(&agent.address(), "localhost", tls, Duration::from_secs(5)).unwrap();
    let manifest = r#"
[bitstream]
name = "hashes"
file = "hashes.bit.bin"
[[kernel]]
name = "digest"
sim = "sha256"
args = [
  { name = "data", kind = "in", type = "u8", dims = ["n"] },
  { name = "digest", kind = "out", type = "u8", count = 32 },
  { name = "n", kind = "scalar", type = "u64" },
]
"#;
    let bitstream = vec![0x5au8; 300_000];
    let mut seen = Vec::new();
    c.upload(
        "hashes",
        manifest,
        &mut &bitstream[..],
        bitstream.len() as u64,
        &mut |s, t| seen.push((s, t)),
    )
    .unwrap();
    assert_eq!(seen.first(), Some(&(0, 300_000)));
    assert_eq!(seen.last(), Some(&(300_000, 300_000)));
    assert!(seen.len() >= 5, "progress reported per chunk: {seen:?}");
    assert_eq!(
        std::fs::read(lib.path().join("hashes.bit.bin")).unwrap(),
        bitstream
    );
    assert_eq!(c.load("hashes").unwrap(), 1);
    let names: Vec<String> = c.kernels().unwrap().into_iter().map(|k| k.name).collect();
    assert_eq!(names, vec!["digest".to_owned()]);
    let bad = c.upload("../x", manifest, &mut &bitstream[..], 10, &mut |_, _| {});
    assert!(bad.is_err(), "names are not paths");
    // Uploaded is not allowed: a bitstream the owner did not name stays unloadable.
    c.upload(
        "other",
        &manifest
            .replace("\"hashes\"", "\"other\"")
            .replace("hashes.bit", "other.bit"),
        &mut &bitstream[..],
        bitstream.len() as u64,
        &mut |_, _| {},
    )
    .unwrap();
    assert!(
        matches!(
            c.load("other"),
            Err(vfpga_remote::ConnError::Status {
                status: Status::Permission,
                ..
            })
        ),
        "an agent's library denies what --allow does not name"
    );
}

#[test]
fn an_agent_on_the_pl_engine_drives_the_register_level_model() {
    let pki = pki();
    let board = PlBoard::new();
    let agent = AgentProc::start(pki.path(), free_port(), &board.agent_args());
    let mut host = Host::start(pki.path(), &[agent.address()], 10_000);
    host.wait_ready();
    let s = host.open("vadd_u32");
    assert_eq!(
        host.vadd(s, 100_000, &mut Rng(46)),
        (Some(Status::Ok), true)
    );
    assert!(board.model.runs() >= 2, "the model's core did the work");
}

#[test]
fn sigterm_lets_a_running_kernel_finish() {
    let pki = pki();
    let board = PlBoard::new();
    let mut agent = AgentProc::start(pki.path(), free_port(), &board.agent_args());
    let tls = vfpga_transport::client_config(&TlsFiles {
        ca: pki.path().join("ca.pem"),
        cert: pki.path().join("client.pem"),
        key: pki.path().join("client.key"),
    })
    .unwrap();
    let address = agent.address();
    let mut c = Conn::connect(&address, "127.0.0.1", tls, Duration::from_secs(30)).unwrap();
    let s = c.session("vadd_u32").unwrap();
    // The core holds the run until released: SIGTERM arrives while it runs.
    board.model.set_faults(Faults {
        hold: vec!["vadd_u32".into()],
        ..Faults::default()
    });
    let worker = std::thread::spawn(move || {
        let n = 5000usize;
        let a = le(&vec![2u32; n], u32::to_le_bytes);
        let mut out = vec![0u8; n * 4];
        let args = [
            vfpga_proto::ArgEntry::input(ElemType::U32, a.len() as u64),
            vfpga_proto::ArgEntry::input(ElemType::U32, a.len() as u64),
            vfpga_proto::ArgEntry::output(ElemType::U32, out.len() as u64),
            vfpga_proto::ArgEntry::scalar(ElemType::U32, n as u64),
        ];
        use vfpga_remote::conn::{Dst, Src};
        let r = c.call(
            Opcode::Run,
            s,
            &args,
            &[Src::Bytes(&a), Src::Bytes(&a)],
            &mut [Dst::Bytes(&mut out)],
        );
        (r.map(|r| r.status()), out)
    });
    board.wait_event("held");
    let pid = i32::try_from(agent.child.as_ref().unwrap().id()).unwrap();
    // SAFETY: kill(2) on our own child process.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    // The agent has the signal (it stops listening) before the core is released.
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(agent.address()).is_ok() {
        assert!(
            Instant::now() < deadline,
            "the agent kept listening after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    board.model.set_faults(Faults::default());
    let (status, out) = worker.join().unwrap();
    assert_eq!(
        status.unwrap(),
        Some(Status::Ok),
        "the running kernel finished"
    );
    assert!(out
        .chunks(4)
        .all(|w| u32::from_le_bytes(w.try_into().unwrap()) == 4));
    let exit = agent.child.take().unwrap().wait().unwrap();
    assert!(exit.success(), "agent exit status {exit:?}");
}

/// A board's programmable logic as the register-level model plays it: a vadd_u32 and an
/// mmult core and the bitstream `base` for them. The model runs in this process; the agent drives it
/// through its files.
struct PlBoard {
    model: HlsModel,
    root: String,
    lib: String,
    _dir: tempfile::TempDir,
}

impl PlBoard {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        // Held runs last as long as a test wants: no core timeout gets in the way.
        let b = ModelBoard::start(dir.path(), &["vadd_u32", "mmult"], 600_000).unwrap();
        Self {
            root: b.root.to_str().unwrap().to_owned(),
            lib: b.library.to_str().unwrap().to_owned(),
            model: b.model,
            _dir: dir,
        }
    }

    /// `vfpga-agent serve` options for the pl engine on this board.
    fn agent_args(&self) -> [&str; 8] {
        [
            "--engine",
            "pl",
            "--library",
            &self.lib,
            "--bitstream",
            "base",
            "--root",
            &self.root,
        ]
    }

    /// Waits until the model reports an event containing `what`.
    fn wait_event(&self, what: &str) {
        if let Err(seen) = self.model.wait_event(what, Duration::from_secs(60)) {
            panic!("the model never reported {what:?}: {seen:?}");
        }
    }
}

/// Runs `kernel` (vadd_u32 on 64 elements, or a 4x4x4 mmult) on the remote engine
/// directly, as vfpgad's engine threads do; its result.
fn remote_run(
    engine: &RemoteEngine,
    kernel: &vfpga_engine::Kernel,
) -> Result<(), vfpga_engine::EngineError> {
    use vfpga_engine::{Call, SegStream, SgBuf};
    use vfpga_proto::{ArgEntry, MAX_ARGS};
    let mut a = vec![0u8; 256];
    let mut b = vec![0u8; 256];
    let mut c = vec![0u8; 256];
    let seg = |m: &mut Vec<u8>| {
        let mut s = SegStream::with_capacity(1);
        s.push(m.as_mut_ptr(), m.len());
        s
    };
    let (sa, sb, sc) = (seg(&mut a), seg(&mut b), seg(&mut c));
    let (args, n): (Vec<ArgEntry>, usize) = if kernel.sig.name == "mmult" {
        let mut v = vec![
            ArgEntry::input(ElemType::F32, 64),
            ArgEntry::input(ElemType::F32, 64),
            ArgEntry::output(ElemType::F32, 64),
        ];
        v.extend([ArgEntry::scalar(ElemType::U32, 4); 3]);
        (v, 64)
    } else {
        (
            vec![
                ArgEntry::input(ElemType::U32, 256),
                ArgEntry::input(ElemType::U32, 256),
                ArgEntry::output(ElemType::U32, 256),
                ArgEntry::scalar(ElemType::U32, 64),
            ],
            256,
        )
    };
    let mut bufs: [Option<SgBuf<'_>>; MAX_ARGS] = [None; MAX_ARGS];
    // SAFETY: the vectors outlive the views; nothing else touches them meanwhile.
    unsafe {
        bufs[0] = SgBuf::new(sa.segs(), 0, n);
        bufs[1] = SgBuf::new(sb.segs(), 0, n);
        bufs[2] = SgBuf::new(sc.segs(), 0, n);
    }
    engine.run(kernel, &Call::new(&args, &bufs))
}

#[test]
fn a_remote_load_invalidates_old_sessions_and_pooled_connections_follow() {
    let pki = pki();
    let board = PlBoard::new();
    // A second bitstream for the same cores.
    let base = std::fs::read_to_string(Path::new(&board.lib).join("base.toml")).unwrap();
    std::fs::write(
        Path::new(&board.lib).join("base2.toml"),
        base.replacen("name = \"base\"", "name = \"base2\"", 1),
    )
    .unwrap();
    let mut args: Vec<&str> = board.agent_args().to_vec();
    args.extend(["--allow", "base2"]);
    let agent = AgentProc::start(pki.path(), free_port(), &args);
    let engine = RemoteEngine::new(RemoteConfig {
        boards: vec![BoardConfig {
            name: "board".into(),
            address: agent.address(),
            server_name: "127.0.0.1".into(),
        }],
        tls: vfpga_transport::client_config(&TlsFiles {
            ca: pki.path().join("ca.pem"),
            cert: pki.path().join("client.pem"),
            key: pki.path().join("client.key"),
        })
        .unwrap(),
        timeout: Duration::from_secs(120),
        connections: 2,
        health_interval: Duration::from_secs(3600),
        allow: vec!["base2".into()],
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    while engine.catalog().kernels.is_empty() {
        assert!(
            Instant::now() < deadline,
            "the board's catalogue never came"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // A vadd and an mmult held on the board at once use both connections; run twice,
    // the other way round, every connection holds a board session for both kernels.
    let both_held = |engine: &Arc<RemoteEngine>, first: &str, second: &str, held: usize| {
        board.model.set_faults(Faults {
            hold: vec!["vadd_u32".into(), "mmult".into()],
            ..Faults::default()
        });
        let cat = engine.catalog();
        let runs: Vec<_> = [first, second]
            .iter()
            .map(|k| {
                let (e, k) = (engine.clone(), cat.find(k).unwrap().clone());
                std::thread::spawn(move || remote_run(&e, &k))
            })
            .collect();
        // Both held on the board, or one back already (refused: the test then fails
        // on its result).
        let deadline = Instant::now() + Duration::from_secs(60);
        while board
            .model
            .events()
            .iter()
            .filter(|e| e.contains("held"))
            .count()
            < held
            && !runs.iter().any(|t| t.is_finished())
        {
            assert!(
                Instant::now() < deadline,
                "both runs never reached the board"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        board.model.set_faults(Faults::default());
        runs.into_iter()
            .map(|t| t.join().unwrap().map_err(|e| e.to_string()))
            .collect::<Vec<_>>()
    };
    assert_eq!(both_held(&engine, "vadd_u32", "mmult", 2), [Ok(()), Ok(())]);
    assert_eq!(both_held(&engine, "mmult", "vadd_u32", 4), [Ok(()), Ok(())]);
    let old = engine.catalog().find("vadd_u32").unwrap().clone();
    assert!(
        matches!(
            engine.load_bitstream("base"),
            Err(vfpga_engine::EngineError::Permission(_))
        ),
        "only vfpgad's allowlist is forwarded"
    );
    engine.load_bitstream("base2").unwrap();
    // The kernel of the old catalogue runs nothing, as on every engine.
    assert!(matches!(
        remote_run(&engine, &old),
        Err(vfpga_engine::EngineError::KernelGone(_))
    ));
    // Both connections at once again: the one that did not do the load forgets the
    // board sessions it held from before it.
    assert_eq!(both_held(&engine, "vadd_u32", "mmult", 6), [Ok(()), Ok(())]);
    engine.shutdown();
}

/// Waits up to 60 s for `ok`, polling the engine's state (health checks every 50 ms).
fn eventually(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ok() {
        assert!(Instant::now() < deadline, "never: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn engine_over(pki: &Path, boards: &[String]) -> Arc<RemoteEngine> {
    RemoteEngine::new(RemoteConfig {
        boards: boards
            .iter()
            .enumerate()
            .map(|(i, a)| BoardConfig {
                name: format!("board{i}"),
                address: a.clone(),
                server_name: "127.0.0.1".into(),
            })
            .collect(),
        tls: vfpga_transport::client_config(&TlsFiles {
            ca: pki.join("ca.pem"),
            cert: pki.join("client.pem"),
            key: pki.join("client.key"),
        })
        .unwrap(),
        timeout: Duration::from_secs(10),
        connections: 2,
        health_interval: Duration::from_millis(50),
        allow: Vec::new(),
    })
}

#[test]
fn the_catalogue_follows_the_board_and_unreachable_boards_say_why() {
    let ours = pki();
    let lib = tempfile::tempdir().unwrap();
    std::fs::write(
        lib.path().join("hashes.toml"),
        "[bitstream]\nname = \"hashes\"\n[[kernel]]\nname = \"digest\"\nsim = \"sha256\"\nargs = [\n  { name = \"data\", kind = \"in\", type = \"u8\", dims = [\"n\"] },\n  { name = \"digest\", kind = \"out\", type = \"u8\", count = 32 },\n  { name = \"n\", kind = \"scalar\", type = \"u64\" },\n]\n",
    )
    .unwrap();
    let agent = AgentProc::start(
        ours.path(),
        free_port(),
        &[
            "--library",
            lib.path().to_str().unwrap(),
            "--allow",
            "hashes",
        ],
    );
    let nobody = format!("127.0.0.1:{}", free_port());
    let engine = engine_over(ours.path(), &[agent.address(), nobody]);
    // The unreachable board says why, in words.
    eventually("board1's status explains", || {
        engine.status()[1].2.contains("nothing listens there")
    });
    // The first board's catalogue (the agent's sim engine).
    eventually("the catalogue is the board's", || {
        engine.catalog().find("vadd_u32").is_some()
    });
    let before = engine.catalog().generation;
    // Another host loads a bitstream on the board: the catalogue follows it.
    let tls = vfpga_transport::client_config(&TlsFiles {
        ca: ours.path().join("ca.pem"),
        cert: ours.path().join("client.pem"),
        key: ours.path().join("client.key"),
    })
    .unwrap();
    let mut other_host =
        Conn::connect(&agent.address(), "127.0.0.1", tls, Duration::from_secs(5)).unwrap();
    assert_eq!(other_host.load("hashes").unwrap(), 1);
    eventually("the catalogue follows the board's load", || {
        engine.catalog().name == "hashes"
    });
    let c = engine.catalog();
    assert!(c.find("digest").is_some() && c.find("vadd_u32").is_none());
    assert_ne!(c.generation, before, "old sessions' kernels are gone");
    engine.shutdown();
    // A board whose certificate another CA signed: explained too.
    let stranger = pki();
    let other = engine_over(stranger.path(), &[agent.address()]);
    eventually("a board of another CA is explained", || {
        other.status()[0].2.contains("not signed by our CA")
    });
    other.shutdown();
}

fn agent_cli(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_vfpga-agent"))
        .args(args)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "vfpga-agent {args:?}: {text}");
    text
}

fn connect_as(
    agent: &AgentProc,
    pki: &Path,
    prefix: &str,
) -> Result<Conn, vfpga_remote::ConnError> {
    let tls = vfpga_transport::client_config(&TlsFiles {
        ca: pki.join("ca.pem"),
        cert: pki.join(format!("{prefix}.pem")),
        key: pki.join(format!("{prefix}.key")),
    })
    .unwrap();
    Conn::connect(&agent.address(), "127.0.0.1", tls, Duration::from_secs(5))
}

const HASHES: &str = "[bitstream]\nname = \"hashes\"\nfile = \"hashes.bit.bin\"\n[[kernel]]\nname = \"digest\"\nsim = \"sha256\"\nargs = [\n  { name = \"data\", kind = \"in\", type = \"u8\", dims = [\"n\"] },\n  { name = \"digest\", kind = \"out\", type = \"u8\", count = 32 },\n  { name = \"n\", kind = \"scalar\", type = \"u64\" },\n]\n";

#[test]
fn roles_revocation_and_expiry_are_enforced_by_the_board() {
    let pki = pki();
    let d = pki.path().to_str().unwrap();
    let lib = tempfile::tempdir().unwrap();
    let list = pki.path().join("revoked.txt");
    std::fs::write(&list, "# revoked client certificates\n").unwrap();
    let agent = AgentProc::start(
        pki.path(),
        free_port(),
        &[
            "--library",
            lib.path().to_str().unwrap(),
            "--allow",
            "hashes",
            "--revoked",
            list.to_str().unwrap(),
        ],
    );
    let out = agent_cli(&[
        "cert", "client", "--dir", d, "--prefix", "runner", "--name", "runner",
    ]);
    assert!(out.contains("role run"), "{out}");
    // A run-only host runs, but neither uploads nor loads.
    let mut runner = connect_as(&agent, pki.path(), "runner").unwrap();
    runner.nop().unwrap();
    let denied = runner.upload("hashes", HASHES, &mut &b"bits"[..], 4, &mut |_, _| {});
    assert!(
        matches!(
            denied,
            Err(vfpga_remote::ConnError::Status {
                status: Status::Permission,
                ..
            })
        ),
        "{denied:?}"
    );
    assert!(!lib.path().join("hashes.toml").exists(), "nothing stored");
    // The admin (cert init's client) uploads and loads; the runner still may not load.
    let mut admin = connect_as(&agent, pki.path(), "client").unwrap();
    admin
        .upload("hashes", HASHES, &mut &b"bits"[..], 4, &mut |_, _| {})
        .unwrap();
    assert!(matches!(
        runner.load("hashes"),
        Err(vfpga_remote::ConnError::Status {
            status: Status::Permission,
            ..
        })
    ));
    assert_eq!(admin.load("hashes").unwrap(), 1);
    // A bitstream's files are its own: an upload naming another's file is refused.
    let intruder = HASHES.replace("name = \"hashes\"", "name = \"other\"");
    let r = admin.upload("other", &intruder, &mut &b"evil"[..], 4, &mut |_, _| {});
    assert!(
        matches!(
            r,
            Err(vfpga_remote::ConnError::Status {
                status: Status::BadArgument,
                ..
            })
        ),
        "{r:?}"
    );
    assert_eq!(
        std::fs::read(lib.path().join("hashes.bit.bin")).unwrap(),
        b"bits"
    );
    // Revoked: refused from its next connection on, the others unaffected.
    let out = agent_cli(&[
        "cert",
        "revoke",
        "--cert",
        pki.path().join("runner.pem").to_str().unwrap(),
        "--list",
        list.to_str().unwrap(),
    ]);
    assert!(out.contains("revoked"), "{out}");
    let refused = connect_as(&agent, pki.path(), "runner").and_then(|mut c| c.nop());
    assert!(refused.is_err(), "a revoked certificate is refused");
    connect_as(&agent, pki.path(), "client")
        .unwrap()
        .nop()
        .unwrap();
    // Expired: a certificate valid for 0 days is refused, and the client is told why.
    agent_cli(&[
        "cert", "client", "--dir", d, "--prefix", "old", "--name", "old", "--days", "0",
    ]);
    std::thread::sleep(Duration::from_secs(1));
    let e = connect_as(&agent, pki.path(), "old").and_then(|mut c| c.nop());
    assert!(e.is_err(), "an expired certificate is refused");
}

/// A TCP connection from loopback address `from` (127.0.0.2, ...) that sends nothing.
fn silent_from(from: [u8; 4], to: &str) -> std::os::fd::OwnedFd {
    use std::os::fd::FromRawFd;
    let port: u16 = to.rsplit_once(':').unwrap().1.parse().unwrap();
    // SAFETY: plain socket calls on a descriptor this function owns.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
        assert!(fd >= 0);
        let owned = std::os::fd::OwnedFd::from_raw_fd(fd);
        let mut a: libc::sockaddr_in = std::mem::zeroed();
        a.sin_family = libc::AF_INET as libc::sa_family_t;
        a.sin_addr.s_addr = u32::from_ne_bytes(from);
        let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        assert_eq!(libc::bind(fd, std::ptr::addr_of!(a).cast(), len), 0);
        a.sin_port = port.to_be();
        a.sin_addr.s_addr = u32::from_ne_bytes([127, 0, 0, 1]);
        assert_eq!(libc::connect(fd, std::ptr::addr_of!(a).cast(), len), 0);
        owned
    }
}

#[test]
fn silent_connections_take_no_host_s_place() {
    let pki = pki();
    let agent = AgentProc::start(pki.path(), free_port(), &["--max-connections", "4"]);
    // Forty connections from another address that never speak TLS: at most four of
    // them handshake at once, none is counted among the hosts served.
    let silent: Vec<_> = (0..40)
        .map(|_| silent_from([127, 0, 0, 2], &agent.address()))
        .collect();
    for _ in 0..4 {
        let mut c = connect_as(&agent, pki.path(), "client").unwrap();
        c.nop().unwrap();
    }
    drop(silent);
}
