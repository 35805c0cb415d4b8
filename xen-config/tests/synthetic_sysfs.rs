//! PCI helpers against synthetic sysfs trees: edge cases a real machine rarely shows
//! (no IOMMU, shared groups, no SR-IOV), and the order of sysfs writes.
#![allow(clippy::unwrap_used)]

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use vfpga_xen::pci::{Bdf, PassDriver, Sysfs};

/// A sysfs tree under a temporary folder.
struct Tree {
    dir: tempfile::TempDir,
}

impl Tree {
    fn new() -> Self {
        let t = Self {
            dir: tempfile::tempdir().unwrap(),
        };
        for d in ["bus/pci/devices", "bus/pci/drivers", "kernel/iommu_groups"] {
            std::fs::create_dir_all(t.root().join(d)).unwrap();
        }
        std::fs::write(t.root().join("bus/pci/drivers_probe"), "").unwrap();
        t
    }

    fn root(&self) -> PathBuf {
        self.dir.path().to_owned()
    }

    fn dev(&self, bdf: &str) -> PathBuf {
        self.root().join("bus/pci/devices").join(bdf)
    }

    /// Adds a function with ids, optional driver and IOMMU group.
    fn add(
        &self,
        bdf: &str,
        vendor: u16,
        device: u16,
        driver: Option<&str>,
        group: Option<u32>,
    ) -> &Self {
        let d = self.dev(bdf);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("vendor"), format!("0x{vendor:04x}\n")).unwrap();
        std::fs::write(d.join("device"), format!("0x{device:04x}\n")).unwrap();
        std::fs::write(d.join("class"), "0x020000\n").unwrap();
        std::fs::write(d.join("driver_override"), "(null)\n").unwrap();
        if let Some(drv) = driver {
            self.driver(drv);
            symlink(
                self.root().join("bus/pci/drivers").join(drv),
                d.join("driver"),
            )
            .unwrap();
        }
        if let Some(g) = group {
            let gdir = self.root().join("kernel/iommu_groups").join(g.to_string());
            std::fs::create_dir_all(gdir.join("devices")).unwrap();
            symlink(&gdir, d.join("iommu_group")).unwrap();
            symlink(&d, gdir.join("devices").join(bdf)).unwrap();
        }
        self
    }

    fn driver(&self, name: &str) {
        let p = self.root().join("bus/pci/drivers").join(name);
        std::fs::create_dir_all(&p).unwrap();
        for f in ["bind", "unbind"] {
            std::fs::write(p.join(f), "").unwrap();
        }
    }

    fn sriov(&self, pf: &str, numvfs: u32, total: u32, vfs: &[&str]) {
        let d = self.dev(pf);
        std::fs::write(d.join("sriov_totalvfs"), format!("{total}\n")).unwrap();
        std::fs::write(d.join("sriov_numvfs"), format!("{numvfs}\n")).unwrap();
        std::fs::write(d.join("sriov_drivers_autoprobe"), "1\n").unwrap();
        for (i, vf) in vfs.iter().enumerate() {
            symlink(self.dev(vf), d.join(format!("virtfn{i}"))).unwrap();
            symlink(&d, self.dev(vf).join("physfn")).unwrap();
        }
    }
}

fn bdf(s: &str) -> Bdf {
    s.parse().unwrap()
}

fn writes(sys: &Sysfs, root: &Path) -> Vec<(String, String)> {
    sys.journal()
        .into_iter()
        .map(|(p, v)| (p.strip_prefix(root).unwrap().display().to_string(), v))
        .collect()
}

#[test]
fn lists_groups_and_sriov() {
    let t = Tree::new();
    t.add("0000:00:02.0", 0x8086, 0x10c9, Some("igb"), Some(3))
        .add("0000:00:12.0", 0x8086, 0x10ca, None, Some(7))
        .add("0000:00:12.2", 0x8086, 0x10ca, None, Some(8))
        .add("0000:00:1f.0", 0x8086, 0x2918, Some("lpc_ich"), Some(9))
        .add("0000:00:1f.3", 0x8086, 0x2930, Some("i801_smbus"), Some(9));
    t.sriov("0000:00:02.0", 2, 7, &["0000:00:12.0", "0000:00:12.2"]);
    let sys = Sysfs::new(t.root(), false);
    let groups = sys.iommu_groups().unwrap();
    assert_eq!(
        groups.iter().map(|g| g.id).collect::<Vec<_>>(),
        vec![3, 7, 8, 9]
    );
    assert_eq!(groups[3].devices.len(), 2, "group 9 is shared");
    let pf = sys.device(bdf("00:02.0")).unwrap();
    assert_eq!(
        (pf.vendor, pf.device, pf.sriov),
        (0x8086, 0x10c9, Some((2, 7)))
    );
    assert_eq!(pf.driver.as_deref(), Some("igb"));
    assert_eq!(sys.vfs(pf.bdf), vec![bdf("00:12.0"), bdf("00:12.2")]);
    assert_eq!(sys.device(bdf("00:12.2")).unwrap().physfn, Some(pf.bdf));
}

#[test]
fn no_iommu_means_no_groups_and_a_warning() {
    let t = Tree::new();
    t.add("0000:00:03.0", 0x1af4, 0x1041, Some("virtio-pci"), None);
    t.driver("vfio-pci");
    let sys = Sysfs::new(t.root(), true);
    assert!(sys.iommu_groups().unwrap().is_empty());
    let r = sys.bind(bdf("00:03.0"), PassDriver::VfioPci).unwrap();
    assert!(r.warnings[0].contains("IOMMU is off"), "{:?}", r.warnings);
}

#[test]
fn sriov_enable_turns_autoprobe_off_and_goes_through_zero() {
    let t = Tree::new();
    t.add("0000:00:02.0", 0x8086, 0x10c9, Some("igb"), Some(3));
    t.sriov("0000:00:02.0", 2, 7, &[]);
    let sys = Sysfs::new(t.root(), false);
    sys.sriov_enable(bdf("00:02.0"), 4).unwrap();
    let dev = "bus/pci/devices/0000:00:02.0";
    assert_eq!(
        writes(&sys, &t.root()),
        vec![
            (format!("{dev}/sriov_drivers_autoprobe"), "0".into()),
            (format!("{dev}/sriov_numvfs"), "0".into()),
            (format!("{dev}/sriov_numvfs"), "4".into()),
        ]
    );
    let e = sys.sriov_enable(bdf("00:02.0"), 8).unwrap_err().to_string();
    assert!(e.contains("at most 7 VFs"), "{e}");
}

#[test]
fn no_sriov_and_vf_given_as_pf_are_refused() {
    let t = Tree::new();
    t.add("0000:00:03.0", 0x1af4, 0x1041, Some("virtio-pci"), Some(1))
        .add("0000:00:02.0", 0x8086, 0x10c9, Some("igb"), Some(3))
        .add("0000:00:12.0", 0x8086, 0x10ca, None, Some(7));
    t.sriov("0000:00:02.0", 1, 7, &["0000:00:12.0"]);
    let sys = Sysfs::new(t.root(), true);
    let e = sys.sriov_enable(bdf("00:03.0"), 1).unwrap_err().to_string();
    assert!(e.contains("no SR-IOV capability"), "{e}");
    let e = sys.sriov_enable(bdf("00:12.0"), 1).unwrap_err().to_string();
    assert!(e.contains("is a virtual function"), "{e}");
    let e = sys.sriov_disable(bdf("00:09.0")).unwrap_err().to_string();
    assert!(e.contains("no PCI function 0000:00:09.0"), "{e}");
}

#[test]
fn bind_warns_about_shared_groups_and_rolls_back_on_failure() {
    let t = Tree::new();
    t.add("0000:00:1f.0", 0x8086, 0x2918, Some("lpc_ich"), Some(9))
        .add("0000:00:1f.3", 0x8086, 0x2930, Some("i801_smbus"), Some(9));
    t.driver("vfio-pci");
    let sys = Sysfs::new(t.root(), false);
    // A synthetic tree has no kernel behind it: the bind cannot take, so it must be
    // rolled back and reported.
    let e = sys
        .bind(bdf("00:1f.3"), PassDriver::VfioPci)
        .unwrap_err()
        .to_string();
    assert!(e.contains("did not bind to vfio-pci"), "{e}");
    assert!(e.contains("rolled back"), "{e}");
    let w = writes(&sys, &t.root());
    let dev = "bus/pci/devices/0000:00:1f.3";
    assert_eq!(w[0], (format!("{dev}/driver_override"), "vfio-pci".into()));
    assert_eq!(
        w[1],
        (
            "bus/pci/drivers/i801_smbus/unbind".into(),
            "0000:00:1f.3".into()
        )
    );
    assert_eq!(
        w[2],
        ("bus/pci/drivers_probe".into(), "0000:00:1f.3".into())
    );
    assert_eq!(
        w[3],
        (format!("{dev}/driver_override"), "\n".into()),
        "override restored"
    );
    assert!(w.contains(&(
        "bus/pci/drivers/i801_smbus/bind".into(),
        "0000:00:1f.3".into()
    )));

    let dry = Sysfs::new(t.root(), true);
    let r = dry.bind(bdf("00:1f.3"), PassDriver::VfioPci).unwrap();
    assert!(
        r.warnings
            .iter()
            .any(|w| w.contains("also holds 0000:00:1f.0 (driver lpc_ich)")),
        "{:?}",
        r.warnings
    );
    // A driver not loaded yet: a dry run says so and still shows the writes a real run
    // would make; a real run refuses.
    let r = dry.bind(bdf("00:1f.3"), PassDriver::Pciback).unwrap();
    assert!(
        r.warnings
            .iter()
            .any(|w| w.contains("modprobe xen-pciback")),
        "{:?}",
        r.warnings
    );
    assert!(dry
        .journal()
        .iter()
        .any(|(p, v)| p.ends_with("driver_override") && v == "pciback"));
    let e = Sysfs::new(t.root(), false)
        .bind(bdf("00:1f.3"), PassDriver::Pciback)
        .unwrap_err()
        .to_string();
    assert!(e.contains("modprobe xen-pciback"), "{e}");
}

// Found on a real kernel (tests/vm/guest/pci/pci.sh): writing sriov_numvfs of a PF with
// no driver, or with one that cannot configure SR-IOV (vfio-pci without enable_sriov=1),
// fails with ENOENT, which read as "No such file or directory" on a file that exists.
#[test]
fn sriov_enable_on_a_pf_without_driver_is_refused_before_any_write() {
    let t = Tree::new();
    t.add("0000:00:02.0", 0x8086, 0x10c9, None, Some(3));
    t.sriov("0000:00:02.0", 0, 7, &[]);
    let sys = Sysfs::new(t.root(), false);
    let e = sys.sriov_enable(bdf("00:02.0"), 2).unwrap_err().to_string();
    assert!(e.contains("0000:00:02.0 has no driver"), "{e}");
    assert!(e.contains("vfpga-xen pci unbind 0000:00:02.0"), "{e}");
    assert!(sys.journal().is_empty(), "{:?}", sys.journal());
}

#[test]
fn sriov_numvfs_refused_with_enoent_names_the_pf_driver() {
    let t = Tree::new();
    t.add("0000:00:02.0", 0x8086, 0x10c9, Some("vfio-pci"), Some(3));
    t.sriov("0000:00:02.0", 0, 8, &[]);
    // A write that fails with ENOENT, as the kernel's does: a dangling link.
    let numvfs = t.dev("0000:00:02.0").join("sriov_numvfs");
    std::fs::remove_file(&numvfs).unwrap();
    symlink(t.root().join("no/such/dir/sriov_numvfs"), &numvfs).unwrap();
    let sys = Sysfs::new(t.root(), false);
    let e = sys.sriov_enable(bdf("00:02.0"), 2).unwrap_err().to_string();
    assert!(
        e.contains("its driver (vfio-pci) cannot change the number of VFs"),
        "{e}"
    );
    assert!(e.contains("enable_sriov=1"), "{e}");
    assert!(!e.contains("No such file"), "{e}");
    let e = sys.sriov_disable(bdf("00:02.0")).unwrap_err().to_string();
    assert!(e.contains("cannot change the number of VFs"), "{e}");
}

// Found on a real kernel: `modprobe xen-pciback` fails (ENODEV) on a kernel that does
// not run on Xen, so "modprobe xen-pciback" alone was no advice there.
#[test]
fn pciback_without_xen_says_so_and_with_xen_says_modprobe() {
    let t = Tree::new();
    t.add("0000:00:12.0", 0x8086, 0x10ca, None, Some(7));
    let sys = Sysfs::new(t.root(), false);
    let e = sys
        .bind(bdf("00:12.0"), PassDriver::Pciback)
        .unwrap_err()
        .to_string();
    assert!(e.contains("does not run on Xen"), "{e}");
    assert!(e.contains("--driver vfio-pci"), "{e}");
    assert!(sys.journal().is_empty(), "{:?}", sys.journal());
    std::fs::create_dir_all(t.root().join("hypervisor")).unwrap();
    std::fs::write(t.root().join("hypervisor/type"), "xen\n").unwrap();
    let e = sys
        .bind(bdf("00:12.0"), PassDriver::Pciback)
        .unwrap_err()
        .to_string();
    assert_eq!(e, "driver pciback is not loaded: modprobe xen-pciback");
}
