//! Inputs the guest scenarios work on, written into the share, and the checks of what
//! they wrote back against references computed here.
#![allow(dead_code, clippy::unwrap_used, clippy::cast_possible_truncation)]

use std::path::Path;

use vfpga_reference::{self as reference, le, Rng};
use vfpga_vm_tests::{get, put, Outcome};

pub fn assert_ok(name: &str, out: &vfpga_vm_tests::Outcome) {
    assert_eq!(
        out.rc, 0,
        "scenario {name} failed (rc {}); console:\n{}",
        out.rc, out.console
    );
}

/// Inputs for every kernel, written under `share/in`, with their shapes in params.sh;
/// returns the expected outputs by file name.
pub fn kernel_inputs(share: &Path, rng: &mut Rng) -> Vec<(&'static str, Vec<u8>)> {
    let n = 50_000;
    let a: Vec<u32> = (0..n).map(|_| rng.next() as u32).collect();
    let b: Vec<u32> = (0..n).map(|_| rng.next() as u32).collect();
    put(share, "in/a_u32.bin", &le(&a, u32::to_le_bytes));
    put(share, "in/b_u32.bin", &le(&b, u32::to_le_bytes));
    let fa: Vec<f32> = (0..n).map(|_| (rng.next() as i32) as f32 * 1e-4).collect();
    let fb: Vec<f32> = (0..n).map(|_| (rng.next() as i32) as f32 * 3e-6).collect();
    put(share, "in/a_f32.bin", &le(&fa, f32::to_le_bytes));
    put(share, "in/b_f32.bin", &le(&fb, f32::to_le_bytes));
    let mut npy = npy_f32_header(n);
    npy.extend_from_slice(&le(&fa, f32::to_le_bytes));
    put(share, "in/a_f32.npy", &npy);
    let (m, k, nn) = (64usize, 48usize, 80usize);
    let ma: Vec<f32> = (0..m * k)
        .map(|_| (rng.next() % 4001) as f32 / 128.0 - 15.0)
        .collect();
    let mb: Vec<f32> = (0..k * nn)
        .map(|_| (rng.next() % 4001) as f32 / 64.0 - 31.0)
        .collect();
    put(share, "in/ma.bin", &le(&ma, f32::to_le_bytes));
    put(share, "in/mb.bin", &le(&mb, f32::to_le_bytes));
    let x: Vec<i16> = (0..30_000).map(|_| rng.next() as i16).collect();
    let taps: Vec<i32> = (0..64).map(|_| (rng.next() as i32) >> 12).collect();
    put(share, "in/x.bin", &le(&x, i16::to_le_bytes));
    put(share, "in/taps.bin", &le(&taps, i32::to_le_bytes));
    let data = rng.bytes(1_000_003);
    put(share, "in/data.bin", &data);
    let (w, h) = (320usize, 200usize);
    let img = rng.bytes(w * h);
    put(share, "in/img.bin", &img);
    put(
        share,
        "params.sh",
        format!("M={m}\nK={k}\nN={nn}\nW={w}\nH={h}\nROUNDS=5\nLM=64\n").as_bytes(),
    );
    vec![
        (
            "vadd_u32",
            le(&reference::vadd_u32(&a, &b), u32::to_le_bytes),
        ),
        (
            "vadd_f32",
            le(&reference::vadd_f32(&fa, &fb), f32::to_le_bytes),
        ),
        (
            "mmult",
            le(&reference::mmult(&ma, &mb, m, k, nn), f32::to_le_bytes),
        ),
        ("fir", le(&reference::fir(&x, &taps), i32::to_le_bytes)),
        ("sha256", reference::sha256(&data)),
        ("sobel", reference::sobel(&img, w, h)),
    ]
}

/// The header NumPy writes before `n` f32 elements (format 1.0), built here by hand
/// from the format's description: magic, version, header length, the dict padded with
/// spaces to a newline that ends byte 127 (for `n` up to 20 digits).
pub fn npy_f32_header(n: usize) -> Vec<u8> {
    let dict = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({n},), }}");
    let mut h = b"\x93NUMPY\x01\x00\x76\x00".to_vec();
    h.extend_from_slice(dict.as_bytes());
    h.resize(127, b' ');
    h.push(b'\n');
    h
}

/// Inputs of the `concurrent` scenario; the output each process must produce.
pub fn concurrent_inputs(s: &Path, rng: &mut Rng) -> [Vec<u8>; 4] {
    let n = 20_000;
    let a: Vec<u32> = (0..n).map(|_| rng.next() as u32).collect();
    let b: Vec<u32> = (0..n).map(|_| rng.next() as u32).collect();
    put(s, "in/p0_a.bin", &le(&a, u32::to_le_bytes));
    put(s, "in/p0_b.bin", &le(&b, u32::to_le_bytes));
    let data = rng.bytes(300_000);
    put(s, "in/p1_data.bin", &data);
    let (w, h) = (320usize, 200usize);
    let img = rng.bytes(w * h);
    put(s, "in/p2_img.bin", &img);
    let (m, k, nn) = (64usize, 48usize, 80usize);
    let ma: Vec<f32> = (0..m * k)
        .map(|_| (rng.next() % 999) as f32 / 10.0)
        .collect();
    let mb: Vec<f32> = (0..k * nn)
        .map(|_| (rng.next() % 999) as f32 / 20.0)
        .collect();
    put(s, "in/p3_a.bin", &le(&ma, f32::to_le_bytes));
    put(s, "in/p3_b.bin", &le(&mb, f32::to_le_bytes));
    [
        le(&reference::vadd_u32(&a, &b), u32::to_le_bytes),
        reference::sha256(&data),
        reference::sobel(&img, w, h),
        le(&reference::mmult(&ma, &mb, m, k, nn), f32::to_le_bytes),
    ]
}

/// Every round of every `concurrent` process wrote what it must.
pub fn check_concurrent(s: &Path, want: &[Vec<u8>; 4]) {
    for (p, expected) in want.iter().enumerate() {
        for round in 0..5 {
            let got = get(s, &format!("out/p{p}_{round}.bin"));
            assert!(&got == expected, "process {p} round {round}: wrong result");
        }
    }
}

/// Inputs of the `big` scenario (16 MiB vectors); the expected sum.
pub fn big_inputs(s: &Path, rng: &mut Rng) -> Vec<u8> {
    let n = 4 << 20; // 16 MiB per vector
    let a: Vec<u32> = (0..n).map(|_| rng.next() as u32).collect();
    let b: Vec<u32> = (0..n).map(|_| rng.next() as u32).collect();
    put(s, "in/big_a.bin", &le(&a, u32::to_le_bytes));
    put(s, "in/big_b.bin", &le(&b, u32::to_le_bytes));
    le(&reference::vadd_u32(&a, &b), u32::to_le_bytes)
}

/// The `big` scenario's sum is right; its timings go to the test's output.
pub fn check_big(s: &Path, want: &[u8], out: &Outcome) {
    assert!(get(s, "out/big_c.bin") == want, "16 MiB vadd differs");
    for l in out
        .console
        .lines()
        .filter(|l| l.starts_with("null op:") || l.starts_with("vadd_u32 16.0 MiB"))
    {
        eprintln!("guest timing: {l}");
    }
}

/// The extra inputs of the `errors` scenario (after [`kernel_inputs`]).
pub fn errors_inputs(s: &Path) {
    put(s, "in/short.bin", &[0u8; 40]);
    put(s, "in/taps300.bin", &vec![1u8; 300 * 4]);
}

/// The `errors` scenario's commands failed with the exit status and message each must.
pub fn check_errors(s: &Path) {
    let check = |name: &str, rc: &str, msg: &str| {
        let got_rc = String::from_utf8_lossy(&get(s, &format!("out/{name}.rc")))
            .trim()
            .to_owned();
        let err = String::from_utf8_lossy(&get(s, &format!("out/{name}.err"))).into_owned();
        assert_eq!(got_rc, rc, "{name}: exit status; stderr: {err}");
        assert!(err.contains(msg), "{name}: stderr {err:?} lacks {msg:?}");
    };
    check("unknown", "1", "no kernel `no_such_kernel` on this device; available: vadd_u32, vadd_f32, mmult, fir, sha256, sobel");
    check(
        "short",
        "2",
        "input `b` has 40 bytes but vadd_u32 needs 200000 bytes for it (n*4 bytes with n=50000)",
    );
    check(
        "toomanytaps",
        "1",
        "arguments do not match the kernel signature (argument 4 `t` of fir(",
    );
    check(
        "notascalar",
        "2",
        "`m` is not a scalar (--arg) argument of vadd_u32 (those are: n)",
    );
    check("badvalue", "2", "`-1` is out of range for u32");
    check(
        "nodevice",
        "1",
        "cannot open /dev/vfpga7: no such device node",
    );
}
