//! Work only the Raft leader does: the scheduling loop ([`scheduler`]), the node failure
//! detector ([`liveness`]) and the audit log's retention pass
//! ([`crate::audit::retention`]). They run on every member but act only while it leads, and
//! start each pass from the committed state, so a leadership change never replays a stale
//! plan.

pub mod heartbeats;
pub mod liveness;
pub mod scheduler;

use tokio::task::JoinHandle;

use crate::api::App;

/// Starts the leader-only loops; they end when `stop` fires.
pub fn spawn(app: App, stop: tokio::sync::watch::Receiver<bool>) -> Vec<JoinHandle<()>> {
    vec![
        tokio::spawn(scheduler::run(app.clone(), stop.clone())),
        tokio::spawn(liveness::run(app.clone(), stop.clone())),
        tokio::spawn(crate::audit::retention::run(app, stop)),
    ]
}
