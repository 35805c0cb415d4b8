//! A split virtqueue, driver side: descriptor table, available and used rings in
//! guest memory, kick and call eventfds.

use std::os::fd::AsRawFd;
use std::sync::atomic::{fence, Ordering};
use std::time::{Duration, Instant};

use vhost::VringConfigData;
use vm_memory::{Address, Bytes, GuestAddress};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use crate::memory::TestMemory;
use crate::Error;

/// Descriptor continues in `next`.
pub const F_NEXT: u16 = 1;
/// Device-writable buffer.
pub const F_WRITE: u16 = 2;
/// Buffer is an indirect descriptor table.
pub const F_INDIRECT: u16 = 4;

/// One buffer of a chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seg {
    /// Guest address.
    pub addr: u64,
    /// Length in bytes.
    pub len: u32,
    /// Device-writable.
    pub write: bool,
}

impl Seg {
    /// A device-readable buffer.
    pub fn rd(addr: GuestAddress, len: u32) -> Self {
        Self {
            addr: addr.0,
            len,
            write: false,
        }
    }

    /// A device-writable buffer.
    pub fn wr(addr: GuestAddress, len: u32) -> Self {
        Self {
            addr: addr.0,
            len,
            write: true,
        }
    }
}

/// The driver side of one split virtqueue.
#[derive(Debug)]
pub struct SplitQueue {
    size: u16,
    desc: GuestAddress,
    avail: GuestAddress,
    used: GuestAddress,
    avail_idx: u16,
    last_used: u16,
    free: Vec<u16>,
    in_use: Vec<bool>,
    /// Eventfd the driver writes to notify the device.
    pub kick: EventFd,
    /// Eventfd the device writes to interrupt the driver.
    pub call: EventFd,
}

impl SplitQueue {
    /// Lays out a queue of `size` descriptors in `mem`.
    pub fn new(mem: &mut TestMemory, size: u16) -> Result<Self, Error> {
        let n = u64::from(size);
        let desc = mem.alloc(16 * n, 4096)?;
        let avail = mem.alloc(6 + 2 * n, 4096)?;
        let used = mem.alloc(6 + 8 * n, 4096)?;
        let mut free: Vec<u16> = (0..size).rev().collect();
        free.shrink_to_fit();
        Ok(Self {
            size,
            desc,
            avail,
            used,
            avail_idx: 0,
            last_used: 0,
            free,
            in_use: vec![false; usize::from(size)],
            kick: EventFd::new(EFD_NONBLOCK).map_err(Error::Io)?,
            call: EventFd::new(EFD_NONBLOCK).map_err(Error::Io)?,
        })
    }

    /// Queue size.
    pub fn size(&self) -> u16 {
        self.size
    }

    /// Free descriptors.
    pub fn free_descs(&self) -> usize {
        self.free.len()
    }

    /// Ring addresses as vhost-user wants them (frontend virtual addresses).
    pub fn config_data(&self, host_base: u64) -> VringConfigData {
        VringConfigData {
            queue_max_size: self.size,
            queue_size: self.size,
            flags: 0,
            desc_table_addr: host_base + self.desc.0,
            used_ring_addr: host_base + self.used.0,
            avail_ring_addr: host_base + self.avail.0,
            log_addr: None,
        }
    }

    /// Reserves a descriptor index.
    pub fn take_desc(&mut self) -> Result<u16, Error> {
        let i = self.free.pop().ok_or(Error::QueueFull)?;
        self.in_use[usize::from(i)] = true;
        Ok(i)
    }

    /// Writes descriptor `idx` of the table.
    pub fn set_desc(
        &self,
        mem: &TestMemory,
        idx: u16,
        addr: u64,
        len: u32,
        flags: u16,
        next: u16,
    ) -> Result<(), Error> {
        write_desc(
            mem,
            self.desc.unchecked_add(16 * u64::from(idx)),
            addr,
            len,
            flags,
            next,
        )
    }

    /// Writes `segs` as a chain of free descriptors; returns the head (not yet published).
    pub fn add_chain(&mut self, mem: &TestMemory, segs: &[Seg]) -> Result<u16, Error> {
        if segs.is_empty() || segs.len() > self.free.len() {
            return Err(Error::QueueFull);
        }
        let head = self.take_desc()?;
        let mut cur = head;
        for (i, s) in segs.iter().enumerate() {
            let last = i + 1 == segs.len();
            let next = if last { 0 } else { self.take_desc()? };
            let flags = if s.write { F_WRITE } else { 0 } | if last { 0 } else { F_NEXT };
            self.set_desc(mem, cur, s.addr, s.len, flags, next)?;
            cur = next;
        }
        Ok(head)
    }

    /// One descriptor naming the indirect table of `n` entries at `table`.
    pub fn add_indirect(
        &mut self,
        mem: &TestMemory,
        table: GuestAddress,
        n: u32,
    ) -> Result<u16, Error> {
        let head = self.take_desc()?;
        self.set_desc(mem, head, table.0, n.saturating_mul(16), F_INDIRECT, 0)?;
        Ok(head)
    }

    /// Puts `head` in the available ring and publishes it.
    pub fn publish(&mut self, mem: &TestMemory, head: u16) -> Result<(), Error> {
        let slot = self
            .avail
            .unchecked_add(4 + 2 * u64::from(self.avail_idx % self.size));
        mem.mem()
            .write_obj(head.to_le(), slot)
            .map_err(|_| Error::Protocol("avail ring"))?;
        self.avail_idx = self.avail_idx.wrapping_add(1);
        fence(Ordering::Release);
        mem.mem()
            .store(
                self.avail_idx.to_le(),
                self.avail.unchecked_add(2),
                Ordering::Release,
            )
            .map_err(|_| Error::Protocol("avail idx"))
    }

    /// Notifies the device.
    pub fn kick(&self) -> Result<(), Error> {
        self.kick.write(1).map_err(Error::Io)
    }

    /// Publishes and kicks.
    pub fn submit(&mut self, mem: &TestMemory, head: u16) -> Result<(), Error> {
        self.publish(mem, head)?;
        self.kick()
    }

    /// The next used entry, if any; frees its descriptors.
    pub fn poll_used(&mut self, mem: &TestMemory) -> Result<Option<(u16, u32)>, Error> {
        let idx: u16 = mem
            .mem()
            .load(self.used.unchecked_add(2), Ordering::Acquire)
            .map(u16::from_le)
            .map_err(|_| Error::Protocol("used idx"))?;
        if idx == self.last_used {
            return Ok(None);
        }
        let elem = self
            .used
            .unchecked_add(4 + 8 * u64::from(self.last_used % self.size));
        let id: u32 = mem
            .mem()
            .read_obj(elem)
            .map_err(|_| Error::Protocol("used ring"))?;
        let len: u32 = mem
            .mem()
            .read_obj(elem.unchecked_add(4))
            .map_err(|_| Error::Protocol("used ring"))?;
        self.last_used = self.last_used.wrapping_add(1);
        let head = u16::try_from(u32::from_le(id)).map_err(|_| Error::Protocol("used id"))?;
        self.free_chain(mem, head)?;
        Ok(Some((head, u32::from_le(len))))
    }

    /// Returns the descriptors of the chain at `head` to the free list.
    fn free_chain(&mut self, mem: &TestMemory, head: u16) -> Result<(), Error> {
        let mut cur = head;
        for _ in 0..self.size {
            let Some(used) = self.in_use.get_mut(usize::from(cur)) else {
                return Err(Error::Protocol("device returned an unknown head"));
            };
            if !*used {
                break;
            }
            *used = false;
            self.free.push(cur);
            let d = self.desc.unchecked_add(16 * u64::from(cur));
            let flags: u16 = mem
                .mem()
                .read_obj(d.unchecked_add(12))
                .map_err(|_| Error::Protocol("desc"))?;
            if u16::from_le(flags) & F_NEXT == 0 {
                break;
            }
            let next: u16 = mem
                .mem()
                .read_obj(d.unchecked_add(14))
                .map_err(|_| Error::Protocol("desc"))?;
            cur = u16::from_le(next);
        }
        Ok(())
    }

    /// Waits up to `timeout` for the next used entry.
    pub fn wait_used(&mut self, mem: &TestMemory, timeout: Duration) -> Result<(u16, u32), Error> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(u) = self.poll_used(mem)? {
                return Ok(u);
            }
            // EVENT_IDX: ask for an interrupt as soon as the used index moves.
            let used_event = self.avail.unchecked_add(4 + 2 * u64::from(self.size));
            mem.mem()
                .store(self.last_used.to_le(), used_event, Ordering::Release)
                .map_err(|_| Error::Protocol("used event"))?;
            fence(Ordering::SeqCst);
            if let Some(u) = self.poll_used(mem)? {
                return Ok(u);
            }
            let left = deadline
                .checked_duration_since(Instant::now())
                .ok_or(Error::Timeout)?;
            let mut pfd = libc::pollfd {
                fd: self.call.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            let ms = i32::try_from(left.as_millis().max(1)).unwrap_or(i32::MAX);
            // SAFETY: one valid pollfd for the duration of the call.
            unsafe { libc::poll(&mut pfd, 1, ms) };
            let _ = self.call.read();
        }
    }
}

/// Writes one descriptor at `at`.
pub fn write_desc(
    mem: &TestMemory,
    at: GuestAddress,
    addr: u64,
    len: u32,
    flags: u16,
    next: u16,
) -> Result<(), Error> {
    let mut raw = [0u8; 16];
    raw[0..8].copy_from_slice(&addr.to_le_bytes());
    raw[8..12].copy_from_slice(&len.to_le_bytes());
    raw[12..14].copy_from_slice(&flags.to_le_bytes());
    raw[14..16].copy_from_slice(&next.to_le_bytes());
    mem.write(at, &raw)
}

/// Writes `segs` as an indirect descriptor table at `table`.
pub fn write_indirect_table(
    mem: &TestMemory,
    table: GuestAddress,
    segs: &[Seg],
) -> Result<(), Error> {
    for (i, s) in segs.iter().enumerate() {
        let last = i + 1 == segs.len();
        let flags = if s.write { F_WRITE } else { 0 } | if last { 0 } else { F_NEXT };
        let next = u16::try_from(i + 1).unwrap_or(0);
        write_desc(
            mem,
            table.unchecked_add(16 * i as u64),
            s.addr,
            s.len,
            flags,
            if last { 0 } else { next },
        )?;
    }
    Ok(())
}
