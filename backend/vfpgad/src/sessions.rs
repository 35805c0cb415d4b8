//! Sessions of one guest: a kernel bound to an id the guest passes with each run.
//!
//! Ids are `salt:32 | generation:16 | slot:16`. The salt is random per device
//! instance, so an id from another guest (or from before a reconnect) is refused
//! instead of aliasing; the generation makes a reused slot refuse stale ids.
//!
//! Under a supervisor the table is also kept in the guest's state file (`resume.rs`),
//! salt included, so a restarted worker honours the ids the guest holds.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::{Arc, Mutex, MutexGuard};

use vfpga_engine::Kernel;

use crate::metrics::{GuestMetrics, KernelMetrics};
use crate::resume::StateFile;
use crate::stats::Counters;
use vfpga_proto::Status;

/// An open session.
#[derive(Debug)]
pub struct Session {
    /// Its id.
    pub id: u64,
    /// The kernel it runs.
    pub kernel: Arc<Kernel>,
    /// The shared bitstream (index on the device's shelf) the kernel comes from, for a
    /// session opened as `BITSTREAM/KERNEL`; `None`: the kernel of the catalogue loaded
    /// when the session opened (gone with the next load).
    pub bitstream: Option<u16>,
    /// Its counters.
    pub counters: Counters,
    /// Its kernel's counters for the operator (shared by the guest's sessions on it).
    pub metrics: Arc<KernelMetrics>,
}

impl Session {
    fn new(
        id: u64,
        kernel: Arc<Kernel>,
        bitstream: Option<u16>,
        metrics: Arc<KernelMetrics>,
    ) -> Self {
        metrics.session(1);
        Self {
            id,
            kernel,
            bitstream,
            counters: Counters::default(),
            metrics,
        }
    }

    /// Counts a run request of this session answered with `status`.
    pub fn ended(&self, status: Status) {
        self.counters.request(status);
        self.metrics.ended(status);
    }

    /// Counts a successful run's bytes and engine time.
    pub fn ran(&self, bytes_in: u64, bytes_out: u64, ns: u64) {
        self.counters.run(bytes_in, bytes_out, ns);
        self.metrics.ran(bytes_in, bytes_out, ns);
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.metrics.session(-1);
    }
}

#[derive(Debug, Default)]
struct Slot {
    generation: u16,
    session: Option<Arc<Session>>,
}

/// A fixed-size session table.
#[derive(Debug)]
pub struct Sessions {
    salt: u32,
    slots: Mutex<Vec<Slot>>,
    log: Option<Arc<StateFile>>,
    metrics: Arc<GuestMetrics>,
}

/// A random 32-bit value from the standard library's per-process hash keys.
fn random_salt() -> u32 {
    let mut h = RandomState::new().build_hasher();
    h.write_u64(std::process::id().into());
    let v = h.finish();
    low32(v ^ (v >> 32)) | 1
}

/// The low 32 bits.
fn low32(v: u64) -> u32 {
    u32::try_from(v & 0xffff_ffff).unwrap_or(0)
}

impl Sessions {
    /// A table for at most `max` sessions (at most 65536) of a guest counted in
    /// `metrics`.
    pub fn new(max: usize, metrics: Arc<GuestMetrics>) -> Self {
        let mut slots = Vec::with_capacity(max.min(1 << 16));
        slots.resize_with(max.min(1 << 16), Slot::default);
        Self {
            salt: random_salt(),
            slots: Mutex::new(slots),
            log: None,
            metrics,
        }
    }

    /// A table for at most `max` sessions kept in `file`: the sessions recorded there
    /// are open again, on the kernel `resolve` finds for their name now (a kernel no
    /// longer offered, or no longer allowed, closes its session).
    pub fn persisted(
        max: usize,
        metrics: Arc<GuestMetrics>,
        file: Arc<StateFile>,
        resolve: impl Fn(&str) -> Option<(Arc<Kernel>, Option<u16>)>,
    ) -> Self {
        let mut table = Self::new(max, metrics);
        match file.salt() {
            Some(salt) => table.salt = salt,
            None => file.set_salt(table.salt),
        }
        {
            let mut slots = table.slots();
            for (index, generation, name, _) in file.sessions() {
                let found = resolve(&name);
                match (slots.get_mut(index), found) {
                    (Some(slot), Some((kernel, bitstream))) => {
                        slot.generation = generation;
                        let id = table.id(index, generation);
                        let metrics = table.metrics.kernel(&name);
                        slot.session = Some(Arc::new(Session::new(id, kernel, bitstream, metrics)));
                    }
                    _ => file.session_closed(index),
                }
            }
        }
        table.log = Some(file);
        table
    }

    fn id(&self, index: usize, generation: u16) -> u64 {
        u64::from(self.salt) << 32 | u64::from(generation) << 16 | index as u64
    }

    fn slots(&self) -> MutexGuard<'_, Vec<Slot>> {
        // A panic elsewhere cannot leave a slot half-written: recover the table.
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Slot index and generation of an id carrying this table's salt.
    fn split(&self, id: u64) -> Option<(usize, u16)> {
        if low32(id >> 32) != self.salt {
            return None;
        }
        let generation = u16::try_from((id >> 16) & 0xffff).ok()?;
        Some((usize::from(u16::try_from(id & 0xffff).ok()?), generation))
    }

    /// Opens a session on `kernel` (of shared bitstream `bitstream`, if any), which
    /// the guest named `name`; `None` when the table is full.
    pub fn open(
        &self,
        kernel: Arc<Kernel>,
        bitstream: Option<u16>,
        name: &str,
    ) -> Option<Arc<Session>> {
        // Looked up (perhaps made) before the table is locked.
        let metrics = self.metrics.kernel(name);
        let mut slots = self.slots();
        let (index, slot) = slots
            .iter_mut()
            .enumerate()
            .find(|(_, s)| s.session.is_none())?;
        slot.generation = slot.generation.wrapping_add(1);
        let generation = slot.generation;
        let id = self.id(index, generation);
        let session = Arc::new(Session::new(id, kernel, bitstream, metrics));
        slot.session = Some(session.clone());
        if let Some(log) = &self.log {
            log.session_opened(index, generation, name, bitstream);
        }
        Some(session)
    }

    /// The session with this id, if it is open.
    pub fn get(&self, id: u64) -> Option<Arc<Session>> {
        let (index, generation) = self.split(id)?;
        let slots = self.slots();
        let slot = slots.get(index)?;
        if slot.generation != generation {
            return None;
        }
        slot.session.clone()
    }

    /// Closes the session with this id; `false` if it is not open.
    pub fn close(&self, id: u64) -> bool {
        let Some((index, generation)) = self.split(id) else {
            return false;
        };
        let mut slots = self.slots();
        match slots.get_mut(index) {
            Some(s) if s.generation == generation && s.session.is_some() => {
                s.session = None;
                if let Some(log) = &self.log {
                    log.session_closed(index);
                }
                true
            }
            _ => false,
        }
    }

    /// Closes every session (device reset, disconnect, or the guest's domain gone);
    /// returns how many were open.
    pub fn clear(&self) -> usize {
        let mut n = 0;
        for (index, s) in self.slots().iter_mut().enumerate() {
            if s.session.take().is_some() {
                n += 1;
                if let Some(log) = &self.log {
                    log.session_closed(index);
                }
            }
        }
        n
    }

    /// Lets go of every session without closing them in the state file: this worker
    /// stops serving the connection, a successor may resume it.
    pub fn forget(&self) {
        for s in self.slots().iter_mut() {
            s.session = None;
        }
    }

    /// Sessions open now.
    pub fn count(&self) -> u32 {
        let n = self.slots().iter().filter(|s| s.session.is_some()).count();
        u32::try_from(n).unwrap_or(u32::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vfpga_engine::sim::SimEngine;
    use vfpga_engine::Engine;

    fn kernel() -> Arc<Kernel> {
        SimEngine::new(None).unwrap().catalog().kernels[0].clone()
    }

    #[test]
    fn ids_are_checked_and_not_reused() {
        let t = Sessions::new(2, Arc::default());
        let a = t.open(kernel(), None, "vadd_u32").unwrap();
        let b = t.open(kernel(), None, "vadd_u32").unwrap();
        assert!(
            t.open(kernel(), None, "vadd_u32").is_none(),
            "table is full"
        );
        assert!(t.close(a.id));
        assert!(!t.close(a.id), "already closed");
        let c = t.open(kernel(), None, "vadd_u32").unwrap();
        assert_ne!(c.id, a.id, "reused slot, new generation");
        assert!(t.get(a.id).is_none());
        assert_eq!(t.get(b.id).unwrap().id, b.id);
        let other = Sessions::new(2, Arc::default());
        assert!(other.get(b.id).is_none(), "foreign id");
        assert_eq!(t.count(), 2);
        t.clear();
        assert_eq!(t.count(), 0);
    }
}
