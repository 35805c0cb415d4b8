//! Sim kernels alone, on buffers cut into 4 KiB segments as guest pages are: the
//! engine's share of a request's time.
#![allow(clippy::unwrap_used, clippy::cast_possible_truncation)]

use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};
use vfpga_engine::sim::SimEngine;
use vfpga_engine::{Call, Engine, SegStream, SgBuf};
use vfpga_proto::{ArgEntry, ElemType, MAX_ARGS};

fn paged(mem: &mut [u8]) -> SegStream {
    let mut s = SegStream::with_capacity(mem.len() / 4096 + 1);
    for chunk in mem.chunks_mut(4096) {
        assert!(s.push(chunk.as_mut_ptr(), chunk.len()));
    }
    s
}

/// `len` bytes of a fresh shared memfd mapping, touched (as a running guest's are).
fn shared(len: usize) -> &'static mut [u8] {
    // SAFETY: a new anonymous file of `len` bytes mapped shared and read-write; the
    // mapping is never unmapped (the benchmark process ends with it).
    unsafe {
        let fd = libc::memfd_create(c"bench".as_ptr(), 0);
        assert!(fd >= 0 && libc::ftruncate(fd, libc::off_t::try_from(len).unwrap()) == 0);
        let p = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd,
            0,
        );
        assert_ne!(p, libc::MAP_FAILED);
        let m = std::slice::from_raw_parts_mut(p.cast::<u8>(), len);
        m.fill(1);
        m
    }
}

/// Views of the first `lens[i]` bytes of `streams[i]`, as arguments 0, 1, ...
///
/// # Safety
///
/// The memory the streams point at outlives the views and nothing else touches it
/// while they are used.
unsafe fn views<'a>(streams: &[&'a SegStream], lens: &[usize]) -> [Option<SgBuf<'a>>; MAX_ARGS] {
    let mut bufs: [Option<SgBuf<'a>>; MAX_ARGS] = [None; MAX_ARGS];
    for ((b, s), &len) in bufs.iter_mut().zip(streams).zip(lens) {
        // SAFETY: the caller's promise.
        *b = unsafe { SgBuf::new(s.segs(), 0, len) };
    }
    bufs
}

/// The limit: `vadd_u32` as plain Rust over host slices (what the host needs for the
/// work itself).
fn host_vadd(g: &mut BenchmarkGroup<'_, WallTime>, a: &[u32], b: &[u32], c: &mut [u32]) {
    g.bench_function("host-native slices", |bch| {
        bch.iter(|| {
            for ((c, a), b) in c.iter_mut().zip(a).zip(b) {
                *c = a.wrapping_add(*b);
            }
            std::hint::black_box(&mut *c);
        })
    });
}

fn kernels(c: &mut Criterion) {
    let engine = SimEngine::new(None).unwrap();
    let catalog = engine.catalog();
    let n = 256 * 1024usize;
    let (mut a, mut b, mut out) = (vec![1u8; n * 4], vec![2u8; n * 4], vec![0u8; n * 4]);
    let (sa, sb, so) = (paged(&mut a), paged(&mut b), paged(&mut out));
    let args = [
        ArgEntry::input(ElemType::U32, (n * 4) as u64),
        ArgEntry::input(ElemType::U32, (n * 4) as u64),
        ArgEntry::output(ElemType::U32, (n * 4) as u64),
        ArgEntry::scalar(ElemType::U32, n as u64),
    ];
    // SAFETY: the buffers outlive the views and nothing else touches them meanwhile.
    let bufs = unsafe { views(&[&sa, &sb, &so], &[n * 4; 3]) };
    let k = catalog.find("vadd_u32").unwrap();
    let mut g = c.benchmark_group("sim vadd_u32 1 MiB vectors, 4 KiB segments");
    g.throughput(Throughput::Bytes(3 * n as u64 * 4));
    g.bench_function("engine run", |bch| {
        bch.iter(|| engine.run(k, &Call::new(&args, &bufs)).unwrap())
    });
    // The same vectors as one segment each (a contiguous guest range mapped as one).
    let (mut a1, mut b1, mut o1) = (vec![1u8; n * 4], vec![2u8; n * 4], vec![0u8; n * 4]);
    let one = |m: &mut [u8]| {
        let mut s = SegStream::with_capacity(1);
        assert!(s.push(m.as_mut_ptr(), m.len()));
        s
    };
    let (ca, cb, co) = (one(&mut a1), one(&mut b1), one(&mut o1));
    // SAFETY: the buffers outlive the views and nothing else touches them meanwhile.
    let contiguous = unsafe { views(&[&ca, &cb, &co], &[n * 4; 3]) };
    g.bench_function("engine run, one segment", |bch| {
        bch.iter(|| engine.run(k, &Call::new(&args, &contiguous)).unwrap())
    });
    let (ha, hb, mut hc) = (vec![1u32; n], vec![2u32; n], vec![0u32; n]);
    host_vadd(&mut g, &ha, &hb, &mut hc);
    g.finish();

    // 16 MiB vectors, as a guest's pages are: 4 KiB apiece, in no order.
    let big = 4 << 20;
    let pages = |m: &mut [u8], seed: u64| {
        let mut chunks: Vec<&mut [u8]> = m.chunks_mut(4096).collect();
        let mut x = seed;
        for i in (1..chunks.len()).rev() {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            chunks.swap(i, (x >> 33) as usize % (i + 1));
        }
        let mut s = SegStream::with_capacity(chunks.len());
        for c in chunks {
            assert!(s.push(c.as_mut_ptr(), c.len()));
        }
        s
    };
    // Guest memory as vfpgad maps it: a shared memfd (QEMU's memory-backend-memfd),
    // 4 KiB pages, no transparent huge pages.
    let (ma, mb, mo) = (shared(big * 4), shared(big * 4), shared(big * 4));
    let (pa, pb, po) = (pages(ma, 1), pages(mb, 2), pages(mo, 3));
    let args16 = [
        ArgEntry::input(ElemType::U32, (big * 4) as u64),
        ArgEntry::input(ElemType::U32, (big * 4) as u64),
        ArgEntry::output(ElemType::U32, (big * 4) as u64),
        ArgEntry::scalar(ElemType::U32, big as u64),
    ];
    // SAFETY: the buffers outlive the views and nothing else touches them meanwhile.
    let scattered = unsafe { views(&[&pa, &pb, &po], &[big * 4; 3]) };
    let mut g = c.benchmark_group("sim vadd_u32 16 MiB vectors");
    g.throughput(Throughput::Bytes(3 * big as u64 * 4));
    g.sample_size(20);
    g.bench_function("engine run, 4 KiB pages in no order", |bch| {
        bch.iter(|| engine.run(k, &Call::new(&args16, &scattered)).unwrap())
    });
    // The same memory in order, one segment per buffer: what is left is the loop.
    let whole = |m: &mut [u8]| {
        let mut s = SegStream::with_capacity(1);
        assert!(s.push(m.as_mut_ptr(), m.len()));
        s
    };
    let (wa, wb, wo) = (
        whole(shared(big * 4)),
        whole(shared(big * 4)),
        whole(shared(big * 4)),
    );
    // SAFETY: the buffers outlive the views and nothing else touches them meanwhile.
    let in_order = unsafe { views(&[&wa, &wb, &wo], &[big * 4; 3]) };
    g.bench_function("engine run, one segment", |bch| {
        bch.iter(|| engine.run(k, &Call::new(&args16, &in_order)).unwrap())
    });
    let mut ha = vec![0u32; big];
    let mut hb = vec![0u32; big];
    let mut hc = vec![0u32; big];
    // Written, so that reads are of real pages (not the zero page).
    ha.fill(1);
    hb.fill(2);
    hc.fill(3);
    host_vadd(&mut g, &ha, &hb, &mut hc);
    g.finish();

    let data_len = 1 << 20;
    let mut data = vec![7u8; data_len];
    let mut digest = [0u8; 32];
    let (sd, sg) = (paged(&mut data), paged(&mut digest));
    let args = [
        ArgEntry::input(ElemType::U8, data_len as u64),
        ArgEntry::output(ElemType::U8, 32),
        ArgEntry::scalar(ElemType::U64, data_len as u64),
    ];
    // SAFETY: the buffers outlive the views and nothing else touches them meanwhile.
    let bufs = unsafe { views(&[&sd, &sg], &[data_len, 32]) };
    let k = catalog.find("sha256").unwrap();
    let mut g = c.benchmark_group("sim sha256 1 MiB, 4 KiB segments");
    g.throughput(Throughput::Bytes(data_len as u64));
    g.bench_function("engine run", |bch| {
        bch.iter(|| engine.run(k, &Call::new(&args, &bufs)).unwrap())
    });
    g.finish();
}

criterion_group!(benches, kernels);
criterion_main!(benches);
