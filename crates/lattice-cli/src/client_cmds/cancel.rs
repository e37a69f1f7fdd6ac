//! `lattice cancel ID...`: like `scancel`. Each ID gets its own line, `Cancelled allocation N`
//! or an `error:` line; the exit code is 1 if any failed.

use clap::Args;
use lattice_client::ClientError;
use lattice_core::AllocId;

use super::output::{about, error_line, out};
use super::{connect, CmdError};

#[derive(Args, Debug)]
pub struct CancelArgs {
    /// Allocation IDs
    #[arg(required = true, value_name = "ID")]
    pub ids: Vec<AllocId>,
}

pub async fn run(args: CancelArgs, endpoint: &str) -> Result<(), CmdError> {
    let client = connect(endpoint)?;
    let mut failed = false;
    for id in args.ids {
        match client.cancel(id).await {
            Ok(_) => out(&format!("Cancelled allocation {id}\n"))?,
            // An unreachable server ends the command: every later ID would wait out the same
            // retries.
            Err(e @ ClientError::Transport(_)) => return Err(e.into()),
            Err(e) => {
                error_line(&about(&format!("allocation {id}"), &e.to_string()));
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

#[cfg(test)]
mod tests {
    use super::super::tests::parse;
    use super::super::ClientCommand;

    #[test]
    fn ids_are_numbers() {
        match parse(&["cancel", "4", "17"]) {
            Ok(ClientCommand::Cancel(a)) => assert_eq!(a.ids, [4, 17]),
            other => panic!("{other:?}"),
        }
        assert!(parse(&["cancel"]).is_err());
        assert!(parse(&["cancel", "4", "x"]).is_err());
        assert!(parse(&["cancel", "-3"]).is_err());
    }
}
