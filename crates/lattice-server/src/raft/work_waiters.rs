//! Agents' work long-polls waiting for their nodes' work to change. Each held poll registers
//! one [`Notify`] under each of its nodes; after each applied batch the state machine wakes
//! the polls of the nodes whose work changed ([`lattice_core::ClusterState::take_work_changed`]),
//! and only those. (Waking every held poll at every applied entry made each change cost a
//! look at every node of the cluster: 10,000 nodes' lookups per exit report.)

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use lattice_core::NodeId;
use tokio::sync::Notify;

type Waiters = HashMap<NodeId, Vec<(u64, Arc<Notify>)>>;

#[derive(Default)]
pub struct WorkWaiters {
    by_node: Mutex<Waiters>,
    next_id: AtomicU64,
}

impl WorkWaiters {
    fn lock(&self) -> MutexGuard<'_, Waiters> {
        // Every update is a push or a retain: a poisoned lock is still consistent.
        self.by_node.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a poll of `nodes`; it is woken (a stored permit if it is not waiting yet)
    /// whenever one of them changes, until the returned guard is dropped.
    pub fn watch(self: &Arc<Self>, nodes: &[NodeId]) -> WorkWatch {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let notify = Arc::new(Notify::new());
        let mut by_node = self.lock();
        for n in nodes {
            by_node
                .entry(n.clone())
                .or_default()
                .push((id, notify.clone()));
        }
        WorkWatch {
            waiters: self.clone(),
            id,
            nodes: nodes.to_vec(),
            notify,
        }
    }

    /// Wakes the polls of `nodes`.
    pub fn wake<'a>(&self, nodes: impl IntoIterator<Item = &'a NodeId>) {
        let by_node = self.lock();
        for n in nodes {
            for (_, w) in by_node.get(n).into_iter().flatten() {
                w.notify_one();
            }
        }
    }

    /// Wakes every poll (the whole state was replaced, e.g. by a snapshot).
    pub fn wake_all(&self) {
        for (_, w) in self.lock().values().flatten() {
            w.notify_one();
        }
    }

    /// Polls registered now (for tests).
    pub fn len(&self) -> usize {
        let mut ids: Vec<u64> = self.lock().values().flatten().map(|(id, _)| *id).collect();
        ids.sort_unstable();
        ids.dedup();
        ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A registered poll: [`WorkWatch::changed`] resolves when one of its nodes changed since
/// the registration or the last call.
pub struct WorkWatch {
    waiters: Arc<WorkWaiters>,
    id: u64,
    nodes: Vec<NodeId>,
    notify: Arc<Notify>,
}

impl WorkWatch {
    pub async fn changed(&self) {
        self.notify.notified().await;
    }
}

impl Drop for WorkWatch {
    fn drop(&mut self) {
        let mut by_node = self.waiters.lock();
        for n in &self.nodes {
            if let Some(list) = by_node.get_mut(n) {
                list.retain(|(id, _)| *id != self.id);
                if list.is_empty() {
                    by_node.remove(n);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn ids(v: &[&str]) -> Vec<NodeId> {
        v.iter().map(|s| s.to_string()).collect()
    }

    async fn woken(w: &WorkWatch) -> bool {
        tokio::time::timeout(Duration::from_millis(50), w.changed())
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn only_the_polls_of_changed_nodes_wake() {
        let ws = Arc::new(WorkWaiters::default());
        let a = ws.watch(&ids(&["n1", "n2"]));
        let b = ws.watch(&ids(&["n3"]));
        ws.wake(&ids(&["n2", "n9"]));
        assert!(woken(&a).await, "a change of n2 wakes the poll of n1,n2");
        assert!(!woken(&b).await, "the poll of n3 sleeps on");
        assert!(!woken(&a).await, "one change, one wake-up");
        ws.wake_all();
        assert!(woken(&a).await && woken(&b).await);
    }

    #[tokio::test]
    async fn a_change_before_the_wait_is_not_lost_and_dropping_unregisters() {
        let ws = Arc::new(WorkWaiters::default());
        let a = ws.watch(&ids(&["n1"]));
        let b = ws.watch(&ids(&["n1"]));
        ws.wake(&ids(&["n1"]));
        assert!(woken(&a).await && woken(&b).await);
        assert_eq!(ws.len(), 2);
        drop(a);
        assert_eq!(ws.len(), 1);
        drop(b);
        assert!(ws.is_empty());
    }
}
