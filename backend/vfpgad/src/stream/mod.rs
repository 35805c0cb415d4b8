//! Guests on byte streams: the same requests as the virtio device, for guests that
//! cannot load `virtio_vfpga.ko` (Firecracker, Cloud Hypervisor, Kata, any kernel) and
//! for Xen domUs. Each guest's `listen` entries ([`listen`]) say where; each accepted
//! connection is served on its own thread by [`serve`], with a device of its own (its
//! sessions end with it, as the stream encoding says), the guest's limits and name, and
//! the daemon's engine.
//!
//! Bounds: connections per guest, the time a request's bytes may take and an idle
//! connection may wait, the runs executing at once (shared with no one else: stream
//! runs take slots of their own), and the TLS handshakes in progress per listener.

pub mod listen;
pub mod serve;
mod server;
mod vchan;

pub use listen::Listen;
pub use server::{StreamConfig, StreamError, StreamGuest, StreamGuests, StreamServer};
