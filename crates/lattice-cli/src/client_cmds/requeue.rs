//! `lattice requeue ID...`: like `scontrol requeue`. The work runs again as a new pending
//! allocation (a running one is stopped first); the line names the new ID. Dependencies on
//! the old ID follow the work. An array's ID requeues every running or ended element.

use clap::Args;
use lattice_core::JobRef;

use super::targets::{for_each, job_ref, tasks, Target};
use super::{connect, CmdError};

#[derive(Args, Debug)]
pub struct RequeueArgs {
    /// Allocation IDs: N, or N_I for task I of array N (an array's ID means all its tasks)
    #[arg(required = true, value_name = "ID", value_parser = job_ref)]
    pub ids: Vec<JobRef>,
}

pub async fn run(args: RequeueArgs, endpoint: &str) -> Result<(), CmdError> {
    let client = connect(endpoint)?;
    for_each(&client, &args.ids, |t| {
        let client = &client;
        async move {
            match t {
                Target::One(r) => {
                    let a = client.allocation_action(&r, "requeue").await?;
                    Ok(format!("Requeued allocation {r} as {}", a.id))
                }
                Target::Array(id) => {
                    let c = client.array_action(id, "requeue").await?;
                    Ok(format!("Requeued array {id} ({})", tasks(c.changed.len())))
                }
            }
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::super::tests::parse;
    use super::super::ClientCommand;

    #[test]
    fn requeue_takes_ids() {
        assert!(matches!(
            parse(&["requeue", "5", "6_0"]),
            Ok(ClientCommand::Requeue(_))
        ));
        assert!(parse(&["requeue"]).is_err());
    }
}
