//! libvirt, for real: Debian's libvirtd (9.0) runs the guest with QEMU 11 as the
//! domain's `<emulator>`, its vfpga device attached as `vfpgad --print-libvirt-xml`
//! prints it (the fragment docs/qemu.md shows), and the guest runs every kernel through
//! vfpgad; the results are compared here with independent references.
//!
//! The libvirtd is a private one (`tests/vm/libvirtd.sh`: its own configuration,
//! sockets and state, in mount and network namespaces of its own), started and stopped
//! by PID here. `#[ignore]`d: `scripts/test-all.sh` installs libvirt
//! (`scripts/setup-tests.sh` runs `tests/vm/setup-libvirt.sh`) and runs it with the
//! other VM tests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;
use vfpga_reference::Rng;
use vfpga_vm_tests::{env, get, vm_lock, Daemon};

/// The domain's name.
const DOMAIN: &str = "vfpga-libvirt-test";
/// The vfpgad guest it is.
const GUEST: &str = "libvirt0";
/// Seconds QEMU may run at most (the emulator wrapper's `timeout`).
const QEMU_LIMIT: u64 = 300;

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
        let Some(mut c) = self.child.take() else {
            return false;
        };
        // SAFETY: kill(2) on our own, not yet reaped child (libvirtd itself: the script
        // and unshare exec into it).
        unsafe { libc::kill(i32::try_from(c.id()).unwrap(), libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(st)) = c.try_wait() {
                return st.success();
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                let _ = c.wait();
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
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
        if self
            .0
            .virsh(&["domstate", DOMAIN])
            .stdout
            .starts_with(b"running")
        {
            let _ = self.0.virsh(&["destroy", DOMAIN]);
        }
        let _ = self.0.virsh(&["undefine", DOMAIN]);
    }
}

/// The domain XML: the fragment `vfpgad --print-libvirt-xml` printed, as it is, with
/// this test's type, name, memory, kernel, console and share added.
fn domain_xml(fragment: &str, emulator: &Path, console: &Path, share: &Path) -> String {
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
    let ours = format!(
        "  <name>{DOMAIN}</name>
  <memory unit='MiB'>1024</memory>
  <vcpu>2</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
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
    <filesystem type='mount' accessmode='passthrough'>
      <source dir='{}'/>
      <target dir='host'/>
    </filesystem>
    <memballoon model='none'/>
  </devices>
",
        kernel.display(),
        e.guest.join("initrd.gz").display(),
        emulator.display(),
        console.display(),
        share.display()
    );
    // TCG: no KVM on the test machines.
    let typed = open.replacen("<domain ", "<domain type='qemu' ", 1);
    fragment.replacen(open, &format!("{typed}\n{ours}"), 1)
}

#[test]
#[ignore = "boots a VM under libvirtd; run by scripts/test-all.sh"]
fn libvirtd_starts_a_guest_that_runs_kernels_through_vfpgad() {
    let _vm = vm_lock();
    let share = tempfile::tempdir().unwrap();
    let s = share.path();
    let want = kernel_inputs(s, &mut Rng(1414));
    let mut d = Daemon::start(&[GUEST], &[]);

    // The fragment, as an operator gets it.
    let out = Command::new(&env().vfpgad)
        .arg("--socket")
        .arg(format!("{GUEST}={}", d.sockets[0].display()))
        .arg("--print-libvirt-xml")
        .arg(GUEST)
        .output()
        .expect("run vfpgad --print-libvirt-xml");
    assert!(
        out.status.success(),
        "vfpgad --print-libvirt-xml: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let fragment = String::from_utf8(out.stdout).unwrap();

    let mut lv = Libvirtd::start();
    let work = tempfile::tempdir().unwrap();
    let console = work.path().join("console.log");
    let xml = work.path().join("domain.xml");
    std::fs::write(&xml, domain_xml(&fragment, &lv.emulator(), &console, s)).unwrap();
    let dom = Domain(&lv);
    lv.must(&["define", xml.to_str().unwrap()]);
    let started = lv.must(&["start", DOMAIN]);
    eprintln!("virsh start {DOMAIN}: {}", started.trim());

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
    let text = String::from_utf8_lossy(&std::fs::read(&console).unwrap_or_default()).into_owned();
    for l in text
        .lines()
        .filter(|l| l.contains("device:") || l.contains("kernels: OK") || l.contains("VFPGA-DONE"))
    {
        eprintln!("guest: {}", l.trim_end());
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
        let got = get(s, &format!("out/{name}.bin"));
        assert!(
            got == expected,
            "{name}: guest result differs from the reference ({} vs {} bytes)",
            got.len(),
            expected.len()
        );
        eprintln!("{name}: {} bytes, equal to the reference", got.len());
    }
    let reason = std::fs::read_to_string(lv.dir.path().join(format!("log/qemu/{DOMAIN}.log")))
        .unwrap_or_default();
    for l in reason.lines().filter(|l| l.contains("qemu version:")) {
        eprintln!("libvirt: {}", l.trim());
    }
    assert!(
        reason.contains("shutting down, reason=shutdown"),
        "libvirt saw the guest power off:\n{}",
        lv.logs()
    );
    drop(dom);
    assert!(
        !lv.must(&["list", "--all", "--name"]).contains(DOMAIN),
        "undefined"
    );
    assert!(lv.stop(), "libvirtd stops cleanly on SIGTERM");
    assert!(d.stop(), "vfpgad stops cleanly");
}
