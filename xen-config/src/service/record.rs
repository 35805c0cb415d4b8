//! The service's record in xenstore (the daemon's keys and its guests') and what each
//! scan of the domains changes in it: a guest's domain up, gone or replaced.

use std::sync::Arc;
use std::time::Instant;

use tracing::info;

use super::store::Store;
use super::{DomainEvents, ServiceError, ServiceGuest, ServiceInfo};

/// How a guest's domain changed between two scans.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// The domain appeared with this id.
    Up(u32),
    /// The domain that had this id is gone.
    Gone(u32),
    /// The name now belongs to another domain (destroyed and recreated between two
    /// scans): the old one's sessions end.
    Replaced {
        /// The id that went away.
        old: u32,
        /// The new id.
        new: u32,
    },
}

/// Compares a guest's domain id before and after a scan.
pub fn change(before: Option<u32>, now: Option<u32>) -> Option<Change> {
    match (before, now) {
        (None, Some(id)) => Some(Change::Up(id)),
        (Some(id), None) => Some(Change::Gone(id)),
        (Some(old), Some(new)) if old != new => Some(Change::Replaced { old, new }),
        _ => None,
    }
}

/// The record and the last scan's view of each guest's domain.
pub(super) struct Record {
    pub(super) info: ServiceInfo,
    pub(super) guests: Vec<ServiceGuest>,
    pub(super) domids: Vec<Option<u32>>,
    /// When each guest's domain was last seen alive.
    pub(super) alive_at: Vec<Instant>,
    pub(super) dropped: Vec<u64>,
    pub(super) events: Arc<dyn DomainEvents>,
}

/// Whether `pid` is a running vfpgad other than this one (another daemon registered at
/// the same path).
fn is_live_vfpgad(pid: &str) -> bool {
    pid.parse::<u32>().is_ok_and(|p| {
        p != std::process::id()
            && std::fs::read_to_string(format!("/proc/{p}/comm"))
                .is_ok_and(|c| c.trim_end() == "vfpgad")
    })
}

impl Record {
    pub(super) fn guest_path(&self, i: usize, key: &str) -> String {
        format!("{}/guests/{}/{key}", self.info.path, self.guests[i].name)
    }

    pub(super) async fn publish(&self, xs: &Store, state: &str) -> Result<(), ServiceError> {
        let p = &self.info.path;
        if let Some(pid) = xs
            .read(&format!("{p}/daemon/pid"))
            .await?
            .filter(|pid| is_live_vfpgad(pid))
        {
            return Err(ServiceError::Invalid(format!(
                "another vfpgad (pid {pid}) is registered at {p}: give this one its own [xen] path"
            )));
        }
        // A record left by a daemon that died without cleaning up would keep guests it
        // no longer serves. Only the service's own keys go: P itself may hold others.
        xs.rm(&format!("{p}/daemon")).await?;
        xs.rm(&format!("{p}/guests")).await?;
        xs.write(&format!("{p}/daemon/version"), &self.info.version)
            .await?;
        xs.write(&format!("{p}/daemon/pid"), &self.info.pid.to_string())
            .await?;
        xs.write(&format!("{p}/daemon/engine"), &self.info.engine)
            .await?;
        for (i, g) in self.guests.iter().enumerate() {
            xs.write(&self.guest_path(i, "socket"), &g.socket).await?;
            xs.write(&self.guest_path(i, "domain"), &g.domain).await?;
            let id = self.domids[i].map(|d| d.to_string()).unwrap_or_default();
            xs.write(&self.guest_path(i, "domid"), &id).await?;
            xs.write(
                &self.guest_path(i, "sessions-dropped"),
                &self.dropped[i].to_string(),
            )
            .await?;
        }
        xs.write(&format!("{p}/daemon/state"), state).await
    }

    /// Rescans the domains and applies what changed for each guest. The record in
    /// memory changes before xenstore is written, so a change is never applied twice;
    /// writes lost with the connection are made again by `publish` after reconnecting.
    pub(super) async fn rescan(&mut self, xs: &Store) -> Result<(), ServiceError> {
        let domains = xs.domains().await?;
        let listed_at = Instant::now();
        let mut changed = Vec::new();
        for i in 0..self.guests.len() {
            let ids = domains.get(&self.guests[i].domain);
            // The id already known while it is still listed, else the newest.
            let now = match (self.domids[i], ids) {
                (Some(known), Some(ids)) if ids.contains(&known) => Some(known),
                (_, ids) => ids.and_then(|ids| ids.iter().copied().max()),
            };
            let Some(c) = change(self.domids[i], now) else {
                if now.is_some() {
                    self.alive_at[i] = listed_at;
                }
                continue;
            };
            let name = &self.guests[i].name;
            let domain = &self.guests[i].domain;
            match c {
                Change::Up(id) => {
                    info!(guest = %name, domain = %domain, domid = id, "domain up");
                    self.events.domain_up(name, id);
                }
                Change::Gone(old) | Change::Replaced { old, .. } => {
                    let n = self.events.domain_gone(name, self.alive_at[i]);
                    self.dropped[i] += u64::try_from(n).unwrap_or(u64::MAX);
                    info!(guest = %name, domain = %domain, domid = old, sessions = n,
                          "domain gone: its sessions are closed");
                    if let Change::Replaced { new, .. } = c {
                        self.events.domain_up(name, new);
                    }
                }
            }
            self.domids[i] = now;
            self.alive_at[i] = listed_at;
            changed.push(i);
        }
        for i in changed {
            let id = self.domids[i].map(|d| d.to_string()).unwrap_or_default();
            xs.write(&self.guest_path(i, "domid"), &id).await?;
            xs.write(
                &self.guest_path(i, "sessions-dropped"),
                &self.dropped[i].to_string(),
            )
            .await?;
        }
        Ok(())
    }

    /// Removes the service's keys, and its path when nothing else is left there.
    pub(super) async fn unpublish(&self, xs: &Store) -> Result<(), ServiceError> {
        let p = &self.info.path;
        xs.rm(&format!("{p}/guests")).await?;
        xs.rm(&format!("{p}/daemon")).await?;
        if xs.is_empty(p).await? {
            xs.rm(p).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_between_scans() {
        assert_eq!(change(None, None), None);
        assert_eq!(change(None, Some(3)), Some(Change::Up(3)));
        assert_eq!(change(Some(3), Some(3)), None);
        assert_eq!(change(Some(3), None), Some(Change::Gone(3)));
        assert_eq!(
            change(Some(3), Some(4)),
            Some(Change::Replaced { old: 3, new: 4 })
        );
    }
}
