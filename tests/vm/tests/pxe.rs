//! Network boot, end to end: `vfpga-pxe` writes the boot tree from a description; QEMU
//! (TCG) boots from its virtio NIC through the NIC's real iPXE ROM (Debian's
//! ipxe-qemu), over QEMU's user-mode TFTP or from an HTTP server; the generated menu
//! loads the kernel and the generated netboot initramfs, which brings the network up
//! with DHCP and mounts the root file system from nfs-ganesha, run with the generated
//! configuration; the root's init loads `virtio_vfpga.ko` from the NFS root and runs
//! kernels with the `vfpga` CLI against a real `vfpgad`; the host compares the outputs
//! (written to the NFS root) with independent references. One test boots the Xen entry
//! (Xen 4.17 and dom0 over iPXE multiboot, dom0 on the NFS root).
//!
//! The servers run in a network namespace of their own (tests/pxe/netns-servers.sh)
//! with QEMU in it, so that they clash with no other NFS or HTTP server. Everything a
//! test starts is stopped by PID when it ends; each test checks that nothing of it is
//! left. `#[ignore]`d like the other VM tests: `tests/pxe/run-tests.sh` (or
//! `scripts/test-all.sh`) prepares the binaries and runs them with `--ignored`.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::cast_possible_truncation
)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use vfpga_reference::{self as reference, le, Rng};
use vfpga_vm_tests::{env, run, vm_lock, Daemon, GuestOpts, Outcome};

/// Port of the HTTP server inside the namespace (nothing else listens there).
const HTTP_PORT: u16 = 8080;

fn repo() -> PathBuf {
    env().repo.clone()
}

fn bin(var: &str, default: &str, how: &str) -> PathBuf {
    let p = std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join(default));
    assert!(p.is_file(), "{} not found (build it: {how})", p.display());
    p
}

fn vfpga_pxe() -> PathBuf {
    bin(
        "VFPGA_PXE",
        "target/release/vfpga-pxe",
        "cargo build --release -p vfpga-pxe",
    )
}

/// Runs a command, panicking with its output if it fails; returns stdout.
fn sh(cmd: &mut Command) -> String {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The NFS root (tests/pxe/build-guest-root.sh) and what the description needs.
struct GuestRoot {
    root: PathBuf,
    kernel_dir: PathBuf,
    kver: String,
    busybox: PathBuf,
}

fn guest_root(dir: &Path) -> GuestRoot {
    let cli = bin(
        "VFPGA_CLI",
        "target/guest/x86_64-unknown-linux-gnu/release/vfpga",
        "scripts/build-guest-cli.sh",
    );
    let out = sh(Command::new(repo().join("tests/pxe/build-guest-root.sh"))
        .arg("--out")
        .arg(dir.join("root"))
        .arg("--ko")
        .arg(env().guest.join("virtio_vfpga.ko"))
        .arg("--cli")
        .arg(cli)
        .stderr(Stdio::inherit()));
    let get = |k: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .unwrap_or_else(|| panic!("build-guest-root.sh printed no {k}=: {out}"))
            .to_owned()
    };
    GuestRoot {
        root: PathBuf::from(get("root")),
        kernel_dir: PathBuf::from(get("kernel_dir")),
        kver: get("kver"),
        busybox: PathBuf::from(get("busybox")),
    }
}

/// Inputs in the NFS root's /work/in; returns the expected vadd_u32 and sha256 outputs.
fn inputs(root: &Path, rng: &mut Rng) -> (Vec<u8>, Vec<u8>) {
    let n = 20_000;
    let a: Vec<u32> = (0..n).map(|_| rng.next() as u32).collect();
    let b: Vec<u32> = (0..n).map(|_| rng.next() as u32).collect();
    let data = rng.bytes(500_001);
    let dir = root.join("work/in");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("a_u32.bin"), le(&a, u32::to_le_bytes)).unwrap();
    std::fs::write(dir.join("b_u32.bin"), le(&b, u32::to_le_bytes)).unwrap();
    std::fs::write(dir.join("data.bin"), &data).unwrap();
    (
        le(&reference::vadd_u32(&a, &b), u32::to_le_bytes),
        reference::sha256(&data),
    )
}

/// The boot description: a Linux entry and a Xen entry on the NFS root `r`, served by
/// QEMU's host address (10.0.2.2), reached from 127.0.0.1 on unprivileged ports. The
/// kernels boot quiet: a kernel message printed in the middle of a line the tests look
/// for would split it.
fn description(r: &GuestRoot, state: &Path, xen: &Path, linux_args: &str) -> String {
    let kernel = r.kernel_dir.join(format!("boot/vmlinuz-{}", r.kver));
    format!(
        r#"[server]
address = "10.0.2.2"

[menu]
title = "vfpga PXE test"
timeout = 1

[nfs]
root = "{root}"
clients = ["127.0.0.1"]
insecure = true

[nfs.ganesha]
bind_addr = "127.0.0.1"
recovery_root = "{state}/recovery"
graceless = true

[initramfs]
modules_dir = "{kdir}/lib/modules/{kver}"
busybox = "{busybox}"

[[entry]]
name = "linux"
kernel = "{kernel}"
args = "console=ttyS0 quiet loglevel=3 panic=-1 vfpga.onfail=poweroff {linux_args}"

[[entry]]
name = "xen"
kind = "xen"
xen = "{xen}"
xen_args = "console=com1 com1=115200 dom0_mem=1024M,max:1024M loglvl=all guest_loglvl=all noreboot spec-ctrl=eager-fpu"
kernel = "{kernel}"
args = "console=hvc0 quiet loglevel=3 panic=-1 vfpga.onfail=poweroff vfpga.scenario=xen-dom0"
"#,
        root = r.root.display(),
        state = state.display(),
        kdir = r.kernel_dir.display(),
        kver = r.kver,
        busybox = r.busybox.display(),
        kernel = kernel.display(),
        xen = xen.display(),
    )
}

fn xen_gz() -> PathBuf {
    PathBuf::from(
        sh(Command::new(repo().join("tests/pxe/fetch-xen.sh")).stderr(Stdio::inherit())).trim(),
    )
}

/// tests/pxe/netns-servers.sh: rpcbind + nfs-ganesha (+ busybox httpd) in a network
/// namespace of their own; stopped (SIGTERM, then stdin closed) on drop.
struct Servers {
    child: Option<Child>,
    stdin: Option<ChildStdin>,
    netns: String,
    state: PathBuf,
}

impl Servers {
    fn start(tag: &str, state: &Path, ganesha_conf: &Path, http_root: Option<&Path>) -> Self {
        let netns = format!("vfpga-pxe-{}-{tag}", std::process::id());
        let mut cmd = Command::new(repo().join("tests/pxe/netns-servers.sh"));
        cmd.arg("--netns")
            .arg(&netns)
            .arg("--state")
            .arg(state)
            .arg("--ganesha-config")
            .arg(ganesha_conf)
            .arg("--max-life")
            .arg("1200");
        if let Some(h) = http_root {
            cmd.arg("--http-root")
                .arg(h)
                .arg("--http-port")
                .arg(HTTP_PORT.to_string());
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start tests/pxe/netns-servers.sh");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(l);
            }
        });
        let mut s = Self {
            stdin: child.stdin.take(),
            child: Some(child),
            netns,
            state: state.to_owned(),
        };
        match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(l) if l == "ready" => s,
            other => {
                s.stop();
                panic!(
                    "the PXE servers did not start ({other:?}); logs in {}",
                    state.display()
                )
            }
        }
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            if let Ok(pid) = i32::try_from(c.id()) {
                // SAFETY: kill(2) on our own, not yet reaped child.
                unsafe { libc::kill(pid, libc::SIGTERM) };
            }
            drop(self.stdin.take());
            let deadline = Instant::now() + Duration::from_secs(60);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The HTTP server's log.
    fn http_log(&self) -> String {
        std::fs::read_to_string(self.state.join("httpd.log")).unwrap_or_default()
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Processes whose command line mentions `marker` (they are this test's: the marker is
/// its temporary folder), killed after being listed, and namespace `netns` if it exists.
fn leftovers(marker: &Path, netns: &str) -> Vec<String> {
    let marker = marker.to_string_lossy().into_owned();
    let mut left = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.bytes().all(|b| b.is_ascii_digit()) || name == std::process::id().to_string() {
            continue;
        }
        if let Ok(c) = std::fs::read(e.path().join("cmdline")) {
            let c = String::from_utf8_lossy(&c).replace('\0', " ");
            if c.contains(&marker) {
                left.push(format!("{name}: {c}"));
                if let Ok(pid) = name.parse::<i32>() {
                    // SAFETY: kill(2) on a process this test started (found by its
                    // temporary folder); it must not outlive the test.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
        }
    }
    if Path::new("/run/netns").join(netns).exists() {
        left.push(format!("network namespace {netns}"));
    }
    left
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// One network boot: description → tree → servers → vfpgad → QEMU.
struct Boot<'a> {
    tag: &'a str,
    /// `vfpga-pxe generate` flags after the description.
    flags: &'a [&'a str],
    /// More kernel command line for the Linux entry.
    linux_args: &'a str,
    /// Serve the tree over HTTP and boot from this URL; else TFTP and `menu.ipxe`.
    http: bool,
    mem: u32,
    timeout: u32,
}

struct Booted {
    _dir: tempfile::TempDir,
    out: Outcome,
    root: PathBuf,
    tree: PathBuf,
    want: (Vec<u8>, Vec<u8>),
    http_log: String,
}

fn boot(b: &Boot<'_>) -> Booted {
    let _vm = vm_lock();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let r = guest_root(d);
    let want = inputs(&r.root, &mut Rng(0x9e37_79b9));
    let state = d.join("servers");
    std::fs::create_dir_all(state.join("recovery")).unwrap();
    let desc = d.join("pxe.toml");
    std::fs::write(&desc, description(&r, &state, &xen_gz(), b.linux_args)).unwrap();
    let tree = d.join("tree");
    let listing = sh(Command::new(vfpga_pxe())
        .arg("generate")
        .arg("--config")
        .arg(&desc)
        .arg("--out")
        .arg(&tree)
        .args(b.flags)
        .stderr(Stdio::inherit()));
    eprintln!("vfpga-pxe wrote:\n{listing}");
    let share = d.join("share");
    std::fs::create_dir_all(&share).unwrap();
    let (out, http_log, netns) = {
        let servers = Servers::start(
            b.tag,
            &state,
            &tree.join("nfs/ganesha.conf"),
            b.http.then(|| tree.join("boot")).as_deref(),
        );
        let daemon = Daemon::start(&["vm0"], &[]);
        let mut run_args: Vec<String> = vec!["--netns".into(), servers.netns.clone()];
        if b.http {
            run_args.extend([
                "--netboot".into(),
                format!("http://10.0.2.2:{HTTP_PORT}/menu.ipxe"),
            ]);
        } else {
            run_args.extend([
                "--netboot".into(),
                "menu.ipxe".into(),
                "--tftp".into(),
                tree.join("boot").display().to_string(),
            ]);
        }
        let t0 = Instant::now();
        let out = run(&GuestOpts {
            timeout: b.timeout,
            mem: b.mem,
            run_args,
            ..GuestOpts::new(&format!("pxe-{}", b.tag), &daemon.sockets, &share)
        });
        eprintln!(
            "pxe-{}: whole boot {:.1} s",
            b.tag,
            t0.elapsed().as_secs_f64()
        );
        (out, servers.http_log(), servers.netns.clone())
    };
    // Servers, daemon and QEMU are gone: nothing of this test may be left running.
    let left = leftovers(d, &netns);
    assert!(
        left.is_empty(),
        "left running: {left:#?}\n(the guest's rc was {}; console tail:\n{})",
        out.rc,
        tail(&out.console, 40)
    );
    Booted {
        out,
        root: r.root.clone(),
        tree,
        want,
        http_log,
        _dir: dir,
    }
}

/// Whether iPXE's console says it fetched `url`: its `URL...` line ends in `ok`. A slow
/// transfer prints progress figures between the two (`... 92%` and backspaces), which
/// are skipped; a failure prints an error instead of `ok`. The last file before the
/// boot may lose the `k`: the booting kernel resets the console (`ESC c`) before the
/// UART has sent it.
fn ipxe_fetched(console: &str, url: &str) -> bool {
    let start = format!("{url}...");
    console.lines().any(|l| {
        l.find(&start).is_some_and(|i| {
            l[i + start.len()..]
                .trim_start_matches(|c: char| {
                    c.is_ascii_digit() || matches!(c, '%' | ' ' | '\u{8}' | '\r')
                })
                .strip_prefix('o')
                .is_some_and(|r| r.starts_with(['k', '\u{1b}']))
        })
    })
}

#[test]
fn ipxe_progress_figures_are_not_failures() {
    let url = "http://10.0.2.2:8080/linux/vmlinuz";
    for fetched in [
        "http://10.0.2.2:8080/linux/vmlinuz... ok",
        "http://10.0.2.2:8080/linux/vmlinuz... 92%\u{8}\u{8}\u{8}\u{8} ok",
        "x\nhttp://10.0.2.2:8080/linux/vmlinuz... 7%\u{8}\u{8}\u{8}45%\u{8}\u{8}\u{8}100%\u{8}\u{8}\u{8}\u{8} ok\r\n",
        "http://10.0.2.2:8080/linux/vmlinuz... o\u{1b}c\u{1b}[?7l\u{1b}[2Jvfpga-netboot: kernel",
    ] {
        assert!(ipxe_fetched(fetched, url), "{fetched:?}");
    }
    for failed in [
        "http://10.0.2.2:8080/linux/vmlinuz... Connection timed out (error 4c0a6035)",
        "http://10.0.2.2:8080/linux/vmlinuz... 50%\u{8}\u{8}\u{8} Input/output error",
        "http://10.0.2.2:8080/linux/vmlinuz...",
        "http://10.0.2.2:8080/linux/vmlinuz... Operation canceled",
        "http://10.0.2.2:8080/linux/vmlinuz... o",
        "http://10.0.2.2:8080/initrd.img... ok",
    ] {
        assert!(!ipxe_fetched(failed, url), "{failed:?}");
    }
}

impl Booted {
    fn assert_ok(&self) {
        assert_eq!(
            self.out.rc, 0,
            "the network-booted guest failed (rc {}); console:\n{}",
            self.out.rc, self.out.console
        );
    }
    fn output(&self, name: &str) -> Vec<u8> {
        let p = self.root.join("work/out").join(name);
        std::fs::read(&p)
            .unwrap_or_else(|e| panic!("{}: {e}; console:\n{}", p.display(), self.out.console))
    }
    fn console_has(&self, needles: &[&str]) {
        for n in needles {
            assert!(
                self.out.console.contains(n),
                "console lacks {n:?}:\n{}",
                self.out.console
            );
        }
    }
    /// Asserts that iPXE fetched each URL (see [`ipxe_fetched`]).
    fn fetched(&self, urls: &[&str]) {
        for url in urls {
            assert!(
                ipxe_fetched(&self.out.console, url),
                "iPXE did not fetch {url}: no `{url}... ok` line:\n{}",
                self.out.console
            );
        }
    }
    fn timings(&self) {
        for l in self.out.console.lines().filter(|l| {
            l.contains("network boot: kernel started")
                || l.contains("] scenario pxe-")
                || l.contains("vfpga-netboot: mounted")
        }) {
            eprintln!("timing: {l}");
        }
    }
}

#[test]
#[ignore = "boots a VM; run by tests/pxe/run-tests.sh and scripts/test-all.sh"]
fn tftp_boot_runs_kernels_from_the_nfs_root() {
    let b = boot(&Boot {
        tag: "tftp",
        flags: &[],
        linux_args: "",
        http: false,
        mem: 1024,
        timeout: 400,
    });
    b.timings();
    b.assert_ok();
    b.fetched(&[
        "tftp://10.0.2.2/menu.ipxe",
        "tftp://10.0.2.2/linux/vmlinuz",
        "tftp://10.0.2.2/initrd.img",
    ]);
    b.console_has(&[
        "vfpga-netboot: eth0 is 10.0.2.15/24",
        "(NFSv4.2, rw)",
        "vfpga-init: virtio_vfpga loaded from the NFS root",
        "device:      /dev/vfpga0 (vm0)",
        "pxe: OK",
    ]);
    assert!(
        b.output("vadd_u32.bin") == b.want.0,
        "vadd_u32 differs from the reference"
    );
    assert!(
        b.output("sha256.bin") == b.want.1,
        "sha256 differs from the reference"
    );
    assert!(b.tree.join("boot/xen/xen").is_file());
}

#[test]
#[ignore = "boots a VM; run by tests/pxe/run-tests.sh and scripts/test-all.sh"]
fn http_boot_falls_back_to_nfsv3_and_runs_kernels() {
    // Everything over HTTP (the DHCP boot file is a URL; QEMU serves no TFTP), and
    // NFSv4 refused in the guest: the initramfs must fall back to NFSv3.
    let b = boot(&Boot {
        tag: "http",
        flags: &["--base-url", &format!("http://10.0.2.2:{HTTP_PORT}/")],
        linux_args: "module_blacklist=nfsv4",
        http: true,
        mem: 1024,
        timeout: 400,
    });
    b.timings();
    b.assert_ok();
    b.fetched(&[
        &format!("http://10.0.2.2:{HTTP_PORT}/menu.ipxe"),
        &format!("http://10.0.2.2:{HTTP_PORT}/linux/vmlinuz"),
        &format!("http://10.0.2.2:{HTTP_PORT}/initrd.img"),
    ]);
    b.console_has(&["NFSv4.2 mount of 10.0.2.2:", "(NFSv3, rw)", "pxe: OK"]);
    assert!(!b.out.console.contains("tftp://"), "{}", b.out.console);
    for f in ["/menu.ipxe", "/linux/vmlinuz", "/initrd.img"] {
        assert!(
            b.http_log.contains(f),
            "httpd log lacks {f}:\n{}",
            b.http_log
        );
    }
    assert!(
        b.output("vadd_u32.bin") == b.want.0,
        "vadd_u32 differs from the reference"
    );
    assert!(
        b.output("sha256.bin") == b.want.1,
        "sha256 differs from the reference"
    );
}

#[test]
#[ignore = "boots Xen under QEMU; run by tests/pxe/run-tests.sh and scripts/test-all.sh"]
fn xen_entry_boots_dom0_on_the_nfs_root_with_the_accelerator() {
    let b = boot(&Boot {
        tag: "xen",
        flags: &["--default", "xen"],
        linux_args: "",
        http: false,
        mem: 2048,
        timeout: 600,
    });
    b.timings();
    b.assert_ok();
    b.fetched(&["tftp://10.0.2.2/xen/xen", "tftp://10.0.2.2/xen/vmlinuz"]);
    b.console_has(&["(XEN) ", "(NFSv4.2, rw)", "xen-dom0: OK"]);
    let info = String::from_utf8(b.output("xen.txt")).unwrap();
    for l in [
        "type=xen",
        "version=4.17",
        "uuid=00000000-0000-0000-0000-000000000000",
    ] {
        assert!(info.contains(l), "xen.txt lacks {l}: {info}");
    }
    assert!(
        b.output("vadd_u32.bin") == b.want.0,
        "vadd_u32 in dom0 differs from the reference"
    );
}

#[test]
#[ignore = "boots a VM; run by tests/pxe/run-tests.sh and scripts/test-all.sh"]
fn a_silent_nfs_server_ends_the_boot_with_a_clear_error_in_bounded_time() {
    // Nothing answers at 198.51.100.7 in the servers' namespace: each mount attempt would
    // hang for minutes in TCP SYN retries. vfpga.mountwait must cut every attempt, and
    // the boot must end in one clear error (then vfpga.onfail=poweroff), well before the
    // QEMU timeout that a hang would run into (rc 124).
    let server = "198.51.100.7:/srv/vfpga";
    let b = boot(&Boot {
        tag: "silent",
        flags: &[],
        linux_args: &format!("vfpga.mountwait=3 nfsroot={server},vers=4.2"),
        http: false,
        mem: 1024,
        timeout: 240,
    });
    assert_ne!(
        b.out.rc, 124,
        "the boot hung on the silent server; console:\n{}",
        b.out.console
    );
    assert_ne!(b.out.rc, 0, "{}", b.out.console);
    let cut = format!(
        "vfpga-netboot: NFSv4.2 mount of {server} failed: no answer within 3 s (vfpga.mountwait)"
    );
    assert_eq!(
        b.out.console.matches(&cut).count(),
        3,
        "want three attempts, each cut at 3 s; console:\n{}",
        b.out.console
    );
    b.console_has(&[
        &format!("vfpga-netboot: error: cannot mount {server} (NFS 4.2, rw)"),
        "powering off (vfpga.onfail=poweroff)",
    ]);
    assert!(!b.out.console.contains("switch_root to"));
}

#[test]
#[ignore = "needs dnsmasq; run by tests/pxe/run-tests.sh and scripts/test-all.sh"]
fn the_dnsmasq_snippets_pass_dnsmasq_test() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let dnsmasq = ["/usr/sbin/dnsmasq", "/usr/bin/dnsmasq"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.is_file())
        .expect("dnsmasq not found (apt-get install dnsmasq-base)");
    let root = d.join("root");
    std::fs::create_dir_all(root.join("sbin")).unwrap();
    let kernel = d.join("vmlinuz");
    // Any bzImage does: the check reads its header only.
    let r = sh(Command::new(repo().join("tests/vm/fetch-kernel.sh")).stderr(Stdio::inherit()));
    let kdir = PathBuf::from(r.trim());
    let kver = std::fs::read_dir(kdir.join("lib/modules"))
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .file_name();
    let kver = kver.to_string_lossy();
    std::fs::copy(kdir.join(format!("boot/vmlinuz-{kver}")), &kernel).unwrap();
    for (name, dhcp) in [
        (
            "server",
            "range = \"192.168.42.100,192.168.42.200,255.255.255.0,12h\"\nrouter = \"192.168.42.1\"",
        ),
        ("proxy", "proxy = \"192.168.42.0\""),
    ] {
        let desc = d.join(format!("{name}.toml"));
        let mut f = std::fs::File::create(&desc).unwrap();
        write!(
            f,
            "[server]\naddress = \"192.168.42.1\"\nbase_url = \"http://192.168.42.1:8000/\"\n\
             [nfs]\nroot = \"{}\"\nclients = [\"192.168.42.0/24\"]\n\
             [dhcp]\ninterface = \"eth1\"\n{dhcp}\n\
             [[entry]]\nname = \"plain\"\nkernel = \"{}\"\ninitrd = \"{}\"\n",
            root.display(),
            kernel.display(),
            kernel.display()
        )
        .unwrap();
        drop(f);
        let out = d.join(name);
        sh(Command::new(vfpga_pxe())
            .arg("generate")
            .arg("--config")
            .arg(&desc)
            .arg("--out")
            .arg(&out)
            .stderr(Stdio::inherit()));
        let conf = out.join("dnsmasq/vfpga-pxe.conf");
        let text = std::fs::read_to_string(&conf).unwrap();
        assert!(
            text.contains("dhcp-boot=tag:ipxe,http://192.168.42.1:8000/menu.ipxe"),
            "{text}"
        );
        let check = Command::new(dnsmasq)
            .arg("--test")
            .arg(format!("--conf-file={}", conf.display()))
            .output()
            .unwrap();
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&check.stdout),
            String::from_utf8_lossy(&check.stderr)
        );
        assert!(
            check.status.success() && said.contains("syntax check OK"),
            "dnsmasq --test refused the {name} snippet: {said}\n{text}"
        );
    }
}
