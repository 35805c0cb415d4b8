//! Returning chains to the driver: the used ring and its interrupt. The queue's own
//! thread completes the chains it answers; for a run it defers, it gives the job a
//! [`Completion`], through which the engine thread that finishes the run completes it.

use tracing::warn;

use crate::limited::Limited;
use vhost_user_backend::{VringRwLock, VringT};

/// A handle on one virtqueue's used ring, given by the glue with a deferred run: the
/// only way the device and the engine threads reach a virtqueue. Cloning it allocates
/// nothing.
#[derive(Clone)]
pub struct Completion {
    vring: VringRwLock,
}

impl Completion {
    /// A handle on `vring`'s used ring.
    pub fn new(vring: &VringRwLock) -> Self {
        Self {
            vring: vring.clone(),
        }
    }

    /// Puts chain `head` in the used ring with `used` bytes written, and interrupts
    /// the driver if it asked to be.
    pub fn complete(&self, head: u16, used: u32) {
        complete_one(&self.vring, head, used, true);
    }
}

impl std::fmt::Debug for Completion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Completion")
    }
}

/// Puts a chain in the used ring and, if `signal`, interrupts the driver when it asked
/// to be. Returns whether the entry was added.
pub fn complete_one(vring: &VringRwLock, head: u16, used: u32, signal: bool) -> bool {
    if let Err(e) = vring.add_used(head, used) {
        // Only a head index beyond the queue gets here: nothing can be returned.
        static BAD_HEADS: Limited = Limited::new();
        crate::warn_limited!(BAD_HEADS, head, "cannot return descriptor chain: {e}");
        return false;
    }
    if signal {
        notify(vring);
    }
    true
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
