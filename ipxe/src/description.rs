//! The boot description: a TOML file (see `vfpga-pxe example`), or the same built from
//! command line flags. This module only reads it; [`mod@crate::plan`] checks it.
//!
//! Relative paths in a file are relative to the file's folder.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::Error;

/// The whole description.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Description {
    /// `[server]`: where guests fetch the boot files.
    #[serde(default)]
    pub server: Server,
    /// `[menu]`: the iPXE menu.
    #[serde(default)]
    pub menu: Menu,
    /// `[nfs]`: the root file system export.
    pub nfs: Option<Nfs>,
    /// `[initramfs]`: the generated netboot initramfs.
    pub initramfs: Option<Initramfs>,
    /// `[dhcp]`: the dnsmasq snippet for a lab network (optional).
    pub dhcp: Option<Dhcp>,
    /// `[[entry]]`: menu entries, in menu order.
    #[serde(default, rename = "entry")]
    pub entries: Vec<Entry>,
}

/// `[server]`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Server {
    /// IPv4 address of the boot and NFS server as guests reach it. Default: none, and
    /// guests use the DHCP next-server.
    pub address: Option<String>,
    /// URL of the boot tree: `tftp://HOST/` or `http://HOST[:PORT]/[PATH/]`. Default:
    /// `tftp://ADDRESS/`, or `tftp://${next-server}/` without an address.
    pub base_url: Option<String>,
}

/// `[menu]`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Menu {
    /// Menu title (default "vfpga network boot").
    pub title: Option<String>,
    /// Entry booted when the timeout expires: an entry name or `shell` (default: the
    /// first entry).
    pub default: Option<String>,
    /// Seconds before the default boots; 0 waits for a choice (default 5).
    pub timeout: Option<u32>,
    /// Offer an iPXE shell entry (default true).
    pub shell: Option<bool>,
}

/// `[nfs]`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Nfs {
    /// The exported root file system: a folder on this (the NFS server's) machine.
    pub root: Option<PathBuf>,
    /// Server address in `nfsroot=` (default: `server.address`; without one, guests use
    /// the DHCP next-server).
    pub server: Option<String>,
    /// NFSv4 path of the export (default: the real path, which NFSv3 needs).
    pub pseudo: Option<String>,
    /// NFS version the guest mounts: `auto` (4.2, falling back to 3), `3`, `4`, `4.1`
    /// or `4.2` (default auto).
    pub version: Option<String>,
    /// Extra mount options, comma-separated (e.g. `timeo=600`).
    pub options: Option<String>,
    /// Mount and export read-only (default false: read-write).
    pub read_only: Option<bool>,
    /// Who may mount: addresses, networks (`192.168.42.0/24`) or host names (default
    /// `["*"]`).
    pub clients: Option<Vec<String>>,
    /// Accept clients on unprivileged source ports (QEMU user networking needs it;
    /// default false).
    pub insecure: Option<bool>,
    /// nfs-ganesha specifics.
    #[serde(default)]
    pub ganesha: Ganesha,
}

/// `[nfs.ganesha]`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Ganesha {
    /// Address to listen on (default: all).
    pub bind_addr: Option<String>,
    /// NFS port (default 2049).
    pub port: Option<u16>,
    /// MOUNT protocol port for NFSv3 (default 20048).
    pub mount_port: Option<u16>,
    /// Export id (default 1).
    pub export_id: Option<u16>,
    /// Where NFSv4 client records live (default: ganesha's, /var/lib/nfs/ganesha).
    pub recovery_root: Option<PathBuf>,
    /// Skip the NFSv4 grace period after a start (default false).
    pub graceless: Option<bool>,
}

/// `[initramfs]`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Initramfs {
    /// `/lib/modules/VERSION` of the guest kernel (often the NFS root's own).
    pub modules_dir: Option<PathBuf>,
    /// A statically linked busybox (default /bin/busybox, from busybox-static).
    pub busybox: Option<PathBuf>,
    /// Modules to load (default: virtio_pci, virtio_net, nfsv4, nfsv3); their
    /// dependencies are added.
    pub modules: Option<Vec<String>>,
    /// More modules, e.g. the lab machines' NIC drivers (`igb`, `e1000e`, `r8169`).
    pub extra_modules: Option<Vec<String>>,
    /// gzip the image (default true; needs `gzip`).
    pub compress: Option<bool>,
}

/// `[dhcp]`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Dhcp {
    /// Interface dnsmasq serves, e.g. `eth1`.
    pub interface: Option<String>,
    /// Be the network's DHCP server: `START,END[,NETMASK][,LEASE]`.
    pub range: Option<String>,
    /// Or answer only boot requests next to another DHCP server: the network address,
    /// e.g. `192.168.42.0`.
    pub proxy: Option<String>,
    /// Default gateway handed out (full DHCP server only).
    pub router: Option<String>,
    /// Where the boot folder is on the server (dnsmasq `tftp-root`; default: the
    /// generated `boot/` folder).
    pub tftp_root: Option<PathBuf>,
    /// Folder with iPXE's `undionly.kpxe` and `ipxe.efi` (Debian package `ipxe`:
    /// /usr/lib/ipxe), copied into the boot folder for plain PXE ROMs to chainload.
    pub ipxe_dir: Option<PathBuf>,
}

/// What an entry boots.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A Linux kernel with an initrd.
    #[default]
    Linux,
    /// Xen with a dom0 kernel and initrd as multiboot modules.
    Xen,
}

/// `[[entry]]`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// Label: letters, digits, `-` and `_`; also the entry's folder in the boot tree.
    pub name: String,
    /// Menu text (default: from the kind).
    pub title: Option<String>,
    /// `linux` (default) or `xen`.
    #[serde(default)]
    pub kind: Kind,
    /// The Linux kernel (bzImage; for Xen's dom0 also an uncompressed vmlinux).
    pub kernel: Option<PathBuf>,
    /// An initrd of your own (default: the generated netboot initramfs).
    pub initrd: Option<PathBuf>,
    /// More kernel command line (dom0's for Xen), e.g. `console=ttyS0,115200`.
    pub args: Option<String>,
    /// Xen entries: the hypervisor, `xen-*.gz` or decompressed.
    pub xen: Option<PathBuf>,
    /// Xen entries: the hypervisor command line (default
    /// `dom0_mem=1024M,max:1024M console=com1 com1=115200,8n1 loglvl=all guest_loglvl=all`).
    pub xen_args: Option<String>,
    /// Add `nfsroot=... rw|ro` for the NFS root (default true).
    pub nfs_root: Option<bool>,
}

/// Command line values that replace the description's (or make one without a file).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Overrides {
    /// `server.base_url`.
    pub base_url: Option<String>,
    /// `server.address`.
    pub server: Option<String>,
    /// `menu.default`.
    pub default: Option<String>,
    /// `menu.timeout`.
    pub timeout: Option<u32>,
    /// `nfs.root`.
    pub nfs_root: Option<PathBuf>,
    /// `initramfs.modules_dir`.
    pub modules_dir: Option<PathBuf>,
    /// `initramfs.busybox`.
    pub busybox: Option<PathBuf>,
    /// Without a file: the Linux entry's kernel.
    pub kernel: Option<PathBuf>,
    /// Without a file: adds a Xen entry with this hypervisor.
    pub xen: Option<PathBuf>,
    /// Without a file: the entries' `args`.
    pub args: Option<String>,
}

impl Description {
    /// Parses a description; relative paths become relative to `base`.
    pub fn parse(text: &str, path: &Path, base: &Path) -> Result<Self, Error> {
        let mut d: Description = toml::from_str(text).map_err(|e| Error::Parse {
            path: path.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        d.rebase(base);
        Ok(d)
    }

    /// Reads and parses a description file.
    pub fn load(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.to_owned(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::parse(&text, path, base)
    }

    /// A description from flags only: one Linux entry `linux` (and `xen` with a
    /// hypervisor), the NFS root, the initramfs from the kernel's modules.
    pub fn from_flags(o: &Overrides) -> Result<Self, Error> {
        let mut problems = Vec::new();
        if o.kernel.is_none() {
            problems.push("without --config, --kernel FILE is required".to_owned());
        }
        if o.nfs_root.is_none() {
            problems.push("without --config, --nfs-root DIR is required".to_owned());
        }
        if !problems.is_empty() {
            return Err(Error::Invalid(problems));
        }
        // The kernel's modules: the NFS root's, else this machine's.
        let release = o
            .kernel
            .as_deref()
            .and_then(|k| std::fs::read(k).ok())
            .and_then(|data| crate::probe::bzimage_release(&data));
        let modules_dir = o.modules_dir.clone().or_else(|| {
            let rel = release?;
            let mut cands = Vec::new();
            if let Some(r) = &o.nfs_root {
                cands.push(r.join("lib/modules").join(&rel));
            }
            cands.push(Path::new("/lib/modules").join(&rel));
            cands.into_iter().find(|c| c.is_dir())
        });
        let mut d = Description {
            nfs: Some(Nfs::default()),
            initramfs: Some(Initramfs {
                modules_dir,
                ..Default::default()
            }),
            ..Default::default()
        };
        d.entries.push(Entry {
            name: "linux".into(),
            kernel: o.kernel.clone(),
            args: o.args.clone(),
            ..Default::default()
        });
        if let Some(xen) = &o.xen {
            d.entries.push(Entry {
                name: "xen".into(),
                kind: Kind::Xen,
                kernel: o.kernel.clone(),
                xen: Some(xen.clone()),
                args: o.args.clone(),
                ..Default::default()
            });
        }
        Ok(d)
    }

    /// Applies the flags that may change a description file's values. `--kernel`,
    /// `--xen` and `--args` describe entries and are refused with a file.
    pub fn apply(&mut self, o: &Overrides, with_file: bool) -> Result<(), Error> {
        if with_file {
            let entry_flags: Vec<&str> = [
                ("--kernel", o.kernel.is_some()),
                ("--xen", o.xen.is_some()),
                ("--args", o.args.is_some()),
            ]
            .iter()
            .filter(|(_, set)| *set)
            .map(|(f, _)| *f)
            .collect();
            if !entry_flags.is_empty() {
                return Err(Error::invalid(format!(
                    "--kernel, --xen and --args describe entries: use them without --config, or set kernel, xen and args in the file's [[entry]] tables (given: {})",
                    entry_flags.join(", ")
                )));
            }
        }
        if let Some(v) = &o.base_url {
            self.server.base_url = Some(v.clone());
        }
        if let Some(v) = &o.server {
            self.server.address = Some(v.clone());
        }
        if let Some(v) = &o.default {
            self.menu.default = Some(v.clone());
        }
        if let Some(v) = o.timeout {
            self.menu.timeout = Some(v);
        }
        if let Some(v) = &o.nfs_root {
            self.nfs.get_or_insert_with(Nfs::default).root = Some(v.clone());
        }
        if let Some(v) = &o.modules_dir {
            self.initramfs
                .get_or_insert_with(Initramfs::default)
                .modules_dir = Some(v.clone());
        }
        if let Some(v) = &o.busybox {
            self.initramfs
                .get_or_insert_with(Initramfs::default)
                .busybox = Some(v.clone());
        }
        Ok(())
    }

    fn rebase(&mut self, base: &Path) {
        let fix = |p: &mut Option<PathBuf>| {
            if let Some(x) = p {
                if x.is_relative() {
                    *x = base.join(&*x);
                }
            }
        };
        if let Some(n) = &mut self.nfs {
            fix(&mut n.root);
            fix(&mut n.ganesha.recovery_root);
        }
        if let Some(i) = &mut self.initramfs {
            fix(&mut i.modules_dir);
            fix(&mut i.busybox);
        }
        if let Some(d) = &mut self.dhcp {
            fix(&mut d.tftp_root);
            fix(&mut d.ipxe_dir);
        }
        for e in &mut self.entries {
            fix(&mut e.kernel);
            fix(&mut e.initrd);
            fix(&mut e.xen);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_follow_the_file() {
        let d = Description::parse(
            "[nfs]\nroot = \"root\"\n[[entry]]\nname = \"a\"\nkernel = \"/abs/vmlinuz\"\ninitrd = \"i.img\"\n",
            Path::new("/srv/pxe/boot.toml"),
            Path::new("/srv/pxe"),
        )
        .unwrap();
        assert_eq!(d.nfs.unwrap().root.unwrap(), PathBuf::from("/srv/pxe/root"));
        assert_eq!(
            d.entries[0].kernel.as_deref(),
            Some(Path::new("/abs/vmlinuz"))
        );
        assert_eq!(
            d.entries[0].initrd.as_deref(),
            Some(Path::new("/srv/pxe/i.img"))
        );
    }

    #[test]
    fn unknown_fields_are_refused_with_their_place() {
        let e = Description::parse(
            "[[entry]]\nname = \"a\"\nkernal = \"/x\"\n",
            Path::new("boot.toml"),
            Path::new("."),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("boot.toml"), "{e}");
        assert!(e.contains("unknown field `kernal`"), "{e}");
        assert!(e.contains("line 3"), "{e}");
    }

    #[test]
    fn a_wrong_kind_is_refused() {
        let e = Description::parse(
            "[[entry]]\nname = \"a\"\nkind = \"bsd\"\n",
            Path::new("boot.toml"),
            Path::new("."),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("unknown variant `bsd`"), "{e}");
    }

    #[test]
    fn entry_flags_need_no_file() {
        let mut d = Description::default();
        let e = d
            .apply(
                &Overrides {
                    kernel: Some("/k".into()),
                    ..Default::default()
                },
                true,
            )
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("describe entries: use them without --config"),
            "{e}"
        );
        assert!(e.ends_with("(given: --kernel)"), "{e}");
        let e = Description::from_flags(&Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("--kernel FILE is required"), "{e}");
        assert!(e.contains("--nfs-root DIR is required"), "{e}");
    }

    #[test]
    fn flags_make_a_linux_and_a_xen_entry() {
        let o = Overrides {
            kernel: Some("/k".into()),
            xen: Some("/x.gz".into()),
            nfs_root: Some("/srv/root".into()),
            ..Default::default()
        };
        let mut d = Description::from_flags(&o).unwrap();
        d.apply(&o, false).unwrap();
        assert_eq!(d.entries.len(), 2);
        assert_eq!(d.entries[1].kind, Kind::Xen);
        assert_eq!(d.nfs.unwrap().root.unwrap(), PathBuf::from("/srv/root"));
    }
}
