//! The virtual nodes' heartbeats: one request per node naming only that node, carrying its
//! pending reports. The [`ticker`] gives every node its beat once per interval, the N nodes
//! spread evenly over it; the [`reporter`] sends an extra beat for a node as soon as it has
//! new reports (as the real agent's heartbeat loop wakes when a report is queued). A node
//! whose last beat succeeded less than an interval ago skips its regular beat (the real
//! agent resets its timer after each success), so a node that reports often sends no other
//! beats. A node never has two beats in flight: a regular beat due while one is in flight
//! goes out when it ends only if it failed, and reports queued meanwhile go out when it ends.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use lattice_core::agent::HeartbeatRequest;
use tokio::time::Instant;

use super::Ctx;
use crate::ranks::Pending;
use crate::wait;

/// When slot `slot` (node `slot % n` in round `slot / n`) is due, after the ticker's start.
pub fn slot_offset(slot: u64, n: usize, interval: Duration) -> Duration {
    let n = n.max(1) as u128;
    let nanos = interval.as_nanos().saturating_mul(u128::from(slot)) / n;
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

/// Gives each node one heartbeat per interval, spread evenly, until shutdown.
pub async fn ticker(ctx: Arc<Ctx>) {
    let mut shutdown = ctx.shutdown.clone();
    let n = ctx.shared.lock().len();
    let start = Instant::now();
    let mut slot = 0u64;
    loop {
        let at = start + slot_offset(slot, n, ctx.interval);
        let sleep = tokio::time::sleep_until(at);
        tokio::select! {
            () = sleep => {}
            () = wait::raised(&mut shutdown) => return,
        }
        // Every slot due by now (the timer's resolution is coarser than the spacing of
        // 10,000 nodes' beats); whole rounds missed (a stalled process) are skipped.
        let now = Instant::now();
        let behind = now.saturating_duration_since(start + slot_offset(slot, n, ctx.interval));
        let rounds = behind.as_nanos() / ctx.interval.as_nanos().max(1);
        slot += u64::try_from(rounds).unwrap_or(0) * n as u64;
        let beats = ctx.shared.update(|e| {
            let mut beats = Vec::new();
            while start + slot_offset(slot, n, ctx.interval) <= now {
                let idx = u32::try_from(slot % n as u64).unwrap_or(0);
                slot += 1;
                if let Some(p) = e.tick_beat(idx, now, ctx.interval) {
                    beats.push((idx, e.node_id(idx).clone(), p));
                }
            }
            beats
        });
        for (idx, id, pending) in beats {
            spawn_beat(&ctx, idx, id, pending);
        }
    }
}

/// Sends the reports of nodes that queued some at once, until shutdown.
pub async fn reporter(ctx: Arc<Ctx>) {
    let mut shutdown = ctx.shutdown.clone();
    loop {
        tokio::select! {
            () = ctx.shared.reports.notified() => {}
            () = wait::raised(&mut shutdown) => return,
        }
        let beats = ctx.shared.update(|e| {
            let mut beats = Vec::new();
            for idx in e.take_dirty() {
                if let Some(p) = e.begin_beat(idx, true) {
                    beats.push((idx, e.node_id(idx).clone(), p));
                }
            }
            beats
        });
        for (idx, id, pending) in beats {
            spawn_beat(&ctx, idx, id, pending);
        }
    }
}

/// One heartbeat of node `idx` carrying `pending`, in its own task.
fn spawn_beat(ctx: &Arc<Ctx>, idx: u32, id: String, pending: Pending) {
    let ctx = ctx.clone();
    tokio::spawn(async move {
        let mut shutdown = ctx.shutdown.clone();
        let req = HeartbeatRequest {
            nodes: vec![id.clone()],
            reports: pending.reports.clone(),
            checkpoints: pending.checkpoints.clone(),
        };
        let answer = tokio::select! {
            r = async {
                let _slot = ctx.heartbeat_slots.acquire().await;
                ctx.heartbeat(&req).await
            } => r,
            () = wait::raised(&mut shutdown) => {
                // Shutdown delivers what is pending in one last round.
                ctx.shared.update(|e| e.end_beat(idx, None, Instant::now()));
                return;
            }
        };
        ctx.metrics.heartbeat(answer.is_ok(), pending.reports.len());
        match answer {
            Ok(resp) => {
                ctx.shared
                    .update(|e| e.end_beat(idx, Some(&pending), Instant::now()));
                if ctx.heartbeat_failures.swap(0, Ordering::Relaxed) > 0 {
                    tracing::info!("heartbeats answered again");
                }
                if resp.unknown_nodes.contains(&id) {
                    ctx.reregister(idx);
                }
            }
            Err(e) => {
                ctx.shared.update(|e| e.end_beat(idx, None, Instant::now()));
                let failures = ctx.heartbeat_failures.fetch_add(1, Ordering::Relaxed) + 1;
                if failures.is_power_of_two() {
                    tracing::warn!(node = %id, error = %e, failures, "heartbeat failed");
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_spread_the_nodes_evenly_over_the_interval() {
        let i = Duration::from_secs(5);
        assert_eq!(slot_offset(0, 4, i), Duration::ZERO);
        assert_eq!(slot_offset(1, 4, i), Duration::from_millis(1250));
        assert_eq!(slot_offset(3, 4, i), Duration::from_millis(3750));
        // The next round: node 0 again, one interval later.
        assert_eq!(slot_offset(4, 4, i), i);
        assert_eq!(slot_offset(10_000, 10_000, i), i);
        assert_eq!(slot_offset(1, 10_000, i), Duration::from_micros(500));
        // Within any interval, each node gets exactly one slot.
        let n = 7;
        let due = |t: Duration| (0..100u64).filter(|s| slot_offset(*s, n, i) < t).count();
        for round in 0..5u32 {
            assert_eq!(due(i * (round + 1)) - due(i * round), n);
        }
        assert_eq!(slot_offset(3, 0, i), i * 3, "no nodes: no division by zero");
    }
}
