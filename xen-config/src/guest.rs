//! `vfpga-xen guest-config`: xl.cfg for PV, PVH and HVM guests from a small TOML
//! description, with the accelerator as a virtio device or a passed-through PCI
//! function.
//!
//! ```toml
//! name = "vm1"
//! type = "pvh"               # pv | pvh | hvm
//! memory = 1024              # MiB
//! vcpus = 2
//! kernel = "/srv/xen/vmlinuz"
//! ramdisk = "/srv/xen/initrd.gz"
//! cmdline = "console=hvc0"
//!
//! [nfs_root]                 # root file system over NFS (adds root=/dev/nfs ...)
//! server = "192.168.42.1"
//! path = "/srv/nfs/vm1"
//! version = "4.2"            # 3, 4, 4.1 or 4.2
//!
//! [[vif]]
//! bridge = "xenbr0"
//! mac = "00:16:3e:12:34:56"
//!
//! [accelerator]              # either a virtio device (Xen >= 4.18, Arm) ...
//! mode = "virtio"
//! backend = "0"              # domain running vfpgad
//! # ... or PCI passthrough:
//! # mode = "pci"
//! # bdf = "0000:03:00.1"
//! # permissive = false
//! # seize = false
//! # rdm_policy = "strict"    # HVM only: strict | relaxed
//! ```

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use vfpga_proto::DEFAULT_VIRTIO_ID;

use crate::pci::Bdf;

/// A description that cannot become a working xl.cfg.
#[derive(Debug, thiserror::Error)]
pub enum GuestError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Not valid TOML for a guest description.
    #[error("{path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Parser message.
        #[source]
        source: Box<toml::de::Error>,
    },
    /// A value or combination xl or Xen would refuse (or that cannot work).
    #[error("{0}")]
    Invalid(String),
}

/// Guest virtualisation mode.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum GuestType {
    /// Paravirtualised.
    Pv,
    /// PVH.
    Pvh,
    /// Hardware virtual machine.
    Hvm,
}

impl GuestType {
    fn name(self) -> &'static str {
        match self {
            GuestType::Pv => "pv",
            GuestType::Pvh => "pvh",
            GuestType::Hvm => "hvm",
        }
    }
}

/// `[nfs_root]`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct NfsRoot {
    /// NFS server address.
    pub server: String,
    /// Exported path.
    pub path: String,
    /// NFS version.
    #[serde(default = "default_nfs_version")]
    pub version: String,
}

fn default_nfs_version() -> String {
    "4.2".into()
}

/// `[[vif]]`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Vif {
    /// Bridge in the backend domain.
    pub bridge: Option<String>,
    /// MAC address.
    pub mac: Option<String>,
    /// Emulated NIC model for HVM guests (e.g. e1000).
    pub model: Option<String>,
}

/// HVM reserved-memory policy for passthrough.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RdmPolicy {
    /// Fail if a reserved region conflicts.
    Strict,
    /// Warn and continue.
    Relaxed,
}

/// `[accelerator]`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(tag = "mode", rename_all = "lowercase", deny_unknown_fields)]
pub enum Accelerator {
    /// A virtio-mmio device served by vfpgad in a backend domain.
    Virtio {
        /// Backend domain (name or id).
        #[serde(default = "default_backend")]
        backend: String,
        /// Virtio device id.
        #[serde(default = "default_device_id")]
        device_id: u16,
    },
    /// A PCI function passed through.
    Pci {
        /// The function.
        bdf: String,
        /// Let the guest write all of config space.
        #[serde(default)]
        permissive: bool,
        /// Take the device from its driver at `xl create`.
        #[serde(default)]
        seize: bool,
        /// HVM reserved-memory policy.
        rdm_policy: Option<RdmPolicy>,
    },
}

fn default_backend() -> String {
    "0".into()
}

fn default_device_id() -> u16 {
    DEFAULT_VIRTIO_ID
}

/// A guest description.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct GuestSpec {
    /// Domain name.
    pub name: String,
    /// PV, PVH or HVM.
    #[serde(rename = "type")]
    pub kind: GuestType,
    /// Memory in MiB.
    pub memory: u32,
    /// Virtual CPUs.
    #[serde(default = "one")]
    pub vcpus: u32,
    /// Kernel image (direct boot).
    pub kernel: Option<String>,
    /// Initial ramdisk.
    pub ramdisk: Option<String>,
    /// Extra kernel command line.
    #[serde(default)]
    pub cmdline: String,
    /// NFS root.
    pub nfs_root: Option<NfsRoot>,
    /// Network interfaces.
    #[serde(default, rename = "vif")]
    pub vifs: Vec<Vif>,
    /// The accelerator.
    pub accelerator: Option<Accelerator>,
}

fn one() -> u32 {
    1
}

/// The host the guest will run on: what decides which configurations can work.
#[derive(Clone, Debug)]
pub struct Host {
    /// CPU architecture ("x86_64", "aarch64", ...).
    pub arch: String,
    /// Xen version as (major, minor), if known.
    pub xen: Option<(u32, u32)>,
    /// Whether `xen` was given on the command line rather than read from this host.
    pub xen_from_flag: bool,
    /// Where sysfs is (for checking PCI functions).
    pub sysfs: PathBuf,
}

impl Host {
    /// This machine: its architecture, the Xen version from
    /// `/sys/hypervisor/version` (if running under Xen), sysfs at `/sys`.
    pub fn this_machine() -> Self {
        let read = |f: &str| {
            std::fs::read_to_string(format!("/sys/hypervisor/version/{f}"))
                .ok()
                .and_then(|s| s.trim().parse().ok())
        };
        Self {
            arch: std::env::consts::ARCH.to_owned(),
            xen: read("major").zip(read("minor")),
            xen_from_flag: false,
            sysfs: PathBuf::from("/sys"),
        }
    }
}

/// Parses "4.18" into (4, 18).
pub fn parse_version(s: &str) -> Option<(u32, u32)> {
    let (a, b) = s.split_once('.')?;
    Some((a.parse().ok()?, b.split('.').next()?.parse().ok()?))
}

impl GuestSpec {
    /// Reads a description.
    pub fn load(path: &Path) -> Result<Self, GuestError> {
        let text = std::fs::read_to_string(path).map_err(|source| GuestError::Read {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| GuestError::Parse {
            path: path.to_owned(),
            source: Box::new(e),
        })
    }

    /// Checks the description against itself and the host.
    pub fn validate(&self, host: &Host) -> Result<(), GuestError> {
        let bad = |m: String| Err(GuestError::Invalid(m));
        crate::names::domain_name(&self.name).map_err(GuestError::Invalid)?;
        if self.memory < 32 {
            return bad(format!(
                "memory = {}: a guest needs at least 32 MiB",
                self.memory
            ));
        }
        if !(1..=512).contains(&self.vcpus) {
            return bad(format!("vcpus = {}: must be 1..=512", self.vcpus));
        }
        let arm = host.arch == "aarch64" || host.arch.starts_with("arm");
        if arm && self.kind != GuestType::Pvh {
            return bad(format!(
                "type = \"{}\": Xen on Arm runs PVH-style guests only; use type = \"pvh\"",
                self.kind.name()
            ));
        }
        if self.kernel.is_none() {
            if self.kind != GuestType::Hvm {
                return bad(format!(
                    "type = \"{}\" needs kernel = \"...\" (direct kernel boot)",
                    self.kind.name()
                ));
            }
            if self.ramdisk.is_some() || self.nfs_root.is_some() || !self.cmdline.is_empty() {
                return bad("ramdisk, cmdline and nfs_root need kernel = \"...\" (they are passed to the kernel)".into());
            }
        }
        if let Some(n) = &self.nfs_root {
            if !n.path.starts_with('/') {
                return bad(format!(
                    "nfs_root.path {:?} must be an absolute path",
                    n.path
                ));
            }
            if n.server.is_empty() || n.server.contains([',', ':', ' ']) {
                return bad(format!(
                    "nfs_root.server {:?} must be a host name or IPv4 address",
                    n.server
                ));
            }
            if !["3", "4", "4.0", "4.1", "4.2"].contains(&n.version.as_str()) {
                return bad(format!(
                    "nfs_root.version {:?}: use 3, 4, 4.1 or 4.2",
                    n.version
                ));
            }
        }
        for (i, v) in self.vifs.iter().enumerate() {
            if let Some(mac) = &v.mac {
                if !valid_mac(mac) {
                    return bad(format!(
                        "vif {i}: mac {mac:?} must be six hex pairs like 00:16:3e:12:34:56, unicast"
                    ));
                }
            }
            if v.model.is_some() && self.kind != GuestType::Hvm {
                return bad(format!("vif {i}: model applies to HVM guests only"));
            }
        }
        match &self.accelerator {
            None => {}
            Some(Accelerator::Virtio { backend, device_id }) => {
                if !arm {
                    return bad(format!(
                        "accelerator mode = \"virtio\": Xen's virtio = [...] devices exist on Arm only \
                         (this host is {}); on x86 pass a PCI function through (mode = \"pci\") \
                         or give the guest the device through QEMU",
                        host.arch
                    ));
                }
                match host.xen {
                    None => {
                        return bad("accelerator mode = \"virtio\" needs Xen 4.18 or later, and the Xen version is unknown \
                             (not running under Xen?): give --xen-version"
                            .into())
                    }
                    Some((maj, min)) if (maj, min) < (4, 18) => {
                        return bad(format!(
                            "accelerator mode = \"virtio\" needs Xen 4.18 or later, and the Xen version is {maj}.{min} ({})",
                            if host.xen_from_flag { "--xen-version" } else { "this host's /sys/hypervisor/version" }
                        ))
                    }
                    _ => {}
                }
                if backend.is_empty() || backend.contains([',', '"', '\'']) {
                    return bad(format!(
                        "accelerator backend {backend:?} is not a domain name or id"
                    ));
                }
                if *device_id == 0 {
                    return bad("accelerator device_id must not be 0".into());
                }
            }
            Some(Accelerator::Pci {
                bdf, rdm_policy, ..
            }) => {
                let parsed: Bdf = bdf.parse().map_err(GuestError::Invalid)?;
                if !host
                    .sysfs
                    .join("bus/pci/devices")
                    .join(parsed.to_string())
                    .exists()
                {
                    return bad(format!(
                        "accelerator bdf {parsed}: no such PCI function on this host \
                         ({} has no entry; see `vfpga-xen pci list`)",
                        host.sysfs.join("bus/pci/devices").display()
                    ));
                }
                if rdm_policy.is_some() && self.kind != GuestType::Hvm {
                    return bad("rdm_policy applies to HVM guests only".into());
                }
                // `xl create -n` accepts it, but Xen on x86 has no PCI passthrough for
                // PVH domUs: the domain would fail to start.
                if !arm && self.kind == GuestType::Pvh {
                    return bad(format!(
                        "accelerator mode = \"pci\": Xen on x86 does not pass PCI devices through \
                         to PVH guests; use type = \"hvm\" or \"pv\" for {parsed}"
                    ));
                }
            }
        }
        Ok(())
    }

    /// The kernel command line xl passes as `extra`.
    pub fn extra(&self) -> String {
        let mut parts: Vec<String> = Vec::new();
        if !self.cmdline.is_empty() {
            parts.push(self.cmdline.clone());
        }
        if let Some(n) = &self.nfs_root {
            let vers = if n.version == "4.0" {
                "4"
            } else {
                n.version.as_str()
            };
            parts.push(format!(
                "root=/dev/nfs rw ip=dhcp nfsroot={}:{},vers={vers}",
                n.server, n.path
            ));
        }
        parts.join(" ")
    }

    /// The xl.cfg text. Call [`GuestSpec::validate`] first.
    pub fn to_xl_cfg(&self, origin: &str) -> String {
        let mut c = String::new();
        let q = |s: &str| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""));
        let _ = writeln!(c, "# Generated by vfpga-xen guest-config from {origin}; edit the description, not this file.");
        let _ = writeln!(c, "name = {}", q(&self.name));
        let _ = writeln!(c, "type = {}", q(self.kind.name()));
        let _ = writeln!(c, "memory = {}", self.memory);
        let _ = writeln!(c, "vcpus = {}", self.vcpus);
        if let Some(k) = &self.kernel {
            let _ = writeln!(c, "kernel = {}", q(k));
        }
        if let Some(r) = &self.ramdisk {
            let _ = writeln!(c, "ramdisk = {}", q(r));
        }
        let extra = self.extra();
        if !extra.is_empty() {
            let _ = writeln!(c, "extra = {}", q(&extra));
        }
        if !self.vifs.is_empty() {
            let vifs: Vec<String> = self
                .vifs
                .iter()
                .map(|v| {
                    let mut kv = Vec::new();
                    if let Some(b) = &v.bridge {
                        kv.push(format!("bridge={b}"));
                    }
                    if let Some(m) = &v.mac {
                        kv.push(format!("mac={}", m.to_ascii_lowercase()));
                    }
                    if let Some(m) = &v.model {
                        kv.push(format!("model={m}"));
                    }
                    q(&kv.join(","))
                })
                .collect();
            let _ = writeln!(c, "vif = [ {} ]", vifs.join(", "));
        }
        match &self.accelerator {
            None => {}
            Some(Accelerator::Virtio { backend, device_id }) => {
                let _ = writeln!(c, "# vfpga accelerator: virtio device {device_id} served by vfpgad in domain {backend}");
                let _ = writeln!(
                    c,
                    "virtio = [ {} ]",
                    q(&format!(
                        "backend={backend},type=virtio,device{device_id:x},transport=mmio"
                    ))
                );
            }
            Some(Accelerator::Pci {
                bdf,
                permissive,
                seize,
                rdm_policy,
            }) => {
                let mut s = bdf
                    .parse::<Bdf>()
                    .map(|b| b.to_string())
                    .unwrap_or_else(|_| bdf.clone());
                if *permissive {
                    s.push_str(",permissive=1");
                }
                if *seize {
                    s.push_str(",seize=1");
                }
                if let Some(p) = rdm_policy {
                    s.push_str(match p {
                        RdmPolicy::Strict => ",rdm_policy=strict",
                        RdmPolicy::Relaxed => ",rdm_policy=relaxed",
                    });
                }
                let _ = writeln!(c, "# vfpga accelerator: PCI function passed through");
                let _ = writeln!(c, "pci = [ {} ]", q(&s));
            }
        }
        c
    }
}

fn valid_mac(mac: &str) -> bool {
    let parts: Vec<&str> = mac.split(':').collect();
    parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.bytes().all(|c| c.is_ascii_hexdigit()))
        && u8::from_str_radix(parts[0], 16).is_ok_and(|b| b & 1 == 0)
}
