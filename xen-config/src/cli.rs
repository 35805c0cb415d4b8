//! `vfpga-xen`'s command line: its flags and subcommands, and their help. The binary
//! parses it; the packaging's generator (packaging/docgen) writes the man pages and
//! shell completions from the same definition.
// The comments on flags are their --help text, where brackets (`[NAME=]VALUE`,
// `HOST[:PORT]`) are syntax, not intra-doc links.
#![allow(rustdoc::broken_intra_doc_links)]

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::pci::{Bdf, PassDriver};

/// What `--help` shows after the options: examples and where to read more.
pub const AFTER_HELP: &str = "\
Examples:
  vfpga-xen guest-config vm1.toml -o /etc/xen/vm1.cfg
  vfpga-xen pci groups
  vfpga-xen pci sriov enable 0000:03:00.0 2
  vfpga-xen pci bind 0000:03:10.0 --driver vfio-pci
  vfpga-xen pci lines 0000:03:10.0
  vfpga-xen --dry-run pci sriov enable 0000:03:00.0 4      (show the sysfs writes only)

The guest description format is documented in docs/xen.md.";

/// Xen guest configuration and PCI passthrough helpers for vfpga.
#[derive(Debug, Parser)]
#[command(version, about = "Xen guest configuration and PCI passthrough helpers for vfpga", after_help = AFTER_HELP)]
pub struct Cli {
    /// Where sysfs is mounted (for tests and chroots).
    #[arg(long, global = true, default_value = "/sys", value_name = "DIR")]
    pub sysfs_root: PathBuf,

    /// Print the sysfs writes instead of making them.
    #[arg(long, global = true)]
    pub dry_run: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write xl.cfg for a guest described in TOML.
    GuestConfig {
        /// Guest description (TOML).
        description: PathBuf,
        /// Output file (default: standard output).
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
        /// Target host architecture (default: this machine's).
        #[arg(long, value_name = "ARCH")]
        arch: Option<String>,
        /// Target Xen version, e.g. 4.18 (default: the running hypervisor's).
        #[arg(long, value_name = "X.Y")]
        xen_version: Option<String>,
    },
    /// PCI functions, IOMMU groups, SR-IOV and driver binding.
    Pci {
        #[command(subcommand)]
        command: PciCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum PciCommand {
    /// List PCI functions with drivers, IOMMU groups and SR-IOV state.
    List,
    /// List IOMMU groups and the functions in each.
    Groups,
    /// SR-IOV: list physical functions and their VFs, or enable/disable VFs.
    Sriov {
        #[command(subcommand)]
        command: Option<SriovCommand>,
    },
    /// Bind a function to vfio-pci or pciback for passthrough.
    Bind {
        /// The function, e.g. 0000:03:10.0.
        bdf: Bdf,
        /// vfio-pci (QEMU/KVM, user space) or pciback (Xen).
        #[arg(long, value_name = "DRIVER")]
        driver: PassDriver,
    },
    /// Give a function back to its normal host driver.
    Unbind {
        /// The function.
        bdf: Bdf,
    },
    /// Print the xl and QEMU lines that hand a function to a guest.
    Lines {
        /// The function.
        bdf: Bdf,
    },
}

#[derive(Debug, Subcommand)]
pub enum SriovCommand {
    /// Enable N virtual functions (driver autoprobing off).
    Enable {
        /// Physical function.
        pf: Bdf,
        /// Number of VFs.
        n: u32,
    },
    /// Remove all virtual functions.
    Disable {
        /// Physical function.
        pf: Bdf,
    },
}
