//! The job-describing flags of `lattice submit` ([`JobOptions`]), read from the command line and
//! from script directives, and their checked conversion into a [`SubmitRequest`].
//!
//! Precedence: a flag on the command line beats the same flag in a directive; among directives
//! the last line wins. `--constraint` follows Slurm's `-C`: constraints on the command line
//! replace the script's. `--env` merges by variable name, the command line winning.
//! Values stay strings until [`resolve`] so that every error can name the flag and, for a
//! directive, its line.

use std::collections::BTreeMap;

use clap::{Args, Parser};
use lattice_core::array::parse_array;
use lattice_core::checkpoint::{
    parse_signal, CheckpointMode, CHECKPOINT_SIGNALS, MAX_CHECKPOINT_INTERVAL_SECONDS,
    MAX_CHECKPOINT_TIMEOUT_SECONDS,
};
use lattice_core::dependency::parse_dependencies;
use lattice_core::submit::{
    validate_name, SubmitRequest, MAX_NODES, MAX_PRIORITY, MAX_WALLTIME_SECONDS,
};
use lattice_core::{Constraints, Rejection};

use super::constraint::apply_constraint;
use super::directives::Directive;
use super::duration::{parse_duration, parse_seconds};

/// Flags that describe the job; they may also appear in `#LATTICE` directives.
#[derive(Args, Clone, Debug, Default, PartialEq, Eq)]
pub struct JobOptions {
    /// Number of whole nodes [default: 1]
    #[arg(short = 'N', long, value_name = "N")]
    pub nodes: Option<String>,
    /// Time limit: minutes, MM:SS, HH:MM:SS, D-HH[:MM[:SS]], or 30s, 90m, 2h, 1d, 1h30m [default: 1h]
    #[arg(short = 't', long, visible_alias = "time", value_name = "DUR")]
    pub walltime: Option<String>,
    /// Priority from 0 to 10; higher runs first [default: 5]
    #[arg(long, value_name = "P")]
    pub priority: Option<String>,
    /// Tenant (Slurm account) to charge [default: default]
    #[arg(short = 'A', long, visible_alias = "account", value_name = "TENANT")]
    pub tenant: Option<String>,
    /// vCluster (Slurm partition) to run in [default: default]
    #[arg(
        short = 'p',
        long,
        visible_alias = "partition",
        value_name = "VCLUSTER"
    )]
    pub vcluster: Option<String>,
    /// Allocation name [default: the command's name, or "script"]
    #[arg(short = 'J', long, visible_alias = "job-name", value_name = "NAME")]
    pub name: Option<String>,
    /// Node requirement: features=a,b gpu_type=T min_gpus=N min_memory_gb=N min_cpus=N, or
    /// feature names joined by & (repeatable)
    #[arg(short = 'C', long = "constraint", value_name = "K=V|FEATURE")]
    pub constraints: Vec<String>,
    /// Environment variable for the job (repeatable)
    #[arg(long = "env", value_name = "K=V")]
    pub env: Vec<String>,
    /// User to run as [default: $USER]
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,
    /// Job array: task indices and an optional cap on how many run at once, e.g. 0-999%50,
    /// 1,3,5-7, 0-15:4; each task gets LATTICE_ARRAY_ID and LATTICE_TASK_INDEX
    #[arg(short = 'a', long, value_name = "INDICES[%N]")]
    pub array: Option<String>,
    /// Start only after other allocations end: ID[:success|any],... (`success`, the default,
    /// cancels this one if the other fails) or Slurm's afterok:ID[:ID],afterany:ID; an array's
    /// ID waits for all its tasks, N_I for one task
    #[arg(short = 'd', long, visible_alias = "dependency", value_name = "DEPS")]
    pub depends_on: Option<String>,
    /// Submit held: not scheduled until `lattice release`
    #[arg(short = 'H', long)]
    pub hold: bool,
    /// Never preempt this job to make room for higher-priority work
    #[arg(long)]
    pub no_preempt: bool,
    /// How the job is checkpointed: `signal` (the agent sends --checkpoint-signal and waits
    /// for the job to write $LATTICE_CHECKPOINT_ACK) or `none` [default: none, or signal when
    /// another --checkpoint-* flag is given]
    #[arg(long, value_name = "signal|none")]
    pub checkpoint: Option<String>,
    /// Signal that asks the job to checkpoint: USR1, USR2, HUP, INT, QUIT or WINCH
    /// [default: SIGUSR1]
    #[arg(long, value_name = "SIG")]
    pub checkpoint_signal: Option<String>,
    /// How long a checkpoint may take: seconds, or 90s, 5m, 1h (at most 1 hour) [default: 60]
    #[arg(long, value_name = "SECS")]
    pub checkpoint_timeout: Option<String>,
    /// Also checkpoint periodically, every this many seconds of the run:
    /// seconds, or 30m, 2h
    #[arg(long, value_name = "SECS")]
    pub checkpoint_interval: Option<String>,
}

/// Parses the words of one directive line.
#[derive(Parser, Debug)]
#[command(
    no_binary_name = true,
    disable_help_flag = true,
    disable_version_flag = true
)]
struct DirectiveLine {
    #[command(flatten)]
    opts: JobOptions,
}

/// A flag's value and where it came from (`None`: the command line).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sourced {
    pub value: String,
    pub origin: Option<String>,
}

impl Sourced {
    fn new(value: String, origin: &Option<String>) -> Self {
        Sourced {
            value,
            origin: origin.clone(),
        }
    }

    fn suffix(&self) -> String {
        match &self.origin {
            Some(o) => format!(" ({o})"),
            None => String::new(),
        }
    }
}

/// Every job flag after directives and the command line are combined.
#[derive(Clone, Debug, Default)]
pub struct Layered {
    pub nodes: Option<Sourced>,
    pub walltime: Option<Sourced>,
    pub priority: Option<Sourced>,
    pub tenant: Option<Sourced>,
    pub vcluster: Option<Sourced>,
    pub name: Option<Sourced>,
    pub constraints: Vec<Sourced>,
    pub env: Vec<Sourced>,
    pub user: Option<Sourced>,
    pub array: Option<Sourced>,
    pub depends_on: Option<Sourced>,
    pub hold: bool,
    pub no_preempt: bool,
    pub checkpoint: Option<Sourced>,
    pub checkpoint_signal: Option<Sourced>,
    pub checkpoint_timeout: Option<Sourced>,
    pub checkpoint_interval: Option<Sourced>,
}

impl Layered {
    /// Lays `opts` over what is there; `origin` describes where they were written.
    fn overlay(&mut self, opts: JobOptions, origin: Option<String>, replace_constraints: bool) {
        let set = |slot: &mut Option<Sourced>, v: Option<String>| {
            if let Some(v) = v {
                *slot = Some(Sourced::new(v, &origin));
            }
        };
        set(&mut self.nodes, opts.nodes);
        set(&mut self.walltime, opts.walltime);
        set(&mut self.priority, opts.priority);
        set(&mut self.tenant, opts.tenant);
        set(&mut self.vcluster, opts.vcluster);
        set(&mut self.name, opts.name);
        set(&mut self.user, opts.user);
        set(&mut self.array, opts.array);
        set(&mut self.depends_on, opts.depends_on);
        set(&mut self.checkpoint, opts.checkpoint);
        set(&mut self.checkpoint_signal, opts.checkpoint_signal);
        set(&mut self.checkpoint_timeout, opts.checkpoint_timeout);
        set(&mut self.checkpoint_interval, opts.checkpoint_interval);
        self.hold |= opts.hold;
        self.no_preempt |= opts.no_preempt;
        if replace_constraints && !opts.constraints.is_empty() {
            self.constraints.clear();
        }
        let wrap = |v: String| Sourced::new(v, &origin);
        self.constraints
            .extend(opts.constraints.into_iter().map(wrap));
        self.env.extend(opts.env.into_iter().map(wrap));
    }
}

/// Combines the script's directives (in order) with the command line's flags.
/// `script_name` is used in messages (`job.sh line 3`).
pub fn layer(
    directives: &[Directive],
    script_name: &str,
    cli: JobOptions,
) -> Result<Layered, String> {
    let mut layered = Layered::default();
    for d in directives {
        let where_ = format!("{} on line {} of {script_name}", d.tag, d.line);
        let parsed = DirectiveLine::try_parse_from(&d.args)
            .map_err(|e| format!("{} ({where_})", clap_message(&e)))?;
        layered.overlay(parsed.opts, Some(where_), false);
    }
    layered.overlay(cli, None, true);
    Ok(layered)
}

/// The first line of a clap error, without its `error: ` prefix.
fn clap_message(e: &clap::Error) -> String {
    let text = e.to_string();
    let first = text.lines().next().unwrap_or("invalid directive");
    first.strip_prefix("error: ").unwrap_or(first).to_string()
}

/// The user to submit as when no `--user` is given: `$USER`, else `$LOGNAME`, else `unknown`.
pub fn default_user(getenv: impl Fn(&str) -> Option<String>) -> Sourced {
    for var in ["USER", "LOGNAME"] {
        if let Some(v) = getenv(var).filter(|v| !v.is_empty()) {
            return Sourced {
                value: v,
                origin: Some(format!("taken from ${var}; pass --user")),
            };
        }
    }
    Sourced {
        value: "unknown".into(),
        origin: Some("no $USER or $LOGNAME; pass --user".into()),
    }
}

/// Checks every value and builds the request (without `command` / `script`). The error is the
/// message to print after `error: `.
pub fn resolve(l: Layered, user: Sourced) -> Result<SubmitRequest, String> {
    let bad = |flag: &str, s: &Sourced, why: &str| {
        format!("invalid {flag} {:?}: {why}{}", s.value, s.suffix())
    };
    let mut req = SubmitRequest::default();

    if let Some(s) = &l.nodes {
        let n = whole(&s.value)
            .filter(|n| (1..=MAX_NODES).contains(n))
            .ok_or_else(|| {
                bad(
                    "--nodes",
                    s,
                    &format!("expected a node count from 1 to {MAX_NODES}"),
                )
            })?;
        req.nodes = Some(n);
    }
    if let Some(s) = &l.walltime {
        let secs = parse_duration(&s.value).map_err(|why| bad("--walltime", s, &why))?;
        let secs = i64::try_from(secs).unwrap_or(i64::MAX);
        if !(1..=MAX_WALLTIME_SECONDS).contains(&secs) {
            return Err(bad("--walltime", s, "must be from 1 second to 366 days"));
        }
        req.walltime_seconds = Some(secs);
    }
    if let Some(s) = &l.priority {
        let p = whole(&s.value)
            .filter(|p| (0..=MAX_PRIORITY).contains(p))
            .ok_or_else(|| {
                bad(
                    "--priority",
                    s,
                    &format!("expected a number from 0 to {MAX_PRIORITY}"),
                )
            })?;
        req.priority = Some(p);
    }
    checkpoint(&l, &mut req)?;
    for (flag, slot, field) in [
        ("--tenant", &l.tenant, &mut req.tenant),
        ("--vcluster", &l.vcluster, &mut req.vcluster),
    ] {
        if let Some(s) = slot {
            validate_name(flag, &s.value).map_err(|r| bad(flag, s, &rejection_reason(&r)))?;
            *field = Some(s.value.clone());
        }
    }
    let user = l.user.unwrap_or(user);
    validate_name("--user", &user.value)
        .map_err(|r| bad("--user", &user, &rejection_reason(&r)))?;
    req.user = Some(user.value);
    req.name = l.name.map(|s| s.value);
    if let Some(s) = &l.array {
        parse_array(&s.value).map_err(|why| bad("--array", s, &why))?;
        req.array = Some(s.value.clone());
    }
    if let Some(s) = &l.depends_on {
        parse_dependencies(&s.value).map_err(|why| bad("--depends-on", s, &why))?;
        req.depends_on = Some(s.value.clone());
    }
    if l.hold {
        req.hold = Some(true);
    }
    if l.no_preempt {
        req.preemptible = Some(false);
    }

    if !l.constraints.is_empty() {
        let mut c = Constraints::default();
        for s in &l.constraints {
            apply_constraint(&mut c, &s.value).map_err(|why| bad("--constraint", s, &why))?;
        }
        req.constraints = Some(c);
    }
    if !l.env.is_empty() {
        let mut env = BTreeMap::new();
        for s in &l.env {
            let (k, v) = s
                .value
                .split_once('=')
                .ok_or_else(|| bad("--env", s, "expected NAME=VALUE"))?;
            env.insert(k.to_string(), v.to_string());
        }
        req.env = Some(env);
    }
    Ok(req)
}

/// The `--checkpoint*` flags. Giving the signal, timeout or interval without `--checkpoint`
/// implies `--checkpoint=signal`; with `--checkpoint=none` they are refused.
fn checkpoint(l: &Layered, req: &mut SubmitRequest) -> Result<(), String> {
    let bad = |flag: &str, s: &Sourced, why: &str| {
        format!("invalid {flag} {:?}: {why}{}", s.value, s.suffix())
    };
    let mode = match &l.checkpoint {
        Some(s) => Some(
            CheckpointMode::parse(&s.value.trim().to_ascii_lowercase())
                .ok_or_else(|| bad("--checkpoint", s, "expected signal or none"))?,
        ),
        None => None,
    };
    let details = [
        ("--checkpoint-signal", &l.checkpoint_signal),
        ("--checkpoint-timeout", &l.checkpoint_timeout),
        ("--checkpoint-interval", &l.checkpoint_interval),
    ];
    if mode == Some(CheckpointMode::None) {
        if let Some((flag, Some(s))) = details.iter().find(|(_, s)| s.is_some()) {
            return Err(bad(flag, s, "only applies with --checkpoint=signal"));
        }
    }
    if let Some(s) = &l.checkpoint_signal {
        let sig = parse_signal(&s.value).map_err(|_| {
            bad(
                "--checkpoint-signal",
                s,
                &format!("expected one of {}", CHECKPOINT_SIGNALS.join(", ")),
            )
        })?;
        req.checkpoint_signal = Some(sig.to_string());
    }
    let seconds = |flag: &str, s: &Sourced, max: i64, range: &str| {
        let n = parse_seconds(&s.value).map_err(|why| bad(flag, s, &why))?;
        match i64::try_from(n) {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(bad(flag, s, &format!("must be from 1 second to {range}"))),
        }
    };
    if let Some(s) = &l.checkpoint_timeout {
        req.checkpoint_timeout_seconds = Some(seconds(
            "--checkpoint-timeout",
            s,
            MAX_CHECKPOINT_TIMEOUT_SECONDS,
            "1 hour",
        )?);
    }
    if let Some(s) = &l.checkpoint_interval {
        req.checkpoint_interval_seconds = Some(seconds(
            "--checkpoint-interval",
            s,
            MAX_CHECKPOINT_INTERVAL_SECONDS,
            "366 days",
        )?);
    }
    let implied = details.iter().any(|(_, s)| s.is_some());
    req.checkpoint = match mode {
        Some(m) => Some(m.as_str().to_string()),
        None if implied => Some(CheckpointMode::Signal.as_str().to_string()),
        None => None,
    };
    Ok(())
}

/// Final check with the server's own validation (names, env, script size); the error names the
/// flag at fault.
pub fn check(req: &SubmitRequest) -> Result<(), String> {
    match req.clone().into_spec("unknown") {
        Ok(_) => Ok(()),
        Err(Rejection::Invalid { field, message }) => {
            Err(format!("invalid {}: {message}", flag_of(&field)))
        }
        Err(other) => Err(other.to_string()),
    }
}

/// The flag that sets a `SubmitRequest` field.
fn flag_of(field: &str) -> &str {
    match field {
        "nodes" => "--nodes",
        "walltime_seconds" => "--walltime",
        "priority" => "--priority",
        "tenant" => "--tenant",
        "vcluster" => "--vcluster",
        "user" => "--user",
        "name" => "--name",
        "env" => "--env",
        "array" => "--array",
        "depends_on" => "--depends-on",
        "preemptible" => "--no-preempt",
        "checkpoint" => "--checkpoint",
        "checkpoint_signal" => "--checkpoint-signal",
        "checkpoint_timeout_seconds" => "--checkpoint-timeout",
        "checkpoint_interval_seconds" => "--checkpoint-interval",
        f if f.starts_with("constraints") => "--constraint",
        other => other,
    }
}

fn rejection_reason(r: &Rejection) -> String {
    match r {
        Rejection::Invalid { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

/// A plain decimal integer (no sign, no spaces).
fn whole(text: &str) -> Option<i64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::super::directives::scan;
    use super::*;

    fn cli(args: &[&str]) -> JobOptions {
        DirectiveLine::try_parse_from(args).unwrap().opts
    }

    fn alice() -> Sourced {
        default_user(|v| (v == "USER").then(|| "alice".to_string()))
    }

    fn build(script: &str, args: &[&str]) -> Result<SubmitRequest, String> {
        let scan = scan(script)?;
        resolve(layer(&scan.directives, "job.sh", cli(args))?, alice())
    }

    #[test]
    fn directives_fill_the_request() {
        let script = "#!/bin/sh\n#SBATCH -N 2\n#SBATCH --time=1:30:00\n#SBATCH -J train\n\
                      #SBATCH -p gpu\n#SBATCH -A physics\n#SBATCH -C ib\n\
                      #LATTICE --priority 7 --env OMP_NUM_THREADS=8 -C min_gpus=4\nsrun x\n";
        let r = build(script, &[]).unwrap();
        assert_eq!(r.nodes, Some(2));
        assert_eq!(r.walltime_seconds, Some(5400));
        assert_eq!(r.name.as_deref(), Some("train"));
        assert_eq!(r.vcluster.as_deref(), Some("gpu"));
        assert_eq!(r.tenant.as_deref(), Some("physics"));
        assert_eq!(r.priority, Some(7));
        assert_eq!(r.user.as_deref(), Some("alice"));
        let c = r.constraints.unwrap();
        assert_eq!(c.features, ["ib"]);
        assert_eq!(c.min_gpus, Some(4));
        assert_eq!(r.env.unwrap()["OMP_NUM_THREADS"], "8");
    }

    #[test]
    fn command_line_beats_directives_and_later_lines_win() {
        let script = "#LATTICE -N 2 -t 10 --env A=1 --env B=1 -C ib\n#SBATCH -N 3 -J first\n\
                      #SBATCH -J second\n";
        let r = build(
            script,
            &["-t", "2h", "--env", "B=2", "-C", "nvme", "--user", "bob"],
        )
        .unwrap();
        assert_eq!(r.nodes, Some(3), "the later directive wins");
        assert_eq!(r.name.as_deref(), Some("second"));
        assert_eq!(r.walltime_seconds, Some(7200), "the command line wins");
        assert_eq!(r.user.as_deref(), Some("bob"));
        let env = r.env.unwrap();
        assert_eq!((env["A"].as_str(), env["B"].as_str()), ("1", "2"));
        assert_eq!(
            r.constraints.unwrap().features,
            ["nvme"],
            "-C replaces the script's -C"
        );
    }

    #[test]
    fn errors_name_the_flag_and_the_line() {
        let e = build("#!/bin/sh\n#SBATCH --time=forever\n", &[]).unwrap_err();
        assert!(
            e.starts_with("invalid --walltime \"forever\": expected"),
            "{e}"
        );
        assert!(e.ends_with("(#SBATCH on line 2 of job.sh)"), "{e}");
        let e = build("", &["-N", "0"]).unwrap_err();
        assert_eq!(
            e,
            "invalid --nodes \"0\": expected a node count from 1 to 100000"
        );
        let e = build("#LATTICE --nodez 3\n", &[]).unwrap_err();
        assert!(
            e.contains("--nodez") && e.contains("line 1 of job.sh"),
            "{e}"
        );
        let e = build("#LATTICE stray\n", &[]).unwrap_err();
        assert!(e.contains("stray"), "{e}");
        let e = build("#LATTICE --help\n", &[]).unwrap_err();
        assert!(e.contains("--help"), "{e}");
    }

    #[test]
    fn bad_values_are_refused() {
        for args in [
            &["--nodes=-1"][..],
            &["-N", "two"],
            &["-N", "100001"],
            &["-t", "0"],
            &["-t", "367d"],
            &["-t", "1:99"],
            &["--priority", "11"],
            &["--priority", "high"],
            &["-A", "a b"],
            &["-p", ""],
            &["--user=-x"],
            &["-C", "min_gpus=lots"],
            &["--env", "NOVALUE"],
            &["--checkpoint", "cr"],
            &["--checkpoint-signal", "KILL"],
            &["--checkpoint-timeout", "3601"],
            &["--checkpoint-timeout", "0"],
            &["--checkpoint-interval", "0"],
            &["--checkpoint-interval", "soon"],
        ] {
            let e = build("", args).unwrap_err();
            assert!(e.starts_with("invalid -"), "{args:?}: {e}");
        }
    }

    #[test]
    fn arrays_dependencies_and_holds() {
        let script =
            "#!/bin/sh\n#SBATCH --array=0-9%2\n#SBATCH --dependency=afterok:4\n#SBATCH -H\n";
        let r = build(script, &[]).unwrap();
        assert_eq!(r.array.as_deref(), Some("0-9%2"));
        assert_eq!(r.depends_on.as_deref(), Some("afterok:4"));
        assert_eq!(r.hold, Some(true));
        let r = build("", &["--array", "1,3", "--depends-on", "4:any,5"]).unwrap();
        assert_eq!(r.array.as_deref(), Some("1,3"));
        assert_eq!(r.depends_on.as_deref(), Some("4:any,5"));
        assert_eq!(r.hold, None);
        let e = build("", &["--array", "9-1"]).unwrap_err();
        assert!(
            e.starts_with("invalid --array \"9-1\": range 9-1 runs backwards"),
            "{e}"
        );
        let e = build("#LATTICE --depends-on 4:maybe\n", &[]).unwrap_err();
        assert!(e.contains("--depends-on") && e.contains("line 1"), "{e}");
    }

    #[test]
    fn preemption_and_checkpoint_flags() {
        let r = build("", &["--no-preempt"]).unwrap();
        assert_eq!(r.preemptible, Some(false));
        assert_eq!(r.checkpoint, None);
        let r = build("", &[]).unwrap();
        assert_eq!(
            (r.preemptible, r.checkpoint),
            (None, None),
            "server defaults"
        );

        let script = "#!/bin/sh\n\
                      #LATTICE --checkpoint=signal --checkpoint-signal usr2 --checkpoint-timeout 2m\n\
                      #LATTICE --checkpoint-interval 1h --no-preempt\nsrun x\n";
        let mut r = build(script, &["--checkpoint-timeout", "90"]).unwrap();
        assert_eq!(r.checkpoint.as_deref(), Some("signal"));
        assert_eq!(r.checkpoint_signal.as_deref(), Some("SIGUSR2"));
        assert_eq!(
            r.checkpoint_timeout_seconds,
            Some(90),
            "the command line wins; a bare number is seconds"
        );
        assert_eq!(r.checkpoint_interval_seconds, Some(3600));
        assert_eq!(r.preemptible, Some(false));
        r.command = Some(vec!["true".into()]);
        assert_eq!(check(&r), Ok(()), "the server accepts what the flags build");

        // Any detail implies --checkpoint=signal.
        let r = build("", &["--checkpoint-interval", "600"]).unwrap();
        assert_eq!(r.checkpoint.as_deref(), Some("signal"));
        assert_eq!(r.checkpoint_interval_seconds, Some(600));
        let r = build("", &["--checkpoint", "NONE"]).unwrap();
        assert_eq!(r.checkpoint.as_deref(), Some("none"));

        let e = build("", &["--checkpoint=cr"]).unwrap_err();
        assert_eq!(e, "invalid --checkpoint \"cr\": expected signal or none");
        let e = build("", &["--checkpoint=none", "--checkpoint-signal", "USR1"]).unwrap_err();
        assert_eq!(
            e,
            "invalid --checkpoint-signal \"USR1\": only applies with --checkpoint=signal"
        );
        let e = build("", &["--checkpoint-signal", "TERM"]).unwrap_err();
        assert!(e.contains("SIGUSR1, SIGUSR2"), "{e}");
        let e = build("", &["--checkpoint-timeout", "2h"]).unwrap_err();
        assert!(e.ends_with("must be from 1 second to 1 hour"), "{e}");
        let e = build("#!/bin/sh\n#LATTICE --checkpoint-interval=soon\n", &[]).unwrap_err();
        assert!(
            e.starts_with("invalid --checkpoint-interval \"soon\": expected seconds")
                && e.ends_with("(#LATTICE on line 2 of job.sh)"),
            "{e}"
        );
        // The command line's --checkpoint=none beats the script's signal, and then the
        // script's details do not apply.
        let e = build(
            "#LATTICE --checkpoint=signal --checkpoint-timeout 30\n",
            &["--checkpoint", "none"],
        )
        .unwrap_err();
        assert!(
            e.contains("--checkpoint-timeout") && e.contains("line 1"),
            "{e}"
        );
    }

    #[test]
    fn sbatch_no_requeue_is_not_no_preempt() {
        let r = build("#!/bin/sh\n#SBATCH --no-requeue\n", &[]).unwrap();
        assert_eq!(r.preemptible, None);
    }

    #[test]
    fn user_defaults() {
        assert_eq!(alice().value, "alice");
        let logname = default_user(|v| (v == "LOGNAME").then(|| "carol".to_string()));
        assert_eq!(logname.value, "carol");
        let empty = default_user(|_| Some(String::new()));
        assert_eq!(empty.value, "unknown");
        let weird = default_user(|_| Some("j doe".to_string()));
        let e = resolve(Layered::default(), weird).unwrap_err();
        assert!(e.contains("$USER") && e.contains("--user"), "{e}");
    }

    #[test]
    fn server_validation_names_the_flag() {
        let mut r = build("", &["--env", "1BAD=x"]).unwrap();
        r.command = Some(vec!["true".into()]);
        let e = check(&r).unwrap_err();
        assert!(e.starts_with("invalid --env:"), "{e}");
        r.env = None;
        assert_eq!(check(&r), Ok(()));
        r.script = Some("echo".into());
        assert!(check(&r).unwrap_err().contains("not both"));
    }
}
