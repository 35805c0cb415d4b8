//! vfpgad: the vhost-user daemon that exposes an accelerator engine to guests as a
//! virtio device.
//!
//! Where a request goes: [`vhu_vfpga`] pops it from its virtqueue, [`chain`] decodes
//! and checks it, [`dispatch`] runs the operation (handing long runs to
//! [`executor`]'s engine threads), and the completion goes back through
//! [`vhu_vfpga::complete_one`].

pub mod chain;
pub mod config;
pub mod device;
pub mod dispatch;
pub mod executor;
pub mod server;
pub mod sessions;
pub mod stats;
pub mod vhu_vfpga;

use std::sync::Arc;

use vfpga_engine::sim::SimEngine;
use vfpga_engine::{Engine, Library};

pub use config::Config;
pub use server::Server;

/// Guest memory as mapped from the frontend's memory table.
pub type GuestMem = vm_memory::GuestMemoryMmap<()>;

/// A reference that keeps one version of the guest memory map alive.
pub type MemGuard = vm_memory::GuestMemoryLoadGuard<GuestMem>;

/// Builds the engine the configuration names.
pub fn build_engine(config: &Config) -> Result<Arc<dyn Engine>, String> {
    let library = config.library.as_ref().map(|l| Library {
        dir: l.dir.clone(),
        allow: l.allow.clone(),
    });
    match config.daemon.engine.as_str() {
        "sim" => SimEngine::new(library)
            .map(|e| Arc::new(e) as Arc<dyn Engine>)
            .map_err(|e| e.to_string()),
        other => Err(format!("unknown engine {other:?}")),
    }
}
