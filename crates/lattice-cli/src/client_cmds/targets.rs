//! IDs on the command line of `cancel`, `hold`, `release` and `requeue`: `42` or `42_7`. As
//! with Slurm, an array's own ID (its first element's) names the whole array; `42_0` names
//! that element alone.

use lattice_client::{Client, ClientError};
use lattice_core::{AllocId, JobRef};

use super::output::{about, error_line, out};
use super::CmdError;

/// What a command-line ID names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// One allocation, by its reference (`42` or `42_7`).
    One(String),
    /// Every element of the array with this ID.
    Array(AllocId),
}

/// Parses `42` or `42_7` (for clap).
pub fn job_ref(text: &str) -> Result<JobRef, String> {
    JobRef::parse(text)
}

/// Decides what `r` names: a plain ID is looked up, since it may be an array's ID.
pub async fn resolve(client: &Client, r: JobRef) -> Result<Target, ClientError> {
    match r {
        JobRef::Id(id) => {
            let a = client.get_allocation(id).await?;
            Ok(if a.array_id == Some(id) {
                Target::Array(id)
            } else {
                Target::One(id.to_string())
            })
        }
        task => Ok(Target::One(task.to_string())),
    }
}

/// Runs `act` on each ID, printing its line (or an `error:` line); an unreachable server
/// ends the command. The exit code is 1 if any failed.
pub async fn for_each<F, Fut>(client: &Client, ids: &[JobRef], mut act: F) -> Result<(), CmdError>
where
    F: FnMut(Target) -> Fut,
    Fut: std::future::Future<Output = Result<String, ClientError>>,
{
    let mut failed = false;
    for r in ids {
        let result = match resolve(client, *r).await {
            Ok(t) => act(t).await,
            Err(e) => Err(e),
        };
        match result {
            Ok(line) => out(&format!("{line}\n"))?,
            // Every later ID would wait out the same retries.
            Err(e @ ClientError::Transport(_)) => return Err(e.into()),
            Err(e) => {
                error_line(&about(&format!("allocation {r}"), &e.to_string()));
                failed = true;
            }
        }
    }
    if failed {
        Err(CmdError::Reported)
    } else {
        Ok(())
    }
}

/// `N tasks` / `1 task`.
pub fn tasks(n: usize) -> String {
    if n == 1 {
        "1 task".into()
    } else {
        format!("{n} tasks")
    }
}
