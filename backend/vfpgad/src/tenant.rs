//! Guests as tenants: what each may do (the kernels it may run, the bitstreams it may
//! load) and how much (runs and bytes in flight, runs and bytes per second, its share of
//! the engine). One [`Tenant`] per configured guest, shared by all of that guest's
//! devices — a virtio device per frontend connection, one per stream connection — so a
//! guest cannot escape its quota by opening more of them.
//!
//! A refusal is the status the spec gives (`PERMISSION` for policy, `BUSY` for quotas),
//! counted like every answer in the device's statistics and logged with the guest's
//! name at most every ten seconds.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::Deserialize;
use vfpga_proto::{AbiError, Limits, Status, LIMIT_F_ALL_KERNELS, LIMIT_F_LOAD};

use crate::limited::Limited;
use crate::lock::lock;
use crate::metrics::GuestMetrics;

/// A guest's policy. In the configuration file the `[device]` table holds the defaults
/// and each `[[guest]]` may override any field.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Kernels it may open sessions on, by name; `"*"`: every kernel.
    pub kernels: Vec<String>,
    /// Bitstreams it may load, by name (also in `[library] allow`); `"*"`: every one the
    /// library allows. Default: none.
    pub bitstreams: Vec<String>,
    /// Runs in flight at once over all its devices and streams.
    pub max_inflight: u32,
    /// Bytes (inputs plus outputs) of its runs in flight at once.
    pub max_inflight_bytes: u64,
    /// Runs per second; 0: no limit.
    pub rate_runs: u64,
    /// Bytes of runs per second; 0: no limit.
    pub rate_bytes: u64,
    /// Its share of engine time against the others' while several wait (see sched.rs).
    pub weight: u32,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            kernels: vec!["*".into()],
            bitstreams: Vec::new(),
            max_inflight: 64,
            max_inflight_bytes: 1 << 30,
            rate_runs: 0,
            rate_bytes: 0,
            weight: 1,
        }
    }
}

impl Policy {
    /// A policy that lets a peer do whatever the engine lets it (the board agent's
    /// hosts, and devices made without a configuration).
    pub fn open() -> Self {
        Self {
            bitstreams: vec!["*".into()],
            max_inflight: u32::MAX,
            max_inflight_bytes: u64::MAX,
            ..Self::default()
        }
    }

    /// Checks values; the message names the field.
    pub fn check(&self, what: &str) -> Result<(), String> {
        let valid = vfpga_engine::manifest::valid_name;
        for k in &self.kernels {
            // A kernel, or BITSTREAM/KERNEL of a time-shared bitstream.
            let ok = k == "*"
                || valid(k)
                || k.split_once('/').is_some_and(|(b, n)| valid(b) && valid(n));
            if !ok {
                return Err(format!(
                    "{what} kernels: {k:?} is not a kernel name (KERNEL or BITSTREAM/KERNEL, or \"*\")"
                ));
            }
        }
        for b in &self.bitstreams {
            if b != "*" && !vfpga_engine::manifest::valid_name(b) {
                return Err(format!(
                    "{what} bitstreams: {b:?} is not a bitstream name (or \"*\")"
                ));
            }
        }
        if self.max_inflight == 0 {
            return Err(format!("{what} max_inflight must be at least 1"));
        }
        if self.max_inflight_bytes == 0 {
            return Err(format!("{what} max_inflight_bytes must be positive"));
        }
        if !(1..=1000).contains(&self.weight) {
            return Err(format!("{what} weight = {}: must be 1..=1000", self.weight));
        }
        Ok(())
    }

    fn allows(list: &[String], name: &str) -> bool {
        list.iter().any(|k| k == "*" || k == name)
    }
}

/// Token buckets holding at most one second's worth.
#[derive(Debug)]
struct Rate {
    runs: f64,
    bytes: f64,
    at: Instant,
}

/// One guest.
#[derive(Debug)]
pub struct Tenant {
    /// Its name.
    pub name: String,
    /// What it may do.
    pub policy: Policy,
    inflight: AtomicU32,
    inflight_bytes: AtomicU64,
    rate: Mutex<Rate>,
    /// Reports of its requests, at most one every ten seconds.
    reports: Limited,
    /// What the operator sees of it (`--metrics`).
    pub metrics: Arc<GuestMetrics>,
}

/// A run admitted against its guest's quota; dropping it gives the quota back.
#[derive(Debug)]
pub struct Admission {
    tenant: Arc<Tenant>,
    bytes: u64,
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.tenant.inflight.fetch_sub(1, Ordering::AcqRel);
        self.tenant
            .inflight_bytes
            .fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

impl Tenant {
    /// A tenant named `name` under `policy`.
    pub fn new(name: &str, policy: Policy) -> Arc<Self> {
        Arc::new(Self {
            name: name.to_owned(),
            inflight: AtomicU32::new(0),
            inflight_bytes: AtomicU64::new(0),
            rate: Mutex::new(Rate {
                runs: policy.rate_runs as f64,
                bytes: policy.rate_bytes as f64,
                at: Instant::now(),
            }),
            policy,
            reports: Limited::new(),
            metrics: Arc::default(),
        })
    }

    /// Runs admitted and not yet over, and the bytes they move.
    pub fn inflight(&self) -> (u32, u64) {
        (
            self.inflight.load(Ordering::Acquire),
            self.inflight_bytes.load(Ordering::Acquire),
        )
    }

    /// Whether it may open sessions on kernel `name`.
    pub fn may_run(&self, name: &str) -> bool {
        Policy::allows(&self.policy.kernels, name)
    }

    /// Whether it may load bitstream `name`.
    pub fn may_load(&self, name: &str) -> bool {
        Policy::allows(&self.policy.bitstreams, name)
    }

    /// Logs a refusal (at most every ten seconds per guest) and returns its error.
    pub fn refuse(&self, status: Status, reason: &'static str) -> AbiError {
        self.report(format_args!("refused ({status}): {reason}"));
        AbiError::new(status, reason)
    }

    /// Logs a warning about this guest's requests, at most every ten seconds (then with
    /// the number of reports held back): what a guest sends must not flood the log.
    pub fn report(&self, what: std::fmt::Arguments<'_>) {
        crate::warn_limited!(self.reports, guest = %self.name, "{what}");
    }

    /// Admits a run of `bytes` (inputs plus outputs), or refuses it with `BUSY` when it
    /// would pass the guest's runs or bytes in flight, or its rates.
    pub fn admit(self: &Arc<Self>, bytes: u64) -> Result<Admission, AbiError> {
        let p = &self.policy;
        if self.inflight.fetch_add(1, Ordering::AcqRel) >= p.max_inflight {
            self.inflight.fetch_sub(1, Ordering::AcqRel);
            return Err(self.refuse(
                Status::Busy,
                "runs in flight at the guest's limit (max_inflight)",
            ));
        }
        let before = self.inflight_bytes.fetch_add(bytes, Ordering::AcqRel);
        if before.saturating_add(bytes) > p.max_inflight_bytes {
            self.inflight_bytes.fetch_sub(bytes, Ordering::AcqRel);
            self.inflight.fetch_sub(1, Ordering::AcqRel);
            return Err(self.refuse(
                Status::Busy,
                "bytes in flight at the guest's limit (max_inflight_bytes)",
            ));
        }
        let admitted = Admission {
            tenant: self.clone(),
            bytes,
        };
        if (p.rate_runs > 0 || p.rate_bytes > 0) && !self.take_rate(bytes) {
            return Err(self.refuse(
                Status::Busy,
                "the guest's rate (rate_runs, rate_bytes) is used up for now",
            ));
        }
        Ok(admitted)
    }

    /// Takes one run and `bytes` from the rate buckets, refilled since the last take.
    fn take_rate(&self, bytes: u64) -> bool {
        let p = &self.policy;
        let mut r = lock(&self.rate);
        let now = Instant::now();
        let dt = now.duration_since(r.at).as_secs_f64();
        r.at = now;
        let (cap_runs, cap_bytes) = (p.rate_runs as f64, p.rate_bytes as f64);
        r.runs = (r.runs + dt * cap_runs).min(cap_runs);
        r.bytes = (r.bytes + dt * cap_bytes).min(cap_bytes);
        let runs_ok = p.rate_runs == 0 || r.runs >= 1.0;
        // A run larger than a second's worth passes when the bucket is full.
        let bytes_ok = p.rate_bytes == 0 || r.bytes >= (bytes as f64).min(cap_bytes);
        if !(runs_ok && bytes_ok) {
            return false;
        }
        if p.rate_runs > 0 {
            r.runs -= 1.0;
        }
        if p.rate_bytes > 0 {
            r.bytes -= (bytes as f64).min(cap_bytes);
        }
        true
    }

    /// The `GET_LIMITS` answer, with `max_sessions` and `max_request_bytes` of the
    /// device answering.
    pub fn limits(&self, max_sessions: u32, max_request_bytes: u64) -> Limits {
        let p = &self.policy;
        let mut flags = 0;
        if !p.bitstreams.is_empty() {
            flags |= LIMIT_F_LOAD;
        }
        if p.kernels.iter().any(|k| k == "*") {
            flags |= LIMIT_F_ALL_KERNELS;
        }
        Limits {
            max_sessions,
            max_inflight: p.max_inflight,
            max_inflight_bytes: p.max_inflight_bytes,
            max_request_bytes,
            rate_runs: p.rate_runs,
            rate_bytes: p.rate_bytes,
            weight: p.weight,
            flags,
            inflight: self.inflight.load(Ordering::Acquire),
            reserved: 0,
            inflight_bytes: self.inflight_bytes.load(Ordering::Acquire),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn quotas_are_taken_and_given_back() {
        let t = Tenant::new(
            "vm0",
            Policy {
                max_inflight: 2,
                max_inflight_bytes: 100,
                ..Policy::default()
            },
        );
        let a = t.admit(40).unwrap();
        let b = t.admit(40).unwrap();
        assert_eq!(
            t.admit(1).unwrap_err().status,
            Status::Busy,
            "two runs in flight"
        );
        drop(a);
        assert_eq!(
            t.admit(61).unwrap_err().status,
            Status::Busy,
            "40 + 61 bytes"
        );
        let c = t.admit(60).unwrap();
        assert_eq!(t.limits(4, 8).inflight, 2);
        drop((b, c));
        assert_eq!(
            (t.limits(4, 8).inflight, t.limits(4, 8).inflight_bytes),
            (0, 0)
        );
    }

    #[test]
    fn rates_refill_with_time() {
        let t = Tenant::new(
            "vm0",
            Policy {
                rate_runs: 2,
                ..Policy::default()
            },
        );
        let _a = t.admit(1).unwrap();
        let _b = t.admit(1).unwrap();
        assert_eq!(t.admit(1).unwrap_err().status, Status::Busy, "2 per second");
        // Refilled: half a second later, one more (rewind the bucket's clock instead of
        // sleeping).
        lock(&t.rate).at -= std::time::Duration::from_millis(600);
        let _c = t.admit(1).unwrap();
        assert_eq!(
            t.limits(1, 1).inflight,
            3,
            "refused runs give their place back"
        );
        let t = Tenant::new(
            "vm1",
            Policy {
                rate_bytes: 1000,
                ..Policy::default()
            },
        );
        let _big = t.admit(5000).unwrap();
        assert_eq!(t.admit(10).unwrap_err().status, Status::Busy);
    }

    #[test]
    fn names_are_matched_exactly_or_by_star() {
        let t = Tenant::new(
            "vm0",
            Policy {
                kernels: vec!["sha256".into()],
                bitstreams: vec!["base".into()],
                ..Policy::default()
            },
        );
        assert!(t.may_run("sha256") && !t.may_run("sha2") && !t.may_run("mmult"));
        assert!(t.may_load("base") && !t.may_load("base2"));
        assert!(
            !Tenant::new("d", Policy::default()).may_load("base"),
            "default: none"
        );
        assert!(Tenant::new("o", Policy::open()).may_load("anything"));
        let l = t.limits(3, 4);
        assert_eq!(l.flags, LIMIT_F_LOAD);
        assert!(Policy {
            weight: 0,
            ..Policy::default()
        }
        .check("[device]")
        .is_err());
    }
}
