//! Every operation and every sim kernel through the real daemon over a real vhost-user
//! socket, with results checked against references computed here.
#![allow(clippy::unwrap_used, clippy::cast_possible_truncation)]

mod common;

use common::{open, run, Daemon, Rng};
use vfpga_proto::*;
use vfpga_reference::le;
use vfpga_vhu_frontend::{Arg, Layout};

const LAYOUTS: [Layout; 3] = [Layout::Direct, Layout::Indirect, Layout::Paged(4096)];

#[test]
fn config_space_announces_the_limits() {
    let d = Daemon::start(1, &["--request-queues", "3", "--max-sessions", "7"]);
    let mut fe = d.connect(0);
    let c = fe.config().unwrap();
    assert_eq!(c.magic, CONFIG_MAGIC);
    assert_eq!(c.abi_version, ABI_VERSION);
    assert_eq!(c.num_request_queues, 3);
    assert_eq!(c.max_sessions, 7);
    assert_eq!(c.max_args as usize, MAX_ARGS);
    assert!(c.capabilities & CAP_ENGINE_SIM != 0);
    assert!(c.capabilities & CAP_OUT_OF_ORDER != 0);
    assert_eq!(fe.queues.len(), 4, "control queue + 3 request queues");
}

#[test]
fn info_list_and_stats() {
    let d = Daemon::start(1, &[]);
    let mut fe = d.connect(0);
    let r = fe
        .call(
            0,
            Opcode::GetInfo,
            0,
            &[Arg::Out(ElemType::U8, 200)],
            Layout::Direct,
        )
        .unwrap();
    assert_eq!(r.status(), Some(Status::Ok));
    assert_eq!(r.resp.written, DeviceInfo::SIZE as u64);
    assert_eq!(r.used, (DeviceInfo::SIZE + Response::SIZE) as u32);
    let info = DeviceInfo::from_bytes(r.outputs[0][..DeviceInfo::SIZE].try_into().unwrap());
    assert_eq!(wire::name_str(&info.engine), Some("sim"));
    assert_eq!(wire::name_str(&info.device_name), Some("vm0"));
    assert_eq!(info.num_kernels, 6);

    // Page through the catalogue two records at a time.
    let mut names = Vec::new();
    let mut start = 0u64;
    loop {
        let r = fe
            .call(
                0,
                Opcode::ListKernels,
                0,
                &[
                    Arg::Scalar(ElemType::U32, start),
                    Arg::Out(ElemType::U8, 2 * KernelDesc::SIZE + 5),
                ],
                Layout::Indirect,
            )
            .unwrap();
        assert_eq!(r.status(), Some(Status::Ok));
        assert_eq!(r.resp.value, 6, "total kernel count");
        let n = r.resp.written as usize / KernelDesc::SIZE;
        for chunk in r.outputs[0][..n * KernelDesc::SIZE].chunks(KernelDesc::SIZE) {
            let sig =
                KernelSig::from_desc(&KernelDesc::from_bytes(chunk.try_into().unwrap())).unwrap();
            names.push(sig.render());
        }
        if n < 2 {
            break;
        }
        start += 2;
    }
    assert_eq!(names.len(), 6);
    assert!(
        names.contains(&"vadd_u32(in a: u32[n], in b: u32[n], out c: u32[n], n: u32)".to_string())
    );
    assert!(names.contains(&"sha256(in data: u8[n], out digest: u8[32], n: u64)".to_string()));
    assert!(names.contains(
        &"mmult(in a: f32[m*k], in b: f32[k*n], out c: f32[m*n], m: u32, k: u32, n: u32)"
            .to_string()
    ));

    let s = open(&mut fe, "sha256");
    let data = b"abc";
    let r = run(
        &mut fe,
        s,
        &[
            Arg::In(ElemType::U8, data),
            Arg::Out(ElemType::U8, 32),
            Arg::Scalar(ElemType::U64, 3),
        ],
        Layout::Direct,
    );
    assert_eq!(r.status(), Some(Status::Ok));
    let st = fe
        .call(
            1,
            Opcode::GetStats,
            s,
            &[Arg::Out(ElemType::U8, Stats::SIZE)],
            Layout::Direct,
        )
        .unwrap();
    let ss = Stats::from_bytes(st.outputs[0].as_slice().try_into().unwrap());
    assert_eq!((ss.runs, ss.bytes_in, ss.bytes_out), (1, 3, 32));
    let st = fe
        .call(
            0,
            Opcode::GetStats,
            0,
            &[Arg::Out(ElemType::U8, Stats::SIZE)],
            Layout::Direct,
        )
        .unwrap();
    let ds = Stats::from_bytes(st.outputs[0].as_slice().try_into().unwrap());
    assert_eq!(ds.open_sessions, 1);
    assert_eq!(ds.runs, 1);
    assert!(ds.requests >= 6);
    let nop = fe.call(1, Opcode::Nop, 0, &[], Layout::Direct).unwrap();
    assert_eq!(
        (nop.status(), nop.used),
        (Some(Status::Ok), Response::SIZE as u32)
    );
}

#[test]
fn sessions_open_close_and_limits() {
    let d = Daemon::start(1, &["--max-sessions", "2"]);
    let mut fe = d.connect(0);
    let bad = fe
        .call(
            0,
            Opcode::OpenSession,
            0,
            &[Arg::In(ElemType::U8, b"no_such")],
            Layout::Direct,
        )
        .unwrap();
    assert_eq!(bad.status(), Some(Status::UnknownKernel));
    let a = open(&mut fe, "fir");
    let b = open(&mut fe, "sobel");
    assert_ne!(a, b);
    let full = fe
        .call(
            0,
            Opcode::OpenSession,
            0,
            &[Arg::In(ElemType::U8, b"fir")],
            Layout::Direct,
        )
        .unwrap();
    assert_eq!(full.status(), Some(Status::Busy));
    let c = fe
        .call(0, Opcode::CloseSession, a, &[], Layout::Direct)
        .unwrap();
    assert_eq!(c.status(), Some(Status::Ok));
    let again = fe
        .call(0, Opcode::CloseSession, a, &[], Layout::Direct)
        .unwrap();
    assert_eq!(again.status(), Some(Status::BadSession));
    open(&mut fe, "fir");
}

#[test]
fn vadd_u32_and_f32_bit_exact() {
    let d = Daemon::start(1, &[]);
    let mut fe = d.connect(0);
    let mut rng = Rng(11);
    let n = 5000usize;
    let a: Vec<u32> = (0..n).map(|_| rng.next() as u32).collect();
    let b: Vec<u32> = (0..n).map(|_| rng.next() as u32).collect();
    let s = open(&mut fe, "vadd_u32");
    for layout in LAYOUTS {
        let (ab, bb) = (le(&a, u32::to_le_bytes), le(&b, u32::to_le_bytes));
        let r = run(
            &mut fe,
            s,
            &[
                Arg::In(ElemType::U32, &ab),
                Arg::In(ElemType::U32, &bb),
                Arg::Out(ElemType::U32, n * 4),
                Arg::Scalar(ElemType::U32, n as u64),
            ],
            layout,
        );
        assert_eq!(r.status(), Some(Status::Ok), "{layout:?}");
        let want = vfpga_reference::vadd_u32(&a, &b);
        assert_eq!(r.outputs[0], le(&want, u32::to_le_bytes), "{layout:?}");
        assert_eq!(r.resp.written, (n * 4) as u64);
    }
    let fa: Vec<f32> = (0..n).map(|_| (rng.next() as i32) as f32 * 1e-3).collect();
    let fb: Vec<f32> = (0..n).map(|_| (rng.next() as i32) as f32 * 3e-5).collect();
    let s = open(&mut fe, "vadd_f32");
    let r = run(
        &mut fe,
        s,
        &[
            Arg::In(ElemType::F32, &le(&fa, f32::to_le_bytes)),
            Arg::In(ElemType::F32, &le(&fb, f32::to_le_bytes)),
            Arg::Out(ElemType::F32, n * 4),
            Arg::Scalar(ElemType::U32, n as u64),
        ],
        Layout::Paged(4096),
    );
    let want = vfpga_reference::vadd_f32(&fa, &fb);
    assert_eq!(r.outputs[0], le(&want, f32::to_le_bytes));
}

#[test]
fn mmult_bit_exact() {
    let d = Daemon::start(1, &[]);
    let mut fe = d.connect(0);
    let mut rng = Rng(12);
    let (m, k, n) = (37usize, 53usize, 29usize);
    let a: Vec<f32> = (0..m * k)
        .map(|_| (rng.next() % 4001) as f32 / 77.0 - 26.0)
        .collect();
    let b: Vec<f32> = (0..k * n)
        .map(|_| (rng.next() % 4001) as f32 / 91.0 - 22.0)
        .collect();
    let s = open(&mut fe, "mmult");
    let r = run(
        &mut fe,
        s,
        &[
            Arg::In(ElemType::F32, &le(&a, f32::to_le_bytes)),
            Arg::In(ElemType::F32, &le(&b, f32::to_le_bytes)),
            Arg::Out(ElemType::F32, m * n * 4),
            Arg::Scalar(ElemType::U32, m as u64),
            Arg::Scalar(ElemType::U32, k as u64),
            Arg::Scalar(ElemType::U32, n as u64),
        ],
        Layout::Paged(4096),
    );
    assert_eq!(r.status(), Some(Status::Ok));
    let want = vfpga_reference::mmult(&a, &b, m, k, n);
    assert_eq!(r.outputs[0], le(&want, f32::to_le_bytes));
}

#[test]
fn fir_bit_exact() {
    let d = Daemon::start(1, &[]);
    let mut fe = d.connect(0);
    let mut rng = Rng(13);
    let (n, t) = (4099usize, 63usize);
    let x: Vec<i16> = (0..n).map(|_| rng.next() as i16).collect();
    let taps: Vec<i32> = (0..t).map(|_| (rng.next() as i32) >> 8).collect();
    let s = open(&mut fe, "fir");
    let r = run(
        &mut fe,
        s,
        &[
            Arg::In(ElemType::I16, &le(&x, i16::to_le_bytes)),
            Arg::In(ElemType::I32, &le(&taps, i32::to_le_bytes)),
            Arg::Out(ElemType::I32, n * 4),
            Arg::Scalar(ElemType::U32, n as u64),
            Arg::Scalar(ElemType::U32, t as u64),
        ],
        Layout::Paged(4096),
    );
    assert_eq!(r.status(), Some(Status::Ok));
    let want = vfpga_reference::fir(&x, &taps);
    assert_eq!(r.outputs[0], le(&want, i32::to_le_bytes));
}

#[test]
fn sha256_bit_exact() {
    let d = Daemon::start(1, &[]);
    let mut fe = d.connect(0);
    let mut rng = Rng(14);
    let s = open(&mut fe, "sha256");
    for n in [0usize, 55, 64, 1000, 300_001] {
        let data = rng.bytes(n);
        let r = run(
            &mut fe,
            s,
            &[
                Arg::In(ElemType::U8, &data),
                Arg::Out(ElemType::U8, 32),
                Arg::Scalar(ElemType::U64, n as u64),
            ],
            Layout::Paged(4096),
        );
        assert_eq!(r.status(), Some(Status::Ok));
        assert_eq!(r.outputs[0], vfpga_reference::sha256(&data), "n={n}");
    }
}

#[test]
fn sobel_bit_exact() {
    let d = Daemon::start(1, &[]);
    let mut fe = d.connect(0);
    let mut rng = Rng(15);
    let (w, h) = (131usize, 67usize);
    let img = rng.bytes(w * h);
    let s = open(&mut fe, "sobel");
    let r = run(
        &mut fe,
        s,
        &[
            Arg::In(ElemType::U8, &img),
            Arg::Out(ElemType::U8, w * h),
            Arg::Scalar(ElemType::U32, w as u64),
            Arg::Scalar(ElemType::U32, h as u64),
        ],
        Layout::Paged(4096),
    );
    assert_eq!(r.status(), Some(Status::Ok));
    let want = vfpga_reference::sobel(&img, w, h);
    assert_eq!(r.outputs[0], want);
}

#[test]
fn load_bitstream_from_the_allowlisted_library() {
    let lib = tempfile::tempdir().unwrap();
    std::fs::write(
        lib.path().join("hashes.toml"),
        r#"
        [bitstream]
        name = "hashes"
        [[kernel]]
        name = "digest"
        sim = "sha256"
        args = [
          { name = "data", kind = "in", type = "u8", dims = ["n"] },
          { name = "digest", kind = "out", type = "u8", count = 32 },
          { name = "n", kind = "scalar", type = "u64" },
        ]
        "#,
    )
    .unwrap();
    std::fs::write(
        lib.path().join("secret.toml"),
        "[bitstream]\nname = \"secret\"\n",
    )
    .unwrap();
    let libdir = lib.path().to_str().unwrap();
    let d = Daemon::start(
        1,
        &[
            "--library",
            libdir,
            "--allow",
            "hashes",
            "--allow",
            "absent",
        ],
    );
    let mut fe = d.connect(0);
    let load = |fe: &mut vfpga_vhu_frontend::VhuFrontend, name: &str| {
        fe.call(
            0,
            Opcode::LoadBitstream,
            0,
            &[Arg::In(ElemType::U8, name.as_bytes())],
            Layout::Direct,
        )
        .unwrap()
    };
    let old = open(&mut fe, "vadd_u32");
    assert_eq!(load(&mut fe, "secret").status(), Some(Status::Permission));
    assert_eq!(
        load(&mut fe, "../etc/passwd").status(),
        Some(Status::Permission),
        "names are not paths"
    );
    assert_eq!(
        load(&mut fe, "absent").status(),
        Some(Status::UnknownKernel)
    );
    let ok = load(&mut fe, "hashes");
    assert_eq!((ok.status(), ok.resp.value), (Some(Status::Ok), 1));
    let s = open(&mut fe, "digest");
    let r = run(
        &mut fe,
        s,
        &[
            Arg::In(ElemType::U8, b"hello"),
            Arg::Out(ElemType::U8, 32),
            Arg::Scalar(ElemType::U64, 5),
        ],
        Layout::Direct,
    );
    assert_eq!(r.outputs[0], vfpga_reference::sha256(b"hello"));
    // The session opened on the previous bitstream no longer runs.
    let a = [0u8; 4];
    let r = run(
        &mut fe,
        old,
        &[
            Arg::In(ElemType::U32, &a),
            Arg::In(ElemType::U32, &a),
            Arg::Out(ElemType::U32, 4),
            Arg::Scalar(ElemType::U32, 1),
        ],
        Layout::Direct,
    );
    assert_eq!(r.status(), Some(Status::UnknownKernel));

    let plain = Daemon::start(1, &[]);
    let mut fe = plain.connect(0);
    assert_eq!(load(&mut fe, "hashes").status(), Some(Status::Unsupported));
}
