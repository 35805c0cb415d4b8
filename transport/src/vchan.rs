//! Xen vchan: a byte stream between two domains over pages one grants to the other and
//! an event channel, compatible with Xen's libxenvchan (the layout of
//! `xen/include/public/io/libxenvchan.h`). The server (vfpgad in dom0) grants a ring
//! page and two rings to the client's domain and publishes the page's grant reference
//! and its event channel port under a xenstore path the client may read; the client
//! (a domU) maps them and binds the port.
//!
//! The ring page: `left` ring indices (client to server) at 0, `right` (server to client)
//! at 8, the rings' orders at 16 and 18, `cli_live` 20, `srv_live` 21, `cli_notify` 22,
//! `srv_notify` 23, and the rings' grant references from 24. Indices run free (u32,
//! wrapping); a side writes only its own. Notification bits ask the peer for an event
//! when data is written (1) or read (2).
//!
//! Nothing the peer writes is trusted: its index is checked against the ring size
//! before any byte moves (a peer claiming more than a ring holds is a protocol error,
//! not a read out of bounds), this side's own indices are kept locally, and the orders
//! are this side's (the server's) or checked once (the client's).

use std::io::{self, Read, Write};
use std::sync::atomic::{fence, AtomicBool, AtomicU32, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::xen::evtchn::Evtchn;
use crate::xen::grant::{Granted, Mapped};
use crate::xen::xenstore::{Perm, Xenstore};
use crate::xen::PAGE;

const LEFT: usize = 0;
const RIGHT: usize = 8;
const LEFT_ORDER: usize = 16;
const RIGHT_ORDER: usize = 18;
const CLI_LIVE: usize = 20;
const SRV_LIVE: usize = 21;
const CLI_NOTIFY: usize = 22;
const SRV_NOTIFY: usize = 23;
const GRANTS: usize = 24;

const NOTIFY_WRITE: u8 = 1;
const NOTIFY_READ: u8 = 2;

/// The ring size vfpgad's servers use each way: 2^15 bytes (8 pages).
pub const SERVER_ORDER: u16 = 15;
/// Largest ring order accepted (1 MiB).
const MAX_ORDER: u16 = 20;
/// How long a wait lasts before a stop flag or the deadline is looked at again.
const SLICE: Duration = Duration::from_millis(200);

fn at<T>(page: *mut u8, off: usize) -> *mut T {
    // SAFETY (of the callers' derefs): `off` is one of the fixed header offsets, inside
    // the page and aligned for T.
    page.wrapping_add(off).cast()
}

/// One direction of the channel.
#[derive(Clone, Copy, Debug)]
struct Ring {
    /// The ring's index pair in the ring page: cons, then prod.
    idx: *mut u8,
    data: *mut u8,
    size: u32,
}

impl Ring {
    fn cons(&self) -> &AtomicU32 {
        // SAFETY: `idx` points into the mapped ring page at an aligned u32 that lives as
        // long as the channel owning this ring.
        unsafe { &*at::<AtomicU32>(self.idx, 0) }
    }
    fn prod(&self) -> &AtomicU32 {
        // SAFETY: as above, the next u32.
        unsafe { &*at::<AtomicU32>(self.idx, 4) }
    }
}

/// Which end this is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    Server,
    Client,
}

/// The memory a channel lives in: granted (server) or mapped (client).
#[derive(Debug)]
enum Pages {
    Granted(Vec<Granted>),
    Mapped(Vec<Mapped>),
    /// Ordinary memory, for the ring logic's tests (both ends in one process).
    #[cfg(test)]
    Heap {
        _keep: Arc<Vec<u64>>,
    },
}

/// How the peer is woken and this side waits: the event channel, or (in the ring
/// logic's tests, both ends in one process) a short sleep.
#[derive(Debug)]
enum Signal {
    Evtchn(Evtchn, u32),
    #[cfg(test)]
    Poll,
}

impl Signal {
    fn notify(&self) -> io::Result<()> {
        match self {
            Signal::Evtchn(e, port) => e.notify(*port),
            #[cfg(test)]
            Signal::Poll => Ok(()),
        }
    }

    fn wait(&self, t: Duration) -> io::Result<()> {
        match self {
            Signal::Evtchn(e, _) => e.wait(t).map(|_| ()),
            #[cfg(test)]
            Signal::Poll => {
                std::thread::sleep(t.min(Duration::from_millis(1)));
                Ok(())
            }
        }
    }
}

/// One end of a vchan.
#[derive(Debug)]
pub struct Vchan {
    side: Side,
    page: *mut u8,
    read: Ring,
    write: Ring,
    /// This side's own indices, never read back from the shared page.
    read_cons: u32,
    write_prod: u32,
    signal: Signal,
    deadline: Option<Instant>,
    /// Flags that end waits on this end once set.
    stops: Vec<Arc<AtomicBool>>,
    /// The server's xenstore keys, removed when it goes.
    xs_path: Option<String>,
    /// The client's liveness byte is cleared when its pages are unmapped (the kernel
    /// does it, also if this process dies): no explicit clear, which could land after
    /// the server has taken a new client on the same channel.
    cleared_on_unmap: bool,
    _pages: Pages,
}

// SAFETY: the raw pointers point into `_pages`, owned by this value; accesses to the
// shared words are atomic.
unsafe impl Send for Vchan {}

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("vchan peer: {what}"))
}

impl Vchan {
    fn byte(&self, off: usize) -> &AtomicU8 {
        // SAFETY: a header byte of the mapped ring page, which lives as long as self.
        unsafe { &*at::<AtomicU8>(self.page, off) }
    }

    /// Whether the peer is there: the client's `cli_live` is 1 (connected), the
    /// server's `srv_live` is 1.
    pub fn peer_live(&self) -> bool {
        let off = match self.side {
            Side::Server => CLI_LIVE,
            Side::Client => SRV_LIVE,
        };
        self.byte(off).load(Ordering::Acquire) == 1
    }

    /// Asks the peer for an event when it does `bit` (1 write, 2 read).
    fn request_notify(&self, bit: u8) {
        let off = match self.side {
            Side::Server => CLI_NOTIFY,
            Side::Client => SRV_NOTIFY,
        };
        self.byte(off).fetch_or(bit, Ordering::SeqCst);
        fence(Ordering::SeqCst);
    }

    /// Sends an event if the peer asked to hear about `bit`.
    fn send_notify(&self, bit: u8) -> io::Result<()> {
        fence(Ordering::SeqCst);
        let off = match self.side {
            Side::Server => SRV_NOTIFY,
            Side::Client => CLI_NOTIFY,
        };
        if self.byte(off).fetch_and(!bit, Ordering::SeqCst) & bit != 0 {
            self.signal.notify()?;
        }
        Ok(())
    }

    /// Bytes waiting to be read (checked against the ring size).
    fn ready(&self) -> io::Result<u32> {
        let prod = self.read.prod().load(Ordering::Acquire);
        let n = prod.wrapping_sub(self.read_cons);
        if n > self.read.size {
            return Err(bad(&format!(
                "{n} bytes announced in a ring of {}",
                self.read.size
            )));
        }
        Ok(n)
    }

    /// Bytes that can be written.
    fn space(&self) -> io::Result<u32> {
        let cons = self.write.cons().load(Ordering::Acquire);
        let used = self.write_prod.wrapping_sub(cons);
        if used > self.write.size {
            return Err(bad(&format!(
                "consumer index {used} bytes behind in a ring of {}",
                self.write.size
            )));
        }
        Ok(self.write.size - used)
    }

    /// Waits for an event, a stop, or the deadline (then `TimedOut`).
    fn wait(&self) -> io::Result<()> {
        if self.stops.iter().any(|s| s.load(Ordering::Acquire)) {
            return Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "vchan closed by this side",
            ));
        }
        let slice = match self.deadline {
            None => SLICE,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "vchan deadline passed",
                    ));
                }
                left.min(SLICE)
            }
        };
        self.signal.wait(slice)
    }

    /// Every transfer from now on must end by `until` (`None`: no bound).
    pub fn set_deadline(&mut self, until: Option<Instant>) {
        self.deadline = until;
    }

    /// Makes waits on this end fail once `stop` is set (checked every 200 ms); several
    /// flags may be added, any one ends the waits.
    pub fn add_stop(&mut self, stop: Arc<AtomicBool>) {
        self.stops.push(stop);
    }

    /// Drops the flags of [`Vchan::add_stop`].
    pub fn clear_stops(&mut self) {
        self.stops.clear();
    }

    fn copy_out(&mut self, buf: &mut [u8], n: u32) {
        let size = self.read.size;
        let start = self.read_cons & (size - 1);
        let first = n.min(size - start) as usize;
        // SAFETY: `start + first` and `n - first` stay within the ring's `size` bytes of
        // mapped memory; `buf` holds at least `n` bytes (the caller's min).
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.read.data.add(start as usize),
                buf.as_mut_ptr(),
                first,
            );
            std::ptr::copy_nonoverlapping(
                self.read.data,
                buf.as_mut_ptr().add(first),
                n as usize - first,
            );
        }
    }

    fn copy_in(&mut self, buf: &[u8], n: u32) {
        let size = self.write.size;
        let start = self.write_prod & (size - 1);
        let first = n.min(size - start) as usize;
        // SAFETY: as in `copy_out`, into the write ring.
        unsafe {
            std::ptr::copy_nonoverlapping(buf.as_ptr(), self.write.data.add(start as usize), first);
            std::ptr::copy_nonoverlapping(
                buf.as_ptr().add(first),
                self.write.data,
                n as usize - first,
            );
        }
    }
}

impl Read for Vchan {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            let mut ready = self.ready()?;
            if ready == 0 {
                if !self.peer_live() {
                    return Ok(0);
                }
                self.request_notify(NOTIFY_WRITE);
                ready = self.ready()?;
            }
            if ready > 0 {
                let n = ready.min(u32::try_from(buf.len()).unwrap_or(u32::MAX));
                self.copy_out(buf, n);
                fence(Ordering::SeqCst);
                self.read_cons = self.read_cons.wrapping_add(n);
                self.read.cons().store(self.read_cons, Ordering::Release);
                self.send_notify(NOTIFY_READ)?;
                return Ok(n as usize);
            }
            self.wait()?;
        }
    }
}

impl Write for Vchan {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if !self.peer_live() {
                return Err(io::Error::new(
                    io::ErrorKind::BrokenPipe,
                    "the vchan peer went away",
                ));
            }
            let mut space = self.space()?;
            if space == 0 {
                self.request_notify(NOTIFY_READ);
                space = self.space()?;
            }
            if space > 0 {
                let n = space.min(u32::try_from(buf.len()).unwrap_or(u32::MAX));
                self.copy_in(buf, n);
                fence(Ordering::SeqCst);
                self.write_prod = self.write_prod.wrapping_add(n);
                self.write.prod().store(self.write_prod, Ordering::Release);
                self.send_notify(NOTIFY_WRITE)?;
                return Ok(n as usize);
            }
            self.wait()?;
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The ring of `order` at `grants` pages (or inside the ring page for orders 10, 11).
fn ring_at(page: *mut u8, idx_off: usize, order: u16, pages: *mut u8) -> Ring {
    let data = match order {
        10 => page.wrapping_add(1024),
        11 => page.wrapping_add(2048),
        _ => pages,
    };
    Ring {
        idx: page.wrapping_add(idx_off),
        data,
        size: 1 << order,
    }
}

impl Vchan {
    /// Offers a channel to domain `domid` at xenstore `path` (absolute), with rings of
    /// 2^[`SERVER_ORDER`] bytes each way. The client connects later: see
    /// [`Vchan::wait_connected`].
    pub fn serve(domid: u16, path: &str, own_domid: u16) -> io::Result<Self> {
        let evt = Evtchn::open()?;
        let port = evt.bind_unbound(u32::from(domid))?;
        let ring_pages = 1usize << (SERVER_ORDER - 12);
        let page = Granted::new(domid, 1)?;
        let left = Granted::new(domid, ring_pages)?;
        let right = Granted::new(domid, ring_pages)?;
        let p = page.as_ptr();
        // SAFETY: the whole granted page, ours until dropped.
        unsafe { std::ptr::write_bytes(p, 0, PAGE) };
        // SAFETY: aligned header fields of the page (offsets 16, 18; grants from 24,
        // 2 × 8 u32s well inside the page).
        unsafe {
            *at::<u16>(p, LEFT_ORDER) = SERVER_ORDER;
            *at::<u16>(p, RIGHT_ORDER) = SERVER_ORDER;
            for (i, r) in left.refs().iter().chain(right.refs()).enumerate() {
                *at::<u32>(p, GRANTS + 4 * i) = *r;
            }
        }
        let mut v = Self {
            side: Side::Server,
            page: p,
            read: ring_at(p, LEFT, SERVER_ORDER, left.as_ptr()),
            write: ring_at(p, RIGHT, SERVER_ORDER, right.as_ptr()),
            read_cons: 0,
            write_prod: 0,
            signal: Signal::Evtchn(evt, port),
            deadline: None,
            stops: Vec::new(),
            xs_path: None,
            cleared_on_unmap: false,
            _pages: Pages::Granted(vec![page, left, right]),
        };
        v.byte(CLI_LIVE).store(2, Ordering::Release);
        v.byte(SRV_LIVE).store(1, Ordering::Release);
        v.byte(CLI_NOTIFY).store(NOTIFY_WRITE, Ordering::Release);
        let ring_ref = match &v._pages {
            Pages::Granted(g) => {
                g[0].notify_on_unmap(SRV_LIVE, port)?;
                g[0].refs()[0]
            }
            _ => 0,
        };
        let mut xs = Xenstore::open(Duration::from_secs(5))?;
        let perms = [
            Perm::None(u32::from(own_domid)),
            Perm::Read(u32::from(domid)),
        ];
        // Removed on drop from here on, also when publishing fails half-way.
        v.xs_path = Some(path.to_owned());
        xs.transaction(|xs| {
            // A domain that is gone must not get its tree back (by implicit creation).
            xs.read(&format!("/local/domain/{domid}/domid"))?;
            for (key, value) in [("ring-ref", ring_ref), ("event-channel", port)] {
                let k = format!("{path}/{key}");
                xs.write(&k, value.to_string().as_bytes())?;
                xs.set_perms(&k, &perms)?;
            }
            Ok(())
        })?;
        Ok(v)
    }

    /// Waits until a client has connected (`true`), or one of the stop flags was set
    /// (`false`). A client that came and went unserved leaves the channel open again.
    pub fn wait_connected(&mut self) -> io::Result<bool> {
        loop {
            if self.stops.iter().any(|s| s.load(Ordering::Acquire)) {
                return Ok(false);
            }
            match self.byte(CLI_LIVE).load(Ordering::Acquire) {
                1 => return Ok(true),
                0 => self.reopen(),
                _ => {}
            }
            self.signal.wait(SLICE)?;
        }
    }

    /// Readies the channel for its next client once one has left (server side): what
    /// either side wrote and the other did not read is dropped, the notification bits
    /// start afresh, and the client byte says "not yet connected". The pages, the grant
    /// references, the event channel and the xenstore keys stay: a guest cycling
    /// connections costs dom0 no grants and xenstore no writes.
    pub fn reopen(&mut self) {
        let prod = self.read.prod().load(Ordering::Acquire);
        self.read_cons = prod;
        self.read.cons().store(prod, Ordering::Release);
        self.write.cons().store(self.write_prod, Ordering::Release);
        self.byte(SRV_NOTIFY).store(0, Ordering::Release);
        self.byte(CLI_NOTIFY).store(NOTIFY_WRITE, Ordering::Release);
        self.deadline = None;
        fence(Ordering::SeqCst);
        self.byte(CLI_LIVE).store(2, Ordering::Release);
    }

    /// Connects to the channel domain `domid` offers at xenstore `path` (relative paths
    /// are under this domain's own path). `WouldBlock` when another client has it.
    pub fn connect(domid: u16, path: &str) -> io::Result<Self> {
        let mut xs = Xenstore::open(Duration::from_secs(5))?;
        let (mut remote_port, mut ring_ref) = (0, 0);
        // Both keys of one offer.
        xs.transaction(|xs| {
            remote_port = xs.read_u32(&format!("{path}/event-channel"))?;
            ring_ref = xs.read_u32(&format!("{path}/ring-ref"))?;
            Ok(())
        })?;
        drop(xs);
        let device = |e: io::Error| io::Error::new(io::ErrorKind::Unsupported, e.to_string());
        let evt = Evtchn::open().map_err(device)?;
        // A port another client bound already is not unbound any more: Xen refuses.
        let port = evt
            .bind_interdomain(u32::from(domid), remote_port)
            .map_err(|e| match e.raw_os_error() {
                Some(libc::EINVAL | libc::EBUSY) => io::Error::new(
                    io::ErrorKind::WouldBlock,
                    format!("vchan {path} is taken ({e})"),
                ),
                _ => io::Error::new(
                    e.kind(),
                    format!("vchan {path}: binding its event channel: {e}"),
                ),
            })?;
        let page = Mapped::new(domid, &[ring_ref], true).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                device(e)
            } else {
                e
            }
        })?;
        let p = page.as_ptr();
        // SAFETY: aligned u16 header fields of the mapped page, read once and kept.
        let (left_order, right_order) = unsafe {
            (
                std::ptr::read_volatile(at::<u16>(p, LEFT_ORDER)),
                std::ptr::read_volatile(at::<u16>(p, RIGHT_ORDER)),
            )
        };
        for o in [left_order, right_order] {
            if !(10..=MAX_ORDER).contains(&o) {
                return Err(bad(&format!("ring order {o}")));
            }
        }
        if left_order == right_order && left_order < 12 {
            return Err(bad("both rings in the same place of the ring page"));
        }
        let pages = |o: u16| if o < 12 { 0 } else { 1usize << (o - 12) };
        let (lp, rp) = (pages(left_order), pages(right_order));
        if GRANTS + 4 * (lp + rp) > 2048 && (left_order == 11 || right_order == 11)
            || GRANTS + 4 * (lp + rp) > PAGE
        {
            return Err(bad("more grants than the ring page holds"));
        }
        // SAFETY: `lp + rp` u32s from offset 24, checked to fit above.
        let refs: Vec<u32> = (0..lp + rp)
            .map(|i| unsafe { std::ptr::read_volatile(at::<u32>(p, GRANTS + 4 * i)) })
            .collect();
        let mut maps = vec![page];
        let mut ring = |n: usize, refs: &[u32], writable: bool| -> io::Result<*mut u8> {
            if n == 0 {
                return Ok(std::ptr::null_mut());
            }
            let m = Mapped::new(domid, refs, writable)?;
            let ptr = m.as_ptr();
            maps.push(m);
            Ok(ptr)
        };
        let left = ring(lp, &refs[..lp], true)?;
        let right = ring(rp, &refs[lp..], false)?;
        let mut v = Self {
            side: Side::Client,
            page: p,
            write: ring_at(p, LEFT, left_order, left),
            read: ring_at(p, RIGHT, right_order, right),
            read_cons: 0,
            write_prod: 0,
            signal: Signal::Evtchn(evt, port),
            deadline: None,
            stops: Vec::new(),
            xs_path: None,
            cleared_on_unmap: false,
            _pages: Pages::Mapped(maps),
        };
        // The server's indices may not start at zero (a reused channel): take them.
        v.read_cons = v.read.cons().load(Ordering::Acquire);
        v.write_prod = v.write.prod().load(Ordering::Acquire);
        if v.byte(CLI_LIVE)
            .compare_exchange(2, 1, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                format!("vchan {path} is taken"),
            ));
        }
        if let Pages::Mapped(m) = &v._pages {
            m[0].notify_on_unmap(CLI_LIVE, port)?;
            v.cleared_on_unmap = true;
        }
        v.byte(SRV_NOTIFY).fetch_or(NOTIFY_WRITE, Ordering::SeqCst);
        v.signal.notify()?;
        Ok(v)
    }
}

impl Drop for Vchan {
    fn drop(&mut self) {
        let off = match self.side {
            Side::Server => SRV_LIVE,
            Side::Client => CLI_LIVE,
        };
        if !self.cleared_on_unmap {
            self.byte(off).store(0, Ordering::Release);
            let _ = self.signal.notify();
        }
        if let Some(path) = &self.xs_path {
            if let Ok(mut xs) = Xenstore::open(Duration::from_secs(5)) {
                let _ = xs.rm(path);
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::cast_possible_truncation)]
mod tests {
    use super::*;

    /// A server and a client end over ordinary memory: the ring page and two rings of
    /// 2^`order` bytes.
    fn pair(order: u16) -> (Vchan, Vchan) {
        let size = 1usize << order;
        let mem = Arc::new(vec![0u64; (PAGE + 2 * size) / 8]);
        let base = mem.as_ptr().cast_mut().cast::<u8>();
        let (left, right) = (base.wrapping_add(PAGE), base.wrapping_add(PAGE + size));
        let end = |side, read: Ring, write: Ring| Vchan {
            side,
            page: base,
            read,
            write,
            read_cons: 0,
            write_prod: 0,
            signal: Signal::Poll,
            deadline: None,
            stops: Vec::new(),
            xs_path: None,
            cleared_on_unmap: false,
            _pages: Pages::Heap { _keep: mem.clone() },
        };
        let server = end(
            Side::Server,
            ring_at(base, LEFT, order, left),
            ring_at(base, RIGHT, order, right),
        );
        let client = end(
            Side::Client,
            ring_at(base, RIGHT, order, right),
            ring_at(base, LEFT, order, left),
        );
        server.byte(CLI_LIVE).store(1, Ordering::Release);
        server.byte(SRV_LIVE).store(1, Ordering::Release);
        (server, client)
    }

    /// A new client end on the server's memory, taking over the indices as
    /// `Vchan::connect` does.
    fn fresh_client(s: &Vchan) -> Vchan {
        let Pages::Heap { _keep } = &s._pages else {
            unreachable!("test pairs live on the heap")
        };
        let mut c = Vchan {
            side: Side::Client,
            page: s.page,
            read: s.write,
            write: s.read,
            read_cons: 0,
            write_prod: 0,
            signal: Signal::Poll,
            deadline: None,
            stops: Vec::new(),
            xs_path: None,
            cleared_on_unmap: false,
            _pages: Pages::Heap {
                _keep: _keep.clone(),
            },
        };
        c.read_cons = c.read.cons().load(Ordering::Acquire);
        c.write_prod = c.write.prod().load(Ordering::Acquire);
        c
    }

    #[test]
    fn a_reopened_channel_serves_the_next_client_without_the_last_ones_bytes() {
        let (mut s, mut c) = pair(12);
        // The first client writes a request the server never reads, and leaves; the
        // server had answered something the client never read.
        c.write_all(b"unread request").unwrap();
        s.write_all(b"unread answer").unwrap();
        c.cleared_on_unmap = true; // its byte is cleared below, as the kernel would
        drop(c);
        s.byte(CLI_LIVE).store(0, Ordering::Release);
        s.add_stop(Arc::new(AtomicBool::new(false)));
        s.reopen();
        assert_eq!(s.byte(CLI_LIVE).load(Ordering::Acquire), 2, "open again");
        let mut c2 = fresh_client(&s);
        c2.byte(CLI_LIVE)
            .compare_exchange(2, 1, Ordering::AcqRel, Ordering::Acquire)
            .unwrap();
        assert!(s.wait_connected().unwrap());
        c2.write_all(b"fresh").unwrap();
        let mut got = [0u8; 5];
        s.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"fresh", "the old client's bytes are gone");
        s.write_all(b"ok").unwrap();
        let mut back = [0u8; 2];
        c2.read_exact(&mut back).unwrap();
        assert_eq!(&back, b"ok", "the old answer is gone");
        // A stop flag ends a wait for the next client.
        s.byte(CLI_LIVE).store(2, Ordering::Release);
        s.add_stop(Arc::new(AtomicBool::new(true)));
        assert!(!s.wait_connected().unwrap());
    }

    #[test]
    fn bytes_cross_both_ways_through_small_rings() {
        let (mut s, mut c) = pair(12);
        let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
        let sent = data.clone();
        let t = std::thread::spawn(move || {
            c.write_all(&sent).unwrap();
            let mut back = vec![0u8; sent.len()];
            c.read_exact(&mut back).unwrap();
            back
        });
        let mut got = vec![0u8; data.len()];
        s.read_exact(&mut got).unwrap();
        assert!(got == data, "client to server");
        s.write_all(&got).unwrap();
        assert!(t.join().unwrap() == data, "server to client");
    }

    #[test]
    fn a_lying_peer_is_a_protocol_error_not_a_wild_copy() {
        let (mut s, mut c) = pair(12);
        // The client announces more than the ring holds.
        c.write_all(b"hello").unwrap();
        s.read.prod().store(5 + 4097, Ordering::Release);
        let mut buf = [0u8; 64];
        assert_eq!(
            s.read(&mut buf).unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
        // The server's consumer index ahead of what the client wrote.
        let (s, mut c) = pair(12);
        c.write.cons().store(9999, Ordering::Release);
        assert_eq!(
            c.write(b"x").unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
        // The indices in the page do not decide this side's own: a peer rewriting them
        // cannot make this side read twice or skip.
        let (mut s2, mut c2) = pair(12);
        c2.write_all(b"abcdef").unwrap();
        let mut three = [0u8; 3];
        s2.read_exact(&mut three).unwrap();
        s2.read.cons().store(0, Ordering::Release);
        s2.read_exact(&mut three).unwrap();
        assert_eq!(&three, b"def");
        drop((s, c));
    }

    #[test]
    fn a_peer_that_leaves_ends_the_stream_after_its_data() {
        let (mut s, mut c) = pair(12);
        c.write_all(b"last words").unwrap();
        s.byte(CLI_LIVE).store(0, Ordering::Release);
        let mut got = Vec::new();
        s.read_to_end(&mut got).unwrap();
        assert_eq!(got, b"last words");
        assert_eq!(s.write(b"x").unwrap_err().kind(), io::ErrorKind::BrokenPipe);
        // A wait with a deadline ends with TimedOut.
        let (mut s, _c) = pair(12);
        s.set_deadline(Some(Instant::now() + Duration::from_millis(50)));
        let mut buf = [0u8; 1];
        assert_eq!(
            s.read(&mut buf).unwrap_err().kind(),
            io::ErrorKind::TimedOut
        );
        let stop = Arc::new(AtomicBool::new(true));
        s.set_deadline(None);
        s.add_stop(stop);
        assert_eq!(
            s.read(&mut buf).unwrap_err().kind(),
            io::ErrorKind::ConnectionAborted
        );
        drop(c);
    }
}
