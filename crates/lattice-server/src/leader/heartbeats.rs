//! [`Heartbeats`]: when this member last heard from each node's agent. Kept in memory only:
//! heartbeats are per-node, per-interval traffic that must not go through Raft. A new leader
//! starts with an empty table and gives every node a full `node_down_after_seconds` of grace.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use lattice_core::Timestamp;

use crate::clock;

#[derive(Default)]
pub struct Heartbeats {
    seen: Mutex<HashMap<String, (Instant, Timestamp)>>,
}

impl Heartbeats {
    pub fn seen(&self, nodes: &[String]) {
        let (mono, wall) = (Instant::now(), clock::now());
        let mut m = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        for n in nodes {
            // Known nodes (all but a node's first beat) are updated in place: no copy of the
            // name per heartbeat.
            match m.get_mut(n.as_str()) {
                Some(t) => *t = (mono, wall),
                None => {
                    m.insert(n.clone(), (mono, wall));
                }
            }
        }
    }

    /// Monotonic time of the last heartbeat from `node`.
    pub fn last_seen(&self, node: &str) -> Option<Instant> {
        let m = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        m.get(node).map(|(i, _)| *i)
    }

    /// Wall-clock time of the last heartbeat from `node`.
    pub fn last_seen_at(&self, node: &str) -> Option<Timestamp> {
        let m = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        m.get(node).map(|(_, t)| *t)
    }

    /// A copy of the monotonic table (for one pass of the failure detector).
    pub fn snapshot(&self) -> HashMap<String, Instant> {
        let m = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        m.iter().map(|(k, (i, _))| (k.clone(), *i)).collect()
    }
}
