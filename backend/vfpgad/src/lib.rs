//! vfpgad: the vhost-user daemon that exposes an accelerator engine to guests as a
//! virtio device.
//!
//! Where a request goes: [`vhu_vfpga`] pops it from its virtqueue, [`chain`] decodes
//! and checks it, [`dispatch`] runs the operation (handing long runs to
//! [`executor`]'s engine threads, in the order [`sched`] finds fair between guests), and
//! the completion goes back through [`used`]. Guests on byte streams (vsock, unix sockets, TLS, Xen
//! vchan) come in through [`stream`], which runs the same operations.
//!
//! Without the `vhost` feature (default on) only the device logic is built: sessions,
//! operations and runs on requests decoded elsewhere, as `vfpga-agent` uses them on
//! 32-bit boards.
// Parts only the vhost-user side reads are idle without it.
#![cfg_attr(not(feature = "vhost"), allow(dead_code, unused_imports))]

pub mod chain;
pub mod check;
pub mod cli;
pub mod config;
pub mod device;
pub mod dispatch;
#[cfg(feature = "vhost")]
pub mod executor;
pub mod libvirt;
pub mod limited;
pub mod lock;
pub mod logging;
pub mod metrics;
pub mod notify;
pub mod resume;
pub mod sched;
#[cfg(feature = "vhost")]
pub mod server;
pub mod sessions;
pub mod shelf;
pub mod sockets;
pub mod stats;
pub mod stream;
#[cfg(feature = "vhost")]
pub mod supervise;
pub mod tenant;
pub mod threads;
#[cfg(feature = "vhost")]
pub mod used;
#[cfg(feature = "vhost")]
pub mod vhu_vfpga;
#[cfg(feature = "vhost")]
pub mod xen;

use std::sync::Arc;

use vfpga_engine::pl::{PlConfig, PlEngine};
use vfpga_engine::sim::SimEngine;
use vfpga_engine::{Engine, Library};

pub use config::Config;
use config::EngineKind;
#[cfg(feature = "vhost")]
pub use server::Server;

/// Guest memory as mapped from the frontend's memory table.
#[cfg(feature = "vhost")]
pub type GuestMem = vm_memory::GuestMemoryMmap<()>;

/// A reference that keeps one version of the guest memory map alive.
#[cfg(feature = "vhost")]
pub type MemGuard = vm_memory::GuestMemoryLoadGuard<GuestMem>;

/// Why the engine a configuration names cannot start.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The software engine's catalogue or library.
    #[error("sim engine: {0}")]
    Sim(#[source] vfpga_engine::ManifestError),
    /// The pl engine needs a library to program the fabric from.
    #[error("engine pl needs a [library] (manifests and bitstream files)")]
    PlNeedsLibrary,
    /// The FPGA manager, the bitstream or the cores.
    #[error("pl engine: {0}")]
    Pl(#[source] vfpga_engine::EngineError),
    /// The remote engine needs its boards.
    #[error("engine remote needs a [remote] section with its boards")]
    RemoteNeedsBoards,
    /// The remote engine's client certificate, key or CA.
    #[error("remote engine: {0}")]
    RemoteTls(#[source] vfpga_transport::TlsError),
}

/// Builds the engine the configuration names.
pub fn build_engine(config: &Config) -> Result<Arc<dyn Engine>, BuildError> {
    let library = config.library.as_ref().map(|l| Library {
        dir: l.dir.clone(),
        allow: l.allow.clone(),
    });
    match config.daemon.engine {
        EngineKind::Sim => SimEngine::new(library)
            .map(|e| Arc::new(e) as Arc<dyn Engine>)
            .map_err(BuildError::Sim),
        EngineKind::Pl => {
            let pl = config.pl.clone().unwrap_or(config::PlSection {
                root: "/".into(),
                bitstream: None,
                fpga: "fpga0".into(),
            });
            let library = library.ok_or(BuildError::PlNeedsLibrary)?;
            PlEngine::new(PlConfig {
                root: pl.root,
                library,
                bitstream: pl.bitstream,
                fpga: pl.fpga,
                load_timeout: std::time::Duration::from_secs(30),
            })
            .map(|e| Arc::new(e) as Arc<dyn Engine>)
            .map_err(BuildError::Pl)
        }
        EngineKind::Remote => {
            let r = config
                .remote
                .as_ref()
                .ok_or(BuildError::RemoteNeedsBoards)?;
            let tls = vfpga_transport::client_config(&vfpga_transport::TlsFiles {
                ca: r.ca.clone(),
                cert: r.cert.clone(),
                key: r.key.clone(),
            })
            .map_err(BuildError::RemoteTls)?;
            let boards = r
                .boards
                .iter()
                .map(|b| vfpga_remote::BoardConfig {
                    name: b.name.clone(),
                    address: b.address.clone(),
                    server_name: b.server_name(),
                })
                .collect();
            Ok(vfpga_remote::RemoteEngine::new(vfpga_remote::RemoteConfig {
                boards,
                tls,
                timeout: std::time::Duration::from_millis(r.timeout_ms),
                connections: r.connections,
                health_interval: std::time::Duration::from_millis(r.health_interval_ms),
                allow: config
                    .library
                    .as_ref()
                    .map(|l| l.allow.clone())
                    .unwrap_or_default(),
            }) as Arc<dyn Engine>)
        }
    }
}
