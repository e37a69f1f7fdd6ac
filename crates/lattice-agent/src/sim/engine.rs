//! [`Engine`]: the state of every virtual node and what happens to its ranks, as plain data
//! with no clock, task or network (the caller passes `now`). The work loops feed it the
//! [`Action`]s of the shared, pure `reconcile`; the timer task calls [`Engine::fire`]; the
//! heartbeat loops take each node's pending reports ([`Engine::begin_beat`]) and acknowledge
//! them ([`Engine::end_beat`]).
//!
//! A simulated rank is a table entry and at most one timer: it starts at once, "runs" until
//! its simulated duration (or its walltime) is over and then queues the exit report a real
//! rank would have, with the assignment's `run`. Stop and preemption end it at once;
//! checkpoints (on demand, periodic, before a preemption) succeed at once, with the same
//! bookkeeping as the real agent (`checkpoint::Schedule`). A rank is never started twice for
//! the same (allocation, node, run): a finished one stays in the table (its report resent
//! when asked) until the control plane no longer lists it, exactly like the real agent's
//! table; a control plane never lists a (allocation, node, run) again after that (a
//! requeued allocation gets a new ID, a preempted one a new run).
//!
//! Timers are one binary heap for every rank: an entry is (time, node, allocation, run), and
//! an entry whose rank no longer waits for that time is skipped when it comes up.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};
use std::time::Duration;

use lattice_core::agent::{Assignment, ExitOutcome, ExitReport};
use lattice_core::checkpoint::{CheckpointOutcome, CheckpointReport, CheckpointTrigger};
use lattice_core::{AllocId, NodeId};
use tokio::time::Instant;

use super::job::{self, Ending};
use crate::checkpoint::{preempted_message, Finished, Next, Schedule};
use crate::ranks::Pending;
use crate::reconcile::{Action, LocalState, LocalView, RankKey};
use crate::supervise::{exit_report, Cause};

/// SIGTERM: what a real rank that is stopped, preempted or killed at its walltime usually
/// dies of.
const SIGTERM: i32 = 15;

/// A rank of one node: (allocation, run).
type Slot = (AllocId, u32);

/// A running simulated rank.
#[derive(Clone, Debug)]
struct Run {
    started: Instant,
    ends_at: Instant,
    ending: Ending,
    schedule: Schedule,
    /// The highest on-demand checkpoint request counter the rank was told of.
    requests: u64,
    /// The time of its one live timer entry.
    wake_at: Instant,
}

#[derive(Clone, Debug)]
enum Rank {
    Running(Run),
    Finished(ExitReport),
}

#[derive(Debug)]
struct Node {
    id: NodeId,
    ranks: BTreeMap<Slot, Rank>,
    /// Exit reports not yet delivered (the latest per rank wins).
    pending: BTreeMap<Slot, ExitReport>,
    /// Checkpoint reports not yet delivered, oldest first.
    checkpoints: Vec<CheckpointReport>,
    registered: bool,
    /// A heartbeat of this node is in flight.
    beating: bool,
    /// Reports were queued since the last heartbeat started.
    dirty: bool,
    /// A regular beat came due while one was in flight: it goes out if that one fails.
    owed: bool,
    /// When the last successful heartbeat ended: the next regular one is due an interval
    /// later (as the real agent's heartbeat loop resets its timer after every success).
    beat_ok: Option<Instant>,
}

/// Counts for the agent's metrics and logs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub started: u64,
    pub finished: u64,
    pub running: u64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Wakeups {
    /// Reports were queued: the reporter should look at [`Engine::take_dirty`].
    pub reports: bool,
    /// A timer earlier than the one the timer task waits for was set.
    pub timer: bool,
}

pub struct Engine {
    nodes: Vec<Node>,
    index: HashMap<NodeId, u32>,
    default_duration: Duration,
    timers: BinaryHeap<Reverse<(Instant, u32, AllocId, u32)>>,
    /// The time the timer task sleeps until (`None`: no timer).
    armed: Option<Instant>,
    /// Nodes whose reports should go out now (may repeat; see [`Engine::begin_beat`]).
    dirty: Vec<u32>,
    wakeups: Wakeups,
    stats: Stats,
}

impl Engine {
    /// Virtual nodes `ids` (their index is their position), running jobs for
    /// `default_duration` unless a job says otherwise.
    pub fn new(ids: Vec<NodeId>, default_duration: Duration) -> Self {
        let index = ids
            .iter()
            .enumerate()
            .map(|(i, id)| (id.clone(), u32::try_from(i).unwrap_or(u32::MAX)))
            .collect();
        let nodes = ids
            .into_iter()
            .map(|id| Node {
                id,
                ranks: BTreeMap::new(),
                pending: BTreeMap::new(),
                checkpoints: Vec::new(),
                registered: false,
                beating: false,
                dirty: false,
                owed: false,
                beat_ok: None,
            })
            .collect();
        Engine {
            nodes,
            index,
            default_duration,
            timers: BinaryHeap::new(),
            armed: None,
            dirty: Vec::new(),
            wakeups: Wakeups::default(),
            stats: Stats::default(),
        }
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn node_id(&self, idx: u32) -> &NodeId {
        &self.nodes[idx as usize].id
    }

    pub fn index_of(&self, id: &str) -> Option<u32> {
        self.index.get(id).copied()
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// What happened since the last call that a task must be woken for.
    pub fn take_wakeups(&mut self) -> Wakeups {
        std::mem::take(&mut self.wakeups)
    }

    /// Node `idx` is registered: its heartbeats may start (and carry what it queued).
    pub fn set_registered(&mut self, idx: u32) {
        let n = &mut self.nodes[idx as usize];
        n.registered = true;
        if n.dirty {
            self.dirty.push(idx);
            self.wakeups.reports = true;
        }
    }

    /// The local side of reconciliation for nodes `idxs`.
    pub fn view(&self, idxs: &[u32]) -> LocalView {
        let mut view = LocalView::default();
        for &idx in idxs {
            let n = &self.nodes[idx as usize];
            view.nodes.insert(n.id.clone());
            for (&(allocation_id, run), rank) in &n.ranks {
                let state = match rank {
                    Rank::Running(r) => LocalState::Running {
                        stopping: false,
                        checkpoint_requests: r.requests,
                    },
                    Rank::Finished(_) => LocalState::Finished {
                        report_pending: n.pending.contains_key(&(allocation_id, run)),
                    },
                };
                let key = RankKey::new(allocation_id, n.id.clone()).in_run(run);
                view.ranks.insert(key, state);
            }
        }
        view
    }

    /// Carries out the actions of one reconciliation at `now`.
    pub fn apply(&mut self, actions: Vec<Action>, now: Instant) {
        for action in actions {
            match action {
                Action::Start(a) => self.start(&a, now),
                Action::Stop(key) => self.end(&key, Cause::Stopped),
                Action::Preempt(key) => self.end(&key, Cause::Preempted),
                Action::Checkpoint { key, requests } => self.checkpoint(&key, requests),
                Action::Retire(key) => self.retire(&key),
                Action::Resend(key) => self.resend(&key),
                Action::Forget(key) => self.forget(&key),
            }
        }
    }

    fn locate(&self, key: &RankKey) -> Option<(u32, Slot)> {
        Some((self.index_of(&key.node_id)?, (key.allocation_id, key.run)))
    }

    fn running_mut(&mut self, key: &RankKey) -> Option<(u32, Slot, &mut Run)> {
        let (idx, slot) = self.locate(key)?;
        match self.nodes[idx as usize].ranks.get_mut(&slot) {
            Some(Rank::Running(r)) => Some((idx, slot, r)),
            _ => None,
        }
    }

    fn start(&mut self, a: &Assignment, now: Instant) {
        let key = RankKey::of(a);
        let Some((idx, slot)) = self.locate(&key) else {
            return;
        };
        if self.nodes[idx as usize].ranks.contains_key(&slot) {
            return; // known here (running or finished): never started twice
        }
        self.stats.started += 1;
        let duration = match job::duration_of(&a.env, self.default_duration) {
            Ok(d) => d,
            Err(message) => {
                let report = ExitReport {
                    allocation_id: key.allocation_id,
                    node_id: key.node_id.clone(),
                    outcome: ExitOutcome::LaunchFailed,
                    exit_code: Some(127),
                    signal: None,
                    message: Some(message),
                    run: key.run,
                };
                return self.finish(idx, slot, report);
            }
        };
        let (length, ending) = job::plan(duration, a.walltime_seconds);
        if length.is_zero() {
            return self.finish(idx, slot, ending_report(&key, ending));
        }
        let ends_at = now.checked_add(length).unwrap_or(now);
        let mut run = Run {
            started: now,
            ends_at,
            ending,
            schedule: Schedule::new(&a.checkpoint, a.checkpoint_requests, Duration::ZERO),
            requests: a.checkpoint_requests,
            wake_at: ends_at,
        };
        run.wake_at = next_wake(&run);
        let at = run.wake_at;
        self.stats.running += 1;
        self.nodes[idx as usize]
            .ranks
            .insert(slot, Rank::Running(run));
        self.set_timer(at, idx, slot);
    }

    /// Ends a running rank at once for `cause` (stop or preemption).
    fn end(&mut self, key: &RankKey, cause: Cause) {
        let Some((idx, slot, run)) = self.running_mut(key) else {
            return;
        };
        let mut checkpoint = None;
        let mut message = None;
        if cause == Cause::Preempted {
            // The preemption checkpoint, if the allocation has one, succeeds at once.
            if let Next::Start(trigger) = run.schedule.next(run.requests, true) {
                checkpoint = Some(succeeded(trigger));
            }
            message = Some(preempted_message(checkpoint.as_ref()));
        }
        if let Some(c) = checkpoint {
            self.nodes[idx as usize].checkpoints.push(c.report(key));
        }
        let mut report = exit_report(key, cause, None, Some(SIGTERM));
        if message.is_some() {
            report.message = message;
        }
        self.stats.running -= 1;
        self.finish(idx, slot, report);
    }

    /// On-demand checkpoint requests up to `requests`: one checkpoint, successful at once
    /// (or refused if the allocation is not checkpointable), as the real agent would.
    fn checkpoint(&mut self, key: &RankKey, requests: u64) {
        let Some((idx, _, run)) = self.running_mut(key) else {
            return;
        };
        run.requests = run.requests.max(requests);
        let mut done = Vec::new();
        loop {
            match run.schedule.next(run.requests, false) {
                Next::Start(t) => done.push(succeeded(t)),
                Next::Refuse(t) => done.push(Finished::failed_at_once(
                    t,
                    "the allocation is not checkpointable",
                )),
                Next::Idle | Next::Stop => break,
            }
        }
        let node = &mut self.nodes[idx as usize];
        node.checkpoints.extend(done.iter().map(|f| f.report(key)));
        if !done.is_empty() {
            self.queue_reports(idx);
        }
    }

    fn retire(&mut self, key: &RankKey) {
        let Some((idx, slot)) = self.locate(key) else {
            return;
        };
        if self.nodes[idx as usize].ranks.contains_key(&slot) {
            return;
        }
        let report = ExitReport {
            message: Some("stopped before it started on this node".into()),
            ..exit_report(key, Cause::Stopped, None, None)
        };
        self.finish(idx, slot, report);
    }

    fn resend(&mut self, key: &RankKey) {
        let Some((idx, slot)) = self.locate(key) else {
            return;
        };
        let node = &mut self.nodes[idx as usize];
        if let Some(Rank::Finished(report)) = node.ranks.get(&slot) {
            node.pending.insert(slot, report.clone());
            self.queue_reports(idx);
        }
    }

    fn forget(&mut self, key: &RankKey) {
        let Some((idx, slot)) = self.locate(key) else {
            return;
        };
        let node = &mut self.nodes[idx as usize];
        if matches!(node.ranks.get(&slot), Some(Rank::Finished(_)))
            && !node.pending.contains_key(&slot)
        {
            node.ranks.remove(&slot);
        }
    }

    /// Records that a rank is gone (it was not counted as running) and queues its report.
    fn finish(&mut self, idx: u32, slot: Slot, report: ExitReport) {
        self.stats.finished += 1;
        let node = &mut self.nodes[idx as usize];
        node.pending.insert(slot, report.clone());
        node.ranks.insert(slot, Rank::Finished(report));
        self.queue_reports(idx);
    }

    fn queue_reports(&mut self, idx: u32) {
        let node = &mut self.nodes[idx as usize];
        if !node.dirty {
            node.dirty = true;
            self.dirty.push(idx);
            self.wakeups.reports = true;
        }
    }

    fn set_timer(&mut self, at: Instant, idx: u32, (allocation, run): Slot) {
        self.timers.push(Reverse((at, idx, allocation, run)));
        if self.armed.is_none_or(|armed| at < armed) {
            self.wakeups.timer = true;
        }
    }

    /// When the earliest timer is due, if any.
    pub fn next_timer(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse((at, ..))| *at)
    }

    /// The timer task now sleeps until `at` (`None`: until woken).
    pub fn arm(&mut self, at: Option<Instant>) {
        self.armed = at;
    }

    /// Everything due by `now`: runs that are over, periodic checkpoints.
    pub fn fire(&mut self, now: Instant) {
        while let Some(Reverse((at, idx, allocation, run_no))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            let slot = (allocation, run_no);
            let node = &mut self.nodes[idx as usize];
            let Some(Rank::Running(run)) = node.ranks.get_mut(&slot) else {
                continue;
            };
            if run.wake_at != at {
                continue; // superseded
            }
            let key = RankKey::new(allocation, node.id.clone()).in_run(run_no);
            if at >= run.ends_at {
                let ending = run.ending;
                self.stats.running -= 1;
                self.finish(idx, slot, ending_report(&key, ending));
                continue;
            }
            // A periodic checkpoint is due.
            let elapsed = at.saturating_duration_since(run.started);
            let done = run.schedule.periodic_fired(elapsed, false).map(succeeded);
            run.wake_at = next_wake(run);
            let next = run.wake_at;
            if let Some(f) = done {
                node.checkpoints.push(f.report(&key));
                self.queue_reports(idx);
            }
            self.set_timer(next, idx, slot);
        }
    }

    /// The agent shuts down: every running rank is stopped (reported as the real agent
    /// reports it).
    pub fn stop_all(&mut self) {
        let mut running = Vec::new();
        for (idx, n) in self.nodes.iter().enumerate() {
            for (&(allocation, run), rank) in &n.ranks {
                if matches!(rank, Rank::Running(_)) {
                    let idx = u32::try_from(idx).unwrap_or(u32::MAX);
                    running.push((idx, RankKey::new(allocation, n.id.clone()).in_run(run)));
                }
            }
        }
        for (idx, key) in running {
            self.stats.running -= 1;
            let report = exit_report(&key, Cause::Shutdown, None, Some(SIGTERM));
            self.finish(idx, (key.allocation_id, key.run), report);
        }
    }

    /// Nodes whose reports should go out now; each may appear more than once.
    pub fn take_dirty(&mut self) -> Vec<u32> {
        std::mem::take(&mut self.dirty)
    }

    /// Node `idx`'s regular beat at `now`: none if a heartbeat succeeded less than
    /// `interval` ago (the control plane heard from the node within the interval; a real
    /// agent's timer was reset by that beat), else [`Engine::begin_beat`].
    pub fn tick_beat(&mut self, idx: u32, now: Instant, interval: Duration) -> Option<Pending> {
        let n = &self.nodes[idx as usize];
        if n.beat_ok.is_some_and(|t| now < t + interval) {
            return None;
        }
        self.begin_beat(idx, false)
    }

    /// Starts a heartbeat of node `idx` unless the node is not registered yet or one is in
    /// flight (then a regular beat is owed: it goes out when that one ends if that one
    /// failed, as a real agent's delayed tick does; a success resets the timer instead);
    /// `only_if_dirty`: only when reports (or an owed beat) wait. Returns what it carries.
    pub fn begin_beat(&mut self, idx: u32, only_if_dirty: bool) -> Option<Pending> {
        let n = &mut self.nodes[idx as usize];
        if !n.registered {
            return None;
        }
        if n.beating {
            n.owed |= !only_if_dirty;
            return None;
        }
        if only_if_dirty && !n.dirty {
            return None;
        }
        n.beating = true;
        n.dirty = false;
        Some(Pending {
            reports: n.pending.values().cloned().collect(),
            checkpoints: n.checkpoints.clone(),
        })
    }

    /// A heartbeat of node `idx` ended at `now`: `delivered` is what it carried if it
    /// succeeded. Reports queued meanwhile go out next, and so does a regular beat owed
    /// while a failed one was in flight.
    pub fn end_beat(&mut self, idx: u32, delivered: Option<&Pending>, now: Instant) {
        let n = &mut self.nodes[idx as usize];
        n.beating = false;
        n.dirty |= std::mem::take(&mut n.owed) && delivered.is_none();
        if let Some(d) = delivered {
            n.beat_ok = Some(now);
            for r in &d.reports {
                let slot = (r.allocation_id, r.run);
                if n.pending.get(&slot) == Some(r) {
                    n.pending.remove(&slot);
                }
            }
            for c in &d.checkpoints {
                if let Some(i) = n.checkpoints.iter().position(|q| q == c) {
                    n.checkpoints.remove(i);
                }
            }
        }
        if n.dirty {
            self.dirty.push(idx);
            self.wakeups.reports = true;
        }
    }

    /// Every node with undelivered reports, with them (for the last try at shutdown).
    pub fn all_pending(&self) -> Vec<(NodeId, Pending)> {
        self.nodes
            .iter()
            .filter(|n| !n.pending.is_empty() || !n.checkpoints.is_empty())
            .map(|n| {
                let p = Pending {
                    reports: n.pending.values().cloned().collect(),
                    checkpoints: n.checkpoints.clone(),
                };
                (n.id.clone(), p)
            })
            .collect()
    }

    /// The IDs of `idxs`, minus `unknown` (nodes an answer said the control plane does not
    /// know), with their indexes.
    pub fn known(&self, idxs: &[u32], unknown: &BTreeSet<NodeId>) -> Vec<u32> {
        idxs.iter()
            .copied()
            .filter(|&i| !unknown.contains(&self.nodes[i as usize].id))
            .collect()
    }
}

/// When a running rank next needs the timer: its end or its next periodic checkpoint.
fn next_wake(run: &Run) -> Instant {
    match run.schedule.periodic_due() {
        Some(d) => run
            .started
            .checked_add(d)
            .map_or(run.ends_at, |p| p.min(run.ends_at)),
        None => run.ends_at,
    }
}

/// A checkpoint that succeeded at once.
fn succeeded(trigger: CheckpointTrigger) -> Finished {
    Finished {
        trigger,
        outcome: CheckpointOutcome::Success,
        duration: Duration::ZERO,
        message: None,
    }
}

/// The report of a run that reached its end.
fn ending_report(key: &RankKey, ending: Ending) -> ExitReport {
    match ending {
        Ending::Exits => exit_report(key, Cause::Exited, Some(0), None),
        Ending::Walltime(secs) => exit_report(key, Cause::Walltime(secs), None, Some(SIGTERM)),
    }
}

#[cfg(test)]
#[path = "engine_tests.rs"]
mod tests;
