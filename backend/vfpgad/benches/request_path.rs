//! Round trips through the whole request path — frontend submit, vring, decode,
//! dispatch, engine, completion, interrupt — over a real vhost-user socket to an
//! in-process daemon: a null op, and a 1 MiB `vadd` (in place, buffers cut into 4 KiB
//! guest pages as a guest driver pins them).
#![allow(clippy::unwrap_used, clippy::cast_possible_truncation)]

use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use vfpga_engine::sim::SimEngine;
use vfpga_proto::{ElemType, Opcode, Status};
use vfpga_vhu_frontend::{Arg, Layout, Options, VhuFrontend};
use vfpgad::config::GuestConfig;
use vfpgad::{Config, Server};

fn request_path(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("bench.sock");
    let config = Config {
        guests: vec![GuestConfig::new("bench", socket.clone())],
        ..Config::default()
    };
    let server = Server::start(&config, Arc::new(SimEngine::new(None).unwrap())).unwrap();
    let opts = Options {
        mem_size: 32 << 20,
        ..Options::default()
    };
    let mut fe = VhuFrontend::connect(&socket, opts).unwrap();
    let s = fe
        .call(
            0,
            Opcode::OpenSession,
            0,
            &[Arg::In(ElemType::U8, b"vadd_u32")],
            Layout::Direct,
        )
        .unwrap()
        .resp
        .value;

    let nop = fe.prepare(1, Opcode::Nop, 0, &[], Layout::Direct).unwrap();
    c.bench_function("null op round trip", |b| {
        b.iter(|| {
            let (r, _) = fe.run_prepared(&nop).unwrap();
            debug_assert_eq!(r.status(), Some(Status::Ok));
        })
    });

    // The same with the queue watched for 50 µs after it ran dry ([daemon] poll_us):
    // the next request needs no kick and no wake-up of the queue's thread.
    let polled_socket = dir.path().join("polled.sock");
    let mut polled = Config {
        guests: vec![GuestConfig::new("polled", polled_socket.clone())],
        ..Config::default()
    };
    polled.daemon.poll_us = 50;
    let polled_server = Server::start(&polled, Arc::new(SimEngine::new(None).unwrap())).unwrap();
    let mut pfe = VhuFrontend::connect(&polled_socket, opts).unwrap();
    let pnop = pfe.prepare(1, Opcode::Nop, 0, &[], Layout::Direct).unwrap();
    c.bench_function("null op round trip, queue watched 50 us after work", |b| {
        b.iter(|| {
            let (r, _) = pfe.run_prepared(&pnop).unwrap();
            debug_assert_eq!(r.status(), Some(Status::Ok));
        })
    });
    drop(pfe);
    polled_server.shutdown(Duration::from_secs(5));

    let n = 256 * 1024;
    let a: Vec<u8> = (0..n as u32).flat_map(|x| x.to_le_bytes()).collect();
    let vadd = fe
        .prepare(
            1,
            Opcode::Run,
            s,
            &[
                Arg::In(ElemType::U32, &a),
                Arg::In(ElemType::U32, &a),
                Arg::Out(ElemType::U32, n * 4),
                Arg::Scalar(ElemType::U32, n as u64),
            ],
            Layout::Paged(4096),
        )
        .unwrap();
    let mut g = c.benchmark_group("vadd_u32 1 MiB vectors");
    g.throughput(Throughput::Bytes(3 * (n as u64) * 4));
    g.sample_size(30);
    g.bench_function("round trip (2 in + 1 out, 4 KiB pages)", |b| {
        b.iter(|| {
            let (r, _) = fe.run_prepared(&vadd).unwrap();
            assert_eq!(r.status(), Some(Status::Ok));
        })
    });
    g.finish();
    drop(fe);
    server.shutdown(Duration::from_secs(10));
}

criterion_group!(benches, request_path);
criterion_main!(benches);
