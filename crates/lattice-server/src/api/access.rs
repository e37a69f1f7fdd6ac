//! Access entries of the audit log: reads of a sensitive tenant's allocations (status, logs,
//! metrics) and refused attempts on them are committed through Raft (`Command::RecordAudit`)
//! BEFORE the answer is sent, so no sensitive read goes unrecorded. Work of other tenants
//! costs nothing here.

use lattice_core::audit::{AuditAction, AuditRecord};
use lattice_core::{AllocId, Allocation, Command};

use super::error::ApiError;
use super::App;
use crate::auth::Caller;
use crate::clock;

/// Longest list of allocation IDs an entry's detail names.
const MAX_LISTED: usize = 50;

/// The sensitive tenant of allocation `id`, if it has one.
fn sensitive_tenant(app: &App, id: AllocId) -> Option<String> {
    let d = app.state.read();
    let a = d.state.allocation(id)?;
    d.state.is_sensitive(&a.tenant).then(|| a.tenant.clone())
}

async fn record(app: &App, records: Vec<AuditRecord>) -> Result<(), ApiError> {
    if records.is_empty() {
        return Ok(());
    }
    app.propose(Command::RecordAudit {
        now: clock::now(),
        records,
    })
    .await
    .map(|_| ())
}

fn entry(
    app: &App,
    caller: &Caller,
    tenant: String,
    action: AuditAction,
    allocation: Option<AllocId>,
    detail: String,
) -> AuditRecord {
    AuditRecord {
        tenant,
        user: caller.by(&app.cfg.default_user),
        action,
        allocation,
        nodes: Vec::new(),
        detail,
    }
}

/// Records that `caller` read allocation `id` (`action`: status, logs or metrics) when it
/// belongs to a sensitive tenant. `detail` says what exactly (e.g. which log stream).
pub async fn read(
    app: &App,
    caller: &Caller,
    id: AllocId,
    action: AuditAction,
    detail: String,
) -> Result<(), ApiError> {
    let Some(tenant) = sensitive_tenant(app, id) else {
        return Ok(());
    };
    let e = entry(app, caller, tenant, action, Some(id), detail);
    record(app, vec![e]).await
}

/// Records a refused attempt (`what`, e.g. `GET /api/v1/allocations/{id}`) on allocation
/// `id` when it belongs to a sensitive tenant.
pub async fn denied(app: &App, caller: &Caller, id: AllocId, what: &str) -> Result<(), ApiError> {
    let Some(tenant) = sensitive_tenant(app, id) else {
        return Ok(());
    };
    let detail = format!("{what}: not visible to token {}", caller.token_id);
    let e = entry(
        app,
        caller,
        tenant,
        AuditAction::AccessDenied,
        Some(id),
        detail,
    );
    record(app, vec![e]).await
}

/// Records a refused request on a sensitive tenant's resources (e.g. a conflicting claim).
pub async fn refused(
    app: &App,
    caller: &Caller,
    tenant: &str,
    action: AuditAction,
    nodes: Vec<String>,
    detail: String,
) -> Result<(), ApiError> {
    let mut e = entry(app, caller, tenant.to_string(), action, None, detail);
    e.nodes = nodes;
    record(app, vec![e]).await
}

/// Records a listing: one entry per sensitive tenant whose allocations are in `page`.
pub async fn listed(app: &App, caller: &Caller, page: &[Allocation]) -> Result<(), ApiError> {
    let mut by_tenant: std::collections::BTreeMap<&str, Vec<AllocId>> = Default::default();
    {
        let d = app.state.read();
        for a in page {
            if d.state.is_sensitive(&a.tenant) {
                by_tenant.entry(&a.tenant).or_default().push(a.id);
            }
        }
    }
    let records = by_tenant
        .into_iter()
        .map(|(tenant, ids)| {
            let shown: Vec<String> = ids.iter().take(MAX_LISTED).map(u64::to_string).collect();
            let more = ids.len().saturating_sub(MAX_LISTED);
            let mut detail = format!("listed {} allocation(s): {}", ids.len(), shown.join(","));
            if more > 0 {
                detail.push_str(&format!(" and {more} more"));
            }
            entry(
                app,
                caller,
                tenant.to_string(),
                AuditAction::StatusRead,
                None,
                detail,
            )
        })
        .collect();
    record(app, records).await
}
