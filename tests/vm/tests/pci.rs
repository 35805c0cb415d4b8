//! The PCI helpers (`vfpga-xen pci`) on a real kernel: a Debian guest under QEMU (TCG)
//! on q35 with an emulated Intel IOMMU, an igb SR-IOV NIC and a PCIe root port runs
//! `tests/vm/guest/pci/pci.sh`, which lists IOMMU groups and SR-IOV functions, enables
//! VFs, binds one to vfio-pci, fails to bind to pciback (no Xen) and a bridge to vfio-pci
//! (rolled back), unbinds, disables, and asserts on the real sysfs after each step. This
//! test checks that the scenario passed and, from its console lines, the state it saw.
//!
//! `#[ignore]`d like the other VM tests. Needs the static `vfpga-xen`
//! (`scripts/build-static.sh vfpga-xen`, or its path in `VFPGA_XEN`) and QEMU
//! (`tests/vm/build-qemu-root.sh`); builds its own image in `$VFPGA_CACHE/guest-pci`
//! (`VFPGA_PCI_GUEST` to put it elsewhere), leaving the other tests' image alone.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The modules the scenario loads (vfio_iommu_type1 is only a soft dependency of vfio;
/// xen-pciback is there to show that it does not load without Xen).
const MODULES: &str = "igb vfio-pci vfio_iommu_type1 xen-pciback";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// `$VFPGA_CACHE` as scripts/lib.sh sets it.
fn cache() -> PathBuf {
    if let Some(c) = std::env::var_os("VFPGA_CACHE").filter(|c| !c.is_empty()) {
        return c.into();
    }
    std::env::var_os("XDG_CACHE_HOME")
        .filter(|c| !c.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache"))
        .join("vfpga")
}

/// Builds the image (a no-op when nothing changed) and returns its folder.
fn build_image(repo: &Path, xen: &Path) -> PathBuf {
    let out = std::env::var_os("VFPGA_PCI_GUEST")
        .map(PathBuf::from)
        .unwrap_or_else(|| cache().join("guest-pci"));
    let o = Command::new(repo.join("tests/vm/build-guest.sh"))
        .arg("--out")
        .arg(&out)
        .arg("--scenarios")
        .arg(repo.join("tests/vm/guest/pci"))
        .args(["--modules", MODULES])
        .arg("--bin")
        .arg(format!("{}:/bin/vfpga-xen", xen.display()))
        .stderr(Stdio::inherit())
        .output()
        .expect("run tests/vm/build-guest.sh");
    assert!(o.status.success(), "tests/vm/build-guest.sh: {}", o.status);
    PathBuf::from(String::from_utf8_lossy(&o.stdout).trim())
}

/// One `PCI-STEP NAME rc=N ms=T: COMMAND` line.
#[derive(Debug)]
struct Step {
    name: String,
    rc: i32,
    ms: u64,
    command: String,
}

fn steps(console: &str) -> Vec<Step> {
    console
        .lines()
        .filter_map(|l| {
            let rest = l.trim_end_matches('\r').split_once("PCI-STEP ")?.1;
            let (head, command) = rest.split_once(": ")?;
            let mut w = head.split(' ');
            let name = w.next()?.to_owned();
            let rc = w.next()?.strip_prefix("rc=")?.parse().ok()?;
            let ms = w.next()?.strip_prefix("ms=")?.parse().ok()?;
            Some(Step {
                name,
                rc,
                ms,
                command: command.to_owned(),
            })
        })
        .collect()
}

/// `PCI-FACT K=V` lines (a line may hold several `K=V` words when V has no spaces).
fn facts(console: &str) -> HashMap<String, String> {
    let mut f = HashMap::new();
    for l in console.lines() {
        let Some(rest) = l.trim_end_matches('\r').split_once("PCI-FACT ") else {
            continue;
        };
        let rest = rest.1;
        // "vf=X vf_group=N": several pairs; otherwise one pair whose value may have spaces.
        let words: Vec<&str> = rest.split(' ').collect();
        if words.len() > 1 && words.iter().all(|w| w.contains('=')) {
            for w in words {
                let (k, v) = w.split_once('=').unwrap();
                f.insert(k.to_owned(), v.to_owned());
            }
        } else if let Some((k, v)) = rest.split_once('=') {
            f.insert(k.to_owned(), v.to_owned());
        }
    }
    f
}

fn is_bdf(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 12
        && b[4] == b':'
        && b[7] == b':'
        && b[10] == b'.'
        && s.chars()
            .enumerate()
            .all(|(i, c)| matches!(i, 4 | 7 | 10) || c.is_ascii_hexdigit())
}

#[test]
#[ignore = "boots a VM; run by scripts/test-all.sh"]
fn pci_helpers_in_iommu_guest() {
    let repo = repo();
    let xen = std::env::var_os("VFPGA_XEN").map_or_else(
        || repo.join("target/guest/x86_64-unknown-linux-gnu/release/vfpga-xen"),
        PathBuf::from,
    );
    assert!(
        xen.is_file(),
        "the static vfpga-xen not found at {} (build it: scripts/build-static.sh vfpga-xen, or set VFPGA_XEN)",
        xen.display()
    );
    let guest = build_image(&repo, &xen);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("console.log");
    // run-guest.sh stops QEMU itself (timeout, trap); the console goes to its stdout.
    let o = Command::new(repo.join("tests/vm/run-guest.sh"))
        .arg("--guest")
        .arg(&guest)
        .args(["--iommu", "--scenario", "pci", "--timeout", "300", "--log"])
        .arg(&log)
        .args(["--", "-device", "pcie-root-port,id=rp1,chassis=1"])
        .stdin(Stdio::null())
        .output()
        .expect("run tests/vm/run-guest.sh");
    let console = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let rc = o.status.code().unwrap_or(-1);
    let fail = console
        .lines()
        .find(|l| l.contains("PCI-FAIL"))
        .unwrap_or("no PCI-FAIL line");
    assert!(
        rc == 0 && console.contains("pci: OK"),
        "scenario pci failed (rc {rc}; {fail}); console:\n{console}"
    );

    // Every step ran, with the status it should have.
    let steps = steps(&console);
    eprintln!("scenario pci, steps (guest time):");
    for s in &steps {
        eprintln!(
            "  {:>6} ms  rc {}  {:<14} {}",
            s.ms, s.rc, s.name, s.command
        );
    }
    let expected: &[(&str, bool)] = &[
        ("modprobe", true),
        ("groups", true),
        ("sriov_list", true),
        ("enable2_dry", true),
        ("enable2", true),
        ("sriov_list2", true),
        ("enable3_dry", true),
        ("enable3", true),
        ("bind", true),
        ("lines", true),
        ("pciback_bound", false),
        ("pciback_free", false),
        ("rollback", false),
        ("unbind", true),
        ("disable", true),
        ("sriov_list0", true),
        ("bind_pf", true),
        ("enable_vfio", false),
        ("unbind_pf", true),
        ("enable_nodrv", false),
        ("unbind_pf2", true),
        ("list", true),
    ];
    assert_eq!(
        steps.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
        expected.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
        "steps"
    );
    for (s, (_, ok)) in steps.iter().zip(expected) {
        assert_eq!(s.rc == 0, *ok, "step {} exited with {}", s.name, s.rc);
    }

    // The state the scenario found and checked.
    let f = facts(&console);
    let fact = |k: &str| {
        f.get(k)
            .unwrap_or_else(|| panic!("no PCI-FACT {k}; console:\n{console}"))
            .as_str()
    };
    let pf = fact("pf");
    assert!(is_bdf(pf), "pf {pf}");
    assert_eq!(fact("totalvfs"), "7");
    assert_eq!(fact("hypervisor_type"), "none");
    assert!(fact("modprobe_xen_pciback").starts_with("failed"));
    let pf_group: u32 = fact("pf_group").parse().unwrap();
    let vfs2: Vec<&str> = fact("vfs2").split(' ').collect();
    let vfs3: Vec<&str> = fact("vfs3").split(' ').collect();
    assert_eq!(vfs2.len(), 2, "{vfs2:?}");
    assert_eq!(vfs3.len(), 3, "{vfs3:?}");
    assert_eq!(
        &vfs3[..2],
        &vfs2[..],
        "the first VFs come back at the same addresses"
    );
    assert!(vfs3.iter().all(|v| is_bdf(v) && *v != pf), "{vfs3:?}");
    let vf_groups: Vec<u32> = fact("vf_groups")
        .split(' ')
        .map(|g| g.parse().unwrap())
        .collect();
    assert_eq!(vf_groups.len(), 2);
    assert!(
        vf_groups[0] != vf_groups[1] && !vf_groups.contains(&pf_group),
        "each VF in its own group: PF {pf_group}, VFs {vf_groups:?}"
    );
    let vf = fact("vf");
    assert_eq!(vf, vfs3[0]);
    assert!(fact("bridge").starts_with("0000:"));
    for line in [
        format!("{vf}: bound to vfio-pci (was unbound)"),
        format!("xl pci-assignable-add {vf}"),
        format!("pci = [ \"{vf}\" ]"),
        format!("-device vfio-pci,host={vf}"),
        format!("{vf}: released (driver now none)"),
        format!("{pf}: released (driver now igb)"),
        "PCI-CHECK rollback = done".to_owned(),
        format!("PCI-CHECK {vf} driver = vfio-pci"),
        format!("PCI-CHECK {vf} driver after unbind = none"),
        format!("PCI-CHECK {vf} driver_override after unbind = (null)"),
        "PCI-CHECK sriov_drivers_autoprobe = 0".to_owned(),
        "does not run on Xen".to_owned(),
        "its driver (vfio-pci) cannot change the number of VFs".to_owned(),
        format!("{pf} has no driver"),
    ] {
        assert!(
            console.contains(&line),
            "console lacks {line:?}:\n{console}"
        );
    }
}
