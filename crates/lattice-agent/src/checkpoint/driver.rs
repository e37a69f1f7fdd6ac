//! [`Driver`]: the checkpoints of one running rank, as its supervisor sees them. It owns the
//! rank's [`Schedule`] and the [`Attempt`] in progress (at most one), starts what is due,
//! and queues every finished checkpoint's report in [`Ranks`] (before the rank's exit report,
//! since the supervisor only returns that after the driver is done).

use std::path::PathBuf;

use lattice_core::checkpoint::{CheckpointSpec, CheckpointTrigger};
use tokio::time::Instant;

use super::attempt::Attempt;
use super::{preempted_message, Finished, Next, Schedule, EXITED_BEFORE_ACK};
use crate::ranks::{Control, End, Ranks};
use crate::reconcile::RankKey;

/// A rank's checkpoint settings, fixed when it starts.
#[derive(Clone, Debug)]
pub struct Setup {
    pub spec: CheckpointSpec,
    /// `LATTICE_CHECKPOINT_ACK` of the rank.
    pub ack: PathBuf,
    /// When the rank started (periodic checkpoints count from it).
    pub started: Instant,
    /// The on-demand request counter when it started (those are not replayed).
    pub requests: u64,
}

pub struct Driver<'a> {
    key: &'a RankKey,
    ranks: &'a Ranks,
    pgid: i32,
    setup: Setup,
    schedule: Schedule,
    current: Option<Attempt>,
    /// The preemption checkpoint, once it ended.
    preemption: Option<Finished>,
}

/// What the supervisor should do after [`Driver::advance`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Keep watching.
    Wait,
    /// The rank is preempted and its checkpoint (if any) is over: stop it.
    Stop,
}

impl<'a> Driver<'a> {
    pub fn new(key: &'a RankKey, ranks: &'a Ranks, pgid: i32, setup: Setup) -> Self {
        let schedule = Schedule::new(&setup.spec, setup.requests, setup.started.elapsed());
        Driver {
            key,
            ranks,
            pgid,
            setup,
            schedule,
            current: None,
            preemption: None,
        }
    }

    fn record(&mut self, f: Finished) {
        tracing::info!(
            key = %self.key,
            trigger = ?f.trigger,
            outcome = f.outcome.as_str(),
            duration_ms = f.duration.as_millis(),
            message = f.message.as_deref().unwrap_or(""),
            "checkpoint ended"
        );
        self.ranks.checkpointed(f.report(self.key));
        if f.trigger == CheckpointTrigger::Preemption {
            self.preemption = Some(f);
        }
    }

    fn start(&mut self, trigger: CheckpointTrigger) {
        match Attempt::start(trigger, &self.setup.spec, &self.setup.ack, self.pgid) {
            Ok(a) => {
                tracing::info!(key = %self.key, ?trigger, signal = %self.setup.spec.signal, "checkpoint started");
                self.current = Some(a);
            }
            Err(f) => self.record(f),
        }
    }

    /// Starts what `control` makes due, if no checkpoint is in progress.
    pub fn advance(&mut self, control: &Control) -> Step {
        let preempting = control.end == Some(End::Preempt);
        while self.current.is_none() {
            match self.schedule.next(control.checkpoint_requests, preempting) {
                Next::Idle => break,
                Next::Start(t) => self.start(t),
                Next::Refuse(t) => self.record(Finished::failed_at_once(
                    t,
                    "the allocation is not checkpointable",
                )),
                Next::Stop => return Step::Stop,
            }
        }
        Step::Wait
    }

    /// Whether a checkpoint waits for its acknowledgement (and should be polled).
    pub fn in_progress(&self) -> bool {
        self.current.is_some()
    }

    /// One look for the acknowledgement of the checkpoint in progress.
    pub fn poll(&mut self) {
        if let Some(f) = self.current.as_mut().and_then(Attempt::poll) {
            self.current = None;
            self.record(f);
        }
    }

    /// When the next periodic checkpoint is due, if any.
    pub fn periodic_at(&self) -> Option<Instant> {
        self.setup
            .started
            .checked_add(self.schedule.periodic_due()?)
    }

    /// The periodic timer fired: start its checkpoint unless one is in progress.
    pub fn periodic(&mut self) {
        let elapsed = self.setup.started.elapsed();
        if let Some(t) = self.schedule.periodic_fired(elapsed, self.in_progress()) {
            self.start(t);
        }
    }

    /// A preempted rank ends before its preemption checkpoint started (one on demand was in
    /// progress): report that checkpoint failed too.
    fn preemption_missed(&mut self, preempting: bool, why: &str) {
        if preempting && self.setup.spec.enabled() && !self.schedule.preemption_started() {
            self.record(Finished::failed_at_once(CheckpointTrigger::Preemption, why));
        }
    }

    /// The process group ended on its own.
    pub fn rank_exited(&mut self, preempting: bool) {
        if let Some(a) = self.current.take() {
            self.record(a.rank_exited());
        }
        self.preemption_missed(preempting, EXITED_BEFORE_ACK);
    }

    /// The rank is being ended for `why` (stop, walltime, shutdown): give up the checkpoint
    /// in progress.
    pub fn interrupt(&mut self, preempting: bool, why: &str) {
        if let Some(a) = self.current.take() {
            self.record(a.interrupted(why));
        }
        self.preemption_missed(preempting, &format!("interrupted: {why}"));
    }

    /// The message of the rank's exit report when it was preempted.
    pub fn preempted_message(&self) -> String {
        if self.setup.spec.enabled() {
            let fallback = Finished::failed_at_once(CheckpointTrigger::Preemption, "not started");
            preempted_message(Some(self.preemption.as_ref().unwrap_or(&fallback)))
        } else {
            preempted_message(None)
        }
    }
}
