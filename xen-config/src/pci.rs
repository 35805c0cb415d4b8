//! PCI helpers over sysfs: IOMMU groups, SR-IOV physical and virtual functions,
//! binding a function to vfio-pci or xen-pciback through `driver_override` (rolled
//! back if the bind fails), and the lines that hand it to a guest.
//!
//! Every path is under a configurable root (normally `/sys`) so the logic runs against
//! synthetic trees in tests; every write is journalled, and a dry run only journals.

use std::cell::RefCell;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// A failed PCI operation, with what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum PciError {
    /// A sysfs read or write failed.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// "reading" or "writing".
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The request does not fit the hardware or the system state.
    #[error("{0}")]
    Refused(String),
}

/// A PCI function address: domain:bus:device.function.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Bdf {
    /// Segment.
    pub domain: u16,
    /// Bus.
    pub bus: u8,
    /// Device (0-31).
    pub dev: u8,
    /// Function (0-7).
    pub func: u8,
}

impl FromStr for Bdf {
    type Err = String;

    /// Parses `DDDD:BB:DD.F` or `BB:DD.F` (domain 0).
    fn from_str(s: &str) -> Result<Self, String> {
        let bad =
            || format!("{s:?} is not a PCI address (expected DDDD:BB:DD.F, e.g. 0000:03:00.1)");
        let parts: Vec<&str> = s.split(':').collect();
        let (domain, bus, rest) = match parts[..] {
            [d, b, r] => (u16::from_str_radix(d, 16).map_err(|_| bad())?, b, r),
            [b, r] => (0, b, r),
            _ => return Err(bad()),
        };
        let (dev, func) = rest.split_once('.').ok_or_else(bad)?;
        let hex2 = |x: &str| {
            (x.len() <= 2)
                .then(|| u8::from_str_radix(x, 16).ok())
                .flatten()
        };
        let bdf = Self {
            domain,
            bus: hex2(bus).ok_or_else(bad)?,
            dev: hex2(dev).ok_or_else(bad)?,
            func: func.parse().map_err(|_| bad())?,
        };
        if bdf.dev > 31 || bdf.func > 7 {
            return Err(bad());
        }
        Ok(bdf)
    }
}

impl fmt::Display for Bdf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04x}:{:02x}:{:02x}.{}",
            self.domain, self.bus, self.dev, self.func
        )
    }
}

/// A driver a function can be handed to for passthrough.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PassDriver {
    /// VFIO, for KVM/QEMU guests and user-space drivers.
    VfioPci,
    /// xen-pciback, for Xen guests.
    Pciback,
}

impl PassDriver {
    /// The driver's name in sysfs.
    pub fn sysfs_name(self) -> &'static str {
        match self {
            PassDriver::VfioPci => "vfio-pci",
            PassDriver::Pciback => "pciback",
        }
    }

    /// The module to load for it.
    pub fn module(self) -> &'static str {
        match self {
            PassDriver::VfioPci => "vfio-pci",
            PassDriver::Pciback => "xen-pciback",
        }
    }
}

impl FromStr for PassDriver {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "vfio-pci" | "vfio" => Ok(PassDriver::VfioPci),
            "pciback" | "xen-pciback" => Ok(PassDriver::Pciback),
            _ => Err(format!("driver {s:?}: use vfio-pci or pciback")),
        }
    }
}

/// What sysfs says about one function.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PciDevice {
    /// Address.
    pub bdf: Bdf,
    /// Vendor id.
    pub vendor: u16,
    /// Device id.
    pub device: u16,
    /// Class code (24 bits).
    pub class: u32,
    /// Bound driver.
    pub driver: Option<String>,
    /// IOMMU group, if the IOMMU is on.
    pub iommu_group: Option<u32>,
    /// SR-IOV: the physical function of this virtual function.
    pub physfn: Option<Bdf>,
    /// SR-IOV: (enabled VFs, most VFs) for a physical function.
    pub sriov: Option<(u32, u32)>,
}

/// An IOMMU group and its functions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IommuGroup {
    /// Group number.
    pub id: u32,
    /// Functions in it.
    pub devices: Vec<PciDevice>,
}

/// Outcome of a bind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BindReport {
    /// Driver before.
    pub previous: Option<String>,
    /// Things the user should know (e.g. other devices in the group).
    pub warnings: Vec<String>,
}

/// sysfs under a root.
#[derive(Debug)]
pub struct Sysfs {
    root: PathBuf,
    dry_run: bool,
    journal: RefCell<Vec<(PathBuf, String)>>,
}

impl Sysfs {
    /// Whether writes are only journalled.
    pub fn dry_run(&self) -> bool {
        self.dry_run
    }

    /// sysfs at `root` (normally `/sys`). With `dry_run`, writes are only journalled.
    pub fn new(root: impl Into<PathBuf>, dry_run: bool) -> Self {
        Self {
            root: root.into(),
            dry_run,
            journal: RefCell::new(Vec::new()),
        }
    }

    /// Every write made (or, in a dry run, that would have been made), in order.
    pub fn journal(&self) -> Vec<(PathBuf, String)> {
        self.journal.borrow().clone()
    }

    fn pci(&self) -> PathBuf {
        self.root.join("bus/pci")
    }

    fn dev_dir(&self, bdf: Bdf) -> PathBuf {
        self.pci().join("devices").join(bdf.to_string())
    }

    fn read(&self, path: &Path) -> Result<String, PciError> {
        std::fs::read_to_string(path)
            .map(|s| s.trim().to_owned())
            .map_err(|source| PciError::Io {
                what: "reading",
                path: path.to_owned(),
                source,
            })
    }

    fn write(&self, path: &Path, value: &str) -> Result<(), PciError> {
        self.journal
            .borrow_mut()
            .push((path.to_owned(), value.to_owned()));
        if self.dry_run {
            return Ok(());
        }
        std::fs::write(path, value).map_err(|source| PciError::Io {
            what: "writing",
            path: path.to_owned(),
            source,
        })
    }

    fn hex(&self, path: &Path) -> Option<u32> {
        let s = self.read(path).ok()?;
        u32::from_str_radix(s.trim_start_matches("0x"), 16).ok()
    }

    /// The last path component of a symlink's target.
    fn link_name(path: &Path) -> Option<String> {
        std::fs::read_link(path)
            .ok()?
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
    }

    /// One function.
    pub fn device(&self, bdf: Bdf) -> Result<PciDevice, PciError> {
        let dir = self.dev_dir(bdf);
        if !dir.exists() {
            return Err(PciError::Refused(format!(
                "no PCI function {bdf} ({} does not exist)",
                dir.display()
            )));
        }
        let total = self
            .read(&dir.join("sriov_totalvfs"))
            .ok()
            .and_then(|s| s.parse().ok());
        let num = self
            .read(&dir.join("sriov_numvfs"))
            .ok()
            .and_then(|s| s.parse().ok());
        Ok(PciDevice {
            bdf,
            vendor: self
                .hex(&dir.join("vendor"))
                .and_then(|v| u16::try_from(v).ok())
                .unwrap_or(0),
            device: self
                .hex(&dir.join("device"))
                .and_then(|v| u16::try_from(v).ok())
                .unwrap_or(0),
            class: self.hex(&dir.join("class")).unwrap_or(0),
            driver: Self::link_name(&dir.join("driver")),
            iommu_group: Self::link_name(&dir.join("iommu_group")).and_then(|n| n.parse().ok()),
            physfn: Self::link_name(&dir.join("physfn")).and_then(|n| n.parse().ok()),
            sriov: total.filter(|t| *t > 0).map(|t| (num.unwrap_or(0), t)),
        })
    }

    /// Every function, by address.
    pub fn devices(&self) -> Result<Vec<PciDevice>, PciError> {
        let dir = self.pci().join("devices");
        let entries = std::fs::read_dir(&dir).map_err(|source| PciError::Io {
            what: "reading",
            path: dir.clone(),
            source,
        })?;
        let mut bdfs: Vec<Bdf> = entries
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect();
        bdfs.sort();
        bdfs.into_iter().map(|b| self.device(b)).collect()
    }

    /// IOMMU groups (empty when the IOMMU is off).
    pub fn iommu_groups(&self) -> Result<Vec<IommuGroup>, PciError> {
        let devices = self.devices()?;
        let mut groups: Vec<IommuGroup> = Vec::new();
        for d in devices {
            let Some(id) = d.iommu_group else { continue };
            match groups.iter_mut().find(|g| g.id == id) {
                Some(g) => g.devices.push(d),
                None => groups.push(IommuGroup {
                    id,
                    devices: vec![d],
                }),
            }
        }
        groups.sort_by_key(|g| g.id);
        Ok(groups)
    }

    /// Virtual functions of a physical function, in order.
    pub fn vfs(&self, pf: Bdf) -> Vec<Bdf> {
        let dir = self.dev_dir(pf);
        let mut vfs: Vec<(u32, Bdf)> = std::fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .filter_map(|e| {
                let e = e.ok()?;
                let n: u32 = e
                    .file_name()
                    .to_str()?
                    .strip_prefix("virtfn")?
                    .parse()
                    .ok()?;
                Some((n, Self::link_name(&e.path())?.parse().ok()?))
            })
            .collect();
        vfs.sort();
        vfs.into_iter().map(|(_, b)| b).collect()
    }

    /// A physical function: its state, enabled VFs and most VFs.
    fn pf(&self, pf: Bdf) -> Result<(PciDevice, u32, u32), PciError> {
        let d = self.device(pf)?;
        if d.physfn.is_some() {
            return Err(PciError::Refused(format!(
                "{pf} is a virtual function; give its physical function"
            )));
        }
        let (num, total) = d.sriov.ok_or_else(|| {
            PciError::Refused(format!("{pf} has no SR-IOV capability (no sriov_totalvfs)"))
        })?;
        Ok((d, num, total))
    }

    /// Writes `sriov_numvfs`. The kernel creates and removes VFs through the PF's
    /// driver and answers ENOENT when there is none or it cannot (vfio-pci without
    /// `enable_sriov=1`, for one): that error says so.
    fn write_numvfs(&self, pf: &PciDevice, n: u32) -> Result<(), PciError> {
        let bdf = pf.bdf;
        self.write(&self.dev_dir(bdf).join("sriov_numvfs"), &n.to_string())
            .map_err(|e| match e {
                PciError::Io { ref source, .. }
                    if source.kind() == std::io::ErrorKind::NotFound =>
                {
                    let drv = pf.driver.as_deref().unwrap_or("none");
                    PciError::Refused(format!(
                        "{bdf}: its driver ({drv}) cannot change the number of VFs (the kernel refused {n} VFs with ENOENT){}; give the PF back to its host driver (`vfpga-xen pci unbind {bdf}`)",
                        if drv == "vfio-pci" {
                            ", vfio-pci only with enable_sriov=1"
                        } else {
                            ""
                        }
                    ))
                }
                e => e,
            })
    }

    /// Enables `n` virtual functions on `pf`, with driver autoprobing off so host
    /// drivers do not grab them; a different non-zero count goes through 0, as the
    /// kernel requires.
    pub fn sriov_enable(&self, pf: Bdf, n: u32) -> Result<Vec<Bdf>, PciError> {
        let (dev, current, total) = self.pf(pf)?;
        if n == 0 {
            return Err(PciError::Refused(
                "give at least 1 VF (use `sriov disable` for 0)".into(),
            ));
        }
        if n > total {
            return Err(PciError::Refused(format!(
                "{pf} supports at most {total} VFs, not {n}"
            )));
        }
        if dev.driver.is_none() {
            // Checked before any write: the kernel would refuse with ENOENT.
            return Err(PciError::Refused(format!(
                "{pf} has no driver: the kernel creates VFs through the PF's driver; give the PF back to its host driver first (`vfpga-xen pci unbind {pf}`)"
            )));
        }
        self.write(&self.dev_dir(pf).join("sriov_drivers_autoprobe"), "0")?;
        if current == n {
            return Ok(self.vfs(pf));
        }
        if current != 0 {
            self.write_numvfs(&dev, 0)?;
        }
        self.write_numvfs(&dev, n)?;
        Ok(self.vfs(pf))
    }

    /// Removes every virtual function of `pf`.
    pub fn sriov_disable(&self, pf: Bdf) -> Result<(), PciError> {
        let (dev, ..) = self.pf(pf)?;
        self.write_numvfs(&dev, 0)
    }

    /// Binds `bdf` to `driver` through `driver_override`; on failure restores the
    /// previous driver and override.
    pub fn bind(&self, bdf: Bdf, driver: PassDriver) -> Result<BindReport, PciError> {
        let dev = self.device(bdf)?;
        let name = driver.sysfs_name();
        let drivers = self.pci().join("drivers");
        let mut missing = None;
        if !drivers.join(name).exists() {
            let hv = self.root.join("hypervisor/type");
            // xen-pciback refuses to load (ENODEV) on a kernel not running on Xen.
            let why = if driver == PassDriver::Pciback
                && self.read(&hv).ok().as_deref() != Some("xen")
            {
                format!(
                    "driver pciback is not loaded, and this kernel does not run on Xen ({} does not say xen): xen-pciback works only in a Xen dom0 (there: modprobe xen-pciback); for QEMU/KVM use --driver vfio-pci",
                    hv.display()
                )
            } else {
                format!("driver {name} is not loaded: modprobe {}", driver.module())
            };
            // A dry run still shows what a real one would write, once the driver is there.
            if !self.dry_run {
                return Err(PciError::Refused(why));
            }
            missing = Some(why);
        }
        let mut warnings = self.group_warnings(&dev, driver)?;
        warnings.extend(missing);
        if dev.driver.as_deref() == Some(name) {
            warnings.push(format!("{bdf} was already bound to {name}"));
            return Ok(BindReport {
                previous: dev.driver,
                warnings,
            });
        }
        if dev.sriov.is_some_and(|(n, _)| n > 0) {
            warnings.push(format!(
                "{bdf} is a physical function with VFs enabled; passing the PF removes its VFs from the host"
            ));
        }
        let dir = self.dev_dir(bdf);
        let override_path = dir.join("driver_override");
        let old_override = self.read(&override_path).ok().filter(|s| s != "(null)");
        let attempt = || -> Result<(), PciError> {
            self.write(&override_path, name)?;
            if let Some(old) = &dev.driver {
                self.write(&drivers.join(old).join("unbind"), &bdf.to_string())?;
            }
            self.write(&self.pci().join("drivers_probe"), &bdf.to_string())?;
            if self.dry_run {
                return Ok(());
            }
            match Self::link_name(&dir.join("driver")) {
                Some(d) if d == name => Ok(()),
                other => Err(PciError::Refused(format!(
                    "{bdf} did not bind to {name} (driver now: {})",
                    other.as_deref().unwrap_or("none")
                ))),
            }
        };
        if let Err(e) = attempt() {
            // Roll back: previous override, previous driver.
            let _ = self.write(&override_path, old_override.as_deref().unwrap_or("\n"));
            if let Some(cur) = Self::link_name(&dir.join("driver")) {
                let _ = self.write(&drivers.join(cur).join("unbind"), &bdf.to_string());
            }
            if let Some(old) = &dev.driver {
                let _ = self.write(&drivers.join(old).join("bind"), &bdf.to_string());
            }
            let restored = Self::link_name(&dir.join("driver"));
            return Err(PciError::Refused(format!(
                "{e}; rolled back ({bdf} driver: {}, driver_override: {})",
                restored.as_deref().unwrap_or("none"),
                old_override.as_deref().unwrap_or("none")
            )));
        }
        Ok(BindReport {
            previous: dev.driver,
            warnings,
        })
    }

    /// Unbinds `bdf` from its driver, clears `driver_override` and lets the kernel
    /// probe its normal driver again.
    pub fn unbind(&self, bdf: Bdf) -> Result<Option<String>, PciError> {
        let dev = self.device(bdf)?;
        let dir = self.dev_dir(bdf);
        self.write(&dir.join("driver_override"), "\n")?;
        if let Some(d) = &dev.driver {
            self.write(
                &self.pci().join("drivers").join(d).join("unbind"),
                &bdf.to_string(),
            )?;
        }
        self.write(&self.pci().join("drivers_probe"), &bdf.to_string())?;
        Ok(if self.dry_run {
            None
        } else {
            Self::link_name(&dir.join("driver"))
        })
    }

    /// Warnings about the other functions in `dev`'s IOMMU group.
    fn group_warnings(&self, dev: &PciDevice, driver: PassDriver) -> Result<Vec<String>, PciError> {
        let Some(id) = dev.iommu_group else {
            return Ok(vec![match driver {
                PassDriver::VfioPci => format!(
                    "{} is in no IOMMU group: the IOMMU is off (boot with intel_iommu=on or amd_iommu=on); vfio-pci will refuse it",
                    dev.bdf
                ),
                PassDriver::Pciback => format!(
                    "{} is in no IOMMU group: without an IOMMU only PV guests can use it, unprotected",
                    dev.bdf
                ),
            }]);
        };
        let members = self
            .root
            .join("kernel/iommu_groups")
            .join(id.to_string())
            .join("devices");
        let mut warnings = Vec::new();
        for e in std::fs::read_dir(&members).into_iter().flatten().flatten() {
            let Some(other) = e.file_name().to_str().and_then(|s| s.parse::<Bdf>().ok()) else {
                continue;
            };
            if other == dev.bdf {
                continue;
            }
            let drv = self.device(other).ok().and_then(|d| d.driver);
            let fine = matches!(
                drv.as_deref(),
                None | Some("vfio-pci" | "pciback" | "pcieport")
            );
            warnings.push(format!(
                "IOMMU group {id} also holds {other} (driver {}){}",
                drv.as_deref().unwrap_or("none"),
                if fine {
                    ""
                } else {
                    ": the whole group goes to one guest; bind it too or the assignment will fail"
                }
            ));
        }
        Ok(warnings)
    }
}

/// The exact lines that give `bdf` to a guest.
pub fn assignment_lines(bdf: Bdf) -> Vec<String> {
    vec![
        format!("xl pci-assignable-add {bdf}"),
        format!("pci = [ \"{bdf}\" ]"),
        format!("-device vfio-pci,host={bdf}"),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_and_print() {
        let b: Bdf = "03:00.1".parse().unwrap();
        assert_eq!(b.to_string(), "0000:03:00.1");
        assert_eq!(
            "0001:1f:1F.7".parse::<Bdf>().unwrap().to_string(),
            "0001:1f:1f.7"
        );
        for bad in [
            "",
            "03:00",
            "0000:03:20.0",
            "0000:03:00.8",
            "zz:00.0",
            "0:0:0:0.0",
        ] {
            assert!(bad.parse::<Bdf>().is_err(), "{bad}");
        }
    }
}
