//! The figures behind docs/benchmarks.md's plots, written as CSV files (then drawn by
//! `scripts/plot-bench.py`; `scripts/bench-plots.sh` does both):
//!
//! - `latency.csv`: the null-op round trip's distribution (percentiles of 20 000
//!   samples) per transport: vhost-user (the test frontend doing what a VMM and the
//!   guest driver do), the guest library on a unix stream and on TLS over loopback (an
//!   in-process vfpgad, sim engine), and the remote path's link (vfpgad's client to an
//!   in-process vfpga-agent over mutual TLS);
//! - `throughput.csv`: `vadd_u32` round trips by vector size per transport (2 vectors in,
//!   1 out, all crossing the transport; the median of several runs);
//! - `remote.csv`: the same `vadd_u32` through the engine vfpgad runs it with, local (sim
//!   engine) and remote (the remote engine to an agent over TLS), by vector size.
//!
//! No Criterion: each figure is a plain measurement on a warmed path, so the three files
//! come in about a minute. `VFPGA_BENCH_OUT` names the folder (default: docs/bench).
#![allow(
    clippy::unwrap_used,
    clippy::cast_possible_truncation,
    clippy::cast_precision_loss
)]

mod support;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use vfpga_agent::{Agent, AgentConfig};
use vfpga_engine::sim::SimEngine;
use vfpga_engine::{Call, Engine, SegStream, SgBuf};
use vfpga_proto::{ArgEntry, ElemType, Opcode, Status, MAX_ARGS};
use vfpga_remote::{BoardConfig, Conn, RemoteConfig, RemoteEngine};
use vfpga_transport::TlsFiles;
use vfpga_vhu_frontend::{Arg as FeArg, Layout, Options as FeOptions, VhuFrontend};
use vfpgad::config::GuestConfig;
use vfpgad::{Config, Server};

/// Null ops timed per transport.
const SAMPLES: usize = 20_000;
/// The percentiles written.
const PERCENTILES: [f64; 13] = [
    1.0, 5.0, 10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 97.5, 99.0, 99.5, 99.9, 99.99,
];
/// Vector sizes of the `vadd_u32` runs, bytes.
const SIZES: [usize; 6] = [16 << 10, 64 << 10, 256 << 10, 1 << 20, 4 << 20, 16 << 20];

/// Runs per size: enough for a stable median, fewer for the big ones.
fn runs(bytes: usize) -> usize {
    if bytes >= 4 << 20 {
        9
    } else {
        41
    }
}

/// `f`'s times over `n` runs after `warm` untimed ones, sorted.
fn times(warm: usize, n: usize, mut f: impl FnMut()) -> Vec<Duration> {
    for _ in 0..warm {
        f();
    }
    let mut v: Vec<Duration> = (0..n)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    v.sort();
    v
}

/// The median of `f`'s times over `n` runs, after two warm-up runs.
fn median(n: usize, f: impl FnMut()) -> Duration {
    times(2, n, f)[n / 2]
}

/// `SAMPLES` round trips of `f` after 500 to warm up, as percentile rows.
fn distribution(csv: &mut String, transport: &str, f: impl FnMut()) {
    let v = times(500, SAMPLES, f);
    for p in PERCENTILES {
        let i = ((v.len() - 1) as f64 * p / 100.0).round() as usize;
        writeln!(csv, "{transport},{p},{:.1}", v[i].as_secs_f64() * 1e6).unwrap();
    }
    println!(
        "{transport}: null op p50 {:.1} us, p99 {:.1} us",
        v[v.len() / 2].as_secs_f64() * 1e6,
        v[v.len() * 99 / 100].as_secs_f64() * 1e6
    );
}

fn size_row(csv: &mut String, who: &str, bytes: usize, t: Duration) {
    let gib = 3.0 * bytes as f64 / t.as_secs_f64() / f64::from(1u32 << 30);
    writeln!(csv, "{who},{bytes},{:.4},{gib:.3}", t.as_secs_f64() * 1e3).unwrap();
    println!(
        "{who}: vadd_u32 {} KiB vectors: {:.3} ms, {gib:.2} GiB/s",
        bytes >> 10,
        t.as_secs_f64() * 1e3
    );
}

fn header(what: &str, columns: &str) -> String {
    format!(
        "# {what}\n# Written by `cargo bench -p vfpgad --bench figures` (scripts/bench-plots.sh) on a {}-CPU host; release build, sim engine.\n{columns}\n",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    )
}

fn out_dir() -> PathBuf {
    std::env::var_os("VFPGA_BENCH_OUT").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/bench"),
        PathBuf::from,
    )
}

/// vhost-user: the null op and `vadd_u32` by size through the test frontend.
fn vhost_user(dir: &Path, lat: &mut String, thr: &mut String) {
    let socket = dir.join("figures.sock");
    let config = Config {
        guests: vec![GuestConfig::new("figures", socket.clone())],
        ..Config::default()
    };
    let server = Server::start(&config, Arc::new(SimEngine::new(None).unwrap())).unwrap();
    let opts = FeOptions {
        mem_size: 256 << 20,
        ..FeOptions::default()
    };
    let mut fe = VhuFrontend::connect(&socket, opts).unwrap();
    let nop = fe.prepare(1, Opcode::Nop, 0, &[], Layout::Direct).unwrap();
    distribution(lat, "vhost-user", || {
        fe.run_prepared(&nop).unwrap();
    });
    let s = fe
        .call(
            0,
            Opcode::OpenSession,
            0,
            &[FeArg::In(ElemType::U8, b"vadd_u32")],
            Layout::Direct,
        )
        .unwrap()
        .resp
        .value;
    for bytes in SIZES {
        let n = bytes / 4;
        let a: Vec<u8> = (0..n as u32).flat_map(u32::to_le_bytes).collect();
        let vadd = fe
            .prepare(
                1,
                Opcode::Run,
                s,
                &[
                    FeArg::In(ElemType::U32, &a),
                    FeArg::In(ElemType::U32, &a),
                    FeArg::Out(ElemType::U32, bytes),
                    FeArg::Scalar(ElemType::U32, n as u64),
                ],
                Layout::Paged(4096),
            )
            .unwrap();
        let t = median(runs(bytes), || {
            let (r, _) = fe.run_prepared(&vadd).unwrap();
            assert_eq!(r.status(), Some(Status::Ok));
        });
        size_row(thr, "vhost-user", bytes, t);
    }
    drop(fe);
    server.shutdown(Duration::from_secs(10));
}

/// The guest library on a unix stream and on TLS over loopback.
fn streams(dir: &Path, lat: &mut String, thr: &mut String) {
    let (server, devs) = support::stream_server(dir, "figures", ["unix stream", "TLS stream"]);
    for (name, dev) in &devs {
        distribution(lat, name, || {
            dev.nop().unwrap();
        });
        let s = dev.session("vadd_u32").unwrap();
        for bytes in SIZES {
            let n = bytes / 4;
            let a: Vec<u32> = (0..n as u32).collect();
            let mut out = vec![0u32; n];
            let t = median(runs(bytes), || {
                s.run(&mut [
                    vfpga::Arg::input(&a),
                    vfpga::Arg::input(&a),
                    vfpga::Arg::output(&mut out),
                    vfpga::Arg::scalar(ElemType::U32, n as u64),
                ])
                .unwrap();
            });
            size_row(thr, name, bytes, t);
        }
    }
    drop(devs);
    server.shutdown(Duration::from_secs(10));
}

/// The remote path: the link's null op, and `vadd_u32` through the sim engine and
/// through the remote engine to an agent running the sim engine.
fn remote(dir: &Path, lat: &mut String, rem: &mut String) {
    let pki = dir.join("remote-pki");
    vfpga_agent::cert::init(&pki, &["localhost".into()], "figures").unwrap();
    let files = |side: &str| TlsFiles {
        ca: pki.join("ca.pem"),
        cert: pki.join(format!("{side}.pem")),
        key: pki.join(format!("{side}.key")),
    };
    let agent = Agent::start(AgentConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        tls: vfpga_transport::server_config(&files("server")).unwrap(),
        engine: Arc::new(SimEngine::new(None).unwrap()),
        library: None,
        max_connections: 8,
        max_concurrent: 2,
        max_request_bytes: 256 << 20,
        revoked: None,
    })
    .unwrap();
    let address = agent.local_addr().to_string();
    let tls = vfpga_transport::client_config(&files("client")).unwrap();
    let mut conn =
        Conn::connect(&address, "localhost", tls.clone(), Duration::from_secs(5)).unwrap();
    distribution(lat, "remote: agent over TLS", || {
        conn.nop().unwrap();
    });
    drop(conn);
    let remote = RemoteEngine::new(RemoteConfig {
        boards: vec![BoardConfig {
            name: "loopback".into(),
            address,
            server_name: "localhost".into(),
        }],
        tls,
        timeout: Duration::from_secs(30),
        connections: 2,
        health_interval: Duration::from_secs(1),
        allow: Vec::new(),
    });
    let local = SimEngine::new(None).unwrap();
    let engines: [(&str, &dyn Engine); 2] = [
        ("local: sim engine", &local),
        ("remote: agent over TLS", remote.as_ref()),
    ];
    for bytes in SIZES {
        let n = bytes / 4;
        let (mut a, mut b, mut out) = (vec![1u8; bytes], vec![2u8; bytes], vec![0u8; bytes]);
        let seg = |m: &mut Vec<u8>| {
            let mut s = SegStream::with_capacity(bytes / 4096 + 1);
            for ch in m.chunks_mut(4096) {
                s.push(ch.as_mut_ptr(), ch.len());
            }
            s
        };
        let (sa, sb, so) = (seg(&mut a), seg(&mut b), seg(&mut out));
        let args = [
            ArgEntry::input(ElemType::U32, bytes as u64),
            ArgEntry::input(ElemType::U32, bytes as u64),
            ArgEntry::output(ElemType::U32, bytes as u64),
            ArgEntry::scalar(ElemType::U32, n as u64),
        ];
        let mut bufs: [Option<SgBuf<'_>>; MAX_ARGS] = [None; MAX_ARGS];
        // SAFETY: the vectors outlive the views; nothing else touches them meanwhile.
        unsafe {
            bufs[0] = SgBuf::new(sa.segs(), 0, bytes);
            bufs[1] = SgBuf::new(sb.segs(), 0, bytes);
            bufs[2] = SgBuf::new(so.segs(), 0, bytes);
        }
        for (who, engine) in engines {
            let kernel = engine.catalog().find("vadd_u32").unwrap().clone();
            let t = median(runs(bytes), || {
                engine.run(&kernel, &Call::new(&args, &bufs)).unwrap();
            });
            size_row(rem, who, bytes, t);
        }
        drop((sa, sb, so));
        assert!(out.iter().all(|&x| x == 3), "vadd_u32 gave a wrong sum");
    }
    remote.shutdown();
    agent.shutdown(Duration::from_secs(5));
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` does not: then only check
    // that the harness runs, on a scratch folder.
    let measuring = std::env::args().any(|a| a == "--bench");
    let work = tempfile::tempdir().unwrap();
    let mut lat = header(
        "Null-op round trip per transport: percentiles of 20000 samples, microseconds.",
        "transport,percentile,us",
    );
    let mut thr = header(
        "vadd_u32 round trip by vector size per transport (2 vectors in, 1 out), median.",
        "transport,vector_bytes,ms,gib_per_s",
    );
    let mut rem = header(
        "vadd_u32 through vfpgad's engine, local (sim) and remote (agent over TLS on loopback), by vector size, median.",
        "path,vector_bytes,ms,gib_per_s",
    );
    vhost_user(work.path(), &mut lat, &mut thr);
    streams(work.path(), &mut lat, &mut thr);
    remote(work.path(), &mut lat, &mut rem);
    let out = if measuring {
        out_dir()
    } else {
        work.path().to_owned()
    };
    std::fs::create_dir_all(&out).unwrap();
    for (name, text) in [
        ("latency.csv", lat),
        ("throughput.csv", thr),
        ("remote.csv", rem),
    ] {
        let p = out.join(name);
        std::fs::write(&p, text).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        println!("wrote {}", p.display());
    }
}
