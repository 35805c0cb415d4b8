//! Request counters, device-wide and per session, readable through `GET_STATS`.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use vfpga_proto::{Stats, Status};

/// Lock-free counters (updated on every request, read rarely).
#[derive(Debug, Default)]
pub struct Counters {
    requests: AtomicU64,
    errors: AtomicU64,
    runs: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    engine_ns: AtomicU64,
    busy: AtomicU64,
}

impl Counters {
    /// Counts a completed request with `status`.
    pub fn request(&self, status: Status) {
        self.requests.fetch_add(1, Relaxed);
        if status != Status::Ok {
            self.errors.fetch_add(1, Relaxed);
        }
        if status == Status::Busy {
            self.busy.fetch_add(1, Relaxed);
        }
    }

    /// Counts a successful run.
    pub fn run(&self, bytes_in: u64, bytes_out: u64, engine_ns: u64) {
        self.runs.fetch_add(1, Relaxed);
        self.bytes_in.fetch_add(bytes_in, Relaxed);
        self.bytes_out.fetch_add(bytes_out, Relaxed);
        self.engine_ns.fetch_add(engine_ns, Relaxed);
    }

    /// A snapshot in ABI form.
    pub fn snapshot(&self, open_sessions: u32) -> Stats {
        Stats {
            requests: self.requests.load(Relaxed),
            errors: self.errors.load(Relaxed),
            runs: self.runs.load(Relaxed),
            bytes_in: self.bytes_in.load(Relaxed),
            bytes_out: self.bytes_out.load(Relaxed),
            engine_ns: self.engine_ns.load(Relaxed),
            busy: self.busy.load(Relaxed),
            open_sessions,
            reserved: 0,
        }
    }
}
