//! Snapshot catch-up of the audit log between two real members on loopback: the first
//! records audit entries and compacts its log past them; the second joins, installs a
//! snapshot (it cannot replay those log entries: they are purged), fetches the missing
//! entries from the leader's `/raft/audit`, and then holds the same verified chain.

use std::path::Path;
use std::time::{Duration, Instant};

use lattice_server::ServerConfig;
use serde_json::Value;

const SECRET: &str = "audit-catch-up-test-secret";

fn config(dir: &Path, node_id: u64, join: Option<String>) -> ServerConfig {
    let mut cfg = ServerConfig {
        node_id,
        data_dir: dir.to_path_buf(),
        api_addr: "127.0.0.1:0".parse().unwrap(),
        bootstrap: join.is_none(),
        join,
        cluster_secret: SECRET.into(),
        // Compact often and keep nothing behind the snapshot: a joiner must install it.
        snapshot_every_entries: 5,
        log_entries_kept_after_snapshot: 0,
        ..Default::default()
    };
    cfg.auth.enabled = false;
    cfg
}

/// Polls `check` until it returns `Some` or the deadline passes.
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn get(http: &reqwest::Client, url: &str) -> Option<Value> {
    let r = http.get(url).send().await.ok()?;
    if !r.status().is_success() {
        return None;
    }
    r.json().await.ok()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_member_that_installed_a_snapshot_fetches_the_audit_entries_it_skipped() {
    let http = reqwest::Client::new();
    let dir1 = tempfile::tempdir().unwrap();
    let (stop1, rx1) = tokio::sync::oneshot::channel::<()>();
    let m1 = lattice_server::start(config(dir1.path(), 1, None), async {
        let _ = rx1.await;
    })
    .await
    .unwrap();
    let base1 = m1.url.clone();

    // Every answered query records an `access.audit` entry: 30 of them.
    let mut made = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while made < 30 {
        assert!(
            Instant::now() < deadline,
            "the first member answers queries"
        );
        match get(&http, &format!("{base1}/api/v1/audit?limit=1")).await {
            Some(_) => made += 1,
            // No leader yet.
            None => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    // The log entries that produced them are purged: only a snapshot carries them now.
    eventually("the leader's log compacted past the audit entries", || {
        let http = http.clone();
        let base1 = base1.clone();
        async move {
            let s = get(&http, &format!("{base1}/api/v1/raft/status")).await?;
            (s["purged_index"].as_u64()? >= 20).then_some(())
        }
    })
    .await;

    let dir2 = tempfile::tempdir().unwrap();
    let (stop2, rx2) = tokio::sync::oneshot::channel::<()>();
    let m2 = lattice_server::start(config(dir2.path(), 2, Some(base1.clone())), async {
        let _ = rx2.await;
    })
    .await
    .unwrap();
    let base2 = m2.url.clone();

    // The second member's own stored chain verifies, complete up to the head.
    let report = eventually("the joiner's stored chain to verify", || {
        let http = http.clone();
        let base2 = base2.clone();
        async move {
            let r = get(&http, &format!("{base2}/api/v1/audit/verify")).await?;
            (r["ok"] == Value::Bool(true) && r["entries"].as_u64()? >= 30).then_some(r)
        }
    })
    .await;
    assert_eq!(report["first_seq"], 1, "{report}");

    // Both members answer the same query alike (the joiner's own query is entry 31 on both).
    let q = "/api/v1/audit?limit=10000&to=2999-01-01";
    let a = get(&http, &format!("{base2}{q}"))
        .await
        .expect("query the joiner");
    let b = get(&http, &format!("{base1}{q}"))
        .await
        .expect("query the leader");
    let seqs = |v: &Value| -> Vec<u64> {
        v["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["seq"].as_u64().unwrap())
            .collect()
    };
    assert_eq!(seqs(&a), (1..=31).collect::<Vec<u64>>(), "{a}");
    assert_eq!(seqs(&b), (1..=32).collect::<Vec<u64>>());
    assert_eq!(
        a["entries"].as_array().unwrap()[..31],
        b["entries"].as_array().unwrap()[..31]
    );

    let _ = stop2.send(());
    let _ = m2.handle.await;
    let _ = stop1.send(());
    let _ = m1.handle.await;
}
