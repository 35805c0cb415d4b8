//! Xen and PCI helpers for vfpga: xl.cfg generation for guests with accelerator access
//! ([`guest`]) and the IOMMU/SR-IOV/passthrough helpers ([`pci`]).

pub mod guest;
pub mod pci;
