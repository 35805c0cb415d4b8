//! Sharing the engine between guests, measured: an in-process vfpgad on the sim engine
//! with one engine thread, guests on unix streams through the guest library.
//!
//! 1. Latency: guest `quiet`'s small `vadd_u32` alone, then while guest `flood` keeps
//!    four connections of back-to-back `mmult`s going; p50 and p99 of quiet's round
//!    trip, stated against one mmult's run time (the scheduler promises about one run).
//! 2. Shares: guests `light` (weight 1) and `heavy` (weight 3) both flooding mmults for
//!    a few seconds: the runs each got.
//!
//! `cargo bench -p vfpgad --bench fairness` (add `-- --quick` for a short replay).
#![allow(clippy::unwrap_used, clippy::cast_possible_truncation)]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use vfpga::{Arg, Device};
use vfpga_engine::sim::SimEngine;
use vfpga_proto::ElemType;
use vfpgad::config::GuestConfig;
use vfpgad::{Config, Server};

const MM: usize = 96;

fn mmult(dev: &Device) -> impl FnMut() + '_ {
    let s = dev.session("mmult").unwrap();
    let a: Vec<f32> = (0..MM * MM).map(|i| (i % 7) as f32).collect();
    let mut c = vec![0f32; MM * MM];
    move || {
        s.run(&mut [
            Arg::input(&a),
            Arg::input(&a),
            Arg::output(&mut c),
            Arg::scalar(ElemType::U32, MM as u64),
            Arg::scalar(ElemType::U32, MM as u64),
            Arg::scalar(ElemType::U32, MM as u64),
        ])
        .unwrap();
    }
}

fn vadd(dev: &Device) -> impl FnMut() + '_ {
    let s = dev.session("vadd_u32").unwrap();
    let a: Vec<u32> = (0..4096).collect();
    let mut c = vec![0u32; 4096];
    move || {
        s.run(&mut [
            Arg::input(&a),
            Arg::input(&a),
            Arg::output(&mut c),
            Arg::scalar(ElemType::U32, 4096),
        ])
        .unwrap();
    }
}

fn percentiles(mut f: impl FnMut(), n: usize) -> (Duration, Duration) {
    let mut v: Vec<Duration> = (0..n)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    v.sort();
    (v[n / 2], v[n * 99 / 100])
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Keeps `conns` connections of `guest` running mmults until `stop`; counts them.
fn flood(
    uri: String,
    conns: usize,
    stop: Arc<AtomicBool>,
    runs: Arc<AtomicU64>,
) -> Vec<std::thread::JoinHandle<()>> {
    (0..conns)
        .map(|_| {
            let (uri, stop, runs) = (uri.clone(), stop.clone(), runs.clone());
            std::thread::spawn(move || {
                let dev = Device::open(&uri).unwrap();
                let mut run = mmult(&dev);
                while !stop.load(Ordering::Relaxed) {
                    run();
                    runs.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect()
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick" || a == "--test");
    let samples = if quick { 200 } else { 2000 };
    let dir = tempfile::tempdir().unwrap();
    let uri = |g: &str| format!("unix:{}", dir.path().join(format!("{g}.stream")).display());
    let guest = |g: &str, weight: u32| {
        let mut c = GuestConfig::named(g);
        c.listen = vec![uri(g)];
        c.weight = Some(weight);
        c
    };
    let mut config = Config {
        guests: vec![
            guest("quiet", 1),
            guest("flood", 1),
            guest("light", 1),
            guest("heavy", 3),
        ],
        ..Config::default()
    };
    config.daemon.engine_threads = 1;
    config.validate().unwrap();
    let server = Server::start(&config, Arc::new(SimEngine::new(None).unwrap())).unwrap();

    let quiet = Device::open(uri("quiet")).unwrap();
    let (mm50, mm99) = percentiles(mmult(&quiet), samples / 10);
    let (alone50, alone99) = percentiles(vadd(&quiet), samples);
    println!(
        "mmult {MM}x{MM}x{MM} alone: p50 {:.0} us, p99 {:.0} us",
        us(mm50),
        us(mm99)
    );
    println!(
        "quiet's vadd_u32 (4096) alone: p50 {:.0} us, p99 {:.0} us",
        us(alone50),
        us(alone99)
    );

    let stop = Arc::new(AtomicBool::new(false));
    let runs = Arc::new(AtomicU64::new(0));
    let threads = flood(uri("flood"), 4, stop.clone(), runs.clone());
    // The flood under way before measuring.
    while runs.load(Ordering::Relaxed) < 8 {
        std::thread::sleep(Duration::from_millis(1));
    }
    let (f50, f99) = percentiles(vadd(&quiet), samples);
    stop.store(true, Ordering::Relaxed);
    threads.into_iter().for_each(|t| t.join().unwrap());
    println!(
        "quiet's vadd_u32 while flood runs 4 connections of mmults: p50 {:.0} us, p99 {:.0} us \
         = {:.2} mmult runs (p50) above its time alone",
        us(f50),
        us(f99),
        (f99.as_secs_f64() - alone99.as_secs_f64()) / mm50.as_secs_f64()
    );

    let stop = Arc::new(AtomicBool::new(false));
    let (light, heavy) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut threads = flood(uri("light"), 4, stop.clone(), light.clone());
    threads.extend(flood(uri("heavy"), 4, stop.clone(), heavy.clone()));
    std::thread::sleep(Duration::from_secs(if quick { 1 } else { 5 }));
    // Counted from here, once both are under way.
    let (l0, h0) = (light.load(Ordering::Relaxed), heavy.load(Ordering::Relaxed));
    std::thread::sleep(Duration::from_secs(if quick { 2 } else { 10 }));
    let (l1, h1) = (light.load(Ordering::Relaxed), heavy.load(Ordering::Relaxed));
    stop.store(true, Ordering::Relaxed);
    threads.into_iter().for_each(|t| t.join().unwrap());
    let (l, h) = (l1 - l0, h1 - h0);
    println!(
        "both flooding mmults: light (weight 1) {l} runs, heavy (weight 3) {h} runs: ratio {:.2}",
        h as f64 / l.max(1) as f64
    );
    drop(quiet);
    server.shutdown(Duration::from_secs(10));
}
