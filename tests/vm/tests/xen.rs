//! Tests against a real Xen: Debian's Xen 4.17 with a PV dom0 booted under QEMU (TCG)
//! by `tests/xen/run-xen.sh`, the dom0 and its scenarios built by
//! `tests/xen/build-xen.sh` (both read their headers). Each test boots Xen once (about
//! 30 s on an idle machine, several times that when other VMs share the CPUs).
//!
//! - `xen_domu_lifecycle`: scenario `domu`, a PV domU created, seen and destroyed.
//! - `xl_parses_generated_configs`: `vfpga-xen guest-config` writes xl.cfg files for a
//!   PV, a PVH and an HVM guest; Xen 4.17's `xl create -n` (scenario `parse`) must
//!   accept each, and its JSON must hold the values the descriptions asked for; broken
//!   files must be refused, by the tool (virtio on x86, a missing PCI function) or by xl.
//! - `domus_without_the_module_reach_vfpgad_over_vchan_and_tls`: scenario `streams`,
//!   PV domUs with no vfpga module and the static CLI: every kernel over Xen vchan and
//!   over TLS on a bridged vif (digests checked here against the references), a second
//!   domU kept from the first one's channel and certificate name, and `xl destroy`
//!   dropping the session the first one held.
//! - `vfpgad_in_dom0_registers_and_drops_sessions`: scenario `vfpgad`, the daemon as a
//!   dom0 service against the real xenstored, once through xenstored's socket and once
//!   through /dev/xen/xenbus; the raw evidence the scenario copies to the share is
//!   checked here again.
//!
//! Binaries (as `lib.rs` does for vfpgad: an environment variable, else the release
//! build): `VFPGA_VFPGAD` (target/release/vfpgad), `VFPGA_VHU_DEMO`
//! (target/release/vfpga-vhu-demo), `VFPGA_XEN_TOOL` (target/release/vfpga-xen).
//! `VFPGA_XEN_TIMEOUT` limits each Xen run (seconds, default 600). The builds go to
//! `$VFPGA_CACHE/xen-tests/{base,vfpgad}`.
//!
//! `#[ignore]`d like the other VM tests: `cargo test -p vfpga-vm-tests -- --ignored`.
#![allow(clippy::unwrap_used, clippy::cast_possible_truncation)]

mod common;

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use serde_json::Value as Json;
use vfpga_vm_tests::vm_lock;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// `$VFPGA_CACHE` as `scripts/lib.sh` defines it.
fn cache() -> PathBuf {
    if let Some(c) = std::env::var_os("VFPGA_CACHE") {
        return c.into();
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache"));
    base.join("vfpga")
}

/// A binary from `var`, else `default` under the repository; panics saying how to build
/// it when it is missing.
fn binary(var: &str, default: &str, how: &str) -> PathBuf {
    let p = std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join(default));
    assert!(
        p.is_file(),
        "{} not found (set {var} or build it: {how})",
        p.display()
    );
    p
}

fn vfpga_xen() -> PathBuf {
    binary(
        "VFPGA_XEN_TOOL",
        "target/release/vfpga-xen",
        "cargo build --release -p vfpga-xen",
    )
}

/// Builds the QEMU root (once) and Xen + dom0 with `bins` (SRC, DEST in dom0) into
/// `$VFPGA_CACHE/xen-tests/<name>`; returns that folder.
fn build_xen(name: &str, bins: &[(&Path, &str)]) -> PathBuf {
    build_xen_with_domu(name, bins, &[])
}

/// As [`build_xen`], with `domu` files (SRC, DEST) in the domU's image too.
fn build_xen_with_domu(name: &str, bins: &[(&Path, &str)], domu: &[(PathBuf, String)]) -> PathBuf {
    let r = repo();
    let st = Command::new(r.join("tests/vm/build-qemu-root.sh"))
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success(), "tests/vm/build-qemu-root.sh failed ({st})");
    let out = cache().join("xen-tests").join(name);
    let mut cmd = Command::new(r.join("tests/xen/build-xen.sh"));
    cmd.arg("--out").arg(&out);
    for (src, dst) in bins {
        cmd.arg("--bin").arg(format!("{}:{dst}", src.display()));
    }
    for (src, dst) in domu {
        cmd.arg("--domu-file")
            .arg(format!("{}:{dst}", src.display()));
    }
    let o = cmd.stderr(Stdio::inherit()).output().unwrap();
    assert!(
        o.status.success(),
        "tests/xen/build-xen.sh failed ({})",
        o.status
    );
    PathBuf::from(String::from_utf8_lossy(&o.stdout).trim())
}

/// How a Xen run ended.
#[derive(Debug)]
struct XenRun {
    /// run-xen.sh's status: the scenario's, or 124 (timeout), 125 (no result).
    rc: i32,
    /// The serial console (Xen, dom0, the scenario).
    console: String,
    /// run-xen.sh's own messages (timings, errors).
    stderr: String,
    secs: f64,
}

impl XenRun {
    /// The end of the console, for failure messages.
    fn tail(&self) -> String {
        let lines: Vec<&str> = self.console.lines().collect();
        let from = lines.len().saturating_sub(150);
        format!(
            "{}\n--- run-xen.sh:\n{}",
            lines[from..].join("\n"),
            self.stderr.trim_end()
        )
    }
}

/// Boots Xen from `xdir` and runs `scenario` in dom0, with `share` as /host.
fn run_xen(xdir: &Path, scenario: &str, share: Option<&Path>, log: &Path) -> XenRun {
    let limit = std::env::var("VFPGA_XEN_TIMEOUT").unwrap_or_else(|_| "600".into());
    let mut cmd = Command::new(repo().join("tests/xen/run-xen.sh"));
    cmd.arg("--xen")
        .arg(xdir)
        .arg("--scenario")
        .arg(scenario)
        .arg("--timeout")
        .arg(&limit)
        .arg("--log")
        .arg(log);
    if let Some(s) = share {
        cmd.arg("--share").arg(s);
    }
    // If the test process dies (a timeout's SIGTERM or SIGKILL runs no Drop),
    // run-xen.sh gets SIGTERM and stops its QEMU (its trap) instead of running on until
    // its own timeout. The signal follows the spawning thread, which waits here.
    // SAFETY: the closure runs in the child between fork and exec and only calls
    // prctl(2), which is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
    let t0 = Instant::now();
    let o = cmd.stdin(Stdio::null()).output().unwrap();
    let run = XenRun {
        rc: o.status.code().unwrap_or(-1),
        console: std::fs::read_to_string(log)
            .map(|s| s.replace('\r', ""))
            .unwrap_or_default(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        secs: t0.elapsed().as_secs_f64(),
    };
    eprintln!(
        "xen scenario {scenario}: rc {} in {:.1} s; {}",
        run.rc,
        run.secs,
        run.stderr.lines().last().unwrap_or("")
    );
    run
}

fn assert_passed(scenario: &str, run: &XenRun) {
    assert_eq!(
        run.rc,
        0,
        "Xen scenario {scenario} failed (rc {}); console (end):\n{}",
        run.rc,
        run.tail()
    );
}

#[test]
#[ignore = "boots Xen under QEMU; run by scripts/test-all.sh"]
fn xen_domu_lifecycle() {
    let _vm = vm_lock();
    let xdir = build_xen("base", &[]);
    let tmp = tempfile::tempdir().unwrap();
    let run = run_xen(&xdir, "domu", None, &tmp.path().join("console.log"));
    assert_passed("domu", &run);
    // The domU's own console line (xenconsoled's log, printed by the scenario): the
    // guest kernel really ran and reached its /init.
    assert!(
        run.console.lines().any(|l| l.starts_with("VFPGA-DOMU-UP ")),
        "no VFPGA-DOMU-UP line from the domU's console:\n{}",
        run.tail()
    );
}

// --- xl.cfg generation against xl ----------------------------------------------------

/// The value at a path of object keys and array indices ("b_info.pcidevs.0.bus").
fn at<'a>(v: &'a Json, path: &str) -> Option<&'a Json> {
    v.pointer(&format!("/{}", path.replace('.', "/")))
}

/// xl's JSON for one file: `parse/<file>.out` minus the "Parsing config" line.
fn xl_json(out: &str) -> Json {
    let start = out
        .find("\n{")
        .map(|i| i + 1)
        .or_else(|| out.starts_with('{').then_some(0))
        .unwrap_or_else(|| panic!("no JSON in xl's output:\n{out}"));
    serde_json::from_str(&out[start..]).unwrap_or_else(|e| panic!("xl's JSON: {e}:\n{out}"))
}

/// Runs `vfpga-xen guest-config` on `toml` (written to `dir/<name>.toml`) for x86_64
/// and Xen `xen`, sysfs at `sysfs`, writing `out`. Returns (success, stderr).
fn guest_config(
    dir: &Path,
    name: &str,
    toml: &str,
    xen: &str,
    arch: &str,
    sysfs: &Path,
    out: &Path,
) -> (bool, String) {
    let desc = dir.join(format!("{name}.toml"));
    std::fs::write(&desc, toml).unwrap();
    let o = Command::new(vfpga_xen())
        .arg("--sysfs-root")
        .arg(sysfs)
        .arg("guest-config")
        .arg(&desc)
        .arg("-o")
        .arg(out)
        .arg("--arch")
        .arg(arch)
        .arg("--xen-version")
        .arg(xen)
        .output()
        .unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// What one generated file must turn into in xl's JSON.
struct Expect {
    file: &'static str,
    toml: String,
    pairs: Vec<(&'static str, Json)>,
}

fn s(v: &str) -> Json {
    Json::from(v)
}

fn n(v: u32) -> Json {
    Json::from(v)
}

#[test]
#[ignore = "boots Xen under QEMU; run by scripts/test-all.sh"]
fn xl_parses_generated_configs() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    // A synthetic sysfs with the two PCI functions the descriptions pass through: the
    // tool refuses a BDF the host does not have.
    let sysfs = w.join("sys");
    for bdf in ["0000:03:00.1", "0000:04:00.0"] {
        std::fs::create_dir_all(sysfs.join("bus/pci/devices").join(bdf)).unwrap();
    }
    let share = w.join("share");
    std::fs::create_dir_all(share.join("cfg")).unwrap();

    // What the tool must refuse before xl ever sees it.
    let virtio = "name = \"v1\"\ntype = \"pvh\"\nmemory = 512\nkernel = \"/k\"\n\
                  [accelerator]\nmode = \"virtio\"\n";
    for (arch, xen, why) in [("x86_64", "4.18", "x86"), ("aarch64", "4.17", "4.18")] {
        let out = w.join(format!("virtio-{arch}.cfg"));
        let (ok, err) = guest_config(w, "virtio", virtio, xen, arch, &sysfs, &out);
        assert!(
            !ok,
            "guest-config accepted a virtio accelerator on {arch} with Xen {xen}"
        );
        assert!(
            err.contains("virtio") && err.contains(why),
            "refusal of virtio on {arch}/Xen {xen} does not say why ({why}): {err}"
        );
        assert!(
            !out.exists(),
            "a refused description still wrote {}",
            out.display()
        );
    }
    let missing = "name = \"p1\"\ntype = \"hvm\"\nmemory = 512\n\
                   [accelerator]\nmode = \"pci\"\nbdf = \"0000:05:00.0\"\n";
    let out = w.join("missing.cfg");
    let (ok, err) = guest_config(w, "missing", missing, "4.17", "x86_64", &sysfs, &out);
    assert!(!ok, "guest-config accepted a PCI function the host lacks");
    assert!(
        err.contains("0000:05:00.0"),
        "refusal does not name the BDF: {err}"
    );

    // The three guests. Values are chosen to differ from xl's defaults.
    let nfs = |path: &str, vers: &str| {
        format!("root=/dev/nfs rw ip=dhcp nfsroot=10.0.2.2:{path},vers={vers}")
    };
    let expects = vec![
        Expect {
            file: "pv",
            toml: r#"
name = "vfpga-pv"
type = "pv"
memory = 320
vcpus = 1
kernel = "/domu/vmlinux"
ramdisk = "/domu/initrd.gz"
cmdline = "console=hvc0 quiet"
[nfs_root]
server = "10.0.2.2"
path = "/srv/nfs/pv"
version = "3"
[[vif]]
bridge = "xenbr0"
mac = "00:16:3E:0A:0B:0C"
[accelerator]
mode = "pci"
bdf = "0000:03:00.1"
permissive = true
seize = true
"#
            .into(),
            pairs: vec![
                ("c_info.type", s("pv")),
                ("c_info.name", s("vfpga-pv")),
                ("b_info.max_memkb", n(320 * 1024)),
                ("b_info.target_memkb", n(320 * 1024)),
                ("b_info.max_vcpus", n(1)),
                ("b_info.kernel", s("/domu/vmlinux")),
                ("b_info.ramdisk", s("/domu/initrd.gz")),
                (
                    "b_info.cmdline",
                    s(&format!("console=hvc0 quiet {}", nfs("/srv/nfs/pv", "3"))),
                ),
                ("nics.0.mac", s("00:16:3e:0a:0b:0c")),
                ("nics.0.bridge", s("xenbr0")),
                ("pcidevs.0.domain", n(0)),
                ("pcidevs.0.bus", n(3)),
                ("pcidevs.0.dev", n(0)),
                ("pcidevs.0.func", n(1)),
                ("pcidevs.0.permissive", Json::Bool(true)),
                ("pcidevs.0.seize", Json::Bool(true)),
            ],
        },
        Expect {
            file: "pvh",
            toml: r#"
name = "vfpga-pvh"
type = "pvh"
memory = 768
vcpus = 3
kernel = "/srv/xen/vmlinuz"
ramdisk = "/srv/xen/initrd.gz"
cmdline = "console=hvc0"
[nfs_root]
server = "10.0.2.2"
path = "/srv/nfs/pvh"
[[vif]]
bridge = "xenbr0"
mac = "00:16:3e:12:34:56"
[[vif]]
bridge = "xenbr1"
"#
            .into(),
            pairs: vec![
                ("c_info.type", s("pvh")),
                ("c_info.name", s("vfpga-pvh")),
                ("b_info.max_memkb", n(768 * 1024)),
                ("b_info.max_vcpus", n(3)),
                ("b_info.kernel", s("/srv/xen/vmlinuz")),
                ("b_info.ramdisk", s("/srv/xen/initrd.gz")),
                (
                    "b_info.cmdline",
                    s(&format!("console=hvc0 {}", nfs("/srv/nfs/pvh", "4.2"))),
                ),
                ("nics.0.mac", s("00:16:3e:12:34:56")),
                ("nics.0.bridge", s("xenbr0")),
                ("nics.1.bridge", s("xenbr1")),
                ("nics.1.devid", n(1)),
            ],
        },
        Expect {
            file: "hvm",
            toml: r#"
name = "vfpga-hvm"
type = "hvm"
memory = 1536
vcpus = 2
kernel = "/srv/xen/vmlinuz"
cmdline = "console=ttyS0"
[nfs_root]
server = "10.0.2.2"
path = "/srv/nfs/hvm"
version = "4.1"
[[vif]]
bridge = "xenbr0"
model = "e1000"
[accelerator]
mode = "pci"
bdf = "0000:04:00.0"
seize = true
rdm_policy = "relaxed"
"#
            .into(),
            pairs: vec![
                ("c_info.type", s("hvm")),
                ("c_info.name", s("vfpga-hvm")),
                ("b_info.max_memkb", n(1536 * 1024)),
                ("b_info.max_vcpus", n(2)),
                ("b_info.kernel", s("/srv/xen/vmlinuz")),
                (
                    "b_info.cmdline",
                    s(&format!("console=ttyS0 {}", nfs("/srv/nfs/hvm", "4.1"))),
                ),
                ("nics.0.bridge", s("xenbr0")),
                ("nics.0.model", s("e1000")),
                ("pcidevs.0.domain", n(0)),
                ("pcidevs.0.bus", n(4)),
                ("pcidevs.0.dev", n(0)),
                ("pcidevs.0.func", n(0)),
                ("pcidevs.0.seize", Json::Bool(true)),
                ("pcidevs.0.permissive", Json::Bool(false)),
                ("pcidevs.0.rdm_policy", s("relaxed")),
            ],
        },
    ];
    for e in &expects {
        let out = share.join("cfg").join(format!("{}.cfg", e.file));
        let (ok, err) = guest_config(w, e.file, &e.toml, "4.17", "x86_64", &sysfs, &out);
        assert!(ok, "guest-config refused {}: {err}", e.file);
    }
    // Files xl itself must refuse: a syntax error, and a PCI function that is no BDF.
    let broken = [
        (
            "zz-syntax",
            "name = \"bad1\"\ntype = \"pv\"\nmemory = lots\nkernel = \"/k\"\n",
        ),
        (
            "zz-bdf",
            "name = \"bad2\"\ntype = \"hvm\"\nmemory = 512\npci = [ \"0000:0g:00.1\" ]\n",
        ),
    ];
    for (name, text) in broken {
        std::fs::write(share.join("cfg").join(format!("{name}.cfg")), text).unwrap();
    }

    let _vm = vm_lock();
    let xdir = build_xen("base", &[]);
    let run = run_xen(&xdir, "parse", Some(&share), &w.join("console.log"));
    assert_passed("parse", &run);
    let read = |rel: &str| {
        std::fs::read_to_string(share.join("parse").join(rel))
            .unwrap_or_else(|e| panic!("parse/{rel}: {e}; console (end):\n{}", run.tail()))
    };
    for e in &expects {
        let cfg = format!("{}.cfg", e.file);
        let out = read(&format!("{cfg}.out"));
        assert_eq!(
            read(&format!("{cfg}.rc")).trim(),
            "0",
            "xl create -n refused {cfg}:\n{out}\n--- {cfg}:\n{}",
            std::fs::read_to_string(share.join("cfg").join(&cfg)).unwrap_or_default()
        );
        let json = xl_json(&out);
        for (path, want) in &e.pairs {
            // libxl's JSON leaves out fields at their default (0, false).
            let got = at(&json, path).or(match want {
                Json::Number(z) if z.as_f64() == Some(0.0) => Some(want),
                Json::Bool(false) => Some(want),
                _ => None,
            });
            assert_eq!(
                got,
                Some(want),
                "{cfg}: xl's {path} is not {want:?}; xl said:\n{out}"
            );
        }
    }
    for (name, _) in broken {
        let cfg = format!("{name}.cfg");
        let rc = read(&format!("{cfg}.rc"));
        let out = read(&format!("{cfg}.out"));
        assert_ne!(
            rc.trim(),
            "0",
            "xl create -n accepted the broken {cfg}:\n{out}"
        );
        eprintln!("xl refused {cfg} (rc {}): {}", rc.trim(), out.trim());
    }
}

// --- vfpgad as the dom0 service ------------------------------------------------------

/// The value of `key` (a full path) in `xenstore-ls -f` output, unquoted.
fn xs_value<'a>(ls: &'a str, key: &str) -> Option<&'a str> {
    ls.lines().find_map(|l| {
        let rest = l.strip_prefix(key)?.strip_prefix(" = ")?;
        rest.strip_prefix('"')?.strip_suffix('"')
    })
}

#[test]
#[ignore = "boots Xen under QEMU; run by scripts/test-all.sh"]
fn vfpgad_in_dom0_registers_and_drops_sessions() {
    let vfpgad = binary(
        "VFPGA_VFPGAD",
        "target/release/vfpgad",
        "cargo build --release -p vfpgad",
    );
    let demo = binary(
        "VFPGA_VHU_DEMO",
        "target/release/vfpga-vhu-demo",
        "cargo build --release -p vfpga-vhu-frontend",
    );
    let _vm = vm_lock();
    let xdir = build_xen(
        "vfpgad",
        &[
            (&vfpgad, "/usr/bin/vfpgad"),
            (&demo, "/usr/bin/vfpga-vhu-demo"),
        ],
    );
    let share = tempfile::tempdir().unwrap();
    let run = run_xen(
        &xdir,
        "vfpgad",
        Some(share.path()),
        &share.path().join("console.log"),
    );
    for l in run
        .console
        .lines()
        .filter(|l| l.starts_with("VFPGAD-TIME "))
    {
        eprintln!("{l}");
    }
    assert_passed("vfpgad", &run);

    // The evidence the scenario copied, checked again here, for both ways to xenstore.
    for transport in ["socket", "xenbus"] {
        check_vfpgad_evidence(
            &share.path().join("vfpgad").join(transport),
            transport,
            &run,
        );
    }
    eprintln!(
        "timings (s):\n{}",
        std::fs::read_to_string(share.path().join("vfpgad/timings.txt")).unwrap_or_default()
    );
}

/// Checks what the `vfpgad` scenario recorded in `dir` for one daemon's life.
fn check_vfpgad_evidence(dir: &Path, transport: &str, run: &XenRun) {
    let ev = |f: &str| {
        std::fs::read_to_string(dir.join(f)).unwrap_or_else(|e| {
            panic!(
                "vfpgad/{transport}/{f}: {e}; console (end):\n{}",
                run.tail()
            )
        })
    };
    let p = "/local/domain/0/vfpga";
    let reg = ev("reg.txt");
    let pid = ev("pid");
    for (key, want) in [
        ("daemon/pid", pid.trim()),
        ("daemon/engine", "sim"),
        ("daemon/state", "running"),
        ("guests/g1/socket", "/run/vfpga/g1.sock"),
        ("guests/g1/domain", "vfpga-domu"),
        ("guests/g1/domid", ""),
        ("guests/g1/sessions-dropped", "0"),
    ] {
        assert_eq!(
            xs_value(&reg, &format!("{p}/{key}")),
            Some(want),
            "{transport}: registration: {p}/{key}; xenstore-ls -f said:\n{reg}"
        );
    }
    assert!(
        xs_value(&reg, &format!("{p}/daemon/version")).is_some_and(|v| !v.is_empty()),
        "{transport}: no daemon/version:\n{reg}"
    );
    let domid = ev("domid-xl");
    assert!(
        domid.trim().parse::<u32>().is_ok_and(|d| d > 0),
        "{transport}: xl domid gave {domid:?}"
    );
    assert_eq!(
        ev("domid-xs").trim(),
        domid.trim(),
        "{transport}: published domid"
    );
    let after = ev("after-destroy.txt");
    for (key, want) in [
        ("guests/g1/sessions-dropped", "1"),
        ("guests/g1/domid", ""),
        ("daemon/state", "running"),
    ] {
        assert_eq!(
            xs_value(&after, &format!("{p}/{key}")),
            Some(want),
            "{transport}: after xl destroy, {p}/{key}:\n{after}"
        );
    }
    let hold = ev("hold.out");
    assert!(
        hold.lines().any(|l| l.starts_with("HOLD-READY session=")),
        "{transport}: the hold client never held a session:\n{hold}"
    );
    assert!(
        hold.lines().any(|l| l == "HOLD-RESULT BAD_SESSION"),
        "{transport}: the held session survived its domain:\n{hold}"
    );
    assert_eq!(
        ev("demo.rc").trim(),
        "0",
        "{transport}: the demo failed after the drop:\n{}",
        ev("demo.out")
    );
    assert_eq!(
        ev("vfpgad.rc").trim(),
        "0",
        "{transport}: vfpgad's status after SIGTERM; its log:\n{}",
        ev("vfpgad.log")
    );
    assert_ne!(
        ev("exists-after.rc").trim(),
        "0",
        "{transport}: {p} still in xenstore after vfpgad stopped"
    );
}

// --- domUs on streams ------------------------------------------------------------------

#[test]
#[ignore = "boots Xen under QEMU; run by scripts/test-all.sh"]
fn domus_without_the_module_reach_vfpgad_over_vchan_and_tls() {
    let vfpgad = binary(
        "VFPGA_VFPGAD",
        "target/release/vfpgad",
        "cargo build --release -p vfpgad",
    );
    let cli = binary(
        "VFPGA_CLI",
        "target/guest/x86_64-unknown-linux-gnu/release/vfpga",
        "scripts/build-guest-cli.sh",
    );
    let _vm = vm_lock();
    let work = tempfile::tempdir().unwrap();
    let pki = work.path().join("pki");
    vfpga_agent::cert::init(&pki, &["10.0.3.1".into()], "d1").unwrap();
    vfpga_agent::cert::issue(
        &pki,
        "d2",
        &["d2".into()],
        vfpga_agent::cert::Kind::Client(vfpga_agent::cert::Role::Run),
        365,
        false,
    )
    .unwrap();
    let inputs = work.path().join("share");
    let want = common::kernel_inputs(&inputs, &mut vfpga_reference::Rng(1001));
    let mut domu: Vec<(PathBuf, String)> = vec![
        (cli, "/bin/vfpga".into()),
        (
            repo().join("tests/xen/domu/streams.sh"),
            "/domu-run.sh".into(),
        ),
    ];
    for f in std::fs::read_dir(inputs.join("in")).unwrap().flatten() {
        let name = f.file_name().to_string_lossy().into_owned();
        domu.push((f.path(), format!("/in/{name}")));
    }
    domu.push((inputs.join("params.sh"), "/in/params.sh".into()));
    for (who, prefix) in [("d1", "client"), ("d2", "d2")] {
        domu.push((pki.join("ca.pem"), format!("/pki/{who}/ca.pem")));
        domu.push((
            pki.join(format!("{prefix}.pem")),
            format!("/pki/{who}/client.pem"),
        ));
        domu.push((
            pki.join(format!("{prefix}.key")),
            format!("/pki/{who}/client.key"),
        ));
    }
    let (ca, cert, key) = (
        pki.join("ca.pem"),
        pki.join("server.pem"),
        pki.join("server.key"),
    );
    let xdir = build_xen_with_domu(
        "streams",
        &[
            (&vfpgad, "/usr/bin/vfpgad"),
            (&ca, "/pki/ca.pem"),
            (&cert, "/pki/server.pem"),
            (&key, "/pki/server.key"),
        ],
        &domu,
    );
    let share = tempfile::tempdir().unwrap();
    let run = run_xen(
        &xdir,
        "streams",
        Some(share.path()),
        &share.path().join("console.log"),
    );
    assert_passed("streams", &run);
    let ev = |f: &str| {
        std::fs::read_to_string(share.path().join("streams").join(f))
            .unwrap_or_else(|e| panic!("streams/{f}: {e}; console (end):\n{}", run.tail()))
            .replace('\r', "")
    };
    let domu1 = ev("domu1.log");
    assert!(
        !domu1.contains("VFPGA-FAIL"),
        "the domU reported a failure:\n{domu1}"
    );
    for (kernel, expected) in &want {
        let digest: String = vfpga_reference::sha256(expected)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        for transport in ["vchan", "tls"] {
            let line = format!("VFPGA-OUT {transport} {kernel} {digest}");
            assert!(
                domu1.lines().any(|l| l.trim_end() == line),
                "{kernel} over {transport}: no `{line}` (the output differs from the reference, or the run failed):\n{domu1}"
            );
        }
    }
    for needle in [
        "device:      vchan://0/vfpga (d1)",
        "device:      tls://10.0.3.1:7000 (d1)",
        "VFPGA-DOMU-HOLD",
    ] {
        assert!(domu1.contains(needle), "domU lacks {needle:?}:\n{domu1}");
    }
    let domu2 = ev("domu2.log");
    let line = |what: &str| {
        domu2
            .lines()
            .find(|l| l.starts_with(&format!("VFPGA-INTRUDER {what} ")))
            .unwrap_or_else(|| panic!("no VFPGA-INTRUDER {what} line:\n{domu2}"))
            .to_owned()
    };
    assert!(
        line("own").contains("own ok: device:      vchan://0/vfpga (d2)"),
        "{domu2}"
    );
    let vchan = line("vchan");
    assert!(
        vchan.contains("rc=1") && vchan.contains("cannot connect") && vchan.contains("ermission"),
        "the second domU reached the first one's channel: {vchan}"
    );
    let tls = line("tls");
    assert!(
        tls.contains("rc=1") && tls.contains("cannot connect"),
        "the second domU's certificate was served as the first one: {tls}"
    );
    assert_eq!(
        ev("dropped-before").trim(),
        "0",
        "the other domU's destruction dropped d1's sessions"
    );
    assert!(
        ev("dropped-after")
            .trim()
            .parse::<u32>()
            .is_ok_and(|n| n >= 1),
        "xl destroy dropped no session: {}",
        ev("dropped-after")
    );
    assert_ne!(
        ev("vchan-after.rc").trim(),
        "0",
        "the destroyed domain's channels are still offered"
    );
    assert_eq!(
        ev("vfpgad.rc").trim(),
        "0",
        "vfpgad after SIGTERM:\n{}",
        ev("vfpgad.log")
    );
    for l in domu1.lines().filter(|l| l.starts_with("VFPGA-BENCH ")) {
        eprintln!("xen guest timing: {l}");
    }
}
