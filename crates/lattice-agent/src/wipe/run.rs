//! Running one wipe as a real process: `sensitive.wipe_command` under `/bin/sh -c`, as the
//! leader of its own process group, with `LATTICE_NODE_ID` and `LATTICE_WIPE_ID` in its
//! environment, stdin and stdout on `/dev/null` and the tail of its stderr kept for the report. At
//! `sensitive.wipe_timeout_seconds` its group is ended like a rank's (SIGTERM, SIGKILL after
//! the grace period: `supervise`'s helpers), and nothing of the group outlives the wipe.
//!
//! [`report`] turns how it ended into the [`WipeReport`] (pure): exit 0 is a success; a
//! non-zero exit, a signal, the timeout or a failure to start is a failure. The detail names
//! the exit (or the reason) and ends with the last [`STDERR_TAIL`] bytes of stderr.

use std::io;
use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lattice_core::agent::WipeOrder;
use lattice_core::command::WipeReport;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::{Child, Command};
use tokio::sync::watch;

use crate::config::SensitiveConfig;
use crate::process;
use crate::supervise::{terminate_child, KILL_WAIT};
use crate::wait;

/// Bytes of stderr the report keeps (its end).
pub const STDERR_TAIL: usize = 200;
/// Detail of a wipe reported without running anything.
pub const NO_COMMAND: &str = "no wipe command configured";
/// How long to wait for stderr to close once the wipe's group is gone (a process that left
/// the group may hold it open).
const STDERR_DRAIN: Duration = Duration::from_secs(1);

/// What a wipe runs, and how long it may take.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WipeCommand {
    /// Run with `/bin/sh -c`; `None`: report success without running anything.
    pub command: Option<String>,
    pub timeout: Duration,
    /// Between SIGTERM and SIGKILL at the timeout.
    pub grace: Duration,
}

impl WipeCommand {
    pub fn new(c: &SensitiveConfig, grace: Duration) -> Self {
        WipeCommand {
            command: c.wipe_command.clone(),
            timeout: Duration::from_secs(c.wipe_timeout_seconds),
            grace,
        }
    }
}

/// How a wipe ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ending {
    NoCommand,
    Exited(i32),
    Signalled(i32),
    TimedOut(Duration),
    /// It could not be started, or its status could not be collected.
    Failed(String),
}

impl Ending {
    fn of(status: io::Result<ExitStatus>) -> Ending {
        match status {
            Ok(s) => match (s.code(), s.signal()) {
                (Some(code), _) => Ending::Exited(code),
                (None, Some(sig)) => Ending::Signalled(sig),
                (None, None) => Ending::Failed(format!("ended with status {s}")),
            },
            Err(e) => Ending::Failed(format!("exit status unavailable: {e}")),
        }
    }
}

/// The end of a stream: its last [`STDERR_TAIL`] bytes, and whether more came before them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tail {
    bytes: Vec<u8>,
    cut: bool,
}

impl Tail {
    pub fn push(&mut self, data: &[u8]) {
        self.bytes.extend_from_slice(data);
        if self.bytes.len() > STDERR_TAIL {
            let extra = self.bytes.len() - STDERR_TAIL;
            self.bytes.drain(..extra);
            self.cut = true;
        }
    }

    /// The tail as text (lossy), trimmed; "..." in front when earlier output was dropped.
    fn text(&self) -> String {
        let s = String::from_utf8_lossy(&self.bytes);
        let s = s.trim();
        if self.cut && !s.is_empty() {
            format!("...{s}")
        } else {
            s.to_string()
        }
    }
}

/// The report of the wipe `order` that ended so, with `stderr` its output's tail (pure).
pub fn report(order: &WipeOrder, ending: &Ending, stderr: &Tail) -> WipeReport {
    let (success, what) = match ending {
        Ending::NoCommand => (true, NO_COMMAND.to_string()),
        Ending::Exited(code) => (*code == 0, format!("exit {code}")),
        Ending::Signalled(sig) => (false, format!("killed by signal {sig}")),
        Ending::TimedOut(t) => (false, format!("timed out after {}s", t.as_secs_f64())),
        Ending::Failed(why) => (false, why.clone()),
    };
    let tail = stderr.text();
    WipeReport {
        node_id: order.node_id.clone(),
        wipe_id: order.wipe_id,
        success,
        detail: if tail.is_empty() {
            what
        } else {
            format!("{what}; stderr: {tail}")
        },
    }
}

/// Runs the wipe `order` and returns its report; `None` when `shutdown` was raised first (the
/// wipe is ended and not reported: it stays pending and runs again after a restart).
pub async fn run(
    cmd: &WipeCommand,
    order: &WipeOrder,
    mut shutdown: watch::Receiver<bool>,
) -> Option<WipeReport> {
    let node = &order.node_id;
    let wipe = order.wipe_id;
    let Some(command) = cmd.command.as_deref() else {
        tracing::warn!(%node, wipe, "{NO_COMMAND}: reporting the wipe done");
        return Some(report(order, &Ending::NoCommand, &Tail::default()));
    };
    let spawned = Command::new("/bin/sh")
        .arg("-c")
        .arg(command)
        .env("LATTICE_NODE_ID", node)
        .env("LATTICE_WIPE_ID", wipe.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(false)
        .spawn();
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => {
            let ending = Ending::Failed(format!("cannot start /bin/sh: {e}"));
            return Some(finished(order, &ending, &Tail::default()));
        }
    };
    let Some(pgid) = child.id().and_then(|p| i32::try_from(p).ok()) else {
        // Only possible if the child was already waited for, which it was not.
        let ending = Ending::Failed("started process has no pid".into());
        return Some(finished(order, &ending, &Tail::default()));
    };
    tracing::info!(%node, wipe, pgid, "wiping");
    let tail = Arc::new(Mutex::new(Tail::default()));
    let reader = child
        .stderr
        .take()
        .map(|err| tokio::spawn(collect(err, tail.clone())));
    let ending = tokio::select! {
        status = tokio::time::timeout(cmd.timeout, child.wait()) => match status {
            Ok(status) => Some(Ending::of(status)),
            Err(_) => {
                tracing::warn!(%node, wipe, pgid, timeout = ?cmd.timeout, "wipe timed out; ending it");
                end(&mut child, pgid, cmd.grace).await;
                Some(Ending::TimedOut(cmd.timeout))
            }
        },
        () = wait::raised(&mut shutdown) => {
            tracing::info!(%node, wipe, pgid, "agent shutting down: ending the wipe (it runs again after a restart)");
            end(&mut child, pgid, cmd.grace).await;
            None
        }
    };
    // Whatever ended the leader, nothing of its group may outlive it.
    if !process::kill_group_and_wait(pgid, KILL_WAIT).await {
        tracing::warn!(%node, wipe, pgid, "wipe process group still present after SIGKILL");
    }
    if let Some(r) = reader {
        let abort = r.abort_handle();
        if tokio::time::timeout(STDERR_DRAIN, r).await.is_err() {
            abort.abort();
        }
    }
    let tail = tail.lock().unwrap_or_else(|p| p.into_inner()).clone();
    Some(finished(order, &ending?, &tail))
}

/// Ends the wipe's group (SIGTERM, SIGKILL after `grace`); its status no longer matters.
async fn end(child: &mut Child, pgid: i32, grace: Duration) {
    if let Err(e) = terminate_child(child, pgid, grace).await {
        tracing::warn!(pgid, error = %e, "cannot collect the exit status of an ended wipe");
    }
}

/// The report, logged.
fn finished(order: &WipeOrder, ending: &Ending, tail: &Tail) -> WipeReport {
    let r = report(order, ending, tail);
    if r.success {
        tracing::info!(node = %r.node_id, wipe = r.wipe_id, detail = %r.detail, "wipe succeeded");
    } else {
        tracing::warn!(node = %r.node_id, wipe = r.wipe_id, detail = %r.detail, "wipe failed");
    }
    r
}

/// Reads `stream` to its end, keeping its tail.
async fn collect(mut stream: impl AsyncRead + Unpin, tail: Arc<Mutex<Tail>>) {
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => tail
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(&buf[..n]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order() -> WipeOrder {
        WipeOrder {
            node_id: "n7".into(),
            wipe_id: 42,
        }
    }

    fn tail(s: &str) -> Tail {
        let mut t = Tail::default();
        t.push(s.as_bytes());
        t
    }

    fn wipe(command: Option<&str>, timeout: Duration) -> WipeCommand {
        WipeCommand {
            command: command.map(str::to_string),
            timeout,
            grace: Duration::from_millis(500),
        }
    }

    fn never() -> watch::Receiver<bool> {
        let (tx, rx) = watch::channel(false);
        // The flag can never be raised: `raised` then waits forever.
        drop(tx);
        rx
    }

    #[test]
    fn reports_per_ending() {
        let o = order();
        let r = report(&o, &Ending::Exited(0), &Tail::default());
        assert_eq!(
            (r.node_id.as_str(), r.wipe_id, r.success, r.detail.as_str()),
            ("n7", 42, true, "exit 0")
        );
        let r = report(&o, &Ending::Exited(3), &tail("disk busy\n"));
        assert_eq!(
            (r.success, r.detail.as_str()),
            (false, "exit 3; stderr: disk busy")
        );
        let r = report(&o, &Ending::Signalled(9), &Tail::default());
        assert_eq!(
            (r.success, r.detail.as_str()),
            (false, "killed by signal 9")
        );
        let r = report(&o, &Ending::TimedOut(Duration::from_secs(1)), &tail(" "));
        assert_eq!(
            (r.success, r.detail.as_str()),
            (false, "timed out after 1s")
        );
        let r = report(&o, &Ending::NoCommand, &Tail::default());
        assert_eq!((r.success, r.detail.as_str()), (true, NO_COMMAND));
        let r = report(&o, &Ending::Failed("cannot start".into()), &Tail::default());
        assert!(!r.success);
    }

    #[test]
    fn the_tail_keeps_the_last_bytes() {
        let mut t = Tail::default();
        t.push(&[b'a'; 150]);
        t.push(&[b'b'; 100]);
        assert_eq!(t.bytes.len(), STDERR_TAIL);
        let text = t.text();
        assert!(
            text.starts_with("...") && text.ends_with(&"b".repeat(100)),
            "{text}"
        );
        assert_eq!(text.len(), 3 + STDERR_TAIL);
        assert_eq!(tail("short\n").text(), "short");
    }

    #[tokio::test]
    async fn a_wipe_that_exits_0_succeeds_and_sees_its_variables() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("seen");
        let cmd = format!(
            "echo \"$LATTICE_NODE_ID $LATTICE_WIPE_ID\" > '{}'",
            out.display()
        );
        let r = run(
            &wipe(Some(&cmd), Duration::from_secs(30)),
            &order(),
            never(),
        )
        .await
        .expect("a report");
        assert_eq!((r.success, r.detail.as_str()), (true, "exit 0"));
        assert_eq!(std::fs::read_to_string(&out).expect("written"), "n7 42\n");
    }

    #[tokio::test]
    async fn a_wipe_that_exits_3_fails_with_its_stderr() {
        let cmd = "echo 'cannot scrub /scratch' >&2; exit 3";
        let r = run(&wipe(Some(cmd), Duration::from_secs(30)), &order(), never())
            .await
            .expect("a report");
        assert_eq!(
            (r.success, r.detail.as_str()),
            (false, "exit 3; stderr: cannot scrub /scratch")
        );
    }

    #[tokio::test]
    async fn a_wipe_past_its_timeout_is_killed_with_its_group() {
        // Orphans of the killed group become ours, to be reaped, as in the agent.
        process::become_subreaper();
        let dir = tempfile::tempdir().expect("tempdir");
        let pid_file = dir.path().join("pid");
        // A background child in the group, and a leader that ignores SIGTERM.
        let cmd = format!(
            "trap '' TERM; sleep 60 & echo $! > '{}'; echo started >&2; while :; do sleep 1; done",
            pid_file.display()
        );
        let started = tokio::time::Instant::now();
        let r = run(&wipe(Some(&cmd), Duration::from_secs(1)), &order(), never())
            .await
            .expect("a report");
        assert!(!r.success);
        assert_eq!(r.detail, "timed out after 1s; stderr: started");
        assert!(started.elapsed() < Duration::from_secs(30));
        let pid: i32 = std::fs::read_to_string(&pid_file)
            .expect("pid file")
            .trim()
            .parse()
            .expect("pid");
        assert_eq!(
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None),
            Err(nix::errno::Errno::ESRCH),
            "the background child is gone"
        );
    }

    #[tokio::test]
    async fn no_command_is_a_success_without_a_process_and_shutdown_reports_nothing() {
        let r = run(&wipe(None, Duration::from_secs(1)), &order(), never())
            .await
            .expect("a report");
        assert_eq!((r.success, r.detail.as_str()), (true, NO_COMMAND));

        let (tx, rx) = watch::channel(false);
        tx.send_replace(true);
        let r = run(
            &wipe(Some("sleep 60"), Duration::from_secs(60)),
            &order(),
            rx,
        )
        .await;
        assert_eq!(r, None, "ended by shutdown: not reported");
    }
}
