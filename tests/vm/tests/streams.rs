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
    let dir = tempfile::tempdir().unwrap();
    let vsock = VsockDevice::start(dir.path(), 3);
    let port = vsock.port(7000);
    let d = Daemon::start_with(
        &["--listen".into(), format!("vm0=unix:{}", port.display())],
        std::slice::from_ref(&port),
    );
    let out = run(&GuestOpts {
        mem: 1536,
        run_args: vec![
            "--guest".into(),
            stream_guest().display().to_string(),
            "--vsock".into(),
            vsock.socket.display().to_string(),
        ],
        ..GuestOpts::new("vsock", &[], s)
    });
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
    drop(d);
}
