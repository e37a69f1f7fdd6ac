//! Preemption and checkpointing through the real binaries, with real processes and signals:
//! a low-priority job that traps SIGUSR1 and acknowledges its checkpoint is preempted by a
//! high-priority one, which then runs on its node; the low one is requeued under the same ID
//! and resumes from its checkpoint with `LATTICE_RESTART_COUNT=1`. A job that ignores the
//! signal is stopped after its checkpoint timeout (outcome `timeout`); `--no-preempt` work
//! is never touched; on-demand and periodic checkpoints report their outcome and duration.

mod common;

use common::*;
use serde_json::{json, Value};

/// A job that checkpoints on SIGUSR1 (writes `ckpt` in its working directory, then the
/// acknowledgement) and, when it finds a checkpoint, resumes from it and ends.
const RESUMABLE: &str = r#"#!/bin/sh
if [ -f ckpt ]; then
  echo "resumed from $(cat ckpt) restart=$LATTICE_RESTART_COUNT"
  exit 0
fi
echo "first run restart=$LATTICE_RESTART_COUNT"
trap 'echo step-7 > ckpt; echo ok > "$LATTICE_CHECKPOINT_ACK"' USR1
while true; do sleep 0.1; done
"#;

fn metric(c: &PolicyCluster, line_prefix: &str) -> Option<f64> {
    let text = http()
        .get(format!("{}/metrics", c.api))
        .send()
        .ok()?
        .text()
        .ok()?;
    text.lines()
        .find(|l| l.starts_with(line_prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

fn wait_preempt_count(c: &PolicyCluster, id: u64, n: u64) -> Value {
    wait_for(
        60,
        &format!("allocation {id} preempted {n} time(s)"),
        || {
            let a = allocation(&c.api, id);
            (a["preempt_count"] == n).then_some(a)
        },
    )
}

#[test]
fn a_checkpointing_job_is_preempted_requeued_and_resumes_from_its_checkpoint() {
    let c = PolicyCluster::start(1, &[]);
    let low = submit(
        &c.api,
        json!({"script": RESUMABLE, "priority": 2, "checkpoint": "signal",
               "checkpoint_timeout_seconds": 30}),
    );
    wait_for(30, "the low job to print its first line", || {
        c.ok(&["logs", &low.to_string()])
            .contains("first run restart=0")
            .then_some(())
    });
    let high = submit(
        &c.api,
        json!({"command": ["sh", "-c", "echo high ran on $LATTICE_NODE_ID"], "priority": 8}),
    );

    // The low job checkpoints, stops, and goes back to pending under the same ID.
    let a = wait_preempt_count(&c, low, 1);
    assert_eq!(a["id"], low);
    let ckpt = &a["last_checkpoint"];
    assert_eq!(ckpt["trigger"], "preemption", "{a}");
    assert_eq!(ckpt["outcome"], "success", "{a}");
    assert!(ckpt["duration_ms"].as_u64().is_some(), "{a}");
    assert_eq!(a["checkpoint_count"], 1);
    assert!(a["last_checkpoint_at"].is_string(), "{a}");

    // The high one runs on the freed node, then the low one resumes there.
    let h = wait_state(&c.api, high, "completed", 60);
    assert_eq!(h["assigned_nodes"], json!(["n"]));
    let l = wait_state(&c.api, low, "completed", 60);
    assert_eq!(l["preempt_count"], 1);
    let logs = c.ok(&["logs", &low.to_string()]);
    assert!(logs.contains("first run restart=0"), "{logs}");
    assert!(logs.contains("resumed from step-7 restart=1"), "{logs}");
    let high_logs = c.ok(&["logs", &high.to_string()]);
    assert!(high_logs.contains("high ran on n"), "{high_logs}");

    // Both hooks of the observability issue moved.
    let preemptions = metric(
        &c,
        "lattice_scheduling_preemptions_total{tenant=\"default\",vcluster=\"default\"}",
    );
    assert_eq!(preemptions, Some(1.0));
    let checkpoints = metric(
        &c,
        "lattice_checkpoint_duration_seconds_count{result=\"success\"}",
    );
    assert_eq!(checkpoints, Some(1.0));
    let detail = c.ok(&["status", &low.to_string()]);
    assert!(detail.contains("preempt_count"), "{detail}");
}

#[test]
fn a_job_that_ignores_the_signal_is_stopped_after_the_timeout() {
    let c = PolicyCluster::start(1, &[]);
    let stubborn = c.ok(&[
        "submit",
        "--parsable",
        "--priority",
        "1",
        "--checkpoint=signal",
        "--checkpoint-timeout",
        "1",
        "--wrap",
        "trap '' USR1; echo started; sleep 300",
    ]);
    let stubborn: u64 = stubborn.trim().parse().expect("an ID");
    wait_state(&c.api, stubborn, "running", 30);
    wait_for(30, "the job to start", || {
        c.ok(&["logs", &stubborn.to_string()])
            .contains("started")
            .then_some(())
    });
    let high = submit(&c.api, json!({"command": ["true"], "priority": 9}));
    let a = wait_preempt_count(&c, stubborn, 1);
    let ckpt = &a["last_checkpoint"];
    assert_eq!(ckpt["outcome"], "timeout", "{a}");
    assert!(ckpt["duration_ms"].as_u64().unwrap() >= 1000, "{a}");
    assert_eq!(a["checkpoint_count"], 0);
    wait_state(&c.api, high, "completed", 60);
    let timeouts = metric(
        &c,
        "lattice_checkpoint_duration_seconds_count{result=\"timeout\"}",
    );
    assert_eq!(timeouts, Some(1.0));
    c.ok(&["cancel", &stubborn.to_string()]);
}

#[test]
fn no_preempt_jobs_and_preemption_off_vclusters_are_never_touched() {
    let c = PolicyCluster::start(2, &[]);
    let keep = c.ok(&[
        "submit",
        "--parsable",
        "--priority",
        "1",
        "--no-preempt",
        "--",
        "sleep",
        "300",
    ]);
    let keep: u64 = keep.trim().parse().expect("an ID");
    let other = submit(&c.api, json!({"command": ["sleep", "300"], "priority": 1}));
    wait_state(&c.api, keep, "running", 30);
    wait_state(&c.api, other, "running", 30);
    c.ok(&["vclusters", "set", "default", "--preemption", "off"]);
    let high = submit(&c.api, json!({"command": ["true"], "priority": 9}));
    c.wait_reason(high, "resources");
    // Preemption back on: only the preemptible one goes.
    c.ok(&["vclusters", "set", "default", "--preemption", "on"]);
    wait_state(&c.api, high, "completed", 60);
    let k = allocation(&c.api, keep);
    assert_eq!(k["state"], "running", "{k}");
    assert_eq!(k["preempt_count"], 0);
    assert_eq!(k["preemptible"], false);
    let o = allocation(&c.api, other);
    assert_eq!(o["preempt_count"], 1, "{o}");
    // Nothing can make room for a priority-9 job of 2 nodes now: it waits.
    let big = submit(
        &c.api,
        json!({"command": ["true"], "priority": 9, "nodes": 2}),
    );
    c.wait_reason(big, "resources");
    assert_eq!(allocation(&c.api, keep)["state"], "running");
    for id in [keep, other, big] {
        c.ok(&["cancel", &id.to_string()]);
    }
}

#[test]
fn on_demand_and_periodic_checkpoints_report_their_duration() {
    let c = PolicyCluster::start(2, &[]);
    let job = submit(
        &c.api,
        json!({"script": "trap 'sleep 0.2; echo ok > \"$LATTICE_CHECKPOINT_ACK\"' USR1\n\
                          while true; do sleep 0.1; done\n",
               "checkpoint": "signal", "checkpoint_timeout_seconds": 10}),
    );
    wait_state(&c.api, job, "running", 30);
    let out = c.ok(&["checkpoint", &job.to_string()]);
    assert!(
        out.starts_with(&format!("checkpoint of {job}: success in ")),
        "{out}"
    );
    let a = allocation(&c.api, job);
    assert_eq!(
        a["last_checkpoint"]["trigger"],
        json!({"request": 1}),
        "{a}"
    );
    assert!(
        a["last_checkpoint"]["duration_ms"].as_u64().unwrap() >= 200,
        "{a}"
    );
    assert_eq!(a["checkpoint_count"], 1);

    // Not checkpointable: refused, naming why.
    let plain = submit(&c.api, json!({"command": ["sleep", "300"]}));
    wait_state(&c.api, plain, "running", 30);
    let (code, err) = c.fails(&["checkpoint", &plain.to_string()]);
    assert_eq!(code, 1);
    assert!(err.contains("checkpoint: none"), "{err}");
    c.ok(&["cancel", &plain.to_string()]);
    c.ok(&["cancel", &job.to_string()]);

    // Periodic: every second of the run.
    let periodic = submit(
        &c.api,
        json!({"script": "trap 'echo ok > \"$LATTICE_CHECKPOINT_ACK\"' USR1\n\
                          while true; do sleep 0.1; done\n",
               "checkpoint": "signal", "checkpoint_interval_seconds": 1}),
    );
    let a = wait_for(30, "two periodic checkpoints", || {
        let a = allocation(&c.api, periodic);
        (a["checkpoint_count"].as_u64() >= Some(2)).then_some(a)
    });
    assert!(a["last_checkpoint"]["trigger"]["periodic"].is_u64(), "{a}");
    c.ok(&["cancel", &periodic.to_string()]);
}
