//! Every sim kernel against an independent reference computed here: plain loops over
//! ordinary slices (and the `sha2` crate for SHA-256), with the guest buffers cut into
//! irregular segments so elements straddle segment boundaries.
#![allow(clippy::unwrap_used, clippy::cast_possible_truncation)]

use vfpga_engine::sim::SimEngine;
use vfpga_engine::{Call, Engine, EngineError, SegStream, SgBuf};
use vfpga_proto::{ArgEntry, ArgKind, ElemType, Status, MAX_ARGS};
use vfpga_reference::{self as common, Rng};

/// One argument of a test call.
enum Arg {
    Scalar(ElemType, u64),
    In(ElemType, Vec<u8>),
    Out(ElemType, usize),
}

/// Runs kernel `name` with `args`, the buffers split into segments of 1..=97 bytes.
/// Returns the output buffers in argument order.
fn run(name: &str, args: Vec<Arg>) -> Result<Vec<Vec<u8>>, EngineError> {
    run_cut(name, args, 1, 97)
}

/// [`run`], the buffers split into segments of `unit` to `unit * max` bytes, in
/// multiples of `unit`, `unit` bytes apart.
fn run_cut(name: &str, args: Vec<Arg>, unit: usize, max: u64) -> Result<Vec<Vec<u8>>, EngineError> {
    let engine = SimEngine::new(None).unwrap();
    let catalog = engine.catalog();
    let kernel = catalog.find(name).unwrap();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let datas: Vec<Vec<u8>> = args
        .iter()
        .map(|a| match a {
            Arg::Scalar(..) => Vec::new(),
            Arg::In(_, v) => v.clone(),
            Arg::Out(_, n) => vec![0xAA; *n],
        })
        .collect();
    // Each buffer's segments lie apart in memory (`unit` bytes between them, so that no
    // reading of the stream could see them as one run): `(start in mem, len)` apiece.
    let cuts: Vec<Vec<(usize, usize)>> = datas
        .iter()
        .map(|d| {
            let (mut off, mut at, mut cuts) = (0, 0, Vec::new());
            while off < d.len() {
                let n = (((rng.next() % max) as usize + 1) * unit).min(d.len() - off);
                cuts.push((at, n));
                off += n;
                at += n + unit;
            }
            cuts
        })
        .collect();
    let mut mems: Vec<Vec<u8>> = datas
        .iter()
        .zip(&cuts)
        .map(|(d, cuts)| {
            let mut m = vec![0x55; d.len() + cuts.len() * unit];
            let mut off = 0;
            for &(at, n) in cuts {
                m[at..at + n].copy_from_slice(&d[off..off + n]);
                off += n;
            }
            m
        })
        .collect();
    let streams: Vec<SegStream> = mems
        .iter_mut()
        .zip(&cuts)
        .map(|(m, cuts)| {
            let mut s = SegStream::with_capacity(cuts.len());
            for &(at, n) in cuts {
                assert!(s.push(m[at..at + n].as_mut_ptr(), n));
            }
            assert_eq!(s.segs().len(), cuts.len());
            s
        })
        .collect();
    let table: Vec<ArgEntry> = args
        .iter()
        .map(|a| match a {
            Arg::Scalar(t, v) => ArgEntry::scalar(*t, *v),
            Arg::In(t, v) => ArgEntry::input(*t, v.len() as u64),
            Arg::Out(t, n) => ArgEntry::output(*t, *n as u64),
        })
        .collect();
    kernel
        .sig
        .check_call(&table)
        .map_err(|e| EngineError::BadArgument {
            index: e.detail as usize,
            reason: e.reason,
        })?;
    let mut bufs: [Option<SgBuf<'_>>; MAX_ARGS] = [None; MAX_ARGS];
    for (i, a) in table.iter().enumerate() {
        if a.kind != ArgKind::Scalar.raw() {
            // SAFETY: `mems` outlives the call and nothing else touches it meanwhile.
            bufs[i] = unsafe { SgBuf::new(streams[i].segs(), 0, a.value as usize) };
        }
    }
    engine.run(kernel, &Call::new(&table, &bufs))?;
    drop(streams);
    Ok(args
        .iter()
        .zip(mems.iter().zip(&cuts))
        .filter(|(a, _)| matches!(a, Arg::Out(..)))
        .map(|(_, (m, cuts))| {
            // Nothing was written between the segments.
            for &(at, n) in cuts {
                assert!(m.get(at + n).map_or(true, |&b| b == 0x55), "gap after {at}");
            }
            cuts.iter()
                .flat_map(|&(at, n)| m[at..at + n].iter().copied())
                .collect()
        })
        .collect())
}

fn words<T: Copy>(bytes: &[u8], f: impl Fn(&[u8]) -> T, size: usize) -> Vec<T> {
    bytes.chunks_exact(size).map(f).collect()
}
fn u32s(b: &[u8]) -> Vec<u32> {
    words(b, |c| u32::from_le_bytes(c.try_into().unwrap()), 4)
}
fn f32s(b: &[u8]) -> Vec<f32> {
    words(b, |c| f32::from_le_bytes(c.try_into().unwrap()), 4)
}
fn i32s(b: &[u8]) -> Vec<i32> {
    words(b, |c| i32::from_le_bytes(c.try_into().unwrap()), 4)
}
fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

#[test]
fn vadd_u32_wraps() {
    let mut rng = Rng(1);
    let n = 1000;
    let (a, b) = (rng.bytes(n * 4), rng.bytes(n * 4));
    let out = run(
        "vadd_u32",
        vec![
            Arg::In(ElemType::U32, a.clone()),
            Arg::In(ElemType::U32, b.clone()),
            Arg::Out(ElemType::U32, n * 4),
            Arg::Scalar(ElemType::U32, n as u64),
        ],
    )
    .unwrap();
    let want: Vec<u32> = u32s(&a)
        .iter()
        .zip(u32s(&b))
        .map(|(x, y)| x.wrapping_add(y))
        .collect();
    assert_eq!(u32s(&out[0]), want);
}

#[test]
fn vadd_f32_is_ieee() {
    let mut rng = Rng(2);
    let n = 777;
    let a: Vec<f32> = (0..n).map(|_| (rng.next() as i32) as f32 / 1e3).collect();
    let b: Vec<f32> = (0..n).map(|_| (rng.next() as i32) as f32 / 7.0).collect();
    let out = run(
        "vadd_f32",
        vec![
            Arg::In(ElemType::F32, f32_bytes(&a)),
            Arg::In(ElemType::F32, f32_bytes(&b)),
            Arg::Out(ElemType::F32, n * 4),
            Arg::Scalar(ElemType::U32, n as u64),
        ],
    )
    .unwrap();
    let got = f32s(&out[0]);
    for (i, want) in common::vadd_f32(&a, &b).iter().enumerate() {
        assert_eq!(got[i].to_bits(), want.to_bits(), "element {i}");
    }
}

#[test]
fn vadd_over_long_aligned_runs_is_bit_exact_for_every_bit_pattern() {
    // Segments of 4 bytes to 4 KiB, 4 bytes apart: long aligned runs, where the kernels
    // take their vector loops, and short ones with their edges. 100k random bit
    // patterns, plus specials for f32 spread through the buffers: NaNs with different
    // payloads on both sides (which operand's payload survives shows an operand swap),
    // infinities, subnormals and -0.
    let mut rng = Rng(22);
    let n = 100_003;
    let mut a: Vec<u32> = (0..n).map(|_| rng.next() as u32).collect();
    let mut b: Vec<u32> = (0..n).map(|_| rng.next() as u32).collect();
    let specials = [
        (0x7fc0_0001u32, 0x7fc0_0002u32),
        (0xffc1_2345, 0x7fa0_0001),
        (0x7f80_0001, 0x3f80_0000),
        (0x3f80_0000, 0xff80_0000),
        (0x7f80_0000, 0xff80_0000),
        (0x0000_0001, 0x8000_0001),
        (0x8000_0000, 0x0000_0000),
    ];
    for i in (0..n).step_by(997) {
        (a[i], b[i]) = specials[(i / 997) % specials.len()];
    }
    let bytes = |v: &[u32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    for (name, ty) in [("vadd_u32", ElemType::U32), ("vadd_f32", ElemType::F32)] {
        let out = run_cut(
            name,
            vec![
                Arg::In(ty, bytes(&a)),
                Arg::In(ty, bytes(&b)),
                Arg::Out(ty, n * 4),
                Arg::Scalar(ElemType::U32, n as u64),
            ],
            4,
            1024,
        )
        .unwrap();
        for (i, w) in out[0].chunks_exact(4).enumerate() {
            let got = u32::from_le_bytes(w.try_into().unwrap());
            let want = if ty == ElemType::U32 {
                a[i].wrapping_add(b[i])
            } else {
                (f32::from_bits(a[i]) + f32::from_bits(b[i])).to_bits()
            };
            assert_eq!(got, want, "{name} element {i}");
        }
    }
}

#[test]
fn mmult_matches_textbook_order() {
    let mut rng = Rng(3);
    // (3, 9, 600): rows of c wider than the kernel's 256-column tile.
    // (2, 0, 600): no row of b at all, c wider than a tile: zeros.
    for (m, k, n) in [
        (7, 13, 5),
        (1, 1, 1),
        (4, 0, 3),
        (16, 33, 17),
        (3, 9, 600),
        (2, 0, 600),
    ] {
        let a: Vec<f32> = (0..m * k)
            .map(|_| (rng.next() % 2001) as f32 / 97.0 - 10.0)
            .collect();
        let b: Vec<f32> = (0..k * n)
            .map(|_| (rng.next() % 2001) as f32 / 89.0 - 11.0)
            .collect();
        let out = run(
            "mmult",
            vec![
                Arg::In(ElemType::F32, f32_bytes(&a)),
                Arg::In(ElemType::F32, f32_bytes(&b)),
                Arg::Out(ElemType::F32, m * n * 4),
                Arg::Scalar(ElemType::U32, m as u64),
                Arg::Scalar(ElemType::U32, k as u64),
                Arg::Scalar(ElemType::U32, n as u64),
            ],
        )
        .unwrap();
        let got = f32s(&out[0]);
        for i in 0..m {
            for j in 0..n {
                let mut acc = 0.0f32;
                for p in 0..k {
                    acc += a[i * k + p] * b[p * n + j];
                }
                assert_eq!(
                    got[i * n + j].to_bits(),
                    acc.to_bits(),
                    "c[{i}][{j}] of {m}x{k}x{n}"
                );
            }
        }
    }
}

#[test]
fn fir_wraps_in_32_bits() {
    let mut rng = Rng(4);
    // 1500 samples: several of the kernel's 256-sample tiles.
    for (n, t) in [
        (1500usize, 31usize),
        (600, 256),
        (10, 256),
        (5, 1),
        (9, 0),
        (700, 0),
    ] {
        let x: Vec<i16> = (0..n).map(|_| rng.next() as i16).collect();
        let taps: Vec<i32> = (0..t).map(|_| rng.next() as i32).collect();
        let out = run(
            "fir",
            vec![
                Arg::In(
                    ElemType::I16,
                    x.iter().flat_map(|v| v.to_le_bytes()).collect(),
                ),
                Arg::In(
                    ElemType::I32,
                    taps.iter().flat_map(|v| v.to_le_bytes()).collect(),
                ),
                Arg::Out(ElemType::I32, n * 4),
                Arg::Scalar(ElemType::U32, n as u64),
                Arg::Scalar(ElemType::U32, t as u64),
            ],
        )
        .unwrap();
        let want: Vec<i32> = (0..n)
            .map(|i| {
                (0..t).filter(|&j| j <= i).fold(0i32, |acc, j| {
                    acc.wrapping_add(taps[j].wrapping_mul(i32::from(x[i - j])))
                })
            })
            .collect();
        assert_eq!(i32s(&out[0]), want, "n={n} t={t}");
    }
}

#[test]
fn fir_refuses_too_many_taps() {
    let err = run(
        "fir",
        vec![
            Arg::In(ElemType::I16, vec![0; 2]),
            Arg::In(ElemType::I32, vec![0; 257 * 4]),
            Arg::Out(ElemType::I32, 4),
            Arg::Scalar(ElemType::U32, 1),
            Arg::Scalar(ElemType::U32, 257),
        ],
    )
    .unwrap_err();
    assert_eq!(err.status(), (Status::BadArgument, 4));
}

#[test]
fn sha256_matches_sha2_crate() {
    let mut rng = Rng(5);
    for n in [0usize, 1, 55, 56, 63, 64, 65, 119, 120, 1000, 65_537] {
        let data = rng.bytes(n);
        let out = run(
            "sha256",
            vec![
                Arg::In(ElemType::U8, data.clone()),
                Arg::Out(ElemType::U8, 32),
                Arg::Scalar(ElemType::U64, n as u64),
            ],
        )
        .unwrap();
        assert_eq!(out[0], common::sha256(&data), "n={n}");
    }
}

#[test]
fn sobel_matches_definition() {
    let mut rng = Rng(6);
    // 700 and 514 columns: rows longer than the kernel's 256-pixel tile.
    for (w, h) in [
        (17usize, 9usize),
        (3, 3),
        (2, 5),
        (64, 1),
        (700, 6),
        (514, 4),
    ] {
        let img = rng.bytes(w * h);
        let out = run(
            "sobel",
            vec![
                Arg::In(ElemType::U8, img.clone()),
                Arg::Out(ElemType::U8, w * h),
                Arg::Scalar(ElemType::U32, w as u64),
                Arg::Scalar(ElemType::U32, h as u64),
            ],
        )
        .unwrap();
        assert_eq!(out[0], common::sobel(&img, w, h), "{w}x{h}");
    }
}

#[test]
fn mismatched_lengths_are_bad_arguments() {
    let err = run(
        "vadd_u32",
        vec![
            Arg::In(ElemType::U32, vec![0; 8]),
            Arg::In(ElemType::U32, vec![0; 12]),
            Arg::Out(ElemType::U32, 8),
            Arg::Scalar(ElemType::U32, 2),
        ],
    )
    .unwrap_err();
    assert_eq!(err.status(), (Status::BadArgument, 1));
}

#[test]
fn empty_results_with_a_huge_other_dimension_return_at_once() {
    // Every buffer is empty, so the call passes its checks whatever m or h say; the
    // kernel must not then loop u32::MAX times on a queue thread (seconds of CPU a
    // guest could ask for again and again). A hang guard, not a performance figure.
    let t0 = std::time::Instant::now();
    let out = run(
        "mmult",
        vec![
            Arg::In(ElemType::F32, Vec::new()),
            Arg::In(ElemType::F32, Vec::new()),
            Arg::Out(ElemType::F32, 0),
            Arg::Scalar(ElemType::U32, u64::from(u32::MAX)),
            Arg::Scalar(ElemType::U32, 0),
            Arg::Scalar(ElemType::U32, 0),
        ],
    )
    .unwrap();
    assert!(out[0].is_empty());
    let out = run(
        "sobel",
        vec![
            Arg::In(ElemType::U8, Vec::new()),
            Arg::Out(ElemType::U8, 0),
            Arg::Scalar(ElemType::U32, 0),
            Arg::Scalar(ElemType::U32, u64::from(u32::MAX)),
        ],
    )
    .unwrap();
    assert!(out[0].is_empty());
    assert!(
        t0.elapsed() < std::time::Duration::from_secs(2),
        "{:?}",
        t0.elapsed()
    );
}
