//! The Lattice node agent: presents one or more compute nodes to the control plane and runs
//! the allocation ranks placed on them as real processes.
//!
//! The agent registers its nodes, heartbeats (carrying checkpoint and exit reports), and
//! long-polls for the work of its nodes. After every answer it *reconciles*: a pure function
//! (`reconcile`) compares what the control plane wants with what runs here and returns a list
//! of actions, which a thin process layer (`executor`, `supervise`, `process`) carries out. A
//! rank is one run of an allocation on one node (a preempted allocation's next run is a new
//! rank). Each runs in its own process group, in the allocation's directory
//! `{work_dir}/allocations/{allocation_id}/` (shared by its ranks and runs), with its output
//! in `{work_dir}/{node_id}/{allocation_id}/` and per-run `pid` and `exit` records that make
//! an agent restart safe: no run is ever started twice (`layout` has the whole picture).
//! `work_dir` should be on a filesystem shared by the nodes, so that a requeued allocation
//! finds its checkpoint wherever it restarts.
//!
//! An answer may also order the wipe of a node that a sensitive tenant released: the agent
//! runs `sensitive.wipe_command` once per order, in a task of its own, and reports the
//! outcome until the control plane has it (`wipe`).
//!
//! Module map:
//! - `config`: [`AgentConfig`], the `agent:` section of the YAML configuration.
//! - `agent`: [`run`], which wires everything together and handles shutdown.
//! - `discovery`, `gpu`: what the host offers (CPUs, memory, hostname, GPUs).
//! - `register`, `heartbeat`, `work`: the three conversations with the control plane (and
//!   `wipe` delivers wipe reports).
//! - `reconcile`: the pure decision; `ranks`: the agent's table of local ranks and pending
//!   reports.
//! - `executor`, `launch`, `supervise`, `process`, `records`, `layout`: the process layer.
//! - `checkpoint`: the checkpoint protocol (acknowledgement file, signal, triggers) and its
//!   per-rank driver.
//! - `http`: the agent's own HTTP server (health, logs, `/metrics`); `wait`: shared waiting
//!   helpers.
//! - `telemetry`: per-node and per-allocation measurements pushed to a Prometheus
//!   remote-write receiver; `metrics`: the agent's own metrics (one place for every name).
//! - `wipe`: wipes of nodes released by sensitive tenants: which orders are new (pure), the
//!   wipe command as a process, and the delivery of their reports.
//! - `sim`: the simulating agent (`simulate: N`): N virtual nodes that register, heartbeat
//!   and poll like real ones and "run" their allocations without processes, for scale
//!   benchmarks of the control plane.

mod agent;
mod checkpoint;
mod config;
mod discovery;
mod error;
mod executor;
mod gpu;
mod heartbeat;
mod http;
mod launch;
mod layout;
mod metrics;
mod process;
mod ranks;
mod reconcile;
mod records;
mod register;
mod sim;
mod supervise;
pub mod telemetry;
mod wait;
mod wipe;
mod work;

pub use agent::run;
pub use config::{AgentConfig, SensitiveConfig};
pub use error::AgentError;
pub use telemetry::TelemetryConfig;
