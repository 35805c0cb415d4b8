//! What the daemon counts for its operator: per guest, requests by operation and
//! status; per guest and kernel, runs by status, bytes, engine time, a histogram of
//! run durations and the sessions open. Lock-free atomics, updated on every request
//! without allocating; read when the metrics endpoint is scraped ([`expose`], served
//! by [`http`]) or `vfpgad status` asks ([`client`]).
//!
//! These live as long as the daemon (in the guest's [`crate::tenant::Tenant`]), unlike
//! a device's `GET_STATS` counters, which start again with each frontend connection.

pub mod addr;
#[cfg(feature = "vhost")]
pub mod client;
#[cfg(feature = "vhost")]
pub mod expose;
#[cfg(feature = "vhost")]
pub mod http;

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, RwLock};

use vfpga_proto::{Opcode, Status};

/// Status codes the ABI defines (`Status::ALL`, in wire order from 0).
pub const N_STATUS: usize = 13;
/// Opcodes the ABI defines, plus index 0 for a request whose operation is unknown.
pub const N_OPS: usize = 11;
/// Kernels counted apart per guest; runs of further kernels (bitstream after
/// bitstream loaded) are counted together under [`OTHER_KERNELS`].
pub const MAX_KERNELS: usize = 128;
/// The name runs beyond [`MAX_KERNELS`] kernels are counted under.
pub const OTHER_KERNELS: &str = "(other)";

/// Upper bounds of the run-duration histogram's buckets, in nanoseconds (`+Inf` after).
pub const DURATION_BUCKETS_NS: [u64; 18] = [
    10_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
];

/// A histogram of durations: a count per bucket (not cumulative), their sum.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; DURATION_BUCKETS_NS.len() + 1],
    sum_ns: AtomicU64,
}

impl Histogram {
    /// Counts one duration of `ns` nanoseconds.
    pub fn observe(&self, ns: u64) {
        let i = DURATION_BUCKETS_NS.partition_point(|&b| b < ns);
        self.buckets[i].fetch_add(1, Relaxed);
        self.sum_ns.fetch_add(ns, Relaxed);
    }

    /// `(upper bound in seconds, count in this bucket alone)` per bucket, `+Inf` last
    /// (the encoders make them cumulative); the sum in seconds; the count.
    pub fn read(&self) -> (Vec<(f64, u64)>, f64, u64) {
        let out: Vec<(f64, u64)> = self
            .buckets
            .iter()
            .enumerate()
            .map(|(i, b)| {
                let le = DURATION_BUCKETS_NS
                    .get(i)
                    .map_or(f64::INFINITY, |&ns| ns as f64 / 1e9);
                (le, b.load(Relaxed))
            })
            .collect();
        let total = out.iter().map(|(_, n)| n).sum();
        (out, self.sum_ns.load(Relaxed) as f64 / 1e9, total)
    }
}

/// One kernel of one guest.
#[derive(Debug)]
pub struct KernelMetrics {
    /// The kernel's name as the guest opened it (`BITSTREAM/KERNEL` for a shared one).
    pub name: String,
    runs: [AtomicU64; N_STATUS],
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    engine_ns: AtomicU64,
    duration: Histogram,
    sessions: AtomicI64,
}

/// What [`KernelMetrics::read`] gives.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct KernelReading {
    /// Runs ended, by status (index = wire value).
    pub runs: [u64; N_STATUS],
    /// Bytes the engine read.
    pub bytes_in: u64,
    /// Bytes the engine wrote.
    pub bytes_out: u64,
    /// Time the engine spent on successful runs, in seconds.
    pub engine_seconds: f64,
    /// Sessions open on the kernel.
    pub sessions: i64,
}

impl KernelMetrics {
    fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            runs: Default::default(),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            engine_ns: AtomicU64::new(0),
            duration: Histogram::default(),
            sessions: AtomicI64::new(0),
        }
    }

    /// Counts a run (or a run request refused) that ended with `status`.
    pub fn ended(&self, status: Status) {
        if let Some(c) = self.runs.get(usize::from(status.raw())) {
            c.fetch_add(1, Relaxed);
        }
    }

    /// Counts a successful run's bytes and engine time (its status counts apart).
    pub fn ran(&self, bytes_in: u64, bytes_out: u64, ns: u64) {
        self.bytes_in.fetch_add(bytes_in, Relaxed);
        self.bytes_out.fetch_add(bytes_out, Relaxed);
        self.engine_ns.fetch_add(ns, Relaxed);
        self.duration.observe(ns);
    }

    /// A session on the kernel opened (`+1`) or ended (`-1`).
    pub fn session(&self, delta: i64) {
        self.sessions.fetch_add(delta, Relaxed);
    }

    /// The counters now.
    pub fn read(&self) -> KernelReading {
        KernelReading {
            runs: std::array::from_fn(|i| self.runs[i].load(Relaxed)),
            bytes_in: self.bytes_in.load(Relaxed),
            bytes_out: self.bytes_out.load(Relaxed),
            engine_seconds: self.engine_ns.load(Relaxed) as f64 / 1e9,
            sessions: self.sessions.load(Relaxed),
        }
    }

    /// The run-duration histogram.
    pub fn durations(&self) -> &Histogram {
        &self.duration
    }
}

/// One guest, over all its devices and stream connections.
#[derive(Debug)]
pub struct GuestMetrics {
    requests: [[AtomicU64; N_STATUS]; N_OPS],
    kernels: RwLock<Vec<Arc<KernelMetrics>>>,
}

impl Default for GuestMetrics {
    fn default() -> Self {
        Self {
            requests: Default::default(),
            kernels: RwLock::new(Vec::new()),
        }
    }
}

impl GuestMetrics {
    /// Counts a request answered with `status`; `op` is `None` when the request was
    /// refused before its operation was known.
    pub fn request(&self, op: Option<Opcode>, status: Status) {
        let o = op.map_or(0, |o| usize::from(o.raw()));
        if let Some(c) = self
            .requests
            .get(o)
            .and_then(|row| row.get(usize::from(status.raw())))
        {
            c.fetch_add(1, Relaxed);
        }
    }

    /// Requests answered: `count[op][status]`, index 0 of `op` for unknown operations.
    pub fn requests(&self) -> [[u64; N_STATUS]; N_OPS] {
        std::array::from_fn(|o| std::array::from_fn(|s| self.requests[o][s].load(Relaxed)))
    }

    /// The counters of kernel `name`, made on first use (a session opening, not a run).
    pub fn kernel(&self, name: &str) -> Arc<KernelMetrics> {
        let find =
            |list: &[Arc<KernelMetrics>], n: &str| list.iter().find(|k| k.name == n).cloned();
        if let Some(k) = find(&self.read_kernels(), name) {
            return k;
        }
        let mut list = self.kernels.write().unwrap_or_else(|p| p.into_inner());
        let name = if list.len() >= MAX_KERNELS && find(&list, name).is_none() {
            OTHER_KERNELS
        } else {
            name
        };
        if let Some(k) = find(&list, name) {
            return k;
        }
        let k = Arc::new(KernelMetrics::new(name));
        list.push(k.clone());
        k
    }

    /// Every kernel counted so far.
    pub fn kernels(&self) -> Vec<Arc<KernelMetrics>> {
        self.read_kernels().clone()
    }

    fn read_kernels(&self) -> std::sync::RwLockReadGuard<'_, Vec<Arc<KernelMetrics>>> {
        self.kernels.read().unwrap_or_else(|p| p.into_inner())
    }
}

/// The label of operation index `o` of [`GuestMetrics::requests`].
pub fn op_label(o: usize) -> &'static str {
    Opcode::ALL
        .iter()
        .find(|(op, _)| usize::from(op.raw()) == o)
        .map_or("unknown", |(_, c)| c.strip_prefix("VFPGA_OP_").unwrap_or(c))
}

/// The label of status index `s`.
pub fn status_label(s: usize) -> &'static str {
    Status::ALL
        .iter()
        .find(|(st, _)| usize::from(st.raw()) == s)
        .map_or("unknown", |(_, c)| c.strip_prefix("VFPGA_S_").unwrap_or(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tables_cover_every_code_of_the_abi() {
        let max_status = Status::ALL.iter().map(|(s, _)| usize::from(s.raw())).max();
        assert_eq!(max_status, Some(N_STATUS - 1));
        let max_op = Opcode::ALL.iter().map(|(o, _)| usize::from(o.raw())).max();
        assert_eq!(max_op, Some(N_OPS - 1));
        assert_eq!(op_label(5), "RUN");
        assert_eq!(op_label(0), "unknown");
        assert_eq!(status_label(0), "OK");
        assert_eq!(status_label(12), "LINK_DOWN");
    }

    #[test]
    fn histogram_bounds_are_inclusive() {
        let h = Histogram::default();
        for ns in [1, 10_000, 10_001, 3_000_000, u64::MAX / 4] {
            h.observe(ns);
        }
        let (buckets, _, count) = h.read();
        assert_eq!(count, 5);
        assert_eq!(buckets[0], (10e-6, 2), "1 ns and exactly 10 µs");
        assert_eq!(buckets[1].1, 1, "10.001 µs in the 50 µs bucket");
        assert_eq!(buckets[7], (5e-3, 1), "3 ms by 5 ms");
        assert_eq!(buckets.last().unwrap().0, f64::INFINITY);
        assert_eq!(buckets.last().unwrap().1, 1);
        assert_eq!(buckets.iter().map(|b| b.1).sum::<u64>(), 5);
    }

    #[test]
    fn kernels_beyond_the_bound_share_one_entry() {
        let g = GuestMetrics::default();
        for i in 0..MAX_KERNELS + 10 {
            g.kernel(&format!("k{i}")).ended(Status::Ok);
        }
        assert!(Arc::ptr_eq(&g.kernel("k3"), &g.kernel("k3")));
        let all = g.kernels();
        assert_eq!(all.len(), MAX_KERNELS + 1);
        let other = all.iter().find(|k| k.name == OTHER_KERNELS).unwrap();
        assert_eq!(other.read().runs[0], 10, "the ten beyond, in one entry");
    }

    #[test]
    fn requests_count_by_operation_and_status() {
        let g = GuestMetrics::default();
        g.request(Some(Opcode::Run), Status::Busy);
        g.request(None, Status::BadRequest);
        let r = g.requests();
        assert_eq!(r[5][8], 1);
        assert_eq!(r[0][1], 1);
        assert_eq!(r.iter().flatten().sum::<u64>(), 2);
    }
}
