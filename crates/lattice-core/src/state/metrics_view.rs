//! What the control plane's `/metrics` reads from the replicated state: [`AllocationTotals`]
//! (a derived index of monotonic allocation counters, kept in step by `index.rs`) and
//! [`ClusterState::metrics_view`] (one pass over the small sets: running allocations, the
//! queue's counts per vCluster and tenant (an index), nodes, tenants' fair-share usage; the deficit comes from the scheduler's own
//! [`FairShare`], so the metric is what the scheduler acts on).
//!
//! Everything here is a function of the applied log (plus the `now` a scrape passes in for the
//! fair-share decay), so every member that applied the same entries exports the same values.
//!
//! [`AllocationTotals`] is derived, not serialized: loading a snapshot rebuilds it from the
//! allocation records, and applying commands updates it as states change. An allocation
//! preempted `k` times (`preempt_count`) entered `pending` 1 + k times, `preempting` k times
//! (plus once if its current run is being, or was being, preempted: `preemption` is set),
//! `running` k times plus once if its current run started (`started_at`), and its terminal
//! state once if it has one; its earlier runs' node time is `preempted_node_ms`. The two
//! agree as long as allocations are never deleted; a feature that prunes old allocations
//! must turn these counters into serialized state.

use std::collections::{BTreeMap, BTreeSet};

use crate::allocation::{AllocState, Allocation};
use crate::node::NodeState;
use crate::scheduler::score::FairShare;
use crate::state::ClusterState;
use crate::time::Timestamp;

/// (tenant, vCluster).
pub type TenantVc = (String, String);

/// Monotonic counters per (tenant, vCluster), derived from the allocation records.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AllocationTotals {
    by: BTreeMap<TenantVc, Totals>,
}

/// Counters of one (tenant, vCluster).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// Allocations that ever entered each state, indexed by `AllocState as usize`.
    pub entered: [u64; 6],
    /// Node-milliseconds of allocations that ran and ended (nodes x run time).
    pub ended_node_ms: u64,
}

fn key(a: &Allocation) -> TenantVc {
    (a.tenant.clone(), a.vcluster.clone())
}

fn ran_node_ms(a: &Allocation) -> Option<u64> {
    let (start, end) = (a.started_at?, a.finished_at?);
    Some(end.millis_since(start).saturating_mul(u64::from(a.nodes)))
}

impl AllocationTotals {
    /// An allocation is added (submitted, or loaded from a snapshot): count every state its
    /// record shows it entered.
    pub(super) fn on_insert(&mut self, a: &Allocation) {
        let t = self.by.entry(key(a)).or_default();
        let k = u64::from(a.preempt_count);
        t.entered[AllocState::Pending as usize] += 1 + k;
        t.entered[AllocState::Running as usize] += k;
        t.entered[AllocState::Preempting as usize] += k;
        if a.started_at.is_some() || a.state == AllocState::Running {
            t.entered[AllocState::Running as usize] += 1;
        }
        if a.preemption.is_some() {
            t.entered[AllocState::Preempting as usize] += 1;
        }
        if a.state.is_terminal() {
            t.entered[a.state as usize] += 1;
            t.ended_node_ms += ran_node_ms(a).unwrap_or(0);
        }
        t.ended_node_ms += a.preempted_node_ms;
    }

    /// A run of `a` ended by preemption after `node_ms`.
    pub(super) fn on_preempted(&mut self, a: &Allocation, node_ms: u64) {
        self.by.entry(key(a)).or_default().ended_node_ms += node_ms;
    }

    /// An allocation moved to `to`.
    pub(super) fn on_enter(&mut self, a: &Allocation, to: AllocState) {
        self.by.entry(key(a)).or_default().entered[to as usize] += 1;
    }

    /// An allocation ended (its `finished_at` is set): charge what it ran.
    pub(super) fn on_ended(&mut self, a: &Allocation) {
        if let Some(ms) = ran_node_ms(a) {
            self.by.entry(key(a)).or_default().ended_node_ms += ms;
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&TenantVc, &Totals)> {
        self.by.iter()
    }

    pub fn get(&self, tenant: &str, vcluster: &str) -> Totals {
        self.by
            .get(&(tenant.to_string(), vcluster.to_string()))
            .copied()
            .unwrap_or_default()
    }
}

/// What running allocations of one (tenant, vCluster) hold now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Running {
    pub allocations: u64,
    pub nodes: u64,
}

/// Everything `/metrics` exports from the replicated state, read in one pass.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MetricsView {
    /// Every vCluster, by name.
    pub vclusters: Vec<String>,
    /// Every tenant, by name.
    pub tenants: Vec<String>,
    /// Monotonic counters per (tenant, vCluster) that ever had an allocation.
    pub totals: BTreeMap<TenantVc, Totals>,
    /// Running allocations per (tenant, vCluster); absent when none run.
    pub running: BTreeMap<TenantVc, Running>,
    /// Per vCluster (every one present): pending allocations that are not held.
    pub queued: BTreeMap<String, u64>,
    /// Nodes in each state (every state present).
    pub nodes: BTreeMap<NodeState, u64>,
    /// Per (tenant, vCluster) active there: the tenant's fair-share target minus its actual
    /// share of the vCluster's usage (decayed usage of ended work plus what running work used
    /// so far), as the scheduler's fair-share term uses them. Positive: the tenant got less
    /// than its share.
    pub fair_share_deficit: BTreeMap<TenantVc, f64>,
}

impl MetricsView {
    /// Every (tenant, vCluster) pair that ever had an allocation.
    pub fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.totals.keys().map(|(t, v)| (t.as_str(), v.as_str()))
    }
}

impl ClusterState {
    /// The monotonic allocation counters.
    pub fn allocation_totals(&self) -> &AllocationTotals {
        &self.totals
    }

    /// What `/metrics` exports from the replicated state. Walks running allocations, nodes,
    /// usage records and the pending counts per vCluster and tenant: never the queue itself,
    /// nor every allocation ever submitted.
    pub fn metrics_view(&self, now: Timestamp) -> MetricsView {
        let mut v = MetricsView {
            vclusters: self.vclusters.keys().cloned().collect(),
            tenants: self.tenants.keys().cloned().collect(),
            totals: self.totals.by.clone(),
            queued: self.vclusters.keys().map(|k| (k.clone(), 0)).collect(),
            nodes: NodeState::ALL.into_iter().map(|s| (s, 0)).collect(),
            ..Default::default()
        };
        for a in self
            .running
            .iter()
            .filter_map(|id| self.allocations.get(id))
        {
            let r = v.running.entry(key(a)).or_default();
            r.allocations += 1;
            r.nodes += u64::from(a.nodes);
        }
        for (vc, tenants) in &self.pending_tenants {
            let queued: u64 = tenants.values().map(|c| c.all - c.held).sum();
            *v.queued.entry(vc.clone()).or_default() += queued;
        }
        for n in self.nodes.values() {
            *v.nodes.entry(n.state).or_default() += 1;
        }
        v.fair_share_deficit = self.fair_share_deficits(now);
        v
    }

    /// Target minus actual share per (tenant, vCluster), for the tenants active in each
    /// vCluster (pending or running work there, or usage on record), as the scheduler's
    /// fair-share term sees them: the term is `(1 + target - actual) / 2`.
    fn fair_share_deficits(&self, now: Timestamp) -> BTreeMap<TenantVc, f64> {
        let mut active: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for a in self
            .running
            .iter()
            .filter_map(|id| self.allocations.get(id))
        {
            active
                .entry(a.vcluster.as_str())
                .or_default()
                .insert(a.tenant.as_str());
        }
        for (vc, tenants) in &self.pending_tenants {
            active
                .entry(vc)
                .or_default()
                .extend(tenants.keys().map(String::as_str));
        }
        for (vc, records) in &self.usage {
            active
                .entry(vc)
                .or_default()
                .extend(records.keys().map(String::as_str));
        }
        let mut out = BTreeMap::new();
        for (name, tenants) in active {
            let Some(vc) = self.vclusters.get(name) else {
                continue;
            };
            let pending = self
                .pending_tenants
                .get(name)
                .into_iter()
                .flat_map(|t| t.keys().map(String::as_str));
            let fs = FairShare::for_tenants(self, vc, now, pending);
            for t in tenants {
                out.insert((t.to_string(), name.to_string()), 2.0 * fs.term(t) - 1.0);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::{ExitOutcome, ExitReport};
    use crate::allocation::{AllocationSpec, Constraints};
    use crate::command::Command;
    use crate::node::{GpuInfo, NodeRegistration};
    use crate::scheduler::{Placement, Plan};

    fn at(secs: u64) -> Timestamp {
        Timestamp(1_772_366_400_000 + secs * 1000)
    }

    fn apply(s: &mut ClusterState, cmd: Command) {
        s.apply(&cmd)
            .unwrap_or_else(|e| panic!("{} rejected: {e}", cmd.kind()));
    }

    fn submit(s: &mut ClusterState, tenant: &str, nodes: u32, secs: u64) {
        let spec = AllocationSpec {
            preemptible: true,
            checkpoint: Default::default(),
            name: "job".into(),
            tenant: tenant.into(),
            vcluster: "default".into(),
            user: "alice".into(),
            command: Some(vec!["/bin/true".into()]),
            script: None,
            nodes,
            walltime_seconds: 600,
            priority: 5,
            constraints: Constraints::default(),
            env: Default::default(),
        };
        apply(
            s,
            Command::SubmitAllocation {
                now: at(secs),
                spec,
            },
        );
    }

    fn place(s: &mut ClusterState, id: u64, nodes: &[&str], secs: u64) {
        let plan = Plan {
            placements: vec![Placement {
                allocation: id,
                nodes: nodes.iter().map(|n| n.to_string()).collect(),
            }],
            ..Default::default()
        };
        apply(
            s,
            Command::ApplyPlan {
                now: at(secs),
                plan,
            },
        );
    }

    /// Three nodes; alice runs 1 (2 nodes, completes after 10 s) and 2 (cancelled while
    /// running after 20 s), bob's 3 is cancelled while pending and 4 stays queued.
    fn workload() -> ClusterState {
        let mut s = ClusterState::default();
        for n in ["n1", "n2", "n3"] {
            let registration = NodeRegistration {
                id: n.into(),
                hostname: n.into(),
                cpus: 8,
                memory_bytes: 1 << 30,
                gpus: GpuInfo::default(),
                features: Vec::new(),
                agent_url: format!("http://{n}:1"),
                agent_token: None,
            };
            apply(
                &mut s,
                Command::RegisterNode {
                    now: at(0),
                    registration,
                },
            );
        }
        submit(&mut s, "alice", 2, 1);
        submit(&mut s, "alice", 1, 1);
        submit(&mut s, "bob", 1, 1);
        submit(&mut s, "bob", 3, 1);
        place(&mut s, 1, &["n1", "n2"], 10);
        place(&mut s, 2, &["n3"], 10);
        apply(
            &mut s,
            Command::CancelAllocation {
                now: at(11),
                id: 3,
                by: "bob".into(),
            },
        );
        let reports = ["n1", "n2"]
            .iter()
            .map(|n| ExitReport {
                run: 0,
                allocation_id: 1,
                node_id: n.to_string(),
                outcome: ExitOutcome::Exited,
                exit_code: Some(0),
                signal: None,
                message: None,
            })
            .collect();
        apply(
            &mut s,
            Command::ReportExits {
                now: at(20),
                reports,
            },
        );
        apply(
            &mut s,
            Command::CancelAllocation {
                now: at(30),
                id: 2,
                by: "alice".into(),
            },
        );
        s
    }

    #[test]
    fn totals_count_every_state_entered_and_survive_a_snapshot() {
        let s = workload();
        let alice = s.allocation_totals().get("alice", "default");
        let bob = s.allocation_totals().get("bob", "default");
        // pending, running, completed, failed, cancelled
        assert_eq!(alice.entered, [2, 2, 1, 0, 1, 0]);
        assert_eq!(bob.entered, [2, 0, 0, 0, 1, 0]);
        // 1: 2 nodes x 10 s; 2: 1 node x 20 s.
        assert_eq!(alice.ended_node_ms, 40_000);
        assert_eq!(bob.ended_node_ms, 0);
        let restored: ClusterState =
            bincode::deserialize(&bincode::serialize(&s).unwrap()).unwrap();
        assert_eq!(restored.allocation_totals(), s.allocation_totals());
        assert_eq!(restored.metrics_view(at(40)), s.metrics_view(at(40)));
    }

    #[test]
    fn the_view_counts_running_work_the_queue_and_nodes() {
        let mut s = workload();
        submit(&mut s, "alice", 1, 31);
        place(&mut s, 5, &["n2"], 32);
        let v = s.metrics_view(at(42));
        let key = |t: &str| (t.to_string(), "default".to_string());
        assert_eq!(
            v.running.get(&key("alice")),
            Some(&Running {
                allocations: 1,
                nodes: 1
            })
        );
        assert_eq!(v.running.get(&key("bob")), None);
        assert_eq!(v.queued.get("default"), Some(&1));
        assert_eq!(v.nodes[&NodeState::Ready], 3);
        assert_eq!(v.nodes[&NodeState::Down], 0);
        assert_eq!(v.pairs().count(), 2);
        // alice used everything so far (40 node-s ended, 10 running); bob is owed his half.
        let d = &v.fair_share_deficit;
        assert!((d[&key("bob")] - 0.5).abs() < 1e-9, "{d:?}");
        assert!((d[&key("alice")] + 0.5).abs() < 1e-9, "{d:?}");
    }
}
