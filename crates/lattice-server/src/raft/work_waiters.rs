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

/// Entries without a poll kept at least (see [`Registry::purge_at`]).
const MIN_PURGE_AT: usize = 1024;

/// The held polls of each node. A node's entry stays when its last poll ends: its agent
/// polls again at once, and re-creating the entry (a copy of the node's name, a list) for
/// every poll of every node cost more than the rest of the registration.
#[derive(Default)]
struct Registry {
    by_node: HashMap<NodeId, Vec<(u64, Arc<Notify>)>>,
    /// Entries are purged of the names no poll waits on once there are this many (twice as
    /// many as the last purge left, at least [`MIN_PURGE_AT`]): bounded memory, whatever names
    /// polls send, at an amortized constant cost.
    purge_at: usize,
}

#[derive(Default)]
pub struct WorkWaiters {
    registry: Mutex<Registry>,
    next_id: AtomicU64,
}

impl WorkWaiters {
    fn lock(&self) -> MutexGuard<'_, Registry> {
        // Every update is a push or a retain: a poisoned lock is still consistent.
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a poll of `nodes`; it is woken (a stored permit if it is not waiting yet)
    /// whenever one of them changes, until the returned guard is dropped.
    pub fn watch(self: &Arc<Self>, nodes: Arc<[NodeId]>) -> WorkWatch {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let notify = Arc::new(Notify::new());
        let mut reg = self.lock();
        for n in nodes.iter() {
            match reg.by_node.get_mut(n) {
                Some(list) => list.push((id, notify.clone())),
                None => {
                    reg.by_node.insert(n.clone(), vec![(id, notify.clone())]);
                }
            }
        }
        if reg.by_node.len() > reg.purge_at.max(MIN_PURGE_AT) {
            reg.by_node.retain(|_, list| !list.is_empty());
            reg.purge_at = 2 * reg.by_node.len();
        }
        WorkWatch {
            waiters: self.clone(),
            id,
            nodes,
            notify,
        }
    }

    /// Wakes the polls of `nodes`.
    pub fn wake<'a>(&self, nodes: impl IntoIterator<Item = &'a NodeId>) {
        let reg = self.lock();
        for n in nodes {
            for (_, w) in reg.by_node.get(n).into_iter().flatten() {
                w.notify_one();
            }
        }
    }

    /// Wakes every poll (the whole state was replaced, e.g. by a snapshot).
    pub fn wake_all(&self) {
        for (_, w) in self.lock().by_node.values().flatten() {
            w.notify_one();
        }
    }

    /// Polls registered now (for tests).
    pub fn len(&self) -> usize {
        let reg = self.lock();
        let mut ids: Vec<u64> = reg.by_node.values().flatten().map(|(id, _)| *id).collect();
        ids.sort_unstable();
        ids.dedup();
        ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Node entries held now, with or without a poll (for tests).
    #[cfg(test)]
    fn entries(&self) -> usize {
        self.lock().by_node.len()
    }
}

/// A registered poll: [`WorkWatch::changed`] resolves when one of its nodes changed since
/// the registration or the last call.
pub struct WorkWatch {
    waiters: Arc<WorkWaiters>,
    id: u64,
    nodes: Arc<[NodeId]>,
    notify: Arc<Notify>,
}

impl WorkWatch {
    pub async fn changed(&self) {
        self.notify.notified().await;
    }
}

impl Drop for WorkWatch {
    fn drop(&mut self) {
        let mut reg = self.waiters.lock();
        for n in self.nodes.iter() {
            if let Some(list) = reg.by_node.get_mut(n) {
                list.retain(|(id, _)| *id != self.id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn ids(v: &[&str]) -> Arc<[NodeId]> {
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
        let a = ws.watch(ids(&["n1", "n2"]));
        let b = ws.watch(ids(&["n3"]));
        ws.wake(ids(&["n2", "n9"]).iter());
        assert!(woken(&a).await, "a change of n2 wakes the poll of n1,n2");
        assert!(!woken(&b).await, "the poll of n3 sleeps on");
        assert!(!woken(&a).await, "one change, one wake-up");
        ws.wake_all();
        assert!(woken(&a).await && woken(&b).await);
    }

    #[tokio::test]
    async fn a_change_before_the_wait_is_not_lost_and_dropping_unregisters() {
        let ws = Arc::new(WorkWaiters::default());
        let a = ws.watch(ids(&["n1"]));
        let b = ws.watch(ids(&["n1"]));
        ws.wake(ids(&["n1"]).iter());
        assert!(woken(&a).await && woken(&b).await);
        assert_eq!(ws.len(), 2);
        drop(a);
        assert_eq!(ws.len(), 1);
        drop(b);
        assert!(ws.is_empty());
    }

    #[tokio::test]
    async fn entries_without_a_poll_stay_bounded_whatever_names_polls_send() {
        let ws = Arc::new(WorkWaiters::default());
        let held = ws.watch(ids(&["kept"]));
        for i in 0..10 * MIN_PURGE_AT {
            drop(ws.watch(ids(&[&format!("gone-{i}")])));
        }
        assert!(ws.entries() <= MIN_PURGE_AT + 1, "{} entries", ws.entries());
        ws.wake(ids(&["kept"]).iter());
        assert!(
            woken(&held).await,
            "a purge keeps the entries that polls wait on"
        );
        assert_eq!(ws.len(), 1);
    }
}
