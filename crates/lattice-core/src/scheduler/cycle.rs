//! [`Cycle`]: what one scheduling cycle shares across the vClusters it schedules: the node
//! table, when each node is expected to be free, nodes taken in this cycle, and the tenant
//! loads and array counts including this cycle's placements (quotas and caps are global).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use crate::allocation::{AllocId, AllocState, Allocation};
use crate::node::Node;
use crate::scheduler::{Placement, Plan};
use crate::state::ClusterState;
use crate::tenant::{Tenant, TenantLoad};
use crate::time::Timestamp;

/// A fast, non-cryptographic hasher (the Fx hash of rustc) for the scheduler's per-cycle
/// maps keyed by tenant names, constraint sets and small integers. The maps live for one
/// cycle and their keys are validated names and IDs, so hash flooding is not a concern.
#[derive(Default, Clone, Copy)]
pub struct FxHasher(u64);

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes(c.try_into().unwrap_or_default()));
        }
        for &b in chunks.remainder() {
            self.add(u64::from(b));
        }
    }
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }
    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

impl FxHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

pub type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

/// A node that will not take work again (drained, draining or down).
pub const NEVER: u64 = u64::MAX;

/// When a node claimed by a preemptor is expected to be free for others: not in any time a
/// reservation or estimate can use (146 million years), yet the node stays usable, so the
/// sets of usable nodes (and the topology terms of scores) do not change when a claim is
/// made in the middle of a cycle.
pub const CLAIMED: u64 = 1 << 62;

/// Node features of the form `group=NAME` place a node in a topology group (a rack, a
/// switch); multi-node work is packed into as few groups as possible.
pub const GROUP_PREFIX: &str = "group=";

pub struct Cycle<'a> {
    pub state: &'a ClusterState,
    pub now: Timestamp,
    /// Every node, in ID order.
    pub nodes: Vec<&'a Node>,
    /// Topology group of each node (0: no group).
    pub group: Vec<u32>,
    /// Taken by a placement of this cycle.
    pub taken: Vec<bool>,
    /// When each node is expected to be free, in Unix ms: 0 if free now, the expected end
    /// (start + walltime) of what occupies it, the end of work still stopping there, or
    /// [`NEVER`]. Times are not clamped to `now`, so they do not drift with the clock.
    pub avail: Vec<u64>,
    /// Every tenant, and its index in `tenants` and `loads`.
    pub tenants: Vec<&'a Tenant>,
    tenant_index: FastMap<&'a str, u32>,
    /// Tenant loads, including this cycle's placements.
    pub loads: Vec<TenantLoad>,
    /// Whether each tenant has a quota at all (most do not: their checks are skipped).
    pub has_quota: Vec<bool>,
    /// Running elements per array, including this cycle's placements.
    pub array_running: FastMap<AllocId, u32>,
    /// The `%` cap of each array looked up so far (the placement loop asks once per queued
    /// element: a hash lookup instead of the state's B-tree).
    caps: FastMap<AllocId, Option<u32>>,
    /// Whether a pass may stop reading its queue once the rest cannot start, and decide
    /// the rest's reasons by class (`pass.rs`). Off only to test that doing so changes
    /// nothing.
    pub lazy: bool,
    /// Live claims of pending preemptors (held by nobody else: their nodes are `taken` from
    /// the start of the cycle): claimant -> its claimed nodes, ascending.
    pub claims: FastMap<AllocId, Vec<u32>>,
    /// Preemptors started on their claims at the start of the cycle ([`Cycle::start_claims`]).
    pub started: FastMap<AllocId, ()>,
}

impl<'a> Cycle<'a> {
    pub fn new(state: &'a ClusterState, now: Timestamp) -> Self {
        let nodes: Vec<&Node> = state.nodes().values().collect();
        let mut groups: HashMap<&str, u32> = HashMap::new();
        let group = nodes
            .iter()
            .map(|n| {
                n.features
                    .iter()
                    .find_map(|f| f.strip_prefix(GROUP_PREFIX))
                    .map_or(0, |g| {
                        let next = groups.len() as u32 + 1;
                        *groups.entry(g).or_insert(next)
                    })
            })
            .collect();
        let avail = nodes.iter().map(|n| expected_free(state, n)).collect();
        let tenants: Vec<&Tenant> = state.tenants().values().collect();
        let tenant_index = tenants
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.as_str(), i as u32))
            .collect();
        let loads = tenants.iter().map(|t| state.tenant_load(&t.name)).collect();
        let has_quota = tenants
            .iter()
            .map(|t| t.max_nodes.is_some() || t.max_running.is_some())
            .collect();
        let mut cx = Cycle {
            state,
            now,
            taken: vec![false; nodes.len()],
            nodes,
            group,
            avail,
            tenants,
            tenant_index,
            loads,
            has_quota,
            array_running: FastMap::default(),
            caps: FastMap::default(),
            lazy: true,
            claims: FastMap::default(),
            started: FastMap::default(),
        };
        cx.load_claims();
        cx
    }

    /// Takes the nodes of every live claim (`ClusterState::live_claim`).
    fn load_claims(&mut self) {
        let state = self.state;
        if state.claims().is_empty() {
            return;
        }
        let index = |id: &str| {
            self.nodes
                .binary_search_by(|n| n.id.as_str().cmp(id))
                .ok()
                .map(|i| i as u32)
        };
        let mut claims: FastMap<AllocId, Vec<u32>> = FastMap::default();
        let mut seen = std::collections::BTreeSet::new();
        for claimant in state.claims().values() {
            if !seen.insert(*claimant) {
                continue;
            }
            let Some(a) = state.allocation(*claimant) else {
                continue;
            };
            if !state.live_claim(a.id) {
                continue;
            }
            let nodes: Option<Vec<u32>> = a.claimed_nodes.iter().map(|n| index(n)).collect();
            let Some(mut nodes) = nodes else {
                continue;
            };
            nodes.sort_unstable();
            claims.insert(*claimant, nodes);
        }
        for id in claims.keys() {
            if let Some(a) = state.allocation(*id) {
                let w = Work::of(self, a);
                self.count(&w, true);
            }
        }
        for nodes in claims.values() {
            for &i in nodes {
                self.claim_node(i as usize);
            }
        }
        self.claims = claims;
    }

    /// Starts every preemptor whose claimed nodes are all free, before any queue is worked:
    /// as if it had started the moment its victims left, so the rest of the cycle sees it
    /// running exactly as the next cycle will. Its quota and cap were counted since its
    /// claim; one over a quota lowered meanwhile stays waiting.
    pub fn start_claims(&mut self, plan: &mut Plan) {
        let mut ready: Vec<(AllocId, Vec<u32>)> = self
            .claims
            .iter()
            .filter(|(_, nodes)| nodes.iter().all(|&i| self.nodes[i as usize].is_free()))
            .map(|(id, nodes)| (*id, nodes.clone()))
            .collect();
        ready.sort_unstable();
        for (id, nodes) in ready {
            let Some(a) = self.state.allocation(id) else {
                continue;
            };
            let w = Work::of(self, a);
            self.count(&w, false);
            if self.over_limit(&w) {
                self.count(&w, true);
                continue;
            }
            self.place(&w, &nodes);
            self.claims.remove(&id);
            self.started.insert(id, ());
            plan.placements.push(Placement {
                allocation: id,
                nodes: nodes
                    .iter()
                    .map(|&i| self.nodes[i as usize].id.clone())
                    .collect(),
            });
        }
    }

    /// Whether starting `w` now would exceed its tenant's quota or its array's cap.
    fn over_limit(&mut self, w: &Work) -> bool {
        if let Some(t) = w.tenant() {
            if crate::tenant::quota_exceeded(
                self.tenants[t as usize],
                self.loads[t as usize],
                w.nodes,
            )
            .is_some()
            {
                return true;
            }
        }
        let Some(array) = w.array() else {
            return false;
        };
        let cap = self.array_cap(array);
        cap.is_some_and(|c| self.array_running(array) >= c)
    }

    /// Takes a node claimed by a preemptor: no one else is placed there, and reservations
    /// and estimates do not count on it ([`CLAIMED`]; how long the preemptor keeps it is not
    /// known until it starts). The same in the cycle that makes the claim and in later ones,
    /// so an unchanged state gives an unchanged plan.
    pub fn claim_node(&mut self, i: usize) {
        self.taken[i] = true;
        self.avail[i] = CLAIMED;
    }

    /// The index of a tenant in `tenants` and `loads`.
    pub fn tenant_of(&self, name: &str) -> Option<u32> {
        self.tenant_index.get(name).copied()
    }

    /// Whether node `i` can take work now.
    pub fn is_free(&self, i: usize) -> bool {
        !self.taken[i] && self.nodes[i].is_free()
    }

    /// Whether node `i` may take work at some point (not drained, draining or down).
    pub fn usable(&self, i: usize) -> bool {
        self.avail[i] != NEVER
    }

    /// The running-elements cap of `array` (its `%`), if it has one.
    pub fn array_cap(&mut self, array: AllocId) -> Option<u32> {
        let state = self.state;
        *self
            .caps
            .entry(array)
            .or_insert_with(|| state.array(array).and_then(|i| i.max_running))
    }

    pub fn array_running(&mut self, array: AllocId) -> u32 {
        let state = self.state;
        *self
            .array_running
            .entry(array)
            .or_insert_with(|| state.array_running(array))
    }

    /// Records a placement of this cycle.
    pub fn place(&mut self, w: &Work, nodes: &[u32]) {
        let end = self
            .now
            .plus_secs(u64::from(w.walltime_seconds))
            .as_millis();
        for &i in nodes {
            self.taken[i as usize] = true;
            self.avail[i as usize] = end;
        }
        self.count(w, true);
    }

    /// Counts (`add`) or uncounts `w` in its tenant's load and its array's running count.
    /// A preemptor waiting on its claim is counted as if it ran, so that work placed while
    /// it waits cannot use up the quota or cap it needs.
    pub fn count(&mut self, w: &Work, add: bool) {
        if let Some(t) = w.tenant() {
            let load = &mut self.loads[t as usize];
            if add {
                load.nodes += u64::from(w.nodes);
                load.running += 1;
            } else {
                load.nodes = load.nodes.saturating_sub(u64::from(w.nodes));
                load.running = load.running.saturating_sub(1);
            }
        }
        if let Some(array) = w.array() {
            let r = self.array_running(array);
            let r = if add { r + 1 } else { r.saturating_sub(1) };
            self.array_running.insert(array, r);
        }
    }
}

/// What quotas, caps and placement need to know of a pending allocation (24 bytes: the
/// placement loop streams through 100k of these).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Work {
    /// Index of its tenant in the cycle's tenant table, or `u32::MAX`.
    tenant: u32,
    pub nodes: u32,
    pub walltime_seconds: u32,
    /// May be preempted once running (fits in what would be padding).
    pub preemptible: bool,
    /// Its array's ID, or 0 (IDs start at 1).
    array: AllocId,
}

impl Work {
    pub fn of(cx: &Cycle<'_>, a: &Allocation) -> Self {
        Self::with_tenant(cx.tenant_of(&a.tenant), a)
    }

    /// [`Work::of`] with `a`'s tenant index already looked up (`None`: an unknown tenant).
    pub fn with_tenant(tenant: Option<u32>, a: &Allocation) -> Self {
        Work {
            tenant: tenant.unwrap_or(u32::MAX),
            nodes: a.nodes,
            // Walltimes are at most a year (validated), well within u32 seconds.
            walltime_seconds: u32::try_from(a.walltime_seconds).unwrap_or(u32::MAX),
            preemptible: a.preemptible,
            array: a.array_id.unwrap_or(0),
        }
    }

    /// What quotas and caps look at, for work of `nodes` nodes of array `array` (0: none).
    pub fn for_limits(tenant: Option<u32>, nodes: u32, array: AllocId) -> Self {
        Work {
            tenant: tenant.unwrap_or(u32::MAX),
            nodes,
            walltime_seconds: 0,
            preemptible: false,
            array,
        }
    }

    pub fn tenant(&self) -> Option<u32> {
        (self.tenant != u32::MAX).then_some(self.tenant)
    }

    pub fn array(&self) -> Option<AllocId> {
        (self.array != 0).then_some(self.array)
    }
}

/// When `n` is expected to be free (see [`Cycle::avail`]).
fn expected_free(state: &ClusterState, n: &Node) -> u64 {
    if n.down || n.drain || n.claim.is_some() {
        // Claimed nodes are a private pool (`claims.rs`), never the shared one's.
        return NEVER;
    }
    n.allocations
        .iter()
        .filter_map(|id| state.allocation(*id))
        .map(|a| match (a.state, a.started_at, a.finished_at) {
            // A preempting allocation is counted as running to its walltime: its nodes are
            // either claimed (taken) or, if not, free once it stopped, which is not known.
            (AllocState::Running | AllocState::Preempting, Some(s), _) => {
                s.plus_secs(a.walltime_seconds).as_millis()
            }
            (_, _, Some(f)) => f.as_millis(),
            _ => 0,
        })
        .max()
        .unwrap_or(0)
}
