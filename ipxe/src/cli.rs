//! `vfpga-pxe`'s command line: its flags and subcommands, and their help. The binary
//! parses it; the packaging's generator (packaging/docgen) writes the man pages and
//! shell completions from the same definition.
// The comments on flags are their --help text, where brackets (`[NAME=]VALUE`,
// `HOST[:PORT]`) are syntax, not intra-doc links.
#![allow(rustdoc::broken_intra_doc_links)]

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::{plan, Overrides, Plan};

/// What `--help` shows after the options: examples and where to read more.
pub const AFTER_HELP: &str = "\
Examples:
  vfpga-pxe example > boot.toml                  an annotated description to start from
  vfpga-pxe check --config boot.toml             check it (and every file it names)
  vfpga-pxe generate --config boot.toml --out /srv/vfpga-pxe
  vfpga-pxe generate --kernel /srv/nfs/root/boot/vmlinuz-6.1.0-48-amd64 \\
      --nfs-root /srv/nfs/root --server 192.168.42.1 --out /srv/vfpga-pxe
                                                 (no file: one Linux entry; --xen adds Xen)
  vfpga-pxe generate --config boot.toml --default xen --base-url http://10.0.2.2:8080/ --out t

What --out holds:
  boot/       serve it over TFTP or HTTP: menu.ipxe (the DHCP boot file), initrd.img (the
              netboot initramfs), NAME/vmlinuz, NAME/initrd.img, NAME/xen (decompressed)
  nfs/        ganesha.conf (nfs-ganesha) and exports (the line for the kernel's nfsd)
  dnsmasq/    vfpga-pxe.conf: DHCP, TFTP and iPXE chainloading (with a [dhcp] section)
  initramfs/  what initrd.img holds, to read: init, udhcpc.script, modules, files.txt

Try it under QEMU (user networking: its TFTP server serves boot/, the host is 10.0.2.2):
  qemu-system-x86_64 -m 1024 -nographic -boot n -device virtio-net-pci,netdev=n0 \\
      -netdev user,id=n0,tftp=OUT/boot,bootfile=menu.ipxe

The netboot initramfs reads from the kernel command line: nfsroot=[SERVER:]PATH[,OPTIONS],
rw or ro, init=PATH, BOOTIF=01-MAC (the menu sets it), vfpga.netdev=NAME,
vfpga.netwait=SECS, vfpga.mountwait=SECS, vfpga.onfail=shell|reboot|poweroff|halt. docs/pxe.md explains a lab
setup step by step.";

/// Network boot for vfpga guests: iPXE menu, TFTP/HTTP tree, netboot initramfs, NFS
/// exports and a dnsmasq snippet, from one TOML description.
#[derive(Debug, Parser)]
#[command(version, about, after_help = AFTER_HELP)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check the description and write the boot tree.
    Generate {
        #[command(flatten)]
        desc: DescArgs,
        /// Output folder (new, empty, or written by vfpga-pxe before: its boot/, nfs/,
        /// dnsmasq/ and initramfs/ are replaced).
        #[arg(short, long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Check the description and every file it names; write nothing.
    Check {
        #[command(flatten)]
        desc: DescArgs,
        /// Also print a generated text file: menu, ganesha, exports or dnsmasq.
        #[arg(long, value_name = "FILE")]
        show: Option<Show>,
    },
    /// Print an annotated example description.
    Example,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Show {
    Menu,
    Ganesha,
    Exports,
    Dnsmasq,
}

#[derive(Debug, Args)]
pub struct DescArgs {
    /// The boot description (TOML; `vfpga-pxe example` shows every field).
    #[arg(short, long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// URL of the boot tree, tftp://HOST/ or http://HOST[:PORT]/PATH/ (server.base_url).
    #[arg(long, value_name = "URL")]
    pub base_url: Option<String>,
    /// Address of the boot and NFS server as guests reach it (server.address).
    #[arg(long, value_name = "IPV4")]
    pub server: Option<String>,
    /// Entry booted after the timeout, or `shell` (menu.default).
    #[arg(long, value_name = "NAME")]
    pub default: Option<String>,
    /// Seconds before the default boots, 0 to wait (menu.timeout).
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<u32>,
    /// The exported root file system (nfs.root).
    #[arg(long, value_name = "DIR")]
    pub nfs_root: Option<PathBuf>,
    /// /lib/modules/VERSION of the guest kernel (initramfs.modules_dir; without a file
    /// it defaults to NFS_ROOT/lib/modules/VERSION, else /lib/modules/VERSION, for the
    /// kernel's VERSION).
    #[arg(long, value_name = "DIR")]
    pub modules_dir: Option<PathBuf>,
    /// A static busybox (initramfs.busybox; default /bin/busybox).
    #[arg(long, value_name = "FILE")]
    pub busybox: Option<PathBuf>,
    /// Without --config: the Linux kernel (bzImage) of the `linux` entry.
    #[arg(long, value_name = "FILE")]
    pub kernel: Option<PathBuf>,
    /// Without --config: add a `xen` entry booting this hypervisor (xen-*.gz or
    /// decompressed) with the same kernel as dom0.
    #[arg(long, value_name = "FILE")]
    pub xen: Option<PathBuf>,
    /// Without --config: more kernel command line for the entries.
    #[arg(long, value_name = "ARGS", allow_hyphen_values = true)]
    pub args: Option<String>,
}

impl DescArgs {
    pub fn overrides(&self) -> Overrides {
        Overrides {
            base_url: self.base_url.clone(),
            server: self.server.clone(),
            default: self.default.clone(),
            timeout: self.timeout,
            nfs_root: self.nfs_root.clone(),
            modules_dir: self.modules_dir.clone(),
            busybox: self.busybox.clone(),
            kernel: self.kernel.clone(),
            xen: self.xen.clone(),
            args: self.args.clone(),
        }
    }

    pub fn plan(&self) -> Result<Plan, crate::Error> {
        plan(self.config.as_deref(), &self.overrides())
    }
}
