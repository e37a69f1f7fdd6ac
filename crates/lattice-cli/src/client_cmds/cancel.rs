//! `lattice cancel ID...`: like `scancel`. Each ID gets its own line, `Cancelled allocation N`
//! or an `error:` line; the exit code is 1 if any failed. An array's ID cancels the whole
//! array; `42_7` cancels one element.

use clap::Args;
use lattice_core::JobRef;

use super::targets::{for_each, job_ref, tasks, Target};
use super::{connect, CmdError};

#[derive(Args, Debug)]
pub struct CancelArgs {
    /// Allocation IDs: N, or N_I for task I of array N (an array's ID cancels all its tasks)
    #[arg(required = true, value_name = "ID", value_parser = job_ref)]
    pub ids: Vec<JobRef>,
}

pub async fn run(args: CancelArgs, endpoint: &str) -> Result<(), CmdError> {
    let client = connect(endpoint)?;
    for_each(&client, &args.ids, |t| {
        let client = &client;
        async move {
            match t {
                Target::One(r) => {
                    client.cancel_ref(&r).await?;
                    Ok(format!("Cancelled allocation {r}"))
                }
                Target::Array(id) => {
                    let c = client.cancel_array(id).await?;
                    Ok(format!("Cancelled array {id} ({})", tasks(c.changed.len())))
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
    use super::*;

    #[test]
    fn ids_are_numbers_or_array_tasks() {
        match parse(&["cancel", "4", "17", "42_7"]) {
            Ok(ClientCommand::Cancel(a)) => assert_eq!(
                a.ids,
                [
                    JobRef::Id(4),
                    JobRef::Id(17),
                    JobRef::Task {
                        array: 42,
                        index: 7
                    }
                ]
            ),
            other => panic!("{other:?}"),
        }
        assert!(parse(&["cancel"]).is_err());
        assert!(parse(&["cancel", "4", "x"]).is_err());
        assert!(parse(&["cancel", "-3"]).is_err());
        assert!(parse(&["cancel", "4_"]).is_err());
    }
}
