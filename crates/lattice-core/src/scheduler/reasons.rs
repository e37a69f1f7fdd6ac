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
pub const REASON_PREEMPTING: &str = "preempting";
pub const REASON_CLAIM: &str = "claim";

/// The detail of a preemptor waiting for `victims` allocations to stop.
pub fn preempting_detail(victims: usize) -> String {
    format!("waiting for {victims} preempted allocation(s) to checkpoint and stop")
}

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
    /// It preempted lower-priority work and waits for its claimed nodes to be released.
    Preempting {
        victims: usize,
    },
    /// A sensitive tenant's allocation waits for nodes its user claimed.
    Claim {
        tenant: &'a str,
        user: &'a str,
        need: usize,
        claimed: usize,
    },
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
            Why::Preempting { .. } => REASON_PREEMPTING,
            Why::Claim { .. } => REASON_CLAIM,
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
            Why::Preempting { victims } => preempting_detail(victims),
            Why::Claim {
                tenant,
                user,
                need,
                claimed,
            } => format!(
                "tenant {tenant} is sensitive: its work runs only on nodes its user claimed; \
                 waiting for {need} idle node(s) claimed by {user} (holds {claimed})"
            ),
        }
    }
}

fn job_ref(state: &ClusterState, id: AllocId) -> String {
    state
        .allocation(id)
        .map_or_else(|| id.to_string(), Allocation::job_ref)
}

/// Writes reasons that changed into the plan. Each distinct [`Why`] of a cycle is interned
/// once (with its detail formatted once); allocations then refer to it by a small index.
pub struct Reasons<'a> {
    state: &'a ClusterState,
    index: FastMap<Why<'a>, u32>,
    table: Vec<(Why<'a>, String)>,
    /// The last one interned: consecutive allocations often wait for the same reason.
    last: Option<u32>,
}

/// No reason to write (the allocation starts, or keeps its reason).
pub const NO_REASON: u32 = u32::MAX;

/// At most this many reason changes go into one plan (one Raft entry). A burst of a million
/// submissions would otherwise put a million reason strings (100+ MB) into one entry; the
/// rest are written by the next cycles (each writes what still differs), oldest first
/// (by submission, then ID).
pub const MAX_REASON_CHANGES: usize = 20_000;

impl<'a> Reasons<'a> {
    pub fn new(state: &'a ClusterState) -> Self {
        Reasons {
            state,
            index: FastMap::default(),
            table: Vec::new(),
            last: None,
        }
    }

    /// The index of `why`, interning it on first sight.
    pub fn intern(&mut self, why: Why<'a>) -> u32 {
        if let Some(i) = self.last.filter(|&i| self.table[i as usize].0 == why) {
            return i;
        }
        if let Some(&i) = self.index.get(&why) {
            self.last = Some(i);
            return i;
        }
        let i = self.table.len() as u32;
        let detail = why.detail(self.state);
        self.table.push((why.clone(), detail));
        self.index.insert(why, i);
        self.last = Some(i);
        i
    }

    /// The reason code and detail to write for an allocation whose current reason and detail
    /// are `had` and that waits for `reason` (an index from [`Reasons::intern`]), if they
    /// differ.
    pub fn change(
        &self,
        had: Option<&str>,
        had_detail: Option<&str>,
        reason: u32,
    ) -> Option<(&'static str, &str)> {
        let (why, detail) = self.table.get(reason as usize)?;
        let code = why.reason();
        if *why == Why::Held && had == Some(REASON_HELD) {
            return None; // keep the detail the hold wrote ("held by alice")
        }
        (had != Some(code) || had_detail != Some(detail.as_str())).then_some((code, detail))
    }

    /// Writes the reason `reason` (an index from [`Reasons::intern`]) for allocation `id`,
    /// whose current reason and detail are `had`, if it changed.
    pub fn note_index(
        &self,
        id: AllocId,
        had: Option<&str>,
        had_detail: Option<&str>,
        reason: u32,
        plan: &mut Plan,
    ) {
        if plan.reasons.len() >= MAX_REASON_CHANGES {
            return;
        }
        if let Some((code, detail)) = self.change(had, had_detail, reason) {
            plan.reasons
                .push((id, code.to_string(), Some(detail.to_string())));
        }
    }

    pub fn note(&mut self, a: &Allocation, why: Why<'a>, plan: &mut Plan) {
        let i = self.intern(why);
        let (had, detail) = (a.reason.as_deref(), a.reason_detail.as_deref());
        self.note_index(a.id, had, detail, i, plan);
    }
}
