//! `vfpga-agent cert` and `upload` as an operator uses them: each command says what it
//! wrote, nothing is replaced without `--force` (the CA never), and a mistake the agent
//! would refuse after the upload is caught before any byte leaves.
#![allow(clippy::unwrap_used)]

use std::process::{Command, Stdio};

fn agent(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_vfpga-agent"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn certificates_are_never_replaced_silently() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let (code, out) = agent(&["cert", "init", "--dir", d, "--server-name", "pynq1"]);
    assert_eq!(code, Some(0), "{out}");
    let client = std::fs::read(dir.path().join("client.pem")).unwrap();
    // A second board's certificate: says what it wrote.
    let (code, out) = agent(&[
        "cert", "server", "--dir", d, "--prefix", "pynq2", "--name", "pynq2", "--name", "10.0.0.2",
    ]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("pynq2.pem") && out.contains("a server certificate for pynq2, 10.0.0.2"),
        "{out}"
    );
    // Again: refused, the first stays.
    let first = std::fs::read(dir.path().join("pynq2.pem")).unwrap();
    let (code, out) = agent(&[
        "cert", "server", "--dir", d, "--prefix", "pynq2", "--name", "pynq2",
    ]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("exists already") && out.contains("--force"),
        "{out}"
    );
    assert_eq!(std::fs::read(dir.path().join("pynq2.pem")).unwrap(), first);
    // A server certificate over the client's: refused too.
    let (code, out) = agent(&[
        "cert", "server", "--dir", d, "--prefix", "client", "--name", "x",
    ]);
    assert_eq!(code, Some(1), "{out}");
    assert_eq!(
        std::fs::read(dir.path().join("client.pem")).unwrap(),
        client
    );
    // The CA, never.
    let (code, out) = agent(&[
        "cert", "client", "--dir", d, "--prefix", "ca", "--name", "x", "--force",
    ]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("replace the CA"), "{out}");
    // With --force, replaced, and said so.
    let (code, out) = agent(&[
        "cert", "client", "--dir", d, "--prefix", "client", "--name", "host2", "--force",
    ]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("a client certificate (role run: kernels only) for host2, valid 365 days"),
        "{out}"
    );
    assert_ne!(
        std::fs::read(dir.path().join("client.pem")).unwrap(),
        client
    );
}

#[test]
fn an_upload_whose_name_differs_from_its_manifest_never_leaves() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("base.toml"),
        "[bitstream]\nname = \"base\"\nfile = \"base.bit.bin\"\n[[kernel]]\nname = \"vadd_u32\"\nsim = \"vadd_u32\"\nargs = [\n  { name = \"a\", kind = \"in\", type = \"u32\", dims = [\"n\"] },\n  { name = \"b\", kind = \"in\", type = \"u32\", dims = [\"n\"] },\n  { name = \"c\", kind = \"out\", type = \"u32\", dims = [\"n\"] },\n  { name = \"n\", kind = \"scalar\", type = \"u32\" },\n]\n",
    )
    .unwrap();
    std::fs::write(d.join("base.bit.bin"), b"bits").unwrap();
    // No agent listens at the address: a refusal before connecting is the only way to
    // get this message.
    let (code, out) = agent(&[
        "upload",
        "--to",
        "127.0.0.1:9",
        "--pki",
        d.to_str().unwrap(),
        "--name",
        "other",
        d.join("base.toml").to_str().unwrap(),
        d.join("base.bit.bin").to_str().unwrap(),
    ]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("--name other, but") && out.contains("\"base\""),
        "{out}"
    );
}
