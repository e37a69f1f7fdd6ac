//! The node failure detector: once a second, the leader marks `down` every node whose agent
//! has not heartbeated for `node_down_after_seconds` (failing what ran there with reason
//! `node_lost`), and brings back nodes that are heard from again. One Raft entry per change.

use std::time::{Duration, Instant};

use lattice_core::Command;
use tokio::sync::watch;

use crate::api::App;
use crate::clock;
use crate::forward;

pub async fn run(app: App, mut stop: watch::Receiver<bool>) {
    let timeout = Duration::from_secs(app.cfg.node_down_after_seconds);
    let mut leader_since: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        if *stop.borrow() {
            return;
        }
        if !app.is_leader() {
            leader_since = None;
            continue;
        }
        // A new leader gives every node a full timeout of grace before judging it.
        let since = *leader_since.get_or_insert_with(Instant::now);
        let seen = app.heartbeats.snapshot();
        let now = Instant::now();
        let (down, up) = {
            let d = app.state.read();
            let mut down = Vec::new();
            let mut up = Vec::new();
            for n in d.state.nodes().values() {
                let last = seen.get(&n.id).copied().map_or(since, |t| t.max(since));
                let silent = now.duration_since(last) > timeout;
                if !n.down && silent {
                    down.push(n.id.clone());
                } else if n.down
                    && seen
                        .get(&n.id)
                        .is_some_and(|t| now.duration_since(*t) < timeout)
                {
                    up.push(n.id.clone());
                }
            }
            (down, up)
        };
        if down.is_empty() && up.is_empty() {
            continue;
        }
        // Judge only while holding a quorum: a leader cut off from the majority stops hearing
        // heartbeats (they go to the majority's leader) and would otherwise condemn healthy nodes.
        if app.raft.ensure_linearizable().await.is_err() {
            continue;
        }
        tracing::info!(?down, ?up, "node liveness changed");
        if let Err(e) = forward::propose_as_leader(
            &app,
            Command::SetNodeLiveness {
                now: clock::now(),
                down,
                up,
            },
        )
        .await
        {
            tracing::warn!(error = %e.error, "could not commit node liveness");
        }
    }
}
