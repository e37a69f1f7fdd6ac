//! The long-running subcommands: `server` (a control-plane member), `agent` (a node agent) and
//! `dev` (both in one process, data in a temporary directory).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use serde_json::{json, Map, Value};

use crate::config;

#[derive(clap::Args)]
pub struct ServerArgs {
    /// YAML configuration file (`server:` section).
    #[arg(long, env = "LATTICE_CONFIG")]
    config: Option<PathBuf>,
    /// This member's Raft ID.
    #[arg(long)]
    node_id: Option<u64>,
    /// Directory for the Raft log and snapshots.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// REST API listen address (default 0.0.0.0:8080).
    #[arg(long)]
    api_addr: Option<String>,
    /// URL peers and agents use to reach this member.
    #[arg(long)]
    advertise_url: Option<String>,
    /// Initialize a new cluster if this member has no state yet (of --peers, else alone).
    #[arg(long)]
    bootstrap: bool,
    /// Initial members for --bootstrap: ID=URL,ID=URL,... (must include --node-id).
    #[arg(long, value_delimiter = ',')]
    peers: Vec<String>,
    /// Join a running cluster through any of its members' URL.
    #[arg(long)]
    join: Option<String>,
    /// Start a NEW single-member cluster from a backup made by `lattice raft snapshot save`
    /// (data_dir must be empty).
    #[arg(long)]
    restore: Option<PathBuf>,
}

#[derive(clap::Args)]
pub struct AgentArgs {
    /// YAML configuration file (`agent:` section).
    #[arg(long, env = "LATTICE_CONFIG")]
    config: Option<PathBuf>,
    /// Control-plane URL(s), comma-separated.
    #[arg(long, value_delimiter = ',')]
    server: Vec<String>,
    /// Node name (default: the hostname); with --nodes N > 1, nodes are NAME-1..NAME-N.
    #[arg(long)]
    node_id: Option<String>,
    /// Number of nodes this agent presents.
    #[arg(long)]
    nodes: Option<u32>,
    /// Node feature (repeatable), matched by `--constraint features=...`.
    #[arg(long = "feature")]
    features: Vec<String>,
    /// Agent HTTP listen address (serves logs to the control plane).
    #[arg(long)]
    listen: Option<String>,
    /// URL the control plane uses to reach this agent.
    #[arg(long)]
    advertise_url: Option<String>,
    /// Directory holding each allocation's working directory and output.
    #[arg(long)]
    work_dir: Option<PathBuf>,
    #[command(flatten)]
    sim: SimArgs,
}

/// Virtual nodes for scale benchmarks (`agent:` keys `simulate`, `sim_*`; see
/// docs/configuration.md).
#[derive(clap::Args)]
pub struct SimArgs {
    /// Present N virtual nodes (NAME-1..NAME-N) that register, heartbeat and poll like real
    /// ones but run nothing: a job "runs" for --sim-duration seconds.
    #[arg(long, value_name = "N")]
    simulate: Option<u32>,
    /// Simulated run time of a job in seconds, fractions allowed (default 0: ends at once);
    /// a job overrides it with SIM_DURATION in its environment.
    #[arg(long, value_name = "SECS")]
    sim_duration: Option<f64>,
    /// CPUs of each virtual node (default 64).
    #[arg(long)]
    sim_cpus: Option<u32>,
    /// Memory of each virtual node in GiB (default 256).
    #[arg(long)]
    sim_memory_gb: Option<u64>,
    /// GPUs of each virtual node (default 0).
    #[arg(long)]
    sim_gpus: Option<u32>,
    /// GPU model of each virtual node.
    #[arg(long)]
    sim_gpu_model: Option<String>,
    /// Features of every virtual node, comma-separated.
    #[arg(long, value_delimiter = ',')]
    sim_features: Vec<String>,
    /// Topology groups: virtual node i gets the feature group=g{i % G}.
    #[arg(long, value_name = "G")]
    sim_groups: Option<u32>,
    /// Virtual nodes per work long-poll (default 100; real agents poll one node each).
    #[arg(long)]
    sim_poll_batch: Option<u32>,
}

impl SimArgs {
    /// Adds the given flags to the `agent` section of the override document.
    fn set(&self, o: &mut Map<String, Value>) {
        let opt = [
            ("simulate", self.simulate.map(|v| json!(v))),
            ("sim_duration_seconds", self.sim_duration.map(|v| json!(v))),
            ("sim_cpus", self.sim_cpus.map(|v| json!(v))),
            ("sim_memory_gb", self.sim_memory_gb.map(|v| json!(v))),
            ("sim_gpus", self.sim_gpus.map(|v| json!(v))),
            (
                "sim_gpu_model",
                self.sim_gpu_model.as_ref().map(|v| json!(v)),
            ),
            (
                "sim_features",
                (!self.sim_features.is_empty()).then(|| json!(self.sim_features)),
            ),
            ("sim_groups", self.sim_groups.map(|v| json!(v))),
            ("sim_poll_batch", self.sim_poll_batch.map(|v| json!(v))),
        ];
        for (key, value) in opt {
            if let Some(v) = value {
                set(o, "agent", key, v);
            }
        }
    }
}

#[derive(clap::Args)]
pub struct DevArgs {
    /// YAML configuration file (`server:` and `agent:` sections).
    #[arg(long, env = "LATTICE_CONFIG")]
    config: Option<PathBuf>,
    /// REST API listen address.
    #[arg(long, default_value = "127.0.0.1:8080")]
    api_addr: String,
    /// Keep data here instead of a fresh temporary directory (removed on exit).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Number of nodes the local agent presents [default: 4].
    #[arg(long, conflicts_with = "simulate")]
    nodes: Option<u32>,
    /// Run with access control off: every request acts as an admin (no tokens).
    #[arg(long)]
    insecure: bool,
    #[command(flatten)]
    sim: SimArgs,
}

pub fn exit_code(r: anyhow::Result<()>) -> i32 {
    match r {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e:#}");
            1
        }
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .try_init();
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn stop_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term => {},
    }
}

/// Adds `key: value` to `section` of the override document when the flag was given.
fn set(doc: &mut Map<String, Value>, section: &str, key: &str, value: Value) {
    let s = doc
        .entry(section.to_string())
        .or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(m) = s {
        m.insert(key.to_string(), value);
    }
}

pub async fn server(a: ServerArgs) -> anyhow::Result<()> {
    init_logging();
    let mut o = Map::new();
    if let Some(v) = a.node_id {
        set(&mut o, "server", "node_id", json!(v));
    }
    if let Some(v) = &a.data_dir {
        set(&mut o, "server", "data_dir", json!(v));
    }
    if let Some(v) = &a.api_addr {
        set(&mut o, "server", "api_addr", json!(v));
    }
    if let Some(v) = &a.advertise_url {
        set(&mut o, "server", "advertise_url", json!(v));
    }
    if a.bootstrap {
        set(&mut o, "server", "bootstrap", json!(true));
    }
    if !a.peers.is_empty() {
        let mut peers = Map::new();
        for p in &a.peers {
            let (id, url) = p
                .split_once('=')
                .filter(|(id, _)| id.parse::<u64>().is_ok())
                .ok_or_else(|| anyhow::anyhow!("--peers: {p:?} is not ID=URL"))?;
            peers.insert(id.to_string(), json!(url));
        }
        set(&mut o, "server", "peers", Value::Object(peers));
    }
    if let Some(v) = &a.join {
        set(&mut o, "server", "join", json!(v));
    }
    let cfg = config::load(a.config.as_deref(), Value::Object(o))?;
    if let Some(file) = &a.restore {
        cfg.server.validate().map_err(anyhow::Error::msg)?;
        let url = cfg.server.advertised(cfg.server.api_addr);
        let index = lattice_server::raft::restore::restore(
            &cfg.server.data_dir.join("lattice.redb"),
            file,
            cfg.server.node_id,
            &url,
        )?;
        println!(
            "restored {} up to log index {index} as a single-member cluster",
            file.display()
        );
    }
    let running = lattice_server::start(cfg.server, stop_signal()).await?;
    println!(
        "lattice server listening on {} (advertised as {})",
        running.local_addr, running.url
    );
    running.handle.await.context("server task")?
}

pub async fn agent(a: AgentArgs) -> anyhow::Result<()> {
    init_logging();
    let mut o = Map::new();
    if !a.server.is_empty() {
        set(&mut o, "agent", "servers", json!(a.server));
    }
    if let Some(v) = &a.node_id {
        set(&mut o, "agent", "node_id", json!(v));
    }
    if let Some(v) = a.nodes {
        set(&mut o, "agent", "nodes", json!(v));
    }
    if !a.features.is_empty() {
        set(&mut o, "agent", "features", json!(a.features));
    }
    if let Some(v) = &a.listen {
        set(&mut o, "agent", "listen_addr", json!(v));
    }
    if let Some(v) = &a.advertise_url {
        set(&mut o, "agent", "advertise_url", json!(v));
    }
    if let Some(v) = &a.work_dir {
        set(&mut o, "agent", "work_dir", json!(v));
    }
    a.sim.set(&mut o);
    let cfg = config::load(a.config.as_deref(), Value::Object(o))?;
    lattice_agent::run(cfg.agent, cfg.telemetry, stop_signal()).await
}

/// Where `lattice dev` keeps its tokens, in its data directory (mode 0600).
const ADMIN_TOKEN_FILE: &str = "admin-token";
const AGENT_TOKEN_FILE: &str = "agent-token";

/// The dev cluster's admin and agent tokens: created (bootstrap, then an agent token for its
/// nodes) on the first start, read back from the data directory on a restart.
async fn dev_tokens(
    agent: &lattice_agent::AgentConfig,
    data_dir: &std::path::Path,
    node_ids: &[String],
) -> anyhow::Result<(String, String)> {
    let (admin_path, agent_path) = (
        data_dir.join(ADMIN_TOKEN_FILE),
        data_dir.join(AGENT_TOKEN_FILE),
    );
    if let (Ok(admin), Ok(agent)) = (
        lattice_client::read_token_file(&admin_path),
        lattice_client::read_token_file(&agent_path),
    ) {
        return Ok((admin, agent));
    }
    let client = agent.client()?;
    // A developer's exported LATTICE_TOKEN becomes the admin token, so it keeps working
    // across dev clusters.
    let chosen = std::env::var("LATTICE_TOKEN")
        .ok()
        .map(|t| t.trim().to_string())
        .filter(|t| t.len() >= 16);
    let boot = client
        .acl_bootstrap(chosen.as_deref())
        .await
        .context("bootstrapping the dev cluster's ACLs (a data dir from an older run without its admin-token file cannot be reused)")?;
    let admin = boot["secret"].as_str().unwrap_or_default().to_string();
    let common = node_ids.iter().skip(1).fold(node_ids[0].as_str(), |p, n| {
        let len = p.bytes().zip(n.bytes()).take_while(|(a, b)| a == b).count();
        &p[..len]
    });
    let nodes = if common.is_empty() {
        node_ids.to_vec()
    } else {
        vec![format!("{common}*")]
    };
    let created = client
        .with_token(Some(admin.clone()))
        .create_token(&lattice_client::TokenRequest {
            subject: "dev-agent".into(),
            role: "agent".into(),
            nodes,
            description: "lattice dev's agent".into(),
            ..Default::default()
        })
        .await
        .context("creating the dev agent's token")?;
    let agent_token = created["secret"].as_str().unwrap_or_default().to_string();
    for (path, secret) in [(&admin_path, &admin), (&agent_path, &agent_token)] {
        lattice_client::write_token_file(path, secret)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok((admin, agent_token))
}

pub async fn dev(a: DevArgs) -> anyhow::Result<()> {
    init_logging();
    let temp = match &a.data_dir {
        Some(_) => None,
        None => Some(tempfile::Builder::new().prefix("lattice-dev-").tempdir()?),
    };
    let data_dir = match (&a.data_dir, &temp) {
        (Some(d), _) => d.clone(),
        (None, Some(t)) => t.path().to_path_buf(),
        (None, None) => unreachable!("one of them is set"),
    };
    let mut o = Map::new();
    set(&mut o, "server", "api_addr", json!(a.api_addr));
    set(&mut o, "server", "data_dir", json!(data_dir.join("server")));
    set(&mut o, "server", "bootstrap", json!(true));
    // A dev cluster takes any tenant name (a real one needs them created first).
    set(&mut o, "server", "auto_create_tenants", json!(true));
    if a.insecure {
        o.entry("server")
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .map(|m| m.insert("auth".into(), json!({ "enabled": false })));
    }
    if a.sim.simulate.is_none() {
        set(&mut o, "agent", "nodes", json!(a.nodes.unwrap_or(4)));
    }
    a.sim.set(&mut o);
    set(&mut o, "agent", "work_dir", json!(data_dir.join("agent")));
    let mut cfg = config::load(a.config.as_deref(), Value::Object(o))?;

    let (server_stop_tx, server_stop_rx) = tokio::sync::oneshot::channel::<()>();
    let running = lattice_server::start(cfg.server.clone(), async move {
        let _ = server_stop_rx.await;
    })
    .await?;
    // The dev agent always talks to its own control plane. Without a config file it is named
    // `dev` and serves logs on an ephemeral loopback port.
    let endpoint = format!("{}://{}", cfg.server.scheme(), running.local_addr);
    cfg.agent.servers = vec![endpoint.clone()];
    if a.config.is_none() {
        cfg.agent.node_id = "dev".into();
        cfg.agent.listen_addr = "127.0.0.1:0".parse()?;
    }
    let node_ids = cfg.agent.node_ids();
    let admin_token = if cfg.server.auth.enabled {
        let (admin, agent) = dev_tokens(&cfg.agent, &data_dir, &node_ids).await?;
        cfg.agent.token = Some(agent);
        Some(admin)
    } else {
        None
    };

    let (agent_stop_tx, agent_stop_rx) = tokio::sync::oneshot::channel::<()>();
    let agent_cfg = cfg.agent.clone();
    let agent = tokio::spawn(lattice_agent::run(
        agent_cfg,
        cfg.telemetry.clone(),
        async move {
            let _ = agent_stop_rx.await;
        },
    ));

    println!("Lattice dev cluster is up.");
    println!(
        "  control plane : {endpoint}  (single member, data in {})",
        data_dir.display()
    );
    if cfg.agent.simulate > 0 {
        println!(
            "  agent         : {} virtual node(s): {} .. {} (jobs run {}s, or SIM_DURATION)",
            node_ids.len(),
            node_ids[0],
            node_ids[node_ids.len() - 1],
            cfg.agent.sim_duration_seconds
        );
    } else {
        println!(
            "  agent         : {} node(s): {}",
            node_ids.len(),
            node_ids.join(", ")
        );
        println!("  job output    : {}", cfg.agent.work_dir.display());
    }
    println!();
    match &admin_token {
        Some(_) => println!(
            "  access        : tokens required; admin token in {}",
            data_dir.join(ADMIN_TOKEN_FILE).display()
        ),
        None => {
            println!("  !!! ACCESS CONTROL IS OFF (--insecure): anyone who can reach {endpoint}");
            println!("  !!! can submit, cancel and read anything, as any user.");
        }
    }
    println!();
    println!("Try, in another terminal:");
    if endpoint != "http://127.0.0.1:8080" {
        println!("  export LATTICE_ENDPOINT={endpoint}");
    }
    if let Some(t) = &admin_token {
        println!("  export LATTICE_TOKEN={t}");
    }
    println!("  lattice submit -- echo hello");
    println!("  lattice status --all");
    println!("  lattice logs 1");
    println!();
    println!("Press Ctrl-C to stop (running jobs are stopped too).");

    let mut agent = agent;
    let agent_result = tokio::select! {
        _ = stop_signal() => {
            println!("Stopping: ending running jobs...");
            let _ = agent_stop_tx.send(());
            tokio::time::timeout(Duration::from_secs(cfg.agent.kill_grace_seconds + 15), &mut agent).await
                .map_err(|_| anyhow::anyhow!("agent did not stop in time"))
                .and_then(|r| r.context("agent task"))
        }
        r = &mut agent => r.context("agent task"),
    };
    let _ = server_stop_tx.send(());
    let server_result = running.handle.await.context("server task");
    drop(temp);
    agent_result??;
    server_result??;
    println!("Stopped.");
    Ok(())
}
