//! Xen and PCI helpers for vfpga: xl.cfg generation for guests with accelerator access
//! ([`guest`]), the IOMMU/SR-IOV/passthrough helpers ([`pci`]) and the dom0 service
//! record in xenstore ([`service`]).

pub mod cli;
pub mod guest;
pub mod names;
pub mod pci;
pub mod service;
