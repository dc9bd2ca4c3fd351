//! `pool-inspect`: the operator's view of the sandbox pool, and the image build.
//!
//! Thin: parses arguments, calls the libraries, prints, and maps failures to exit codes
//! (0 success, 1 failure, 2 usage).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use sandbox_pool::image::{BuildProgress, ImageBuilder, ImageConfig};
use serde::Deserialize;

#[derive(Parser, Debug)]
#[command(
    version,
    about = "See and drive the sandbox pool; build the sandbox image."
)]
struct Cli {
    /// Configuration file (TOML): the same structures the library takes.
    #[arg(long, short, global = true, env = "SANDBOX_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// The sandbox image.
    #[command(subcommand)]
    Image(ImageCommand),
}

#[derive(Subcommand, Debug)]
enum ImageCommand {
    /// Build the image (and its base when missing), unless its input hash is already there.
    Build {
        /// The static runner binary to put into the image.
        #[arg(long, env = "SANDBOX_RUNNER")]
        runner: PathBuf,
        /// Also write the built tag to this file.
        #[arg(long)]
        tag_file: Option<PathBuf>,
    },
    /// Show the tag, input hash and whether the daemon has it.
    Status {
        /// The static runner binary that would go into the image.
        #[arg(long, env = "SANDBOX_RUNNER")]
        runner: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// The configuration file.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct FileConfig {
    image: ImageConfig,
}

fn load_config(path: Option<&PathBuf>) -> Result<FileConfig> {
    let Some(path) = path else {
        return Ok(FileConfig::default());
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the configuration {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("parsing the configuration {}", path.display()))
}

/// Image build progress on a spinner, with build output printed above it.
struct BarProgress(ProgressBar);

impl BarProgress {
    fn new() -> Self {
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg}")
                .expect("the template is valid"),
        );
        bar.enable_steady_tick(Duration::from_millis(120));
        Self(bar)
    }
}

impl BarProgress {
    /// Above the bar on a terminal; plain stderr lines in CI logs, where the bar is hidden.
    fn print(&self, text: String) {
        if self.0.is_hidden() {
            eprintln!("{text}");
        } else {
            self.0.println(text);
        }
    }
}

impl BuildProgress for BarProgress {
    fn stage(&self, message: &str) {
        self.print(format!("==> {message}"));
        self.0.set_message(message.to_owned());
    }
    fn line(&self, line: &str) {
        self.print(format!("    {line}"));
    }
    fn sent(&self, bytes: u64) {
        self.0.set_message(format!(
            "importing the base: {} sent",
            indicatif::HumanBytes(bytes)
        ));
    }
}

async fn run(cli: Cli) -> Result<()> {
    let config = load_config(cli.config.as_ref())?;
    let docker = sandbox_pool::connect().await.context(
        "the Docker daemon does not answer; start it with `just docker-up` or set DOCKER_HOST",
    )?;
    match cli.command {
        Command::Image(ImageCommand::Build { runner, tag_file }) => {
            let progress = BarProgress::new();
            let builder = ImageBuilder::new(&docker, &config.image, runner, &progress);
            let started = std::time::Instant::now();
            let built = builder.build().await;
            progress.0.finish_and_clear();
            let built = built?;
            println!(
                "{} {} ({:.1}s)",
                built.tag,
                if built.built { "built" } else { "up to date" },
                started.elapsed().as_secs_f64()
            );
            if let Some(path) = tag_file {
                std::fs::write(&path, format!("{}\n", built.tag))
                    .with_context(|| format!("writing {}", path.display()))?;
            }
        }
        Command::Image(ImageCommand::Status { runner, json }) => {
            let progress = sandbox_pool::image::TracingProgress;
            let status = ImageBuilder::new(&docker, &config.image, runner, &progress)
                .status()
                .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                println!("tag:         {}", status.tag);
                println!("inputs hash: {}", status.inputs_hash);
                println!(
                    "present:     {}",
                    if status.present {
                        "yes"
                    } else {
                        "no (run `just image`)"
                    }
                );
                println!(
                    "base:        {} ({}{})",
                    status.base.reference,
                    if status.base.present {
                        "present"
                    } else {
                        "missing"
                    },
                    if status.base.local {
                        ", made locally with debootstrap"
                    } else {
                        ""
                    }
                );
            }
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime starts");
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pool-inspect: {e:#}");
            ExitCode::FAILURE
        }
    }
}
