//! Sim kernels alone, on buffers cut into 4 KiB segments as guest pages are: the
//! engine's share of a request's time.
#![allow(clippy::unwrap_used, clippy::cast_possible_truncation)]

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
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
    let mut bufs: [Option<SgBuf<'_>>; MAX_ARGS] = [None; MAX_ARGS];
    // SAFETY: the vectors outlive the views and nothing else touches them meanwhile.
    unsafe {
        bufs[0] = SgBuf::new(sa.segs(), 0, n * 4);
        bufs[1] = SgBuf::new(sb.segs(), 0, n * 4);
        bufs[2] = SgBuf::new(so.segs(), 0, n * 4);
    }
    let k = catalog.find("vadd_u32").unwrap();
    let mut g = c.benchmark_group("sim vadd_u32 1 MiB vectors, 4 KiB segments");
    g.throughput(Throughput::Bytes(3 * n as u64 * 4));
    g.bench_function("engine run", |bch| {
        bch.iter(|| engine.run(k, &Call::new(&args, &bufs)).unwrap())
    });
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
    let mut bufs: [Option<SgBuf<'_>>; MAX_ARGS] = [None; MAX_ARGS];
    // SAFETY: as above.
    unsafe {
        bufs[0] = SgBuf::new(sd.segs(), 0, data_len);
        bufs[1] = SgBuf::new(sg.segs(), 0, 32);
    }
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
