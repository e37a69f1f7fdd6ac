//! Small waiting helpers shared by the agent's loops: boolean flags carried by `watch`
//! channels (stop requests, shutdown) and the retry backoff.

use std::time::Duration;

use tokio::sync::watch;

/// Resolves when the flag becomes true; never if its sender is dropped first.
pub async fn raised(rx: &mut watch::Receiver<bool>) {
    if rx.wait_for(|v| *v).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Sleeps for `d` unless the flag is raised first; returns whether it was raised.
pub async fn sleep_or_raised(d: Duration, rx: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        () = tokio::time::sleep(d) => false,
        () = raised(rx) => true,
    }
}

/// Delay before retry number `attempt` (1-based): 0.5 s, doubling, at most 10 s.
pub fn backoff(attempt: u32) -> Duration {
    let ms = 500u64.saturating_mul(1u64 << attempt.saturating_sub(1).min(16));
    Duration::from_millis(ms.min(10_000))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let ms: Vec<u128> = (1..=7).map(|a| backoff(a).as_millis()).collect();
        assert_eq!(ms, vec![500, 1000, 2000, 4000, 8000, 10_000, 10_000]);
        assert_eq!(backoff(0).as_millis(), 500);
        assert_eq!(backoff(u32::MAX).as_millis(), 10_000);
    }

    #[tokio::test]
    async fn raised_sees_flag_and_ignores_dropped_sender() {
        let (tx, mut rx) = watch::channel(false);
        tx.send_replace(true);
        raised(&mut rx).await;
        let (tx, mut rx) = watch::channel(false);
        drop(tx);
        assert!(!sleep_or_raised(Duration::from_millis(20), &mut rx).await);
    }
}
