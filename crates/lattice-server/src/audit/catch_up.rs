//! Snapshot catch-up: while this member's store lacks entries ([`super::gap::Gap`], recorded
//! when it installed a snapshot), [`run`] fetches them page by page from the leader's
//! `GET /raft/audit` (with the cluster secret), checks each page with
//! [`super::gap::accept_run`] and stores it. When this member leads, it asks the other
//! members instead. Failures are retried with a growing delay.
//!
//! Until the gap is closed, this member forwards audit queries to the leader, so every
//! member gives the same answers (`api/audit.rs`).

use std::time::Duration;

use lattice_core::audit::AuditEntry;
use tokio::sync::watch;

use super::gap::{accept_run, Gap};
use super::AuditError;
use crate::api::App;
use crate::forward::{self, Leader};
use crate::raft::network::SECRET_HEADER;

/// Entries fetched per request.
pub const PAGE: usize = 5_000;

pub async fn run(app: App, mut stop: watch::Receiver<bool>) {
    let store = app.audit.store.clone();
    let mut delay = Duration::from_millis(200);
    loop {
        let Some(gap) = store.gap() else {
            tokio::select! {
                _ = stop.changed() => return,
                _ = store.gap_changed() => {}
                // A safety net: the notification is edge-triggered.
                _ = tokio::time::sleep(Duration::from_secs(30)) => {}
            }
            if *stop.borrow() {
                return;
            }
            continue;
        };
        match fetch_once(&app, gap).await {
            Ok(done) => {
                delay = Duration::from_millis(200);
                if done {
                    tracing::info!("audit entries missing after a snapshot install are now stored");
                }
                continue;
            }
            Err(e) => {
                tracing::warn!(
                    from = gap.from,
                    to = gap.to,
                    error = %e,
                    "cannot fetch the audit entries this member lacks; retrying"
                );
            }
        }
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(delay) => {}
        }
        if *stop.borrow() {
            return;
        }
        delay = (delay * 2).min(Duration::from_secs(30));
    }
}

/// Fetches and stores one page; `true` when the gap is closed.
async fn fetch_once(app: &App, gap: Gap) -> Result<bool, AuditError> {
    let mut last_error = AuditError::CatchUp("no other member is known".into());
    for url in sources(app) {
        let run = match fetch(app, &url, gap).await {
            Ok(run) => run,
            Err(e) => {
                last_error = e;
                continue;
            }
        };
        let store = app.audit.store.clone();
        let state = app.state.clone();
        let progress = tokio::task::spawn_blocking(move || {
            accept_run(&store, || state.read().state.audit_head().clone(), &run)
        })
        .await
        .map_err(|e| AuditError::Internal(e.to_string()))?;
        match progress {
            Ok(p) => return Ok(p == super::gap::Progress::Done),
            Err(e) => last_error = AuditError::CatchUp(format!("from {url}: {e}")),
        }
    }
    Err(last_error)
}

/// Whom to ask: the leader, or (when this member leads) every other member.
fn sources(app: &App) -> Vec<String> {
    match forward::leader(app) {
        Leader::Other { url, .. } => vec![url],
        Leader::Unknown => Vec::new(),
        Leader::Me => {
            let m = app.raft.metrics();
            let m = m.borrow();
            m.membership_config
                .membership()
                .nodes()
                .filter(|(id, _)| **id != app.cfg.node_id)
                .map(|(_, n)| n.addr.trim_end_matches('/').to_string())
                .collect()
        }
    }
}

async fn fetch(app: &App, url: &str, gap: Gap) -> Result<Vec<AuditEntry>, AuditError> {
    let err = |e: String| AuditError::CatchUp(format!("from {url}: {e}"));
    let resp = app
        .http
        .get(format!("{url}/raft/audit"))
        .query(&[
            ("from", gap.from.to_string()),
            ("to", gap.to.to_string()),
            ("limit", PAGE.to_string()),
        ])
        .header(SECRET_HEADER, &app.cfg.cluster_secret)
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .map_err(|e| err(crate::tls::error_chain(&e)))?;
    if !resp.status().is_success() {
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        return Err(err(format!("answered {status}: {text}")));
    }
    let bytes = resp.bytes().await.map_err(|e| err(e.to_string()))?;
    bincode::deserialize(&bytes).map_err(|e| err(format!("malformed answer: {e}")))
}
