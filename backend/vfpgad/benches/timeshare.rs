//! Time-sharing the fabric, measured on the pl engine and its register-level model:
//! guest `a` runs `base/vadd_u32` and guest `b` runs `alt/mmult`, each on two stream
//! connections back to back, while the model takes 20 ms to program the fabric (a
//! full Zynq-7020 bitstream takes tens of milliseconds). For minimum slices of 0
//! (reprogram whenever the other guest's run is next: every call) and longer, the runs
//! each guest completed per second and the reprogrammings per second, all in one run.
//!
//! `cargo bench -p vfpgad --bench timeshare` (add `-- --quick` for a short replay).
#![allow(clippy::unwrap_used, clippy::cast_possible_truncation)]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use vfpga::{Arg, Device};
use vfpga_engine::pl::model::ModelBoard;
use vfpgad::{build_engine, Config, Server};

fn config(board: &ModelBoard, dir: &std::path::Path, slice_ms: u64) -> Config {
    let text = format!(
        "[daemon]\nengine = \"pl\"\nengine_threads = 1\n\
         [library]\ndir = {:?}\nallow = [\"base\", \"alt\"]\nshare = [\"base\", \"alt\"]\nmin_slice_ms = {slice_ms}\n\
         [pl]\nroot = {:?}\nbitstream = \"base\"\n\
         [[guest]]\nname = \"a\"\nlisten = [\"unix:{}/a.stream\"]\n\
         [[guest]]\nname = \"b\"\nlisten = [\"unix:{}/b.stream\"]\n",
        board.library,
        board.root,
        dir.display(),
        dir.display()
    );
    let c: Config = toml::from_str(&text).unwrap();
    c.validate().unwrap();
    c
}

/// Keeps two connections of `guest` running `kernel` until `stop`; counts the runs.
fn load(
    uri: String,
    kernel: &'static str,
    stop: Arc<AtomicBool>,
    runs: Arc<AtomicU64>,
) -> Vec<std::thread::JoinHandle<()>> {
    (0..2)
        .map(|_| {
            let (uri, stop, runs) = (uri.clone(), stop.clone(), runs.clone());
            std::thread::spawn(move || {
                let dev = Device::open(&uri).unwrap();
                let s = dev.session(kernel).unwrap();
                let x: Vec<u32> = (0..1024).collect();
                let f: Vec<f32> = (0..32 * 32).map(|i| (i % 5) as f32).collect();
                let (mut xo, mut fo) = (vec![0u32; 1024], vec![0f32; 32 * 32]);
                while !stop.load(Ordering::Relaxed) {
                    if kernel.ends_with("vadd_u32") {
                        s.run(&mut [
                            Arg::input(&x),
                            Arg::input(&x),
                            Arg::output(&mut xo),
                            Arg::scalar(vfpga_proto::ElemType::U32, 1024),
                        ])
                        .unwrap();
                    } else {
                        s.run(&mut [
                            Arg::input(&f),
                            Arg::input(&f),
                            Arg::output(&mut fo),
                            Arg::scalar(vfpga_proto::ElemType::U32, 32),
                            Arg::scalar(vfpga_proto::ElemType::U32, 32),
                            Arg::scalar(vfpga_proto::ElemType::U32, 32),
                        ])
                        .unwrap();
                    }
                    runs.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect()
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick" || a == "--test");
    let secs = if quick { 2 } else { 10 };
    println!("pl model, programming 20 ms, engine_threads 1, {secs} s per slice:");
    for slice_ms in [0u64, 20, 100, 500] {
        let dir = tempfile::tempdir().unwrap();
        let board = ModelBoard::start_with(
            dir.path(),
            &[("base", &["vadd_u32"]), ("alt", &["mmult"])],
            60_000,
        )
        .unwrap();
        board.model.set_program_time(Duration::from_millis(20));
        let c = config(&board, dir.path(), slice_ms);
        let server = Server::start(&c, build_engine(&c).unwrap()).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let (a, b) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let uri = |g: &str| format!("unix:{}/{g}.stream", dir.path().display());
        let mut threads = load(uri("a"), "base/vadd_u32", stop.clone(), a.clone());
        threads.extend(load(uri("b"), "alt/mmult", stop.clone(), b.clone()));
        std::thread::sleep(Duration::from_millis(500));
        let (a0, b0, p0, t0) = (
            a.load(Ordering::Relaxed),
            b.load(Ordering::Relaxed),
            board.model.programmed(),
            Instant::now(),
        );
        std::thread::sleep(Duration::from_secs(secs));
        let (a1, b1, p1, t) = (
            a.load(Ordering::Relaxed),
            b.load(Ordering::Relaxed),
            board.model.programmed(),
            t0.elapsed().as_secs_f64(),
        );
        stop.store(true, Ordering::Relaxed);
        threads.into_iter().for_each(|t| t.join().unwrap());
        server.shutdown(Duration::from_secs(10));
        println!(
            "  min_slice_ms {slice_ms:>3}: a {:>6.1} runs/s, b {:>6.1} runs/s, total {:>6.1} runs/s, {:>5.1} reprogrammings/s",
            (a1 - a0) as f64 / t,
            (b1 - b0) as f64 / t,
            (a1 - a0 + b1 - b0) as f64 / t,
            (p1 - p0) as f64 / t
        );
    }
}
