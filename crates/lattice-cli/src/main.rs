//! `lattice`: one binary that is the control-plane server, the node agent, the embedded dev
//! cluster and the command-line client.

mod bench;
mod ca_file;
mod client_cmds;
mod config;
mod daemon;
mod tls_cmd;

use clap::{Parser, Subcommand};

#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(
    name = "lattice",
    version,
    about = "Lattice: a distributed workload scheduler for HPC and AI clusters"
)]
struct Cli {
    /// Control-plane URL(s) for client commands; a comma-separated list is tried in turn.
    #[arg(
        long,
        global = true,
        env = "LATTICE_ENDPOINT",
        default_value = "http://127.0.0.1:8080"
    )]
    endpoint: String,
    /// PEM CA bundle to trust for https:// endpoints, instead of the built-in web roots.
    #[arg(long, global = true, env = "LATTICE_CA_FILE")]
    ca_file: Option<std::path::PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

// Parsed once per process: the size of `Client` (the submit flags) costs nothing worth a `Box`.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Cmd {
    /// Run a control-plane member (Raft + REST API + scheduler).
    Server(daemon::ServerArgs),
    /// Run the node agent on a compute node.
    Agent(daemon::AgentArgs),
    /// Run a one-process dev cluster: a single-member control plane plus a local agent.
    Dev(daemon::DevArgs),
    /// Measure a running cluster: submit throughput, scheduling, end-to-end jobs/s.
    Bench(bench::BenchArgs),
    /// TLS helpers: `tls init` writes a test CA and a server certificate.
    Tls(tls_cmd::TlsArgs),
    #[command(flatten)]
    Client(client_cmds::ClientCommand),
}

fn main() {
    let cli = Cli::parse();
    if let Some(path) = cli.ca_file.clone() {
        ca_file::set(path);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    let code = runtime.block_on(async move {
        match cli.cmd {
            Cmd::Server(args) => daemon::exit_code(daemon::server(args).await),
            Cmd::Agent(args) => daemon::exit_code(daemon::agent(args).await),
            Cmd::Dev(args) => daemon::exit_code(daemon::dev(args).await),
            Cmd::Bench(args) => bench::run(args, &cli.endpoint).await,
            Cmd::Tls(args) => tls_cmd::run(args),
            Cmd::Client(cmd) => client_cmds::run(cmd, &cli.endpoint).await,
        }
    });
    std::process::exit(code);
}
