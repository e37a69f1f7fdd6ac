//! Dependencies through the real binaries: `--depends-on ID:success|any` (and
//! `#SBATCH --dependency=afterok:ID`) waits with reason `dependency`, a failed `success`
//! dependency cancels the dependent with reason `dependency_failed`, and unknown or future IDs
//! are refused at submit.

mod common;

use common::*;
use serde_json::json;

fn id_of(out: &str) -> u64 {
    out.trim()
        .parse()
        .unwrap_or_else(|_| panic!("not an ID: {out:?}"))
}

#[test]
fn a_dependent_waits_for_success_then_runs() {
    let c = PolicyCluster::start(2, &[]);
    let first = submit(&c.api, json!({"command": ["sleep", "2"]}));
    let then = id_of(&c.ok(&[
        "submit",
        "--parsable",
        "--depends-on",
        &format!("{first}:success"),
        "--",
        "true",
    ]));
    let a = c.wait_reason(then, "dependency");
    assert_eq!(
        a["reason_detail"],
        format!("waiting for allocation {first} to complete successfully")
    );
    assert_eq!(
        a["depends_on"],
        json!([{"on": first, "array": false, "kind": "success"}])
    );
    assert!(c.ok(&["status"]).contains("(dependency)"));
    let done = wait_state(&c.api, then, "completed", 60);
    let first_end = allocation(&c.api, first)["finished_at"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(done["started_at"].as_str().unwrap() >= first_end.as_str());
}

#[test]
fn a_failed_success_dependency_cancels_and_any_still_runs() {
    let c = PolicyCluster::start(2, &[]);
    let failing = submit(&c.api, json!({"script": "sleep 1\nexit 3\n"}));
    let script = c.dir.path().join("after.sh");
    std::fs::write(
        &script,
        format!("#!/bin/sh\n#SBATCH --dependency=afterok:{failing}\ntrue\n"),
    )
    .unwrap();
    let needs_success = id_of(&c.ok(&["submit", "--parsable", script.to_str().unwrap()]));
    let any = id_of(&c.ok(&[
        "submit",
        "--parsable",
        "--dependency",
        &format!("afterany:{failing}"),
        "--",
        "true",
    ]));
    wait_state(&c.api, failing, "failed", 30);
    let a = wait_state(&c.api, needs_success, "cancelled", 30);
    assert_eq!(a["reason"], "dependency_failed", "{a}");
    assert_eq!(a["reason_detail"], format!("dependency {failing} failed"));
    wait_state(&c.api, any, "completed", 30);
}

#[test]
fn unknown_and_future_dependencies_are_refused() {
    let c = PolicyCluster::start(1, &[]);
    let (s, v) = c.call(
        "POST",
        "/api/v1/allocations",
        Some(r#"{"command": ["true"], "depends_on": "99:any"}"#),
    );
    assert_eq!(s, 400, "{v}");
    assert_eq!(v["detail"]["field"], "depends_on");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("allocation 99 does not exist"),
        "{v}"
    );
    // A job cannot name itself (the ID it would get): dependencies never form a cycle.
    let (code, err) = c.fails(&["submit", "--depends-on", "1", "--", "true"]);
    assert_eq!(code, 1);
    assert!(err.contains("cycle"), "{err}");
    let (code, err) = c.fails(&["submit", "--depends-on", "1:maybe", "--", "true"]);
    assert_eq!(code, 2, "a usage error, nothing sent");
    assert!(err.contains("--depends-on"), "{err}");
    assert!(c.get("/api/v1/allocations")["allocations"]
        .as_array()
        .unwrap()
        .is_empty());
}
