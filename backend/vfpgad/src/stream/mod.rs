//! Guests on byte streams: the same requests as the virtio device, for guests that
//! cannot load `virtio_vfpga.ko` (Firecracker, Cloud Hypervisor, Kata, any kernel) and
//! for Xen domUs. Each guest's `listen` entries ([`listen`]) say where; each accepted
//! connection is served on its own thread by [`serve`], with a device of its own (its
//! sessions end with it, as the stream encoding says), the guest's limits and name, and
//! the daemon's engine.
//!
//! Bounds: connections per guest, the time a request's bytes may take and an idle
//! connection may wait, the TLS handshakes in progress per listener; runs wait for
//! their guest's turn on the engine in the scheduler the virtio devices' engine threads
//! use ([`crate::sched`]), so `[daemon] engine_threads` bounds both together.

pub mod listen;
pub mod serve;
mod server;
mod vchan;

pub use listen::Listen;
pub use server::{StreamConfig, StreamError, StreamGuest, StreamGuests, StreamServer};
