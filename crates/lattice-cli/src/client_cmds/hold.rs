//! `lattice hold ID...` and `lattice release ID...`: like `scontrol hold` / `release`. A held
//! pending allocation is not scheduled (reason `held`) until released. An array's ID holds or
//! releases every pending element.

use clap::Args;
use lattice_core::JobRef;

use super::targets::{for_each, job_ref, tasks, Target};
use super::{connect, CmdError};

#[derive(Args, Debug)]
pub struct HoldArgs {
    /// Allocation IDs: N, or N_I for task I of array N (an array's ID means all its tasks)
    #[arg(required = true, value_name = "ID", value_parser = job_ref)]
    pub ids: Vec<JobRef>,
}

pub async fn run(args: HoldArgs, endpoint: &str, hold: bool) -> Result<(), CmdError> {
    let client = connect(endpoint)?;
    let (action, done) = if hold {
        ("hold", "Held")
    } else {
        ("release", "Released")
    };
    for_each(&client, &args.ids, |t| {
        let client = &client;
        async move {
            match t {
                Target::One(r) => {
                    client.allocation_action(&r, action).await?;
                    Ok(format!("{done} allocation {r}"))
                }
                Target::Array(id) => {
                    let c = client.array_action(id, action).await?;
                    Ok(format!("{done} array {id} ({})", tasks(c.changed.len())))
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
    fn hold_and_release_take_ids() {
        match parse(&["hold", "3", "9_1"]) {
            Ok(ClientCommand::Hold(a)) => assert_eq!(a.ids.len(), 2),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse(&["release", "3"]),
            Ok(ClientCommand::Release(_))
        ));
        assert!(parse(&["hold"]).is_err());
        assert!(parse(&["release", "x"]).is_err());
    }
}
