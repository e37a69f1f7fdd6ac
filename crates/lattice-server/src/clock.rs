//! The server's wall clock. Only the leader's proposals and the API read it; the state machine
//! receives time inside commands.

use std::time::{SystemTime, UNIX_EPOCH};

use lattice_core::Timestamp;

pub fn now() -> Timestamp {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    Timestamp::from_millis(ms)
}
