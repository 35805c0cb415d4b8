//! `vfpga-pxe`: network boot for vfpga guests.
//!
//! From one TOML description (see [`EXAMPLE`]) or a few flags it writes the whole boot
//! tree: the iPXE menu (Linux guests and Xen + dom0, both on an NFS root, an iPXE
//! shell, a default with a timeout), the TFTP/HTTP folder with kernels, initrds and a
//! decompressed Xen, a netboot initramfs that brings the network up with DHCP, mounts
//! the NFS root (NFSv4.2, falling back to NFSv3) and switch_roots into it, the
//! nfs-ganesha configuration and `/etc/exports` line, and a dnsmasq snippet for a lab
//! network. Descriptions are checked against the files they name before anything is
//! written ([`plan::Plan::new`]).

pub mod cli;
pub mod cpio;
pub mod description;
pub mod dnsmasq;
pub mod error;
pub mod generate;
pub mod initramfs;
pub mod menu;
pub mod nfs;
pub mod plan;
pub mod probe;

#[cfg(test)]
mod tests;

use std::path::Path;

pub use description::{Description, Overrides};
pub use error::Error;
pub use generate::{generate, Report};
pub use plan::Plan;

/// An annotated description, printed by `vfpga-pxe example`.
pub const EXAMPLE: &str = include_str!("../assets/example.toml");

/// Reads the description (`config`, or the flags alone) and checks it.
pub fn plan(config: Option<&Path>, overrides: &Overrides) -> Result<Plan, Error> {
    let (mut d, source) = match config {
        Some(p) => (Description::load(p)?, p.display().to_string()),
        None => (
            Description::from_flags(overrides)?,
            "command line flags".to_owned(),
        ),
    };
    d.apply(overrides, config.is_some())?;
    Plan::new(&d, &source)
}
