//! Ctrl-C (or SIGTERM) during a bench: the first one stops submitting and waiting, so that the
//! bench can cancel what it created and print what it measured so far; a second one quits at
//! once.

use std::sync::atomic::{AtomicBool, Ordering};

static REQUESTED: AtomicBool = AtomicBool::new(false);

/// Whether the user asked the bench to stop.
pub fn requested() -> bool {
    REQUESTED.load(Ordering::Relaxed)
}

/// Starts listening for the signals (call once, inside the runtime).
pub fn listen() {
    tokio::spawn(async {
        signal().await;
        REQUESTED.store(true, Ordering::Relaxed);
        eprintln!("interrupted: cancelling what the bench submitted (again to quit at once)");
        signal().await;
        std::process::exit(130);
    });
}

/// Resolves on the next Ctrl-C or SIGTERM.
async fn signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
