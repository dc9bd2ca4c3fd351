//! `image build` and `image status`; finding the runner binary; the progress bar.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use sandbox_image::{BuildProgress, BuiltImage, ImageBuilder, ImageConfig, TracingProgress};
use sandbox_pool::bollard::Docker;
use sandbox_pool::runtime;

use crate::config::FileConfig;
use crate::failure::EXIT_OK;

/// The target triple this binary was built for (see `build.rs`).
const TARGET: &str = env!("POOL_INSPECT_TARGET");

/// Where `just runner` puts the static runner, relative to the workspace.
fn runner_in(target_dir: &Path) -> PathBuf {
    target_dir
        .join(TARGET)
        .join("release")
        .join("sandbox-runner")
}

/// The runner to put into the image: the one given (flag or `SANDBOX_RUNNER`), else the one
/// `just runner` builds, looked for next to this binary's own target folder (so it is found
/// whatever the current directory) and then under `./target`.
pub fn resolve_runner(given: Option<PathBuf>) -> Result<PathBuf> {
    if let Some(path) = given {
        return Ok(path);
    }
    let mut candidates = Vec::new();
    // This binary is `<target>/{debug,release}/pool-inspect` under cargo.
    if let Ok(exe) = std::env::current_exe()
        && let Some(target_dir) = exe.parent().and_then(Path::parent)
    {
        candidates.push(runner_in(target_dir));
    }
    candidates.push(runner_in(Path::new("target")));
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .with_context(|| {
            format!(
                "no sandbox-runner binary at {}; build it with `just runner` or pass --runner (or SANDBOX_RUNNER)",
                candidates
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(" or ")
            )
        })
}

/// Image build progress on a spinner, with build output printed above it.
#[derive(Debug)]
pub struct BarProgress(ProgressBar);

impl BarProgress {
    /// A spinner on stderr (hidden when stderr is not a terminal).
    pub fn new() -> Self {
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg}")
                .expect("the template is valid"),
        );
        bar.enable_steady_tick(Duration::from_millis(120));
        Self(bar)
    }

    /// Above the bar on a terminal; plain stderr lines in CI logs, where the bar is hidden.
    fn print(&self, text: String) {
        if self.0.is_hidden() {
            eprintln!("{text}");
        } else {
            self.0.println(text);
        }
    }

    /// Removes the bar.
    pub fn finish(&self) {
        self.0.finish_and_clear();
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

/// The image to build on an engine: the configuration's `[image]`, for gVisor when the pool's
/// runtime is gVisor there.
pub async fn for_engine(docker: &Docker, config: &FileConfig) -> Result<ImageConfig> {
    let mut image = config.image.clone();
    image.gvisor |= runtime::is_gvisor(docker, config.pool.runtime.as_deref()).await?;
    Ok(image)
}

/// Builds the image (a no-op but for the `latest` tag when its inputs are unchanged), with
/// progress on stderr.
pub async fn build_image(
    docker: &Docker,
    config: &ImageConfig,
    runner: &Path,
) -> Result<BuiltImage> {
    let progress = BarProgress::new();
    let built = ImageBuilder::new(docker, config, runner, &progress)
        .build()
        .await;
    progress.finish();
    Ok(built?)
}

/// `image build`.
pub async fn build(
    docker: &Docker,
    config: &ImageConfig,
    runner: Option<PathBuf>,
    tag_file: Option<PathBuf>,
) -> Result<u8> {
    let runner = resolve_runner(runner)?;
    let started = Instant::now();
    let built = build_image(docker, config, &runner).await?;
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
    Ok(EXIT_OK)
}

/// `image status`.
pub async fn status(
    docker: &Docker,
    config: &ImageConfig,
    runner: Option<PathBuf>,
    json: bool,
) -> Result<u8> {
    let runner = resolve_runner(runner)?;
    let status = ImageBuilder::new(docker, config, runner, &TracingProgress)
        .status()
        .await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&status)?);
        return Ok(EXIT_OK);
    }
    println!("tag:         {}", status.tag);
    println!("inputs hash: {}", status.inputs_hash);
    println!(
        "present:     {}",
        if status.present {
            "yes"
        } else {
            "no (build it with `just image`)"
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
    Ok(EXIT_OK)
}
