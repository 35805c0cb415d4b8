//! The guest-side scenarios: a Debian kernel with `virtio_vfpga.ko` and the static
//! `vfpga` CLI boots under QEMU (TCG) against a real `vfpgad`; results are compared on
//! the host with references computed here. Each test boots its own VM.
//!
//! They are `#[ignore]`d so a plain `cargo test` does not boot VMs; `scripts/test-all.sh`
//! prepares the binaries and runs them with `--ignored`.
#![allow(clippy::unwrap_used, clippy::cast_possible_truncation)]

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;
use vfpga_engine::pl::model::{Faults, ModelBoard};
use vfpga_reference::{le, Rng};
use vfpga_vm_tests::{get, put, run, vm_lock, Daemon, Guest, GuestOpts, Qmp};

#[test]
#[ignore = "boots a VM; run by scripts/test-all.sh"]
fn every_kernel_bit_exact_from_the_guest() {
    let _vm = vm_lock();
    let share = tempfile::tempdir().unwrap();
    let want = kernel_inputs(share.path(), &mut Rng(101));
    let d = Daemon::start(&["vm0"], &[]);
    let out = run(&GuestOpts::new("kernels", &d.sockets, share.path()));
    assert_ok("kernels", &out);
    for (name, expected) in &want {
        let got = get(share.path(), &format!("out/{name}.bin"));
        assert!(
            &got == expected,
            "{name}: guest result differs from the reference ({} vs {} bytes)",
            got.len(),
            expected.len()
        );
    }
    // vadd_f32 from an .npy input to an .npy output: NumPy's layout, the same sums.
    let npy = get(share.path(), "out/vadd_f32.npy");
    let f32s = &want[1].1;
    assert_eq!(
        npy[..128],
        npy_f32_header(f32s.len() / 4),
        "the .npy header"
    );
    assert!(
        npy[128..] == f32s[..],
        "vadd_f32 through .npy files differs"
    );
    // Typed values printed: fir by hand (y[i] = 2·x[i] − x[i−1]), the digest in hex.
    let text = |f: &str| String::from_utf8_lossy(&get(share.path(), f)).into_owned();
    assert_eq!(text("out/fir.txt"), "y = [2, -5, 8, -65539]\n");
    let hex: String = want[4].1.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(text("out/sha256.txt"), format!("digest = {hex}\n"));
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
    let want = concurrent_inputs(s, &mut rng);
    let d = Daemon::start(&["vm0"], &[]);
    let out = run(&GuestOpts::new("concurrent", &d.sockets, s));
    assert_ok("concurrent", &out);
    check_concurrent(s, &want);
}

#[test]
#[ignore = "boots a VM; run by scripts/test-all.sh"]
fn a_16_mib_vadd_over_many_pages() {
    let _vm = vm_lock();
    let share = tempfile::tempdir().unwrap();
    let s = share.path();
    let want = big_inputs(s, &mut Rng(303));
    let d = Daemon::start(&["vm0"], &[]);
    let out = run(&GuestOpts {
        mem: 1536,
        ..GuestOpts::new("big", &d.sockets, s)
    });
    assert_ok("big", &out);
    check_big(s, &want, &out);
}

#[test]
#[ignore = "boots a VM; run by scripts/test-all.sh"]
fn unknown_kernels_and_bad_arguments_fail_clearly() {
    let _vm = vm_lock();
    let share = tempfile::tempdir().unwrap();
    let s = share.path();
    kernel_inputs(s, &mut Rng(404));
    errors_inputs(s);
    let d = Daemon::start(&["vm0"], &[]);
    let out = run(&GuestOpts::new("errors", &d.sockets, s));
    assert_ok("errors", &out);
    check_errors(s);
}

#[test]
#[ignore = "boots a VM; run by scripts/test-all.sh"]
fn pinned_pages_count_against_the_locked_memory_limit() {
    let _vm = vm_lock();
    let share = tempfile::tempdir().unwrap();
    let s = share.path();
    let want = kernel_inputs(s, &mut Rng(808));
    let d = Daemon::start(&["vm0"], &[]);
    let out = run(&GuestOpts::new("memlock", &d.sockets, s));
    assert_ok("memlock", &out);
    let err = String::from_utf8_lossy(&get(s, "out/memlock.err")).into_owned();
    assert!(
        err.contains("ulimit -l"),
        "the error says which limit: {err}"
    );
    assert!(
        get(s, "out/vadd.bin") == want[0].1,
        "under the limit it runs"
    );
}

#[test]
#[ignore = "boots a VM; run by scripts/test-all.sh"]
fn the_device_survives_a_suspend_cycle() {
    let _vm = vm_lock();
    let share = tempfile::tempdir().unwrap();
    let s = share.path();
    let want = kernel_inputs(s, &mut Rng(909));
    let d = Daemon::start(&["vm0"], &[]);
    let out = run(&GuestOpts::new("suspend", &d.sockets, s));
    assert_ok("suspend", &out);
    let said = |prefix: &str| -> Vec<String> {
        out.console
            .lines()
            .filter_map(|l| l.trim().strip_prefix(prefix).map(str::to_owned))
            .collect()
    };
    // The cycle really ran the devices' sleep callbacks (the PM core says so), and
    // the driver did not complain.
    let dmesg = said("suspend: dmesg: ").join("\n");
    assert!(
        dmesg.contains("PM: suspend entry") && dmesg.contains("PM: suspend exit"),
        "{dmesg}"
    );
    assert!(
        !dmesg.contains("virtio_vfpga"),
        "the driver logged: {dmesg}"
    );
    assert!(get(s, "out/before.bin") == want[0].1, "vadd before");
    // After the resume: the outputs' digests, against the references' (the share is
    // gone by then, see the scenario).
    let hex = |b: &[u8]| -> String { b.iter().map(|x| format!("{x:02x}")).collect() };
    let digest = |data: &[u8]| hex(&vfpga_reference::sha256(data));
    assert_eq!(
        said("suspend: after vadd_u32 "),
        [digest(&want[0].1)],
        "vadd after"
    );
    assert_eq!(
        said("suspend: after sha256 "),
        [digest(&want[4].1)],
        "sha256 after"
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
    qmp.execute("device_del", Some(json!({"id": "vfpgadev0"})))
        .unwrap();
    qmp.wait_event("DEVICE_DELETED", Duration::from_secs(60))
        .unwrap();
    d.restart();
    // QEMU reuses a stale connection for the first attempt; the second attaches.
    let add = json!({"driver": "vhost-user-test-device-pci", "id": "vfpgadev0", "chardev": "vfpga0", "virtio-id": 21, "num_vqs": 3, "vq_size": 1024, "config_size": 40});
    let mut attached = qmp.execute("device_add", Some(add.clone()));
    for _ in 0..10 {
        if attached.is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(1500));
        attached = qmp.execute("device_add", Some(add.clone()));
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

/// Two sim bitstreams for the library, both time-shared: their kernels are `base/...`
/// and `extra/...`, and the fabric (here the sim engine's catalogue) switches between
/// them as the two guests' runs ask.
const BASE: &str = r#"
[bitstream]
name = "base"
[[kernel]]
name = "vadd_u32"
sim = "vadd_u32"
args = [
  { name = "a", kind = "in", type = "u32", dims = ["n"] },
  { name = "b", kind = "in", type = "u32", dims = ["n"] },
  { name = "c", kind = "out", type = "u32", dims = ["n"] },
  { name = "n", kind = "scalar", type = "u32" },
]
"#;

const EXTRA: &str = r#"
[bitstream]
name = "extra"
[[kernel]]
name = "sha256"
sim = "sha256"
args = [
  { name = "data", kind = "in", type = "u8", dims = ["n"] },
  { name = "digest", kind = "out", type = "u8", count = 32 },
  { name = "n", kind = "scalar", type = "u64" },
]
"#;

#[test]
#[ignore = "boots two VMs; run by scripts/test-all.sh"]
fn two_guests_at_once_each_under_its_policy() {
    let _vm = vm_lock();
    let dir = tempfile::tempdir().unwrap();
    let lib = dir.path().join("lib");
    put(&lib, "base.toml", BASE.as_bytes());
    put(&lib, "extra.toml", EXTRA.as_bytes());
    let sock = |g: &str| dir.path().join(format!("{g}.sock"));
    let config = dir.path().join("vfpgad.toml");
    put(
        dir.path(),
        "vfpgad.toml",
        format!(
            "[library]\ndir = {:?}\nallow = [\"base\", \"extra\"]\nshare = [\"base\", \"extra\"]\nmin_slice_ms = 20\n\
             [[guest]]\nname = \"a\"\nsocket = {:?}\nkernels = [\"base/vadd_u32\"]\nmax_inflight = 4\nweight = 2\n\
             [[guest]]\nname = \"b\"\nsocket = {:?}\nrate_runs = 1000\n",
            lib,
            sock("a"),
            sock("b")
        )
        .as_bytes(),
    );
    let d = Daemon::start_with(
        &["--config".into(), config.display().to_string()],
        &[sock("a"), sock("b")],
    );
    let (sa, sb) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut rng = Rng(707);
    let wa = kernel_inputs(sa.path(), &mut rng);
    let wb = kernel_inputs(sb.path(), &mut rng);
    put(sa.path(), "role", b"a");
    put(sb.path(), "role", b"b");
    // Both guests boot and run at once.
    let ga = Guest::spawn(&GuestOpts::new("tenants", &[sock("a")], sa.path()));
    let gb = Guest::spawn(&GuestOpts::new("tenants", &[sock("b")], sb.path()));
    let (oa, ob) = (ga.finish(), gb.finish());
    assert_ok("tenants (guest a)", &oa);
    assert_ok("tenants (guest b)", &ob);
    let text = |s: &std::path::Path, f: &str| String::from_utf8_lossy(&get(s, f)).into_owned();
    // a: its kernels only, its limits, a refusal that says why.
    let kernels = text(sa.path(), "out/kernels.txt");
    assert!(kernels.contains("base/vadd_u32("), "{kernels}");
    for hidden in ["sha256", "mmult", "extra/", "vadd_f32"] {
        assert!(!kernels.contains(hidden), "a sees {hidden}:\n{kernels}");
    }
    let limits = text(sa.path(), "out/limits.txt");
    for want in ["at most 4", "weight 2"] {
        assert!(limits.contains(want), "a's limits lack {want:?}:\n{limits}");
    }
    let refused = text(sa.path(), "out/refused.txt");
    assert!(refused.contains("sha256"), "{refused}");
    assert!(get(sa.path(), "out/vadd.bin") == wa[0].1);
    // b: every kernel, the shared bitstream's under its qualified name; no loads.
    let kernels = text(sb.path(), "out/kernels.txt");
    for shown in ["base/vadd_u32(", "extra/sha256("] {
        assert!(kernels.contains(shown), "b lacks {shown}:\n{kernels}");
    }
    let limits = text(sb.path(), "out/limits.txt");
    assert!(limits.contains("1000 runs/s"), "{limits}");
    let refused = text(sb.path(), "out/refused.txt");
    assert!(
        refused.contains("load bitstream `extra`: not permitted"),
        "{refused}"
    );
    let sha = wb.iter().find(|(n, _)| *n == "sha256").unwrap();
    assert!(get(sb.path(), "out/sha.bin") == sha.1);
    drop(d);
}

/// The `segments N` a `VFPGA-BENCH` vadd line of the `regbuf` scenario reports for
/// `memory` (`registered` or not), and its time per run in ms.
fn bench_line(console: &str, memory: &str, registered: bool) -> (u32, f64) {
    let tag = if registered {
        format!("memory {memory}, registered, segments")
    } else {
        format!("memory {memory}, segments")
    };
    let line = console
        .lines()
        .find(|l| l.contains("VFPGA-BENCH vadd_u32 16.0 MiB") && l.contains(&tag))
        .unwrap_or_else(|| panic!("no bench line for {tag}; console:\n{console}"));
    let field = |after: &str, end: char| -> &str {
        let rest = &line[line.find(after).unwrap() + after.len()..];
        rest[..rest.find(end).unwrap_or(rest.len())].trim()
    };
    let segments = field("segments ", ')').parse().unwrap();
    let ms = field("threads, ", 'm').parse().unwrap();
    (segments, ms)
}

#[test]
#[ignore = "boots a VM; run by scripts/test-all.sh"]
fn registered_buffers_huge_pages_and_polling_from_the_guest() {
    let _vm = vm_lock();
    let share = tempfile::tempdir().unwrap();
    let s = share.path();
    // The raw-ioctl client, a static C program built here from the uapi header.
    let repo = &vfpga_vm_tests::env().repo;
    let cc = std::process::Command::new("cc")
        .args([
            "-O2", "-static", "-Wall", "-Wextra", "-Werror", "-pthread", "-I",
        ])
        .arg(repo.join("guest-driver/kmod/uapi"))
        .arg("-I")
        .arg(repo.join("proto/include"))
        .arg("-o")
        .arg(s.join("regbuf"))
        .arg(repo.join("tests/vm/guest/tools/regbuf.c"))
        .status()
        .unwrap();
    assert!(cc.success(), "cc regbuf.c: {cc}");
    // vfpgad watches its queues after work too (docs/benchmarks.md, adaptive polling).
    let config = s.join("vfpgad.toml");
    std::fs::write(&config, "[daemon]\npoll_us = 50\n").unwrap();
    let d = Daemon::start(&["vm0"], &["--config", config.to_str().unwrap()]);
    let mut o = GuestOpts::new("regbuf", &d.sockets, s);
    o.timeout = 600;
    let guest = Guest::spawn(&o);
    // vfpgad's CPU time over the guest's two idle seconds (ticks of /proc/PID/stat).
    let cpu = || -> (u64, std::time::Instant) {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", d.pid().unwrap())).unwrap();
        let f: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
        let ticks = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
        (ticks, std::time::Instant::now())
    };
    let wait = Duration::from_secs(500);
    let (mut before, mut after) = (None, None);
    if guest.wait_for("VFPGA-IDLE-START", wait) {
        before = Some(cpu());
        if guest.wait_for("VFPGA-IDLE ", wait) {
            after = Some(cpu());
        }
    }
    let out = guest.finish();
    let (Some(before), Some(after)) = (before, after) else {
        panic!("the guest never went idle; console:\n{}", out.console);
    };
    assert_ok("regbuf", &out);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let busy = (after.0 - before.0) as f64 / hz;
    let wall = (after.1 - before.1).as_secs_f64();
    eprintln!("vfpgad idle after polling: {busy:.2} s of CPU in {wall:.2} s");
    assert!(
        busy < 0.25 * wall,
        "an idle vfpgad used {busy:.2} s of CPU in {wall:.2} s"
    );
    let c = &out.console;
    for said in [
        "regbuf: vadd on registered buffers: bit-exact",
        "regbuf: ranges, mixed and changed buffers: bit-exact",
        "regbuf: another file's ids: No such file or directory (as it should)",
        "regbuf: a read-only registration as the output: Permission denied (as it should)",
        "regbuf: an offset that wraps around: Invalid argument (as it should)",
        "regbuf: 64 registrations, the 65th: ENOSPC (as it should)",
        "regbuf: every pinned page given back",
        "regbuf: outputs whose byte count wraps around: Invalid argument (as it should)",
        "regbuf: memory registered read-only, then written: the device reads the writes",
        "regbuf: an exited process's registration still counts for its user",
        "regbuf: unprivileged, ulimit -l 64: 1 MiB refused with ENOMEM",
        "regbuf: hugetlb: ",
        "regbuf: OK",
        "regbuf: scenario OK",
    ] {
        assert!(
            c.contains(said),
            "the guest did not say `{said}`; console:\n{c}"
        );
    }
    for l in c.lines().filter(|l| l.contains("VFPGA-")) {
        eprintln!("{}", l.trim());
    }
    for memory in ["pages", "thp", "hugetlb"] {
        for registered in [false, true] {
            let (segments, ms) = bench_line(c, memory, registered);
            eprintln!("guest vadd 16 MiB: memory {memory} registered {registered}: {ms} ms, {segments} descriptors");
        }
    }
    // 16 MiB vectors from the huge page pool: at most 8 descriptors per vector (2 MiB
    // each) plus the header and the response, registered or not. (On 4 KiB pages the
    // count depends on how contiguous the guest's free memory happens to be.)
    let (huge, _) = bench_line(c, "hugetlb", false);
    let (huge_reg, _) = bench_line(c, "hugetlb", true);
    assert!(huge <= 2 + 3 * 8, "on huge pages: {huge} descriptors");
    assert!(
        huge_reg <= 2 + 3 * 8,
        "registered huge pages: {huge_reg} descriptors"
    );
    // Polling on or off, null ops run; what they cost is for the benchmark to say.
    let polls = c.lines().filter(|l| l.contains("VFPGA-POLL ")).count();
    assert_eq!(
        polls, 5,
        "four null-op benches and a long one; console:\n{c}"
    );
    // Two idle seconds after polled requests: nothing spins (a spinning vCPU would
    // be half of the two vCPUs' jiffies).
    let idle = c
        .lines()
        .find_map(|l| l.trim().strip_prefix("VFPGA-IDLE "))
        .unwrap_or_else(|| panic!("no VFPGA-IDLE line; console:\n{c}"));
    let v: Vec<f64> = idle.split(' ').map(|x| x.parse().unwrap()).collect();
    eprintln!(
        "guest idle after polling: {} of {} jiffies busy",
        v[0], v[1]
    );
    assert!(
        v[0] < 0.25 * v[1],
        "an idle guest kept {} of {} jiffies busy",
        v[0],
        v[1]
    );
}
