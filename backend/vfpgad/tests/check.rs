//! What a first-time operator meets before any guest connects: `--check` (in words, and
//! catching missing files), flags reported as the flags they are, and the socket's
//! folder created on a fresh host.
#![allow(clippy::unwrap_used)]

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Runs vfpgad with `args`; its exit code and everything it printed.
fn vfpgad(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_vfpgad"))
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

fn check(dir: &Path, toml: &str) -> (Option<i32>, String) {
    let cfg = dir.join("vfpgad.toml");
    std::fs::write(&cfg, toml).unwrap();
    vfpgad(&["--config", cfg.to_str().unwrap(), "--check"])
}

#[test]
fn check_prints_what_it_sets_up_in_words() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out) = check(
        dir.path(),
        "[device]\nmax_inflight = 8\n[[guest]]\nname = \"vm0\"\nsocket = \"/run/vfpga/vm0.sock\"\nweight = 3\n",
    );
    assert_eq!(code, Some(0), "{out}");
    for want in [
        "vfpgad.toml: OK",
        "engine:   sim",
        "guest vm0: vhost-user /run/vfpga/vm0.sock",
        "8 runs",
        "weight 3",
    ] {
        assert!(out.contains(want), "--check lacks {want:?}:\n{out}");
    }
    assert!(!out.contains("DeviceLimits {"), "a dump, not words:\n{out}");
}

#[test]
fn check_catches_missing_files() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let guest = "[[guest]]\nname = \"vm0\"\nsocket = \"/run/vfpga/vm0.sock\"\n";
    // Certificates that are not there.
    let (code, out) = check(
        dir.path(),
        &format!("[tls]\nca = \"{d}/ca.pem\"\ncert = \"{d}/server.pem\"\nkey = \"{d}/server.key\"\n{guest}"),
    );
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("[tls]") && out.contains("ca.pem"), "{out}");
    assert!(out.contains("vfpga-agent cert init"), "{out}");
    // A library folder that is not there.
    let (code, out) = check(
        dir.path(),
        &format!("[library]\ndir = \"{d}/no-such-folder\"\nallow = [\"base\"]\n{guest}"),
    );
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("no-such-folder: not a folder"), "{out}");
    // A library without the manifest it allows: a warning, a load would fail.
    std::fs::create_dir_all(dir.path().join("lib")).unwrap();
    let (code, out) = check(
        dir.path(),
        &format!("[library]\ndir = \"{d}/lib\"\nallow = [\"base\"]\n{guest}"),
    );
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("warning: [library] allow \"base\""), "{out}");
    // A time-shared bitstream must be there: its kernels are offered at once.
    let (code, out) = check(
        dir.path(),
        &format!("[library]\ndir = \"{d}/lib\"\nallow = [\"base\"]\nshare = [\"base\"]\n{guest}"),
    );
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("[library] share: base"), "{out}");
}

#[test]
fn flags_are_reported_as_flags() {
    let (code, out) = vfpgad(&[
        "--socket",
        "/run/vfpga/vm0.sock",
        "--socket-group",
        "no-such-group-here",
        "--check",
    ]);
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains("--socket-group no-such-group-here: no such group"),
        "{out}"
    );
    assert!(!out.contains("[daemon]"), "{out}");
    let (code, out) = vfpgad(&[
        "--socket",
        "/run/vfpga/vm0.sock",
        "--socket-mode",
        "rw",
        "--check",
    ]);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("--socket-mode rw"), "{out}");
    let (code, out) = vfpgad(&["--socket", "/run/vfpga/vm0.sock", "--queue-size", "1000"]);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("not a power of two"), "{out}");
}

#[test]
fn print_qemu_args_gives_the_memory_once_per_vm() {
    let (code, out) = vfpgad(&[
        "--socket",
        "vm0a=/run/vfpga/vm0a.sock",
        "--socket",
        "vm0b=/run/vfpga/vm0b.sock",
        "--print-qemu-args",
    ]);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(out.matches("memory-backend-memfd").count(), 1, "{out}");
    assert!(out.contains("id=vfpga0,path=/run/vfpga/vm0a.sock"), "{out}");
    assert!(out.contains("id=vfpga1,path=/run/vfpga/vm0b.sock"), "{out}");
    assert!(out.contains("num_vqs=3,"), "{out}");
}

#[test]
fn the_socket_folder_is_made_on_a_fresh_host() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("run/vfpga/vm0.sock");
    let notify = UnixDatagram::bind(dir.path().join("notify")).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_vfpgad"))
        .arg("--socket")
        .arg(format!("vm0={}", socket.display()))
        .env("NOTIFY_SOCKET", dir.path().join("notify"))
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let mut buf = [0u8; 256];
    let n = notify.recv(&mut buf).expect("READY=1 within 20 s");
    assert!(String::from_utf8_lossy(&buf[..n]).contains("READY=1"));
    assert!(socket.exists(), "the socket in a folder that did not exist");
    // SAFETY: signalling our own child.
    unsafe { libc::kill(libc::pid_t::try_from(child.id()).unwrap(), libc::SIGTERM) };
    assert!(child.wait().unwrap().success());
}
