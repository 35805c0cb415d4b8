//! The bitstream library: the only place `LOAD_BITSTREAM` may take manifests from.
//! A guest names a bitstream; it never chooses a path.

use std::path::PathBuf;

use crate::manifest::valid_name;
use crate::{Catalog, EngineError};

/// A folder of manifests (`NAME.toml`) and the names guests may load from it.
#[derive(Clone, Debug)]
pub struct Library {
    /// Folder holding `NAME.toml` manifests (and, for hardware, their bitstreams).
    pub dir: PathBuf,
    /// Names guests may load; nothing else is. `*` allows every manifest in `dir`.
    pub allow: Vec<String>,
}

impl Library {
    /// Resolves and parses the manifest of bitstream `name`, enforcing the allowlist.
    pub fn open(&self, name: &str) -> Result<Catalog, EngineError> {
        if !valid_name(name) {
            return Err(EngineError::Permission(format!(
                "`{}` is not a bitstream name",
                name.escape_debug()
            )));
        }
        if !self.allow.iter().any(|a| a == name || a == "*") {
            return Err(EngineError::Permission(format!(
                "bitstream `{name}` is not in the allowlist"
            )));
        }
        let path = self.dir.join(format!("{name}.toml"));
        if !path.is_file() {
            return Err(EngineError::UnknownBitstream(name.to_owned()));
        }
        let catalog = Catalog::load(&path).map_err(|e| EngineError::Failed(e.to_string()))?;
        // The name a guest loads by is the name the loaded catalogue reports.
        if catalog.name != name {
            return Err(EngineError::Failed(format!(
                "{}: [bitstream] name = {:?} differs from the file's name {name:?}",
                path.display(),
                catalog.name
            )));
        }
        Ok(catalog)
    }
}
