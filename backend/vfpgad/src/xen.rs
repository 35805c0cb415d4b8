//! Dom0 service mode: publishes the daemon and its guests in xenstore and closes a
//! guest's sessions when its Xen domain goes away (the xenstore side lives in
//! [`vfpga_xen::service`]).

use std::sync::Arc;
use std::time::Instant;

use vfpga_xen::service::{DomainEvents, Service, ServiceError, ServiceGuest, ServiceInfo};

use crate::config::Config;
use crate::server::LiveDevices;

impl DomainEvents for LiveDevices {
    fn domain_gone(&self, guest: &str, alive_at: Instant) -> usize {
        self.drop_sessions(guest, alive_at)
    }

    fn domain_up(&self, guest: &str, domid: u32) {
        self.domain_up(guest, domid);
    }
}

/// Registers in xenstore and starts watching domains; `None` when `[xen]` is off.
pub fn start(config: &Config, live: Arc<LiveDevices>) -> Result<Option<Service>, ServiceError> {
    if !config.xen.enable {
        return Ok(None);
    }
    let info = ServiceInfo {
        path: config.xen.path.clone(),
        version: env!("CARGO_PKG_VERSION").into(),
        pid: std::process::id(),
        engine: config.daemon.engine.to_string(),
    };
    let guests = config
        .guests
        .iter()
        .map(|g| ServiceGuest {
            name: g.name.clone(),
            socket: g
                .socket
                .as_ref()
                .map(|s| s.display().to_string())
                .unwrap_or_default(),
            domain: g.domain().to_owned(),
        })
        .collect();
    Service::start(info, guests, live).map(Some)
}
