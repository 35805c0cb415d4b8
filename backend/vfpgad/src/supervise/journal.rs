//! The state a frontend has set up over one vhost-user connection, as the messages
//! that set it: replayed to each new worker, it becomes the same device.
//!
//! One entry per kind of state (per ring for ring state), a later message replacing
//! an earlier one in place, so the replay keeps the order the frontend set things up
//! in (the memory table before the ring addresses it translates) and the journal
//! stays bounded. A ring stop (`GET_VRING_BASE`) drops the ring's kick and call, as
//! the backend does; a device reset drops the rings and the features: a new worker
//! is a reset device already.

use vhost::vhost_user::message::{FrontendReq, VhostUserProtocolFeatures, VhostUserVirtioFeatures};

use super::wire::{Msg, NEED_REPLY};

/// Rings whose state is kept (vfpgad has at most 64 virtqueues).
const MAX_RINGS: u32 = 64;
/// `SET_CONFIG` offsets whose writes are kept (the config space is 40 bytes).
const MAX_CONFIG_OFFSET: u32 = 256;

/// What a journal entry sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Key {
    req: u32,
    index: u32,
}

/// The setup of one connection.
#[derive(Debug)]
pub struct Journal {
    /// Rings the device has: messages about others are not kept (the daemon refuses
    /// them, and a replay of them would have every new daemon refuse the set-up).
    rings: u32,
    entries: Vec<(Key, Msg)>,
    /// The features the backend offered (`GET_FEATURES`' answer).
    offered: u64,
}

const fn code(r: FrontendReq) -> u32 {
    r as u32
}

const RING_U32: [u32; 4] = [
    code(FrontendReq::SET_VRING_NUM),
    code(FrontendReq::SET_VRING_ADDR),
    code(FrontendReq::SET_VRING_BASE),
    code(FrontendReq::SET_VRING_ENABLE),
];
const RING_FD: [u32; 3] = [
    code(FrontendReq::SET_VRING_KICK),
    code(FrontendReq::SET_VRING_CALL),
    code(FrontendReq::SET_VRING_ERR),
];
const DEVICE: [u32; 5] = [
    // Asked again of a new worker: the vhost crate acknowledges messages only once it
    // has offered its features (its answer is dropped).
    code(FrontendReq::GET_FEATURES),
    code(FrontendReq::SET_OWNER),
    code(FrontendReq::SET_FEATURES),
    code(FrontendReq::SET_PROTOCOL_FEATURES),
    code(FrontendReq::SET_MEM_TABLE),
];

/// Requests the backend always answers.
pub fn always_answered(req: u32) -> bool {
    [
        FrontendReq::GET_FEATURES,
        FrontendReq::GET_PROTOCOL_FEATURES,
        FrontendReq::GET_QUEUE_NUM,
        FrontendReq::GET_VRING_BASE,
        FrontendReq::GET_CONFIG,
        FrontendReq::GET_MAX_MEM_SLOTS,
        FrontendReq::GET_INFLIGHT_FD,
    ]
    .into_iter()
    .any(|r| code(r) == req)
}

/// The ring a ring message is about, if it is one.
fn ring_of(msg: &Msg) -> Option<u32> {
    if RING_U32.contains(&msg.req) || msg.req == code(FrontendReq::GET_VRING_BASE) {
        msg.u32_at(0)
    } else if RING_FD.contains(&msg.req) {
        msg.u64_at(0)
            .map(|v| u32::from(u8::try_from(v & 0xff).unwrap_or(0)))
    } else {
        None
    }
}

impl Default for Journal {
    fn default() -> Self {
        Self::for_rings(MAX_RINGS)
    }
}

impl Journal {
    /// A journal for a device of `rings` virtqueues.
    pub fn for_rings(rings: u32) -> Self {
        Self {
            rings: rings.min(MAX_RINGS),
            entries: Vec::new(),
            offered: 0,
        }
    }

    /// Whether messages of request `req` are replayed (so a new worker has applied
    /// one the old worker may not have).
    pub fn holds(&self, req: u32) -> bool {
        DEVICE.contains(&req)
            || RING_U32.contains(&req)
            || RING_FD.contains(&req)
            || req == code(FrontendReq::SET_CONFIG)
    }

    /// Takes note of a message the frontend sent. Descriptors are duplicated.
    pub fn record(&mut self, msg: &Msg) -> std::io::Result<()> {
        let req = msg.req;
        if req == code(FrontendReq::GET_VRING_BASE) {
            if let Some(ring) = ring_of(msg) {
                self.entries.retain(|(k, _)| {
                    k.index != ring
                        || (k.req != code(FrontendReq::SET_VRING_KICK)
                            && k.req != code(FrontendReq::SET_VRING_CALL))
                });
            }
            return Ok(());
        }
        if req == code(FrontendReq::RESET_DEVICE) || req == code(FrontendReq::RESET_OWNER) {
            let owner_too = req == code(FrontendReq::RESET_OWNER);
            self.entries.retain(|(k, _)| {
                !(RING_U32.contains(&k.req)
                    || RING_FD.contains(&k.req)
                    || k.req == code(FrontendReq::SET_FEATURES)
                    || (owner_too && k.req == code(FrontendReq::SET_OWNER)))
            });
            return Ok(());
        }
        let key = if DEVICE.contains(&req) {
            Key { req, index: 0 }
        } else if RING_U32.contains(&req) || RING_FD.contains(&req) {
            match ring_of(msg) {
                Some(index) if index < self.rings => Key { req, index },
                _ => return Ok(()),
            }
        } else if req == code(FrontendReq::SET_CONFIG) {
            match msg.u32_at(0) {
                Some(index) if index < MAX_CONFIG_OFFSET => Key { req, index },
                _ => return Ok(()),
            }
        } else {
            return Ok(());
        };
        let copy = msg.try_clone()?;
        match self.entries.iter_mut().find(|(k, _)| *k == key) {
            Some(entry) => entry.1 = copy,
            None => self.entries.push((key, copy)),
        }
        Ok(())
    }

    /// The messages that rebuild the state, in order, asking for no
    /// acknowledgement; `next_avail(ring)` gives where a ring's driver has got to,
    /// to restart it there.
    pub fn replay(&self, next_avail: impl Fn(u32) -> Option<u16>) -> std::io::Result<Vec<Msg>> {
        let mut out = Vec::with_capacity(self.entries.len());
        for (k, m) in &self.entries {
            let mut m = m.try_clone()?;
            m.flags &= !NEED_REPLY;
            if k.req == code(FrontendReq::SET_VRING_BASE) {
                if let (Some(n), Some(num)) = (next_avail(k.index), m.payload.get_mut(4..8)) {
                    num.copy_from_slice(&u32::from(n).to_le_bytes());
                }
            }
            out.push(m);
        }
        Ok(out)
    }

    /// The kick descriptors of the rings set up, to wake a new worker's queues.
    pub fn kicks(&self) -> impl Iterator<Item = &std::os::fd::OwnedFd> {
        self.entries
            .iter()
            .filter(|(k, _)| k.req == code(FrontendReq::SET_VRING_KICK))
            .filter_map(|(_, m)| m.fds.first())
    }

    /// Takes note of the features the backend offered.
    pub fn offered(&mut self, features: u64) {
        self.offered = features;
    }

    /// Whether the backend acknowledges messages that ask for it, as the vhost crate
    /// decides: it offered `PROTOCOL_FEATURES` and the frontend acked `REPLY_ACK`.
    pub fn reply_ack(&self) -> bool {
        let acked = self
            .entries
            .iter()
            .find(|(k, _)| k.req == code(FrontendReq::SET_PROTOCOL_FEATURES))
            .and_then(|(_, m)| m.u64_at(0))
            .unwrap_or(0);
        self.offered & VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits() != 0
            && acked & VhostUserProtocolFeatures::REPLY_ACK.bits() != 0
    }
}

/// Protocol features the supervisor can carry across a restart: others (a backend
/// channel, in-flight or log descriptors, memory slots added one by one) would need
/// state it does not keep, so they are hidden from the frontend.
pub fn relayable_protocol_features() -> u64 {
    (VhostUserProtocolFeatures::MQ
        | VhostUserProtocolFeatures::REPLY_ACK
        | VhostUserProtocolFeatures::CONFIG
        | VhostUserProtocolFeatures::RESET_DEVICE)
        .bits()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(req: FrontendReq, payload: &[u8]) -> Msg {
        Msg {
            req: code(req),
            flags: 1 | NEED_REPLY,
            payload: payload.to_vec(),
            fds: Vec::new(),
        }
    }

    fn ring(req: FrontendReq, index: u32, num: u32) -> Msg {
        let mut p = index.to_le_bytes().to_vec();
        p.extend_from_slice(&num.to_le_bytes());
        msg(req, &p)
    }

    fn kick(index: u64) -> Msg {
        let mut m = msg(FrontendReq::SET_VRING_KICK, &index.to_le_bytes());
        m.fds.push(std::fs::File::open("/dev/null").unwrap().into());
        m
    }

    fn reqs(j: &Journal) -> Vec<(u32, Option<u32>)> {
        j.replay(|_| None)
            .unwrap()
            .iter()
            .map(|m| (m.req, m.u32_at(0)))
            .collect()
    }

    #[test]
    fn replay_keeps_setup_order_and_latest_values() {
        let mut j = Journal::default();
        j.record(&msg(FrontendReq::SET_OWNER, &[])).unwrap();
        j.record(&msg(FrontendReq::SET_FEATURES, &(1u64 << 30).to_le_bytes()))
            .unwrap();
        j.record(&msg(
            FrontendReq::SET_PROTOCOL_FEATURES,
            &8u64.to_le_bytes(),
        ))
        .unwrap();
        j.record(&msg(FrontendReq::SET_MEM_TABLE, &[1; 40]))
            .unwrap();
        j.record(&ring(FrontendReq::SET_VRING_NUM, 0, 256)).unwrap();
        j.record(&ring(FrontendReq::SET_VRING_BASE, 0, 0)).unwrap();
        j.record(&kick(0)).unwrap();
        assert!(!j.reply_ack(), "the backend has not offered its features");
        j.offered(1 << 30);
        assert!(j.reply_ack());
        // A new memory table replaces the old one where it was.
        j.record(&msg(FrontendReq::SET_MEM_TABLE, &[2; 40]))
            .unwrap();
        // Not kept: questions other than the features, and rings beyond any device.
        j.record(&msg(FrontendReq::GET_QUEUE_NUM, &[])).unwrap();
        j.record(&msg(FrontendReq::GET_CONFIG, &[0; 12])).unwrap();
        j.record(&ring(FrontendReq::SET_VRING_NUM, 1000, 8))
            .unwrap();
        let replay = j.replay(|r| (r == 0).then_some(77)).unwrap();
        assert_eq!(replay.len(), 7);
        assert_eq!(replay[3].payload, vec![2; 40]);
        assert_eq!(
            replay[5].u32_at(4),
            Some(77),
            "the ring restarts where it got to"
        );
        assert!(replay.iter().all(|m| m.flags & NEED_REPLY == 0));
        assert_eq!(j.kicks().count(), 1);
    }

    #[test]
    fn a_stopped_ring_is_not_restarted_and_a_reset_forgets_rings() {
        let mut j = Journal::default();
        j.record(&msg(FrontendReq::SET_FEATURES, &0u64.to_le_bytes()))
            .unwrap();
        j.record(&ring(FrontendReq::SET_VRING_NUM, 0, 256)).unwrap();
        j.record(&kick(0)).unwrap();
        j.record(&kick(1)).unwrap();
        j.record(&ring(FrontendReq::GET_VRING_BASE, 0, 0)).unwrap();
        assert_eq!(j.kicks().count(), 1, "ring 0 stopped, ring 1 runs");
        j.record(&msg(FrontendReq::SET_MEM_TABLE, &[0; 8])).unwrap();
        j.record(&msg(FrontendReq::RESET_DEVICE, &[])).unwrap();
        assert_eq!(
            reqs(&j),
            vec![(code(FrontendReq::SET_MEM_TABLE), Some(0))],
            "only the memory table survives a reset"
        );
    }

    #[test]
    fn hostile_messages_stay_bounded() {
        let mut j = Journal::default();
        for i in 0..10_000u32 {
            j.record(&ring(FrontendReq::SET_VRING_ADDR, i, 0)).unwrap();
            j.record(&msg(FrontendReq::SET_CONFIG, &i.to_le_bytes()))
                .unwrap();
            j.record(&msg(FrontendReq::SET_VRING_KICK, &[1])).unwrap();
            j.record(&msg(FrontendReq::SET_VRING_BASE, &[])).unwrap();
        }
        // At most one entry per ring and one per config offset below the bound.
        assert!(j.entries.len() <= 64 + 256, "{}", j.entries.len());
        // Only the device's rings.
        let mut j = Journal::for_rings(3);
        for i in 0..100u32 {
            j.record(&ring(FrontendReq::SET_VRING_NUM, i, 8)).unwrap();
        }
        assert_eq!(j.entries.len(), 3);
    }
}
