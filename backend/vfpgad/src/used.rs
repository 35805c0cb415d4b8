//! Returning chains to the driver: the used ring and its interrupt. The queue's own
//! thread completes the chains it answers; for a run it defers, it gives the job a
//! [`Completion`], through which the engine thread that finishes the run completes it.
//! Under a supervisor, every completion is also recorded in the queue's in-flight log
//! (`resume.rs`), in the same critical section as the used ring's update.

use tracing::warn;

use crate::limited::Limited;
use crate::resume::QueueLog;
use vhost_user_backend::{VringRwLock, VringT};
use virtio_queue::QueueT;

/// A handle on one virtqueue's used ring, given by the glue with a deferred run: the
/// only way the device and the engine threads reach a virtqueue. Cloning it allocates
/// nothing.
#[derive(Clone)]
pub struct Completion {
    vring: VringRwLock,
    log: Option<QueueLog>,
}

impl Completion {
    /// A handle on `vring`'s used ring, recording completions in `log` if given.
    pub fn new(vring: &VringRwLock, log: Option<QueueLog>) -> Self {
        Self {
            vring: vring.clone(),
            log,
        }
    }

    /// Puts chain `head` in the used ring with `used` bytes written, and interrupts
    /// the driver if it asked to be.
    pub fn complete(&self, head: u16, used: u32) {
        if self.put(head, used) {
            notify(&self.vring);
        }
    }

    /// Puts chain `head` in the used ring with `used` bytes written, without an
    /// interrupt; returns whether the entry was added.
    pub fn put(&self, head: u16, used: u32) -> bool {
        let added = {
            let mut state = self.vring.get_mut();
            if let Some(log) = &self.log {
                log.completing(head, state.get_queue().next_used());
            }
            let added = state.add_used(head, used);
            if let Some(log) = &self.log {
                log.completed(head);
            }
            added
        };
        if let Err(e) = added {
            // Only a head index beyond the queue gets here: nothing can be returned.
            static BAD_HEADS: Limited = Limited::new();
            crate::warn_limited!(BAD_HEADS, head, "cannot return descriptor chain: {e}");
            return false;
        }
        true
    }

    /// The virtqueue.
    pub fn vring(&self) -> &VringRwLock {
        &self.vring
    }
}

impl std::fmt::Debug for Completion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Completion")
    }
}

/// Interrupts the driver if it asked to be (EVENT_IDX) or always (without it).
pub fn notify(vring: &VringRwLock) {
    match vring.needs_notification() {
        Ok(true) => {
            if let Err(e) = vring.signal_used_queue() {
                warn!("cannot signal the used queue: {e}");
            }
        }
        Ok(false) => {}
        Err(e) => warn!("cannot read the used event index: {e}"),
    }
}
