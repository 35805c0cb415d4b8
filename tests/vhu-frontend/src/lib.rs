//! A vhost-user frontend that drives `vfpgad` the way a VMM and a guest driver would:
//! it shares memfd-backed guest memory, sets up split virtqueues over the real
//! vhost-user protocol (the `vhost` crate's `Frontend`), and submits real descriptor
//! chains — well-formed requests built from the ABI, or any malformed chain a test
//! crafts. Used by the daemon's tests, its benchmarks and the demo client.

// Test tooling: sizes here are small constants and test-chosen lengths.
#![allow(clippy::cast_possible_truncation)]

mod memory;
mod queue;
mod request;

use std::path::Path;
use std::time::{Duration, Instant};

use vfpga_proto::DeviceConfig;
use vhost::vhost_user::message::{
    VhostUserConfigFlags, VhostUserProtocolFeatures, VhostUserVirtioFeatures,
};
use vhost::vhost_user::{Frontend, VhostUserFrontend};
use vhost::{VhostBackend, VhostUserMemoryRegionInfo};
use virtio_bindings::virtio_config::VIRTIO_F_VERSION_1;
use virtio_bindings::virtio_ring::{VIRTIO_RING_F_EVENT_IDX, VIRTIO_RING_F_INDIRECT_DESC};

pub use memory::TestMemory;
pub use queue::{write_desc, write_indirect_table, Seg, SplitQueue, F_INDIRECT, F_NEXT, F_WRITE};
pub use request::{Arg, Layout, Prepared, Reply};

/// What went wrong on the frontend side.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A system call failed.
    #[error("I/O: {0}")]
    Io(std::io::Error),
    /// A vhost-user request failed.
    #[error("vhost-user: {0}")]
    Vhost(#[from] vhost::Error),
    /// Something the frontend cannot do or the device did wrong.
    #[error("{0}")]
    Protocol(&'static str),
    /// The test memory is exhausted.
    #[error("guest memory exhausted")]
    OutOfMemory,
    /// No free descriptors.
    #[error("virtqueue full")]
    QueueFull,
    /// The device did not answer in time.
    #[error("timed out waiting for the device")]
    Timeout,
}

/// How to set the device up.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// Descriptors per queue.
    pub queue_size: u16,
    /// Guest memory size.
    pub mem_size: u64,
    /// Negotiate EVENT_IDX.
    pub event_idx: bool,
    /// Negotiate INDIRECT_DESC.
    pub indirect: bool,
    /// Longest wait for one completion.
    pub timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            queue_size: 256,
            mem_size: 64 << 20,
            event_idx: true,
            indirect: true,
            timeout: Duration::from_secs(20),
        }
    }
}

/// A connected, running device seen from the frontend.
pub struct VhuFrontend {
    fe: Frontend,
    /// Shared guest memory.
    pub mem: TestMemory,
    /// Virtqueues; 0 is the control queue.
    pub queues: Vec<SplitQueue>,
    /// Features negotiated.
    pub features: u64,
    /// Options used.
    pub opts: Options,
    next_tag: u64,
}

impl std::fmt::Debug for VhuFrontend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VhuFrontend")
            .field("queues", &self.queues.len())
            .field("features", &self.features)
            .finish_non_exhaustive()
    }
}

impl VhuFrontend {
    /// Connects to the backend at `path` (waiting up to 10 s for the socket) and brings
    /// every queue up.
    pub fn connect(path: &Path, opts: Options) -> Result<Self, Error> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut fe = loop {
            match Frontend::connect(path, 64) {
                Ok(fe) => break fe,
                Err(e) if Instant::now() > deadline => return Err(e.into()),
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        };
        fe.set_owner()?;
        let offered = fe.get_features()?;
        let mut want = 1u64 << VIRTIO_F_VERSION_1
            | VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits()
            | (offered & 0xff_ffff);
        if opts.event_idx {
            want |= 1 << VIRTIO_RING_F_EVENT_IDX;
        }
        if opts.indirect {
            want |= 1 << VIRTIO_RING_F_INDIRECT_DESC;
        }
        let features = offered & want;
        fe.set_features(features)?;
        let pf = fe.get_protocol_features()?;
        fe.set_protocol_features(
            pf & (VhostUserProtocolFeatures::MQ
                | VhostUserProtocolFeatures::CONFIG
                | VhostUserProtocolFeatures::REPLY_ACK),
        )?;
        let num =
            usize::try_from(fe.get_queue_num()?).map_err(|_| Error::Protocol("queue count"))?;
        let mut mem = TestMemory::new(opts.mem_size)?;
        fe.set_mem_table(&[VhostUserMemoryRegionInfo {
            guest_phys_addr: 0,
            memory_size: mem.size(),
            userspace_addr: mem.host_base(),
            mmap_offset: 0,
            mmap_handle: mem.fd(),
        }])?;
        let mut queues = Vec::with_capacity(num);
        for i in 0..num {
            let q = SplitQueue::new(&mut mem, opts.queue_size)?;
            fe.set_vring_num(i, opts.queue_size)?;
            fe.set_vring_addr(i, &q.config_data(mem.host_base()))?;
            fe.set_vring_base(i, 0)?;
            fe.set_vring_call(i, &q.call)?;
            fe.set_vring_kick(i, &q.kick)?;
            fe.set_vring_enable(i, true)?;
            queues.push(q);
        }
        Ok(Self {
            fe,
            mem,
            queues,
            features,
            opts,
            next_tag: 1,
        })
    }

    /// Reads the device's config space.
    pub fn config(&mut self) -> Result<DeviceConfig, Error> {
        let buf = [0u8; DeviceConfig::SIZE];
        let (_, payload) = self.fe.get_config(
            0,
            DeviceConfig::SIZE as u32,
            VhostUserConfigFlags::empty(),
            &buf,
        )?;
        let raw: [u8; DeviceConfig::SIZE] = payload
            .as_slice()
            .try_into()
            .map_err(|_| Error::Protocol("config size"))?;
        Ok(DeviceConfig::from_bytes(&raw))
    }

    /// A fresh request tag.
    pub fn tag(&mut self) -> u64 {
        self.next_tag += 1;
        self.next_tag
    }

    /// Publishes `head` on queue `q`, kicks, and waits for its completion. Completions
    /// of other chains that arrive first are returned too, in order, before it.
    pub fn submit_and_wait(&mut self, q: usize, head: u16) -> Result<u32, Error> {
        let queue = self
            .queues
            .get_mut(q)
            .ok_or(Error::Protocol("no such queue"))?;
        queue.submit(&self.mem, head)?;
        loop {
            let (h, len) = queue.wait_used(&self.mem, self.opts.timeout)?;
            if h == head {
                return Ok(len);
            }
        }
    }

    /// Submits `segs` as one chain (direct descriptors) on queue `q` and waits for it.
    pub fn chain(&mut self, q: usize, segs: &[Seg]) -> Result<u32, Error> {
        let queue = self
            .queues
            .get_mut(q)
            .ok_or(Error::Protocol("no such queue"))?;
        let head = queue.add_chain(&self.mem, segs)?;
        self.submit_and_wait(q, head)
    }

    /// Submits `segs` through an indirect table on queue `q` and waits for it.
    pub fn chain_indirect(&mut self, q: usize, segs: &[Seg]) -> Result<u32, Error> {
        let mark = self.mem.mark();
        let table = self.mem.alloc(16 * segs.len() as u64, 16)?;
        write_indirect_table(&self.mem, table, segs)?;
        let queue = self
            .queues
            .get_mut(q)
            .ok_or(Error::Protocol("no such queue"))?;
        let n = u32::try_from(segs.len()).map_err(|_| Error::Protocol("table too long"))?;
        let head = queue.add_indirect(&self.mem, table, n)?;
        let r = self.submit_and_wait(q, head);
        self.mem.release_to(mark);
        r
    }
}
