//! Round trips of a guest on a byte stream, through the guest library to an in-process
//! vfpgad on a unix socket (the host end of a userspace vsock device) and on TLS over
//! loopback: a null op (p50 and p99 over 20 000 samples, then Criterion), and 1 MiB and
//! 16 MiB `vadd_u32` (2 vectors in, 1 out, all crossing the stream). The host-side
//! counterpart of the VM figures in docs/benchmarks.md, and the one to set beside
//! vAccel's ttrpc echo (73 µs on a unix socket).
#![allow(clippy::unwrap_used, clippy::cast_possible_truncation)]

mod support;

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use vfpga::{Arg, Device};
use vfpga_proto::ElemType;

fn percentiles(dev: &Device, what: &str) {
    let mut v: Vec<Duration> = (0..20_000).map(|_| dev.nop().unwrap()).collect();
    v.sort();
    let mean = v.iter().sum::<Duration>() / v.len() as u32;
    println!(
        "{what}: null op round trip, 20000 samples: p50 {:.1} us, p99 {:.1} us, mean {:.1} us",
        v[v.len() / 2].as_secs_f64() * 1e6,
        v[v.len() * 99 / 100].as_secs_f64() * 1e6,
        mean.as_secs_f64() * 1e6
    );
}

fn streams(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let (server, devs) = support::stream_server(dir.path(), "bench", ["unix", "tls"]);
    for (name, dev) in &devs {
        percentiles(dev, name);
        c.bench_function(&format!("{name}: null op round trip"), |b| {
            b.iter(|| dev.nop().unwrap())
        });
        let s = dev.session("vadd_u32").unwrap();
        for mib in [1usize, 16] {
            let n = mib << 18;
            let a: Vec<u32> = (0..n as u32).collect();
            let mut out = vec![0u32; n];
            let mut g = c.benchmark_group(format!("{name}: vadd_u32 {mib} MiB vectors"));
            g.throughput(Throughput::Bytes(3 * (n as u64) * 4));
            g.sample_size(10);
            g.measurement_time(Duration::from_secs(if mib == 16 { 20 } else { 5 }));
            g.bench_function("round trip (2 in + 1 out over the stream)", |b| {
                b.iter(|| {
                    s.run(&mut [
                        Arg::input(&a),
                        Arg::input(&a),
                        Arg::output(&mut out),
                        Arg::scalar(ElemType::U32, n as u64),
                    ])
                    .unwrap()
                })
            });
            g.finish();
        }
        drop(s);
    }
    drop(devs);
    server.shutdown(Duration::from_secs(10));
}

criterion_group!(benches, streams);
criterion_main!(benches);
