//! Paths under the engine's root (`/` on a board, a test folder against the model) and
//! small file reads and writes that keep their context in errors.

use std::path::{Path, PathBuf};

use crate::EngineError;

/// The root every sysfs and /dev path is under.
#[derive(Clone, Debug)]
pub struct Root(PathBuf);

impl Root {
    /// A root at `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self(dir.into())
    }

    /// `rel` under the root.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.0.join(rel)
    }

    /// Reads `rel`, trimmed.
    pub fn read(&self, rel: &str) -> Result<String, EngineError> {
        read(&self.path(rel))
    }

    /// Writes `value` to `rel`.
    pub fn write(&self, rel: &str, value: &str) -> Result<(), EngineError> {
        let p = self.path(rel);
        std::fs::write(&p, value)
            .map_err(|e| EngineError::io(format!("writing {value:?} to {}", p.display()), e))
    }

    /// Reads a number written in decimal or 0x-hex.
    pub fn read_u64(&self, rel: &str) -> Result<u64, EngineError> {
        let s = self.read(rel)?;
        let v = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
            Some(h) => u64::from_str_radix(h, 16),
            None => s.parse(),
        };
        v.map_err(|_| {
            EngineError::Failed(format!(
                "{}: {s:?} is not a number",
                self.path(rel).display()
            ))
        })
    }
}

/// Reads a file, trimmed.
pub fn read(p: &Path) -> Result<String, EngineError> {
    std::fs::read_to_string(p)
        .map(|s| s.trim().to_owned())
        .map_err(|e| EngineError::io(format!("reading {}", p.display()), e))
}
