//! Launching one rank: [`plan`] turns an assignment into a [`LaunchPlan`] (directories,
//! program, arguments, environment) as a pure function; [`spawn`] prepares the directories
//! and starts the process in its own process group, in the allocation's directory, with
//! stdout and stderr appended to the files of its output directory (see `layout`).
//!
//! Besides the assignment's own environment, every rank gets the `LATTICE_*` variables below
//! (they win over the user's): its allocation, node, rank, the node list, job name, tenant,
//! user, `LATTICE_WORKDIR` (the allocation's directory, also the working directory) and
//! `LATTICE_RESTART_COUNT` (the run: 0 first, +1 per preemption). A checkpointable allocation
//! also gets `LATTICE_CHECKPOINT_SIGNAL` (the signal that asks for a checkpoint) and
//! `LATTICE_CHECKPOINT_ACK` (the absolute path of the file to write once it is done; see
//! `checkpoint`).

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use lattice_core::agent::Assignment;
use tokio::process::{Child, Command};

use crate::layout;
use crate::reconcile::RankKey;

pub const STDOUT_FILE: &str = "stdout";
pub const STDERR_FILE: &str = "stderr";
pub const SCRIPT_FILE: &str = "script.sh";

#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("the allocation has neither a command nor a script")]
    NothingToRun,
    #[error("invalid environment variable {0:?}")]
    BadEnv(String),
    #[error("cannot prepare {what}: {source}")]
    Prepare {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("cannot start {program:?}: {source}")]
    Spawn {
        program: String,
        #[source]
        source: io::Error,
    },
}

impl LaunchError {
    /// Shell conventions: 127 when the program was not found, 126 when it cannot be executed.
    pub fn exit_code(&self) -> i32 {
        match self {
            LaunchError::Spawn { source, .. }
                if source.kind() == io::ErrorKind::PermissionDenied =>
            {
                126
            }
            _ => 127,
        }
    }
}

/// Everything needed to start one rank.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LaunchPlan {
    /// stdout, stderr and script.sh (shared by the allocation's runs on this node).
    pub output_dir: PathBuf,
    /// This run's `pid`, `exit` and checkpoint acknowledgement.
    pub records_dir: PathBuf,
    /// The working directory: the allocation's directory.
    pub cwd: PathBuf,
    pub program: String,
    pub args: Vec<String>,
    /// Written to `script.sh` in `output_dir` before starting (for script allocations).
    pub script: Option<String>,
    /// Added to the agent's own environment; later entries win.
    pub env: Vec<(String, String)>,
}

/// The interpreter of a script: its `#!` line as the kernel reads it (program and at most one
/// argument), else `/bin/sh`.
fn interpreter(script: &str) -> (String, Vec<String>) {
    let first = script.lines().next().unwrap_or("");
    if let Some(rest) = first.strip_prefix("#!") {
        let rest = rest.trim();
        if !rest.is_empty() {
            return match rest.split_once(char::is_whitespace) {
                Some((prog, arg)) => (prog.to_string(), vec![arg.trim().to_string()]),
                None => (rest.to_string(), Vec::new()),
            };
        }
    }
    ("/bin/sh".to_string(), Vec::new())
}

/// Decides how to launch `a` under `work_dir` (pure). `work_dir` should be absolute: the
/// script and the acknowledgement file are named by paths under it.
pub fn plan(a: &Assignment, work_dir: &Path) -> Result<LaunchPlan, LaunchError> {
    let key = RankKey::of(a);
    let output_dir = layout::rank_output_dir(work_dir, &key);
    let records_dir = layout::records_dir(work_dir, &key);
    let cwd = layout::allocation_dir(work_dir, a.allocation_id);
    let (program, args, script) = match (&a.command, &a.script) {
        (Some(argv), _) => match argv.split_first() {
            Some((p, rest)) if !p.is_empty() => (p.clone(), rest.to_vec(), None),
            _ => return Err(LaunchError::NothingToRun),
        },
        (None, Some(s)) => {
            let (program, mut args) = interpreter(s);
            // By absolute path: the working directory is the allocation's, not this one.
            args.push(output_dir.join(SCRIPT_FILE).display().to_string());
            (program, args, Some(s.clone()))
        }
        (None, None) => return Err(LaunchError::NothingToRun),
    };
    let mut env = Vec::with_capacity(a.env.len() + 12);
    for (k, v) in &a.env {
        if k.is_empty() || k.contains('=') || k.contains('\0') || v.contains('\0') {
            return Err(LaunchError::BadEnv(k.clone()));
        }
        env.push((k.clone(), v.clone()));
    }
    let lattice = [
        ("LATTICE_ALLOCATION_ID", a.allocation_id.to_string()),
        ("LATTICE_NODE_ID", a.node_id.clone()),
        ("LATTICE_NODES", a.nodes.join(",")),
        ("LATTICE_NODE_RANK", a.rank.to_string()),
        ("LATTICE_NUM_NODES", a.nodes.len().to_string()),
        ("LATTICE_JOB_NAME", a.name.clone()),
        ("LATTICE_TENANT", a.tenant.clone()),
        ("LATTICE_USER", a.user.clone()),
        ("LATTICE_WORKDIR", cwd.display().to_string()),
        ("LATTICE_RESTART_COUNT", a.run.to_string()),
    ];
    env.extend(lattice.into_iter().map(|(k, v)| (k.to_string(), v)));
    if a.checkpoint.enabled() {
        let ack = layout::ack_path(work_dir, &key);
        env.push(("LATTICE_CHECKPOINT_ACK".into(), ack.display().to_string()));
        env.push((
            "LATTICE_CHECKPOINT_SIGNAL".into(),
            a.checkpoint.signal.clone(),
        ));
    }
    Ok(LaunchPlan {
        output_dir,
        records_dir,
        cwd,
        program,
        args,
        script,
        env,
    })
}

/// Opens an output file for appending (a later run's output follows the earlier run's).
fn append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// Creates the rank's directories and output files and starts the process as the leader of
/// a new process group.
pub fn spawn(plan: &LaunchPlan) -> Result<Child, LaunchError> {
    let prepare = |what: &str, dir: &Path| {
        let what = format!("{what} in {}", dir.display());
        move |source| LaunchError::Prepare { what, source }
    };
    for dir in [&plan.output_dir, &plan.records_dir, &plan.cwd] {
        std::fs::create_dir_all(dir).map_err(prepare("the directory", dir))?;
    }
    let out = &plan.output_dir;
    if let Some(script) = &plan.script {
        std::fs::write(out.join(SCRIPT_FILE), script).map_err(prepare(SCRIPT_FILE, out))?;
    }
    let stdout = append(&out.join(STDOUT_FILE)).map_err(prepare(STDOUT_FILE, out))?;
    let stderr = append(&out.join(STDERR_FILE)).map_err(prepare(STDERR_FILE, out))?;
    Command::new(&plan.program)
        .args(&plan.args)
        .current_dir(&plan.cwd)
        .envs(plan.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .process_group(0)
        .kill_on_drop(false)
        .spawn()
        .map_err(|source| LaunchError::Spawn {
            program: plan.program.clone(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use lattice_core::agent::Desired;
    use lattice_core::checkpoint::{CheckpointMode, CheckpointSpec};

    use super::*;

    fn assignment() -> Assignment {
        Assignment {
            allocation_id: 42,
            node_id: "dev-2".into(),
            desired: Desired::Run,
            rank: 1,
            nodes: vec!["dev-1".into(), "dev-2".into()],
            name: "train".into(),
            tenant: "physics".into(),
            vcluster: "default".into(),
            user: "ada".into(),
            command: Some(vec!["python3".into(), "train.py".into(), "--fast".into()]),
            script: None,
            env: [("FOO".to_string(), "bar".to_string())].into(),
            walltime_seconds: 60,
            started_at: None,
            run: 0,
            checkpoint: CheckpointSpec::default(),
            checkpoint_requests: 0,
        }
    }

    fn env_of(p: &LaunchPlan, k: &str) -> Option<String> {
        p.env
            .iter()
            .rev()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
    }

    #[test]
    fn command_plan() {
        let p = plan(&assignment(), Path::new("/w")).expect("plan");
        assert_eq!(p.output_dir, PathBuf::from("/w/dev-2/42"));
        assert_eq!(p.records_dir, PathBuf::from("/w/dev-2/42"));
        assert_eq!(p.cwd, PathBuf::from("/w/allocations/42"));
        assert_eq!(p.program, "python3");
        assert_eq!(p.args, vec!["train.py", "--fast"]);
        assert_eq!(p.script, None);
        for (k, v) in [
            ("FOO", "bar"),
            ("LATTICE_ALLOCATION_ID", "42"),
            ("LATTICE_NODE_ID", "dev-2"),
            ("LATTICE_NODES", "dev-1,dev-2"),
            ("LATTICE_NODE_RANK", "1"),
            ("LATTICE_NUM_NODES", "2"),
            ("LATTICE_JOB_NAME", "train"),
            ("LATTICE_TENANT", "physics"),
            ("LATTICE_USER", "ada"),
            ("LATTICE_WORKDIR", "/w/allocations/42"),
            ("LATTICE_RESTART_COUNT", "0"),
        ] {
            assert_eq!(env_of(&p, k).as_deref(), Some(v), "{k}");
        }
        // Not checkpointable: no checkpoint variables.
        assert_eq!(env_of(&p, "LATTICE_CHECKPOINT_ACK"), None);
        assert_eq!(env_of(&p, "LATTICE_CHECKPOINT_SIGNAL"), None);
    }

    #[test]
    fn later_runs_have_their_own_records_and_checkpoint_variables() {
        let mut a = assignment();
        a.run = 2;
        a.checkpoint = CheckpointSpec {
            mode: CheckpointMode::Signal,
            signal: "SIGUSR2".into(),
            timeout_seconds: 30,
            interval_seconds: None,
        };
        a.env
            .insert("LATTICE_CHECKPOINT_ACK".into(), "/tmp/elsewhere".into());
        let p = plan(&a, Path::new("/w")).expect("plan");
        assert_eq!(p.output_dir, PathBuf::from("/w/dev-2/42"));
        assert_eq!(p.records_dir, PathBuf::from("/w/dev-2/42/run-2"));
        assert_eq!(p.cwd, PathBuf::from("/w/allocations/42"));
        for (k, v) in [
            ("LATTICE_RESTART_COUNT", "2"),
            ("LATTICE_WORKDIR", "/w/allocations/42"),
            ("LATTICE_CHECKPOINT_ACK", "/w/dev-2/42/run-2/checkpoint-ack"),
            ("LATTICE_CHECKPOINT_SIGNAL", "SIGUSR2"),
        ] {
            assert_eq!(env_of(&p, k).as_deref(), Some(v), "{k}");
        }
    }

    #[test]
    fn lattice_variables_win_over_user_env() {
        let mut a = assignment();
        a.env.insert("LATTICE_NODE_RANK".into(), "99".into());
        let p = plan(&a, Path::new("/w")).expect("plan");
        assert_eq!(env_of(&p, "LATTICE_NODE_RANK").as_deref(), Some("1"));
    }

    #[test]
    fn script_plan() {
        let mut a = assignment();
        a.command = None;
        a.script = Some("echo hi\n".into());
        let p = plan(&a, Path::new("/w")).expect("plan");
        assert_eq!(p.program, "/bin/sh");
        assert_eq!(p.args, vec!["/w/dev-2/42/script.sh"]);
        assert_eq!(p.script.as_deref(), Some("echo hi\n"));
    }

    #[test]
    fn nothing_to_run_or_bad_env_is_refused() {
        let mut a = assignment();
        a.command = None;
        assert!(matches!(
            plan(&a, Path::new("/w")),
            Err(LaunchError::NothingToRun)
        ));
        a.command = Some(vec![]);
        assert!(matches!(
            plan(&a, Path::new("/w")),
            Err(LaunchError::NothingToRun)
        ));
        a.command = Some(vec![String::new()]);
        assert!(matches!(
            plan(&a, Path::new("/w")),
            Err(LaunchError::NothingToRun)
        ));
        let mut a = assignment();
        a.env.insert("A=B".into(), "x".into());
        assert!(matches!(
            plan(&a, Path::new("/w")),
            Err(LaunchError::BadEnv(_))
        ));
    }

    #[test]
    fn exit_codes_follow_the_shell() {
        let spawn = |kind| LaunchError::Spawn {
            program: "x".into(),
            source: io::Error::from(kind),
        };
        assert_eq!(spawn(io::ErrorKind::NotFound).exit_code(), 127);
        assert_eq!(spawn(io::ErrorKind::PermissionDenied).exit_code(), 126);
        assert_eq!(LaunchError::NothingToRun.exit_code(), 127);
    }

    #[test]
    fn scripts_run_with_their_shebang_interpreter() {
        assert_eq!(
            interpreter("#!/bin/bash\necho"),
            ("/bin/bash".into(), vec![])
        );
        assert_eq!(
            interpreter("#! /usr/bin/env python3\nprint(1)"),
            ("/usr/bin/env".into(), vec!["python3".to_string()])
        );
        assert_eq!(interpreter("echo hi"), ("/bin/sh".into(), vec![]));
        assert_eq!(interpreter("#!\necho"), ("/bin/sh".into(), vec![]));
    }
}
