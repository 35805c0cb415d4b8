//! Returning chains to the driver: the used ring and its interrupt. Both the queue's own
//! thread and the engine threads (for runs they finish) complete chains here.

use tracing::warn;

use crate::limited::Limited;
use vhost_user_backend::{VringRwLock, VringT};

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
