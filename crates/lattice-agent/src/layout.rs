//! Where a rank's files live under the agent's `work_dir` (pure path arithmetic):
//!
//! ```text
//! {work_dir}/
//!   {node}/{allocation}/          output dir: stdout, stderr, script.sh (every run appends),
//!                                 and the records of run 0: pid, exit, checkpoint-ack
//!   {node}/{allocation}/run-{r}/  records of run r >= 1: pid, exit, checkpoint-ack
//!   allocations/{allocation}/     the allocation's directory: the processes' working
//!                                 directory and `LATTICE_WORKDIR`, shared by every rank and
//!                                 every run
//! ```
//!
//! The output directory of a node holds every run's output in order, so the logs endpoint
//! serves the whole history of an allocation on a node. Records are per run, so a later run
//! starts even though an earlier one's `pid` and `exit` remain, while one run is still never
//! started twice. The allocation's directory is where an application keeps what outlives a
//! run (its checkpoints): for a requeued allocation to find them wherever it restarts,
//! `work_dir` must be on a filesystem shared by the nodes (the same path on every host); on
//! a local `work_dir` a restart finds them only on the same host.

use std::path::{Path, PathBuf};

use lattice_core::{AllocId, NodeId};

use crate::reconcile::RankKey;

/// Parent of the allocations' directories (a name no node may take, see `AgentConfig`).
pub const ALLOCATIONS_DIR: &str = "allocations";
/// The checkpoint acknowledgement file, in a run's records directory.
pub const ACK_FILE: &str = "checkpoint-ack";

/// `{work_dir}/{node_id}/{allocation_id}`: output of every run of the allocation on the node.
pub fn output_dir(work_dir: &Path, node_id: &NodeId, allocation_id: AllocId) -> PathBuf {
    work_dir.join(node_id).join(allocation_id.to_string())
}

/// The output directory of `key`'s allocation on its node.
pub fn rank_output_dir(work_dir: &Path, key: &RankKey) -> PathBuf {
    output_dir(work_dir, &key.node_id, key.allocation_id)
}

/// Where the records (`pid`, `exit`, the checkpoint acknowledgement) of one run live: the
/// output directory for run 0, its `run-{r}` subdirectory for later runs.
pub fn records_dir(work_dir: &Path, key: &RankKey) -> PathBuf {
    let out = rank_output_dir(work_dir, key);
    match key.run {
        0 => out,
        r => out.join(format!("run-{r}")),
    }
}

/// `LATTICE_CHECKPOINT_ACK` of a rank.
pub fn ack_path(work_dir: &Path, key: &RankKey) -> PathBuf {
    records_dir(work_dir, key).join(ACK_FILE)
}

/// `{work_dir}/allocations/{allocation_id}`: the working directory of every rank and run.
pub fn allocation_dir(work_dir: &Path, allocation_id: AllocId) -> PathBuf {
    work_dir
        .join(ALLOCATIONS_DIR)
        .join(allocation_id.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_per_run() {
        let w = Path::new("/w");
        let first = RankKey::new(42, "n1");
        let third = first.clone().in_run(2);
        assert_eq!(rank_output_dir(w, &first), PathBuf::from("/w/n1/42"));
        assert_eq!(rank_output_dir(w, &third), PathBuf::from("/w/n1/42"));
        assert_eq!(records_dir(w, &first), PathBuf::from("/w/n1/42"));
        assert_eq!(records_dir(w, &third), PathBuf::from("/w/n1/42/run-2"));
        assert_eq!(
            ack_path(w, &first),
            PathBuf::from("/w/n1/42/checkpoint-ack")
        );
        assert_eq!(
            ack_path(w, &third),
            PathBuf::from("/w/n1/42/run-2/checkpoint-ack")
        );
        assert_eq!(allocation_dir(w, 42), PathBuf::from("/w/allocations/42"));
    }
}
