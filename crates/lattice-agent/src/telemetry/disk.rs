//! Block device counters from `/proc/diskstats`: bytes read and written per whole physical
//! disk. Partitions (absent from `/sys/block`) and virtual devices (loop, ram, zram, dm, md:
//! their `/sys/block` link points under `devices/virtual/`) are excluded.

use std::collections::BTreeSet;
use std::path::Path;

/// `/proc/diskstats` counts sectors of 512 bytes whatever the device's sector size.
const SECTOR_BYTES: u64 = 512;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskIo {
    pub device: String,
    pub read_bytes: u64,
    pub written_bytes: u64,
}

/// Every device line of `/proc/diskstats` text; lines that do not parse are skipped.
pub fn parse_diskstats(text: &str) -> Vec<DiskIo> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 14 {
                return None;
            }
            let sectors = |i: usize| f[i].parse::<u64>().ok().map(|s| s * SECTOR_BYTES);
            Some(DiskIo {
                device: f[2].to_string(),
                read_bytes: sectors(5)?,
                written_bytes: sectors(9)?,
            })
        })
        .collect()
}

/// Names of the physical whole disks among `/sys/block` entries given as (name, link target).
pub fn physical_disks<'a>(links: impl IntoIterator<Item = (&'a str, &'a str)>) -> BTreeSet<String> {
    links
        .into_iter()
        .filter(|(_, target)| !target.contains("/devices/virtual/"))
        .map(|(name, _)| name.to_string())
        .collect()
}

/// (name, link target) of every entry of a `/sys/block` directory.
pub fn read_sys_block(dir: &Path) -> Vec<(String, String)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let target = std::fs::read_link(e.path()).ok()?;
            Some((
                e.file_name().to_string_lossy().into_owned(),
                target.to_string_lossy().into_owned(),
            ))
        })
        .collect()
}

/// The disks of `diskstats` text that are in `physical`.
pub fn physical_io(diskstats: &str, physical: &BTreeSet<String>) -> Vec<DiskIo> {
    parse_diskstats(diskstats)
        .into_iter()
        .filter(|d| physical.contains(&d.device))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DISKSTATS: &str = include_str!("../../fixtures/proc_diskstats.txt");
    /// `ls /sys/block` of this machine with each link's target.
    const SYS_BLOCK: &str = include_str!("../../fixtures/sys_block_links.txt");

    fn links() -> Vec<(&'static str, &'static str)> {
        SYS_BLOCK
            .lines()
            .filter_map(|l| l.split_once(' '))
            .collect()
    }

    #[test]
    fn snapshot_of_this_machine() {
        let physical = physical_disks(links());
        assert_eq!(physical, BTreeSet::from(["vda".to_string()]));
        // 254 0 vda 121064 8838 8396562 444896 18191 46557 14071392 ...
        assert_eq!(
            physical_io(DISKSTATS, &physical),
            vec![DiskIo {
                device: "vda".into(),
                read_bytes: 8_396_562 * 512,
                written_bytes: 14_071_392 * 512,
            }]
        );
        assert_eq!(parse_diskstats(DISKSTATS).len(), 10, "loops, vda, zram0");
    }

    #[test]
    fn partitions_and_virtual_devices_are_excluded() {
        let stats = "\
 259 0 nvme0n1 10 0 4 0 20 0 8 0 0 0 0 0 0 0 0 0 0
 259 1 nvme0n1p1 1 0 2 0 2 0 2 0 0 0 0 0 0 0 0 0 0
 253 0 dm-0 1 0 2 0 2 0 2 0 0 0 0 0 0 0 0 0 0
   8 0 sda 1 0 6 0 1 0 10 0 0 0 0
   8 1 sda1 1 0 2 0 2 0 2 0 0 0 0 0 0
   bogus line
";
        let physical = physical_disks([
            (
                "nvme0n1",
                "../devices/pci0000:00/0000:00:1d.0/nvme/nvme0/nvme0n1",
            ),
            ("dm-0", "../devices/virtual/block/dm-0"),
            (
                "sda",
                "../devices/pci0000:00/0000:00:17.0/ata1/host0/target0:0:0/0:0:0:0/block/sda",
            ),
        ]);
        let io = physical_io(stats, &physical);
        let names: Vec<&str> = io.iter().map(|d| d.device.as_str()).collect();
        assert_eq!(names, ["nvme0n1", "sda"]);
        assert_eq!((io[0].read_bytes, io[0].written_bytes), (4 * 512, 8 * 512));
        // Kernels before 4.18 have 14 fields per line; they parse too.
        assert_eq!((io[1].read_bytes, io[1].written_bytes), (6 * 512, 10 * 512));
    }

    #[test]
    fn sys_block_of_this_machine_is_readable() {
        // Whatever the host has, reading never fails and finds no partition.
        for (name, _) in read_sys_block(Path::new("/sys/block")) {
            assert!(!name.is_empty());
        }
        assert!(read_sys_block(Path::new("/nonexistent")).is_empty());
    }
}
