//! `vfpga-qmp` against a real QEMU 11 (the QEMU root of tests/vm/build-qemu-root.sh),
//! started paused with no guest: commands, QEMU's refusals, a chardev nobody serves.
//! The attach that succeeds is the one every VM test makes through run-guest.sh.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn vfpga_qmp(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vfpga-qmp"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr)
}

/// A QEMU killed when the test ends, whatever happened (`timeout` bounds it anyway).
struct Qemu(Child);

impl Drop for Qemu {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// QEMU paused, with a QMP socket and a chardev on a socket nobody listens on.
fn qemu(dir: &Path) -> Qemu {
    let qmp = dir.join("qmp.sock");
    Command::new("timeout")
        .args(["-k", "5", "120"])
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("qemu-system"))
        .args([
            "-accel",
            "tcg",
            "-M",
            "pc",
            "-nodefaults",
            "-display",
            "none",
            "-S",
        ])
        .arg("-qmp")
        .arg(format!("unix:{},server=on,wait=off", qmp.display()))
        .arg("-chardev")
        .arg(format!(
            "socket,id=c0,path={},reconnect-ms=1000",
            dir.join("nobody.sock").display()
        ))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .map(Qemu)
        .unwrap()
}

#[test]
#[ignore = "needs the QEMU root; run by scripts/test-all.sh"]
fn vfpga_qmp_drives_a_real_qemu() {
    let dir = tempfile::tempdir().unwrap();
    let mut q = qemu(dir.path());
    let sock = dir.path().join("qmp.sock");
    let qmp = sock.to_str().unwrap();

    let o = vfpga_qmp(&["execute", "--qmp", qmp, "query-status"]);
    assert!(o.status.success(), "{}", text(&o));
    let status: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(status["running"], false, "{status}");

    // QEMU's refusal, in its words.
    let o = vfpga_qmp(&[
        "execute",
        "--qmp",
        qmp,
        "device_add",
        r#"{"driver":"no-such-driver","id":"d0"}"#,
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let e = text(&o);
    assert!(
        e.contains("vfpga-qmp: QMP device_add failed:") && e.contains("no-such-driver"),
        "{e}"
    );

    // Arguments that are no JSON object are refused before QEMU sees them.
    for bad in ["[1]", "{\"id\":", "nonsense"] {
        let o = vfpga_qmp(&["execute", "--qmp", qmp, "device_add", bad]);
        assert_eq!(o.status.code(), Some(1), "{}", text(&o));
        assert!(text(&o).contains("arguments"), "{}", text(&o));
    }
    let o = vfpga_qmp(&["attach", "--qmp", qmp, "c0=nonsense"]);
    assert!(text(&o).contains("device nonsense"), "{}", text(&o));
    let o = vfpga_qmp(&["attach", "--qmp", qmp, "c0"]);
    assert!(
        text(&o).contains("give CHARDEV=DEVICE-JSON"),
        "{}",
        text(&o)
    );

    // A chardev no backend serves: attach says which and gives up at its time limit.
    let t = Instant::now();
    let o = vfpga_qmp(&[
        "attach",
        "--qmp",
        qmp,
        "--timeout",
        "3",
        r#"c0={"driver":"vhost-user-test-device-pci","id":"d0","chardev":"c0"}"#,
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let e = text(&o);
    assert!(
        e.contains("waiting for the backends to listen (chardevs c0)"),
        "{e}"
    );
    assert!(
        e.contains("no connection of chardevs c0 from QMP within 3s"),
        "{e}"
    );
    assert!(t.elapsed() < Duration::from_secs(30), "{:?}", t.elapsed());

    let o = vfpga_qmp(&["execute", "--qmp", qmp, "quit"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(q.0.wait().unwrap().success(), "QEMU quit cleanly");
}
