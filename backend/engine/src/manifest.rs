//! Kernel manifests: one TOML file per bitstream naming its kernels and their argument
//! signatures. Every engine serves its kernels from a [`Catalog`] built from one.
//!
//! ```toml
//! [bitstream]
//! name = "base"
//! description = "vector and image kernels"
//!
//! [[kernel]]
//! name = "vadd_u32"
//! doc = "c[i] = a[i] + b[i] (wrapping)"
//! sim = "vadd_u32"                      # software implementation, for the sim engine
//! args = [
//!   { name = "a", kind = "in",  type = "u32", dims = ["n"] },
//!   { name = "b", kind = "in",  type = "u32", dims = ["n"] },
//!   { name = "c", kind = "out", type = "u32", dims = ["n"] },
//!   { name = "n", kind = "scalar", type = "u32" },
//! ]
//! ```
//!
//! A buffer holds `count × Π dims` elements (`count` defaults to 1).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::Deserialize;
use vfpga_proto::{ArgKind, ArgSig, ElemType, KernelDesc, KernelSig, MAX_NAME_LEN};

/// A manifest that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The file could not be read.
    #[error("cannot read manifest {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Not valid TOML for a manifest.
    #[error("manifest {origin}: {source}")]
    Parse {
        /// File or description of the text.
        origin: String,
        /// The parser's message (with line and column).
        #[source]
        source: Box<toml::de::Error>,
    },
    /// Valid TOML describing something impossible.
    #[error("manifest {origin}: {message}")]
    Invalid {
        /// File or description of the text.
        origin: String,
        /// What is wrong.
        message: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ManifestFile {
    bitstream: BitstreamSection,
    #[serde(rename = "kernel", default)]
    kernels: Vec<KernelEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BitstreamSection {
    name: String,
    #[serde(default)]
    description: String,
    /// Bitstream file in the library folder, loaded through fpga_manager.
    file: Option<String>,
    /// Device-tree overlay in the library folder, applied through configfs instead.
    overlay: Option<String>,
    /// Partial reconfiguration (fpga_manager flags bit 0).
    #[serde(default)]
    partial: bool,
    /// u-dma-buf buffers the pl engine stages data through.
    #[serde(default)]
    dma: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KernelEntry {
    name: String,
    #[serde(default)]
    doc: String,
    sim: Option<String>,
    core: Option<CoreToml>,
    args: Vec<ArgEntryToml>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CoreToml {
    uio: String,
    #[serde(default = "default_true")]
    irq: bool,
    #[serde(default = "default_timeout_ms")]
    timeout_ms: u64,
}

fn default_true() -> bool {
    true
}

fn default_timeout_ms() -> u64 {
    2000
}

/// Highest argument register offset a manifest may give (a 1 MiB control window).
pub const MAX_REG: u32 = 0xf_fff8;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ArgEntryToml {
    name: String,
    kind: String,
    #[serde(rename = "type")]
    ty: String,
    #[serde(default)]
    dims: Vec<String>,
    count: Option<u16>,
    /// Register offset in the HLS core's AXI-lite map (64-bit addresses take two words).
    reg: Option<u32>,
}

/// How the pl engine drives a kernel's HLS core.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HwCore {
    /// Name of the core's UIO device (its sysfs `name`).
    pub uio: String,
    /// Wait for completion by interrupt (else poll `ap_done`).
    pub irq: bool,
    /// Longest a run may take.
    pub timeout: std::time::Duration,
    /// Register offset of each argument, in signature order.
    pub regs: Vec<u32>,
}

/// How the pl engine loads a bitstream and where it stages data.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BitstreamHw {
    /// Bitstream file (fpga_manager), relative to the library folder.
    pub file: Option<String>,
    /// Overlay file (configfs), relative to the library folder.
    pub overlay: Option<String>,
    /// Partial reconfiguration.
    pub partial: bool,
    /// u-dma-buf device names.
    pub dma: Vec<String>,
}

/// A kernel of a catalogue.
#[derive(Clone, Debug)]
pub struct Kernel {
    /// Its signature.
    pub sig: KernelSig,
    /// The signature encoded for `LIST_KERNELS` (built once).
    pub desc: KernelDesc,
    /// Name of the software implementation, if the manifest gives one.
    pub sim: Option<String>,
    /// Its HLS core, if the manifest describes one.
    pub core: Option<HwCore>,
    /// Generation of the catalogue it belongs to.
    pub generation: u64,
}

/// The kernels of one bitstream.
#[derive(Debug)]
pub struct Catalog {
    /// Bitstream name.
    pub name: String,
    /// Bitstream description.
    pub description: String,
    /// Kernels, in manifest order.
    pub kernels: Vec<Arc<Kernel>>,
    /// Loading and DMA details for hardware engines.
    pub hw: BitstreamHw,
    /// Unique per catalogue built in this process; sessions opened on an older
    /// catalogue are refused after a bitstream load.
    pub generation: u64,
}

static GENERATION: AtomicU64 = AtomicU64::new(1);

impl Catalog {
    /// Reads and checks the manifest at `path`.
    pub fn load(path: &Path) -> Result<Self, ManifestError> {
        let text = std::fs::read_to_string(path).map_err(|source| ManifestError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml(&text, &path.display().to_string())
    }

    /// Parses and checks manifest text; `origin` names it in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<Self, ManifestError> {
        let file: ManifestFile = toml::from_str(text).map_err(|e| ManifestError::Parse {
            origin: origin.to_owned(),
            source: Box::new(e),
        })?;
        let invalid = |message: String| ManifestError::Invalid {
            origin: origin.to_owned(),
            message,
        };
        if !valid_name(&file.bitstream.name) {
            return Err(invalid(format!(
                "bitstream name `{}` must be 1-{MAX_NAME_LEN} characters of [A-Za-z0-9_.-]",
                file.bitstream.name
            )));
        }
        let generation = GENERATION.fetch_add(1, Ordering::Relaxed);
        let mut kernels: Vec<Arc<Kernel>> = Vec::with_capacity(file.kernels.len());
        for k in file.kernels {
            if !valid_name(&k.name) {
                return Err(invalid(format!(
                    "kernel name `{}` must be 1-{MAX_NAME_LEN} characters of [A-Za-z0-9_.-]",
                    k.name
                )));
            }
            if kernels.iter().any(|o| o.sig.name == k.name) {
                return Err(invalid(format!("kernel `{}` is defined twice", k.name)));
            }
            let sig = signature(&k).map_err(&invalid)?;
            sig.validate().map_err(|e| invalid(e.to_string()))?;
            let core = hw_core(&k).map_err(&invalid)?;
            kernels.push(Arc::new(Kernel {
                desc: sig.to_desc(),
                sig,
                sim: k.sim,
                core,
                generation,
            }));
        }
        let b = file.bitstream;
        if b.file.is_some() && b.overlay.is_some() {
            return Err(invalid(
                "give either file (fpga_manager) or overlay (configfs), not both".into(),
            ));
        }
        for f in b.file.iter().chain(&b.overlay) {
            if f.is_empty() || f.contains('/') || f.starts_with('.') {
                return Err(invalid(format!(
                    "{f:?} must be a file name in the library folder, not a path"
                )));
            }
        }
        Ok(Self {
            name: b.name,
            description: b.description,
            kernels,
            hw: BitstreamHw {
                file: b.file,
                overlay: b.overlay,
                partial: b.partial,
                dma: b.dma,
            },
            generation,
        })
    }

    /// A catalogue of kernels known by signature only (e.g. a remote board's).
    pub fn from_signatures(name: &str, description: &str, sigs: Vec<KernelSig>) -> Self {
        let generation = GENERATION.fetch_add(1, Ordering::Relaxed);
        Self {
            name: name.to_owned(),
            description: description.to_owned(),
            kernels: sigs
                .into_iter()
                .map(|sig| {
                    Arc::new(Kernel {
                        desc: sig.to_desc(),
                        sig,
                        sim: None,
                        core: None,
                        generation,
                    })
                })
                .collect(),
            hw: BitstreamHw::default(),
            generation,
        }
    }

    /// A catalogue without kernels (no bitstream loaded).
    pub fn empty(name: &str, description: &str) -> Self {
        Self {
            name: name.to_owned(),
            description: description.to_owned(),
            kernels: Vec::new(),
            hw: BitstreamHw::default(),
            generation: GENERATION.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// The kernel called `name`.
    pub fn find(&self, name: &str) -> Option<&Arc<Kernel>> {
        self.kernels.iter().find(|k| k.sig.name == name)
    }
}

/// Kernel and bitstream names: short, printable, never a path.
pub fn valid_name(s: &str) -> bool {
    (1..=MAX_NAME_LEN).contains(&s.len())
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.'))
        && !s.starts_with('.')
}

fn hw_core(k: &KernelEntry) -> Result<Option<HwCore>, String> {
    let Some(c) = &k.core else {
        if let Some(a) = k.args.iter().find(|a| a.reg.is_some()) {
            return Err(format!(
                "kernel `{}`, argument `{}`: reg without a core",
                k.name, a.name
            ));
        }
        return Ok(None);
    };
    let mut regs = Vec::with_capacity(k.args.len());
    for a in &k.args {
        let reg = a.reg.ok_or_else(|| {
            format!(
                "kernel `{}`, argument `{}`: the core needs its reg offset",
                k.name, a.name
            )
        })?;
        // A 64-bit value takes reg and reg + 4; the bound keeps that sum far from
        // overflowing on a 32-bit board (HLS control windows are a few KiB).
        if !(0x10..=MAX_REG).contains(&reg) || reg % 4 != 0 {
            return Err(format!(
                "kernel `{}`, argument `{}`: reg {reg:#x} must be word-aligned, at least 0x10 (0x00-0x0c are ap_ctrl, GIE, IER, ISR) and at most {MAX_REG:#x}",
                k.name, a.name
            ));
        }
        regs.push(reg);
    }
    if c.timeout_ms == 0 {
        return Err(format!("kernel `{}`: timeout_ms must be positive", k.name));
    }
    Ok(Some(HwCore {
        uio: c.uio.clone(),
        irq: c.irq,
        timeout: std::time::Duration::from_millis(c.timeout_ms),
        regs,
    }))
}

fn signature(k: &KernelEntry) -> Result<KernelSig, String> {
    let mut args = Vec::with_capacity(k.args.len());
    for a in &k.args {
        let ctx = |m: &str| format!("kernel `{}`, argument `{}`: {m}", k.name, a.name);
        let kind = ArgKind::from_name(&a.kind)
            .ok_or_else(|| ctx("kind must be \"in\", \"out\" or \"scalar\""))?;
        let ty = ElemType::from_name(&a.ty)
            .ok_or_else(|| ctx("type must be one of u8 i16 i32 u32 f32 u64 i64 f64"))?;
        if a.dims.len() > 2 {
            return Err(ctx("at most two dims"));
        }
        let mut dims = [None, None];
        for (slot, d) in dims.iter_mut().zip(&a.dims) {
            let idx = k
                .args
                .iter()
                .position(|x| &x.name == d)
                .ok_or_else(|| ctx(&format!("dim `{d}` is not an argument")))?;
            *slot = Some(u8::try_from(idx).map_err(|_| ctx("too many arguments"))?);
        }
        let count = match kind {
            ArgKind::Scalar if a.count.is_some() || !a.dims.is_empty() => {
                return Err(ctx("scalars take no dims or count"))
            }
            ArgKind::Scalar => 0,
            _ => a.count.unwrap_or(1),
        };
        args.push(ArgSig {
            name: a.name.clone(),
            kind,
            ty,
            dims,
            count,
        });
    }
    Ok(KernelSig {
        name: k.name.clone(),
        doc: k.doc.clone(),
        args,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
        [bitstream]
        name = "t"
        [[kernel]]
        name = "vadd_u32"
        sim = "vadd_u32"
        args = [
          { name = "a", kind = "in", type = "u32", dims = ["n"] },
          { name = "n", kind = "scalar", type = "u32" },
        ]
    "#;

    #[test]
    fn parses_a_manifest() {
        let c = Catalog::from_toml(GOOD, "test").unwrap();
        let k = c.find("vadd_u32").unwrap();
        assert_eq!(k.sig.args[0].dims, [Some(1), None]);
        assert_eq!(k.sig.args[0].count, 1);
    }

    #[test]
    fn refuses_bad_manifests_with_a_reason() {
        let cases = [
            (GOOD.replace("\"n\"]", "\"m\"]"), "dim `m`"),
            (
                GOOD.replace("type = \"u32\", dims", "type = \"u33\", dims"),
                "type must be",
            ),
            (
                GOOD.replace("name = \"t\"", "name = \"../etc\""),
                "bitstream name",
            ),
            (
                format!("{GOOD}\n[[kernel]]\nname = \"vadd_u32\"\nargs = []\n"),
                "defined twice",
            ),
            (GOOD.replace("sim = ", "colour = "), "unknown field"),
            (
                GOOD.replace("kind = \"in\"", "kind = \"inout\""),
                "kind must be",
            ),
        ];
        for (text, want) in cases {
            let e = Catalog::from_toml(&text, "test").unwrap_err().to_string();
            assert!(e.contains(want), "{e:?} lacks {want:?}");
        }
    }

    #[test]
    fn names_are_never_paths() {
        assert!(valid_name("sha256"));
        assert!(!valid_name("a/b"));
        assert!(!valid_name(".hidden"));
        assert!(!valid_name(""));
        assert!(!valid_name(&"x".repeat(32)));
    }
}
