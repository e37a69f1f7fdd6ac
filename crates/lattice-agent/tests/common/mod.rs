//! What the agent tests' fake control planes share.

use lattice_core::agent::{WipeOrder, WipeReportResponse};
use lattice_core::command::WipeReport;

/// Like the real control plane: each report ends the pending wipe it names (one no longer
/// pending is counted as ignored); every report, duplicates included, is kept in `received`.
pub fn end_wipes(
    pending: &mut Vec<WipeOrder>,
    received: &mut Vec<WipeReport>,
    reports: Vec<WipeReport>,
) -> WipeReportResponse {
    let mut out = WipeReportResponse::default();
    for r in reports {
        let before = pending.len();
        pending.retain(|o| !(o.node_id == r.node_id && o.wipe_id == r.wipe_id));
        if pending.len() < before {
            out.applied += 1;
        } else {
            out.ignored += 1;
        }
        received.push(r);
    }
    out
}
