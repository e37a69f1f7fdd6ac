//! Process-layer tests: real processes in real process groups, stopped, timed out and
//! recovered. Every wait is a poll with a deadline. (Checkpoints and preemption:
//! `executor_checkpoint_tests.rs`, which shares these helpers.)

use std::collections::BTreeMap;
use std::future::Future;
use std::os::unix::process::CommandExt;

use lattice_core::agent::Desired;
use nix::errno::Errno;
use nix::sys::signal::kill;
use nix::unistd::Pid;

use super::*;
use crate::launch::{STDERR_FILE, STDOUT_FILE};
use crate::records::{EXIT_FILE, LOST_MESSAGE, PID_FILE};

pub(super) const DEADLINE: Duration = Duration::from_secs(15);

pub(super) struct Fixture {
    pub(super) dir: tempfile::TempDir,
    pub(super) ranks: Arc<Ranks>,
    pub(super) exec: Executor,
    pub(super) shutdown: watch::Sender<bool>,
}

pub(super) fn fixture() -> Fixture {
    process::become_subreaper();
    let dir = tempfile::tempdir().expect("tempdir");
    fixture_in(dir)
}

pub(super) fn fixture_in(dir: tempfile::TempDir) -> Fixture {
    let ranks = Arc::new(Ranks::default());
    let (shutdown, rx) = watch::channel(false);
    let exec = Executor::new(
        ranks.clone(),
        dir.path().to_path_buf(),
        Duration::from_secs(2),
        rx,
    );
    Fixture {
        dir,
        ranks,
        exec,
        shutdown,
    }
}

pub(super) fn assignment(id: u64, command: &[&str]) -> Assignment {
    Assignment {
        allocation_id: id,
        node_id: "n1".into(),
        desired: Desired::Run,
        rank: 0,
        nodes: vec!["n1".into()],
        name: "test".into(),
        tenant: "t".into(),
        vcluster: "default".into(),
        user: "u".into(),
        command: Some(command.iter().map(|s| s.to_string()).collect()),
        script: None,
        env: BTreeMap::new(),
        walltime_seconds: 60,
        started_at: None,
        run: 0,
        checkpoint: Default::default(),
        checkpoint_requests: 0,
    }
}

/// An assignment running `script` with `/bin/sh`.
pub(super) fn script_assignment(id: u64, script: &str) -> Assignment {
    let mut a = assignment(id, &[]);
    a.command = None;
    a.script = Some(script.to_string());
    a
}

pub(super) async fn eventually<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + DEADLINE;
    while !cond().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits for the rank's exit report (of any run).
pub(super) async fn report_of(f: &Fixture, id: u64) -> ExitReport {
    let mut found = None;
    eventually("the exit report", || {
        found = f
            .ranks
            .pending_reports()
            .into_iter()
            .find(|r| r.allocation_id == id);
        std::future::ready(found.is_some())
    })
    .await;
    found.expect("found")
}

/// The output directory, also the records directory of run 0.
pub(super) fn rank_dir(f: &Fixture, id: u64) -> PathBuf {
    f.dir.path().join("n1").join(id.to_string())
}

pub(super) fn pgid_of(f: &Fixture, id: u64) -> i32 {
    let text = std::fs::read_to_string(rank_dir(f, id).join(PID_FILE)).expect("pid file");
    records::parse_pid(&text).expect("pgid")
}

/// Processes whose process group is `pgid` (from /proc).
fn group_members(pgid: i32) -> usize {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    entries
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter(|stat| {
            // Fields after the `(comm)`: state, ppid, pgrp, ...
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(2)?.parse::<i32>().ok())
                == Some(pgid)
        })
        .count()
}

pub(super) async fn assert_group_gone(pgid: i32) {
    eventually("the process group to vanish", || {
        std::future::ready(kill(Pid::from_raw(-pgid), None) == Err(Errno::ESRCH))
    })
    .await;
}

#[tokio::test]
async fn stop_kills_the_whole_process_group() {
    let f = fixture();
    let a = assignment(1, &["sh", "-c", "sleep 30 & sleep 30"]);
    f.exec.apply(vec![Action::Start(Box::new(a.clone()))]);
    let pgid = pgid_of(&f, 1);
    // The shell and its background sleep (and possibly the foreground one) are running.
    eventually("the background child", || {
        std::future::ready(group_members(pgid) >= 2)
    })
    .await;

    f.exec.apply(vec![Action::Stop(RankKey::of(&a))]);
    let r = report_of(&f, 1).await;
    assert_eq!(r.outcome, ExitOutcome::Stopped);
    assert_eq!(r.signal, Some(libc_sigterm()));
    assert_group_gone(pgid).await;
    // The exit record is on disk.
    let exit = std::fs::read_to_string(rank_dir(&f, 1).join(EXIT_FILE)).expect("exit file");
    assert_eq!(records::parse_exit(&exit), Some(r));
}

pub(super) fn libc_sigterm() -> i32 {
    nix::sys::signal::Signal::SIGTERM as i32
}

#[tokio::test]
async fn normal_exit_kills_leftover_background_processes() {
    let f = fixture();
    let a = assignment(15, &["sh", "-c", "sleep 30 & echo started; exit 0"]);
    f.exec.apply(vec![Action::Start(Box::new(a))]);
    let pgid = pgid_of(&f, 15);
    let r = report_of(&f, 15).await;
    assert_eq!((r.outcome, r.exit_code), (ExitOutcome::Exited, Some(0)));
    // The backgrounded sleep started (the shell printed after forking it) and is gone now.
    let out = std::fs::read_to_string(rank_dir(&f, 15).join(STDOUT_FILE)).expect("stdout");
    assert_eq!(out, "started\n");
    assert_group_gone(pgid).await;
}

#[tokio::test]
async fn stop_escalates_to_sigkill_after_grace() {
    let f = fixture();
    // Ignores SIGTERM; only SIGKILL after the 2 s grace ends it.
    let a = assignment(2, &["sh", "-c", "trap '' TERM; sleep 30 & wait; sleep 30"]);
    f.exec.apply(vec![Action::Start(Box::new(a.clone()))]);
    let pgid = pgid_of(&f, 2);
    eventually("the background child", || {
        std::future::ready(group_members(pgid) >= 2)
    })
    .await;
    f.exec.apply(vec![Action::Stop(RankKey::of(&a))]);
    let r = report_of(&f, 2).await;
    assert_eq!(r.outcome, ExitOutcome::Stopped);
    assert_eq!(r.signal, Some(nix::sys::signal::Signal::SIGKILL as i32));
    assert_group_gone(pgid).await;
}

#[tokio::test]
async fn walltime_kills_and_reports_walltime() {
    let f = fixture();
    let mut a = assignment(3, &["sleep", "30"]);
    a.walltime_seconds = 1;
    let started = Instant::now();
    f.exec.apply(vec![Action::Start(Box::new(a))]);
    let pgid = pgid_of(&f, 3);
    let r = report_of(&f, 3).await;
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert_eq!(r.outcome, ExitOutcome::Walltime);
    assert_eq!(r.signal, Some(libc_sigterm()));
    assert_eq!(r.message.as_deref(), Some("killed at walltime of 1s"));
    assert_group_gone(pgid).await;
}

#[tokio::test]
async fn captures_output_and_exit_code() {
    let f = fixture();
    let mut a = assignment(4, &[]);
    a.command = None;
    a.script = Some("echo hello\necho oops >&2\nexit 3\n".into());
    f.exec.apply(vec![Action::Start(Box::new(a))]);
    let r = report_of(&f, 4).await;
    assert_eq!(r.outcome, ExitOutcome::Exited);
    assert_eq!((r.exit_code, r.signal), (Some(3), None));
    let dir = rank_dir(&f, 4);
    assert_eq!(
        std::fs::read_to_string(dir.join(STDOUT_FILE)).expect("stdout"),
        "hello\n"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join(STDERR_FILE)).expect("stderr"),
        "oops\n"
    );
    assert!(dir.join("script.sh").exists());
}

#[tokio::test]
async fn success_and_death_by_signal() {
    let f = fixture();
    f.exec.apply(vec![
        Action::Start(Box::new(assignment(5, &["true"]))),
        Action::Start(Box::new(assignment(6, &["sh", "-c", "kill -9 $$"]))),
    ]);
    let ok = report_of(&f, 5).await;
    assert_eq!(
        (ok.outcome, ok.exit_code, ok.signal),
        (ExitOutcome::Exited, Some(0), None)
    );
    let killed = report_of(&f, 6).await;
    assert_eq!(
        (killed.outcome, killed.exit_code, killed.signal),
        (ExitOutcome::Exited, None, Some(9))
    );
}

#[tokio::test]
async fn sets_the_environment() {
    let f = fixture();
    let mut a = assignment(7, &[]);
    a.command = None;
    a.script = Some(
        "for v in FOO LATTICE_ALLOCATION_ID LATTICE_NODE_ID LATTICE_NODES LATTICE_NODE_RANK \
         LATTICE_NUM_NODES LATTICE_JOB_NAME LATTICE_TENANT LATTICE_USER LATTICE_WORKDIR \
         LATTICE_RESTART_COUNT AGENT_ENV_MARKER; do eval \"echo $v=\\$$v\"; done\n\
         echo ack=${LATTICE_CHECKPOINT_ACK-unset}\npwd\n"
            .into(),
    );
    a.env.insert("FOO".into(), "bar baz".into());
    a.nodes = vec!["n0".into(), "n1".into()];
    a.rank = 1;
    a.name = "envtest".into();
    f.exec.apply(vec![Action::Start(Box::new(a))]);
    let r = report_of(&f, 7).await;
    assert_eq!(r.exit_code, Some(0), "{r:?}");
    let out = std::fs::read_to_string(rank_dir(&f, 7).join(STDOUT_FILE)).expect("stdout");
    // The working directory is the allocation's, shared by its ranks and runs.
    let dir = f.dir.path().join("allocations").join("7");
    let expected = format!(
        "FOO=bar baz\nLATTICE_ALLOCATION_ID=7\nLATTICE_NODE_ID=n1\nLATTICE_NODES=n0,n1\n\
         LATTICE_NODE_RANK=1\nLATTICE_NUM_NODES=2\nLATTICE_JOB_NAME=envtest\nLATTICE_TENANT=t\n\
         LATTICE_USER=u\nLATTICE_WORKDIR={d}\nLATTICE_RESTART_COUNT=0\nAGENT_ENV_MARKER={m}\n\
         ack=unset\n{d}\n",
        d = dir.display(),
        m = std::env::var("AGENT_ENV_MARKER").unwrap_or_default(),
    );
    assert_eq!(out, expected);
    // The agent's own environment is passed on (PATH is what found `sh` builtins' peers).
    assert!(std::env::var("PATH").is_ok());
}

#[tokio::test]
async fn missing_executable_is_a_launch_failure() {
    let f = fixture();
    f.exec.apply(vec![Action::Start(Box::new(assignment(
        8,
        &["/nonexistent/lattice-test-binary"],
    )))]);
    let r = report_of(&f, 8).await;
    assert_eq!(r.outcome, ExitOutcome::LaunchFailed);
    assert_eq!(r.exit_code, Some(127));
    assert!(r
        .message
        .as_deref()
        .is_some_and(|m| m.contains("/nonexistent/lattice-test-binary")));
    // Recorded, so a restarted agent reports it instead of trying again.
    assert!(rank_dir(&f, 8).join(EXIT_FILE).exists());
}

#[tokio::test]
async fn never_runs_twice_across_restarts() {
    let f = fixture();
    let mut a = assignment(9, &[]);
    a.command = None;
    a.script = Some("echo ran >> \"$LATTICE_WORKDIR/runs\"\nexit 4\n".into());
    f.exec.apply(vec![Action::Start(Box::new(a.clone()))]);
    let first = report_of(&f, 9).await;
    assert_eq!(first.exit_code, Some(4));

    // A new agent (empty memory) over the same work directory is told to run it again.
    let g = fixture_in(f.dir);
    g.exec.apply(vec![Action::Start(Box::new(a))]);
    let again = report_of(&g, 9).await;
    assert_eq!(again, first);
    let runs = std::fs::read_to_string(g.dir.path().join("allocations/9/runs")).expect("runs");
    assert_eq!(runs, "ran\n");
}

/// Starts `sh -c script` in its own process group as if an earlier agent had, writes its pid
/// file, and reaps it from a thread (as init would for an orphan).
pub(super) fn earlier_run(f: &Fixture, id: u64, script: &str) -> i32 {
    let dir = rank_dir(f, id);
    std::fs::create_dir_all(&dir).expect("dir");
    let mut child = std::process::Command::new("sh")
        .args(["-c", script])
        .process_group(0)
        .spawn()
        .expect("spawn");
    let pgid = i32::try_from(child.id()).expect("pid");
    records::write_pid(&dir, pgid).expect("pid file");
    std::thread::spawn(move || child.wait());
    pgid
}

#[tokio::test]
async fn adopts_a_live_group_and_stops_it() {
    let f = fixture();
    let pgid = earlier_run(&f, 10, "sleep 30");
    let a = assignment(10, &["false"]);
    f.exec.apply(vec![Action::Start(Box::new(a.clone()))]);
    assert_eq!(f.ranks.running_count(), 1);
    assert!(f.ranks.pending_reports().is_empty());
    f.exec.apply(vec![Action::Stop(RankKey::of(&a))]);
    let r = report_of(&f, 10).await;
    assert_eq!(r.outcome, ExitOutcome::Stopped);
    assert_group_gone(pgid).await;
    // Nothing was launched: no output files were created by this agent.
    assert!(!rank_dir(&f, 10).join(STDOUT_FILE).exists());
}

#[tokio::test]
async fn adopted_group_that_ends_reports_lost_status() {
    let f = fixture();
    let pgid = earlier_run(&f, 11, "sleep 1");
    f.exec
        .apply(vec![Action::Start(Box::new(assignment(11, &["false"])))]);
    let r = report_of(&f, 11).await;
    assert_eq!(r.outcome, ExitOutcome::Exited);
    assert_eq!((r.exit_code, r.signal), (None, None));
    assert_eq!(r.message.as_deref(), Some(LOST_MESSAGE));
    assert_group_gone(pgid).await;
}

#[tokio::test]
async fn retire_reports_unstarted_and_stops_leftovers() {
    let f = fixture();
    f.exec.apply(vec![Action::Retire(RankKey::new(12, "n1"))]);
    let r = report_of(&f, 12).await;
    assert_eq!(r.outcome, ExitOutcome::Stopped);
    assert!(!rank_dir(&f, 12).exists());

    let pgid = earlier_run(&f, 13, "sleep 30");
    f.exec.apply(vec![Action::Retire(RankKey::new(13, "n1"))]);
    let r = report_of(&f, 13).await;
    assert_eq!(r.outcome, ExitOutcome::Stopped);
    assert_group_gone(pgid).await;
}

#[tokio::test]
async fn shutdown_stops_running_ranks() {
    let f = fixture();
    f.exec.apply(vec![Action::Start(Box::new(assignment(
        14,
        &["sleep", "30"],
    )))]);
    let pgid = pgid_of(&f, 14);
    f.shutdown.send_replace(true);
    tokio::time::timeout(DEADLINE, f.ranks.idle())
        .await
        .expect("idle after shutdown");
    let r = report_of(&f, 14).await;
    assert_eq!(r.outcome, ExitOutcome::Stopped);
    assert_eq!(r.message.as_deref(), Some("stopped: the agent shut down"));
    assert_group_gone(pgid).await;
}
