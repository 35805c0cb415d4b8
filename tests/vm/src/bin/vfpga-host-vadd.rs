//! `vfpga-host-vadd`: the host-native limit that scripts/bench.sh sets beside a guest's
//! `vadd_u32` round trip. The same sum (`c[i] = a[i] + b[i]`, wrapping u32) as a plain
//! Rust loop over three contiguous host vectors, deliberately not through the engine:
//! the engine is part of what the guest's round trip measures, this is the floor any
//! path to memory-speed code has to be compared with.
//!
//! Prints one line, e.g.
//! `host vadd_u32 16.0 MiB vectors: 41 runs, median 1.83 ms, min 1.79 ms, max 2.40 ms`.
// The test pattern (element index as u32) wraps on purpose above 16 GiB vectors.
#![allow(clippy::cast_possible_truncation)]

use std::hint::black_box;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;

/// Times vadd_u32 as a plain loop over contiguous host memory and prints the median.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    /// MiB per vector (three vectors: two in, one out).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=4096))]
    mib: u32,
    /// Timed runs (after three untimed ones that fault the pages in and warm the caches).
    #[arg(long, default_value_t = 41, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    runs: u32,
    /// Flush the three vectors from the caches before each timed run (x86-64 `clflush`):
    /// the loop then reads from memory, as a request's data usually does, instead of
    /// from a cache that still holds the last run's (hundreds of MiB of L3 hold all
    /// three here).
    #[arg(long)]
    cold: bool,
    /// Sleep this many milliseconds before each timed run: the time a guest's requests
    /// come apart, during which the machine's caches may give the vectors up.
    #[arg(long, value_name = "MS", default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=1000))]
    pause_ms: u32,
}

/// Evicts `v`'s cache lines, so the next loop over it starts from memory.
fn flush<T>(v: &[T]) {
    #[cfg(target_arch = "x86_64")]
    {
        let p = v.as_ptr().cast::<u8>();
        for off in (0..std::mem::size_of_val(v)).step_by(64) {
            // SAFETY: `off` lies within `v`'s bytes; clflush only evicts the line.
            unsafe { std::arch::x86_64::_mm_clflush(p.add(off)) };
        }
        // SAFETY: a fence has no preconditions.
        unsafe { std::arch::x86_64::_mm_mfence() };
    }
    // Refused in main() elsewhere.
    #[cfg(not(target_arch = "x86_64"))]
    let _ = v;
}

// The loop the compiler vectorises; `black_box` keeps it from being hoisted out of the
// timing loop or dropped as dead.
fn vadd(a: &[u32], b: &[u32], c: &mut [u32]) {
    for ((c, a), b) in c.iter_mut().zip(a).zip(b) {
        *c = a.wrapping_add(*b);
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.cold && !cfg!(target_arch = "x86_64") {
        eprintln!(
            "vfpga-host-vadd: --cold flushes caches with x86-64's clflush: not on this machine"
        );
        return ExitCode::from(2);
    }
    // 2^18 u32 per MiB. Written, not just allocated: every page is faulted in before the
    // first timed run (a zeroed allocation maps one shared zero page until written).
    let n = usize::try_from(cli.mib).unwrap_or(usize::MAX) << 18;
    let a: Vec<u32> = (0..n).map(|i| i as u32).collect();
    let b = vec![7u32; n];
    let mut c = vec![1u32; n];
    for _ in 0..3 {
        vadd(black_box(&a), black_box(&b), black_box(&mut c));
    }
    let mut times: Vec<Duration> = (0..cli.runs)
        .map(|_| {
            if cli.cold {
                flush(&a);
                flush(&b);
                flush(&c);
            }
            std::thread::sleep(Duration::from_millis(u64::from(cli.pause_ms)));
            let t = Instant::now();
            vadd(black_box(&a), black_box(&b), black_box(&mut c));
            t.elapsed()
        })
        .collect();
    // The result is checked, so that a broken loop cannot pass for a fast one.
    if let Some(i) = (0..n).find(|&i| c[i] != (i as u32).wrapping_add(7)) {
        eprintln!("vfpga-host-vadd: wrong sum at element {i}: {}", c[i]);
        return ExitCode::FAILURE;
    }
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "host vadd_u32 {}.0 MiB vectors{}{}: {} runs, median {:.3} ms, min {:.3} ms, max {:.3} ms",
        cli.mib,
        if cli.cold { ", caches flushed" } else { "" },
        if cli.pause_ms > 0 {
            format!(", {} ms apart", cli.pause_ms)
        } else {
            String::new()
        },
        cli.runs,
        ms(times[times.len() / 2]),
        ms(times[0]),
        ms(times[times.len() - 1])
    );
    ExitCode::SUCCESS
}
