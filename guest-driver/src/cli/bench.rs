//! `vfpga bench`: null-op latency and `vadd_u32` throughput, seen from the guest.
// Test patterns wrap to u32 and percentiles round floats on purpose.
#![allow(clippy::cast_possible_truncation)]

use std::time::{Duration, Instant};

use vfpga::{AlignedBuf, Arg, Device, Error, Registered};
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
    /// vadd_u32 runs to time per thread (after one untimed run).
    #[arg(long, default_value_t = 5, value_name = "N")]
    runs: u32,
    /// Concurrent threads, each with its own session and buffers.
    #[arg(long, default_value_t = 1, value_name = "N")]
    threads: u32,
    /// Memory of the vadd_u32 vectors: 4 KiB pages, transparent huge pages (2 MiB
    /// aligned, madvise), or huge pages from the reserved pool (vm.nr_hugepages).
    #[arg(long, value_enum, default_value_t = Memory::Pages)]
    memory: Memory,
    /// Register the vectors with the device once, before the timed runs (pinned once,
    /// named by id in each run).
    #[arg(long)]
    register: bool,
}

/// Where `vfpga bench` puts its vectors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Memory {
    /// 4 KiB-aligned heap memory on 4 KiB pages.
    Pages,
    /// Transparent huge pages (`madvise(MADV_HUGEPAGE)`).
    Thp,
    /// `MAP_HUGETLB` from the reserved huge page pool.
    Hugetlb,
}

impl Memory {
    fn alloc(self, bytes: usize) -> Result<AlignedBuf, Error> {
        let io = |op, r: std::io::Result<AlignedBuf>| {
            r.map_err(|e| {
                Error::Usage(format!(
                    "{op}: {e}{}",
                    if self == Memory::Hugetlb {
                        " (reserve huge pages first: echo N > /proc/sys/vm/nr_hugepages)"
                    } else {
                        ""
                    }
                ))
            })
        };
        match self {
            Memory::Pages => Ok(AlignedBuf::zeroed(bytes)),
            Memory::Thp => io("map transparent huge pages", AlignedBuf::huge(bytes)),
            Memory::Hugetlb => io("map huge pages", AlignedBuf::hugetlb(bytes)),
        }
    }
}

/// A vadd_u32 vector: plain memory, or registered with the device.
enum Vector<'d> {
    Plain(AlignedBuf),
    Registered(Registered<'d>),
}

impl Vector<'_> {
    fn bytes(&self) -> &[u8] {
        match self {
            Vector::Plain(b) => b.as_slice(),
            Vector::Registered(r) => r.as_slice(),
        }
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        match self {
            Vector::Plain(b) => b.as_mut_slice(),
            Vector::Registered(r) => r.as_mut_slice(),
        }
    }
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

/// One thread's vadd runs.
struct Timed {
    wall: Duration,
    engine: Duration,
    segments: u16,
    /// The vectors were registered (not on a stream, nor with an older module).
    registered: bool,
}

/// One thread's vadd runs: means per run, and the descriptors of the last.
fn vadd(dev: &Device, o: &Opts) -> Result<Timed, Error> {
    let (bytes, runs) = (o.size, o.runs);
    let s = dev.session("vadd_u32")?;
    let n = bytes / 4;
    let vector = |fill: &dyn Fn(usize) -> u32| -> Result<Vector<'_>, Error> {
        let mut buf = o.memory.alloc(bytes)?;
        for (i, w) in buf.as_mut_slice().chunks_exact_mut(4).enumerate() {
            w.copy_from_slice(&fill(i).to_le_bytes());
        }
        Ok(if o.register {
            Vector::Registered(dev.register(buf)?)
        } else {
            Vector::Plain(buf)
        })
    };
    let a = vector(&|i| i as u32)?;
    let b = vector(&|_| 7)?;
    let mut c = vector(&|_| 0)?;
    let registered = [&a, &b, &c]
        .iter()
        .all(|v| matches!(v, Vector::Registered(r) if r.id().is_some()));
    let (mut wall, mut engine, mut segments) = (Duration::ZERO, Duration::ZERO, 0);
    // One run untimed: the first touch of the pages (the guest's faults, vfpgad's
    // first mapping of them) is paid once, not per run.
    for timed in (0..=runs).map(|i| i > 0) {
        let start = Instant::now();
        let st = s.run(&mut [
            Arg::In(ElemType::U32, a.bytes()),
            Arg::In(ElemType::U32, b.bytes()),
            Arg::Out(ElemType::U32, c.bytes_mut()),
            Arg::Scalar(ElemType::U32, n as u64),
        ])?;
        if timed {
            wall += start.elapsed();
            engine += st.engine;
            segments = st.segments;
        }
    }
    for (i, w) in c.bytes().chunks_exact(4).enumerate().step_by(4093) {
        let got = u32::from_le_bytes([w[0], w[1], w[2], w[3]]);
        if got != (i as u32).wrapping_add(7) {
            return Err(Error::Usage(format!(
                "vadd result wrong at element {i}: {got}"
            )));
        }
    }
    Ok(Timed {
        wall: wall / runs.max(1),
        engine: engine / runs.max(1),
        segments,
        registered,
    })
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
    let results: Vec<Result<Timed, Error>> = std::thread::scope(|sc| {
        let handles: Vec<_> = (0..o.threads.max(1))
            .map(|_| sc.spawn(|| vadd(dev, o)))
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
    let mut segments = 0;
    let mut registered = true;
    for r in &results {
        let t = r
            .as_ref()
            .map_err(|e| Fail::from(Error::Usage(e.to_string())))?;
        wall = wall.max(t.wall);
        engine += t.engine;
        segments = segments.max(t.segments);
        registered &= t.registered;
    }
    let threads = o.threads.max(1);
    let touched = 3.0 * o.size as f64 * f64::from(threads);
    // Descriptors exist only through a device node.
    let segs = if segments > 0 {
        format!(", segments {segments}")
    } else {
        String::new()
    };
    say!(
        "vadd_u32 {:.1} MiB vectors: {} runs x {} threads, {:.2} ms per run, engine {:.2} ms, {:.1} MiB/s (3 vectors touched; memory {}{}{segs})",
        o.size as f64 / f64::from(1u32 << 20),
        o.runs,
        threads,
        wall.as_secs_f64() * 1e3,
        (engine / threads).as_secs_f64() * 1e3,
        touched / wall.as_secs_f64() / f64::from(1 << 20),
        match o.memory {
            Memory::Pages => "pages",
            Memory::Thp => "thp",
            Memory::Hugetlb => "hugetlb",
        },
        match (o.register, registered) {
            (false, _) => "",
            (true, true) => ", registered",
            (true, false) => ", registration unavailable here",
        },
    );
    Ok(())
}
