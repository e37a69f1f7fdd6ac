//! `lattice logs ID [--stderr]`: prints an allocation's captured output exactly as stored.

use clap::Args;
use lattice_core::AllocId;

use super::output::out;
use super::{connect, CmdError};

#[derive(Args, Debug)]
pub struct LogsArgs {
    /// Allocation ID
    #[arg(value_name = "ID")]
    pub id: AllocId,
    /// Print standard error instead of standard output
    #[arg(long)]
    pub stderr: bool,
}

pub async fn run(args: LogsArgs, endpoint: &str) -> Result<(), CmdError> {
    let stream = if args.stderr { "stderr" } else { "stdout" };
    let text = connect(endpoint)?.logs(args.id, stream).await?;
    out(&text)
}

#[cfg(test)]
mod tests {
    use super::super::tests::parse;
    use super::super::ClientCommand;

    #[test]
    fn parses() {
        match parse(&["logs", "12", "--stderr"]) {
            Ok(ClientCommand::Logs(a)) => assert!(a.id == 12 && a.stderr),
            other => panic!("{other:?}"),
        }
        match parse(&["logs", "12"]) {
            Ok(ClientCommand::Logs(a)) => assert!(!a.stderr),
            other => panic!("{other:?}"),
        }
        assert!(parse(&["logs"]).is_err());
        assert!(parse(&["logs", "1", "2"]).is_err());
    }
}
