//! The Lattice node agent: presents one or more compute nodes to the control plane and runs
//! the allocation ranks placed on them as real processes.
//!
//! The agent registers its nodes, heartbeats (carrying exit reports), and long-polls for the
//! work of its nodes. After every answer it *reconciles*: a pure function (`reconcile`)
//! compares what the control plane wants with what runs here and returns a list of actions,
//! which a thin process layer (`executor`, `supervise`, `process`) carries out. Each rank runs
//! in its own process group under `{work_dir}/{node_id}/{allocation_id}/`, which also keeps the
//! `pid` and `exit` records that make an agent restart safe: nothing is ever started twice.
//!
//! Module map:
//! - `config`: [`AgentConfig`], the `agent:` section of the YAML configuration.
//! - `agent`: [`run`], which wires everything together and handles shutdown.
//! - `discovery`, `gpu`: what the host offers (CPUs, memory, hostname, GPUs).
//! - `register`, `heartbeat`, `work`: the three conversations with the control plane.
//! - `reconcile`: the pure decision; `ranks`: the agent's table of local ranks and pending
//!   exit reports.
//! - `executor`, `launch`, `supervise`, `process`, `records`: the process layer.
//! - `http`: the agent's own HTTP server (health, logs, `/metrics`); `wait`: shared waiting
//!   helpers.
//! - `telemetry`: per-node and per-allocation measurements pushed to a Prometheus
//!   remote-write receiver; `metrics`: the agent's own metrics (one place for every name).

mod agent;
mod config;
mod discovery;
mod error;
mod executor;
mod gpu;
mod heartbeat;
mod http;
mod launch;
mod metrics;
mod process;
mod ranks;
mod reconcile;
mod records;
mod register;
mod supervise;
pub mod telemetry;
mod wait;
mod work;

pub use agent::run;
pub use config::AgentConfig;
pub use error::AgentError;
pub use telemetry::TelemetryConfig;
