//! Observability as the operator's page describes it, proven against the real tools:
//! - the shipped alert rules, Prometheus config and alert unit tests pass `promtool`;
//! - the Grafana dashboards and provisioning files are well formed;
//! - a real three-member cluster with an agent runs real work while a real Prometheus scrapes
//!   every member with the shipped rules: every member's `/metrics` passes
//!   `promtool check metrics`, every dashboard panel and alert expression evaluates, the
//!   counters moved by what the workload implies (including a preemption with a checkpoint:
//!   `lattice_scheduling_preemptions_total` and `lattice_checkpoint_duration_seconds`), and
//!   killing two members makes `LatticeRaftNoLeader` fire.
//!
//! These tests fail (they do not skip) when `promtool` or `prometheus` is missing: install the
//! Debian package `prometheus` (scripts/test.sh does).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::prometheus::{promtool, wait_value, Prometheus};
use common::*;
use serde_json::{json, Value};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn yaml(path: &Path) -> serde_yaml::Value {
    serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

const ALERTS: [&str; 6] = [
    "LatticeRaftNoLeader",
    "LatticeNodeDown",
    "LatticeSchedulingStalled",
    "LatticeHighPreemptionRate",
    "LatticeCheckpointFailure",
    "LatticeDiskSpaceLow",
];

#[test]
fn promtool_accepts_the_rules_the_config_and_the_alert_unit_tests() {
    let root = repo();
    let rules = root.join("infra/alerting/lattice-alerts.yml");
    let config = root.join("infra/prometheus/prometheus.yml");
    let tests = root.join("infra/alerting/tests/lattice-alerts.test.yml");
    for args in [
        vec!["check", "rules", rules.to_str().unwrap()],
        vec!["check", "config", config.to_str().unwrap()],
        vec!["test", "rules", tests.to_str().unwrap()],
    ] {
        let (code, out) = promtool(&args, None);
        assert_eq!(code, 0, "promtool {args:?}:\n{out}");
    }

    // Exactly the seed's six alerts, each with a severity, a summary and a description.
    let doc = yaml(&rules);
    let got: Vec<&serde_yaml::Value> = doc["groups"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_sequence().unwrap())
        .collect();
    let names: Vec<&str> = got.iter().map(|r| r["alert"].as_str().unwrap()).collect();
    assert_eq!(names, ALERTS);
    for r in &got {
        assert!(r["labels"]["severity"].as_str().is_some(), "{r:?}");
        assert!(r["annotations"]["summary"].as_str().is_some(), "{r:?}");
        assert!(r["annotations"]["description"].as_str().is_some(), "{r:?}");
    }
    // The scrape configuration is the seed's, plus the rule file.
    let cfg = yaml(&config);
    let job = &cfg["scrape_configs"][0];
    assert_eq!(job["job_name"], "lattice");
    assert_eq!(
        job["static_configs"][0]["targets"]
            .as_sequence()
            .unwrap()
            .len(),
        3
    );
    assert_eq!(cfg["rule_files"][0], "../alerting/lattice-alerts.yml");

    // Every alert has a unit test in which it fires and one in which it must not.
    let t = yaml(&tests);
    let mut fires = BTreeSet::new();
    let mut quiet = BTreeSet::new();
    for case in t["tests"].as_sequence().unwrap() {
        for a in case["alert_rule_test"].as_sequence().unwrap() {
            let name = a["alertname"].as_str().unwrap().to_string();
            if a["exp_alerts"].as_sequence().unwrap().is_empty() {
                quiet.insert(name);
            } else {
                fires.insert(name);
            }
        }
    }
    let all: BTreeSet<String> = ALERTS.iter().map(|s| s.to_string()).collect();
    assert_eq!(fires, all, "alerts with a firing case");
    assert_eq!(quiet, all, "alerts with a must-not-fire case");
}

fn dashboards() -> Vec<(String, Value)> {
    let dir = repo().join("infra/grafana/dashboards");
    let mut out: Vec<(String, Value)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| {
            let v: Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap())
                .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p.file_name().unwrap().to_string_lossy().into_owned(), v)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// The seed's four dashboards (title suffix) and the panels the issue names in each.
const NAMED_PANELS: [(&str, &[&str]); 4] = [
    (
        "Cluster Overview",
        &["Node states", "Allocation throughput", "Queue depth"],
    ),
    (
        "Scheduling Performance",
        &["Cycle latency", "Placement rate", "Preemption rate"],
    ),
    (
        "Raft Health",
        &[
            "Commit latency",
            "Leader elections",
            "Log compaction: snapshots",
        ],
    ),
    (
        "Per-Tenant Usage",
        &["Resource consumption", "Fair-share deficit"],
    ),
];

/// Every (dashboard title, panel title, expression) with Grafana's variables substituted as
/// "All" would: `$vcluster` and `$tenant` match everything.
fn panel_exprs() -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for (_, d) in dashboards() {
        for p in d["panels"].as_array().unwrap() {
            for t in p["targets"].as_array().unwrap() {
                let expr = t["expr"]
                    .as_str()
                    .unwrap()
                    .replace("$__rate_interval", "1m")
                    .replace("$__interval", "1s")
                    .replace("$__range", "1h")
                    .replace("$vcluster", ".*")
                    .replace("$tenant", ".*");
                assert!(!expr.contains('$'), "unsubstituted variable in {expr}");
                out.push((
                    d["title"].as_str().unwrap().to_string(),
                    p["title"].as_str().unwrap().to_string(),
                    expr,
                ));
            }
        }
    }
    out
}

#[test]
fn dashboards_and_provisioning_are_well_formed() {
    let ds = dashboards();
    assert_eq!(ds.len(), 4);
    let titles: BTreeSet<String> = ds
        .iter()
        .map(|(_, d)| d["title"].as_str().unwrap().to_string())
        .collect();
    for (seed, panels) in NAMED_PANELS {
        let title = format!("Lattice / {seed}");
        assert!(titles.contains(&title), "{title} in {titles:?}");
        let d = &ds
            .iter()
            .find(|(_, d)| d["title"] == title.as_str())
            .unwrap()
            .1;
        let have: Vec<&str> = d["panels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["title"].as_str().unwrap())
            .collect();
        for p in panels {
            assert!(have.contains(p), "{title}: panel {p} in {have:?}");
        }
    }
    let mut uids = BTreeSet::new();
    for (file, d) in &ds {
        assert!(
            uids.insert(d["uid"].as_str().unwrap().to_string()),
            "{file}: duplicate uid"
        );
        // Importable through the UI: no instance-specific id.
        assert!(d["id"].is_null(), "{file}");
        let vars: BTreeMap<&str, &Value> = d["templating"]["list"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| (v["name"].as_str().unwrap(), v))
            .collect();
        assert_eq!(vars["datasource"]["type"], "datasource", "{file}");
        assert_eq!(vars["datasource"]["query"], "prometheus", "{file}");
        let exprs: Vec<&str> = d["panels"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|p| p["targets"].as_array().unwrap())
            .map(|t| t["expr"].as_str().unwrap())
            .collect();
        for v in ["vcluster", "tenant"] {
            // A dashboard whose queries filter on the label offers the variable, with "All".
            if exprs.iter().any(|e| e.contains(&format!("${v}"))) {
                let var = vars
                    .get(v)
                    .unwrap_or_else(|| panic!("{file}: no ${v} variable"));
                assert_eq!(var["type"], "query", "{file}: ${v}");
                assert_eq!(var["includeAll"], true, "{file}: ${v}");
                assert_eq!(var["allValue"], ".*", "{file}: ${v}");
            }
        }
        for p in d["panels"].as_array().unwrap() {
            assert_eq!(
                p["datasource"]["uid"], "${datasource}",
                "{file}: {}",
                p["title"]
            );
            assert!(
                !p["targets"].as_array().unwrap().is_empty(),
                "{file}: {}",
                p["title"]
            );
            for t in p["targets"].as_array().unwrap() {
                assert_eq!(
                    t["datasource"]["uid"], "${datasource}",
                    "{file}: {}",
                    p["title"]
                );
            }
        }
    }
    // Every expression parses: wrapped in recording rules, `promtool check rules` accepts it.
    let dir = tempdir();
    let rules: Vec<Value> = panel_exprs()
        .into_iter()
        .enumerate()
        .map(|(i, (_, _, e))| json!({"record": format!("dashboard:expr_{i}"), "expr": e}))
        .collect();
    let file = dir.path().join("panels.yml");
    std::fs::write(
        &file,
        serde_yaml::to_string(&json!({"groups": [{"name": "panels", "rules": rules}]})).unwrap(),
    )
    .unwrap();
    let (code, out) = promtool(&["check", "rules", file.to_str().unwrap()], None);
    assert_eq!(code, 0, "{out}");

    // Provisioning: a Prometheus datasource and a file provider for the dashboards.
    let root = repo();
    let dsp = yaml(&root.join("infra/grafana/provisioning/datasources/lattice-prometheus.yml"));
    assert_eq!(dsp["datasources"][0]["type"], "prometheus");
    let dbp = yaml(&root.join("infra/grafana/provisioning/dashboards/lattice.yml"));
    assert_eq!(dbp["providers"][0]["type"], "file");
    assert!(dbp["providers"][0]["options"]["path"].as_str().is_some());
}

// ---- a real cluster, a real Prometheus ------------------------------------------------

/// On top of the common fast-election settings (`common::raft::FAST`).
const MEMBER_ENV: [(&str, &str); 3] = [
    // The workload names tenants without creating them first.
    ("LATTICE_SERVER__AUTO_CREATE_TENANTS", "true"),
    // Compact often, so that the snapshot counters move.
    ("LATTICE_SERVER__SNAPSHOT_EVERY_ENTRIES", "5"),
    ("LATTICE_SERVER__LOG_ENTRIES_KEPT_AFTER_SNAPSHOT", "5"),
];

fn member(dir: &Path, id: u64, join: Option<&str>) -> Proc {
    common::raft::member(dir, id, "127.0.0.1:0", join, &MEMBER_ENV)
}

#[test]
fn a_real_cluster_scraped_by_a_real_prometheus_matches_dashboards_alerts_and_workload() {
    let dir = tempdir();
    // Three members: 1 bootstraps, 2 and 3 join.
    let m1 = member(dir.path(), 1, None);
    let m2 = member(dir.path(), 2, Some(&m1.url));
    let m3 = member(dir.path(), 3, Some(&m1.url));
    let mut ms = [m1, m2, m3];
    let urls: Vec<String> = ms.iter().map(|m| m.url.clone()).collect();
    let leader = wait_for(60, "3 voters and a leader", || {
        let s = common::raft::status(&urls[0])?;
        let voters = s["members"]
            .as_array()?
            .iter()
            .filter(|m| m["voter"] == true)
            .count();
        (voters == 3).then_some(())?;
        s["leader"].as_u64()
    });

    // A real Prometheus scraping the three members every second with the shipped rules.
    let targets: Vec<String> = urls
        .iter()
        .map(|u| u.trim_start_matches("http://").to_string())
        .collect();
    let config = dir.path().join("prometheus.yml");
    let rules = repo().join("infra/alerting/lattice-alerts.yml");
    std::fs::write(
        &config,
        serde_yaml::to_string(&json!({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [rules.to_str().unwrap()],
            "scrape_configs": [{"job_name": "lattice", "static_configs": [{"targets": targets}]}],
        }))
        .unwrap(),
    )
    .unwrap();
    let (code, out) = promtool(&["check", "config", config.to_str().unwrap()], None);
    assert_eq!(code, 0, "{out}");
    let prom = Prometheus::start(dir.path(), &config);
    wait_value(&prom, 60, r#"count(up{job="lattice"} == 1)"#, 3.0);

    // An agent with two nodes, connected to every member.
    let work = dir.path().join("agent");
    let _agent = start_agent(&urls.join(","), "w", 2, &work, &[]);
    wait_nodes_ready(&urls[0], 2);
    wait_value(&prom, 30, r#"min(lattice_nodes_total{state="ready"})"#, 2.0);

    // The workload, submitted through every member. Each step waits until Prometheus saw the
    // previous one, so that every counter increase lands between two scrapes.
    let a = submit(&urls[0], json!({"tenant": "physics", "command": ["true"]}));
    wait_state(&urls[0], a, "completed", 30);
    wait_value(
        &prom,
        30,
        r#"sum(lattice_scheduling_placements_total{tenant="physics"})"#,
        1.0,
    );
    let b = submit(
        &urls[1],
        json!({"tenant": "physics", "command": ["sh", "-c", "exit 3"]}),
    );
    wait_state(&urls[1], b, "failed", 30);
    wait_value(
        &prom,
        30,
        r#"sum(lattice_scheduling_placements_total{tenant="physics"})"#,
        2.0,
    );
    let c = submit(
        &urls[2],
        json!({"tenant": "bio", "command": ["sleep", "600"]}),
    );
    wait_state(&urls[2], c, "running", 30);
    wait_value(
        &prom,
        30,
        r#"max(lattice_tenant_nodes_in_use{tenant="bio"})"#,
        1.0,
    );
    let (s, v) = call(
        "DELETE",
        &format!("{}/api/v1/allocations/{c}", urls[1]),
        None,
    );
    assert_eq!(s, 200, "{v}");
    // The node is freed once the agent reports the process gone.
    wait_for(30, "bio's node freed", || {
        let n = get(&format!("{}/api/v1/nodes", urls[0]));
        n["nodes"]
            .as_array()?
            .iter()
            .all(|n| n["allocations"].as_array().is_some_and(|a| a.is_empty()))
            .then_some(())
    });
    // Needs three nodes: stays pending (queued).
    let d = submit(
        &urls[0],
        json!({"tenant": "bio", "nodes": 3, "command": ["true"]}),
    );
    assert_eq!(allocation(&urls[0], d)["state"], "pending");

    // A preemption with a checkpoint: a low-priority bio job that checkpoints on SIGUSR1 is
    // preempted by a 2-node physics job, which runs; the bio job then resumes from its
    // checkpoint and completes.
    let e = submit(
        &urls[1],
        json!({"tenant": "bio", "priority": 1, "checkpoint": "signal",
               "script": "[ -f ckpt ] && exit 0\n\
                          trap 'touch ckpt; echo ok > \"$LATTICE_CHECKPOINT_ACK\"' USR1\n\
                          echo started\n\
                          while true; do sleep 0.1; done\n"}),
    );
    wait_for(30, "the bio job to start", || {
        let (s, v) = call(
            "GET",
            &format!("{}/api/v1/allocations/{e}/logs", urls[1]),
            None,
        );
        (s == 200 && v.to_string().contains("started")).then_some(())
    });
    let f = submit(
        &urls[2],
        json!({"tenant": "physics", "priority": 9, "nodes": 2, "command": ["true"]}),
    );
    wait_state(&urls[2], f, "completed", 60);
    let done = wait_state(&urls[1], e, "completed", 60);
    assert_eq!(done["preempt_count"], 1, "{done}");
    assert_eq!(done["last_checkpoint"]["outcome"], "success", "{done}");
    wait_value(&prom, 30, "sum(lattice_scheduling_preemptions_total)", 1.0);
    wait_value(
        &prom,
        30,
        r#"sum(lattice_checkpoint_duration_seconds_count{result="success"})"#,
        1.0,
    );

    // Prometheus has the final state from all three members.
    wait_value(
        &prom,
        30,
        r#"count(lattice_allocations_total{state="pending",tenant="bio",vcluster="default"} == 4)"#,
        3.0,
    );
    wait_value(
        &prom,
        30,
        r#"count(lattice_allocations_total{state="completed",tenant="bio",vcluster="default"} == 1)"#,
        3.0,
    );
    wait_value(
        &prom,
        30,
        r#"count(lattice_allocations_total{state="completed",tenant="physics",vcluster="default"} == 2)"#,
        3.0,
    );
    wait_value(
        &prom,
        30,
        r#"count(lattice_allocations_total{state="cancelled",tenant="bio",vcluster="default"} == 1)"#,
        3.0,
    );
    wait_value(
        &prom,
        30,
        r#"max(lattice_tenant_nodes_in_use{tenant="bio"})"#,
        0.0,
    );
    // Two audit queries: each is itself an audit entry (`access.audit`), committed through
    // Raft, so every member counts both.
    for u in &urls[..2] {
        let (s, v) = call("GET", &format!("{u}/api/v1/audit?limit=1"), None);
        assert_eq!(s, 200, "{v}");
    }
    wait_value(
        &prom,
        30,
        "count(lattice_raft_sensitive_audit_entries_total == 2)",
        3.0,
    );

    // 1. Every member's exposition passes promtool.
    for u in &urls {
        let text = http()
            .get(format!("{u}/metrics"))
            .send()
            .unwrap()
            .text()
            .unwrap();
        let (code, out) = promtool(&["check", "metrics"], Some(&text));
        assert_eq!(code, 0, "promtool check metrics on {u}: {out}\n{text}");
    }

    // 2. Counters and gauges moved by what the workload implies.
    let eq = |promql: &str, want: f64| {
        assert_eq!(prom.value(promql), Some(want), "{promql}");
    };
    // Replicated: every member exports the same allocation counters (max = min).
    // bio's e entered pending and running twice (preempted once), preempting once.
    for (state, tenant, n) in [
        ("pending", "physics", 3.0),
        ("running", "physics", 3.0),
        ("completed", "physics", 2.0),
        ("failed", "physics", 1.0),
        ("cancelled", "physics", 0.0),
        ("preempting", "physics", 0.0),
        ("pending", "bio", 4.0),
        ("running", "bio", 3.0),
        ("completed", "bio", 1.0),
        ("cancelled", "bio", 1.0),
        ("preempting", "bio", 1.0),
    ] {
        let sel = format!(
            r#"lattice_allocations_total{{state="{state}",tenant="{tenant}",vcluster="default"}}"#
        );
        eq(&format!("max({sel})"), n);
        eq(&format!("min({sel})"), n);
        eq(&format!("count({sel})"), 3.0);
    }
    // Placements = runs started, counted once (by the leader): sum over members. bio's e
    // started twice.
    eq("sum(lattice_scheduling_placements_total)", 6.0);
    eq(
        r#"sum(lattice_scheduling_placements_total{tenant="physics",vcluster="default"})"#,
        3.0,
    );
    eq(
        r#"sum(lattice_scheduling_placements_total{tenant="bio",vcluster="default"})"#,
        3.0,
    );
    eq(
        &format!(
            r#"sum(lattice_scheduling_placements_total{{instance="{}"}})"#,
            targets[(leader - 1) as usize]
        ),
        6.0,
    );
    // One preemption (of bio's e, by the leader) and one successful checkpoint (observed by
    // the member that committed the agent's report); every series exists on every member.
    eq("sum(lattice_scheduling_preemptions_total)", 1.0);
    eq(
        r#"sum(lattice_scheduling_preemptions_total{tenant="bio",vcluster="default"})"#,
        1.0,
    );
    eq(
        &format!(
            r#"sum(lattice_scheduling_preemptions_total{{instance="{}"}})"#,
            targets[(leader - 1) as usize]
        ),
        1.0,
    );
    eq(
        r#"count(lattice_scheduling_preemptions_total{tenant="bio"})"#,
        3.0,
    );
    eq("sum(lattice_checkpoint_duration_seconds_count)", 1.0);
    eq(
        r#"sum(lattice_checkpoint_duration_seconds_count{result="success"})"#,
        1.0,
    );
    eq(
        "count(count by (result) (lattice_checkpoint_duration_seconds_count))",
        3.0,
    );
    // Its duration landed in a bucket at or below the timeout (60 s).
    eq(
        r#"sum(lattice_checkpoint_duration_seconds_bucket{result="success",le="60"})"#,
        1.0,
    );
    eq("max(lattice_allocations_active)", 0.0);
    eq(
        r#"max(max_over_time(lattice_allocations_active{tenant="bio"}[10m]))"#,
        1.0,
    );
    eq(
        r#"max(lattice_scheduling_queue_depth{vcluster="default"})"#,
        1.0,
    );
    eq(r#"max(lattice_nodes_total{state="ready"})"#, 2.0);
    eq(r#"max(lattice_nodes_total{state="down"})"#, 0.0);
    eq("sum(lattice_raft_is_leader)", 1.0);
    eq(
        &format!(
            r#"lattice_raft_is_leader{{instance="{}"}}"#,
            targets[(leader - 1) as usize]
        ),
        1.0,
    );
    eq(
        "count(count by (node) (lattice_node_last_heartbeat_timestamp_seconds))",
        2.0,
    );
    assert!(
        prom.value("max(time() - max by (node) (lattice_node_last_heartbeat_timestamp_seconds))")
            .unwrap()
            < 10.0
    );
    assert!(
        prom.value(r#"max(lattice_tenant_node_seconds_total{tenant="bio"})"#)
            .unwrap()
            > 0.0
    );
    // Fair-share deficits of a vCluster's active tenants sum to 0 (targets and actual shares
    // each sum to 1).
    assert_eq!(
        prom.query("lattice_tenant_fair_share_deficit").len(),
        6,
        "2 tenants x 3 members"
    );
    assert!(
        prom.value("abs(sum(max by (tenant) (lattice_tenant_fair_share_deficit)))")
            .unwrap()
            < 1e-9
    );
    // Every command went through the leader's Raft: 4 submissions, 1 cancel, 1 registration,
    // at least 3 plans and 3 exit reports.
    assert!(
        prom.value("sum(lattice_raft_commit_latency_seconds_count)")
            .unwrap()
            >= 12.0
    );
    assert!(
        prom.value("sum(lattice_scheduling_cycle_duration_seconds_count)")
            .unwrap()
            >= 3.0
    );
    // Each member compacted its log at least once; term and leader changes agree.
    assert!(
        prom.value(r#"min(lattice_raft_snapshots_total{kind="built"})"#)
            .unwrap()
            >= 1.0
    );
    eq("count(count by (instance) (lattice_raft_term))", 3.0);
    assert!(
        prom.value("min(lattice_raft_leader_changes_total)")
            .unwrap()
            >= 1.0
    );
    // API requests: every submission answered 201 by the member it was sent to.
    eq(
        r#"sum(lattice_api_requests_total{method="POST",route="/api/v1/allocations",status="201"})"#,
        6.0,
    );
    eq(
        r#"sum(lattice_api_requests_total{method="DELETE",route="/api/v1/allocations/{id}",status="200"})"#,
        1.0,
    );
    assert!(
        prom.value(r#"sum(lattice_api_requests_total{route="/raft/propose"})"#)
            .unwrap()
            >= 2.0
    );
    assert!(
        prom.query(r#"lattice_api_requests_total{route=~".*/[0-9]+.*"}"#)
            .is_empty(),
        "no raw paths"
    );

    // 3. Every dashboard panel expression evaluates; the named panels have data.
    let named: BTreeSet<(String, String)> = NAMED_PANELS
        .iter()
        .flat_map(|(d, ps)| {
            ps.iter()
                .map(move |p| (format!("Lattice / {d}"), p.to_string()))
        })
        .collect();
    let mut with_data: BTreeSet<(String, String)> = BTreeSet::new();
    for (dash, panel, expr) in panel_exprs() {
        let result = prom.query(&expr);
        if !result.is_empty() {
            with_data.insert((dash.clone(), panel.clone()));
        }
    }
    for n in &named {
        assert!(with_data.contains(n), "panel {n:?} returned no data");
    }
    for p in ["Checkpoint duration", "Checkpoints by result"] {
        let n = (
            "Lattice / Scheduling Performance".to_string(),
            p.to_string(),
        );
        assert!(with_data.contains(&n), "panel {n:?} returned no data");
    }
    // Quantiles of real activity are numbers.
    for expr in [
        "histogram_quantile(0.99, sum by (le) (rate(lattice_scheduling_cycle_duration_seconds_bucket[5m])))",
        "histogram_quantile(0.99, sum by (le) (rate(lattice_raft_commit_latency_seconds_bucket[5m])))",
    ] {
        let v = prom.value(expr).unwrap_or(f64::NAN);
        assert!(v.is_finite() && v > 0.0, "{expr} = {v}");
    }

    // 4. Every alert expression evaluates; none fires on a healthy cluster.
    let doc = yaml(&rules);
    for g in doc["groups"].as_sequence().unwrap() {
        for r in g["rules"].as_sequence().unwrap() {
            prom.query(r["expr"].as_str().unwrap());
        }
    }
    wait_for(30, "rules evaluated", || {
        let r: Value = http()
            .get(format!("{}/api/v1/rules", prom.url))
            .send()
            .ok()?
            .json()
            .ok()?;
        let rules = r["data"]["groups"][0]["rules"].as_array()?.clone();
        (rules.len() == 6 && rules.iter().all(|r| r["health"] == "ok")).then_some(())
    });
    let firing: Vec<Value> = prom
        .alerts()
        .into_iter()
        .filter(|a| a["state"] == "firing")
        .collect();
    assert!(firing.is_empty(), "{firing:?}");

    // 5. Kill the two followers: the leader alone loses its quorum, no member leads, and
    //    after its 30 s `for` LatticeRaftNoLeader fires.
    let li = (leader - 1) as usize;
    let killed = Instant::now();
    for (i, m) in ms.iter_mut().enumerate() {
        if i != li {
            m.kill9();
        }
    }
    wait_for(20, "no member leading", || {
        (prom.value("sum(lattice_raft_is_leader)") == Some(0.0)).then_some(())
    });
    wait_for(90, "LatticeRaftNoLeader firing", || {
        (prom.alert_state("LatticeRaftNoLeader").as_deref() == Some("firing")).then_some(())
    });
    assert!(
        killed.elapsed() >= Duration::from_secs(30),
        "fired after {:?}, before its 30 s",
        killed.elapsed()
    );
    let a = prom
        .alerts()
        .into_iter()
        .find(|a| a["labels"]["alertname"] == "LatticeRaftNoLeader")
        .unwrap();
    assert_eq!(a["labels"]["severity"], "critical");
    assert_eq!(
        a["annotations"]["summary"],
        "No Raft leader for more than 30 seconds"
    );
}
