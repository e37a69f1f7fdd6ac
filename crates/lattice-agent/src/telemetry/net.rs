//! Network interface counters from `/proc/net/dev`: received and transmitted bytes per
//! interface since boot, loopback excluded.

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetDev {
    pub device: String,
    pub receive_bytes: u64,
    pub transmit_bytes: u64,
}

/// The interfaces of `/proc/net/dev` text except `lo`; lines that do not parse are skipped.
pub fn parse_net_dev(text: &str) -> Vec<NetDev> {
    text.lines()
        .filter_map(|line| {
            let (name, rest) = line.split_once(':')?;
            let device = name.trim();
            if device.is_empty() || device == "lo" || device.contains('|') {
                return None;
            }
            let f: Vec<&str> = rest.split_whitespace().collect();
            if f.len() < 16 {
                return None;
            }
            Some(NetDev {
                device: device.to_string(),
                receive_bytes: f[0].parse().ok()?,
                transmit_bytes: f[8].parse().ok()?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NET_DEV: &str = include_str!("../../fixtures/proc_net_dev.txt");

    #[test]
    fn snapshot_of_this_machine() {
        let devs = parse_net_dev(NET_DEV);
        let names: Vec<&str> = devs.iter().map(|d| d.device.as_str()).collect();
        assert_eq!(names, ["ifb0", "ifb1", "eth0"], "loopback is excluded");
        assert_eq!(
            devs[2],
            NetDev {
                device: "eth0".into(),
                receive_bytes: 118_605_722,
                transmit_bytes: 337_688,
            }
        );
    }

    #[test]
    fn odd_lines() {
        // Old kernels glue the first number to the colon.
        let text = "Inter-|   Receive\n face |bytes\n  eth1:12 0 0 0 0 0 0 0 34 0 0 0 0 0 0 0\n bad: 1 2\n";
        assert_eq!(
            parse_net_dev(text),
            vec![NetDev {
                device: "eth1".into(),
                receive_bytes: 12,
                transmit_bytes: 34
            }]
        );
        assert!(parse_net_dev("").is_empty());
    }
}
