//! Every sim kernel alone, over guest-sized buffers three ways: one segment per buffer
//! (a contiguous guest range), 4 KiB pages in no order (a guest's buffer on 4 KiB
//! pages), and — where one exists — the same computation in plain Rust over host
//! slices. `cargo bench -p vfpga-engine --bench kernels` prints all of them;
//! docs/benchmarks.md ("Engine (sim kernels)") has the ratios.
#![allow(
    clippy::unwrap_used,
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap
)]

use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};
use vfpga_engine::sim::SimEngine;
use vfpga_engine::{Call, Engine, SegStream, SgBuf};
use vfpga_proto::{ArgEntry, ElemType, MAX_ARGS};

const PAGE: usize = 4096;

/// `len` bytes of a fresh shared memfd mapping (QEMU's memory-backend-memfd: 4 KiB
/// pages, no transparent huge pages), filled by `fill` so every page is real.
fn shared(len: usize, fill: &dyn Fn(usize) -> u8) -> &'static mut [u8] {
    // SAFETY: a new anonymous file of `len` bytes mapped shared and read-write; the
    // mapping is never unmapped (the benchmark process ends with it).
    let m = unsafe {
        let fd = libc::memfd_create(c"bench".as_ptr(), 0);
        assert!(fd >= 0 && libc::ftruncate(fd, libc::off_t::try_from(len).unwrap()) == 0);
        let p = libc::mmap(
            std::ptr::null_mut(),
            len.max(1),
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd,
            0,
        );
        assert_ne!(p, libc::MAP_FAILED);
        std::slice::from_raw_parts_mut(p.cast::<u8>(), len)
    };
    for (i, b) in m.iter_mut().enumerate() {
        *b = fill(i);
    }
    m
}

/// One segment over all of `m`.
fn whole(m: &mut [u8]) -> SegStream {
    let mut s = SegStream::with_capacity(1);
    assert!(s.push(m.as_mut_ptr(), m.len()));
    s
}

/// A shuffled order (seeded) of `n` pages.
fn order(n: usize, seed: u64) -> Vec<usize> {
    let mut o: Vec<usize> = (0..n).collect();
    let mut x = seed;
    for i in (1..n).rev() {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        o.swap(i, (x >> 33) as usize % (i + 1));
    }
    o
}

/// `m`'s 4 KiB pages in a shuffled order (seeded), as a guest's buffer is scattered
/// over host pages. The few pages the shuffle happens to leave next to each other
/// merge, as the daemon merges them.
fn pages(m: &mut [u8], seed: u64) -> SegStream {
    let chunks: Vec<&mut [u8]> = m.chunks_mut(PAGE).collect();
    let mut s = SegStream::with_capacity(chunks.len());
    for i in order(chunks.len(), seed) {
        assert!(s.push(chunks[i].as_ptr().cast_mut(), chunks[i].len()));
    }
    s
}

/// Pseudo-random bytes, stable from run to run.
fn noise(i: usize) -> u8 {
    let x = (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (x >> 56) as u8
}

/// A kernel's arguments in both layouts: `(one segment, pages in no order)` streams per
/// buffer argument, lengths, and the argument table.
struct Setup {
    one: Vec<SegStream>,
    paged: Vec<SegStream>,
    /// Start of each paged buffer's memory (its pages in address order).
    paged_mem: Vec<*mut u8>,
    lens: Vec<usize>,
    args: Vec<ArgEntry>,
}

impl Setup {
    /// Buffers of `lens` bytes, filled by `fill` (per buffer), for `args`.
    fn new(args: Vec<ArgEntry>, lens: &[usize], fill: &dyn Fn(usize, usize) -> u8) -> Self {
        let mut one = Vec::new();
        let (mut paged, mut paged_mem) = (Vec::new(), Vec::new());
        for (k, &len) in lens.iter().enumerate() {
            one.push(whole(shared(len, &|i| fill(k, i))));
            let m = shared(len, &|i| fill(k, i));
            paged_mem.push(m.as_mut_ptr());
            paged.push(pages(m, k as u64 + 1));
        }
        Self {
            one,
            paged,
            paged_mem,
            lens: lens.to_vec(),
            args,
        }
    }

    /// Views of the buffers of one layout, as arguments 0, 1, ...
    fn views<'a>(&self, streams: &'a [SegStream]) -> [Option<SgBuf<'a>>; MAX_ARGS] {
        let mut bufs: [Option<SgBuf<'a>>; MAX_ARGS] = [None; MAX_ARGS];
        for ((b, s), &len) in bufs.iter_mut().zip(streams).zip(&self.lens) {
            // SAFETY: the mappings are never unmapped and nothing else touches them
            // while the benchmark runs.
            *b = unsafe { SgBuf::new(s.segs(), 0, len) };
        }
        bufs
    }

    /// Benchmarks `kernel` over both layouts in `g`.
    fn bench(&self, g: &mut BenchmarkGroup<'_, WallTime>, engine: &SimEngine, kernel: &str) {
        let catalog = engine.catalog();
        let k = catalog.find(kernel).unwrap();
        let (one, paged) = (self.views(&self.one), self.views(&self.paged));
        g.bench_function("engine, one segment", |b| {
            b.iter(|| engine.run(k, &Call::new(&self.args, &one)).unwrap())
        });
        g.bench_function("engine, 4 KiB pages in no order", |b| {
            b.iter(|| engine.run(k, &Call::new(&self.args, &paged)).unwrap())
        });
    }
}

fn group<'a>(c: &'a mut Criterion, name: &str, bytes: usize) -> BenchmarkGroup<'a, WallTime> {
    let mut g = c.benchmark_group(name);
    g.throughput(Throughput::Bytes(bytes as u64));
    g.sample_size(10);
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(3));
    g
}

fn u32s(n: usize, f: impl Fn(usize) -> u32) -> Vec<u32> {
    (0..n).map(f).collect()
}

/// `vadd_u32` and `vadd_f32`, 16 MiB vectors; also the host's own loop over the same
/// scattered pages, to tell the scatter's cost from the engine's.
fn vadd(c: &mut Criterion, engine: &SimEngine) {
    let n = 4 << 20;
    let bytes = n * 4;
    let word = |k: usize, i: usize| (i / 4 * 3 + k) as u32;
    let args = |t| {
        vec![
            ArgEntry::input(t, bytes as u64),
            ArgEntry::input(t, bytes as u64),
            ArgEntry::output(t, bytes as u64),
            ArgEntry::scalar(ElemType::U32, n as u64),
        ]
    };
    let s = Setup::new(args(ElemType::U32), &[bytes; 3], &|k, i| {
        word(k, i).to_le_bytes()[i % 4]
    });
    let mut g = group(c, "sim vadd_u32 16 MiB vectors", 3 * bytes);
    s.bench(&mut g, engine, "vadd_u32");
    let (a, b, mut o) = (
        u32s(n, |i| word(0, i * 4)),
        u32s(n, |i| word(1, i * 4)),
        vec![0u32; n],
    );
    g.bench_function("host-native slices", |bch| {
        bch.iter(|| {
            for ((o, a), b) in o.iter_mut().zip(&a).zip(&b) {
                *o = a.wrapping_add(*b);
            }
            std::hint::black_box(&mut o);
        })
    });
    // The host's loop, page by page, over the pages the engine walks in no order.
    let page_list = |k: usize| -> Vec<*mut u32> {
        order(bytes / PAGE, k as u64 + 1)
            .into_iter()
            .map(|p| s.paged_mem[k].wrapping_add(p * PAGE).cast::<u32>())
            .collect()
    };
    let (pa, pb, po) = (page_list(0), page_list(1), page_list(2));
    g.bench_function("host-native, same pages in no order", |bch| {
        bch.iter(|| {
            for ((&a, &b), &o) in pa.iter().zip(&pb).zip(&po) {
                // SAFETY: each is a whole mapped page, 4-aligned, touched by nothing else.
                let (a, b, o) = unsafe {
                    (
                        std::slice::from_raw_parts(a, PAGE / 4),
                        std::slice::from_raw_parts(b, PAGE / 4),
                        std::slice::from_raw_parts_mut(o, PAGE / 4),
                    )
                };
                for ((o, a), b) in o.iter_mut().zip(a).zip(b) {
                    *o = a.wrapping_add(*b);
                }
            }
            std::hint::black_box(&po);
        })
    });
    g.finish();

    let fword = |k: usize, i: usize| ((i / 4) as f32 * 0.5 + k as f32).to_bits();
    let s = Setup::new(args(ElemType::F32), &[bytes; 3], &|k, i| {
        fword(k, i).to_le_bytes()[i % 4]
    });
    let mut g = group(c, "sim vadd_f32 16 MiB vectors", 3 * bytes);
    s.bench(&mut g, engine, "vadd_f32");
    let a: Vec<f32> = (0..n).map(|i| f32::from_bits(fword(0, i * 4))).collect();
    let b: Vec<f32> = (0..n).map(|i| f32::from_bits(fword(1, i * 4))).collect();
    let mut o = vec![0f32; n];
    g.bench_function("host-native slices", |bch| {
        bch.iter(|| {
            for ((o, a), b) in o.iter_mut().zip(&a).zip(&b) {
                *o = a + b;
            }
            std::hint::black_box(&mut o);
        })
    });
    g.finish();
}

/// `mmult_f32`, 512×512 matrices (1 MiB each: compute-bound, rows of 2 KiB).
fn mmult(c: &mut Criterion, engine: &SimEngine) {
    let d = 512usize;
    let bytes = d * d * 4;
    let val = |k: usize, i: usize| ((i / 4 % 1000) as f32 * 0.001 + k as f32).to_bits();
    let s = Setup::new(
        vec![
            ArgEntry::input(ElemType::F32, bytes as u64),
            ArgEntry::input(ElemType::F32, bytes as u64),
            ArgEntry::output(ElemType::F32, bytes as u64),
            ArgEntry::scalar(ElemType::U32, d as u64),
            ArgEntry::scalar(ElemType::U32, d as u64),
            ArgEntry::scalar(ElemType::U32, d as u64),
        ],
        &[bytes; 3],
        &|k, i| val(k, i).to_le_bytes()[i % 4],
    );
    let mut g = group(c, "sim mmult_f32 512x512", 3 * bytes);
    s.bench(&mut g, engine, "mmult");
    let a: Vec<f32> = (0..d * d).map(|i| f32::from_bits(val(0, i * 4))).collect();
    let b: Vec<f32> = (0..d * d).map(|i| f32::from_bits(val(1, i * 4))).collect();
    let mut o = vec![0f32; d * d];
    // The kernel's loop order (i, p, j) and rounding, over host slices.
    g.bench_function("host-native slices", |bch| {
        bch.iter(|| {
            for (a_row, c_row) in a.chunks_exact(d).zip(o.chunks_exact_mut(d)) {
                c_row.fill(0.0);
                for (&x, b_row) in a_row.iter().zip(b.chunks_exact(d)) {
                    for (c, &y) in c_row.iter_mut().zip(b_row) {
                        *c += x * y;
                    }
                }
            }
            std::hint::black_box(&mut o);
        })
    });
    g.finish();
}

/// `fir_i16`, 4 Mi samples (8 MiB in, 16 MiB out), 16 taps.
fn fir(c: &mut Criterion, engine: &SimEngine) {
    let (n, t) = (4usize << 20, 16usize);
    let taps: Vec<i32> = (0..t as i32).map(|j| j * 37 - 200).collect();
    let tap_bytes: Vec<u8> = taps.iter().flat_map(|v| v.to_le_bytes()).collect();
    let s = Setup::new(
        vec![
            ArgEntry::input(ElemType::I16, (n * 2) as u64),
            ArgEntry::input(ElemType::I32, (t * 4) as u64),
            ArgEntry::output(ElemType::I32, (n * 4) as u64),
            ArgEntry::scalar(ElemType::U32, n as u64),
            ArgEntry::scalar(ElemType::U32, t as u64),
        ],
        &[n * 2, t * 4, n * 4],
        &|k, i| match k {
            0 => noise(i),
            1 => tap_bytes[i],
            _ => 0,
        },
    );
    let mut g = group(c, "sim fir_i16 4 Mi samples 16 taps", n * 6);
    s.bench(&mut g, engine, "fir");
    let x: Vec<i16> = (0..n)
        .map(|i| i16::from_le_bytes([noise(2 * i), noise(2 * i + 1)]))
        .collect();
    let mut y = vec![0i32; n];
    // The textbook sum over host slices, with the kernel's wrapping arithmetic.
    g.bench_function("host-native slices", |bch| {
        bch.iter(|| {
            for (i, y) in y.iter_mut().enumerate() {
                let mut acc = 0i32;
                for (j, &tap) in taps.iter().enumerate().take(i + 1) {
                    acc = acc.wrapping_add(tap.wrapping_mul(i32::from(x[i - j])));
                }
                *y = acc;
            }
            std::hint::black_box(&mut y);
        })
    });
    g.finish();
}

/// `sha256` of 16 MiB (the `sha2` crate over a host slice for scale: a different,
/// optimised implementation, not the same loop).
fn sha256(c: &mut Criterion, engine: &SimEngine) {
    let n = 16usize << 20;
    let s = Setup::new(
        vec![
            ArgEntry::input(ElemType::U8, n as u64),
            ArgEntry::output(ElemType::U8, 32),
            ArgEntry::scalar(ElemType::U64, n as u64),
        ],
        &[n, 32],
        &|_, i| noise(i),
    );
    let mut g = group(c, "sim sha256 16 MiB", n);
    s.bench(&mut g, engine, "sha256");
    let data: Vec<u8> = (0..n).map(noise).collect();
    g.bench_function("host sha2 crate (another implementation)", |bch| {
        bch.iter(|| std::hint::black_box(vfpga_reference::sha256(&data)))
    });
    g.finish();
}

/// `sobel_u8`, a 4096×4096 image (16 MiB in, 16 MiB out).
fn sobel(c: &mut Criterion, engine: &SimEngine) {
    let (w, h) = (4096usize, 4096usize);
    let s = Setup::new(
        vec![
            ArgEntry::input(ElemType::U8, (w * h) as u64),
            ArgEntry::output(ElemType::U8, (w * h) as u64),
            ArgEntry::scalar(ElemType::U32, w as u64),
            ArgEntry::scalar(ElemType::U32, h as u64),
        ],
        &[w * h; 2],
        &|k, i| if k == 0 { noise(i) } else { 0 },
    );
    let mut g = group(c, "sim sobel_u8 4096x4096", 2 * w * h);
    s.bench(&mut g, engine, "sobel");
    let src: Vec<u8> = (0..w * h).map(noise).collect();
    let mut dst = vec![0u8; w * h];
    g.bench_function("host-native slices", |bch| {
        bch.iter(|| {
            dst[..w].fill(0);
            dst[(h - 1) * w..].fill(0);
            for y in 1..h - 1 {
                let (t, m, b) = (
                    &src[(y - 1) * w..y * w],
                    &src[y * w..(y + 1) * w],
                    &src[(y + 1) * w..(y + 2) * w],
                );
                let out = &mut dst[y * w..(y + 1) * w];
                out[0] = 0;
                out[w - 1] = 0;
                for x in 1..w - 1 {
                    let p = |r: &[u8], dx: usize| i32::from(r[x + dx - 1]);
                    let gx = (p(t, 2) + 2 * p(m, 2) + p(b, 2)) - (p(t, 0) + 2 * p(m, 0) + p(b, 0));
                    let gy = (p(b, 0) + 2 * p(b, 1) + p(b, 2)) - (p(t, 0) + 2 * p(t, 1) + p(t, 2));
                    out[x] = (gx.abs() + gy.abs()).min(255) as u8;
                }
            }
            std::hint::black_box(&mut dst);
        })
    });
    g.finish();
}

fn kernels(c: &mut Criterion) {
    let engine = SimEngine::new(None).unwrap();
    vadd(c, &engine);
    mmult(c, &engine);
    fir(c, &engine);
    sha256(c, &engine);
    sobel(c, &engine);
}

criterion_group!(benches, kernels);
criterion_main!(benches);
