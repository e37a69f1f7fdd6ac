//! The rank's on-disk records, which make an agent restart safe: `pid` (the process-group ID,
//! written once the rank started) and `exit` (its [`ExitReport`] as JSON, written when it is
//! gone). Each run of an allocation on a node has its own records directory
//! (`launch::records_dir`), so a directory holding either file means *this run* was started
//! before and is never started again; [`recover`] decides, as a pure function, what to do
//! with it instead.

use std::io;
use std::path::Path;
use std::time::SystemTime;

use lattice_core::agent::{ExitOutcome, ExitReport};

use crate::reconcile::RankKey;

pub const PID_FILE: &str = "pid";
pub const EXIT_FILE: &str = "exit";
pub const LOST_MESSAGE: &str = "exit status lost: agent restarted while it ran";

/// What a rank directory says about an earlier start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskRecord {
    /// `None` when the pid file is missing or unreadable.
    pub pgid: Option<i32>,
    /// When the pid file was written: the rank's local start time.
    pub started: Option<SystemTime>,
    pub exit: Option<ExitReport>,
}

/// What to do with a rank that was started before.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Recovery {
    /// Its process group still runs: supervise it by polling.
    Adopt { pgid: i32 },
    /// It is gone: report this.
    Report(ExitReport),
}

/// Reads the records in `dir`; `None` when neither file exists (the rank never started).
pub fn read(dir: &Path) -> Option<DiskRecord> {
    let pid_path = dir.join(PID_FILE);
    let exit_path = dir.join(EXIT_FILE);
    let pid_text = std::fs::read_to_string(&pid_path);
    let exit_text = std::fs::read_to_string(&exit_path);
    let pid_missing = matches!(&pid_text, Err(e) if e.kind() == io::ErrorKind::NotFound);
    let exit_missing = matches!(&exit_text, Err(e) if e.kind() == io::ErrorKind::NotFound);
    if pid_missing && exit_missing {
        return None;
    }
    Some(DiskRecord {
        pgid: pid_text.ok().as_deref().and_then(parse_pid),
        started: std::fs::metadata(&pid_path).and_then(|m| m.modified()).ok(),
        exit: exit_text.ok().as_deref().and_then(parse_exit),
    })
}

/// A process-group ID as the pid file holds it; only IDs that address one group (`> 1`).
pub fn parse_pid(text: &str) -> Option<i32> {
    text.trim().parse::<i32>().ok().filter(|p| *p > 1)
}

pub fn parse_exit(text: &str) -> Option<ExitReport> {
    serde_json::from_str(text).ok()
}

pub fn write_pid(dir: &Path, pgid: i32) -> io::Result<()> {
    write_atomically(dir, PID_FILE, format!("{pgid}\n").as_bytes())
}

pub fn write_exit(dir: &Path, report: &ExitReport) -> io::Result<()> {
    let json = serde_json::to_vec_pretty(report).map_err(io::Error::other)?;
    write_atomically(dir, EXIT_FILE, &json)
}

/// Writes `name` through a temporary file and a rename, so a crash never leaves half a record.
fn write_atomically(dir: &Path, name: &str, data: &[u8]) -> io::Result<()> {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, data)?;
    std::fs::rename(&tmp, dir.join(name))
}

/// The report for a rank whose process ran under an earlier agent and whose status is unknown.
pub fn lost_report(key: &RankKey) -> ExitReport {
    ExitReport {
        allocation_id: key.allocation_id,
        node_id: key.node_id.clone(),
        outcome: ExitOutcome::Exited,
        exit_code: None,
        signal: None,
        message: Some(LOST_MESSAGE.to_string()),
        run: key.run,
    }
}

/// Decides what to do with a rank started before: adopt a group that is still `alive`, else
/// report the recorded exit, else report the status as lost.
pub fn recover(key: &RankKey, record: &DiskRecord, alive: impl Fn(i32) -> bool) -> Recovery {
    if let Some(pgid) = record.pgid.filter(|p| alive(*p)) {
        return Recovery::Adopt { pgid };
    }
    match &record.exit {
        Some(exit) => Recovery::Report(ExitReport {
            allocation_id: key.allocation_id,
            node_id: key.node_id.clone(),
            run: key.run,
            ..exit.clone()
        }),
        None => Recovery::Report(lost_report(key)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> RankKey {
        RankKey::new(5, "n1")
    }

    fn exited(code: i32) -> ExitReport {
        ExitReport {
            allocation_id: 5,
            node_id: "n1".into(),
            outcome: ExitOutcome::Exited,
            exit_code: Some(code),
            signal: None,
            message: None,
            run: 0,
        }
    }

    #[test]
    fn parse_pid_accepts_only_real_groups() {
        assert_eq!(parse_pid("1234\n"), Some(1234));
        assert_eq!(parse_pid(" 77 "), Some(77));
        for bad in ["", "0", "1", "-1", "-300", "abc", "12x"] {
            assert_eq!(parse_pid(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn recover_adopts_live_group() {
        let r = DiskRecord {
            pgid: Some(900),
            started: None,
            exit: None,
        };
        assert_eq!(recover(&key(), &r, |_| true), Recovery::Adopt { pgid: 900 });
    }

    #[test]
    fn recover_reports_recorded_exit_of_dead_group() {
        let r = DiskRecord {
            pgid: Some(900),
            started: None,
            exit: Some(exited(3)),
        };
        assert_eq!(recover(&key(), &r, |_| false), Recovery::Report(exited(3)));
    }

    #[test]
    fn recover_reports_lost_status() {
        for pgid in [Some(900), None] {
            let r = DiskRecord {
                pgid,
                started: None,
                exit: None,
            };
            let Recovery::Report(rep) = recover(&key(), &r, |_| false) else {
                panic!("expected a report");
            };
            assert_eq!(rep.outcome, ExitOutcome::Exited);
            assert_eq!((rep.exit_code, rep.signal), (None, None));
            assert_eq!(rep.message.as_deref(), Some(LOST_MESSAGE));
        }
    }

    #[test]
    fn reports_carry_the_run_of_the_key() {
        let later = key().in_run(2);
        let r = DiskRecord {
            pgid: None,
            started: None,
            exit: Some(exited(1)),
        };
        let Recovery::Report(rep) = recover(&later, &r, |_| false) else {
            panic!("expected a report");
        };
        assert_eq!((rep.run, rep.exit_code), (2, Some(1)));
        assert_eq!(lost_report(&later).run, 2);
    }

    #[test]
    fn recover_never_adopts_without_a_pid() {
        let r = DiskRecord {
            pgid: None,
            started: None,
            exit: Some(exited(0)),
        };
        assert_eq!(recover(&key(), &r, |_| true), Recovery::Report(exited(0)));
    }

    #[test]
    fn files_round_trip() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(read(dir.path()), None);
        write_pid(dir.path(), 4321).expect("pid");
        let r = read(dir.path()).expect("record");
        assert_eq!(r.pgid, Some(4321));
        assert!(r.started.is_some());
        assert_eq!(r.exit, None);
        write_exit(dir.path(), &exited(2)).expect("exit");
        assert_eq!(read(dir.path()).and_then(|r| r.exit), Some(exited(2)));
        // A garbled exit file still marks the directory as started.
        std::fs::remove_file(dir.path().join(PID_FILE)).expect("rm");
        std::fs::write(dir.path().join(EXIT_FILE), "{garbage").expect("write");
        assert_eq!(
            read(dir.path()),
            Some(DiskRecord {
                pgid: None,
                started: None,
                exit: None
            })
        );
    }
}
