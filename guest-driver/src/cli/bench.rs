//! `vfpga bench`: null-op latency and `vadd_u32` throughput, seen from the guest.
// Test patterns wrap to u32 and percentiles round floats on purpose.
#![allow(clippy::cast_possible_truncation)]

use std::time::{Duration, Instant};

use vfpga::{AlignedBuf, Arg, Device, Error};
use vfpga_proto::ElemType;

use crate::cli::output::say;
use crate::cli::Fail;

/// Options of `vfpga bench`.
#[derive(Debug, clap::Args)]
pub struct Opts {
    /// Null-op round trips to time.
    #[arg(long, default_value_t = 1000, value_name = "N")]
    nops: u32,
    /// Bytes per vadd_u32 vector (K/M/G suffixes).
    #[arg(long, default_value = "16M", value_parser = parse_size, value_name = "BYTES")]
    size: usize,
    /// vadd_u32 runs to time per thread.
    #[arg(long, default_value_t = 5, value_name = "N")]
    runs: u32,
    /// Concurrent threads, each with its own session and buffers.
    #[arg(long, default_value_t = 1, value_name = "N")]
    threads: u32,
}

fn parse_size(s: &str) -> Result<usize, String> {
    let v = crate::cli::bind::parse_scalar(ElemType::U64, s)?;
    let v = usize::try_from(v).map_err(|_| format!("{s} is too large"))?;
    if v == 0 || v % 4 != 0 {
        return Err(format!(
            "{s}: vectors hold u32 elements, give a non-zero multiple of 4"
        ));
    }
    Ok(v)
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or_default()
}

/// One thread's vadd runs: (wall per run, engine per run).
fn vadd(dev: &Device, bytes: usize, runs: u32) -> Result<(Duration, Duration), Error> {
    let s = dev.session("vadd_u32")?;
    let n = bytes / 4;
    let mut a = AlignedBuf::zeroed(bytes);
    let mut b = AlignedBuf::zeroed(bytes);
    for (i, w) in a.as_mut_slice().chunks_exact_mut(4).enumerate() {
        w.copy_from_slice(&(i as u32).to_le_bytes());
    }
    for w in b.as_mut_slice().chunks_exact_mut(4) {
        w.copy_from_slice(&7u32.to_le_bytes());
    }
    let mut c = AlignedBuf::zeroed(bytes);
    let (mut wall, mut engine) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..runs {
        let start = Instant::now();
        let st = s.run(&mut [
            Arg::In(ElemType::U32, a.as_slice()),
            Arg::In(ElemType::U32, b.as_slice()),
            Arg::Out(ElemType::U32, c.as_mut_slice()),
            Arg::Scalar(ElemType::U32, n as u64),
        ])?;
        wall += start.elapsed();
        engine += st.engine;
    }
    for (i, w) in c.as_slice().chunks_exact(4).enumerate().step_by(4093) {
        let got = u32::from_le_bytes([w[0], w[1], w[2], w[3]]);
        if got != (i as u32).wrapping_add(7) {
            return Err(Error::Usage(format!(
                "vadd result wrong at element {i}: {got}"
            )));
        }
    }
    Ok((wall / runs.max(1), engine / runs.max(1)))
}

pub fn run(dev: &Device, o: &Opts) -> Result<(), Fail> {
    if o.nops > 0 {
        let mut rt = Vec::with_capacity(o.nops as usize);
        let mut driver = Duration::ZERO;
        for _ in 0..o.nops {
            let start = Instant::now();
            driver += dev.nop()?;
            rt.push(start.elapsed());
        }
        rt.sort();
        let mean = rt.iter().sum::<Duration>() / o.nops;
        say!(
            "null op: {} round trips, mean {:.1} us, p50 {:.1} us, p99 {:.1} us (driver-measured mean {:.1} us)",
            o.nops,
            us(mean),
            us(percentile(&rt, 0.5)),
            us(percentile(&rt, 0.99)),
            us(driver / o.nops)
        );
    }
    if o.runs == 0 {
        return Ok(());
    }
    let results: Vec<Result<(Duration, Duration), Error>> = std::thread::scope(|sc| {
        let handles: Vec<_> = (0..o.threads.max(1))
            .map(|_| sc.spawn(|| vadd(dev, o.size, o.runs)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(Error::Usage("a bench thread panicked".into())))
            })
            .collect()
    });
    let mut wall = Duration::ZERO;
    let mut engine = Duration::ZERO;
    for r in &results {
        let (w, e) = r
            .as_ref()
            .map_err(|e| Fail::from(Error::Usage(e.to_string())))?;
        wall = wall.max(*w);
        engine += *e;
    }
    let threads = o.threads.max(1);
    let touched = 3.0 * o.size as f64 * f64::from(threads);
    say!(
        "vadd_u32 {:.1} MiB vectors: {} runs x {} threads, {:.2} ms per run, engine {:.2} ms, {:.1} MiB/s (3 vectors touched)",
        o.size as f64 / f64::from(1u32 << 20),
        o.runs,
        threads,
        wall.as_secs_f64() * 1e3,
        (engine / threads).as_secs_f64() * 1e3,
        touched / wall.as_secs_f64() / f64::from(1 << 20)
    );
    Ok(())
}
