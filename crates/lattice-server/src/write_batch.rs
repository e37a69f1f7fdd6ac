//! Writes proposed on this member at the same time are committed together.
//!
//! openraft 0.9 appends (and fsyncs) each proposal on its own, so 16 clients submitting at once
//! cost 16 log appends, 16 fsyncs and 16 rounds through Raft's tasks. Here a write that finds
//! nothing in flight is proposed at once, as itself, by its own task (nothing changes for a
//! lone writer). Writes that arrive while an entry is in flight queue up; when it is done, a
//! flush task (spawned, so that a client hanging up cannot strand the others) proposes all
//! that queued as one [`Command::Batch`], and so on until the queue is empty. Apply answers
//! each command of a batch on its own, exactly as if it had had its own entry.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use lattice_core::{Command, CommandOutcome, CommandResult};
use tokio::sync::oneshot;

use crate::api::App;
use crate::forward::WriteError;
use crate::{clock, metrics};

/// Most commands in one entry.
pub const MAX_COMMANDS: usize = 256;
/// Most encoded bytes of commands in one entry; a larger command goes alone.
pub const MAX_BYTES: u64 = 1 << 20;

/// The proposals waiting for the next entry. Cheap to share; one per member.
#[derive(Default)]
pub struct Writes {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    queue: Vec<Pending>,
    /// A flush task is running (it empties the queue before it ends).
    flushing: bool,
}

struct Pending {
    cmd: Command,
    bytes: u64,
    done: oneshot::Sender<Result<CommandResult, WriteError>>,
}

/// Proposes `cmd` through this member's Raft together with the writes that arrive meanwhile,
/// bounded by the write deadline; returns its applied result.
pub async fn write(app: &App, cmd: Command) -> Result<CommandResult, WriteError> {
    let started = Instant::now();
    let deadline = Duration::from_secs(app.cfg.write_timeout_seconds);
    let queued = {
        let mut q = lock(&app.writes);
        if q.flushing {
            let (done, answer) = oneshot::channel();
            let bytes = bincode::serialized_size(&cmd).unwrap_or(MAX_BYTES);
            q.queue.push(Pending { cmd, bytes, done });
            Ok(answer)
        } else {
            // Nothing in flight (so nothing queued): this write goes now, as itself.
            q.flushing = true;
            Err(cmd)
        }
    };
    let res = match queued {
        Err(cmd) => {
            let _turn = Turn {
                app: app.clone(),
                deadline,
            };
            metrics::write_batch(1);
            client_write(app, cmd, deadline).await
        }
        // The flush answers every proposal it takes, within the deadline; this bound only
        // guards against a flush that never ran (the runtime shutting down).
        Ok(answer) => match tokio::time::timeout(deadline + Duration::from_secs(1), answer).await {
            Ok(Ok(res)) => res,
            Ok(Err(_)) | Err(_) => Err(WriteError::Timeout(deadline)),
        },
    };
    if res.is_ok() {
        metrics::commit_latency(started.elapsed().as_secs_f64());
    }
    res
}

/// A lone write's turn at proposing. When it ends (answered, or its writer gone) the writes
/// that queued meanwhile get a flush task; with none, nothing is in flight any more.
struct Turn {
    app: App,
    deadline: Duration,
}

impl Drop for Turn {
    fn drop(&mut self) {
        let more = {
            let mut q = lock(&self.app.writes);
            q.flushing = !q.queue.is_empty();
            q.flushing
        };
        if more {
            // No runtime: the member is shutting down, and the queued writers time out.
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(flush(self.app.clone(), self.deadline));
            }
        }
    }
}

async fn client_write(
    app: &App,
    cmd: Command,
    deadline: Duration,
) -> Result<CommandResult, WriteError> {
    match tokio::time::timeout(deadline, app.raft.client_write(cmd)).await {
        Err(_) => Err(WriteError::Timeout(deadline)),
        Ok(Err(e)) => Err(WriteError::Raft(Box::new(e))),
        Ok(Ok(resp)) => Ok(resp.data),
    }
}

fn lock(w: &Writes) -> std::sync::MutexGuard<'_, Inner> {
    // A panic while holding this lock cannot leave the queue inconsistent (push and drain).
    w.inner.lock().unwrap_or_else(|e| e.into_inner())
}

/// Proposes what is queued, one entry at a time, until the queue is empty.
async fn flush(app: App, deadline: Duration) {
    loop {
        let batch = {
            let mut q = lock(&app.writes);
            if q.queue.is_empty() {
                q.flushing = false;
                return;
            }
            let n = take(&q.queue);
            q.queue.drain(..n).collect::<Vec<_>>()
        };
        metrics::write_batch(batch.len());
        propose(&app, batch, deadline).await;
    }
}

/// How many of the first queued proposals go into the next entry (at least one).
fn take(queue: &[Pending]) -> usize {
    let mut bytes = 0;
    let mut n = 0;
    for p in queue.iter().take(MAX_COMMANDS) {
        if n > 0 && bytes + p.bytes > MAX_BYTES {
            break;
        }
        bytes += p.bytes;
        n += 1;
    }
    n
}

async fn propose(app: &App, batch: Vec<Pending>, deadline: Duration) {
    let (commands, dones): (Vec<Command>, Vec<_>) =
        batch.into_iter().map(|p| (p.cmd, p.done)).unzip();
    let alone = commands.len() == 1;
    let cmd = match <[Command; 1]>::try_from(commands) {
        Ok([cmd]) => cmd,
        Err(commands) => Command::Batch {
            now: clock::now(),
            commands,
        },
    };
    let res = client_write(app, cmd, deadline).await;
    let results: Vec<Result<CommandResult, WriteError>> = match res {
        Ok(data) if alone => vec![Ok(data)],
        Ok(Ok(CommandOutcome::Batch(results))) if results.len() == dones.len() => {
            results.into_iter().map(Ok).collect()
        }
        // Apply answers a batch with one result per command; anything else is a bug.
        Ok(other) => {
            let e = WriteError::Unexpected(format!(
                "a batch of {} commands applied as {other:?}",
                dones.len()
            ));
            vec![Err(e); dones.len()]
        }
        Err(e) => vec![Err(e); dones.len()],
    };
    for (done, r) in dones.into_iter().zip(results) {
        // The writer may have given up (its deadline); the entry is applied all the same.
        let _ = done.send(r);
    }
}

#[cfg(test)]
mod tests {
    use lattice_core::allocation::{AllocationSpec, Constraints};
    use lattice_core::error::Rejection;

    use super::*;
    use crate::config::ServerConfig;

    fn pending(bytes: u64) -> Pending {
        Pending {
            cmd: Command::Batch {
                now: clock::now(),
                commands: Vec::new(),
            },
            bytes,
            done: oneshot::channel().0,
        }
    }

    #[test]
    fn an_entry_takes_what_fits_and_a_large_command_goes_alone() {
        let q: Vec<Pending> = (0..300).map(|_| pending(10)).collect();
        assert_eq!(take(&q), MAX_COMMANDS);
        let q: Vec<Pending> = [MAX_BYTES / 2, MAX_BYTES / 2, 1]
            .into_iter()
            .map(pending)
            .collect();
        assert_eq!(take(&q), 2);
        let q: Vec<Pending> = [MAX_BYTES * 3, 1].into_iter().map(pending).collect();
        assert_eq!(take(&q), 1, "a command over the byte bound still goes");
        let q: Vec<Pending> = [1, MAX_BYTES * 3].into_iter().map(pending).collect();
        assert_eq!(take(&q), 1, "but not together with others");
    }

    fn submit() -> Command {
        Command::SubmitAllocation {
            now: clock::now(),
            spec: AllocationSpec {
                name: "batched".into(),
                tenant: "default".into(),
                vcluster: "default".into(),
                user: "alice".into(),
                command: Some(vec!["true".into()]),
                script: None,
                nodes: 1,
                walltime_seconds: 60,
                priority: 5,
                constraints: Constraints::default(),
                env: Default::default(),
                preemptible: true,
                checkpoint: Default::default(),
            },
        }
    }

    fn cancel_unknown(id: u64) -> Command {
        Command::CancelAllocation {
            now: clock::now(),
            id,
            by: "alice".into(),
        }
    }

    /// Writes queued while a flush runs are committed as one entry, and each gets its own
    /// answer: refused commands do not take the others down with them.
    async fn member(dir: &tempfile::TempDir) -> (App, tokio::sync::watch::Sender<bool>) {
        let cfg = ServerConfig {
            data_dir: dir.path().to_path_buf(),
            api_addr: "127.0.0.1:0".parse().unwrap(),
            ..ServerConfig::default()
        };
        App::single_member(cfg).await.unwrap()
    }

    /// Spawns a writer of `cmd` and returns once its write is queued.
    async fn queue(app: &App, cmd: Command) -> tokio::task::JoinHandle<WriteResult> {
        let want = lock(&app.writes).queue.len() + 1;
        let a = app.clone();
        let writer = tokio::spawn(async move { write(&a, cmd).await });
        let deadline = Instant::now() + Duration::from_secs(10);
        while lock(&app.writes).queue.len() < want {
            assert!(Instant::now() < deadline, "write {want} never queued");
            tokio::task::yield_now().await;
        }
        writer
    }

    type WriteResult = Result<CommandResult, WriteError>;

    /// A lone writer's turn hands what queued meanwhile to a flush, also when the writer is
    /// gone before its answer (its task cancelled: the client hung up).
    #[tokio::test(flavor = "multi_thread")]
    async fn the_end_of_a_lone_write_hands_the_queue_on() {
        let dir = tempfile::tempdir().unwrap();
        let (app, _stop) = member(&dir).await;
        lock(&app.writes).flushing = true;
        let turn = Turn {
            app: app.clone(),
            deadline: Duration::from_secs(10),
        };
        let writers = [queue(&app, submit()).await, queue(&app, submit()).await];
        drop(turn);
        for w in writers {
            let res = w.await.unwrap().expect("committed");
            assert!(matches!(res, Ok(CommandOutcome::Allocation(_))), "{res:?}");
        }
        assert!(!lock(&app.writes).flushing);
        // With nothing queued, the end of a turn leaves nothing in flight.
        lock(&app.writes).flushing = true;
        drop(Turn {
            app: app.clone(),
            deadline: Duration::from_secs(10),
        });
        assert!(!lock(&app.writes).flushing);
        let res = write(&app, submit()).await.expect("committed");
        assert!(matches!(res, Ok(CommandOutcome::Allocation(_))), "{res:?}");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn queued_writes_commit_as_one_entry_with_their_own_answers() {
        let dir = tempfile::tempdir().unwrap();
        let (app, _stop) = member(&dir).await;
        // A lone write is proposed as itself.
        let first = write(&app, submit()).await.unwrap().unwrap();
        let CommandOutcome::Allocation(first) = first else {
            panic!("not an allocation: {first:?}");
        };

        // As if a flush were running: writes queue up.
        lock(&app.writes).flushing = true;
        let commands: Vec<Command> = (0..10)
            .map(|i| {
                if i % 3 == 1 {
                    cancel_unknown(900 + i)
                } else {
                    submit()
                }
            })
            .collect();
        let mut writers = Vec::new();
        for c in commands.clone() {
            writers.push(queue(&app, c).await);
        }
        // Set by apply before any writer is answered.
        let last_log = |app: &App| app.state.read().last_applied.map(|l| l.index);
        let before = last_log(&app);
        // The (pretend) flush ends; the real one takes the whole queue.
        tokio::spawn(flush(app.clone(), Duration::from_secs(10)));

        let mut next_id = first.id + 1;
        for (w, c) in writers.into_iter().zip(&commands) {
            let res = w.await.unwrap().expect("committed");
            match c {
                Command::CancelAllocation { id, .. } => {
                    assert_eq!(res, Err(Rejection::not_found("allocation", id)));
                }
                _ => {
                    let Ok(CommandOutcome::Allocation(a)) = res else {
                        panic!("submission refused: {res:?}");
                    };
                    assert_eq!(a.id, next_id, "IDs in the order the writes queued");
                    next_id += 1;
                }
            }
        }
        assert_eq!(
            last_log(&app),
            before.map(|i| i + 1),
            "one entry for ten writes"
        );
        assert!(
            !lock(&app.writes).flushing,
            "the flush ended with the queue"
        );
        let d = app.state.read();
        assert_eq!(d.state.allocations().len() as u64, next_id - 1);
    }
}
