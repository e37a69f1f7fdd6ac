//! `lattice bench`: drives a running cluster through the public API and prints what it
//! measured (docs/benchmarks.md, "lattice bench"):
//!
//! - `submit`: individual submissions from 1, 16, 64 concurrent clients: submissions/s and
//!   per-request latency (each answer comes after the Raft commit);
//! - `arrays`: whole job arrays, one Raft entry each: allocations/s;
//! - `cycle`: nothing submitted for `--observe` seconds, so the scheduling-cycle row shows the
//!   cycle at the queue as it is (what the earlier phases left, or the cluster's own queue);
//! - `e2e`: trivial jobs submitted and waited for until they ended: jobs/s, and from the jobs'
//!   own timestamps the submit-to-running latency and the placement rate;
//! - for every phase, the leader's scheduling-cycle histogram over the phase (scraped before
//!   and after); with `--server-pid`, the control plane's RSS and CPU seconds per 1,000
//!   allocations.
//!
//! What the submission phases leave pending or running is cancelled before the `e2e` phase
//! (and what `e2e` leaves at its timeout, at the end) unless `--keep`; so is everything the
//! bench created when it fails or is interrupted (Ctrl-C: it stops submitting, cancels, and
//! prints what it measured so far).

mod e2e;
mod interrupt;
mod probe;
mod procfs;
mod prom;
mod readback;
mod report;
mod run;
mod stats;
mod submit;

use clap::{Args, ValueEnum};

use run::Bench;

/// The environment variable a simulated node (`lattice agent --simulate N`) reads a job's
/// run time from, in seconds. It also reads `LATTICE_SIM_DURATION`, but the control plane
/// refuses `LATTICE_*` names in a submission (they are the agent's), so jobs carry this one.
pub const SIM_DURATION_ENV: &str = "SIM_DURATION";

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// Individual submissions at each --clients level
    Submit,
    /// --arrays job arrays of --array-size tasks
    Arrays,
    /// Submit nothing for --observe seconds: scheduling cycles at the queue as it is
    Cycle,
    /// --e2e jobs run to completion; submit-to-running latency and placement rate
    E2e,
}

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Phase::Submit => "submit",
            Phase::Arrays => "arrays",
            Phase::Cycle => "cycle",
            Phase::E2e => "e2e",
        }
    }
}

#[derive(ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Format {
    /// Aligned columns
    #[default]
    Table,
    /// JSON
    Json,
}

#[derive(Args, Debug)]
#[command(after_help = "Examples:\n  \
    lattice bench                                   (about a minute against `lattice dev`)\n  \
    lattice bench --phases submit --clients 1,16,64 --submits 5000 -o json\n  \
    lattice bench --phases e2e --e2e 10000 --e2e-array --sim-duration 0.5   (simulated nodes)\n  \
    lattice bench --phases cycle --observe 30        (the scheduler at the cluster's own queue)\n  \
    lattice bench --server-pid 4242 --server-pid 4243 --server-pid 4244\n\n\
    Run it against a cluster you may load: the jobs it submits run (`true`), and it cancels\n\
    what it leaves pending or running unless --keep.")]
pub struct BenchArgs {
    /// Phases to run, in this order whatever the order given
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "submit,arrays,cycle,e2e"
    )]
    pub phases: Vec<Phase>,
    /// Concurrent clients of the submit phase, one level each (e2e uses the largest)
    #[arg(long, value_delimiter = ',', default_value = "1,16,64", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub clients: Vec<u16>,
    /// Submissions per --clients level
    #[arg(long, default_value_t = 2000, value_name = "N")]
    pub submits: usize,
    /// Job arrays to submit in the arrays phase
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub arrays: usize,
    /// Tasks per array
    #[arg(long, default_value_t = 1000, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=10000))]
    pub array_size: u32,
    /// How long the cycle phase watches the scheduler, in seconds
    #[arg(long, default_value_t = 5.0, value_name = "SECONDS", value_parser = parse_seconds)]
    pub observe: f64,
    /// Jobs of the e2e phase
    #[arg(long = "e2e", default_value_t = 100, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=10000))]
    pub e2e: u32,
    /// Submit the e2e jobs as one array instead of individually
    #[arg(long)]
    pub e2e_array: bool,
    /// Jobs carry SIM_DURATION=SECONDS: how long simulated nodes "run" them (real ones run `true`)
    #[arg(long, value_name = "SECONDS", value_parser = parse_seconds)]
    pub sim_duration: Option<f64>,
    /// How long to wait for the e2e jobs to end, in seconds
    #[arg(long, default_value_t = 300, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout: u64,
    /// Tenant of the bench's jobs (default: the server's, `default`)
    #[arg(short = 'A', long, visible_alias = "account", value_name = "TENANT")]
    pub tenant: Option<String>,
    /// vCluster of the bench's jobs (default: `default`)
    #[arg(
        short = 'p',
        long,
        visible_alias = "partition",
        value_name = "VCLUSTER"
    )]
    pub vcluster: Option<String>,
    /// User of the bench's jobs (default: $USER)
    #[arg(short = 'u', long, value_name = "USER")]
    pub user: Option<String>,
    /// A control-plane process on this machine to measure (repeatable)
    #[arg(long = "server-pid", value_name = "PID")]
    pub server_pids: Vec<u32>,
    /// Leave the bench's allocations pending or running instead of cancelling them
    #[arg(long)]
    pub keep: bool,
    /// Output format
    #[arg(short = 'o', long, value_enum, default_value_t = Format::Table, value_name = "FORMAT")]
    pub output: Format,
}

fn parse_seconds(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(s) if s.is_finite() && s >= 0.0 => Ok(s),
        _ => Err("expected a number of seconds, 0 or more".into()),
    }
}

/// Why the bench stopped; each maps to an exit code.
enum Stop {
    /// Bad input (exit 2).
    Usage(String),
    /// The cluster failed or refused (exit 1).
    Failed(String),
}

impl From<lattice_client::ClientError> for Stop {
    fn from(e: lattice_client::ClientError) -> Self {
        Stop::Failed(e.to_string())
    }
}

/// Runs the bench; returns the process exit code.
pub async fn run(args: BenchArgs, endpoint: &str) -> i32 {
    match bench(args, endpoint).await {
        Ok(code) => code,
        Err(Stop::Usage(msg)) => {
            eprintln!("error: {msg}");
            2
        }
        Err(Stop::Failed(msg)) => {
            eprintln!("error: {msg}");
            1
        }
    }
}

async fn bench(args: BenchArgs, endpoint: &str) -> Result<i32, Stop> {
    let mut b = Bench::new(&args, endpoint).await?;
    interrupt::listen();
    let result = match b.run(&args).await {
        Ok(()) => b.finish().await,
        Err(e) => Err(e),
    };
    if !args.keep {
        match (b.cleanup().await, &result) {
            (Err(e), Ok(())) => return Err(e),
            (Err(Stop::Usage(e) | Stop::Failed(e)), Err(_)) => {
                eprintln!("warning: could not cancel what the bench left: {e}")
            }
            _ => {}
        }
    }
    result?;
    match args.output {
        Format::Table => write_out(&b.report.render())?,
        Format::Json => match serde_json::to_string_pretty(&b.report) {
            Ok(text) => write_out(&format!("{text}\n"))?,
            Err(e) => return Err(Stop::Failed(format!("cannot encode JSON: {e}"))),
        },
    }
    if interrupt::requested() {
        return Ok(130);
    }
    match &b.report.e2e {
        Some(e) if e.timed_out => {
            eprintln!(
                "error: {} end-to-end jobs had not ended after --timeout {}s",
                e.unfinished, args.timeout
            );
            Ok(1)
        }
        _ => Ok(0),
    }
}

/// Writes to stdout; a reader that went away is not an error.
fn write_out(text: &str) -> Result<(), Stop> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(Stop::Failed(format!(
            "cannot write to standard output: {e}"
        ))),
        _ => Ok(()),
    }
}
