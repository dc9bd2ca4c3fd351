//! One module per subcommand, and the dispatch: check what needs no daemon first (so usage
//! errors exit 2 whatever the daemon's state), then connect, then act.

mod call;
mod demo;
mod engines;
mod image;
mod ls;
mod maintenance;
mod show;

use anyhow::Result;

use crate::cli::{Cli, Command, ImageCommand};
use crate::daemon;

/// Runs the command; returns the exit code.
pub async fn run(cli: Cli) -> Result<u8> {
    let config = crate::config::load(&cli.global)?;
    // Checked before connecting: a bad call is a usage error even with the daemon down.
    let call_plan = match &cli.command {
        Command::Call(a) => Some(call::plan(a)?),
        _ => None,
    };
    // Engines report their own health: the local daemon being down is one of the answers.
    if let Command::Engines { json } = cli.command {
        return engines::engines(&config, json).await;
    }
    let docker = daemon::connect().await?;
    let pool = config.pool.name_prefix.as_str();
    match cli.command {
        Command::Engines { .. } => unreachable!("answered before connecting"),
        Command::Ls { json } => ls::ls(&docker, pool, json).await,
        Command::Show { user, json } => show::show(&docker, &config, &user, json).await,
        Command::Call(a) => {
            let plan = call_plan.expect("planned above for every call");
            call::call(&docker, &config, plan, a.stream).await
        }
        Command::Reap => maintenance::reap(&docker, &config).await,
        Command::Gc { dry_run } => maintenance::gc(&docker, &config, dry_run).await,
        Command::Rm { user } => maintenance::rm(&docker, &config, &user).await,
        Command::Image(ImageCommand::Build { runner, tag_file }) => {
            image::build(&docker, &config.image, runner, tag_file).await
        }
        Command::Image(ImageCommand::Status { runner, json }) => {
            image::status(&docker, &config.image, runner, json).await
        }
        Command::Demo => demo::demo(&docker).await,
    }
}
