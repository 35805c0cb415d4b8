//! The fabric gate: runs share the programmable logic, a bitstream load has it alone.
//!
//! A load waits for the runs in flight to end (each is bounded by its core's timeout)
//! and, from the moment it asks, holds back runs that have not started, so loads cannot
//! be starved by a stream of runs; the runs held back start after the load, on its
//! catalogue. `std::sync::RwLock` leaves that priority to the platform, hence this
//! small lock of its own.

use std::sync::{Condvar, Mutex, MutexGuard};

#[derive(Debug, Default)]
struct State {
    /// Runs in flight.
    runs: usize,
    /// Loads waiting for the runs to drain, or loading.
    loads: usize,
    /// Whether a load has the fabric.
    loading: bool,
}

/// The gate.
#[derive(Debug, Default)]
pub(super) struct Gate {
    state: Mutex<State>,
    cv: Condvar,
}

/// A run's share of the fabric, given back on drop.
#[derive(Debug)]
pub(super) struct RunPass<'a>(&'a Gate);

/// A load's hold on the fabric, given back on drop.
#[derive(Debug)]
pub(super) struct LoadPass<'a>(&'a Gate);

impl Gate {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn wait<'a>(&self, g: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        self.cv.wait(g).unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until no load is waiting or loading, then counts a run in.
    pub(super) fn run(&self) -> RunPass<'_> {
        let mut s = self.lock();
        while s.loads > 0 {
            s = self.wait(s);
        }
        s.runs += 1;
        RunPass(self)
    }

    /// Holds back new runs, waits for the runs in flight and any other load to end.
    pub(super) fn load(&self) -> LoadPass<'_> {
        let mut s = self.lock();
        s.loads += 1;
        while s.runs > 0 || s.loading {
            s = self.wait(s);
        }
        s.loading = true;
        LoadPass(self)
    }

    /// Runs in flight and loads waiting (for tests and logs).
    pub(super) fn counts(&self) -> (usize, usize) {
        let s = self.lock();
        (s.runs, s.loads)
    }
}

impl Drop for RunPass<'_> {
    fn drop(&mut self) {
        let mut s = self.0.lock();
        s.runs -= 1;
        if s.runs == 0 {
            self.0.cv.notify_all();
        }
    }
}

impl Drop for LoadPass<'_> {
    fn drop(&mut self) {
        let mut s = self.0.lock();
        s.loading = false;
        s.loads -= 1;
        self.0.cv.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    #[test]
    fn a_load_waits_for_runs_and_holds_back_new_ones() {
        let gate = Gate::default();
        let g = &gate;
        let r1 = g.run();
        std::thread::scope(|sc| {
            let (tx, rx) = mpsc::channel();
            let ltx = tx.clone();
            sc.spawn(move || {
                let _l = g.load();
                ltx.send("loaded").unwrap();
            });
            // The load announces itself before it waits.
            while g.counts().1 == 0 {
                std::thread::yield_now();
            }
            let rtx = tx.clone();
            sc.spawn(move || {
                let _r = g.run();
                rtx.send("ran").unwrap();
            });
            // Neither the load nor the new run can go while r1 is in flight; then the
            // load goes first.
            assert!(rx.try_recv().is_err());
            drop(r1);
            assert_eq!(rx.recv_timeout(Duration::from_secs(60)), Ok("loaded"));
            assert_eq!(rx.recv_timeout(Duration::from_secs(60)), Ok("ran"));
        });
        assert_eq!(gate.counts(), (0, 0));
    }
}
