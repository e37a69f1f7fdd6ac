//! `lattice submit`: like `sbatch`. Sends a batch script (its text, with `#LATTICE` / `#SBATCH`
//! directives applied), a `--wrap` command line, or an argv after `--`. Every value is checked
//! before anything is sent.

use std::io::Read;
use std::path::PathBuf;

use clap::Args;
use lattice_core::submit::MAX_SCRIPT_BYTES;

use super::directives::{scan, Scan};
use super::job_spec::{check, default_user, layer, resolve, JobOptions};
use super::output::{out, out_json, warn};
use super::{connect, CmdError};

#[derive(Args, Debug)]
#[command(after_help = "Examples:\n  lattice submit -N 2 -t 1:00:00 job.sh\n  \
    lattice submit -t 30m -C gpu_type=H100 -- python train.py --epochs 3\n  \
    lattice submit --wrap 'hostname; sleep 10'\n  \
    lattice submit --array 0-999%50 job.sh      (task i: $LATTICE_TASK_INDEX)\n  \
    lattice submit --depends-on 41:success,40:any -- ./post.sh\n  \
    lattice submit --hold job.sh                (then: lattice release ID)\n  \
    lattice submit --checkpoint=signal --checkpoint-interval 1h job.sh\n  \
    lattice submit --no-preempt -- ./must-not-stop.sh\n\n\
    Script directives (at the top of the script, before the first command):\n  \
    #LATTICE lines take the flags above, e.g. #LATTICE --walltime=2h -C gpu_type=H100\n  \
    #SBATCH -N/--nodes, -t/--time, -J/--job-name, -p/--partition, -A/--account,\n  \
    -C/--constraint, -a/--array, -d/--dependency and -H/--hold are understood; other\n  \
    #SBATCH options are ignored with a warning (--no-requeue is not --no-preempt).\n\
    Flags on the command line override directives.")]
pub struct SubmitArgs {
    #[command(flatten)]
    pub job: JobOptions,
    /// Run this shell command line as the script (like sbatch --wrap)
    #[arg(long, value_name = "COMMAND", conflicts_with_all = ["script", "command"])]
    pub wrap: Option<String>,
    /// Print only the allocation ID
    #[arg(long, conflicts_with = "output")]
    pub parsable: bool,
    /// Print the allocation as `json` instead of a sentence
    #[arg(short = 'o', long, value_name = "FORMAT")]
    pub output: Option<String>,
    /// Batch script, run with /bin/sh (`-` reads standard input)
    #[arg(value_name = "SCRIPT", conflicts_with = "command")]
    pub script: Option<PathBuf>,
    /// Command and arguments to run instead of a script
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

/// What to run.
#[derive(Debug, PartialEq, Eq)]
enum Payload {
    Script(String),
    Command(Vec<String>),
}

pub async fn run(args: SubmitArgs, endpoint: &str) -> Result<(), CmdError> {
    let json = match args.output.as_deref() {
        None | Some("text") => false,
        Some("json") => true,
        Some(other) => {
            return Err(CmdError::Usage(format!(
                "invalid -o/--output {other:?}: expected json or text (the job's output is \
                 kept by the cluster: see `lattice logs`)"
            )))
        }
    };
    let script_name = args
        .script
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    // `source` is the text whose directives apply: only a script file has any.
    let (payload, source) = if let Some(line) = args.wrap {
        (
            Payload::Script(format!("#!/bin/sh\n{line}\n")),
            String::new(),
        )
    } else if !args.command.is_empty() {
        (Payload::Command(args.command), String::new())
    } else if let Some(path) = &args.script {
        let text = read_script(path)?;
        (Payload::Script(text.clone()), text)
    } else {
        return Err(CmdError::Usage(
            "nothing to run: give a script file, --wrap 'COMMAND', or -- COMMAND ARGS...".into(),
        ));
    };
    let Scan {
        directives,
        warnings,
    } = scan(&source).map_err(|e| CmdError::Usage(format!("{script_name}: {e}")))?;
    for w in &warnings {
        warn(w);
    }
    let layered = layer(&directives, &script_name, args.job).map_err(CmdError::Usage)?;
    let mut req =
        resolve(layered, default_user(|k| std::env::var(k).ok())).map_err(CmdError::Usage)?;
    match payload {
        Payload::Script(s) => req.script = Some(s),
        Payload::Command(argv) => req.command = Some(argv),
    }
    check(&req).map_err(CmdError::Usage)?;

    let alloc = connect(endpoint)?.submit(&req).await?;
    if json {
        out_json(&alloc)
    } else if args.parsable {
        out(&format!("{}\n", alloc.id))
    } else if let (Some(array), Some(text)) = (alloc.array_id, &req.array) {
        out(&format!("Submitted array {array} (tasks {text})\n"))
    } else {
        out(&format!("Submitted allocation {}\n", alloc.id))
    }
}

/// Reads a script file (or standard input for `-`), refusing more than the server accepts.
fn read_script(path: &std::path::Path) -> Result<String, CmdError> {
    let shown = path.display();
    let limit = MAX_SCRIPT_BYTES as u64 + 1;
    let mut bytes = Vec::new();
    let read = if path.as_os_str() == "-" {
        std::io::stdin().lock().take(limit).read_to_end(&mut bytes)
    } else {
        std::fs::File::open(path).and_then(|f| f.take(limit).read_to_end(&mut bytes))
    };
    if let Err(e) = read {
        let hint = if e.kind() == std::io::ErrorKind::NotFound {
            " (to run a command rather than a script, put it after --: lattice submit -- CMD ARGS)"
        } else {
            ""
        };
        return Err(CmdError::Usage(format!(
            "cannot read script {shown}: {e}{hint}"
        )));
    }
    if bytes.len() > MAX_SCRIPT_BYTES {
        return Err(CmdError::Usage(format!(
            "script {shown} is larger than {MAX_SCRIPT_BYTES} bytes"
        )));
    }
    String::from_utf8(bytes)
        .map_err(|_| CmdError::Usage(format!("script {shown} is not UTF-8 text")))
}

#[cfg(test)]
mod tests {
    use super::super::tests::parse;
    use super::super::ClientCommand;
    use super::*;

    fn submit(args: &[&str]) -> SubmitArgs {
        match parse(&[&["submit"], args].concat()) {
            Ok(ClientCommand::Submit(a)) => a,
            other => panic!("{args:?}: {other:?}"),
        }
    }

    #[test]
    fn script_and_flags() {
        let a = submit(&[
            "-N", "4", "-t", "1:00:00", "-A", "phys", "-p", "gpu", "-J", "x", "job.sh",
        ]);
        assert_eq!(a.script, Some(PathBuf::from("job.sh")));
        assert_eq!(a.job.nodes.as_deref(), Some("4"));
        assert_eq!(a.job.walltime.as_deref(), Some("1:00:00"));
        assert_eq!(a.job.tenant.as_deref(), Some("phys"));
        assert_eq!(a.job.vcluster.as_deref(), Some("gpu"));
        assert_eq!(a.job.name.as_deref(), Some("x"));
        assert!(a.command.is_empty());
    }

    #[test]
    fn slurm_spellings_are_aliases() {
        let a = submit(&[
            "--time=10",
            "--account",
            "a",
            "--partition=p",
            "--job-name",
            "j",
            "s.sh",
        ]);
        assert_eq!(a.job.walltime.as_deref(), Some("10"));
        assert_eq!(a.job.tenant.as_deref(), Some("a"));
        assert_eq!(a.job.vcluster.as_deref(), Some("p"));
        assert_eq!(a.job.name.as_deref(), Some("j"));
    }

    #[test]
    fn command_after_double_dash_keeps_its_flags() {
        let a = submit(&[
            "-C",
            "ib",
            "-C",
            "min_gpus=2",
            "--env",
            "A=1",
            "--",
            "python",
            "-u",
            "t.py",
            "--lr=3",
        ]);
        assert_eq!(a.command, ["python", "-u", "t.py", "--lr=3"]);
        assert_eq!(a.script, None);
        assert_eq!(a.job.constraints, ["ib", "min_gpus=2"]);
        assert_eq!(a.job.env, ["A=1"]);
    }

    #[test]
    fn preemption_and_checkpoint_flags() {
        let a = submit(&[
            "--no-preempt",
            "--checkpoint=signal",
            "--checkpoint-signal",
            "USR2",
            "--checkpoint-timeout",
            "120",
            "--checkpoint-interval=1h",
            "job.sh",
        ]);
        assert!(a.job.no_preempt);
        assert_eq!(a.job.checkpoint.as_deref(), Some("signal"));
        assert_eq!(a.job.checkpoint_signal.as_deref(), Some("USR2"));
        assert_eq!(a.job.checkpoint_timeout.as_deref(), Some("120"));
        assert_eq!(a.job.checkpoint_interval.as_deref(), Some("1h"));
        assert_eq!(a.script, Some(PathBuf::from("job.sh")));
        let a = submit(&["job.sh"]);
        assert!(!a.job.no_preempt && a.job.checkpoint.is_none());
        assert!(parse(&["submit", "--checkpoint", "--", "true"]).is_err());
        assert!(parse(&["submit", "--no-preempt=yes", "j.sh"]).is_err());
    }

    #[test]
    fn output_flags() {
        assert!(submit(&["--parsable", "j.sh"]).parsable);
        assert_eq!(
            submit(&["-o", "json", "j.sh"]).output.as_deref(),
            Some("json")
        );
        assert!(parse(&["submit", "--parsable", "-o", "json", "j.sh"]).is_err());
    }

    #[test]
    fn conflicting_or_extra_positionals_are_refused() {
        assert!(parse(&["submit", "job.sh", "--", "hostname"]).is_err());
        assert!(parse(&["submit", "job.sh", "extra"]).is_err());
        assert!(parse(&["submit", "--wrap", "x", "job.sh"]).is_err());
        assert!(parse(&["submit", "-N"]).is_err());
        assert!(parse(&["submit", "-N", "1", "-N", "2", "j.sh"]).is_err());
    }

    #[tokio::test]
    async fn usage_errors_send_nothing() {
        // The endpoint is unusable, so reaching the network would be a different error.
        let run_args = |args: &[&str]| run(submit(args), "http://0.0.0.0:1");
        for args in [
            &["-N", "0", "--", "true"][..],
            &["-t", "soon", "--", "true"],
            &["-o", "out.txt", "--", "true"],
            &["--checkpoint-signal", "TERM", "--", "true"],
            &[
                "--checkpoint=none",
                "--checkpoint-interval",
                "1h",
                "--",
                "true",
            ],
            &["/nonexistent/job.sh"],
            &[],
        ] {
            match run_args(args).await {
                Err(CmdError::Usage(m)) => assert!(!m.contains('\n'), "{m}"),
                other => panic!("{args:?}: {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn script_directives_are_checked_before_sending() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("job.sh");
        std::fs::write(&path, "#!/bin/sh\n#SBATCH --time=forever\nhostname\n").unwrap();
        let path = path.to_string_lossy().to_string();
        match run(submit(&[&path]), "http://0.0.0.0:1").await {
            Err(CmdError::Usage(m)) => {
                assert!(m.contains("--walltime") && m.contains("line 2"), "{m}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn scripts_are_read_with_a_size_limit() {
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big.sh");
        std::fs::write(&big, vec![b'#'; MAX_SCRIPT_BYTES + 10]).unwrap();
        assert!(matches!(read_script(&big), Err(CmdError::Usage(m)) if m.contains("larger")));
        let bin = dir.path().join("bin.sh");
        std::fs::write(&bin, [0xff, 0xfe]).unwrap();
        assert!(matches!(read_script(&bin), Err(CmdError::Usage(m)) if m.contains("UTF-8")));
        let ok = dir.path().join("ok.sh");
        std::fs::write(&ok, "echo hi\n").unwrap();
        assert_eq!(read_script(&ok).unwrap(), "echo hi\n");
    }
}
