//! Time-shared bitstreams: the ones `[library] share` names, whose kernels every guest
//! sees as `BITSTREAM/KERNEL` whatever is loaded. A session opened on such a name
//! survives loads; its runs wait (in the scheduler, batched with the other runs of that
//! bitstream) until their bitstream is on the fabric, which the scheduler switches
//! between the bitstreams in demand, each keeping it at least `min_slice`.

use std::sync::Arc;

use tracing::warn;
use vfpga_engine::{Kernel, Library};
use vfpga_proto::wire::name_field;

/// One shared bitstream: its name and its kernels under their qualified names.
#[derive(Debug)]
pub struct Shared {
    /// The bitstream's name.
    pub name: String,
    /// Its kernels, each with its `BITSTREAM/KERNEL` name in `desc` (the signature and
    /// `sig.name` stay the bitstream's own).
    pub kernels: Vec<Arc<Kernel>>,
}

/// The shared bitstreams, in configuration order (a session names one by index).
#[derive(Debug, Default)]
pub struct Shelf {
    /// Them.
    pub bitstreams: Vec<Shared>,
}

/// A `BITSTREAM/KERNEL` name found on the shelf.
#[derive(Clone, Debug)]
pub struct Found {
    /// Index of the bitstream.
    pub bitstream: u16,
    /// The kernel.
    pub kernel: Arc<Kernel>,
}

impl Shelf {
    /// Reads the manifests of `names` from `library`; a qualified name longer than 31
    /// bytes is left out with a warning.
    pub fn open(library: &Library, names: &[String]) -> Result<Self, String> {
        let mut bitstreams = Vec::with_capacity(names.len());
        for name in names {
            let catalog = library
                .open(name)
                .map_err(|e| format!("[library] share: {name}: {e}"))?;
            let mut kernels = Vec::with_capacity(catalog.kernels.len());
            for k in &catalog.kernels {
                let qualified = format!("{name}/{}", k.sig.name);
                let Some(field) = name_field::<32>(&qualified) else {
                    warn!("[library] share: {qualified} is longer than 31 bytes: not offered");
                    continue;
                };
                let mut k = Kernel::clone(k);
                k.desc.name = field;
                kernels.push(Arc::new(k));
            }
            bitstreams.push(Shared {
                name: name.clone(),
                kernels,
            });
        }
        if bitstreams.len() > usize::from(u16::MAX) {
            return Err("[library] share: too many bitstreams".into());
        }
        Ok(Self { bitstreams })
    }

    /// Kernel `name` if it is `BITSTREAM/KERNEL` of a shared bitstream.
    pub fn find(&self, name: &str) -> Option<Found> {
        let (b, k) = name.split_once('/')?;
        let (i, shared) = self
            .bitstreams
            .iter()
            .enumerate()
            .find(|(_, s)| s.name == b)?;
        let kernel = shared.kernels.iter().find(|x| x.sig.name == k)?;
        Some(Found {
            bitstream: u16::try_from(i).ok()?,
            kernel: kernel.clone(),
        })
    }

    /// The name of shared bitstream `i`.
    pub fn name(&self, i: u16) -> Option<&str> {
        self.bitstreams.get(usize::from(i)).map(|s| s.name.as_str())
    }

    /// Every shared kernel with its qualified name.
    pub fn kernels(&self) -> impl Iterator<Item = (String, &Arc<Kernel>)> {
        self.bitstreams.iter().flat_map(|s| {
            s.kernels
                .iter()
                .map(move |k| (format!("{}/{}", s.name, k.sig.name), k))
        })
    }
}
