//! Xen vchan for domUs: while a guest's domain runs, vfpgad (in dom0) offers it a few
//! channels under `/local/domain/<domid>/vfpga/<N>` (readable by that domain only). A
//! channel serves one connection at a time and stays: when its client leaves, it is
//! readied for the next one, with the same grants, event channel and keys, so a guest
//! cycling connections costs dom0 nothing but the cycle. The peer's domain id is Xen's,
//! not something the guest says: only that domain can map the grants and bind the event
//! channel. When the domain goes, its channels and their connections go.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tracing::{debug, info, warn};
use vfpga_transport::vchan::Vchan;
use vfpga_transport::xen::xenstore::Xenstore;

use super::serve::Conn;
use super::server::{serve_conn, Closer, Shared};
use crate::lock::lock;

/// Channels offered to one guest at once (each holds 17 granted pages of dom0's
/// gntalloc allowance, 1024 pages by default).
pub const MAX_SLOTS: usize = 4;

/// The channels offered to one domain: the flag that withdraws them and the thread that
/// offers them.
#[derive(Debug)]
pub(super) struct Offer {
    pub domid: u32,
    pub stop: Arc<AtomicBool>,
    pub thread: Option<JoinHandle<()>>,
}

impl Conn for Vchan {
    fn set_deadline(&mut self, until: Option<Instant>) {
        Vchan::set_deadline(self, until);
    }
}

/// Starts offering channels to domain `domid` for guest `g` (the offer to an earlier
/// domain of the guest is withdrawn first).
pub(super) fn offer(shared: &Arc<Shared>, g: usize, domid: u32) {
    let Ok(dom) = u16::try_from(domid) else {
        warn!(guest = %shared.guests[g].name, domid, "not a domain id vchan can serve");
        return;
    };
    let mut current = lock(&shared.guests[g].vchan_domain);
    if current
        .as_ref()
        .is_some_and(|o| o.domid == domid && !o.stop.load(Ordering::Acquire))
    {
        return; // offered already
    }
    let stop = Arc::new(AtomicBool::new(false));
    let previous = current.take();
    if let Some(p) = &previous {
        p.stop.store(true, Ordering::Release);
    }
    let (sh, st) = (shared.clone(), stop.clone());
    let thread = std::thread::Builder::new()
        .name(format!("vfpga-vchan-{domid}"))
        .spawn(move || {
            *lock(&sh.active) += 1;
            // The earlier offer's channels are gone (their keys removed) before these.
            if let Some(t) = previous.and_then(|p| p.thread) {
                let _ = t.join();
            }
            offer_all(&sh, g, dom, &st);
            *lock(&sh.active) -= 1;
            sh.ended.notify_all();
        });
    match thread {
        Ok(t) => {
            *current = Some(Offer {
                domid,
                stop,
                thread: Some(t),
            })
        }
        Err(e) => warn!("cannot start the vchan thread of domain {domid}: {e}"),
    }
}

/// Offers the domain's channels until `stop`, then removes what is left of them.
fn offer_all(shared: &Arc<Shared>, g: usize, domid: u16, stop: &Arc<AtomicBool>) {
    let name = &shared.guests[g].name;
    let base = format!("/local/domain/{domid}/vfpga");
    // Channels of an earlier vfpgad (a crash leaves them) point at nothing.
    remove(&base);
    let slots = shared.cfg.max_connections.min(MAX_SLOTS);
    info!(guest = %name, domid, slots, "offering vchan channels");
    let threads: Vec<_> = (0..slots)
        .filter_map(|slot| {
            let (sh, st, path) = (shared.clone(), stop.clone(), format!("{base}/{slot}"));
            std::thread::Builder::new()
                .name(format!("vfpga-vchan-{domid}-{slot}"))
                .spawn(move || serve_slot(&sh, g, domid, &path, &st))
                .map_err(|e| warn!("cannot start a vchan thread: {e}"))
                .ok()
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
    remove(&base);
    debug!(guest = %name, domid, "vchan channels withdrawn");
}

fn remove(path: &str) {
    if let Ok(mut xs) = Xenstore::open(Duration::from_secs(5)) {
        let _ = xs.rm(path);
    }
}

/// Offers one channel and serves its clients, one after the other, until `stop`.
fn serve_slot(shared: &Shared, g: usize, domid: u16, path: &str, stop: &Arc<AtomicBool>) {
    let name = &shared.guests[g].name;
    let ended = || stop.load(Ordering::Acquire) || shared.stop.load(Ordering::Acquire);
    let mut backoff = Duration::from_millis(100);
    let mut v = loop {
        if ended() {
            return;
        }
        match Vchan::serve(domid, path, 0) {
            Ok(v) => break v,
            Err(e) => {
                warn!(guest = %name, %path, "cannot offer a vchan: {e}; again in {backoff:?}");
                // In slices, so shutdown and the domain's death need not wait it out.
                let until = Instant::now() + backoff;
                while !ended() && Instant::now() < until {
                    std::thread::sleep(Duration::from_millis(100));
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    };
    v.add_stop(stop.clone());
    loop {
        match v.wait_connected() {
            Ok(true) if !shared.stop.load(Ordering::Acquire) => {}
            Ok(_) => break,
            Err(e) => {
                debug!(guest = %name, %path, "vchan wait: {e}");
                break;
            }
        }
        // This connection ends on its own flag (shutdown, the domain's death: the
        // guest's connections are closed) or on the domain's.
        let conn_stop = Arc::new(AtomicBool::new(false));
        v.add_stop(conn_stop.clone());
        let close: Closer = Box::new(move || conn_stop.store(true, Ordering::Release));
        serve_conn(shared, g, format!("vchan dom{domid} {path}"), close, &mut v);
        if ended() {
            break;
        }
        v.clear_stops();
        v.add_stop(stop.clone());
        v.reopen();
        // A guest that connects and leaves at once cannot make this thread spin.
        std::thread::sleep(Duration::from_millis(10));
    }
}
