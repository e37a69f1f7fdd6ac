//! Sensitive tenants through the real binaries: node claims (exclusive, 409 naming the
//! holder, never shared with another tenant's work, wiped on release), the Raft-committed
//! audit log (claims, lifecycle and access entries in order, identical on every member after
//! a leader change, scoped per role), tamper evidence of an export, and retention.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::raft::*;
use common::*;
use serde_json::{json, Value};

const TEAM: &str = "sensitive-team";

fn token(api: &str, body: Value) -> String {
    let (s, v) = call(
        "POST",
        &format!("{api}/api/v1/acl/tokens"),
        Some(&body.to_string()),
    );
    assert_eq!(s, 201, "create token {body}: {v}");
    v["secret"].as_str().unwrap().to_string()
}

fn tenant(api: &str, name: &str, sensitive: bool) {
    let body = json!({ "name": name, "sensitive": sensitive }).to_string();
    let (s, v) = call("POST", &format!("{api}/api/v1/tenants"), Some(&body));
    assert_eq!(s, 201, "{v}");
}

/// A wipe script that leaves `wiped-<node>` in `dir`.
fn wipe_script(dir: &Path) -> String {
    let script = dir.join("wipe.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\ntouch {}/wiped-$LATTICE_NODE_ID\necho scrubbed\n",
            dir.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    script.display().to_string()
}

fn audit(api: &str, who: Option<&str>, query: &str) -> (u16, Value) {
    let url = format!("{api}/api/v1/audit?{query}");
    match who {
        None => call("GET", &url, None),
        Some(t) => call_as(Some(t), "GET", &url, None),
    }
}

fn actions(v: &Value) -> Vec<String> {
    v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_string())
        .collect()
}

/// Whether `want` appears in `have` in this order (other entries may come between).
fn in_order(have: &[String], want: &[&str]) -> bool {
    let mut it = have.iter();
    want.iter().all(|w| it.any(|h| h == w))
}

#[test]
fn claims_isolate_nodes_and_every_step_is_audited_identically_on_every_member() {
    let dir = tempdir();
    let mut ms = three(dir.path(), &[]);
    let urls: Vec<String> = ms.iter().map(|m| m.url.clone()).collect();
    let api = urls[0].clone();
    let script = wipe_script(dir.path());
    let _agent = start_agent(
        &urls.join(","),
        "n",
        3,
        &dir.path().join("agent"),
        &[("LATTICE_AGENT__SENSITIVE__WIPE_COMMAND", script.as_str())],
    );
    wait_nodes_ready(&api, 3);
    tenant(&api, TEAM, true);
    tenant(&api, "physics", false);
    tenant(&api, "chem", false);
    let user =
        |s: &str, t: &str| token(&api, json!({"subject": s, "role": "user", "tenants": [t]}));
    let alice = user("alice", TEAM);
    let dave = user("dave", TEAM);
    let carol = user("carol", "physics");
    let bob = user("bob", "chem");
    let lead = token(
        &api,
        json!({"subject": "tess", "role": "tenant-admin", "tenants": [TEAM]}),
    );
    let olga = token(&api, json!({"subject": "olga", "role": "operator"}));

    // Alice claims two nodes; Dave's claim of one of them is refused, naming Alice.
    let (code, out, err) = cli_as(&alice, &api, &["claim", "--tenant", TEAM, "--nodes", "2"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("n-1, n-2"), "{out}");
    let (code, _, err) = cli_as(
        &dave,
        &api,
        &["claim", "--tenant", TEAM, "--node-ids", "n-2"],
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("n-2 is claimed by alice"), "{err}");
    let (s, v) = call_as(
        Some(&dave),
        "POST",
        &format!("{}/api/v1/claims", urls[1]),
        Some(&json!({"tenant": TEAM, "node_ids": ["n-1"]}).to_string()),
    );
    assert_eq!(s, 409, "{v}");
    assert!(v["error"]
        .as_str()
        .unwrap()
        .contains("claimed by alice (tenant sensitive-team)"));
    // Carol's tenant is not sensitive: no claims for her.
    let (code, _, err) = cli_as(
        &carol,
        &api,
        &["claim", "--tenant", "physics", "--nodes", "1"],
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("not sensitive"), "{err}");

    // Carol's two jobs: one runs on the free node, the other waits although n-1 and n-2 idle.
    let sleep = |t: &str, secs: u32| json!({"tenant": t, "command": ["sleep", secs.to_string()]});
    let submit_as = |tok: &str, body: Value| -> u64 {
        let (s, v) = call_as(
            Some(tok),
            "POST",
            &format!("{api}/api/v1/allocations"),
            Some(&body.to_string()),
        );
        assert_eq!(s, 201, "{v}");
        v["id"].as_u64().unwrap()
    };
    let c1 = submit_as(&carol, sleep("physics", 600));
    let c2 = submit_as(&carol, sleep("physics", 600));
    let r1 = wait_state(&api, c1, "running", 30);
    assert_eq!(r1["assigned_nodes"], json!(["n-3"]));
    let w = wait_for(30, "carol's second job to wait", || {
        let a = allocation(&api, c2);
        (a["reason"] == "resources").then_some(a)
    });
    assert_eq!(w["state"], "pending");

    // Alice's job runs on her claim and completes; she reads its status and output.
    let a1 = submit_as(
        &alice,
        json!({"tenant": TEAM, "command": ["sh", "-c", "echo private-result"]}),
    );
    let done = wait_state(&api, a1, "completed", 30);
    let on = done["assigned_nodes"][0].as_str().unwrap().to_string();
    assert!(on == "n-1" || on == "n-2", "{done}");
    let (code, out, err) = cli_as(&alice, &api, &["logs", &a1.to_string()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("private-result"));
    // Dave's job (same tenant, no claim) waits for a claim of his own.
    let d1 = submit_as(&dave, json!({"tenant": TEAM, "command": ["true"]}));
    let dw = wait_for(30, "dave's job to wait for a claim", || {
        let a = allocation(&api, d1);
        (a["reason"] == "claim").then_some(a)
    });
    assert!(dw["reason_detail"]
        .as_str()
        .unwrap()
        .contains("claimed by dave"));
    // Bob (another tenant) asking for Alice's job: 404, and the attempt is recorded.
    let (s, _) = call_as(
        Some(&bob),
        "GET",
        &format!("{api}/api/v1/allocations/{a1}"),
        None,
    );
    assert_eq!(s, 404);
    // Carol's waiting job still never got a claimed node.
    assert_eq!(allocation(&api, c2)["state"], "pending");

    // Alice releases: both nodes are wiped, then return to the pool, where Carol's job runs.
    let (code, out, err) = cli_as(&alice, &api, &["release", "--tenant", TEAM]);
    assert_eq!(code, 0, "{out}{err}");
    for n in ["n-1", "n-2"] {
        wait_for(30, &format!("{n} to be wiped"), || {
            dir.path().join(format!("wiped-{n}")).exists().then_some(())
        });
    }
    wait_for(30, "the claims to end", || {
        let v = get(&format!("{api}/api/v1/claims"));
        v["claims"].as_array()?.is_empty().then_some(())
    });
    let r2 = wait_state(&api, c2, "running", 30);
    let n2 = r2["assigned_nodes"][0].as_str().unwrap();
    assert!(n2 == "n-1" || n2 == "n-2", "{r2}");
    let (s, v) = call("DELETE", &format!("{api}/api/v1/allocations/{d1}"), None);
    assert_eq!(s, 200, "{v}");

    // The seed's query: claim, lifecycle and access entries, in order.
    let cutoff = chrono_now();
    let (s, v) = audit(&api, None, &format!("tenant={TEAM}&from=2026-03-01"));
    assert_eq!(s, 200, "{v}");
    let have = actions(&v);
    assert!(
        in_order(
            &have,
            &[
                "node.claimed",
                "node.claim_refused",
                "allocation.submitted",
                "allocation.started",
                "allocation.completed",
                "access.logs",
                "access.denied",
                "node.released",
                "node.wiped",
                "node.wiped",
                "allocation.cancelled",
            ]
        ),
        "{have:?}"
    );
    let started = &v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "allocation.started" && e["allocation"] == a1)
        .unwrap()["nodes"];
    assert_eq!(started, &json!([on]));
    let cancelled = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "allocation.cancelled")
        .unwrap();
    assert!(
        cancelled["detail"]
            .as_str()
            .unwrap()
            .contains("cancelled by admin"),
        "{cancelled}"
    );
    // No entry for the non-sensitive tenants' work.
    assert!(v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["tenant"] == TEAM));

    // Scoping: Bob sees nothing, Dave only his own entries, the tenant admin everything of
    // the tenant, an operator is refused.
    let (s, v) = audit(&api, Some(&bob), &format!("tenant={TEAM}"));
    assert_eq!((s, v["entries"].as_array().unwrap().len()), (200, 0), "{v}");
    let (s, v) = audit(&api, Some(&dave), &format!("tenant={TEAM}"));
    assert_eq!(s, 200, "{v}");
    let mine = v["entries"].as_array().unwrap();
    assert!(
        !mine.is_empty() && mine.iter().all(|e| e["user"] == "dave"),
        "{v}"
    );
    let (s, v) = audit(&api, Some(&lead), &format!("tenant={TEAM}&to={cutoff}"));
    assert_eq!(s, 200, "{v}");
    let users: std::collections::BTreeSet<&str> = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["user"].as_str().unwrap())
        .collect();
    assert!(
        users.contains("alice") && users.contains("dave"),
        "{users:?}"
    );
    let (s, _) = audit(&api, Some(&olga), &format!("tenant={TEAM}"));
    assert_eq!(s, 403);
    // Bad parameters are refused, naming them.
    for (q, field) in [
        ("from=yesterday", "from"),
        ("action=node.exploded", "action"),
        ("limit=0", "limit"),
        ("colour=red", "colour"),
    ] {
        let (s, v) = audit(&api, None, q);
        assert_eq!(s, 400, "{q}: {v}");
        assert!(v.to_string().contains(field), "{q}: {v}");
    }

    // A leader change: every member answers the same entries (up to the cutoff).
    let q = format!("tenant={TEAM}&from=2026-03-01&to={cutoff}");
    let before = audit(&api, None, &q).1["entries"].clone();
    let old = leader_index(&ms);
    ms[old].kill9();
    let alive: Vec<String> = (0..3)
        .filter(|&i| i != old)
        .map(|i| urls[i].clone())
        .collect();
    wait_for(60, "a new leader", || {
        let s = get(&format!("{}/api/v1/raft/status", alive[0]));
        s["leader"].as_u64().filter(|&l| l != old as u64 + 1)
    });
    for u in &alive {
        let (s, v) = audit(u, None, &q);
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["entries"], before, "member {u}");
    }
    // The counter is replicated: equal on the members that answer.
    let count = |u: &str| -> f64 {
        let text = http()
            .get(format!("{u}/metrics"))
            .send()
            .unwrap()
            .text()
            .unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix("lattice_raft_sensitive_audit_entries_total "))
            .unwrap()
            .parse()
            .unwrap()
    };
    wait_converged(&alive);
    let n = count(&alive[0]);
    assert!(n >= before.as_array().unwrap().len() as f64, "{n}");
    assert_eq!(count(&alive[1]), n);
}

/// 2026-11-24T12:00:00.000Z-style "now" (for `to=`), one second ahead of entries just made.
fn chrono_now() -> String {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
        + 1;
    lattice_core::Timestamp(ms).to_rfc3339()
}

/// A single server with a sensitive tenant, one claim and release (4 entries).
fn small_cluster(env: &[(&str, &str)]) -> (PolicyCluster, String) {
    let c = PolicyCluster::start(2, env);
    tenant(&c.api, TEAM, true);
    let alice = token(
        &c.api,
        json!({"subject": "alice", "role": "user", "tenants": [TEAM]}),
    );
    let (code, out, err) = cli_as(&alice, &c.api, &["claim", "--tenant", TEAM, "--nodes", "1"]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = cli_as(&alice, &c.api, &["release", "--tenant", TEAM]);
    assert_eq!(code, 0, "{out}{err}");
    wait_for(30, "the wipe", || {
        let v = c.get("/api/v1/claims");
        v["claims"].as_array()?.is_empty().then_some(())
    });
    (c, alice)
}

#[test]
fn an_altered_export_fails_verification_naming_the_entry() {
    let (c, _) = small_cluster(&[]);
    let (code, key, err) = cli(&c.api, &["audit", "pubkey"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(key.trim().len(), 64, "{key}");
    let (code, out, err) = cli(&c.api, &["audit", "verify"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("OK"), "{out}");

    let (code, export, err) = cli(&c.api, &["audit", "export", "--from", "2026-01-01"]);
    assert_eq!(code, 0, "{err}");
    let file = c.dir.path().join("export.jsonl");
    std::fs::write(&file, &export).unwrap();
    let path = file.to_str().unwrap();
    let (code, out, err) = cli(&c.api, &["audit", "verify", "--from-file", path]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("OK"), "{out}");

    // Change who released the nodes in the third line: verification names that entry.
    let mut lines: Vec<String> = export.lines().map(String::from).collect();
    assert!(lines.len() >= 4, "{export}");
    let mut e: Value = serde_json::from_str(&lines[2]).unwrap();
    let seq = e["seq"].as_u64().unwrap();
    e["user"] = json!("mallory");
    lines[2] = e.to_string();
    std::fs::write(&file, lines.join("\n")).unwrap();
    let (code, out, err) = cli(&c.api, &["audit", "verify", "--from-file", path]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains(&format!("entry {seq}")), "{err}");
    assert!(err.contains("altered"), "{err}");

    // Dropping the last entry breaks the signed trailer.
    let mut short: Vec<String> = export.lines().map(String::from).collect();
    short.remove(short.len() - 2);
    std::fs::write(&file, short.join("\n")).unwrap();
    let (code, _, err) = cli(&c.api, &["audit", "verify", "--from-file", path]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("signed trailer"), "{err}");

    // A signature made with another key does not verify.
    std::fs::write(&file, &export).unwrap();
    let other = "11".repeat(32);
    let (code, _, err) = cli(
        &c.api,
        &["audit", "verify", "--from-file", path, "--pubkey", &other],
    );
    assert_eq!(code, 1, "{err}");
}

#[test]
fn retention_prunes_through_raft_archives_and_keeps_the_chain_verifiable() {
    let archive = tempdir();
    let archive_dir = archive.path().to_str().unwrap().to_string();
    let env = [
        ("LATTICE_SERVER__AUDIT__RETENTION_DAYS", "0"),
        ("LATTICE_SERVER__AUDIT__ARCHIVE_DIR", archive_dir.as_str()),
    ];
    let (c, alice) = small_cluster(&env);
    let old = audit(&c.api, None, &format!("tenant={TEAM}")).1["entries"]
        .as_array()
        .unwrap()
        .len();
    let cutoff = chrono_now();
    // Newer entries: another claim.
    let (code, out, err) = cli_as(&alice, &c.api, &["claim", "--tenant", TEAM, "--nodes", "1"]);
    assert_eq!(code, 0, "{out}{err}");

    let (code, out, err) = cli(&c.api, &["audit", "prune", "--before", &cutoff]);
    assert_eq!(code, 0, "{out}{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    let through = v["pruned_through"].as_u64().unwrap();
    assert!(v["pruned"].as_u64().unwrap() >= old as u64, "{v}");
    let kept = audit(&c.api, None, "from=2026-01-01").1;
    let first = &kept["entries"][0];
    assert_eq!(first["seq"].as_u64().unwrap(), through + 1, "{kept}");
    assert!(actions(&kept).contains(&"node.claimed".to_string()));
    // The archive holds the pruned entries; the chain still verifies from its anchor.
    let files: Vec<_> = std::fs::read_dir(archive.path()).unwrap().collect();
    assert_eq!(files.len(), 1);
    let text = std::fs::read_to_string(files[0].as_ref().unwrap().path()).unwrap();
    let last: Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(last["seq"].as_u64(), Some(through));
    assert_eq!(last["hash"], first["prev_hash"]);
    let (code, out, err) = cli(&c.api, &["audit", "verify"]);
    assert_eq!(code, 0, "{out}{err}");

    // A bad date is refused, naming it.
    let (s, v) = c.call(
        "POST",
        "/api/v1/audit/prune",
        Some(&json!({"before": "not-a-date"}).to_string()),
    );
    assert_eq!(s, 400, "{v}");
    assert!(v.to_string().contains("before"), "{v}");
}
