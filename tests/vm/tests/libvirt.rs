//! libvirt, for real: Debian's libvirtd (9.0) runs the guest with QEMU 11 as the
//! domain's `<emulator>`, its vfpga device attached as `vfpgad --print-libvirt-xml`
//! prints it (the fragment docs/qemu.md shows), and the guest runs every kernel through
//! vfpgad; the results are compared here with independent references.
//!
//! The libvirtd is a private one (`tests/vm/libvirtd.sh`: its own configuration,
//! sockets and state, in mount and network namespaces of its own), started and stopped
//! by PID here. QEMU runs as Debian's libvirt runs it, as the user libvirt-qemu, and
//! reaches vfpgad's socket as docs/qemu.md says: `--socket-group libvirt-qemu
//! --socket-mode 0660`. `#[ignore]`d: `scripts/test-all.sh` installs libvirt
//! (`scripts/setup-tests.sh` runs `tests/vm/setup-libvirt.sh`) and runs it with the
//! other VM tests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;
use vfpga_reference::Rng;
use vfpga_vm_tests::{env, get, terminate, vm_lock, Daemon};

/// The domain's name.
const DOMAIN: &str = "vfpga-libvirt-test";
/// The vfpgad guest it is.
const GUEST: &str = "libvirt0";
/// Seconds QEMU may run at most (the emulator wrapper's `timeout`).
const QEMU_LIMIT: u64 = 300;
/// The user (and group) Debian's libvirt runs QEMU as.
const QEMU_USER: &str = "libvirt-qemu";

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", p.display()));
}

/// `file` in `dir` as a hard link, or a copy on another file system: where QEMU (not
/// root) may read it. Never written through: an earlier link is removed first (a copy
/// onto a hard link of `file` would truncate `file` itself, the shared guest image).
fn expose(file: &Path, dir: &Path) -> PathBuf {
    let to = dir.join(file.file_name().unwrap());
    match std::fs::remove_file(&to) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => panic!("remove {}: {e}", to.display()),
    }
    if std::fs::hard_link(file, &to).is_err() {
        std::fs::copy(file, &to).unwrap_or_else(|e| panic!("copy {}: {e}", file.display()));
    }
    to
}

/// The uid of a user, from `id`.
fn uid_of(user: &str) -> u32 {
    let o = Command::new("id")
        .arg("-u")
        .arg(user)
        .output()
        .expect("run id");
    assert!(
        o.status.success(),
        "no user {user} (tests/vm/setup-libvirt.sh installs libvirt)"
    );
    String::from_utf8_lossy(&o.stdout).trim().parse().unwrap()
}

/// The real uid of process `pid`, from /proc.
fn uid_of_pid(pid: &str) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// A private libvirtd, stopped (SIGTERM to its PID) on drop.
struct Libvirtd {
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl Libvirtd {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = Command::new(env().repo.join("tests/vm/libvirtd.sh"));
        // If the test process dies, libvirtd gets SIGTERM (the domain's QEMU is bounded by
        // the emulator wrapper's timeout).
        // SAFETY: only prctl(2) between fork and exec (async-signal-safe).
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        let err = std::fs::File::create(dir.path().join("libvirtd.stderr")).unwrap();
        let child = cmd
            .arg(dir.path())
            .arg(QEMU_LIMIT.to_string())
            .stdin(Stdio::null())
            .stdout(err.try_clone().unwrap())
            .stderr(err)
            .spawn()
            .expect("start tests/vm/libvirtd.sh");
        let mut d = Self {
            child: Some(child),
            dir,
        };
        // Ready when it answers on its socket.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(Ok(Some(st))) = d.child.as_mut().map(Child::try_wait) {
                panic!("libvirtd exited ({st}):\n{}", d.logs());
            }
            if d.socket().exists() && d.virsh(&["list", "--all", "--name"]).status.success() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "libvirtd did not answer within 60 s:\n{}",
                d.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        d
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("run/libvirt-sock")
    }

    /// The emulator wrapper the script made.
    fn emulator(&self) -> PathBuf {
        self.dir.path().join("qemu-system-x86_64")
    }

    /// `virsh` against this daemon, bounded.
    fn virsh(&self, args: &[&str]) -> Output {
        Command::new("timeout")
            .arg("120")
            .arg("virsh")
            .arg("-c")
            .arg(format!("qemu:///system?socket={}", self.socket().display()))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run virsh (tests/vm/setup-libvirt.sh installs it)")
    }

    /// `virsh` that must succeed; its standard output.
    fn must(&self, args: &[&str]) -> String {
        let o = self.virsh(args);
        assert!(
            o.status.success(),
            "virsh {}: {}\n{}{}",
            args.join(" "),
            o.status,
            String::from_utf8_lossy(&o.stderr),
            self.logs()
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// The tails of the daemon's and QEMU's logs.
    fn logs(&self) -> String {
        let mut s = String::new();
        for f in [
            "libvirtd.stderr".to_owned(),
            "log/libvirtd.log".to_owned(),
            format!("log/qemu/{DOMAIN}.log"),
        ] {
            if let Ok(text) = std::fs::read_to_string(self.dir.path().join(&f)) {
                let lines: Vec<&str> = text.lines().collect();
                s.push_str(&format!("--- {f} (last 40 lines)\n"));
                for l in &lines[lines.len().saturating_sub(40)..] {
                    s.push_str(l);
                    s.push('\n');
                }
            }
        }
        s
    }

    /// Stops the daemon; whether it exited cleanly within 30 s.
    fn stop(&mut self) -> bool {
        // libvirtd itself is the child: the script and unshare exec into it.
        self.child
            .take()
            .is_some_and(|mut c| terminate(&mut c, Duration::from_secs(30)))
    }
}

impl Drop for Libvirtd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The defined domain: destroyed (if running) and undefined on drop.
struct Domain<'a>(&'a Libvirtd);

impl Drop for Domain<'_> {
    fn drop(&mut self) {
        // Running, paused, or anything but off: destroyed before it is undefined.
        if !self
            .0
            .virsh(&["domstate", DOMAIN])
            .stdout
            .starts_with(b"shut off")
        {
            let _ = self.0.virsh(&["destroy", DOMAIN]);
        }
        let _ = self.0.virsh(&["undefine", DOMAIN]);
    }
}

/// The domain XML: the fragment `vfpgad --print-libvirt-xml` printed, as it is, with
/// this test's type, name, machine, memory, kernel, console and share added.
fn domain_xml(fragment: &str, emulator: &Path, work: &Path, share: &Path, machine: &str) -> String {
    let open = fragment
        .lines()
        .find(|l| l.starts_with("<domain "))
        .expect("the fragment has a <domain> element");
    assert!(fragment.trim_end().ends_with("</domain>"), "{fragment}");
    let e = env();
    let kernel = [e.guest.join("vmlinux"), e.guest.join("vmlinuz")]
        .into_iter()
        .find(|k| k.is_file())
        .expect("the guest image has a kernel");
    let kernel = expose(&kernel, work);
    let initrd = expose(&e.guest.join("initrd.gz"), work);
    let ours = format!(
        "  <name>{DOMAIN}</name>
  <memory unit='MiB'>1024</memory>
  <vcpu>2</vcpu>
  <os>
    <type arch='x86_64' machine='{machine}'>hvm</type>
    <kernel>{}</kernel>
    <initrd>{}</initrd>
    <cmdline>console=ttyS0 panic=-1 quiet vfpga.scenario=kernels</cmdline>
  </os>
  <features><acpi/></features>
  <cpu mode='maximum'/>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>{}</emulator>
    <serial type='file'>
      <source path='{}'/>
      <target port='0'/>
    </serial>
    <filesystem type='mount' accessmode='mapped'>
      <source dir='{}'/>
      <target dir='host'/>
    </filesystem>
    <memballoon model='none'/>
  </devices>
",
        kernel.display(),
        initrd.display(),
        emulator.display(),
        work.join("console.log").display(),
        share.display()
    );
    // TCG: no KVM on the test machines.
    let typed = open.replacen("<domain ", "<domain type='qemu' ", 1);
    fragment.replacen(open, &format!("{typed}\n{ours}"), 1)
}

/// Defines the domain of `xml`, starts it, waits until the guest has powered off, checks
/// its results against `want`, and undefines it.
fn run_guest(
    lv: &Libvirtd,
    xml: &Path,
    machine: &str,
    console: &Path,
    share: &Path,
    want: &[(&str, Vec<u8>)],
) {
    // Outputs and console of this run only.
    let _ = std::fs::remove_dir_all(share.join("out"));
    let _ = std::fs::remove_file(console);
    lv.must(&["define", xml.to_str().unwrap()]);
    let started = lv.must(&["start", DOMAIN]);
    eprintln!("[{machine}] virsh start {DOMAIN}: {}", started.trim());
    // QEMU runs as libvirt-qemu (the pid libvirt keeps is the emulator wrapper's
    // `timeout`, QEMU's parent, of the same user).
    let pidfile = lv.dir.path().join(format!("run/qemu/{DOMAIN}.pid"));
    let pid = std::fs::read_to_string(&pidfile).expect("libvirt's pid file of the domain");
    assert_eq!(
        uid_of_pid(pid.trim()),
        Some(uid_of(QEMU_USER)),
        "QEMU (pid {}) runs as {QEMU_USER}",
        pid.trim()
    );
    eprintln!("[{machine}] QEMU pid {} runs as {QEMU_USER}", pid.trim());

    // The guest powers off after its DONE line; libvirt then destroys the domain.
    let deadline = Instant::now() + Duration::from_secs(QEMU_LIMIT);
    loop {
        let state = lv.must(&["domstate", DOMAIN]);
        if state.trim() == "shut off" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "domain still {} after {QEMU_LIMIT} s:\n{}",
            state.trim(),
            lv.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let text = String::from_utf8_lossy(&std::fs::read(console).unwrap_or_default()).into_owned();
    for l in text
        .lines()
        .filter(|l| l.contains("device:") || l.contains("kernels: OK") || l.contains("VFPGA-DONE"))
    {
        eprintln!("[{machine}] guest: {}", l.trim_end());
    }
    assert!(
        text.contains("VFPGA-DONE rc=0"),
        "the scenario failed; console:\n{text}\n{}",
        lv.logs()
    );
    assert!(
        text.contains(&format!("device:      /dev/vfpga0 ({GUEST})")),
        "the device is vfpgad's guest {GUEST}:\n{text}"
    );
    for (name, expected) in want {
        let got = get(share, &format!("out/{name}.bin"));
        assert!(
            got == *expected,
            "{name}: guest result differs from the reference ({} vs {} bytes)",
            got.len(),
            expected.len()
        );
        eprintln!(
            "[{machine}] {name}: {} bytes, equal to the reference",
            got.len()
        );
    }
    // This run's part of the domain's log (libvirt appends).
    let log = std::fs::read_to_string(lv.dir.path().join(format!("log/qemu/{DOMAIN}.log")))
        .unwrap_or_default();
    let reason = log
        .rsplit("starting up libvirt version:")
        .next()
        .unwrap_or_default();
    if let Some(l) = reason.lines().next() {
        eprintln!("[{machine}] libvirt version:{l}");
    }
    assert!(
        reason.contains("shutting down, reason=shutdown"),
        "libvirt saw the guest power off:\n{}",
        lv.logs()
    );
    lv.must(&["undefine", DOMAIN]);
}

/// What `vfpgad --socket GUEST=SOCKET --print-libvirt-xml GUEST` prints.
fn fragment_for(guest: &str, socket: &Path) -> String {
    let out = Command::new(&env().vfpgad)
        .arg("--socket")
        .arg(format!("{guest}={}", socket.display()))
        .arg("--print-libvirt-xml")
        .arg(guest)
        .output()
        .expect("run vfpgad --print-libvirt-xml");
    assert!(
        out.status.success(),
        "vfpgad --print-libvirt-xml: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
#[ignore = "boots a VM under libvirtd; run by scripts/test-all.sh"]
fn libvirtd_starts_a_guest_that_runs_kernels_through_vfpgad() {
    let _vm = vm_lock();
    let share = tempfile::tempdir().unwrap();
    let s = share.path();
    let want = kernel_inputs(s, &mut Rng(1414));
    // QEMU, as libvirt-qemu, writes the guest's outputs (the share is mapped: ownership
    // the guest sets lives in extended attributes).
    chmod(s, 0o777);
    let mut d = Daemon::start(
        &[GUEST],
        &["--socket-group", QEMU_USER, "--socket-mode", "0660"],
    );
    chmod(d.sockets[0].parent().unwrap(), 0o755);

    let mut lv = Libvirtd::start();
    let work = tempfile::tempdir().unwrap();
    chmod(work.path(), 0o777);
    let console = work.path().join("console.log");
    let xml = work.path().join("domain.xml");
    let dom = Domain(&lv);

    // First a vfpgad without the group: QEMU (libvirt-qemu) may not connect, and
    // `virsh start` says so.
    let mut closed = Daemon::start(&["closed0"], &[]);
    chmod(closed.sockets[0].parent().unwrap(), 0o755);
    let fragment = fragment_for("closed0", &closed.sockets[0]);
    std::fs::write(
        &xml,
        domain_xml(&fragment, &lv.emulator(), work.path(), s, "pc"),
    )
    .unwrap();
    lv.must(&["define", xml.to_str().unwrap()]);
    let refused = lv.virsh(&["start", DOMAIN]);
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && err.contains("Permission denied"),
        "virsh start with a socket closed to {QEMU_USER}: {}\n{err}",
        refused.status
    );
    eprintln!(
        "socket closed to {QEMU_USER}: {}",
        err.trim().replace('\n', " | ")
    );
    lv.must(&["undefine", DOMAIN]);
    assert!(closed.stop(), "vfpgad (closed0) stops cleanly");

    // The fragment, as an operator gets it; the guest on both of QEMU's PC machines.
    let fragment = fragment_for(GUEST, &d.sockets[0]);
    for machine in ["pc", "q35"] {
        let xml_text = domain_xml(&fragment, &lv.emulator(), work.path(), s, machine);
        std::fs::write(&xml, xml_text).unwrap();
        run_guest(&lv, &xml, machine, &console, s, &want);
    }
    drop(dom);
    assert!(
        !lv.must(&["list", "--all", "--name"]).contains(DOMAIN),
        "undefined"
    );
    assert!(lv.stop(), "libvirtd stops cleanly on SIGTERM");
    assert!(d.stop(), "vfpgad stops cleanly");
}
