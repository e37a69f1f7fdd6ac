//! Capacity and free space of the filesystem holding `data_dir` (statvfs), for
//! `lattice_raft_storage_capacity_bytes` and `lattice_raft_storage_available_bytes`.

use std::path::Path;

/// (capacity, bytes available to an unprivileged writer); `None` when statvfs fails.
pub fn usage(dir: &Path) -> Option<(u64, u64)> {
    let st = nix::sys::statvfs::statvfs(dir).ok()?;
    let frag = st.fragment_size() as u64;
    Some((
        (st.blocks() as u64).saturating_mul(frag),
        (st.blocks_available() as u64).saturating_mul(frag),
    ))
}
