//! Xen vchan for domUs: while a guest's domain runs, vfpgad (in dom0) offers it a few
//! channels under `/local/domain/<domid>/vfpga/<N>` (readable by that domain only); each
//! channel serves one connection, then is offered again, fresh. The peer's domain id is
//! Xen's, not something the guest says: only that domain can map the grants and bind
//! the event channel. When the domain goes, its channels go.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{debug, info, warn};
use vfpga_transport::vchan::Vchan;

use super::serve::Conn;
use super::server::{serve_conn, Shared};
use crate::device::lock;

/// Channels offered to one guest at once (each holds 17 granted pages of dom0's
/// gntalloc allowance, 1024 pages by default).
pub const MAX_SLOTS: usize = 4;

impl Conn for Vchan {
    fn set_deadline(&mut self, until: Option<Instant>) {
        Vchan::set_deadline(self, until);
    }
}

/// Starts offering channels to domain `domid` for guest `g`.
pub(super) fn offer(shared: &Arc<Shared>, g: usize, domid: u32) {
    let Ok(dom) = u16::try_from(domid) else {
        warn!(guest = %shared.guests[g].name, domid, "not a domain id vchan can serve");
        return;
    };
    let stop = Arc::new(AtomicBool::new(false));
    if let Some((_, old)) = lock(&shared.guests[g].vchan_domain).replace((domid, stop.clone())) {
        old.store(true, Ordering::Release);
    }
    let slots = shared.cfg.max_connections.min(MAX_SLOTS);
    info!(guest = %shared.guests[g].name, domid, slots, "offering vchan channels");
    for slot in 0..slots {
        let (shared, stop) = (shared.clone(), stop.clone());
        let r = std::thread::Builder::new()
            .name(format!("vfpga-vchan-{domid}-{slot}"))
            .spawn(move || serve_slot(&shared, g, dom, slot, &stop));
        if let Err(e) = r {
            warn!("cannot start a vchan thread: {e}");
        }
    }
}

/// Offers channel `slot` again and again until `stop` (the domain went, or vfpgad
/// stops).
fn serve_slot(shared: &Shared, g: usize, domid: u16, slot: usize, stop: &Arc<AtomicBool>) {
    // Counted as a live thread: shutdown waits for the channel to be withdrawn (its
    // xenstore keys removed).
    *lock(&shared.active) += 1;
    offer_until_stopped(shared, g, domid, slot, stop);
    *lock(&shared.active) -= 1;
    shared.ended.notify_all();
}

fn offer_until_stopped(shared: &Shared, g: usize, domid: u16, slot: usize, stop: &Arc<AtomicBool>) {
    let name = &shared.guests[g].name;
    let path = format!("/local/domain/{domid}/vfpga/{slot}");
    let ended = || stop.load(Ordering::Acquire) || shared.stop.load(Ordering::Acquire);
    let mut backoff = Duration::from_millis(100);
    while !ended() {
        let mut v = match Vchan::serve(domid, &path, 0) {
            Ok(v) => v,
            Err(e) => {
                warn!(guest = %name, %path, "cannot offer a vchan: {e}; again in {backoff:?}");
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(10));
                continue;
            }
        };
        backoff = Duration::from_millis(100);
        // Either flag ends a wait in the channel: the domain's (`stop`), or the
        // connection's own (its closer, used by shutdown and domain death).
        let conn_stop = Arc::new(AtomicBool::new(false));
        v.set_stop(conn_stop.clone());
        let connected = match v.wait_connected(stop) {
            Ok(c) => c && !shared.stop.load(Ordering::Acquire),
            Err(e) => {
                debug!(guest = %name, %path, "vchan wait: {e}");
                false
            }
        };
        if !connected {
            break;
        }
        let close: super::server::Closer =
            Box::new(move || conn_stop.store(true, Ordering::Release));
        serve_conn(shared, g, format!("vchan dom{domid}/{slot}"), close, v);
    }
    debug!(guest = %name, %path, "vchan channel withdrawn");
}
