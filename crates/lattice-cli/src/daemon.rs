//! The long-running subcommands: `server`, `agent`, `dev`.

#[derive(clap::Args)]
pub struct ServerArgs {}
#[derive(clap::Args)]
pub struct AgentArgs {}
#[derive(clap::Args)]
pub struct DevArgs {}

pub fn exit_code(r: anyhow::Result<()>) -> i32 {
    match r {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e:#}");
            1
        }
    }
}

pub async fn server(_a: ServerArgs) -> anyhow::Result<()> {
    anyhow::bail!("not yet")
}
pub async fn agent(_a: AgentArgs) -> anyhow::Result<()> {
    anyhow::bail!("not yet")
}
pub async fn dev(_a: DevArgs) -> anyhow::Result<()> {
    anyhow::bail!("not yet")
}
