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
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KernelEntry {
    name: String,
    #[serde(default)]
    doc: String,
    sim: Option<String>,
    args: Vec<ArgEntryToml>,
}

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
}

/// A kernel of a catalogue.
#[derive(Debug)]
pub struct Kernel {
    /// Its signature.
    pub sig: KernelSig,
    /// The signature encoded for `LIST_KERNELS` (built once).
    pub desc: KernelDesc,
    /// Name of the software implementation, if the manifest gives one.
    pub sim: Option<String>,
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
            kernels.push(Arc::new(Kernel {
                desc: sig.to_desc(),
                sig,
                sim: k.sim,
                generation,
            }));
        }
        Ok(Self {
            name: file.bitstream.name,
            description: file.bitstream.description,
            kernels,
            generation,
        })
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
