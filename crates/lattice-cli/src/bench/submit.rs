//! The submission loop: `total` submissions of one request from `clients` concurrent tasks
//! sharing one keep-alive connection pool, each timing its own requests. Every answer is the
//! allocation after its Raft commit, so this is the cost of a committed write. An interrupt
//! stops it between requests.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use lattice_client::{Client, ClientError};
use lattice_core::submit::SubmitRequest;
use lattice_core::AllocId;

use super::interrupt;

/// What one batch of submissions did.
#[derive(Debug, Default)]
pub struct Submitted {
    /// The IDs answered (for an array: its first task's, which is the array's ID).
    pub ids: Vec<AllocId>,
    /// Each successful request's time, in milliseconds.
    pub latencies_ms: Vec<f64>,
    pub errors: usize,
    /// The first error, to name it.
    pub first_error: Option<String>,
    /// A request the server refused as invalid (4xx): every other one would be refused too,
    /// so the batch stopped.
    pub refused: bool,
    /// From the first request sent to the last answer.
    pub seconds: f64,
}

/// Sends `req` `total` times from `clients` concurrent tasks.
pub async fn submit_many(
    client: &Client,
    req: &SubmitRequest,
    clients: usize,
    total: usize,
) -> Submitted {
    let next = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let req = Arc::new(req.clone());
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients.max(1))
        .map(|_| {
            let (client, req, next, stop) =
                (client.clone(), req.clone(), next.clone(), stop.clone());
            tokio::spawn(async move {
                let mut mine = Submitted::default();
                while !stop.load(Ordering::Relaxed)
                    && !interrupt::requested()
                    && next.fetch_add(1, Ordering::Relaxed) < total
                {
                    let t = Instant::now();
                    match client.submit(&req).await {
                        Ok(a) => {
                            mine.latencies_ms.push(t.elapsed().as_secs_f64() * 1000.0);
                            mine.ids.push(a.id);
                        }
                        Err(e) => {
                            if matches!(&e, ClientError::Api { status, .. } if (400..500).contains(status))
                            {
                                mine.refused = true;
                                stop.store(true, Ordering::Relaxed);
                            }
                            mine.errors += 1;
                            mine.first_error.get_or_insert_with(|| e.to_string());
                        }
                    }
                }
                mine
            })
        })
        .collect();
    let mut all = Submitted::default();
    for t in tasks {
        match t.await {
            Ok(mine) => {
                all.ids.extend(mine.ids);
                all.latencies_ms.extend(mine.latencies_ms);
                all.errors += mine.errors;
                all.refused |= mine.refused;
                if all.first_error.is_none() {
                    all.first_error = mine.first_error;
                }
            }
            Err(e) => {
                all.errors += 1;
                all.first_error.get_or_insert_with(|| e.to_string());
            }
        }
    }
    all.seconds = started.elapsed().as_secs_f64();
    all.ids.sort_unstable();
    all
}

/// `n` per `secs`, or 0 when no time passed.
pub fn rate(n: f64, secs: f64) -> f64 {
    if secs > 0.0 {
        n / secs
    } else {
        0.0
    }
}
