//! Writes the boot tree of a checked [`Plan`]:
//!
//! ```text
//! OUT/boot/                TFTP root / HTTP document root
//!     menu.ipxe            the menu (DHCP boot file for iPXE)
//!     initrd.img           the netboot initramfs
//!     NAME/vmlinuz         each entry's kernel
//!     NAME/initrd.img      an entry's own initrd, if it has one
//!     NAME/xen             a Xen entry's hypervisor, decompressed
//!     undionly.kpxe, ipxe.efi   iPXE for plain PXE ROMs (with dhcp.ipxe_dir)
//! OUT/initramfs/           what initrd.img holds, to read: init, udhcpc.script,
//!                          modules (load order), files.txt (every path)
//! OUT/nfs/ganesha.conf     nfs-ganesha configuration
//! OUT/nfs/exports          the /etc/exports line for the kernel NFS server
//! OUT/dnsmasq/vfpga-pxe.conf   DHCP/TFTP snippet (with [dhcp])
//! OUT/.vfpga-pxe           marks the folder as ours
//! ```
//!
//! Rerunning replaces those four folders; a non-empty OUT without the marker is
//! refused, so that a typo cannot wipe another folder.

use std::fs;
use std::path::{Path, PathBuf};

use crate::error::Error;
use crate::initramfs::{self, Image};
use crate::plan::{Initrd, Plan};
use crate::{dnsmasq, menu, nfs, probe};

/// The marker file.
pub const MARKER: &str = ".vfpga-pxe";

/// What was written.
#[derive(Debug, Default)]
pub struct Report {
    /// Files with their sizes, in the order written.
    pub files: Vec<(PathBuf, u64)>,
    /// The plan's warnings.
    pub warnings: Vec<String>,
}

struct Writer {
    report: Report,
}

impl Writer {
    fn mkdir(&self, d: &Path) -> Result<(), Error> {
        fs::create_dir_all(d).map_err(|source| Error::Write {
            path: d.to_owned(),
            source,
        })
    }

    fn write(&mut self, path: &Path, data: &[u8], mode: u32) -> Result<(), Error> {
        use std::os::unix::fs::PermissionsExt;
        if let Some(d) = path.parent() {
            self.mkdir(d)?;
        }
        let err = |source| Error::Write {
            path: path.to_owned(),
            source,
        };
        fs::write(path, data).map_err(err)?;
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(err)?;
        self.report.files.push((path.to_owned(), data.len() as u64));
        Ok(())
    }

    fn copy(&mut self, src: &Path, dst: &Path) -> Result<(), Error> {
        use std::os::unix::fs::PermissionsExt;
        if let Some(d) = dst.parent() {
            self.mkdir(d)?;
        }
        let n = fs::copy(src, dst).map_err(|source| Error::Write {
            path: dst.to_owned(),
            source,
        })?;
        // TFTP and HTTP servers serve files everyone may read.
        fs::set_permissions(dst, fs::Permissions::from_mode(0o644)).map_err(|source| {
            Error::Write {
                path: dst.to_owned(),
                source,
            }
        })?;
        self.report.files.push((dst.to_owned(), n));
        Ok(())
    }
}

fn prepare(out: &Path) -> Result<PathBuf, Error> {
    let werr = |path: &Path| {
        let path = path.to_owned();
        move |source| Error::Write { path, source }
    };
    if out.exists() {
        if !out.is_dir() {
            return Err(Error::invalid(format!(
                "--out {}: exists and is not a folder",
                out.display()
            )));
        }
        let empty = fs::read_dir(out).map_err(werr(out))?.next().is_none();
        if !empty && !out.join(MARKER).is_file() {
            return Err(Error::invalid(format!(
                "--out {}: not empty and not written by vfpga-pxe (no {MARKER}); give a new or empty folder",
                out.display()
            )));
        }
        for d in ["boot", "initramfs", "nfs", "dnsmasq"] {
            let p = out.join(d);
            if p.exists() {
                fs::remove_dir_all(&p).map_err(werr(&p))?;
            }
        }
    }
    fs::create_dir_all(out).map_err(werr(out))?;
    out.canonicalize().map_err(werr(out))
}

/// Writes the tree for `plan` into `out`.
pub fn generate(plan: &Plan, out: &Path) -> Result<Report, Error> {
    let out = prepare(out)?;
    let boot = out.join("boot");
    let mut w = Writer {
        report: Report::default(),
    };
    w.write(
        &out.join(MARKER),
        format!(
            "written by vfpga-pxe {} from {}\n",
            env!("CARGO_PKG_VERSION"),
            plan.source
        )
        .as_bytes(),
        0o644,
    )?;
    w.write(
        &boot.join("menu.ipxe"),
        menu::render(plan).as_bytes(),
        0o644,
    )?;

    for e in &plan.entries {
        w.copy(&e.kernel, &boot.join(e.kernel_file()))?;
        if let Initrd::File(src) = &e.initrd {
            w.copy(src, &boot.join(e.initrd_file()))?;
        }
        if let Some(x) = &e.xen_image {
            w.write(&boot.join(e.xen_file()), x, 0o644)?;
        }
    }

    if let Some(i) = &plan.initramfs {
        let busybox = probe::read(&i.busybox)?;
        let image = Image {
            kver: i.kver.clone(),
            busybox,
            modules: i.modules.clone(),
            info: format!(
                "generator=vfpga-pxe {}\nkver={}\nmodules_dir={}\n",
                env!("CARGO_PKG_VERSION"),
                i.kver,
                i.modules_dir.display()
            ),
        };
        let (cpio, listing) = image.archive()?;
        let data = if i.compress {
            probe::filter("gzip", &["-n", "-9", "-c"], &cpio, "-9 (the initramfs)")?
        } else {
            cpio
        };
        w.write(&boot.join("initrd.img"), &data, 0o644)?;
        let dir = out.join("initramfs");
        w.write(&dir.join("init"), initramfs::INIT.as_bytes(), 0o755)?;
        w.write(
            &dir.join("udhcpc.script"),
            initramfs::UDHCPC_SCRIPT.as_bytes(),
            0o755,
        )?;
        w.write(&dir.join("modules"), image.module_list().as_bytes(), 0o644)?;
        let mut files = listing.join("\n");
        files.push('\n');
        w.write(&dir.join("files.txt"), files.as_bytes(), 0o644)?;
    }

    if let Some(n) = &plan.nfs {
        w.write(
            &out.join("nfs/ganesha.conf"),
            nfs::ganesha_conf(n, &plan.source).as_bytes(),
            0o644,
        )?;
        w.write(
            &out.join("nfs/exports"),
            nfs::exports(n, &plan.source).as_bytes(),
            0o644,
        )?;
    }

    if let Some(d) = &plan.dhcp {
        w.write(
            &out.join("dnsmasq/vfpga-pxe.conf"),
            dnsmasq::render(plan, d, &boot).as_bytes(),
            0o644,
        )?;
        if let Some(ipxe) = &d.ipxe_dir {
            for f in ["undionly.kpxe", "ipxe.efi"] {
                if ipxe.join(f).is_file() {
                    w.copy(&ipxe.join(f), &boot.join(f))?;
                }
            }
        }
    }
    w.report.warnings = plan.warnings.clone();
    Ok(w.report)
}
