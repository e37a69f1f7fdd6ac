//! `lattice dev` plus the CLI, as a newcomer uses them: submit, status, logs, nodes, cancel,
//! clear one-line errors, and Ctrl-C stopping everything including running jobs.

mod common;

use common::*;
use std::time::Duration;

fn start_dev(dir: &std::path::Path) -> Proc {
    spawn(
        &[
            "dev",
            "--api-addr",
            "127.0.0.1:0",
            "--nodes",
            "2",
            "--data-dir",
            dir.to_str().unwrap(),
        ],
        &[],
        "control plane : ",
    )
}

#[test]
fn dev_cluster_runs_a_script_submitted_with_the_cli() {
    let dir = tempdir();
    let mut dev = start_dev(dir.path());
    let ep = dev.url.clone();
    wait_healthy(&ep);
    wait_nodes_ready(&ep, 2);

    let script = dir.path().join("job.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\n#SBATCH --job-name=greet\n#SBATCH -N 2\necho hello from $LATTICE_NODE_ID\n",
    )
    .unwrap();
    let (code, out, err) = cli(&ep, &["submit", script.to_str().unwrap()]);
    assert_eq!(code, 0, "submit failed: {out} {err}");
    assert_eq!(out.trim(), "Submitted allocation 1");
    let a = wait_state(&ep, 1, "completed", 30);
    assert_eq!(a["name"], "greet");
    assert_eq!(a["nodes"], 2);

    let (code, out, _) = cli(&ep, &["logs", "1"]);
    assert_eq!(code, 0);
    assert_eq!(out, "hello from dev-1\n");

    let (code, out, _) = cli(&ep, &["status", "--all"]);
    assert_eq!(code, 0);
    assert!(out.lines().next().unwrap().contains("STATE"), "{out}");
    assert!(out.contains("greet") && out.contains("completed"), "{out}");

    let (code, out, _) = cli(&ep, &["nodes"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("dev-1") && out.contains("dev-2") && out.contains("ready"),
        "{out}"
    );

    let (code, out, _) = cli(&ep, &["submit", "--parsable", "--", "sleep", "300"]);
    assert_eq!(code, 0);
    let id: u64 = out.trim().parse().unwrap();
    wait_state(&ep, id, "running", 30);
    let (code, out, _) = cli(&ep, &["cancel", &id.to_string()]);
    assert_eq!(code, 0);
    assert!(out.contains(&format!("Cancelled allocation {id}")), "{out}");
    wait_state(&ep, id, "cancelled", 10);

    // Errors: one clear line, non-zero exit.
    let (code, _, err) = cli(&ep, &["cancel", "4242"]);
    assert_ne!(code, 0);
    assert!(err.contains("4242") && err.contains("not found"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    let (code, _, err) = cli("http://127.0.0.1:1", &["status"]);
    assert_ne!(code, 0);
    assert!(err.starts_with("error:"), "{err}");

    let st = dev
        .terminate(Duration::from_secs(30))
        .expect("dev stops on SIGTERM");
    assert!(st.success(), "{st:?}\n{}", dev.output_text());
}

#[test]
fn ctrl_c_stops_running_jobs() {
    let dir = tempdir();
    let mut dev = start_dev(dir.path());
    let ep = dev.url.clone();
    wait_nodes_ready(&ep, 2);
    let pidfile = dir.path().join("pid");
    let script = format!(
        "echo $$ > {p}.tmp && mv {p}.tmp {p}\nexec sleep 300\n",
        p = pidfile.display()
    );
    let (code, out, err) = cli(&ep, &["submit", "--parsable", "--", "sh", "-c", &script]);
    assert_eq!(code, 0, "{out}{err}");
    let pid: i32 = wait_for(30, "the job to start", || {
        std::fs::read_to_string(&pidfile).ok()?.trim().parse().ok()
    });
    assert!(pid_alive(pid));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(dev.pid()),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let st = wait_for(30, "dev to exit", || dev.child.try_wait().ok().flatten());
    assert!(st.success(), "{st:?}\n{}", dev.output_text());
    assert!(!pid_alive(pid), "job process {pid} survived Ctrl-C");
}
