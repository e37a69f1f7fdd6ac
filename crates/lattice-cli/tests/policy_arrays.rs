//! Job arrays through the real binaries: `lattice submit --array` (and `#SBATCH --array`)
//! creates every task at once, each task sees `LATTICE_ARRAY_ID` and `LATTICE_TASK_INDEX`,
//! `%N` caps how many run at once, `lattice status` folds the array into one line unless
//! `--expand`, and `lattice cancel` takes the whole array or one task (`1_7`).

mod common;

use common::*;
use serde_json::json;

#[test]
fn every_task_runs_with_its_index_and_no_more_than_the_cap_at_once() {
    let c = PolicyCluster::start(4, &[]);
    let script = c.dir.path().join("task.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\n#SBATCH --array=0-5%2\n#SBATCH -t 5m\n\
         echo \"$LATTICE_ARRAY_ID $LATTICE_TASK_INDEX\"\nsleep 1\n",
    )
    .unwrap();
    let out = c.ok(&["submit", script.to_str().unwrap()]);
    assert_eq!(out.trim(), "Submitted array 1 (tasks 0-5%2)");

    let mut most = 0;
    wait_for(90, "every task to complete", || {
        let v = c.get("/api/v1/arrays/1");
        most = most.max(v["states"]["running"].as_u64().unwrap_or(0));
        (v["states"]["completed"] == 6).then_some(())
    });
    assert!((1..=2).contains(&most), "{most} tasks ran at once");

    let v = c.get("/api/v1/arrays/1");
    assert_eq!(v["size"], 6);
    assert_eq!(v["max_running"], 2);
    assert_eq!(v["array"], "0-5%2");
    for i in 0..6u64 {
        let task = &v["tasks"][i as usize];
        assert_eq!(
            (task["index"].as_u64(), task["id"].as_u64()),
            (Some(i), Some(1 + i))
        );
        let (s, text) = c.call("GET", &format!("/api/v1/allocations/1_{i}/logs"), None);
        assert_eq!(s, 200);
        assert_eq!(text, json!(format!("1 {i}\n")));
    }
    // An element is an allocation too, by either name.
    assert_eq!(c.get("/api/v1/allocations/1_4")["id"], 5);
    assert_eq!(c.get("/api/v1/allocations/5")["array_index"], 4);
    let (s, v) = c.call("GET", "/api/v1/allocations/1_9", None);
    assert_eq!(s, 404, "{v}");
}

#[test]
fn status_folds_an_array_and_cancel_takes_all_of_it_or_one_task() {
    let c = PolicyCluster::start(1, &[]);
    let out = c.ok(&[
        "submit",
        "--array",
        "0-9",
        "-t",
        "10m",
        "--parsable",
        "--",
        "sleep",
        "300",
    ]);
    assert_eq!(out.trim(), "1");
    wait_state(&c.api, 1, "running", 30);
    c.wait_reason(10, "resources");

    let status = c.ok(&["status"]);
    let lines: Vec<&str> = status.lines().collect();
    assert_eq!(lines.len(), 2, "{status}");
    assert!(lines[1].starts_with("1_[0-9]"), "{status}");
    assert!(lines[1].contains("running"), "{status}");
    assert!(
        lines[1].ends_with("9 pending, 1 running (resources)"),
        "{status}"
    );
    let expanded = c.ok(&["status", "--expand"]);
    let ids: Vec<&str> = expanded
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(ids, (0..10).map(|i| format!("1_{i}")).collect::<Vec<_>>());

    assert_eq!(c.ok(&["cancel", "1_9"]).trim(), "Cancelled allocation 1_9");
    assert_eq!(allocation(&c.api, 10)["state"], "cancelled");
    assert_eq!(allocation(&c.api, 9)["state"], "pending");
    assert_eq!(c.ok(&["cancel", "1"]).trim(), "Cancelled array 1 (9 tasks)");
    let v = c.get("/api/v1/arrays/1");
    assert_eq!(v["states"], json!({"cancelled": 10}), "{v}");
    // Nothing left to cancel: an error line, exit 1.
    let (code, err) = c.fails(&["cancel", "1"]);
    assert_eq!(code, 1);
    assert!(err.contains("already ended"), "{err}");
    wait_for(30, "the node to be empty", || {
        let n = c.get("/api/v1/nodes/n");
        n["allocations"].as_array()?.is_empty().then_some(())
    });
}
