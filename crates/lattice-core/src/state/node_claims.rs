//! Apply handlers for node claims of sensitive tenants: claim (immediate or refused, first
//! commit wins), release (the agent wipes the node), and wipe reports (the node returns to
//! the pool on success; a failed wipe leaves it drained, reason `wipe_failed`). Each writes
//! its audit entry in the same apply.

use std::collections::BTreeSet;

use crate::audit::{AuditAction, AuditRecord};
use crate::command::{ClaimSpec, CommandOutcome, CommandResult, ReleaseSpec, WipeReport};
use crate::error::Rejection;
use crate::node::{Node, NodeClaim, NodeId, Wipe};
use crate::state::ClusterState;
use crate::submit::MAX_NODES;
use crate::time::Timestamp;

/// Reason of a node left drained by a failed wipe.
pub const REASON_WIPE_FAILED: &str = "wipe_failed";

/// Why `n` cannot be claimed by `user` of `tenant` (naming the holder of a claimed node).
fn unclaimable(n: &Node, preempt_claimed: bool) -> Option<String> {
    if let Some(c) = &n.claim {
        return Some(format!(
            "node {} is claimed by {} (tenant {})",
            n.id, c.user, c.tenant
        ));
    }
    if n.down {
        return Some(format!("node {} is down", n.id));
    }
    if n.drain {
        return Some(format!("node {} is {}", n.id, n.state));
    }
    if !n.allocations.is_empty() {
        let ids: Vec<String> = n.allocations.iter().map(u64::to_string).collect();
        return Some(format!(
            "node {} runs allocation(s) {} (claims take idle nodes)",
            n.id,
            ids.join(", ")
        ));
    }
    if preempt_claimed {
        return Some(format!(
            "node {} is reserved for a preempting allocation",
            n.id
        ));
    }
    None
}

impl ClusterState {
    /// The nodes `ids` names, refusing an unknown node or one named twice.
    fn named_nodes<'a>(&'a self, ids: &'a [NodeId]) -> Result<Vec<&'a Node>, Rejection> {
        let mut seen = BTreeSet::new();
        ids.iter()
            .map(|id| {
                if !seen.insert(id) {
                    return Err(Rejection::invalid(
                        "node_ids",
                        format!("{id} is named twice"),
                    ));
                }
                self.nodes
                    .get(id)
                    .ok_or_else(|| Rejection::not_found("node", id))
            })
            .collect()
    }

    pub(super) fn claim_nodes(&mut self, now: Timestamp, c: &ClaimSpec) -> CommandResult {
        let t = self
            .tenants
            .get(&c.tenant)
            .ok_or_else(|| Rejection::not_found("tenant", &c.tenant))?;
        if !t.sensitive {
            return Err(Rejection::invalid(
                "tenant",
                format!(
                    "tenant {:?} is not sensitive; only sensitive tenants claim nodes",
                    c.tenant
                ),
            ));
        }
        let chosen: Vec<NodeId> = match (c.count, c.node_ids.is_empty()) {
            (0, true) => return Err(Rejection::invalid("nodes", "name a count or node IDs")),
            (n, true) if i64::from(n) > MAX_NODES => {
                return Err(Rejection::invalid(
                    "nodes",
                    format!("{n} is more than {MAX_NODES}"),
                ))
            }
            (n, true) => {
                let free: Vec<NodeId> = self
                    .nodes
                    .values()
                    .filter(|n| unclaimable(n, self.claims.contains_key(&n.id)).is_none())
                    .take(n as usize)
                    .map(|n| n.id.clone())
                    .collect();
                if free.len() < n as usize {
                    let held: Vec<String> = self
                        .nodes
                        .values()
                        .filter_map(|n| n.claim.as_ref().map(|cl| (n, cl)))
                        .take(10)
                        .map(|(n, cl)| format!("{} by {} (tenant {})", n.id, cl.user, cl.tenant))
                        .collect();
                    let mut msg = format!(
                        "only {} of the {n} nodes asked for are idle and unclaimed",
                        free.len()
                    );
                    if !held.is_empty() {
                        msg.push_str(&format!("; claimed: {}", held.join(", ")));
                    }
                    return Err(Rejection::conflict(msg));
                }
                free
            }
            (0, false) => {
                let mut problems = Vec::new();
                for n in self.named_nodes(&c.node_ids)? {
                    if let Some(why) = unclaimable(n, self.claims.contains_key(&n.id)) {
                        problems.push(why);
                    }
                }
                if !problems.is_empty() {
                    return Err(Rejection::conflict(problems.join("; ")));
                }
                c.node_ids.clone()
            }
            _ => {
                return Err(Rejection::invalid(
                    "nodes",
                    "name a count or node IDs, not both",
                ))
            }
        };
        let revision = self.revision;
        for id in &chosen {
            let n = self.nodes.get_mut(id).expect("checked above");
            n.claim = Some(NodeClaim {
                tenant: c.tenant.clone(),
                user: c.user.clone(),
                since: now,
                by: c.by.clone(),
                wipe: None,
            });
            super::scratch::touch(n, revision, &mut self.scratch.work_changed);
        }
        self.audit(&AuditRecord {
            tenant: c.tenant.clone(),
            user: c.user.clone(),
            action: AuditAction::NodeClaimed,
            allocation: None,
            nodes: chosen.clone(),
            detail: match &c.by {
                Some(by) => format!("claimed by {by} for {}", c.user),
                None => String::new(),
            },
        });
        Ok(CommandOutcome::Nodes(
            chosen.iter().map(|id| self.nodes[id].clone()).collect(),
        ))
    }

    pub(super) fn release_nodes(&mut self, now: Timestamp, r: &ReleaseSpec) -> CommandResult {
        let targets: Vec<NodeId> = if r.node_ids.is_empty() {
            let mine: Vec<NodeId> = self
                .nodes
                .values()
                .filter(|n| {
                    n.claim.as_ref().is_some_and(|c| {
                        c.tenant == r.tenant && c.user == r.user && c.wipe.is_none()
                    })
                })
                .map(|n| n.id.clone())
                .collect();
            if mine.is_empty() {
                return Err(Rejection::conflict(format!(
                    "{} holds no claimed node of tenant {}",
                    r.user, r.tenant
                )));
            }
            mine
        } else {
            r.node_ids.clone()
        };
        let mut problems = Vec::new();
        for n in self.named_nodes(&targets)? {
            let id = &n.id;
            let Some(c) = &n.claim else {
                problems.push(format!("node {id} is not claimed"));
                continue;
            };
            if c.tenant != r.tenant {
                problems.push(format!("node {id} is claimed for tenant {}", c.tenant));
            } else if c.user != r.user && !r.force {
                problems.push(format!(
                    "node {id} is claimed by {}, not {}",
                    c.user, r.user
                ));
            } else if c.wipe.is_some() {
                problems.push(format!("node {id} is already being released"));
            } else if !n.allocations.is_empty() {
                let ids: Vec<String> = n.allocations.iter().map(u64::to_string).collect();
                problems.push(format!(
                    "node {id} still runs allocation(s) {}; cancel them or let them end first",
                    ids.join(", ")
                ));
            }
        }
        if !problems.is_empty() {
            return Err(Rejection::conflict(problems.join("; ")));
        }
        let revision = self.revision;
        let mut holders = BTreeSet::new();
        for id in &targets {
            let n = self.nodes.get_mut(id).expect("checked above");
            let c = n.claim.as_mut().expect("checked above");
            holders.insert(c.user.clone());
            c.wipe = Some(Wipe {
                id: revision,
                requested_at: now,
                requested_by: r.by.clone(),
            });
            super::scratch::touch(n, revision, &mut self.scratch.work_changed);
        }
        for user in holders {
            let nodes: Vec<NodeId> = targets
                .iter()
                .filter(|id| {
                    self.nodes[*id]
                        .claim
                        .as_ref()
                        .is_some_and(|c| c.user == user)
                })
                .cloned()
                .collect();
            self.audit(&AuditRecord {
                tenant: r.tenant.clone(),
                user: user.clone(),
                action: AuditAction::NodeReleased,
                allocation: None,
                nodes,
                detail: if r.by == user {
                    "wipe requested".into()
                } else {
                    format!("released by {}; wipe requested", r.by)
                },
            });
        }
        Ok(CommandOutcome::Nodes(
            targets.iter().map(|id| self.nodes[id].clone()).collect(),
        ))
    }

    /// Applies wipe reports; stale or duplicate ones (no such wipe pending) are ignored.
    pub(super) fn report_wipes(&mut self, reports: &[WipeReport]) -> CommandOutcome {
        let (mut applied, mut ignored) = (0, 0);
        let revision = self.revision;
        for w in reports {
            let Some(n) = self.nodes.get_mut(&w.node_id) else {
                ignored += 1;
                continue;
            };
            let Some(c) = n
                .claim
                .take_if(|c| c.wipe.as_ref().is_some_and(|x| x.id == w.wipe_id))
            else {
                ignored += 1;
                continue;
            };
            applied += 1;
            let detail: String = w.detail.chars().take(500).collect();
            let action = if w.success {
                AuditAction::NodeWiped
            } else {
                n.drain = true;
                // The wipe's own words are in the audit entry.
                n.state_reason = Some(REASON_WIPE_FAILED.to_string());
                AuditAction::WipeFailed
            };
            super::scratch::touch(n, revision, &mut self.scratch.work_changed);
            n.refresh_state();
            self.audit(&AuditRecord {
                tenant: c.tenant,
                user: c.user,
                action,
                allocation: None,
                nodes: vec![w.node_id.clone()],
                detail,
            });
        }
        CommandOutcome::Reports {
            applied,
            ignored,
            checkpoints: Vec::new(),
        }
    }
}
