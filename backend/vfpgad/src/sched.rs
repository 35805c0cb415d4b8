//! Fair sharing of the engine between guests.
//!
//! The engine runs at most `tokens` kernels at once (the engine threads). Work waits in
//! one lane per tenant, and whenever a token is free the lane with the least *virtual
//! time* goes next: each run advances its lane by its duration divided by the tenant's
//! weight (charged up front with the lane's recent mean, corrected when it ends), and a
//! lane that had nothing waiting joins at the current virtual time, so idleness earns no
//! credit. A guest with a hundred long runs queued thus delays another guest's run by
//! at most the runs already on the engine, and over time each guest busy with runs gets
//! engine time in proportion to its weight (start-time fair queueing with measured
//! costs: nobody can know a run's length before it ends).
//!
//! Work is either a job for the engine threads (a virtio run, with its guest memory) or
//! a *turn*: a stream connection's thread waits in the lane and then runs the kernel
//! itself. Both take a token, so `[daemon] engine_threads` bounds them together.
//!
//! Runs of time-shared bitstreams (`[library] share`, see shelf.rs) say which bitstream
//! they need. The scheduler keeps the fabric on one bitstream while its runs are at the
//! head of their lanes, for at least `min_slice` (counted once it is loaded) when others
//! wait; then it lets that
//! bitstream's runs drain and dispatches the next bitstream's, whose run loads it. Within
//! a slice the order between guests is still least virtual time first, among the runs
//! that can go; across slices the bitstreams take turns. Runs of sessions bound to the
//! loaded catalogue (no bitstream named) go whenever a token is free.
//!
//! Nothing here allocates once a lane exists: lanes hold at most `capacity` waiting
//! items (a guest's `max_inflight`, which admission enforces first), the hand-over list
//! and the granted turns at most `tokens`.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use crate::lock::lock;
use crate::tenant::Tenant;

/// Most items one lane holds waiting (a tenant allowed more in flight finds its lane full:
/// its virtio runs then run on their queue's thread, its stream turns wait).
const MAX_LANE: usize = 4096;

/// Virtual time per nanosecond of a weight-1 tenant (so weights up to 1000 divide
/// without losing much).
const SCALE: u128 = 1000;

/// What waits in a lane.
#[derive(Debug)]
enum Work<J> {
    Job(J),
    Turn(u64),
}

/// An item waiting in a lane: the work and the shared bitstream it needs, if any.
type Item<J> = (Work<J>, Option<u16>);

#[derive(Debug)]
struct Lane<J> {
    tenant: Weak<Tenant>,
    weight: u128,
    vt: u128,
    /// Recent mean run time (ns), the up-front charge.
    est_ns: u64,
    queue: VecDeque<Item<J>>,
    running: usize,
}

impl<J> Lane<J> {
    fn idle(&self) -> bool {
        self.queue.is_empty() && self.running == 0
    }

    fn charge(&mut self, ns: u64) {
        self.vt = self.vt.saturating_add(u128::from(ns) * SCALE / self.weight);
    }
}

#[derive(Debug)]
struct State<J> {
    free: usize,
    lanes: Vec<Lane<J>>,
    /// The virtual time of the last dispatch: where a lane coming back joins.
    clock: u128,
    /// Jobs dispatched, waiting for an engine thread.
    ready: VecDeque<(usize, Option<u16>, J)>,
    /// The shared bitstream the fabric is given to, since when, and until when at
    /// least (while its runs wait).
    cur: Option<u16>,
    slice_end: Instant,
    /// Runs of shared bitstreams on the engine.
    running_shared: usize,
    /// Whether the run that switched the fabric (and so loads the bitstream) is still
    /// out: the slice counts from its end, so loading time is not taken from it.
    switching: bool,
    /// Times the fabric was given to another shared bitstream.
    switches: u64,
    /// Turns dispatched, waiting for their thread to notice.
    granted: Vec<u64>,
    next_turn: u64,
    closed: bool,
}

/// The scheduler, shared by the engine threads, the virtio devices and the stream
/// connections of one daemon.
#[derive(Debug)]
pub struct Scheduler<J> {
    state: Mutex<State<J>>,
    tokens: usize,
    min_slice: Duration,
    /// Engine threads wait here for jobs.
    jobs: Condvar,
    /// Stream threads wait here for their turn.
    turns: Condvar,
}

/// A tenant's lane, found (or made) by [`Scheduler::lane`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LaneId(usize);

/// Why no turn came.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoTurn {
    /// The daemon (or the caller's flag) is stopping.
    Stopped,
}

/// A running turn or job's token; dropping it gives the token back and charges the
/// lane for the time it held it.
pub struct Token<'a> {
    sched: &'a dyn Turns,
    lane: LaneId,
    bitstream: Option<u16>,
    since: Instant,
}

impl std::fmt::Debug for Token<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("lane", &self.lane)
            .finish_non_exhaustive()
    }
}

impl Drop for Token<'_> {
    fn drop(&mut self) {
        self.sched
            .release(self.lane, self.bitstream, self.since.elapsed());
    }
}

/// Turns on the engine for threads that run kernels themselves (stream connections),
/// whatever the scheduler's jobs are.
pub trait Turns: Send + Sync + std::fmt::Debug {
    /// `tenant`'s lane (made on first use; a lane whose tenant is gone and that holds
    /// nothing is reused).
    fn lane(&self, tenant: &Arc<Tenant>) -> LaneId;
    /// Waits for `lane`'s turn to run a kernel (of shared bitstream `bitstream`, if
    /// any) on the calling thread, or until `stop` is set or the scheduler closes.
    fn turn(
        &self,
        lane: LaneId,
        bitstream: Option<u16>,
        stop: &AtomicBool,
    ) -> Result<Token<'_>, NoTurn>;
    /// Gives a token back, charging `lane` for `ran`.
    fn release(&self, lane: LaneId, bitstream: Option<u16>, ran: Duration);
}

impl<J: Send + std::fmt::Debug> Turns for Scheduler<J> {
    fn lane(&self, tenant: &Arc<Tenant>) -> LaneId {
        self.find_lane(tenant)
    }

    fn turn(
        &self,
        lane: LaneId,
        bitstream: Option<u16>,
        stop: &AtomicBool,
    ) -> Result<Token<'_>, NoTurn> {
        self.wait_for_turn(lane, bitstream, stop)
    }

    fn release(&self, lane: LaneId, bitstream: Option<u16>, ran: Duration) {
        self.give_back(lane, bitstream, ran);
    }
}

impl<J: Send + std::fmt::Debug> Scheduler<J> {
    /// A scheduler running at most `tokens` kernels at once, giving a shared bitstream
    /// the fabric for at least `min_slice` while its runs and others' wait.
    pub fn new(tokens: usize, min_slice: Duration) -> Self {
        let tokens = tokens.max(1);
        Self {
            state: Mutex::new(State {
                free: tokens,
                lanes: Vec::new(),
                clock: 0,
                ready: VecDeque::with_capacity(tokens),
                cur: None,
                slice_end: Instant::now(),
                running_shared: 0,
                switching: false,
                switches: 0,
                granted: Vec::with_capacity(tokens),
                next_turn: 1,
                closed: false,
            }),
            tokens,
            min_slice,
            jobs: Condvar::new(),
            turns: Condvar::new(),
        }
    }

    /// How many kernels may run at once.
    pub fn tokens(&self) -> usize {
        self.tokens
    }

    fn find_lane(&self, tenant: &Arc<Tenant>) -> LaneId {
        let mut s = lock(&self.state);
        if let Some(i) = s
            .lanes
            .iter()
            .position(|l| std::ptr::eq(l.tenant.as_ptr(), Arc::as_ptr(tenant)))
        {
            return LaneId(i);
        }
        let clock = s.clock;
        let lane = Lane {
            tenant: Arc::downgrade(tenant),
            weight: u128::from(tenant.policy.weight.max(1)),
            vt: clock,
            est_ns: 0,
            queue: VecDeque::with_capacity((tenant.policy.max_inflight as usize).min(MAX_LANE)),
            running: 0,
        };
        if let Some(i) = s
            .lanes
            .iter()
            .position(|l| l.tenant.strong_count() == 0 && l.idle())
        {
            s.lanes[i] = lane;
            return LaneId(i);
        }
        s.lanes.push(lane);
        LaneId(s.lanes.len() - 1)
    }

    /// Times the fabric was given to another shared bitstream.
    pub fn switches(&self) -> u64 {
        lock(&self.state).switches
    }

    /// Queues a job in `lane` (a run of shared bitstream `bitstream`, if any); gives it
    /// back if the lane is full or the scheduler closed.
    pub fn submit(&self, lane: LaneId, bitstream: Option<u16>, job: J) -> Result<(), J> {
        let mut s = lock(&self.state);
        if s.closed {
            return Err(job);
        }
        if !Self::has_room(&s, lane) {
            return Err(job);
        }
        Self::enqueue(&mut s, lane, (Work::Job(job), bitstream));
        self.dispatch(&mut s);
        Ok(())
    }

    fn wait_for_turn(
        &self,
        lane: LaneId,
        bitstream: Option<u16>,
        stop: &AtomicBool,
    ) -> Result<Token<'_>, NoTurn> {
        let mut s = lock(&self.state);
        let id = loop {
            if s.closed || stop.load(Ordering::Acquire) {
                return Err(NoTurn::Stopped);
            }
            let id = s.next_turn;
            if Self::has_room(&s, lane) {
                Self::enqueue(&mut s, lane, (Work::Turn(id), bitstream));
                s.next_turn += 1;
                break id;
            }
            // The lane is full (more turns than a tenant's max_inflight): wait.
            s = self.wait_turn(s);
        };
        self.dispatch(&mut s);
        loop {
            if let Some(i) = s.granted.iter().position(|&g| g == id) {
                s.granted.swap_remove(i);
                return Ok(Token {
                    sched: self,
                    lane,
                    bitstream,
                    since: Instant::now(),
                });
            }
            if s.closed || stop.load(Ordering::Acquire) {
                let l = &mut s.lanes[lane.0];
                if let Some(i) = l
                    .queue
                    .iter()
                    .position(|w| matches!(w.0, Work::Turn(t) if t == id))
                {
                    let _ = l.queue.remove(i);
                }
                return Err(NoTurn::Stopped);
            }
            s = self.wait_turn(s);
        }
    }

    fn wait_turn<'a>(&self, s: MutexGuard<'a, State<J>>) -> MutexGuard<'a, State<J>> {
        // Timed, so a stop flag set by someone who cannot reach this condvar is seen.
        match self.turns.wait_timeout(s, Duration::from_millis(200)) {
            Ok((g, _)) => g,
            Err(p) => p.into_inner().0,
        }
    }

    /// The next job for an engine thread, with its token; `None` once closed and
    /// drained.
    pub fn next_job(&self) -> Option<(J, Token<'_>)> {
        let mut s = lock(&self.state);
        loop {
            if let Some((lane, bitstream, job)) = s.ready.pop_front() {
                return Some((
                    job,
                    Token {
                        sched: self,
                        lane: LaneId(lane),
                        bitstream,
                        since: Instant::now(),
                    },
                ));
            }
            if s.closed && s.lanes.iter().all(|l| l.queue.is_empty()) {
                return None;
            }
            s = match self.jobs.wait(s) {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
        }
    }

    /// Takes no more work; what is queued still runs.
    pub fn close(&self) {
        lock(&self.state).closed = true;
        self.jobs.notify_all();
        self.turns.notify_all();
    }

    /// Whether `lane` can take an item without growing.
    fn has_room(s: &State<J>, lane: LaneId) -> bool {
        let q = &s.lanes[lane.0].queue;
        q.len() < q.capacity().max(1)
    }

    fn enqueue(s: &mut State<J>, lane: LaneId, w: Item<J>) {
        let clock = s.clock;
        let l = &mut s.lanes[lane.0];
        if l.idle() {
            // Back after a pause: no credit for the time away.
            l.vt = l.vt.max(clock);
        }
        l.queue.push_back(w);
    }

    /// Hands free tokens to the waiting lanes, least virtual time first among the
    /// runs that may go now.
    fn dispatch(&self, s: &mut State<J>) {
        while s.free > 0 {
            let now = Instant::now();
            // What the heads of the lanes want: the fabric's bitstream, or another.
            let (mut want_cur, mut want_other) = (false, false);
            for l in &s.lanes {
                if let Some((_, Some(b))) = l.queue.front() {
                    if Some(*b) == s.cur {
                        want_cur = true;
                    } else {
                        want_other = true;
                    }
                }
            }
            let expired = now >= s.slice_end;
            let (cur, running_shared) = (s.cur, s.running_shared);
            let may_go = |b: Option<u16>| match b {
                None => true,
                // The slice is over and another bitstream waits: let these drain.
                Some(b) if Some(b) == cur => !(expired && want_other),
                // A switch: once the fabric's runs are done, and its slice is over or
                // nobody wants it.
                Some(_) => running_shared == 0 && (expired || !want_cur),
            };
            let Some(i) = s
                .lanes
                .iter()
                .enumerate()
                .filter(|(_, l)| l.queue.front().is_some_and(|(_, b)| may_go(*b)))
                .min_by_key(|(_, l)| l.vt)
                .map(|(i, _)| i)
            else {
                return;
            };
            let l = &mut s.lanes[i];
            let Some((w, bitstream)) = l.queue.pop_front() else {
                return;
            };
            let vt = l.vt;
            if let Some(b) = bitstream {
                if s.cur != Some(b) {
                    s.cur = Some(b);
                    s.slice_end = now + self.min_slice;
                    s.switching = true;
                    s.switches += 1;
                }
                s.running_shared += 1;
            }
            let l = &mut s.lanes[i];
            s.clock = vt;
            let est = l.est_ns;
            l.charge(est);
            l.running += 1;
            s.free -= 1;
            match w {
                Work::Job(j) => {
                    s.ready.push_back((i, bitstream, j));
                    self.jobs.notify_one();
                }
                Work::Turn(id) => {
                    s.granted.push(id);
                    self.turns.notify_all();
                }
            }
        }
    }

    fn give_back(&self, lane: LaneId, bitstream: Option<u16>, ran: Duration) {
        let mut s = lock(&self.state);
        s.free += 1;
        if bitstream.is_some() {
            s.running_shared = s.running_shared.saturating_sub(1);
            if s.switching && bitstream == s.cur {
                // The first run on the new bitstream is over: it is loaded now.
                s.switching = false;
                s.slice_end = Instant::now() + self.min_slice;
            }
        }
        let l = &mut s.lanes[lane.0];
        l.running = l.running.saturating_sub(1);
        let ns = u64::try_from(ran.as_nanos()).unwrap_or(u64::MAX);
        // The up-front charge was the old mean: charge the difference, then update
        // the mean (over about the last eight runs).
        if ns > l.est_ns {
            l.charge(ns - l.est_ns);
        } else {
            let back = u128::from(l.est_ns - ns) * SCALE / l.weight;
            l.vt = l.vt.saturating_sub(back);
        }
        l.est_ns = l.est_ns - l.est_ns / 8 + ns / 8;
        self.dispatch(&mut s);
        // A turn waiting for room in its lane may go in now.
        self.turns.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tenant::Policy;

    fn tenant(name: &str, weight: u32) -> Arc<Tenant> {
        Tenant::new(
            name,
            Policy {
                weight,
                max_inflight: 4096,
                ..Policy::default()
            },
        )
    }

    /// Dispatches with one token, each job "running" `cost(tenant)` ns, and returns the
    /// order tenants were served in.
    fn order(sched: &Scheduler<&'static str>, n: usize) -> Vec<&'static str> {
        (0..n)
            .map(|_| {
                let (j, t) = sched.next_job().unwrap();
                std::mem::forget(t);
                let lane = {
                    let s = lock(&sched.state);
                    s.lanes.iter().position(|l| l.running == 1).unwrap()
                };
                let bitstream = j.strip_prefix("bs").and_then(|b| b[..1].parse().ok());
                let ms = if j == "long" { 100 } else { 1 };
                sched.give_back(LaneId(lane), bitstream, Duration::from_millis(ms));
                j
            })
            .collect()
    }

    #[test]
    fn a_flooding_tenant_delays_another_by_at_most_the_run_in_flight() {
        let sched = Scheduler::new(1, Duration::ZERO);
        let (a, b) = (tenant("a", 1), tenant("b", 1));
        let (la, lb) = (sched.lane(&a), sched.lane(&b));
        for _ in 0..50 {
            sched.submit(la, None, "long").unwrap();
        }
        // a's first run is on the engine; a's runs have been measured a few times.
        let got = order(&sched, 5);
        assert!(got.iter().all(|j| *j == "long"));
        sched.submit(lb, None, "short").unwrap();
        let got = order(&sched, 2);
        assert_eq!(got, ["long", "short"], "b waits only for the run in flight");
    }

    #[test]
    fn busy_tenants_share_engine_time_by_weight() {
        let sched = Scheduler::new(1, Duration::ZERO);
        let (a, b) = (tenant("a", 1), tenant("b", 3));
        let (la, lb) = (sched.lane(&a), sched.lane(&b));
        for _ in 0..400 {
            sched.submit(la, None, "a").unwrap();
            sched.submit(lb, None, "b").unwrap();
        }
        let got = order(&sched, 400);
        let bs = got.iter().filter(|j| **j == "b").count();
        // Equal run lengths: b gets three runs for each of a's.
        assert!((290..=310).contains(&bs), "{bs} of 400 to b");
    }

    #[test]
    fn turns_wait_their_lane_and_stop_when_told() {
        let sched: Scheduler<()> = Scheduler::new(1, Duration::ZERO);
        let (a, b) = (tenant("a", 1), tenant("b", 1));
        let (la, lb) = (sched.lane(&a), sched.lane(&b));
        let never = AtomicBool::new(false);
        let held = sched.turn(la, None, &never).unwrap();
        let stop = AtomicBool::new(true);
        assert_eq!(sched.turn(lb, None, &stop).unwrap_err(), NoTurn::Stopped);
        std::thread::scope(|s| {
            let waiter = s.spawn(|| sched.turn(lb, None, &never).map(drop));
            drop(held);
            assert_eq!(waiter.join().unwrap(), Ok(()));
        });
        sched.close();
        assert_eq!(sched.turn(la, None, &never).unwrap_err(), NoTurn::Stopped);
    }

    #[test]
    fn lanes_of_gone_tenants_are_reused() {
        let sched: Scheduler<()> = Scheduler::new(2, Duration::ZERO);
        for i in 0..100 {
            let t = tenant(&format!("peer{i}"), 1);
            let l = sched.lane(&t);
            let never = AtomicBool::new(false);
            drop(sched.turn(l, None, &never).unwrap());
        }
        assert!(lock(&sched.state).lanes.len() <= 2);
    }

    #[test]
    fn shared_bitstreams_are_batched_and_take_turns() {
        // Two guests each with ten runs of their own bitstream queued, one token.
        let batched = |slice: Duration| {
            let sched = Scheduler::new(1, slice);
            let (a, b) = (tenant("a", 1), tenant("b", 1));
            let (la, lb) = (sched.lane(&a), sched.lane(&b));
            for _ in 0..10 {
                sched.submit(la, Some(0), "bs0").unwrap();
                sched.submit(lb, Some(1), "bs1").unwrap();
            }
            let got = order(&sched, 20);
            (got, sched.switches())
        };
        // A slice longer than the test: each bitstream's runs go in one batch.
        let (got, switches) = batched(Duration::from_secs(3600));
        assert_eq!(got[..10], ["bs0"; 10]);
        assert_eq!(got[10..], ["bs1"; 10]);
        assert_eq!(switches, 2);
        // No slice: the fabric follows the guests' turns, a switch every run.
        let (got, switches) = batched(Duration::ZERO);
        assert_eq!(got, ["bs0", "bs1"].repeat(10));
        assert_eq!(switches, 20);
    }

    #[test]
    fn runs_of_the_loaded_catalogue_go_during_a_slice() {
        let sched = Scheduler::new(1, Duration::from_secs(3600));
        let (a, b) = (tenant("a", 1), tenant("b", 1));
        let (la, lb) = (sched.lane(&a), sched.lane(&b));
        for _ in 0..3 {
            sched.submit(la, Some(0), "bs0").unwrap();
        }
        sched.submit(lb, Some(1), "bs1").unwrap();
        sched.submit(lb, None, "plain").unwrap();
        let got = order(&sched, 5);
        // b's head waits for bs1 behind a's slice; its plain run is behind that in its
        // own lane (a lane is in order), so it goes after the switch.
        assert_eq!(got, ["bs0", "bs0", "bs0", "bs1", "plain"]);
    }
}
