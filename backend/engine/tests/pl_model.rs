//! The pl engine's real sysfs, mmap, DMA and interrupt code against the register-level
//! model of HLS cores (`pl::model`): load, every kernel bit-exact against the
//! independent references, interrupt and polling completion, timeouts, wrong register
//! maps, failed loads and bad manifests.
#![allow(clippy::unwrap_used, clippy::cast_possible_truncation)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use vfpga_engine::pl::model::{CoreSpec, Faults, HlsModel, ModelSpec};
use vfpga_engine::pl::{PlConfig, PlEngine};
use vfpga_engine::{Call, Engine, EngineError, Kernel, Library, SegStream, SgBuf};
use vfpga_proto::{ArgEntry, ArgKind, ElemType, Status, MAX_ARGS};
use vfpga_reference::{self as common, le, Rng};

const MANIFEST: &str = r#"
[bitstream]
name = "base"
description = "vector, matrix, filter, hash and image cores"
file = "base.bit.bin"
dma = ["udmabuf0", "udmabuf1", "udmabuf2", "udmabuf3"]

[[kernel]]
name = "vadd_u32"
core = { uio = "vadd_u32", irq = true, timeout_ms = 2000 }
args = [
  { name = "a", kind = "in", type = "u32", dims = ["n"], reg = 0x10 },
  { name = "b", kind = "in", type = "u32", dims = ["n"], reg = 0x1c },
  { name = "c", kind = "out", type = "u32", dims = ["n"], reg = 0x28 },
  { name = "n", kind = "scalar", type = "u32", reg = 0x34 },
]

[[kernel]]
name = "vadd_f32"
core = { uio = "vadd_f32", irq = false, timeout_ms = 2000 }
args = [
  { name = "a", kind = "in", type = "f32", dims = ["n"], reg = 0x10 },
  { name = "b", kind = "in", type = "f32", dims = ["n"], reg = 0x1c },
  { name = "c", kind = "out", type = "f32", dims = ["n"], reg = 0x28 },
  { name = "n", kind = "scalar", type = "u32", reg = 0x34 },
]

[[kernel]]
name = "mmult"
core = { uio = "mmult" }
args = [
  { name = "a", kind = "in", type = "f32", dims = ["m", "k"], reg = 0x10 },
  { name = "b", kind = "in", type = "f32", dims = ["k", "n"], reg = 0x1c },
  { name = "c", kind = "out", type = "f32", dims = ["m", "n"], reg = 0x28 },
  { name = "m", kind = "scalar", type = "u32", reg = 0x34 },
  { name = "k", kind = "scalar", type = "u32", reg = 0x3c },
  { name = "n", kind = "scalar", type = "u32", reg = 0x44 },
]

[[kernel]]
name = "fir"
core = { uio = "fir" }
args = [
  { name = "x", kind = "in", type = "i16", dims = ["n"], reg = 0x10 },
  { name = "taps", kind = "in", type = "i32", dims = ["t"], reg = 0x1c },
  { name = "y", kind = "out", type = "i32", dims = ["n"], reg = 0x28 },
  { name = "n", kind = "scalar", type = "u32", reg = 0x34 },
  { name = "t", kind = "scalar", type = "u32", reg = 0x3c },
]

[[kernel]]
name = "sha256"
core = { uio = "sha256" }
args = [
  { name = "data", kind = "in", type = "u8", dims = ["n"], reg = 0x10 },
  { name = "digest", kind = "out", type = "u8", count = 32, reg = 0x1c },
  { name = "n", kind = "scalar", type = "u64", reg = 0x28 },
]

[[kernel]]
name = "sobel"
core = { uio = "sobel" }
args = [
  { name = "src", kind = "in", type = "u8", dims = ["w", "h"], reg = 0x10 },
  { name = "dst", kind = "out", type = "u8", dims = ["w", "h"], reg = 0x1c },
  { name = "w", kind = "scalar", type = "u32", reg = 0x28 },
  { name = "h", kind = "scalar", type = "u32", reg = 0x30 },
]
"#;

/// A model board, a library holding `manifests` (name → text) with a dummy bitstream,
/// and a pl engine over them.
struct Bench {
    model: HlsModel,
    engine: PlEngine,
    _dir: tempfile::TempDir,
}

fn spec() -> ModelSpec {
    let core = |uio: &str, imp: &str| CoreSpec {
        uio: uio.into(),
        implements: imp.into(),
    };
    ModelSpec {
        cores: vec![
            core("vadd_u32", "vadd_u32"),
            core("vadd_f32", "vadd_f32"),
            core("mmult", "mmult_f32"),
            core("fir", "fir_i16"),
            core("sha256", "sha256"),
            core("sobel", "sobel_u8"),
        ],
        dma: (0..4).map(|i| (format!("udmabuf{i}"), 1 << 20)).collect(),
    }
}

fn library(dir: &Path, manifests: &[(&str, &str)]) -> Library {
    let lib = dir.join("library");
    std::fs::create_dir_all(&lib).unwrap();
    std::fs::write(
        lib.join("base.bit.bin"),
        b"\x00\x00\x00\xbb\x11\x22\x00\x44bitstream",
    )
    .unwrap();
    std::fs::write(lib.join("base.dtbo"), b"\xd0\x0d\xfe\xed overlay").unwrap();
    for (name, text) in manifests {
        std::fs::write(lib.join(format!("{name}.toml")), text).unwrap();
    }
    Library {
        dir: lib,
        allow: manifests.iter().map(|(n, _)| (*n).to_owned()).collect(),
    }
}

fn bench(manifests: &[(&str, &str)], initial: Option<&str>) -> Result<Bench, EngineError> {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let model = HlsModel::start(&root, &spec()).unwrap();
    let engine = PlEngine::new(PlConfig {
        root,
        library: library(dir.path(), manifests),
        bitstream: initial.map(str::to_owned),
        fpga: "fpga0".into(),
        load_timeout: Duration::from_secs(5),
    })?;
    Ok(Bench {
        model,
        engine,
        _dir: dir,
    })
}

enum Arg {
    Scalar(ElemType, u64),
    In(ElemType, Vec<u8>),
    Out(ElemType, usize),
}

/// Runs `kernel` of the current catalogue on the engine with buffers cut into 4 KiB
/// "guest pages".
fn run(engine: &PlEngine, kernel: &str, args: Vec<Arg>) -> Result<Vec<Vec<u8>>, EngineError> {
    let catalog = engine.catalog();
    run_on(engine, catalog.find(kernel).unwrap(), args)
}

/// Runs `k` (of whichever catalogue) on the engine.
fn run_on(engine: &PlEngine, k: &Kernel, args: Vec<Arg>) -> Result<Vec<Vec<u8>>, EngineError> {
    let mut mems: Vec<Vec<u8>> = args
        .iter()
        .map(|a| match a {
            Arg::Scalar(..) => Vec::new(),
            Arg::In(_, v) => v.clone(),
            Arg::Out(_, n) => vec![0xAA; *n],
        })
        .collect();
    let streams: Vec<SegStream> = mems
        .iter_mut()
        .map(|m| {
            let mut s = SegStream::with_capacity(m.len() / 4096 + 1);
            for c in m.chunks_mut(4096) {
                assert!(s.push(c.as_mut_ptr(), c.len()));
            }
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
    k.sig.check_call(&table).unwrap();
    let mut bufs: [Option<SgBuf<'_>>; MAX_ARGS] = [None; MAX_ARGS];
    for (i, a) in table.iter().enumerate() {
        if a.kind != ArgKind::Scalar.raw() {
            // SAFETY: `mems` outlives the call; nothing else touches it meanwhile.
            bufs[i] = unsafe { SgBuf::new(streams[i].segs(), 0, a.value as usize) };
        }
    }
    engine.run(k, &Call::new(&table, &bufs))?;
    drop(streams);
    Ok(args
        .iter()
        .zip(mems)
        .filter(|(a, _)| matches!(a, Arg::Out(..)))
        .map(|(_, m)| m)
        .collect())
}

fn vadd_u32(engine: &PlEngine, n: usize, rng: &mut Rng) -> Result<(Vec<u8>, Vec<u8>), EngineError> {
    let a: Vec<u32> = (0..n).map(|_| rng.next() as u32).collect();
    let b: Vec<u32> = (0..n).map(|_| rng.next() as u32).collect();
    let out = run(
        engine,
        "vadd_u32",
        vec![
            Arg::In(ElemType::U32, le(&a, u32::to_le_bytes)),
            Arg::In(ElemType::U32, le(&b, u32::to_le_bytes)),
            Arg::Out(ElemType::U32, n * 4),
            Arg::Scalar(ElemType::U32, n as u64),
        ],
    )?;
    Ok((
        out[0].clone(),
        le(&common::vadd_u32(&a, &b), u32::to_le_bytes),
    ))
}

#[test]
fn loads_and_runs_every_kernel_bit_exact() {
    let b = bench(&[("base", MANIFEST)], None).unwrap();
    assert!(b.engine.catalog().kernels.is_empty(), "nothing loaded yet");
    let cat = b.engine.load_bitstream("base").unwrap();
    assert_eq!(cat.kernels.len(), 6);
    let root = b.model.root();
    assert!(
        b.model
            .events()
            .contains(&"fpga0: load vfpga/base.bit.bin: operating".to_owned()),
        "{:?}",
        b.model.events()
    );
    assert_eq!(
        std::fs::read_to_string(root.join("sys/class/fpga_manager/fpga0/flags")).unwrap(),
        "0"
    );
    assert!(root.join("lib/firmware/vfpga/base.bit.bin").is_file());
    assert!(
        !root.join("lib/firmware/base.bit.bin").exists(),
        "not among the system's firmware"
    );
    let e = &b.engine;
    let mut rng = Rng(7);

    let (got, want) = vadd_u32(e, 10_000, &mut rng).unwrap();
    assert_eq!(got, want, "vadd_u32 (interrupt)");

    let fa: Vec<f32> = (0..5000)
        .map(|_| (rng.next() as i32) as f32 * 1e-3)
        .collect();
    let fb: Vec<f32> = (0..5000)
        .map(|_| (rng.next() as i32) as f32 * 7e-5)
        .collect();
    let out = run(
        e,
        "vadd_f32",
        vec![
            Arg::In(ElemType::F32, le(&fa, f32::to_le_bytes)),
            Arg::In(ElemType::F32, le(&fb, f32::to_le_bytes)),
            Arg::Out(ElemType::F32, 20_000),
            Arg::Scalar(ElemType::U32, 5000),
        ],
    )
    .unwrap();
    assert_eq!(
        out[0],
        le(&common::vadd_f32(&fa, &fb), f32::to_le_bytes),
        "vadd_f32 (polling)"
    );

    let (m, k, n) = (23, 31, 17);
    let ma: Vec<f32> = (0..m * k)
        .map(|_| (rng.next() % 2001) as f32 / 64.0 - 15.0)
        .collect();
    let mb: Vec<f32> = (0..k * n)
        .map(|_| (rng.next() % 2001) as f32 / 32.0 - 30.0)
        .collect();
    let out = run(
        e,
        "mmult",
        vec![
            Arg::In(ElemType::F32, le(&ma, f32::to_le_bytes)),
            Arg::In(ElemType::F32, le(&mb, f32::to_le_bytes)),
            Arg::Out(ElemType::F32, m * n * 4),
            Arg::Scalar(ElemType::U32, m as u64),
            Arg::Scalar(ElemType::U32, k as u64),
            Arg::Scalar(ElemType::U32, n as u64),
        ],
    )
    .unwrap();
    assert_eq!(
        out[0],
        le(&common::mmult(&ma, &mb, m, k, n), f32::to_le_bytes),
        "mmult"
    );

    let x: Vec<i16> = (0..3000).map(|_| rng.next() as i16).collect();
    let taps: Vec<i32> = (0..40).map(|_| (rng.next() as i32) >> 10).collect();
    let out = run(
        e,
        "fir",
        vec![
            Arg::In(ElemType::I16, le(&x, i16::to_le_bytes)),
            Arg::In(ElemType::I32, le(&taps, i32::to_le_bytes)),
            Arg::Out(ElemType::I32, 12_000),
            Arg::Scalar(ElemType::U32, 3000),
            Arg::Scalar(ElemType::U32, 40),
        ],
    )
    .unwrap();
    assert_eq!(out[0], le(&common::fir(&x, &taps), i32::to_le_bytes), "fir");

    let data = rng.bytes(100_003);
    let out = run(
        e,
        "sha256",
        vec![
            Arg::In(ElemType::U8, data.clone()),
            Arg::Out(ElemType::U8, 32),
            Arg::Scalar(ElemType::U64, 100_003),
        ],
    )
    .unwrap();
    assert_eq!(
        out[0],
        common::sha256(&data),
        "sha256 (64-bit scalar in two registers)"
    );

    let (w, h) = (97, 45);
    let img = rng.bytes(w * h);
    let out = run(
        e,
        "sobel",
        vec![
            Arg::In(ElemType::U8, img.clone()),
            Arg::Out(ElemType::U8, w * h),
            Arg::Scalar(ElemType::U32, w as u64),
            Arg::Scalar(ElemType::U32, h as u64),
        ],
    )
    .unwrap();
    assert_eq!(out[0], common::sobel(&img, w, h), "sobel");
    assert_eq!(b.model.runs(), 6);
    let events = b.model.events();
    assert!(
        events.iter().all(|e| e.starts_with("fpga0: load ")),
        "{events:?}"
    );
}

#[test]
fn a_hung_core_times_out_and_a_reload_recovers() {
    let fast = MANIFEST.replace(
        "timeout_ms = 2000 }\nargs = [\n  { name = \"a\", kind = \"in\", type = \"u32\"",
        "timeout_ms = 200 }\nargs = [\n  { name = \"a\", kind = \"in\", type = \"u32\"",
    );
    let b = bench(&[("base", &fast)], Some("base")).unwrap();
    let mut rng = Rng(8);
    b.model.set_faults(Faults {
        hang: true,
        ..Faults::default()
    });
    let start = Instant::now();
    let r = vadd_u32(&b.engine, 100, &mut rng);
    let err = r.map(|_| b.model.events()).unwrap_err();
    assert!(matches!(err, EngineError::Timeout(_)), "{err}");
    assert_eq!(err.status().0, Status::Timeout);
    assert!(
        start.elapsed() < Duration::from_secs(30),
        "timed out, did not hang"
    );
    // The core started and hangs (the model may see the start after the engine gave
    // up): only then may the fault go, or the late start would simply compute.
    b.model.wait_event("hang", Duration::from_secs(60)).unwrap();
    b.model.set_faults(Faults::default());
    let err = vadd_u32(&b.engine, 100, &mut rng).unwrap_err().to_string();
    assert!(err.contains("not idle"), "{err}");
    b.engine.load_bitstream("base").unwrap();
    let (got, want) = vadd_u32(&b.engine, 100, &mut rng).unwrap();
    assert_eq!(got, want);
}

/// Waits up to `timeout` for the model to have seen `n` events containing `what`.
fn seen(model: &HlsModel, what: &str, n: usize, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if model.events().iter().filter(|e| e.contains(what)).count() >= n {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn mmult_args(rng: &mut Rng, m: usize, k: usize, n: usize) -> (Vec<Arg>, Vec<u8>) {
    let ma: Vec<f32> = (0..m * k)
        .map(|_| (rng.next() % 200) as f32 / 8.0)
        .collect();
    let mb: Vec<f32> = (0..k * n)
        .map(|_| (rng.next() % 200) as f32 / 4.0)
        .collect();
    let want = le(&common::mmult(&ma, &mb, m, k, n), f32::to_le_bytes);
    let args = vec![
        Arg::In(ElemType::F32, le(&ma, f32::to_le_bytes)),
        Arg::In(ElemType::F32, le(&mb, f32::to_le_bytes)),
        Arg::Out(ElemType::F32, m * n * 4),
        Arg::Scalar(ElemType::U32, m as u64),
        Arg::Scalar(ElemType::U32, k as u64),
        Arg::Scalar(ElemType::U32, n as u64),
    ];
    (args, want)
}

#[test]
fn a_load_waits_for_the_runs_in_flight_and_old_kernels_are_gone_after_it() {
    let patient = MANIFEST.replace(
        "core = { uio = \"mmult\" }",
        "core = { uio = \"mmult\", timeout_ms = 600000 }",
    );
    let b = Arc::new(bench(&[("base", &patient)], Some("base")).unwrap());
    let old = b.engine.catalog();
    assert!(seen(&b.model, "fpga0: load", 1, Duration::ZERO));
    // An mmult in flight, held on its core for as long as this test needs.
    b.model.set_faults(Faults {
        hold: vec!["mmult".into()],
        ..Faults::default()
    });
    let mut rng = Rng(21);
    let (args, want) = mmult_args(&mut rng, 24, 40, 16);
    let held = {
        let b = b.clone();
        std::thread::spawn(move || run(&b.engine, "mmult", args))
    };
    b.model.wait_event("held", Duration::from_secs(60)).unwrap();
    // A load asked for now must leave the fabric alone while the mmult runs (the model
    // would lose the run: hardware resets its cores when it is programmed).
    let load = {
        let b = b.clone();
        std::thread::spawn(move || b.engine.load_bitstream("base"))
    };
    // Two seconds for the load to reach the fabric if it were going to: a correct engine
    // never does, so this verdict cannot depend on the machine's speed.
    assert!(
        !seen(&b.model, "fpga0: load", 2, Duration::from_secs(2)),
        "the fabric was programmed under a running core: {:?}",
        b.model.events()
    );
    // A run of the old catalogue asked for while the load waits is held back with it,
    // then finds its kernel gone.
    let late = {
        let (b, k) = (b.clone(), old.find("vadd_u32").unwrap().clone());
        std::thread::spawn(move || {
            let (a, c) = (vec![1u8; 64], vec![2u8; 64]);
            run_on(
                &b.engine,
                &k,
                vec![
                    Arg::In(ElemType::U32, a),
                    Arg::In(ElemType::U32, c),
                    Arg::Out(ElemType::U32, 64),
                    Arg::Scalar(ElemType::U32, 16),
                ],
            )
        })
    };
    b.model.set_faults(Faults::default());
    let out = held.join().unwrap().expect("the run in flight ends well");
    assert_eq!(out[0], want, "the run in flight is bit-exact");
    let new = load
        .join()
        .unwrap()
        .expect("the load goes through after it");
    assert_ne!(new.generation, old.generation);
    let err = late.join().unwrap().unwrap_err();
    assert!(matches!(err, EngineError::KernelGone(_)), "{err}");
    assert_eq!(err.status().0, Status::UnknownKernel);
    // The new catalogue runs; nothing was lost on the way.
    let (got, want) = vadd_u32(&b.engine, 300, &mut rng).unwrap();
    assert_eq!(got, want);
    let events = b.model.events();
    assert!(!events.iter().any(|e| e.contains("lost")), "{events:?}");
    assert_eq!(
        events.iter().filter(|e| e.contains("fpga0: load")).count(),
        2,
        "{events:?}"
    );
}

#[test]
fn the_model_loses_a_run_the_fabric_is_programmed_under() {
    // The model's side of the test above: programming under a running core is seen
    // and costs the run, so that test can fail.
    let fast = MANIFEST.replace(
        "core = { uio = \"mmult\" }",
        "core = { uio = \"mmult\", timeout_ms = 300 }",
    );
    let b = bench(&[("base", &fast)], Some("base")).unwrap();
    b.model.set_faults(Faults {
        hold: vec!["mmult".into()],
        ..Faults::default()
    });
    let (args, _) = mmult_args(&mut Rng(22), 4, 4, 4);
    let err = std::thread::scope(|s| {
        let run = s.spawn(|| run(&b.engine, "mmult", args));
        b.model.wait_event("held", Duration::from_secs(60)).unwrap();
        // Programmed behind the engine's back, as a load that did not wait would do.
        let fw = b.model.root().join("sys/class/fpga_manager/fpga0/firmware");
        std::fs::write(fw, "vfpga/base.bit.bin").unwrap();
        let state = b.model.root().join("sys/class/fpga_manager/fpga0/state");
        while std::fs::read_to_string(&state).unwrap().trim().is_empty() {}
        b.model.set_faults(Faults::default());
        run.join().unwrap().unwrap_err()
    });
    assert!(matches!(err, EngineError::Timeout(_)), "{err}");
    b.model.wait_event("lost", Duration::from_secs(60)).unwrap();
}

#[test]
fn wrong_register_map_is_noticed() {
    // b's address registers one word too early: the model sees an address that is not
    // in any DMA buffer and never finishes; the engine must time out, not hang.
    let wrong = MANIFEST
        .replace(
            "dims = [\"n\"], reg = 0x1c }",
            "dims = [\"n\"], reg = 0x18 }",
        )
        .replace(
            "irq = true, timeout_ms = 2000",
            "irq = true, timeout_ms = 300",
        );
    let b = bench(&[("base", &wrong)], Some("base")).unwrap();
    let err = vadd_u32(&b.engine, 64, &mut Rng(9)).unwrap_err();
    assert!(matches!(err, EngineError::Timeout(_)), "{err}");
    let e = b
        .model
        .wait_event("register write error", Duration::from_secs(60))
        .unwrap();
    assert!(e.contains("argument `b`"), "{e}");
}

#[test]
fn corrupted_results_are_caught_by_the_reference() {
    let b = bench(&[("base", MANIFEST)], Some("base")).unwrap();
    b.model.set_faults(Faults {
        corrupt: true,
        ..Faults::default()
    });
    let (got, want) = vadd_u32(&b.engine, 256, &mut Rng(10)).unwrap();
    assert_ne!(got, want, "the comparison can fail");
}

#[test]
fn failed_loads_report_the_state() {
    let b = bench(&[("base", MANIFEST)], None).unwrap();
    b.model.set_faults(Faults {
        fpga_state: Some("write error".into()),
        ..Faults::default()
    });
    let err = b.engine.load_bitstream("base").unwrap_err().to_string();
    assert!(err.contains("state \"write error\""), "{err}");
    assert!(b.engine.catalog().kernels.is_empty(), "nothing half-loaded");
}

#[test]
fn overlays_load_through_configfs() {
    let overlay = MANIFEST.replace("file = \"base.bit.bin\"", "overlay = \"base.dtbo\"");
    let b = bench(
        &[("ovl", &overlay.replace("name = \"base\"", "name = \"ovl\""))],
        None,
    )
    .unwrap();
    b.engine.load_bitstream("ovl").unwrap();
    let dir = b
        .model
        .root()
        .join("sys/kernel/config/device-tree/overlays/vfpga-ovl");
    assert_eq!(
        std::fs::read_to_string(dir.join("path")).unwrap(),
        "vfpga/base.dtbo"
    );
    let (got, want) = vadd_u32(&b.engine, 32, &mut Rng(11)).unwrap();
    assert_eq!(got, want);
}

#[test]
fn bad_manifests_and_oversized_buffers_are_refused() {
    let cases = [
        (format!("{MANIFEST}\n[[kernel]]\nname = \"soft\"\nsim = \"sha256\"\nargs = [\n  {{ name = \"d\", kind = \"in\", type = \"u8\", dims = [\"n\"] }},\n  {{ name = \"o\", kind = \"out\", type = \"u8\", count = 32 }},\n  {{ name = \"n\", kind = \"scalar\", type = \"u64\" }},\n]\n"), "has no core"),
        (MANIFEST.replace("core = { uio = \"mmult\" }\n", ""), "reg without a core"),
        (MANIFEST.replace("core = { uio = \"fir\" }", "core = { uio = \"no-such-core\" }"), "no UIO device named \"no-such-core\""),
        (MANIFEST.replace("dma = [\"udmabuf0\", \"udmabuf1\", \"udmabuf2\", \"udmabuf3\"]", "dma = [\"udmabuf9\"]"), "udmabuf9"),
        (MANIFEST.replace("file = \"base.bit.bin\"", "file = \"../etc/passwd\""), "not a path"),
        (MANIFEST.replace(", reg = 0x34 },\n]\n\n[[kernel]]\nname = \"vadd_f32\"", " },\n]\n\n[[kernel]]\nname = \"vadd_f32\""), "needs its reg offset"),
        (MANIFEST.replace("file = \"base.bit.bin\"\n", ""), "neither file"),
        // reg + 4 would wrap on a 32-bit board: refused, not written out of the window.
        (MANIFEST.replacen("reg = 0x34", "reg = 0xfffffffc", 1), "at most 0xffff8"),
        (MANIFEST.replacen("reg = 0x34", "reg = 0x36", 1), "word-aligned"),
    ];
    for (text, want) in cases {
        let b = bench(&[("base", &text)], None).unwrap();
        let err = b.engine.load_bitstream("base").unwrap_err().to_string();
        assert!(err.contains(want), "{err:?} lacks {want:?}");
    }
    let b = bench(&[("base", MANIFEST)], Some("base")).unwrap();
    let err = vadd_u32(&b.engine, 300_000, &mut Rng(12))
        .unwrap_err()
        .to_string();
    assert!(err.contains("does not fit any DMA buffer"), "{err}");
}
