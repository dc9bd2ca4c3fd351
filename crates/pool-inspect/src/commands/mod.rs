//! One module per subcommand, and the dispatch: check what needs no daemon first (so usage
//! errors exit 2 whatever the daemon's state), then connect, then act.

mod call;
mod demo;
pub(crate) mod engines;
mod image;
mod ls;
mod maintenance;
mod show;

use anyhow::Result;

use crate::cli::{Cli, Command, ImageCommand};
use crate::daemon;
use crate::failure::{EXIT_FAILURE, EXIT_OK};

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
    if let Command::Demo = cli.command {
        // Its own embedded configuration, on the local daemon.
        return demo::demo(&daemon::connect().await?).await;
    }
    let targets = daemon::targets(&config, cli.global.engine.as_deref()).await?;
    let pool = config.pool.name_prefix.as_str();
    match &cli.command {
        Command::Ls { json } => return ls::ls(&targets, pool, *json).await,
        Command::Show { user, json } => {
            let docker = show::locate(&targets, &config, user).await?;
            return show::show(docker, &config, user, *json).await;
        }
        Command::Call(a) => {
            let plan = call_plan.expect("planned above for every call");
            return call::call(&targets, &config, plan, a.stream).await;
        }
        _ => {}
    }
    // The rest works on each engine in turn; the worst exit code wins.
    let mut code = EXIT_OK;
    for target in &targets {
        if targets.len() > 1 {
            println!("engine {}:", target.engine.name);
        }
        let docker = match target.docker() {
            Ok(docker) => docker,
            Err(e) => {
                eprintln!("pool-inspect: {e:#}");
                code = EXIT_FAILURE;
                continue;
            }
        };
        let done = match &cli.command {
            Command::Reap => maintenance::reap(docker, &config).await?,
            Command::Gc { dry_run } => maintenance::gc(docker, &config, *dry_run).await?,
            Command::Rm { user } => maintenance::rm(docker, &config, user).await?,
            Command::Image(ImageCommand::Build { runner, tag_file }) => {
                let image = image::for_engine(docker, &config).await?;
                image::build(docker, &image, runner.clone(), tag_file.clone()).await?
            }
            Command::Image(ImageCommand::Status { runner, json }) => {
                let image = image::for_engine(docker, &config).await?;
                image::status(docker, &image, runner.clone(), *json).await?
            }
            Command::Engines { .. }
            | Command::Demo
            | Command::Ls { .. }
            | Command::Show { .. }
            | Command::Call(_) => {
                unreachable!("answered above")
            }
        };
        code = code.max(done);
    }
    Ok(code)
}
