//! Multi-member clusters for tests: start a member (bootstrap or join), wait for voters and a
//! leader, and for every member to have applied the same state.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use super::*;

pub const SECRET: (&str, &str) = ("LATTICE_SERVER__CLUSTER_SECRET", "test-secret");
pub const FAST: [(&str, &str); 3] = [
    ("LATTICE_SERVER__RAFT_HEARTBEAT_INTERVAL_MS", "100"),
    ("LATTICE_SERVER__RAFT_ELECTION_TIMEOUT_MIN_MS", "500"),
    ("LATTICE_SERVER__RAFT_ELECTION_TIMEOUT_MAX_MS", "1000"),
];

/// Starts member `id`: bootstrap alone when `join` is None, else join through `join`.
pub fn member(dir: &Path, id: u64, addr: &str, join: Option<&str>, extra: &[(&str, &str)]) -> Proc {
    let data = dir.join(format!("m{id}"));
    let id_s = id.to_string();
    let mut args = vec![
        "server",
        "--node-id",
        &id_s,
        "--api-addr",
        addr,
        "--data-dir",
        data.to_str().unwrap(),
    ];
    match join {
        Some(j) => args.extend(["--join", j]),
        None => args.push("--bootstrap"),
    }
    let mut env = vec![SECRET];
    env.extend_from_slice(&FAST);
    env.extend_from_slice(extra);
    let mut p = spawn(&args, &env, "lattice server listening on ");
    p.url = format!("http://{}", p.url);
    wait_healthy(&p.url);
    p
}

pub fn status(url: &str) -> Option<Value> {
    let r = http()
        .get(format!("{url}/api/v1/raft/status"))
        .timeout(Duration::from_secs(2))
        .send()
        .ok()?;
    if r.status().as_u16() == 401 {
        // A cluster that has just formed has no tokens yet.
        ensure_bootstrapped(url);
        return None;
    }
    r.json().ok()
}

/// Waits until `url` sees `n` voters and a leader; returns the leader's ID.
pub fn wait_voters(url: &str, n: usize) -> u64 {
    wait_for(60, &format!("{n} voters"), || {
        let s = status(url)?;
        let voters = s["members"]
            .as_array()?
            .iter()
            .filter(|m| m["voter"] == true)
            .count();
        (voters == n).then_some(())?;
        s["leader"].as_u64()
    })
}

/// Three members: 1 bootstraps, 2 and 3 join.
pub fn three(dir: &Path, extra: &[(&str, &str)]) -> Vec<Proc> {
    let m1 = member(dir, 1, "127.0.0.1:0", None, extra);
    let m2 = member(dir, 2, "127.0.0.1:0", Some(&m1.url), extra);
    let m3 = member(dir, 3, "127.0.0.1:0", Some(&m1.url), extra);
    wait_voters(&m1.url, 3);
    vec![m1, m2, m3]
}

pub fn leader_index(ms: &[Proc]) -> usize {
    let id = wait_for(30, "a leader", || status(&ms[0].url)?["leader"].as_u64());
    (id - 1) as usize
}

/// Every member answering has applied the same entries and holds the same state.
pub fn wait_converged(urls: &[String]) -> Value {
    wait_for(60, "members to converge", || {
        let ss: Vec<Value> = urls.iter().map(|u| status(u)).collect::<Option<_>>()?;
        let first = &ss[0];
        let same = ss.iter().all(|s| {
            s["applied_index"] == first["applied_index"]
                && s["state_digest"] == first["state_digest"]
        });
        (same && first["applied_index"].is_u64()).then(|| first.clone())
    })
}
