//! What a first-time operator meets before any guest connects: `--check` (in words, and
//! catching missing files, then the configuration as a file to reuse), flags reported as the flags they are, and the socket's
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

/// `vfpgad ARGS --check`'s standard output, which must succeed.
fn check_stdout(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_vfpgad"))
        .args(args)
        .arg("--check")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn check_prints_a_file_that_gives_the_same_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("vfpgad.toml");
    std::fs::write(
        &file,
        "[daemon]\ninline_cost = 100\n[device]\nrate_runs = 50\n[stream]\nidle_timeout_ms = 0\n[[guest]]\nname = \"old\"\nsocket = \"/run/vfpga/old.sock\"\n",
    )
    .unwrap();
    // A file and flags over it: the flags replace the guests and add to the rest.
    let first = check_stdout(&[
        "--config",
        file.to_str().unwrap(),
        "--socket",
        "vm0=/run/vfpga/vm0.sock",
        "--listen",
        "vm1=unix:/run/vfpga/vm1.vsock_7000",
        "--request-queues",
        "4",
        "--socket-mode",
        "0660",
        "--xen",
    ]);
    assert!(
        first.contains("# guest vm0: vhost-user /run/vfpga/vm0.sock"),
        "{first}"
    );
    let saved = dir.path().join("saved.toml");
    std::fs::write(&saved, &first).unwrap();
    let second = check_stdout(&["--config", saved.to_str().unwrap()]);
    // The same configuration, said the same way; only the first line names the source.
    let body = |s: &str| s.split_once('\n').unwrap().1.to_owned();
    assert_eq!(body(&second), body(&first));
    assert!(
        second.starts_with(&format!("# {}: OK\n", saved.display())),
        "{second}"
    );
    for key in [
        "inline_cost = 100",
        "rate_runs = 50",
        "idle_timeout_ms = 0",
        "request_queues = 4",
        "socket_mode = \"0660\"",
        "enable = true",
        "listen = [\"unix:/run/vfpga/vm1.vsock_7000\"]",
    ] {
        assert!(first.contains(key), "{key:?} missing:\n{first}");
    }
    assert!(
        !first.contains("old.sock"),
        "the flags replaced the guests:\n{first}"
    );
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

#[test]
fn print_libvirt_xml_follows_the_file_and_names_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("vfpgad.toml");
    std::fs::write(
        &cfg,
        "[device]\nrequest_queues = 4\nqueue_size = 256\n[[guest]]\nname = \"vm0\"\nsocket = \"/run/vfpga/vm0.sock\"\n[[guest]]\nname = \"vm1\"\nlisten = [\"unix:/run/vfpga/vm1.vsock_7000\"]\n",
    )
    .unwrap();
    let cfg = cfg.to_str().unwrap();
    let (code, out) = vfpgad(&["--config", cfg, "--print-libvirt-xml"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("<qemu:arg value='socket,id=vfpga0,path=/run/vfpga/vm0.sock'/>"),
        "{out}"
    );
    assert!(out.contains(r#""num_vqs":5,"vq_size":256,"#), "{out}");
    assert_eq!(
        out.matches("<domain ").count(),
        1,
        "stream-only vm1 has none: {out}"
    );

    let (code, out) = vfpgad(&["--config", cfg, "--print-libvirt-xml", "vm1"]);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("guest vm1 has no vhost-user socket"), "{out}");
    let (code, out) = vfpgad(&["--config", cfg, "--print-libvirt-xml", "vm7"]);
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains("no guest vm7 in the configuration (guests: vm0, vm1)"),
        "{out}"
    );
    let (code, out) = vfpgad(&["--socket", "vm0=relative.sock", "--print-libvirt-xml"]);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("is relative"), "{out}");
}
