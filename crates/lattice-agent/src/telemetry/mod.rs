//! Per-node telemetry pushed to a Prometheus remote-write receiver (VictoriaMetrics,
//! Prometheus, ...). Every `prod_interval_seconds` a collection task measures the host and the
//! running ranks' process groups ([`Collector`]), encodes the samples, all stamped with the
//! collection time, and appends them to a bounded queue; a send task pushes the queue oldest
//! first, merging a backlog into few requests, and backs off (exponentially, with jitter)
//! while the endpoint fails. Nothing is lost to an outage shorter than the queue; beyond it the
//! oldest samples are dropped and counted. See docs/telemetry.md.
//!
//! Modules: `config` (the `telemetry:` section), `series` (the names of every pushed series),
//! the collectors `cpu`, `memory`, `gpu`, `net`, `disk`, `groups` (pure parsers of kernel
//! files, tested on snapshots of a real machine) and `collect` (which runs them),
//! `remote_write` (protobuf, snappy, HTTP) and `queue`.

mod collect;
mod config;
mod cpu;
mod disk;
mod gpu;
mod groups;
mod memory;
mod net;
mod queue;
mod remote_write;
mod series;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lattice_core::NodeId;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

pub use collect::{Collector, Sources};
pub use config::{BasicAuth, TelemetryConfig};
pub use gpu::GpuCollector;
pub use remote_write::{compress, encode, PushError, Pusher, WriteRequest};
pub use series::{Batch, ALL as SERIES};

// What a collection needs to know of running ranks (public for the cost benchmark).
pub use crate::ranks::{Group, RunningGroup};
pub use crate::reconcile::RankKey;

use crate::error::AgentError;
use crate::metrics::AgentMetrics;
use crate::ranks::Ranks;
use crate::wait::raised;
use queue::{Queue, QueuedBatch};

/// Largest merged request when a backlog is sent.
const MAX_SAMPLES_PER_REQUEST: usize = 20_000;
/// First retry delay; it doubles per failure up to [`max_backoff`].
const BACKOFF_BASE: Duration = Duration::from_secs(1);
/// How long the final flush at shutdown may take.
const FINAL_FLUSH: Duration = Duration::from_secs(2);

/// Longest retry delay: the interval, but at least 30 s.
fn max_backoff(interval: Duration) -> Duration {
    interval.max(Duration::from_secs(30))
}

/// Delay before retry number `failures` (1-based), with `jitter` in [0, 1) spreading it by
/// ±20% so that many agents do not return in step after an outage.
fn backoff(failures: u32, interval: Duration, jitter: f64) -> Duration {
    let exp = BACKOFF_BASE.saturating_mul(1u32 << failures.saturating_sub(1).min(16));
    exp.min(max_backoff(interval))
        .mul_f64(0.8 + 0.4 * jitter.clamp(0.0, 1.0))
}

fn jitter() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(Instant::now().elapsed().as_nanos());
    (h.finish() % 10_000) as f64 / 10_000.0
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

struct Shared {
    queue: Mutex<Queue>,
    queued: Notify,
    metrics: Arc<AgentMetrics>,
}

impl Shared {
    fn queue(&self) -> MutexGuard<'_, Queue> {
        // Every queue operation leaves it consistent, so a poisoned lock is still usable.
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn dropped(&self, n: usize, why: &str) {
        if n > 0 {
            self.metrics.samples_dropped(n);
            tracing::warn!(samples = n, "telemetry samples dropped: {why}");
        }
    }
}

/// Starts telemetry when `cfg` names an endpoint; the tasks end when `stop` is raised (after
/// one short attempt to send what is queued). `None` when telemetry is off.
pub fn spawn(
    cfg: &TelemetryConfig,
    nodes: Vec<NodeId>,
    ranks: Arc<Ranks>,
    metrics: Arc<AgentMetrics>,
    stop: watch::Receiver<bool>,
) -> Result<Option<JoinHandle<()>>, AgentError> {
    cfg.validate()?;
    let pusher = Pusher::new(cfg)
        .map_err(|e| AgentError::Config(format!("telemetry: cannot build the HTTP client: {e}")))?;
    let Some(pusher) = pusher else {
        tracing::info!("telemetry off (no telemetry.tsdb_endpoint)");
        return Ok(None);
    };
    let interval = cfg.interval();
    tracing::info!(
        url = pusher.url(),
        interval_seconds = interval.as_secs(),
        queue_max_samples = cfg.queue_max_samples,
        "pushing telemetry"
    );
    let shared = Arc::new(Shared {
        queue: Mutex::new(Queue::new(cfg.queue_max_samples)),
        queued: Notify::new(),
        metrics,
    });
    let queue_max = cfg.queue_max_samples;
    let collect_stop = stop.clone();
    let shared2 = shared.clone();
    let handle = tokio::spawn(async move {
        let collector = tokio::task::spawn_blocking(move || {
            Collector::new(nodes, Sources::default(), GpuCollector::open())
        });
        let collector = match collector.await {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "telemetry collector failed to start");
                return;
            }
        };
        let collecting = collect_loop(collector, ranks, shared2, interval, queue_max, collect_stop);
        let sending = send_loop(pusher, shared, interval, stop);
        tokio::join!(collecting, sending);
    });
    Ok(Some(handle))
}

async fn collect_loop(
    collector: Collector,
    ranks: Arc<Ranks>,
    shared: Arc<Shared>,
    interval: Duration,
    queue_max: usize,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut collector = Some(collector);
    let mut first = true;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = raised(&mut stop) => break,
        }
        let Some(mut c) = collector.take() else { break };
        let running = ranks.running_groups();
        let timestamp_ms = now_ms();
        let started = Instant::now();
        let done = tokio::task::spawn_blocking(move || {
            let batch = c.collect(&running, timestamp_ms);
            let body = encode(&batch);
            (c, batch.len(), body)
        })
        .await;
        let (c, samples, body) = match done {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(error = %e, "telemetry collection panicked; telemetry stops");
                break;
            }
        };
        collector = Some(c);
        shared
            .metrics
            .collect_finished(started.elapsed().as_secs_f64());
        if samples == 0 {
            continue;
        }
        if first {
            first = false;
            let per_hour = samples as f64 * 3600.0 / interval.as_secs_f64();
            tracing::info!(
                samples_per_collection = samples,
                queue_holds_hours = format!("{:.1}", queue_max as f64 / per_hour),
                "first telemetry collection"
            );
        }
        let (dropped, queued) = {
            let mut q = shared.queue();
            let d = q.push(QueuedBatch {
                timestamp_ms,
                samples,
                body,
            });
            (d, q.samples())
        };
        shared.dropped(dropped, "the queue is full (telemetry.queue_max_samples)");
        shared.metrics.queue_length(queued);
        shared.queued.notify_one();
    }
}

/// Sends queued batches oldest first until the queue is empty; waits `backoff` after a
/// failure. Returns false when `stop` was raised during a wait.
async fn send_loop(
    pusher: Pusher,
    shared: Arc<Shared>,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut failures = 0u32;
    loop {
        tokio::select! {
            _ = shared.queued.notified() => {}
            _ = raised(&mut stop) => break,
        }
        loop {
            let outcome = send_some(&pusher, &shared).await;
            match outcome {
                None => break,
                Some(Ok(())) => {
                    if failures > 0 {
                        tracing::info!(
                            failures,
                            "telemetry endpoint reachable again; sending the backlog"
                        );
                    }
                    failures = 0;
                }
                Some(Err(e)) => {
                    failures += 1;
                    let wait = backoff(failures, interval, jitter());
                    if failures == 1 {
                        tracing::warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "telemetry push failed; keeping samples and retrying");
                    } else {
                        tracing::debug!(error = %e, failures, retry_in_ms = wait.as_millis() as u64, "telemetry push failed again");
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = raised(&mut stop) => break,
                    }
                }
            }
        }
        if *stop.borrow() {
            break;
        }
    }
    // One short, last attempt, so that a clean shutdown loses nothing with a reachable TSDB.
    let _ = tokio::time::timeout(FINAL_FLUSH, async {
        while let Some(Ok(())) = send_some(&pusher, &shared).await {}
    })
    .await;
}

/// Sends the oldest batches as one request. `None` when the queue is empty; a retryable
/// failure puts them back; a refusal drops them (counted).
async fn send_some(pusher: &Pusher, shared: &Shared) -> Option<Result<(), PushError>> {
    let batches = shared.queue().take(MAX_SAMPLES_PER_REQUEST);
    if batches.is_empty() {
        return None;
    }
    let samples: usize = batches.iter().map(|b| b.samples).sum();
    let mut body = Vec::with_capacity(batches.iter().map(|b| b.body.len()).sum());
    for b in &batches {
        body.extend_from_slice(&b.body);
    }
    let started = Instant::now();
    let result = pusher.push(&body).await;
    shared
        .metrics
        .push_finished(started.elapsed().as_secs_f64(), result.is_ok());
    let result = match result {
        Ok(()) => {
            shared.metrics.samples_sent(samples);
            Ok(())
        }
        Err(PushError::Rejected(msg)) => {
            shared.dropped(samples, &format!("the endpoint refused them: {msg}"));
            // The endpoint answered: this is not an outage to back off from.
            Ok(())
        }
        Err(e @ PushError::Retry(_)) => {
            let dropped = shared.queue().put_back(batches);
            shared.dropped(dropped, "the queue is full (telemetry.queue_max_samples)");
            Err(e)
        }
    };
    let queued = shared.queue().samples();
    shared.metrics.queue_length(queued);
    Some(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_with_bounded_jitter() {
        let s = Duration::from_secs;
        assert_eq!(backoff(1, s(1), 0.5), s(1));
        assert_eq!(backoff(2, s(1), 0.5), s(2));
        assert_eq!(backoff(4, s(1), 0.5), s(8));
        assert_eq!(backoff(10, s(1), 0.5), s(30));
        assert_eq!(backoff(1000, s(1), 0.5), s(30));
        assert_eq!(backoff(10, s(120), 0.5), s(120));
        assert_eq!(backoff(1, s(30), 0.0), Duration::from_millis(800));
        assert_eq!(backoff(1, s(30), 1.0), Duration::from_millis(1200));
        let j = jitter();
        assert!((0.0..1.0).contains(&j));
    }
}
