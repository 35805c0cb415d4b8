//! The remote path over loopback: an in-process agent (software engine) behind mutual
//! TLS. Null-op round trips (p50/p99 over many samples, printed) and `vadd_u32`
//! throughput through the remote engine for 1 MiB and 16 MiB vectors (Criterion).
#![allow(clippy::unwrap_used, clippy::cast_possible_truncation)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use vfpga_agent::{Agent, AgentConfig};
use vfpga_engine::sim::SimEngine;
use vfpga_engine::{Call, Engine, SegStream, SgBuf};
use vfpga_proto::{ArgEntry, ElemType, MAX_ARGS};
use vfpga_remote::{BoardConfig, Conn, RemoteConfig, RemoteEngine};
use vfpga_transport::TlsFiles;

fn remote(c: &mut Criterion) {
    let pki = tempfile::tempdir().unwrap();
    vfpga_agent::cert::init(pki.path(), &["localhost".into()], "bench").unwrap();
    let files = |side: &str| TlsFiles {
        ca: pki.path().join("ca.pem"),
        cert: pki.path().join(format!("{side}.pem")),
        key: pki.path().join(format!("{side}.key")),
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

    // Null op: percentiles need the individual samples.
    let mut conn =
        Conn::connect(&address, "localhost", tls.clone(), Duration::from_secs(5)).unwrap();
    for _ in 0..500 {
        conn.nop().unwrap();
    }
    let mut samples: Vec<Duration> = (0..20_000)
        .map(|_| {
            let t = Instant::now();
            conn.nop().unwrap();
            t.elapsed()
        })
        .collect();
    samples.sort();
    let pct = |p: f64| samples[((samples.len() - 1) as f64 * p) as usize].as_secs_f64() * 1e6;
    println!(
        "remote null op over TLS/loopback: {} samples, p50 {:.1} us, p99 {:.1} us, mean {:.1} us",
        samples.len(),
        pct(0.5),
        pct(0.99),
        samples.iter().sum::<Duration>().as_secs_f64() * 1e6 / samples.len() as f64
    );
    // The floor: a 64-byte ping-pong between two threads over plain TCP on loopback,
    // no TLS, no protocol, in the same run.
    let floor = tcp_ping_pong(20_000);
    println!(
        "plain TCP loopback ping-pong (the floor): p50 {:.1} us; null op p50 / floor p50 = {:.2}",
        floor,
        pct(0.5) / floor
    );
    c.bench_function("remote null op round trip", |b| {
        b.iter(|| conn.nop().unwrap())
    });

    let engine = RemoteEngine::new(RemoteConfig {
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
    let catalog = engine.catalog();
    let kernel = catalog.find("vadd_u32").unwrap().clone();
    for (label, bytes) in [
        ("4 KiB", 4096usize),
        ("1 MiB", 1 << 20),
        ("16 MiB", 16 << 20),
    ] {
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
        let mut g = c.benchmark_group(format!("remote vadd_u32 {label} vectors"));
        g.throughput(Throughput::Bytes(3 * bytes as u64));
        g.sample_size(if bytes > 1 << 20 { 10 } else { 30 });
        let mut ran = false;
        g.bench_function("round trip (2 in + 1 out over TLS)", |bch| {
            ran = true;
            bch.iter(|| engine.run(&kernel, &Call::new(&args, &bufs)).unwrap())
        });
        g.finish();
        drop((sa, sb, so));
        // Checked when it ran (a filter may leave a size out).
        assert!(!ran || out.iter().all(|&x| x == 3));
    }
    engine.shutdown();
    agent.shutdown(Duration::from_secs(5));
}

/// p50 of `n` 64-byte round trips between two threads over TCP on loopback, in µs.
fn tcp_ping_pong(n: usize) -> f64 {
    use std::io::{Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let echo = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        s.set_nodelay(true).unwrap();
        let mut b = [0u8; 64];
        while s.read_exact(&mut b).is_ok() {
            s.write_all(&b).unwrap();
        }
    });
    let mut c = std::net::TcpStream::connect(addr).unwrap();
    c.set_nodelay(true).unwrap();
    let mut b = [0u8; 64];
    let mut round = || {
        let t = Instant::now();
        c.write_all(&b).unwrap();
        c.read_exact(&mut b).unwrap();
        t.elapsed()
    };
    for _ in 0..500 {
        round();
    }
    let mut samples: Vec<Duration> = (0..n).map(|_| round()).collect();
    drop(c);
    echo.join().unwrap();
    samples.sort();
    samples[n / 2].as_secs_f64() * 1e6
}

criterion_group!(benches, remote);
criterion_main!(benches);
