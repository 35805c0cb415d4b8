//! A ready board for tests of what sits above the pl engine (vfpgad, the agent): the
//! model with one core per kernel, and a bitstream library holding `base`, whose
//! manifest maps each kernel to its core with the model's own register map, so runs
//! compute what the sim engine computes; eight DMA buffers let two three-buffer runs go
//! at once.

use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};

use vfpga_proto::{ArgKind, KernelSig};

use super::{hls_register_map, CoreSpec, HlsModel, ModelSpec};
use crate::sim::SimEngine;
use crate::Engine;

/// The model and its library.
#[derive(Debug)]
pub struct ModelBoard {
    /// The running model.
    pub model: HlsModel,
    /// The engine's root (sysfs and /dev).
    pub root: PathBuf,
    /// The library folder: `base.toml` and `base.bit.bin`.
    pub library: PathBuf,
}

impl ModelBoard {
    /// Lays out the board under `dir` with a core for each of the sim `kernels` (by
    /// catalogue name, e.g. `vadd_u32`, `mmult`), each run bounded by `timeout_ms`.
    pub fn start(dir: &Path, kernels: &[&str], timeout_ms: u64) -> io::Result<Self> {
        Self::start_with(dir, &[("base", kernels)], timeout_ms)
    }

    /// A board whose library holds several bitstreams, each `(name, kernels)` (a
    /// kernel in two of them is one core of the model, reset by either's load).
    pub fn start_with(
        dir: &Path,
        bitstreams: &[(&str, &[&str])],
        timeout_ms: u64,
    ) -> io::Result<Self> {
        let sim = SimEngine::new(None).map_err(|e| io::Error::other(e.to_string()))?;
        let catalog = sim.catalog();
        let mut cores: Vec<CoreSpec> = Vec::new();
        let mut manifests = Vec::new();
        for (bitstream, kernels) in bitstreams {
            let mut sigs = Vec::new();
            for name in *kernels {
                let k = catalog
                    .find(name)
                    .ok_or_else(|| io::Error::other(format!("no sim kernel {name}")))?;
                if !cores.iter().any(|c| c.uio == *name) {
                    cores.push(CoreSpec {
                        uio: (*name).to_owned(),
                        implements: k.sim.clone().unwrap_or_default(),
                    });
                }
                sigs.push((k.sim.clone().unwrap_or_default(), k.sig.clone()));
            }
            manifests.push((*bitstream, sigs));
        }
        let dma: Vec<String> = (0..8).map(|i| format!("udmabuf{i}")).collect();
        let root = dir.join("root");
        let model = HlsModel::start(
            &root,
            &ModelSpec {
                cores,
                dma: dma.iter().map(|d| (d.clone(), 4 << 20)).collect(),
            },
        )?;
        let library = dir.join("library");
        std::fs::create_dir_all(&library)?;
        for (bitstream, sigs) in manifests {
            std::fs::write(
                library.join(format!("{bitstream}.bit.bin")),
                format!("model bitstream {bitstream}"),
            )?;
            std::fs::write(
                library.join(format!("{bitstream}.toml")),
                manifest(bitstream, &sigs, &dma, timeout_ms),
            )?;
        }
        Ok(Self {
            model,
            root,
            library,
        })
    }
}

/// The manifest of bitstream `name` for `kernels` (sim implementation, signature).
fn manifest(
    name: &str,
    kernels: &[(String, KernelSig)],
    dma: &[String],
    timeout_ms: u64,
) -> String {
    let quoted: Vec<String> = dma.iter().map(|d| format!("{d:?}")).collect();
    let mut t = format!(
        "[bitstream]\nname = {name:?}\nfile = \"{name}.bit.bin\"\ndma = [{}]\n",
        quoted.join(", ")
    );
    for (sim, sig) in kernels {
        let regs = hls_register_map(sig);
        let _ = write!(
            t,
            "\n[[kernel]]\nname = {:?}\nsim = {sim:?}\ncore = {{ uio = {:?}, timeout_ms = {timeout_ms} }}\nargs = [\n",
            sig.name, sig.name
        );
        for (a, reg) in sig.args.iter().zip(regs) {
            let dims: Vec<String> = a
                .dims
                .iter()
                .flatten()
                .filter_map(|&d| sig.args.get(usize::from(d)))
                .map(|d| format!("{:?}", d.name))
                .collect();
            let count = match a.kind {
                ArgKind::Scalar => String::new(),
                _ => format!(", count = {}", a.count),
            };
            let _ = writeln!(
                t,
                "  {{ name = {:?}, kind = {:?}, type = {:?}, dims = [{}]{count}, reg = {reg:#x} }},",
                a.name,
                a.kind.name(),
                a.ty.name(),
                dims.join(", ")
            );
        }
        t.push_str("]\n");
    }
    t
}
