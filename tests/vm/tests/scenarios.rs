//! The guest-side scenarios: a Debian kernel with `virtio_vfpga.ko` and the static
//! `vfpga` CLI boots under QEMU (TCG) against a real `vfpgad`; results are compared on
//! the host with references computed here. Each test boots its own VM.
//!
//! They are `#[ignore]`d so a plain `cargo test` does not boot VMs; `scripts/test-all.sh`
//! prepares the binaries and runs them with `--ignored`.
#![allow(clippy::unwrap_used, clippy::cast_possible_truncation)]

use std::path::Path;
use std::time::Duration;

use vfpga_engine::pl::model::{Faults, ModelBoard};
use vfpga_reference::{self as reference, le, Rng};
use vfpga_vm_tests::{get, put, run, vm_lock, Daemon, Guest, GuestOpts, Qmp};

fn assert_ok(name: &str, out: &vfpga_vm_tests::Outcome) {
    assert_eq!(
        out.rc, 0,
        "scenario {name} failed (rc {}); console:\n{}",
        out.rc, out.console
    );
}

/// Inputs for every kernel, written under `share/in`, with their shapes in params.sh;
/// returns the expected outputs by file name.
fn kernel_inputs(share: &Path, rng: &mut Rng) -> Vec<(&'static str, Vec<u8>)> {
    let n = 50_000;
    let a: Vec<u32> = (0..n).map(|_| rng.next() as u32).collect();
    let b: Vec<u32> = (0..n).map(|_| rng.next() as u32).collect();
    put(share, "in/a_u32.bin", &le(&a, u32::to_le_bytes));
    put(share, "in/b_u32.bin", &le(&b, u32::to_le_bytes));
    let fa: Vec<f32> = (0..n).map(|_| (rng.next() as i32) as f32 * 1e-4).collect();
    let fb: Vec<f32> = (0..n).map(|_| (rng.next() as i32) as f32 * 3e-6).collect();
    put(share, "in/a_f32.bin", &le(&fa, f32::to_le_bytes));
    put(share, "in/b_f32.bin", &le(&fb, f32::to_le_bytes));
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

#[test]
#[ignore = "boots a VM; run by scripts/test-all.sh"]
fn every_kernel_bit_exact_from_the_guest() {
    let _vm = vm_lock();
    let share = tempfile::tempdir().unwrap();
    let want = kernel_inputs(share.path(), &mut Rng(101));
    let d = Daemon::start(&["vm0"], &[]);
    let out = run(&GuestOpts::new("kernels", &d.sockets, share.path()));
    assert_ok("kernels", &out);
    for (name, expected) in want {
        let got = get(share.path(), &format!("out/{name}.bin"));
        assert!(
            got == expected,
            "{name}: guest result differs from the reference ({} vs {} bytes)",
            got.len(),
            expected.len()
        );
    }
    for sig in [
        "vadd_u32(in a: u32[n], in b: u32[n], out c: u32[n], n: u32)",
        "engine:      sim",
        "device:      /dev/vfpga0 (vm0)",
    ] {
        assert!(
            out.console.contains(sig),
            "console lacks {sig:?}:\n{}",
            out.console
        );
    }
}

#[test]
#[ignore = "boots a VM; run by scripts/test-all.sh"]
fn four_guest_processes_at_once() {
    let _vm = vm_lock();
    let share = tempfile::tempdir().unwrap();
    let s = share.path();
    let mut rng = Rng(202);
    kernel_inputs(s, &mut rng);
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
    let want = [
        le(&reference::vadd_u32(&a, &b), u32::to_le_bytes),
        reference::sha256(&data),
        reference::sobel(&img, w, h),
        le(&reference::mmult(&ma, &mb, m, k, nn), f32::to_le_bytes),
    ];
    let d = Daemon::start(&["vm0"], &[]);
    let out = run(&GuestOpts::new("concurrent", &d.sockets, s));
    assert_ok("concurrent", &out);
    for (p, expected) in want.iter().enumerate() {
        for round in 0..5 {
            let got = get(s, &format!("out/p{p}_{round}.bin"));
            assert!(&got == expected, "process {p} round {round}: wrong result");
        }
    }
}

#[test]
#[ignore = "boots a VM; run by scripts/test-all.sh"]
fn a_16_mib_vadd_over_many_pages() {
    let _vm = vm_lock();
    let share = tempfile::tempdir().unwrap();
    let s = share.path();
    let n = 4 << 20; // 16 MiB per vector
    let mut rng = Rng(303);
    let a: Vec<u32> = (0..n).map(|_| rng.next() as u32).collect();
    let b: Vec<u32> = (0..n).map(|_| rng.next() as u32).collect();
    put(s, "in/big_a.bin", &le(&a, u32::to_le_bytes));
    put(s, "in/big_b.bin", &le(&b, u32::to_le_bytes));
    let d = Daemon::start(&["vm0"], &[]);
    let out = run(&GuestOpts {
        mem: 1536,
        ..GuestOpts::new("big", &d.sockets, s)
    });
    assert_ok("big", &out);
    assert!(
        get(s, "out/big_c.bin") == le(&reference::vadd_u32(&a, &b), u32::to_le_bytes),
        "16 MiB vadd differs"
    );
    for l in out
        .console
        .lines()
        .filter(|l| l.starts_with("null op:") || l.starts_with("vadd_u32 16.0 MiB"))
    {
        eprintln!("guest timing: {l}");
    }
}

#[test]
#[ignore = "boots a VM; run by scripts/test-all.sh"]
fn unknown_kernels_and_bad_arguments_fail_clearly() {
    let _vm = vm_lock();
    let share = tempfile::tempdir().unwrap();
    let s = share.path();
    kernel_inputs(s, &mut Rng(404));
    put(s, "in/short.bin", &[0u8; 40]);
    put(s, "in/taps300.bin", &vec![1u8; 300 * 4]);
    let d = Daemon::start(&["vm0"], &[]);
    let out = run(&GuestOpts::new("errors", &d.sockets, s));
    assert_ok("errors", &out);
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

#[test]
#[ignore = "boots a VM; run by scripts/test-all.sh"]
fn a_guest_with_two_devices_uses_both() {
    let _vm = vm_lock();
    let share = tempfile::tempdir().unwrap();
    let s = share.path();
    let want = kernel_inputs(s, &mut Rng(505));
    let d = Daemon::start(&["vm0a", "vm0b"], &[]);
    let out = run(&GuestOpts::new("two-devices", &d.sockets, s));
    assert_ok("two-devices", &out);
    let info0 = String::from_utf8_lossy(&get(s, "out/dev0.info")).into_owned();
    let info1 = String::from_utf8_lossy(&get(s, "out/dev1.info")).into_owned();
    assert!(info0.contains("/dev/vfpga0 (vm0a)"), "{info0}");
    assert!(info1.contains("/dev/vfpga1 (vm0b)"), "{info1}");
    assert!(get(s, "out/dev0.bin") == want[0].1);
    assert!(get(s, "out/dev1.bin") == want[4].1);
}

#[test]
#[ignore = "boots a VM; run by scripts/test-all.sh"]
fn the_guest_survives_a_daemon_restart() {
    let _vm = vm_lock();
    let share = tempfile::tempdir().unwrap();
    let s = share.path();
    let want = kernel_inputs(s, &mut Rng(606));
    let lm = 64usize;
    put(
        s,
        "in/lm.bin",
        &le(&vec![1.0f32; lm * lm], f32::to_le_bytes),
    );
    // The pl engine on the register-level model, its mmult core holding the run: the
    // daemon dies with a kernel in flight, whatever the machine's speed.
    let board_dir = tempfile::tempdir().unwrap();
    let board = ModelBoard::start(board_dir.path(), &["vadd_u32", "mmult"], 600_000).unwrap();
    let config = board_dir.path().join("vfpgad.toml");
    put(
        board_dir.path(),
        "vfpgad.toml",
        format!(
            "[daemon]\nengine = \"pl\"\n[library]\ndir = {:?}\nallow = [\"base\"]\n[pl]\nroot = {:?}\nbitstream = \"base\"\n",
            board.library, board.root
        )
        .as_bytes(),
    );
    board.model.set_faults(Faults {
        hold: vec!["mmult".into()],
        ..Faults::default()
    });
    let mut d = Daemon::start(&["vm0"], &["--config", config.to_str().unwrap()]);
    let qmp_path = s.join("qmp.sock");
    let guest = Guest::spawn(&GuestOpts {
        qmp: Some(qmp_path.clone()),
        ..GuestOpts::new("restart", &d.sockets, s)
    });
    assert!(
        guest.wait_for("VFPGA-STEP restart", Duration::from_secs(120)),
        "guest never reached the restart step"
    );
    if let Err(seen) = board.model.wait_event("held", Duration::from_secs(120)) {
        panic!("the guest's mmult never reached the core: {seen:?}");
    }
    // The daemon dies with a kernel in flight.
    d.kill();
    board.model.set_faults(Faults::default());
    let mut qmp = Qmp::connect(&qmp_path, Duration::from_secs(10)).unwrap();
    qmp.execute(r#"{"execute":"device_del","arguments":{"id":"vfpgadev0"}}"#)
        .unwrap();
    qmp.wait_event("DEVICE_DELETED", Duration::from_secs(60))
        .unwrap();
    d.restart();
    // QEMU reuses a stale connection for the first attempt; the second attaches.
    let add = r#"{"execute":"device_add","arguments":{"driver":"vhost-user-test-device-pci","id":"vfpgadev0","chardev":"vfpga0","virtio-id":21,"num_vqs":3,"vq_size":1024,"config_size":40}}"#;
    let mut attached = qmp.execute(add);
    for _ in 0..10 {
        if attached.is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(1500));
        attached = qmp.execute(add);
    }
    attached.unwrap();
    put(s, "go", b"");
    let out = guest.finish();
    assert_ok("restart", &out);
    assert!(get(s, "out/before.bin") == want[0].1);
    assert!(get(s, "out/after.bin") == want[0].1);
    let inflight_rc = String::from_utf8_lossy(&get(s, "out/inflight.rc"))
        .trim()
        .to_owned();
    let inflight_err = String::from_utf8_lossy(&get(s, "out/inflight.err")).into_owned();
    assert_eq!(
        inflight_rc, "1",
        "the run in flight fails cleanly: {inflight_err}"
    );
    assert!(
        inflight_err.contains("the device was removed or reset"),
        "{inflight_err}"
    );
    assert!(d.stop(), "the restarted daemon stops cleanly");
}
