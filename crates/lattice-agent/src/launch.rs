//! Launching one rank: [`plan`] turns an assignment into a [`LaunchPlan`] (directory, program,
//! arguments, environment) as a pure function; [`spawn`] prepares the directory and starts the
//! process in its own process group with stdout and stderr going to files.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use lattice_core::agent::Assignment;
use tokio::process::{Child, Command};

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
    pub dir: PathBuf,
    pub program: String,
    pub args: Vec<String>,
    /// Written to `script.sh` in `dir` before starting (for script allocations).
    pub script: Option<String>,
    /// Added to the agent's own environment; later entries win.
    pub env: Vec<(String, String)>,
}

/// `{work_dir}/{node_id}/{allocation_id}`.
pub fn rank_dir(work_dir: &Path, key: &RankKey) -> PathBuf {
    work_dir
        .join(&key.node_id)
        .join(key.allocation_id.to_string())
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

/// Decides how to launch `a` under `work_dir` (pure).
pub fn plan(a: &Assignment, work_dir: &Path) -> Result<LaunchPlan, LaunchError> {
    let dir = rank_dir(work_dir, &RankKey::of(a));
    let (program, args, script) = match (&a.command, &a.script) {
        (Some(argv), _) => match argv.split_first() {
            Some((p, rest)) if !p.is_empty() => (p.clone(), rest.to_vec(), None),
            _ => return Err(LaunchError::NothingToRun),
        },
        (None, Some(s)) => {
            let (program, mut args) = interpreter(s);
            args.push(SCRIPT_FILE.to_string());
            (program, args, Some(s.clone()))
        }
        (None, None) => return Err(LaunchError::NothingToRun),
    };
    let mut env = Vec::with_capacity(a.env.len() + 9);
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
        ("LATTICE_WORKDIR", dir.display().to_string()),
    ];
    env.extend(lattice.into_iter().map(|(k, v)| (k.to_string(), v)));
    Ok(LaunchPlan {
        dir,
        program,
        args,
        script,
        env,
    })
}

/// Creates the rank's directory and output files and starts the process as the leader of a
/// new process group.
pub fn spawn(plan: &LaunchPlan) -> Result<Child, LaunchError> {
    let prepare = |what: &str| {
        let what = format!("{what} in {}", plan.dir.display());
        move |source| LaunchError::Prepare { what, source }
    };
    std::fs::create_dir_all(&plan.dir).map_err(prepare("the directory"))?;
    if let Some(script) = &plan.script {
        std::fs::write(plan.dir.join(SCRIPT_FILE), script).map_err(prepare(SCRIPT_FILE))?;
    }
    let stdout = File::create(plan.dir.join(STDOUT_FILE)).map_err(prepare(STDOUT_FILE))?;
    let stderr = File::create(plan.dir.join(STDERR_FILE)).map_err(prepare(STDERR_FILE))?;
    Command::new(&plan.program)
        .args(&plan.args)
        .current_dir(&plan.dir)
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
        assert_eq!(p.dir, PathBuf::from("/w/dev-2/42"));
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
            ("LATTICE_WORKDIR", "/w/dev-2/42"),
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
        assert_eq!(p.args, vec![SCRIPT_FILE]);
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
