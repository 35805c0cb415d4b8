//! Loading a bitstream: through fpga_manager (`flags`, `firmware`, then `state` until
//! `operating`), or as a device-tree overlay in configfs (`path`, then `status` until
//! `applied`). Either way the file is first placed in the firmware search path.

use std::path::Path;
use std::time::{Duration, Instant};

use super::sysfs::Root;
use crate::EngineError;

/// How long an unchanged state may hide an asynchronous load.
const SETTLE: Duration = Duration::from_millis(50);

/// fpga_manager states that end a load in failure.
const FAILED: &[&str] = &[
    "unknown",
    "power off",
    "firmware request error",
    "write init error",
    "write error",
    "write complete error",
];

/// The folder under `/lib/firmware` that vfpga's bitstreams are copied into: a library's
/// file never replaces a firmware blob of the system's (`regulatory.db`, a NIC's).
const FIRMWARE_DIR: &str = "vfpga";

/// Copies `file` from the library folder into `lib/firmware/vfpga` under the root;
/// returns its name for the kernel's firmware loader (`vfpga/FILE`).
fn stage(root: &Root, library: &Path, file: &str) -> Result<String, EngineError> {
    let src = library.join(file);
    let fw_dir = root.path(&format!("lib/firmware/{FIRMWARE_DIR}"));
    std::fs::create_dir_all(&fw_dir)
        .map_err(|e| EngineError::io(format!("creating {}", fw_dir.display()), e))?;
    let dst = fw_dir.join(file);
    // A library kept in that very folder is already in place (a copy onto itself
    // would truncate it).
    if let (Ok(a), Ok(b)) = (src.canonicalize(), dst.canonicalize()) {
        if a == b {
            return Ok(format!("{FIRMWARE_DIR}/{file}"));
        }
    }
    std::fs::copy(&src, &dst)
        .map(|_| format!("{FIRMWARE_DIR}/{file}"))
        .map_err(|e| {
            EngineError::io(
                format!("copying {} into {}", src.display(), fw_dir.display()),
                e,
            )
        })
}

/// Loads `file` through fpga_manager `mgr` (e.g. "fpga0").
pub fn load_with_manager(
    root: &Root,
    library: &Path,
    mgr: &str,
    file: &str,
    partial: bool,
    timeout: Duration,
) -> Result<(), EngineError> {
    let dir = format!("sys/class/fpga_manager/{mgr}");
    if !root.path(&dir).is_dir() {
        return Err(EngineError::Failed(format!(
            "no FPGA manager at {} (is the fpga_manager driver loaded?)",
            root.path(&dir).display()
        )));
    }
    let firmware = stage(root, library, file)?;
    let before = root.read(&format!("{dir}/state"))?;
    root.write(&format!("{dir}/flags"), if partial { "1" } else { "0" })?;
    root.write(&format!("{dir}/firmware"), &firmware)?;
    let start = Instant::now();
    let deadline = start + timeout;
    // Most managers program synchronously inside the `firmware` write; one that works
    // asynchronously may still show the old state for a moment: wait briefly for it to
    // move before trusting an unchanged "operating".
    let mut moved = false;
    loop {
        let state = root.read(&format!("{dir}/state"))?;
        moved |= state != before;
        if state == "operating" && (moved || start.elapsed() >= SETTLE) {
            return Ok(());
        }
        if FAILED.contains(&state.as_str()) {
            return Err(EngineError::Failed(format!(
                "loading {file} through {mgr} failed: state {state:?}"
            )));
        }
        if Instant::now() >= deadline {
            return Err(EngineError::Timeout(timeout));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Applies overlay `file` under configfs, named `vfpga-<name>` (re-applied if present).
pub fn apply_overlay(
    root: &Root,
    library: &Path,
    name: &str,
    file: &str,
    timeout: Duration,
) -> Result<(), EngineError> {
    let overlays = root.path("sys/kernel/config/device-tree/overlays");
    if !overlays.is_dir() {
        return Err(EngineError::Failed(format!(
            "no configfs overlay directory at {} (mount configfs; is the overlay support built in?)",
            overlays.display()
        )));
    }
    let firmware = stage(root, library, file)?;
    let dir = overlays.join(format!("vfpga-{name}"));
    if dir.exists() {
        std::fs::remove_dir(&dir).map_err(|e| {
            EngineError::io(format!("removing the old overlay {}", dir.display()), e)
        })?;
    }
    std::fs::create_dir(&dir)
        .map_err(|e| EngineError::io(format!("creating {}", dir.display()), e))?;
    std::fs::write(dir.join("path"), &firmware)
        .map_err(|e| EngineError::io(format!("writing {}/path", dir.display()), e))?;
    let deadline = Instant::now() + timeout;
    loop {
        // configfs creates `status` with the directory; tolerate it appearing late.
        let status = super::sysfs::read(&dir.join("status")).unwrap_or_default();
        if status == "applied" {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(EngineError::Failed(format!(
                "overlay {file} not applied within {timeout:?} (status {status:?})"
            )));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
