//! Guests that cannot load `virtio_vfpga.ko`: a Debian guest under QEMU (TCG) whose
//! image has no vfpga module reaches vfpgad over vsock, through a real userspace vsock
//! device (rust-vmm's vhost-device-vsock, as Firecracker and Cloud Hypervisor shape
//! theirs: a unix socket per port on the host), with the same CLI and the same results.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use vfpga_reference::Rng;
use vfpga_vm_tests::{get, run, stream_guest, vm_lock, Daemon, GuestOpts, VsockDevice};

#[test]
#[ignore = "boots a VM; run by scripts/test-all.sh"]
fn a_guest_without_the_module_runs_every_kernel_over_vsock() {
    let _vm = vm_lock();
    let share = tempfile::tempdir().unwrap();
    let s = share.path();
    let mut rng = Rng(909);
    let kernels = kernel_inputs(s, &mut rng);
    let concurrent = concurrent_inputs(s, &mut rng);
    let big = big_inputs(s, &mut rng);
    errors_inputs(s);
    let out = over_vsock(s, "vsock");
    assert_ok("vsock", &out);
    for (name, expected) in kernels {
        assert!(
            get(s, &format!("out/{name}.bin")) == expected,
            "{name}: the result over vsock differs from the reference"
        );
    }
    for needle in [
        "vsock: VFPGA_DEVICE=vsock://2:7000, no virtio_vfpga module",
        "device:      vsock://2:7000 (vm0)",
        "engine:      sim",
    ] {
        assert!(
            out.console.contains(needle),
            "console lacks {needle:?}:\n{}",
            out.console
        );
    }
    check_concurrent(s, &concurrent);
    check_big(s, &big, &out);
    check_errors(s);
    let noport = String::from_utf8_lossy(&get(s, "out/noport.err")).into_owned();
    assert_eq!(
        String::from_utf8_lossy(&get(s, "out/noport.rc")).trim(),
        "1",
        "{noport}"
    );
    assert!(
        noport.contains("cannot connect to vsock://2:7999"),
        "{noport}"
    );
}

/// Boots the stream guest (no module) with scenario `scenario` against a vfpgad
/// serving it on vsock port 7000 through a userspace vsock device.
fn over_vsock(s: &std::path::Path, scenario: &str) -> vfpga_vm_tests::Outcome {
    let dir = tempfile::tempdir().unwrap();
    let vsock = VsockDevice::start(dir.path(), 3);
    let port = vsock.port(7000);
    let _d = Daemon::start_with(
        &["--listen".into(), format!("vm0=unix:{}", port.display())],
        std::slice::from_ref(&port),
    );
    run(&GuestOpts {
        mem: 1536,
        run_args: vec![
            "--guest".into(),
            stream_guest().display().to_string(),
            "--vsock".into(),
            vsock.socket.display().to_string(),
        ],
        ..GuestOpts::new(scenario, &[], s)
    })
}

/// The same guest reaching the same vfpgad three ways in one boot, measured with
/// `vfpga bench`: the virtio device, vsock, and TLS over QEMU's user-mode network. The
/// figures go to the test's output; the test checks that each transport ran the
/// benchmark through.
///
/// scripts/bench.sh runs this test to measure (docs/benchmarks.md's generated section):
/// `VFPGA_BENCH_VIRTIO` lists the virtio variants to run, one `NAME [FLAGS...]` per
/// line (`vfpga bench` flags; default: `virtio` alone), and the test writes every
/// `VFPGA-BENCH` console line to the file `VFPGA_BENCH_LINES` names.
#[test]
#[ignore = "boots a VM; run by scripts/test-all.sh"]
fn virtio_vsock_and_tls_side_by_side_in_one_boot() {
    let _vm = vm_lock();
    let share = tempfile::tempdir().unwrap();
    let variants = std::env::var("VFPGA_BENCH_VIRTIO").unwrap_or_else(|_| "virtio".into());
    let names = virtio_variants(&variants);
    // Newline-terminated: the scenario's `read` drops a last line without one.
    let list = format!("{}\n", variants.trim_end());
    vfpga_vm_tests::put(share.path(), "bench-virtio", list.as_bytes());
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    vfpga_agent::cert::init(&pki, &["10.0.2.2".into()], "vm0").unwrap();
    let mut args = vec![
        "--modules".to_owned(),
        format!("{} virtio_net", vfpga_vm_tests::VSOCK_MODULES),
    ];
    for (src, dst) in [
        ("ca.pem", "ca.pem"),
        ("client.pem", "client.pem"),
        ("client.key", "client.key"),
    ] {
        args.push("--bin".into());
        args.push(format!("{}:/pki/{dst}", pki.join(src).display()));
    }
    // The floor any vsock RPC pays: 64-byte echoes, a C client in the guest, an echo
    // server here on the host end of port 7001.
    let echo = dir.path().join("vsock-echo");
    let cc = std::process::Command::new("cc")
        .args(["-O2", "-static", "-Wall", "-o"])
        .arg(&echo)
        .arg(
            vfpga_vm_tests::env()
                .repo
                .join("tests/vm/guest/tools/vsock-echo.c"),
        )
        .status()
        .unwrap();
    assert!(cc.success(), "cc vsock-echo.c: {cc}");
    args.push("--bin".into());
    args.push(format!("{}:/bin/vsock-echo", echo.display()));
    let image = vfpga_vm_tests::guest_image("guest-bench", &args);
    let vsock = VsockDevice::start(dir.path(), 3);
    let echo_listener = std::os::unix::net::UnixListener::bind(vsock.port(7001)).unwrap();
    std::thread::spawn(move || {
        for mut c in echo_listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut r = c.try_clone().unwrap();
                let _ = std::io::copy(&mut r, &mut c);
            });
        }
    });
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let virtio = dir.path().join("vm0.sock");
    let uds = vsock.port(7000);
    let d = Daemon::start_with(
        &[
            "--socket".into(),
            format!("vm0={}", virtio.display()),
            "--listen".into(),
            format!("vm0=unix:{}", uds.display()),
            "--listen".into(),
            format!("vm0=tls:127.0.0.1:{port}"),
            "--tls-dir".into(),
            pki.display().to_string(),
        ],
        &[virtio.clone(), uds.clone()],
    );
    let out = run(&GuestOpts {
        mem: 1536,
        timeout: 600,
        run_args: vec![
            "--guest".into(),
            image.display().to_string(),
            "--vsock".into(),
            vsock.socket.display().to_string(),
            "--user-net".into(),
            "--append".into(),
            format!("vfpga.tls_port={port}"),
        ],
        ..GuestOpts::new("transports", std::slice::from_ref(&virtio), share.path())
    });
    assert_ok("transports", &out);
    let echo_line = out
        .console
        .lines()
        .find(|l| l.starts_with("VFPGA-BENCH vsock-echo echo 64 B: 2000 round trips"))
        .unwrap_or_else(|| panic!("no vsock echo figures:\n{}", out.console));
    eprintln!("transport timing: {echo_line}");
    for t in names.iter().map(String::as_str).chain(["vsock", "tls"]) {
        let lines: Vec<&str> = out
            .console
            .lines()
            .filter(|l| l.starts_with(&format!("VFPGA-BENCH {t} ")))
            .collect();
        assert!(
            lines
                .iter()
                .any(|l| l.contains("null op: 2000 round trips"))
                && lines
                    .iter()
                    .any(|l| l.contains("vadd_u32 16.0 MiB vectors: 5 runs")),
            "{t}: the benchmark did not run through:\n{}",
            out.console
        );
        for l in lines {
            eprintln!("transport timing: {l}");
        }
    }
    if let Some(path) = std::env::var_os("VFPGA_BENCH_LINES") {
        let lines: String = out
            .console
            .lines()
            .filter(|l| l.starts_with("VFPGA-BENCH "))
            .map(|l| format!("{l}\n"))
            .collect();
        std::fs::write(&path, lines).unwrap();
    }
    drop(d);
}

/// The names of the virtio variants `spec` lists (`NAME [FLAGS...]` a line), checked:
/// a name is one word that the console lines can carry and the CSV can hold, once, and
/// none is a stream transport's.
fn virtio_variants(spec: &str) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for line in spec.lines().filter(|l| !l.trim().is_empty()) {
        let name = line.split_whitespace().next().unwrap_or_default();
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_+.".contains(c))
                && !["vsock", "tls", "vsock-echo"].contains(&name)
                && !names.iter().any(|n| n == name),
            "VFPGA_BENCH_VIRTIO: bad or repeated variant name {name:?} in {spec:?}"
        );
        names.push(name.to_owned());
    }
    assert!(!names.is_empty(), "VFPGA_BENCH_VIRTIO lists no variant");
    names
}

/// The Python client (clients/python) in a guest without the module: Debian's Python
/// with the client in the share, every kernel over vsock through the same userspace
/// vsock device, the results checked here against the references, and the errors a
/// user meets worded as the Rust library words them.
#[test]
#[ignore = "boots a VM; run by scripts/test-all.sh"]
fn the_python_client_in_a_guest_runs_every_kernel_over_vsock() {
    let _vm = vm_lock();
    let share = tempfile::tempdir().unwrap();
    let s = share.path();
    let kernels = kernel_inputs(s, &mut Rng(4242));
    let runtime = std::process::Command::new(
        vfpga_vm_tests::env()
            .repo
            .join("clients/python/tests/guest/runtime.sh"),
    )
    .arg(s.join("py"))
    .stdout(std::process::Stdio::null())
    .status()
    .unwrap();
    assert!(
        runtime.success(),
        "clients/python/tests/guest/runtime.sh failed"
    );
    let out = over_vsock(s, "python");
    assert_ok("python", &out);
    assert!(
        out.console
            .contains("python: vsock://2:7000 is vm0 on the sim engine, 6 kernels"),
        "{}",
        out.console
    );
    for (name, expected) in kernels {
        assert!(
            get(s, &format!("out/{name}.bin")) == expected,
            "{name}: the Python client's result over vsock differs from the reference"
        );
    }
    assert_eq!(
        String::from_utf8_lossy(&get(s, "out/py-unknown.err")),
        "no kernel `nope` on this device; available: vadd_u32, vadd_f32, mmult, fir, sha256, sobel"
    );
    let noport = String::from_utf8_lossy(&get(s, "out/py-noport.err")).into_owned();
    assert!(
        noport.starts_with("cannot connect to vsock://2:7999: "),
        "{noport}"
    );
}
