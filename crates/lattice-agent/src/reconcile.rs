//! The agent's decision, as a pure function: given what the control plane wants on this
//! agent's nodes (the assignments of one work answer) and what the agent knows locally,
//! [`reconcile`] returns the [`Action`]s that close the gap. The process layer carries them
//! out; nothing here touches a process, a file or a clock.
//!
//! A rank is one run of an allocation on one node: (allocation, node, run). A requeued
//! allocation's next run on the same node is a new rank, started afresh; the earlier run's
//! finished entry is forgotten once the control plane no longer lists it.
//!
//! Rules, per rank on a node this agent presents:
//! - wanted running, unknown here: [`Action::Start`] (the executor still refuses to start a
//!   rank whose records show it was started before, e.g. by an earlier agent run);
//! - wanted running, running here, and the assignment counts more on-demand checkpoint
//!   requests than the rank was told of: [`Action::Checkpoint`];
//! - wanted stopped and running here (not yet stopping): [`Action::Stop`];
//! - wanted preempted and running here (not yet stopping): [`Action::Preempt`] (checkpoint,
//!   then stop);
//! - running here but absent from the answer: [`Action::Stop`];
//! - wanted stopped or preempted, unknown here: [`Action::Retire`] (the control plane keeps
//!   the node occupied until an exit report says the rank is gone, so one must be sent; it
//!   treats `stopped` like `preempted` while it preempts);
//! - finished here: never run again. Its report is resent ([`Action::Resend`]) if the
//!   control plane still lists the rank after a heartbeat carried it, and the entry is
//!   dropped ([`Action::Forget`]) once the control plane no longer lists it.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use lattice_core::agent::{Assignment, Desired, ExitReport};
use lattice_core::{AllocId, NodeId};

/// One run of an allocation on one node.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RankKey {
    pub allocation_id: AllocId,
    pub node_id: NodeId,
    /// Which run of the allocation (0 first, +1 per preemption).
    pub run: u32,
}

impl RankKey {
    /// The rank of the allocation's first run (run 0) on `node_id`; see [`RankKey::in_run`].
    pub fn new(allocation_id: AllocId, node_id: impl Into<NodeId>) -> Self {
        RankKey {
            allocation_id,
            node_id: node_id.into(),
            run: 0,
        }
    }

    /// The same allocation and node, in run `run`.
    pub fn in_run(self, run: u32) -> Self {
        RankKey { run, ..self }
    }

    pub fn of(a: &Assignment) -> Self {
        RankKey::new(a.allocation_id, a.node_id.clone()).in_run(a.run)
    }

    /// The rank an exit report is about.
    pub fn of_report(r: &ExitReport) -> Self {
        RankKey::new(r.allocation_id, r.node_id.clone()).in_run(r.run)
    }
}

impl fmt::Display for RankKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "allocation {} run {} on {}",
            self.allocation_id, self.run, self.node_id
        )
    }
}

/// What the agent knows about one rank.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LocalState {
    /// A process group runs (started or adopted here); `stopping` once a stop or a preemption
    /// was requested; `checkpoint_requests` is the highest on-demand request counter the rank
    /// was told of (its assignment's counter when it started).
    Running {
        stopping: bool,
        checkpoint_requests: u64,
    },
    /// Gone; `report_pending` while its exit report waits for a heartbeat to carry it.
    Finished { report_pending: bool },
}

/// The agent's side of the comparison.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LocalView {
    /// Nodes this agent presents (and asks the control plane about).
    pub nodes: BTreeSet<NodeId>,
    pub ranks: BTreeMap<RankKey, LocalState>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Launch the rank (or, if its records show an earlier start, recover it instead).
    Start(Box<Assignment>),
    /// SIGTERM its process group, SIGKILL after the grace period, report it stopped.
    Stop(RankKey),
    /// Checkpoint it (if its allocation can be), then stop it as [`Action::Stop`] does and
    /// report it preempted.
    Preempt(RankKey),
    /// Tell a running rank that the on-demand checkpoint request counter is now `requests`.
    Checkpoint { key: RankKey, requests: u64 },
    /// Wanted stopped but not running here: make sure nothing of it survives from an
    /// earlier agent run, then report it gone.
    Retire(RankKey),
    /// Queue its exit report again: the control plane still lists a rank whose report a
    /// heartbeat already carried.
    Resend(RankKey),
    /// Drop a finished, reported rank the control plane no longer lists.
    Forget(RankKey),
}

/// What to do about one listed rank, given its local state.
fn decide(a: &Assignment, key: RankKey, local: Option<&LocalState>) -> Option<Action> {
    use LocalState::{Finished, Running};
    match (a.desired, local) {
        (Desired::Run, None) => Some(Action::Start(Box::new(a.clone()))),
        (Desired::Stop | Desired::Preempt, None) => Some(Action::Retire(key)),
        (
            Desired::Run,
            Some(Running {
                stopping: false,
                checkpoint_requests,
            }),
        ) if a.checkpoint_requests > *checkpoint_requests => Some(Action::Checkpoint {
            key,
            requests: a.checkpoint_requests,
        }),
        (
            Desired::Stop,
            Some(Running {
                stopping: false, ..
            }),
        ) => Some(Action::Stop(key)),
        (
            Desired::Preempt,
            Some(Running {
                stopping: false, ..
            }),
        ) => Some(Action::Preempt(key)),
        (_, Some(Running { .. })) => None,
        (
            _,
            Some(Finished {
                report_pending: true,
            }),
        ) => None,
        (
            _,
            Some(Finished {
                report_pending: false,
            }),
        ) => Some(Action::Resend(key)),
    }
}

/// Decides what to do so that this agent's nodes match `desired`.
pub fn reconcile(desired: &[Assignment], local: &LocalView) -> Vec<Action> {
    let mut actions = Vec::new();
    let mut listed = BTreeSet::new();
    for a in desired {
        if !local.nodes.contains(&a.node_id) {
            continue;
        }
        let key = RankKey::of(a);
        if !listed.insert(key.clone()) {
            continue; // a duplicate line in the answer: the first one decides
        }
        let state = local.ranks.get(&key);
        actions.extend(decide(a, key, state));
    }
    for (key, state) in &local.ranks {
        if listed.contains(key) || !local.nodes.contains(&key.node_id) {
            continue;
        }
        match state {
            LocalState::Running {
                stopping: false, ..
            } => actions.push(Action::Stop(key.clone())),
            LocalState::Running { stopping: true, .. } => {}
            LocalState::Finished {
                report_pending: true,
            } => {}
            LocalState::Finished {
                report_pending: false,
            } => actions.push(Action::Forget(key.clone())),
        }
    }
    actions
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assignment(id: AllocId, node: &str, desired: Desired) -> Assignment {
        Assignment {
            allocation_id: id,
            node_id: node.into(),
            desired,
            rank: 0,
            nodes: vec![node.into()],
            name: format!("job{id}"),
            tenant: "t".into(),
            vcluster: "default".into(),
            user: "u".into(),
            command: Some(vec!["true".into()]),
            script: None,
            env: Default::default(),
            walltime_seconds: 60,
            started_at: None,
            run: 0,
            checkpoint: Default::default(),
            checkpoint_requests: 0,
        }
    }

    fn in_run(mut a: Assignment, run: u32) -> Assignment {
        a.run = run;
        a
    }

    fn view(ranks: &[(AllocId, &str, LocalState)]) -> LocalView {
        LocalView {
            nodes: ["n1", "n2"].iter().map(|s| s.to_string()).collect(),
            ranks: ranks
                .iter()
                .map(|(id, node, s)| (RankKey::new(*id, *node), *s))
                .collect(),
        }
    }

    const RUNNING: LocalState = LocalState::Running {
        stopping: false,
        checkpoint_requests: 0,
    };
    const STOPPING: LocalState = LocalState::Running {
        stopping: true,
        checkpoint_requests: 0,
    };
    const PENDING: LocalState = LocalState::Finished {
        report_pending: true,
    };
    const REPORTED: LocalState = LocalState::Finished {
        report_pending: false,
    };

    #[test]
    fn nothing_wanted_nothing_local() {
        assert_eq!(reconcile(&[], &view(&[])), vec![]);
    }

    #[test]
    fn run_unknown_starts() {
        let a = assignment(1, "n1", Desired::Run);
        assert_eq!(
            reconcile(std::slice::from_ref(&a), &view(&[])),
            vec![Action::Start(Box::new(a))]
        );
    }

    #[test]
    fn run_already_running_does_nothing() {
        let a = assignment(1, "n1", Desired::Run);
        assert_eq!(
            reconcile(std::slice::from_ref(&a), &view(&[(1, "n1", RUNNING)])),
            vec![]
        );
        assert_eq!(reconcile(&[a], &view(&[(1, "n1", STOPPING)])), vec![]);
    }

    #[test]
    fn run_finished_is_never_rerun() {
        let a = assignment(1, "n1", Desired::Run);
        // Report not yet delivered: wait for the heartbeat.
        assert_eq!(
            reconcile(std::slice::from_ref(&a), &view(&[(1, "n1", PENDING)])),
            vec![]
        );
        // Report delivered but still listed: resend the report, never start again.
        assert_eq!(
            reconcile(&[a], &view(&[(1, "n1", REPORTED)])),
            vec![Action::Resend(RankKey::new(1, "n1"))]
        );
    }

    #[test]
    fn stop_running_stops_once() {
        let a = assignment(1, "n1", Desired::Stop);
        assert_eq!(
            reconcile(std::slice::from_ref(&a), &view(&[(1, "n1", RUNNING)])),
            vec![Action::Stop(RankKey::new(1, "n1"))]
        );
        assert_eq!(reconcile(&[a], &view(&[(1, "n1", STOPPING)])), vec![]);
    }

    #[test]
    fn stop_unknown_retires() {
        let a = assignment(7, "n2", Desired::Stop);
        assert_eq!(
            reconcile(&[a], &view(&[])),
            vec![Action::Retire(RankKey::new(7, "n2"))]
        );
    }

    #[test]
    fn stop_finished_waits_or_resends() {
        let a = assignment(1, "n1", Desired::Stop);
        assert_eq!(
            reconcile(std::slice::from_ref(&a), &view(&[(1, "n1", PENDING)])),
            vec![]
        );
        assert_eq!(
            reconcile(&[a], &view(&[(1, "n1", REPORTED)])),
            vec![Action::Resend(RankKey::new(1, "n1"))]
        );
    }

    #[test]
    fn absent_running_is_stopped_unless_already_stopping() {
        let v = view(&[(1, "n1", RUNNING), (2, "n2", STOPPING)]);
        assert_eq!(
            reconcile(&[], &v),
            vec![Action::Stop(RankKey::new(1, "n1"))]
        );
    }

    #[test]
    fn absent_finished_is_forgotten_once_reported() {
        let v = view(&[(1, "n1", PENDING), (2, "n1", REPORTED)]);
        assert_eq!(
            reconcile(&[], &v),
            vec![Action::Forget(RankKey::new(2, "n1"))]
        );
    }

    #[test]
    fn other_nodes_are_ignored() {
        // An assignment for a node this agent does not present, and a local rank on such a
        // node (e.g. left from a configuration with more nodes): neither is touched.
        let a = assignment(1, "elsewhere", Desired::Run);
        let mut v = view(&[]);
        v.ranks.insert(RankKey::new(2, "old-node"), RUNNING);
        assert_eq!(reconcile(&[a], &v), vec![]);
    }

    #[test]
    fn same_allocation_on_two_nodes_is_two_ranks() {
        let a1 = assignment(3, "n1", Desired::Run);
        let a2 = assignment(3, "n2", Desired::Run);
        let v = view(&[(3, "n1", RUNNING)]);
        assert_eq!(
            reconcile(&[a1, a2.clone()], &v),
            vec![Action::Start(Box::new(a2))]
        );
    }

    #[test]
    fn duplicates_in_the_answer_act_once() {
        let a = assignment(1, "n1", Desired::Run);
        let stop = assignment(1, "n1", Desired::Stop);
        assert_eq!(
            reconcile(&[a.clone(), a.clone(), stop], &view(&[])),
            vec![Action::Start(Box::new(a))]
        );
    }

    #[test]
    fn mixed_answer_in_order() {
        let v = view(&[
            (1, "n1", RUNNING),
            (2, "n1", RUNNING),
            (3, "n2", REPORTED),
            (4, "n2", RUNNING),
        ]);
        let desired = vec![
            assignment(1, "n1", Desired::Run),
            assignment(2, "n1", Desired::Stop),
            assignment(5, "n2", Desired::Run),
            assignment(6, "n2", Desired::Stop),
        ];
        assert_eq!(
            reconcile(&desired, &v),
            vec![
                Action::Stop(RankKey::new(2, "n1")),
                Action::Start(Box::new(desired[2].clone())),
                Action::Retire(RankKey::new(6, "n2")),
                Action::Forget(RankKey::new(3, "n2")),
                Action::Stop(RankKey::new(4, "n2")),
            ]
        );
    }

    #[test]
    fn preempt_running_preempts_once() {
        let a = assignment(1, "n1", Desired::Preempt);
        assert_eq!(
            reconcile(std::slice::from_ref(&a), &view(&[(1, "n1", RUNNING)])),
            vec![Action::Preempt(RankKey::new(1, "n1"))]
        );
        // Already stopping (preempting, or stopping for another reason): nothing more, in
        // particular no second checkpoint.
        assert_eq!(reconcile(&[a], &view(&[(1, "n1", STOPPING)])), vec![]);
    }

    #[test]
    fn stop_while_preempting_does_nothing() {
        let a = assignment(1, "n1", Desired::Stop);
        assert_eq!(reconcile(&[a], &view(&[(1, "n1", STOPPING)])), vec![]);
    }

    #[test]
    fn preempt_unknown_retires() {
        let a = assignment(7, "n2", Desired::Preempt);
        assert_eq!(
            reconcile(&[a], &view(&[])),
            vec![Action::Retire(RankKey::new(7, "n2"))]
        );
    }

    #[test]
    fn preempt_finished_waits_or_resends() {
        let a = assignment(1, "n1", Desired::Preempt);
        assert_eq!(
            reconcile(std::slice::from_ref(&a), &view(&[(1, "n1", PENDING)])),
            vec![]
        );
        assert_eq!(
            reconcile(&[a], &view(&[(1, "n1", REPORTED)])),
            vec![Action::Resend(RankKey::new(1, "n1"))]
        );
    }

    #[test]
    fn a_new_run_is_a_new_rank() {
        // Run 0 finished (preempted) and was reported; the control plane lists run 1.
        let next = in_run(assignment(1, "n1", Desired::Run), 1);
        assert_eq!(
            reconcile(std::slice::from_ref(&next), &view(&[(1, "n1", REPORTED)])),
            vec![
                Action::Start(Box::new(next.clone())),
                Action::Forget(RankKey::new(1, "n1")),
            ]
        );
        // Run 0's report still pending: run 1 starts anyway, run 0 is kept until reported.
        assert_eq!(
            reconcile(std::slice::from_ref(&next), &view(&[(1, "n1", PENDING)])),
            vec![Action::Start(Box::new(next.clone()))]
        );
        // Run 1 is known here (running): nothing, and run 0's entry does not confuse it.
        let mut v = view(&[(1, "n1", REPORTED)]);
        v.ranks.insert(RankKey::new(1, "n1").in_run(1), RUNNING);
        assert_eq!(
            reconcile(&[next], &v),
            vec![Action::Forget(RankKey::new(1, "n1"))]
        );
    }

    #[test]
    fn an_old_run_still_running_is_stopped_when_a_new_one_is_listed() {
        let next = in_run(assignment(1, "n1", Desired::Run), 2);
        assert_eq!(
            reconcile(std::slice::from_ref(&next), &view(&[(1, "n1", RUNNING)])),
            vec![
                Action::Start(Box::new(next.clone())),
                Action::Stop(RankKey::new(1, "n1")),
            ]
        );
    }

    #[test]
    fn new_checkpoint_requests_reach_running_ranks() {
        let mut a = assignment(1, "n1", Desired::Run);
        a.checkpoint_requests = 3;
        let told = |n| LocalState::Running {
            stopping: false,
            checkpoint_requests: n,
        };
        assert_eq!(
            reconcile(std::slice::from_ref(&a), &view(&[(1, "n1", told(2))])),
            vec![Action::Checkpoint {
                key: RankKey::new(1, "n1"),
                requests: 3
            }]
        );
        // Already told of it (or of a later one): nothing.
        for n in [3, 4] {
            assert_eq!(
                reconcile(std::slice::from_ref(&a), &view(&[(1, "n1", told(n))])),
                vec![]
            );
        }
        // A stopping rank is not checkpointed on request.
        assert_eq!(
            reconcile(std::slice::from_ref(&a), &view(&[(1, "n1", STOPPING)])),
            vec![]
        );
        // Wanted stopped or preempted: that wins over the request.
        a.desired = Desired::Preempt;
        assert_eq!(
            reconcile(std::slice::from_ref(&a), &view(&[(1, "n1", told(0))])),
            vec![Action::Preempt(RankKey::new(1, "n1"))]
        );
    }

    /// Applying the actions' effects and reconciling again yields nothing new: the decision
    /// converges instead of flapping.
    #[test]
    fn converges_after_effects() {
        let mut asked = assignment(3, "n1", Desired::Run);
        asked.checkpoint_requests = 4;
        let desired = vec![
            assignment(1, "n1", Desired::Run),
            assignment(2, "n2", Desired::Stop),
            asked,
            assignment(4, "n2", Desired::Preempt),
            assignment(5, "n2", Desired::Preempt),
        ];
        let mut v = view(&[(9, "n1", RUNNING), (3, "n1", RUNNING), (4, "n2", RUNNING)]);
        for action in reconcile(&desired, &v) {
            match action {
                Action::Start(a) => {
                    v.ranks.insert(RankKey::of(&a), RUNNING);
                }
                Action::Stop(k) => {
                    v.ranks.insert(k, STOPPING);
                }
                Action::Retire(k) => {
                    v.ranks.insert(k, PENDING);
                }
                Action::Preempt(k) => {
                    v.ranks.insert(k, STOPPING);
                }
                Action::Checkpoint { key, requests } => {
                    v.ranks.insert(
                        key,
                        LocalState::Running {
                            stopping: false,
                            checkpoint_requests: requests,
                        },
                    );
                }
                Action::Resend(_) | Action::Forget(_) => unreachable!("not expected here"),
            }
        }
        assert_eq!(reconcile(&desired, &v), vec![]);
    }
}
