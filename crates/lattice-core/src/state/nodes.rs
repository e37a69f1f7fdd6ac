//! Apply handlers for nodes: registration, drain/undrain, and the failure detector's verdicts.

use crate::allocation::AllocState;
use crate::command::{CommandOutcome, CommandResult};
use crate::error::Rejection;
use crate::node::{Node, NodeId, NodeRegistration};
use crate::state::ClusterState;
use crate::time::Timestamp;

impl ClusterState {
    pub(super) fn register_node(
        &mut self,
        now: Timestamp,
        reg: &NodeRegistration,
    ) -> CommandResult {
        crate::submit::validate_name("id", &reg.id)?;
        let revision = self.revision;
        let node = match self.nodes.get_mut(&reg.id) {
            Some(n) => {
                // Re-registration (agent restart): resources may change; drain state stays.
                n.hostname = reg.hostname.clone();
                n.cpus = reg.cpus;
                n.memory_bytes = reg.memory_bytes;
                n.gpus = reg.gpus.clone();
                n.features = reg.features.clone();
                n.agent_url = reg.agent_url.clone();
                n.agent_token = reg.agent_token.clone();
                n.registered_at = now;
                n.last_heartbeat = Some(now);
                if n.down && !n.drain {
                    // As when heard from again: "heartbeat lost" no longer applies.
                    n.state_reason = None;
                }
                n.down = false;
                super::scratch::touch(n, revision, &mut self.scratch.work_changed);
                n.refresh_state();
                n.clone()
            }
            None => {
                let n = Node::from_registration(reg.clone(), now, revision);
                self.scratch.work_changed.insert(n.id.clone());
                self.nodes.insert(n.id.clone(), n.clone());
                n
            }
        };
        Ok(CommandOutcome::Node(Box::new(node)))
    }

    pub(super) fn set_drain(
        &mut self,
        _now: Timestamp,
        node_id: &str,
        drain: bool,
        reason: Option<&str>,
    ) -> CommandResult {
        let n = self
            .nodes
            .get_mut(node_id)
            .ok_or_else(|| Rejection::not_found("node", node_id))?;
        n.drain = drain;
        n.state_reason = if drain {
            reason.map(str::to_string)
        } else {
            None
        };
        n.refresh_state();
        Ok(CommandOutcome::Node(Box::new(n.clone())))
    }

    /// Marks `down` nodes down (failing what ran there with reason `node_lost`) and `up`
    /// nodes alive again. Unknown nodes and no-op changes are skipped.
    pub(super) fn set_liveness(
        &mut self,
        now: Timestamp,
        down: &[NodeId],
        up: &[NodeId],
    ) -> CommandOutcome {
        let mut changed = 0;
        let revision = self.revision;
        for id in down {
            let Some(n) = self.nodes.get_mut(id) else {
                continue;
            };
            if n.down {
                continue;
            }
            n.down = true;
            n.last_heartbeat = n.last_heartbeat.or(Some(now));
            n.state_reason = Some("heartbeat lost".into());
            super::scratch::touch(n, revision, &mut self.scratch.work_changed);
            let lost: Vec<_> = std::mem::take(&mut n.allocations).into_iter().collect();
            n.refresh_state();
            changed += 1;
            for aid in lost {
                let Some(a) = self.allocations.get_mut(&aid) else {
                    continue;
                };
                a.node_exit_codes.entry(id.clone()).or_insert(-1);
                if a.state == AllocState::Preempting {
                    // Its rank there is gone with the node; the preemption goes on.
                    self.preempted_rank_gone(aid, now, true);
                } else if a.state == AllocState::Running {
                    self.finish(
                        aid,
                        AllocState::Failed,
                        now,
                        Some("node_lost"),
                        Some(format!("node {id} stopped heartbeating")),
                    );
                    self.touch_nodes_of(aid);
                }
            }
        }
        for id in up {
            let Some(n) = self.nodes.get_mut(id) else {
                continue;
            };
            if !n.down {
                continue;
            }
            n.down = false;
            n.last_heartbeat = Some(now);
            if !n.drain {
                n.state_reason = None;
            }
            super::scratch::touch(n, revision, &mut self.scratch.work_changed);
            n.refresh_state();
            changed += 1;
        }
        CommandOutcome::Liveness { changed }
    }
}
