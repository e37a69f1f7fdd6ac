//! Tenants, quotas, vClusters, hold / release / requeue and pending reasons through the real
//! binaries: unknown vClusters and tenants are refused by name; work over a tenant's quota
//! waits with reason `quota`; a vCluster schedules only its own nodes; held work waits until
//! released; requeue runs the work again under a new ID; pending work shows its reason and
//! estimated start.

mod common;

use common::*;
use serde_json::json;

#[test]
fn unknown_vclusters_and_tenants_are_refused_by_name() {
    let c = PolicyCluster::start(1, &[]);
    let (s, v) = c.call(
        "POST",
        "/api/v1/allocations",
        Some(r#"{"command": ["true"], "vcluster": "gpu"}"#),
    );
    assert_eq!(s, 400, "{v}");
    assert_eq!(v["detail"]["field"], "vcluster");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("unknown vCluster \"gpu\""),
        "{v}"
    );
    let (s, v) = c.call(
        "POST",
        "/api/v1/allocations",
        Some(r#"{"command": ["true"], "tenant": "physics"}"#),
    );
    assert_eq!(s, 400, "{v}");
    assert_eq!(v["detail"]["field"], "tenant");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("unknown tenant \"physics\""),
        "{v}"
    );
    let (code, err) = c.fails(&["submit", "-p", "gpu", "--", "true"]);
    assert_eq!(code, 1);
    assert!(err.contains("unknown vCluster \"gpu\""), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");

    // Created, they are accepted.
    assert_eq!(
        c.ok(&["tenants", "create", "physics", "--share", "2"])
            .trim(),
        "Created tenant physics"
    );
    let (code, err) = c.fails(&["tenants", "create", "physics"]);
    assert_eq!(code, 1);
    assert!(err.contains("already exists"), "{err}");
    c.ok(&["vclusters", "create", "gpu", "--features", "gpu"]);
    let id = submit(
        &c.api,
        json!({"command": ["true"], "tenant": "physics", "vcluster": "gpu"}),
    );
    // No node has the `gpu` feature.
    let a = c.wait_reason(id, "unsatisfiable");
    assert_eq!(
        a["reason_detail"],
        "needs 1 nodes matching its constraints; vCluster gpu has 0"
    );
    let tenants = c.ok(&["tenants"]);
    assert!(
        tenants
            .lines()
            .any(|l| l.starts_with("physics") && l.contains(" 2 ")),
        "{tenants}"
    );
    let vcs = c.ok(&["vclusters"]);
    assert!(
        vcs.lines()
            .any(|l| l.starts_with("default") && l.contains("backfill")),
        "{vcs}"
    );
    assert!(
        vcs.lines()
            .any(|l| l.starts_with("gpu") && l.contains("features=gpu")),
        "{vcs}"
    );
    // `default` always holds every node.
    let (s, v) = c.call(
        "PUT",
        "/api/v1/vclusters/default",
        Some(r#"{"features": ["x"]}"#),
    );
    assert_eq!(s, 400, "{v}");
}

#[test]
fn a_dev_cluster_creates_tenants_on_first_use() {
    let c = PolicyCluster::start(1, &[("LATTICE_SERVER__AUTO_CREATE_TENANTS", "true")]);
    let id = submit(&c.api, json!({"command": ["true"], "tenant": "newcomer"}));
    wait_state(&c.api, id, "completed", 30);
    let t = c.get("/api/v1/tenants/newcomer");
    assert_eq!(
        (t["share"].as_u64(), t["max_nodes"].clone()),
        (Some(1), json!(null))
    );
    assert!(t["usage_node_seconds"]["default"].as_f64().is_some(), "{t}");
}

#[test]
fn work_over_a_quota_waits_with_reason_quota() {
    let c = PolicyCluster::start(3, &[]);
    c.ok(&["tenants", "create", "capped", "--max-running", "1"]);
    let ids: Vec<u64> = (0..3)
        .map(|_| {
            submit(
                &c.api,
                json!({"command": ["sleep", "300"], "tenant": "capped"}),
            )
        })
        .collect();
    wait_state(&c.api, ids[0], "running", 30);
    for id in &ids[1..] {
        let a = c.wait_reason(*id, "quota");
        assert_eq!(
            a["reason_detail"],
            "tenant capped is at its max_running quota of 1"
        );
    }
    assert!(c.ok(&["status"]).contains("(quota)"));
    let t = c.get("/api/v1/tenants/capped");
    assert_eq!(
        (t["running_allocations"].as_u64(), t["max_running"].as_u64()),
        (Some(1), Some(1))
    );
    // Raising the quota lets one more start; the third still waits.
    assert_eq!(
        c.ok(&["tenants", "set", "capped", "--max-running", "2"])
            .trim(),
        "Updated tenant capped"
    );
    wait_state(&c.api, ids[1], "running", 30);
    c.wait_reason(ids[2], "quota");
    // Lifting it entirely (`none`).
    c.ok(&["tenants", "set", "capped", "--max-running", "none"]);
    wait_state(&c.api, ids[2], "running", 30);
    assert_eq!(c.get("/api/v1/tenants/capped")["max_running"], json!(null));
    for id in ids {
        c.ok(&["cancel", &id.to_string()]);
    }
}

#[test]
fn a_vcluster_schedules_only_its_own_nodes() {
    let mut c = PolicyCluster::start(1, &[]);
    let gpu = start_agent_with_features(&c.api, "g", 2, &c.dir.path().join("gpu"), &["gpu"]);
    c.agents.push(gpu);
    wait_nodes_ready(&c.api, 3);
    let out = c.ok(&[
        "vclusters",
        "create",
        "gpu",
        "--features",
        "gpu",
        "--policy",
        "fifo",
    ]);
    assert_eq!(out.trim(), "Created vCluster gpu (2 nodes)");
    let id = submit(
        &c.api,
        json!({"command": ["true"], "vcluster": "gpu", "nodes": 2}),
    );
    let a = wait_state(&c.api, id, "completed", 30);
    assert_eq!(a["assigned_nodes"], json!(["g-1", "g-2"]));
    let v = c.get("/api/v1/vclusters/gpu");
    assert_eq!(
        (v["node_count"].as_u64(), v["policy"].as_str()),
        (Some(2), Some("fifo"))
    );
    c.ok(&[
        "vclusters",
        "set",
        "gpu",
        "--cycle-interval",
        "200ms",
        "--weight",
        "age=0",
    ]);
    let v = c.get("/api/v1/vclusters/gpu");
    assert_eq!(v["cycle_interval_ms"], 200);
    assert_eq!(v["weights"]["age"], 0);
    assert_eq!(v["weights"]["priority"], 1000);
}

#[test]
fn hold_release_and_requeue() {
    let c = PolicyCluster::start(1, &[]);
    let out = c.ok(&["submit", "--hold", "--parsable", "--", "true"]);
    let id: u64 = out.trim().parse().unwrap();
    let a = c.wait_reason(id, "held");
    assert_eq!(a["held"], true);
    assert!(c.ok(&["status"]).contains("(held)"));
    assert_eq!(
        c.ok(&["release", &id.to_string()]).trim(),
        format!("Released allocation {id}")
    );
    wait_state(&c.api, id, "completed", 30);
    let (code, err) = c.fails(&["hold", &id.to_string()]);
    assert_eq!(code, 1);
    assert!(err.contains("completed"), "{err}");

    // Requeue: the work runs again as a new allocation.
    let out = c.ok(&["requeue", &id.to_string()]);
    let new: u64 = out
        .trim()
        .strip_prefix(&format!("Requeued allocation {id} as "))
        .unwrap_or_else(|| panic!("{out}"))
        .parse()
        .unwrap();
    wait_state(&c.api, new, "completed", 30);
    assert_eq!(allocation(&c.api, id)["requeued_as"], new);
    assert_eq!(allocation(&c.api, new)["requeued_from"], id);

    // Holding a pending job that waits anyway, then releasing it.
    let busy = submit(&c.api, json!({"command": ["sleep", "300"]}));
    wait_state(&c.api, busy, "running", 30);
    let next = submit(&c.api, json!({"command": ["true"]}));
    c.ok(&["hold", &next.to_string()]);
    c.wait_reason(next, "held");
    c.ok(&["release", &next.to_string()]);
    c.wait_reason(next, "resources");
    c.ok(&["cancel", &busy.to_string()]);
    wait_state(&c.api, next, "completed", 30);
}

#[test]
fn pending_work_shows_its_reason_and_estimated_start() {
    let c = PolicyCluster::start(1, &[]);
    let busy = submit(
        &c.api,
        json!({"command": ["sleep", "300"], "walltime_seconds": 600, "preemptible": false}),
    );
    let running = wait_state(&c.api, busy, "running", 30);
    let big = submit(&c.api, json!({"command": ["true"], "priority": 9}));
    let a = c.wait_reason(big, "resources");
    let est = wait_for(30, "an estimated start", || {
        allocation(&c.api, big)["estimated_start"]
            .as_str()
            .map(str::to_string)
    });
    // The node frees at the running job's walltime: started + 600 s (to the second).
    let started = running["started_at"].as_str().unwrap();
    assert!(est.as_str() > started, "{est} vs {started}");
    assert_eq!(a["state"], "pending");
    let status = c.ok(&["status", "--start"]);
    let header = status.lines().next().unwrap();
    assert!(header.contains("START"), "{status}");
    assert!(status.contains(&est[..19]), "{status}");
    let detail = c.ok(&["status", &big.to_string()]);
    assert!(
        detail.contains(&format!("estimated_start: {}Z", &est[..19])),
        "{detail}"
    );
    c.ok(&["cancel", &busy.to_string()]);
    wait_state(&c.api, big, "completed", 30);
}
