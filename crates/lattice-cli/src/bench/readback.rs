//! Reading the bench's own allocations back through the paginated list API (their IDs are
//! known, so the pages start just before the first one and stop after the last), and
//! cancelling what the bench left pending or running.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use lattice_client::{Client, ClientError, ListQuery};
use lattice_core::{AllocId, Allocation};
use tokio::sync::Semaphore;

use super::report::CleanupRow;

/// The largest page the server gives (`server.max_page_size` caps it; the default is 1,000).
const PAGE: u32 = 1000;

/// The allocations among `ids`, in ID order (of `tenant` when given, which the server filters).
pub async fn read_back(
    client: &Client,
    ids: &BTreeSet<AllocId>,
    tenant: Option<&str>,
) -> Result<Vec<Allocation>, ClientError> {
    let (Some(&first), Some(&last)) = (ids.first(), ids.last()) else {
        return Ok(Vec::new());
    };
    let mut q = ListQuery {
        tenant: tenant.map(str::to_string),
        limit: Some(PAGE),
        cursor: first.checked_sub(1).map(|c| c.to_string()),
        ..Default::default()
    };
    let mut out = Vec::with_capacity(ids.len());
    loop {
        let page = client.list_allocations(&q).await?;
        let beyond = page.allocations.last().is_none_or(|a| a.id >= last);
        out.extend(page.allocations.into_iter().filter(|a| ids.contains(&a.id)));
        match page.next_cursor {
            Some(c) if !beyond => q.cursor = Some(c),
            _ => return Ok(out),
        }
    }
}

/// Cancels the allocations among `singles` that have not ended and every task of `arrays`
/// that has not ended, `clients` requests at a time. Answers what it cancelled; an allocation
/// that ended meanwhile (409) is not an error.
pub async fn cancel_leftovers(
    client: &Client,
    singles: &BTreeSet<AllocId>,
    arrays: &[AllocId],
    tenant: Option<&str>,
    clients: usize,
) -> Result<CleanupRow, ClientError> {
    let started = Instant::now();
    let open: Vec<AllocId> = read_back(client, singles, tenant)
        .await?
        .into_iter()
        .filter(|a| !a.state.is_terminal())
        .map(|a| a.id)
        .collect();
    let gate = Arc::new(Semaphore::new(clients.max(1)));
    let mut tasks = Vec::new();
    for id in open {
        let (client, gate) = (client.clone(), gate.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await;
            match client.cancel(id).await {
                Ok(_) => Ok(1),
                Err(e) if e.status() == Some(409) => Ok(0),
                Err(e) => Err(e),
            }
        }));
    }
    let mut cancelled = 0u64;
    let mut first_error = None;
    for t in tasks {
        match t.await {
            Ok(Ok(n)) => cancelled += n,
            Ok(Err(e)) => {
                first_error.get_or_insert(e);
            }
            Err(e) => {
                first_error.get_or_insert(ClientError::Transport(e.to_string()));
            }
        }
    }
    for &id in arrays {
        match client.cancel_array(id).await {
            Ok(change) => cancelled += change.changed.len() as u64,
            Err(e) if e.status() == Some(409) => {}
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(CleanupRow {
            cancelled,
            seconds: started.elapsed().as_secs_f64(),
        }),
    }
}
