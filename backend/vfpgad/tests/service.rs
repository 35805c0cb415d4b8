//! Running as a service: systemd's readiness protocol and the dom0 mode's failure when
//! there is no xenstore. (The dom0 mode against a real xenstored under Xen is a VM test:
//! tests/vm/tests/xen.rs.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::process::{Command, Stdio};
use std::time::Duration;

/// Receives one notification, or fails after 20 s.
fn recv(sock: &UnixDatagram) -> String {
    let mut buf = [0u8; 256];
    let n = sock.recv(&mut buf).expect("a notification within 20 s");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// Starts vfpgad with `NOTIFY_SOCKET=notify_env`, expects READY=1 once its socket
/// listens, then STOPPING=1 on SIGTERM and a clean exit.
fn notifies(listener: &UnixDatagram, notify_env: &str, dir: &std::path::Path) {
    listener
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let socket = dir.join("vm0.sock");
    let mut child = Command::new(env!("CARGO_BIN_EXE_vfpgad"))
        .arg("--socket")
        .arg(&socket)
        .env("NOTIFY_SOCKET", notify_env)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    assert_eq!(recv(listener), "READY=1");
    assert!(socket.exists(), "READY=1 before the socket listens");
    let pid = i32::try_from(child.id()).unwrap();
    // SAFETY: kill() on the pid of a child we spawned and have not reaped.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    assert_eq!(recv(listener), "STOPPING=1");
    assert!(child.wait().unwrap().success());
    assert!(!socket.exists());
}

#[test]
fn tells_systemd_when_ready_and_when_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify");
    let listener = UnixDatagram::bind(&path).unwrap();
    notifies(&listener, path.to_str().unwrap(), dir.path());
}

#[test]
fn notify_socket_may_be_abstract() {
    let dir = tempfile::tempdir().unwrap();
    let name = format!("vfpgad-test-notify-{}", std::process::id());
    let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let listener = UnixDatagram::bind_addr(&addr).unwrap();
    notifies(&listener, &format!("@{name}"), dir.path());
}

#[test]
fn xen_mode_without_xenstore_fails_clearly_and_leaves_nothing() {
    if std::path::Path::new("/dev/xen/xenbus").exists() {
        return; // a real dom0: xenstore is reachable through the device
    }
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("vm0.sock");
    let out = Command::new(env!("CARGO_BIN_EXE_vfpgad"))
        .arg("--socket")
        .arg(format!("domu1={}", socket.display()))
        .arg("--xen")
        .env("XENSTORED_PATH", dir.path().join("no-xenstored"))
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot reach xenstore"), "{err}");
    assert!(err.contains("no-xenstored"), "{err}");
    assert!(!socket.exists(), "the socket is removed again");
}

#[test]
fn xen_settings_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("vfpgad.toml");
    let check = |text: &str| {
        std::fs::write(&cfg, text).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_vfpgad"))
            .arg("--config")
            .arg(&cfg)
            .arg("--check")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let ok = "[xen]\nenable = true\n[[guest]]\nname = \"g1\"\nsocket = \"/tmp/g1.sock\"\ndomain = \"web.server-1\"\n";
    let (code, out) = check(ok);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("/local/domain/0/vfpga"), "{out}");
    let (code, out) = check(&ok.replace("enable = true", "enable = true\npath = \"vfpga/\""));
    assert_eq!(code, Some(2));
    assert!(out.contains("[xen] path"), "{out}");
    let (code, out) =
        check(&ok.replace("enable = true", "enable = true\npath = \"/local/domain/0\""));
    assert_eq!(code, Some(2));
    assert!(out.contains("belongs to Xen"), "{out}");
    // One rule for guest names and one for domain names, with or without Xen.
    for name in ["web.lab", "a@b"] {
        let (code, out) = check(&ok.replace("name = \"g1\"", &format!("name = {name:?}")));
        assert_eq!(code, Some(2));
        assert!(
            out.contains("use 1 to 31 letters, digits, '_' or '-'"),
            "{out}"
        );
    }
    for domain in ["a/b", "bad domain!"] {
        let (code, out) = check(&ok.replace("web.server-1", domain));
        assert_eq!(code, Some(2));
        assert!(out.contains("domain name"), "{out}");
    }
    let (code, out) = check(&ok.replace("enable = true", "enabled = true"));
    assert_eq!(code, Some(2));
    assert!(out.contains("enabled"), "{out}");
}
