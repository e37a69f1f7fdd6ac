//! Why a pending allocation waits ([`Why`]), as a `reason` code and a `reason_detail` sentence,
//! and [`Reasons`], which writes only changes into the plan. Details depend only on stable
//! facts (counts, IDs, limits), never on the time, so an unchanged queue gives an empty plan;
//! each distinct detail is formatted once per cycle.

use crate::allocation::{AllocId, Allocation};
use crate::dependency::DepKind;
use crate::scheduler::cycle::FastMap;
use crate::scheduler::Plan;
use crate::state::ClusterState;

pub const REASON_PRIORITY: &str = "priority";
pub const REASON_RESOURCES: &str = "resources";
pub const REASON_UNSATISFIABLE: &str = "unsatisfiable";
pub const REASON_QUOTA: &str = "quota";
pub const REASON_DEPENDENCY: &str = "dependency";
pub const REASON_HELD: &str = "held";
pub const REASON_ARRAY_LIMIT: &str = "array_limit";

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Why<'a> {
    /// Fewer matching nodes are free than it needs.
    Resources {
        need: usize,
        exist: usize,
    },
    /// Fewer matching nodes exist in the vCluster than it needs.
    Unsatisfiable {
        need: usize,
        exist: usize,
        vcluster: &'a str,
    },
    /// It could start, but that would delay the reservation of `head` (backfill), or `head`
    /// is ahead of it in a FIFO vCluster.
    Priority {
        head: AllocId,
        fifo: bool,
    },
    /// Its tenant is at a quota.
    Quota {
        tenant: &'a str,
        quota: &'static str,
        limit: u32,
    },
    /// Its array already runs as many elements as its `%` cap.
    ArrayLimit {
        array: AllocId,
        cap: u32,
    },
    /// A dependency is not met yet.
    Dependency {
        on: AllocId,
        array: bool,
        kind: DepKind,
    },
    Held,
}

impl Why<'_> {
    pub fn reason(&self) -> &'static str {
        match self {
            Why::Resources { .. } => REASON_RESOURCES,
            Why::Unsatisfiable { .. } => REASON_UNSATISFIABLE,
            Why::Priority { .. } => REASON_PRIORITY,
            Why::Quota { .. } => REASON_QUOTA,
            Why::ArrayLimit { .. } => REASON_ARRAY_LIMIT,
            Why::Dependency { .. } => REASON_DEPENDENCY,
            Why::Held => REASON_HELD,
        }
    }

    fn detail(&self, state: &ClusterState) -> String {
        match *self {
            Why::Resources { need, exist } => {
                format!("waiting for {need} free nodes ({exist} match its constraints)")
            }
            Why::Unsatisfiable {
                need,
                exist,
                vcluster,
            } => {
                let pool = if crate::vcluster::is_default(vcluster) {
                    "the cluster".to_string()
                } else {
                    format!("vCluster {vcluster}")
                };
                format!("needs {need} nodes matching its constraints; {pool} has {exist}")
            }
            Why::Priority { head, fifo: false } => format!(
                "starting now would delay the reservation of higher-priority allocation {}",
                job_ref(state, head)
            ),
            Why::Priority { head, fifo: true } => {
                format!("waiting behind allocation {} (fifo)", job_ref(state, head))
            }
            Why::Quota {
                tenant,
                quota,
                limit,
            } => format!("tenant {tenant} is at its {quota} quota of {limit}"),
            Why::ArrayLimit { array, cap } => {
                format!("array {array} already runs {cap} tasks at once (its % limit)")
            }
            Why::Dependency { on, array, kind } => {
                let what = if array {
                    format!("every element of array {on}")
                } else {
                    format!("allocation {}", job_ref(state, on))
                };
                match kind {
                    DepKind::Success => format!("waiting for {what} to complete successfully"),
                    DepKind::Any => format!("waiting for {what} to end"),
                }
            }
            Why::Held => "held".to_string(),
        }
    }
}

fn job_ref(state: &ClusterState, id: AllocId) -> String {
    state
        .allocation(id)
        .map_or_else(|| id.to_string(), Allocation::job_ref)
}

/// Writes reasons that changed into the plan.
pub struct Reasons<'a> {
    state: &'a ClusterState,
    memo: FastMap<Why<'a>, String>,
}

impl<'a> Reasons<'a> {
    pub fn new(state: &'a ClusterState) -> Self {
        Reasons {
            state,
            memo: FastMap::default(),
        }
    }

    pub fn note(&mut self, a: &Allocation, why: Why<'a>, plan: &mut Plan) {
        let reason = why.reason();
        if why == Why::Held && a.reason.as_deref() == Some(REASON_HELD) {
            return; // keep the detail the hold wrote ("held by alice")
        }
        let state = self.state;
        let detail = self.memo.entry(why).or_insert_with_key(|w| w.detail(state));
        if a.reason.as_deref() != Some(reason) || a.reason_detail.as_deref() != Some(detail) {
            plan.reasons
                .push((a.id, reason.to_string(), Some(detail.clone())));
        }
    }
}
