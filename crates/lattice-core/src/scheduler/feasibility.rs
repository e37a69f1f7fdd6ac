//! Feasibility: which nodes an allocation may use. Candidates are computed once per distinct
//! constraint set per cycle; taking nodes advances a cursor, and a failed request records an
//! upper bound on what is still available, so later identical requests fail in O(1).

use std::collections::HashMap;

use crate::allocation::Constraints;
use crate::node::{Node, NodeId};
use crate::state::ClusterState;

struct Candidates {
    /// Indices into `Feasibility::free` of free nodes that satisfy the constraints.
    free: Vec<usize>,
    /// Entries before `pos` are all taken.
    pos: usize,
    /// At most this many candidates are still untaken.
    available_at_most: usize,
    /// Nodes in the whole cluster (any state) that satisfy the constraints.
    total: usize,
}

pub struct Feasibility<'a> {
    nodes: Vec<&'a Node>,
    /// Free nodes (ready, empty), in node ID order.
    free: Vec<&'a Node>,
    taken: Vec<bool>,
    by_constraints: HashMap<&'a Constraints, Candidates>,
}

impl<'a> Feasibility<'a> {
    pub fn new(state: &'a ClusterState) -> Self {
        let nodes: Vec<&Node> = state.nodes().values().collect();
        let free: Vec<&Node> = nodes.iter().copied().filter(|n| n.is_free()).collect();
        let taken = vec![false; free.len()];
        Feasibility {
            nodes,
            free,
            taken,
            by_constraints: HashMap::new(),
        }
    }

    fn candidates(&mut self, c: &'a Constraints) -> &mut Candidates {
        let free = &self.free;
        let nodes = &self.nodes;
        self.by_constraints.entry(c).or_insert_with(|| {
            let list: Vec<usize> = (0..free.len()).filter(|&i| free[i].satisfies(c)).collect();
            Candidates {
                available_at_most: list.len(),
                free: list,
                pos: 0,
                total: nodes.iter().filter(|n| n.satisfies(c)).count(),
            }
        })
    }

    /// Number of nodes in the cluster, in any state, that satisfy `c`.
    pub fn matching_total(&mut self, c: &'a Constraints) -> usize {
        self.candidates(c).total
    }

    /// Takes `need` free nodes satisfying `c`, lowest ID first, or none at all.
    pub fn take(&mut self, c: &'a Constraints, need: usize) -> Option<Vec<NodeId>> {
        let taken = std::mem::take(&mut self.taken);
        let result = {
            let cand = self.candidates(c);
            if need > cand.available_at_most {
                None
            } else {
                let mut picked = Vec::with_capacity(need);
                for &i in &cand.free[cand.pos..] {
                    if !taken[i] {
                        picked.push(i);
                        if picked.len() == need {
                            break;
                        }
                    }
                }
                if picked.len() < need {
                    cand.available_at_most = picked.len();
                    None
                } else {
                    Some(picked)
                }
            }
        };
        self.taken = taken;
        let picked = result?;
        for &i in &picked {
            self.taken[i] = true;
        }
        let cand = self.by_constraints.get_mut(c).expect("computed above");
        cand.available_at_most -= need;
        while cand.pos < cand.free.len() && self.taken[cand.free[cand.pos]] {
            cand.pos += 1;
        }
        Some(picked.iter().map(|&i| self.free[i].id.clone()).collect())
    }
}
