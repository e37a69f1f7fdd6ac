//! Lattice's pure domain: the types users and agents see, the Raft [`Command`]s that change
//! cluster state, the deterministic state machine that applies them, and the scheduler.
//!
//! Nothing here touches a clock, a random source, the network or the disk: the leader puts
//! timestamps into commands, and the server crate runs Raft, storage and HTTP around this crate.
//! That keeps `apply` deterministic (same log, same state on every member) and lets the
//! scheduler be tested as a pure function `(snapshot, now) -> Plan`.

pub mod acl;
pub mod agent;
pub mod allocation;
pub mod array;
pub mod audit;
pub mod checkpoint;
pub mod command;
pub mod dependency;
pub mod error;
pub mod fairshare;
pub mod node;
pub mod scheduler;
pub mod state;
pub mod submit;
pub mod telemetry;
pub mod tenant;
pub mod time;
pub mod vcluster;
pub mod views;

pub use allocation::{AllocId, AllocState, Allocation, AllocationSpec, Constraints};
pub use command::{Command, CommandOutcome, CommandResult, Target};
pub use dependency::{DepKind, Dependency, JobRef};
pub use error::Rejection;
pub use node::{GpuInfo, Node, NodeId, NodeRegistration, NodeState};
pub use scheduler::{schedule, Placement, Plan};
pub use state::ClusterState;
pub use tenant::Tenant;
pub use time::Timestamp;
pub use vcluster::{Policy, VCluster};
