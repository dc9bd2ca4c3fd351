//! `just bench`: this library side by side with the seed's way (the `docker` CLI per call) and
//! the raw Engine API floor, interleaved per sample, as medians and ratios.
//!
//! Every container it makes carries `zcbot.bench=1` and `zcbot.bench.run=<run>` and is removed
//! at the end, on Ctrl-C, on SIGTERM and on a panic; it never touches other containers.

#![forbid(unsafe_code)]

mod bench;
mod cpu;
mod fleet;
mod floor;
mod gvisor;
mod report;
mod rss;
mod sandbox;
mod seed;
mod stats;
mod workloads;

use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use bollard::Docker;
use clap::{Parser, Subcommand};
use futures_util::FutureExt;
use sandbox_pool::ShutdownPolicy;

use crate::bench::{Bench, sweep};

/// The fleet's workloads (issue #12), run after the others on extra daemons of their own.
const ENGINES: &str = "engines";
/// gVisor against runc (issue #13), run after the others on a pool of its own.
const GVISOR: &str = "gvisor";

/// Speed of the sandbox library against the seed's way and the raw Engine API.
#[derive(Debug, Parser)]
#[command(name = "sandbox-bench", version)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    /// Fewer samples, a few minutes (also `BENCH_QUICK=1`).
    #[arg(long)]
    quick: bool,
    /// Sandbox image (default: `SANDBOX_IMAGE`, else the tag in `target/sandbox-image/tag`).
    #[arg(long, env = "SANDBOX_IMAGE")]
    image: Option<String>,
    /// Sandbox image built for gVisor, for the `gvisor` workloads (default:
    /// `SANDBOX_IMAGE_RUNSC`, else the tag in `target/sandbox-image/tag-runsc`).
    #[arg(long, env = "SANDBOX_IMAGE_RUNSC")]
    image_runsc: Option<String>,
    /// Where `summary.json`, `machine.json` and `summary.md` go.
    #[arg(long, default_value = "target/bench")]
    out_dir: PathBuf,
    /// Folder holding the seed's stand-in `tool_runner.py` (mounted read-only).
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/seed"))]
    seed_dir: PathBuf,
    /// Run only these workloads (comma-separated).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// One library call of `head -c BYTES /dev/zero` in a fresh process; prints its peak RSS.
    #[command(hide = true)]
    RssProbe {
        #[arg(long)]
        container: String,
        #[arg(long)]
        bytes: u64,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sandbox-bench: no tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match &cli.cmd {
        Some(Cmd::RssProbe { container, bytes }) => runtime
            .block_on(rss::probe(container, *bytes))
            .map(|()| true),
        None => runtime.block_on(run(cli)),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("sandbox-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `BENCH_QUICK` set to anything but empty, `0`, `false` or `no`.
fn quick_from_env() -> bool {
    std::env::var("BENCH_QUICK").is_ok_and(|v| {
        !matches!(
            v.trim().to_ascii_lowercase().as_str(),
            "" | "0" | "false" | "no"
        )
    })
}

/// The image given, else the tag `just image` (or `just image-runsc`) wrote into `file`.
fn image_tag(given: Option<&String>, file: &str, recipe: &str) -> Result<String> {
    if let Some(image) = given {
        return Ok(image.clone());
    }
    let tag = std::fs::read_to_string(file)
        .with_context(|| format!("no image given and no {file}: run `just {recipe}`"))?;
    Ok(tag.trim().to_owned())
}

/// Set-up checks, the workloads, the outputs, and the sweep whatever happens.
async fn run(cli: Cli) -> Result<bool> {
    let quick = cli.quick || quick_from_env();
    let image = image_tag(cli.image.as_ref(), "target/sandbox-image/tag", "image")?;
    let runner = cli.seed_dir.join("tool_runner.py");
    if !runner.is_file() {
        bail!("the seed's stand-in runner is not at {}", runner.display());
    }
    let seed_dir = std::fs::canonicalize(&cli.seed_dir)?;
    let docker = sandbox_exec::connect().await?;
    docker
        .ping()
        .await
        .context("the Docker daemon does not answer")?;
    seed::run_ok(seed::client_version(), None)
        .await
        .context("the seed's way needs the docker CLI")?;
    for name in &cli.only {
        if !workloads::ALL.contains(&name.as_str()) && name != ENGINES && name != GVISOR {
            bail!(
                "no workload {name}; known: {}, {GVISOR}, {ENGINES}",
                workloads::ALL.join(", ")
            );
        }
    }

    let run_name = format!("zbench-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let users = tempfile::Builder::new()
        .prefix("zbench-users-")
        .tempdir()
        .context("a folder for the user roots")?;
    let guard = SweepGuard {
        docker: docker.clone(),
        run: run_name.clone(),
        armed: true,
    };
    eprintln!(
        "sandbox-bench: run {run_name}, {} mode, image {image}",
        if quick { "quick" } else { "full" }
    );

    let body = AssertUnwindSafe(workloads_and_report(
        &docker,
        &cli,
        quick,
        &image,
        &seed_dir,
        users.path(),
        &run_name,
    ))
    .catch_unwind();
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let outcome = tokio::select! {
        r = body => r.unwrap_or_else(|_| Err(anyhow!("the bench panicked"))),
        _ = tokio::signal::ctrl_c() => Err(anyhow!("interrupted")),
        _ = sigterm.recv() => Err(anyhow!("terminated")),
    };
    // The body (and its pool and CLI children) is dropped by now; remove what is left.
    match sweep(&docker, &run_name).await {
        Ok(n) => {
            if n > 0 {
                eprintln!("sandbox-bench: removed {n} leftover container(s)");
            }
            guard.disarm();
        }
        Err(e) => eprintln!("sandbox-bench: sweeping the bench's containers: {e:#}"),
    }
    outcome
}

/// Removes the run's containers if dropped armed (a panic outside the guarded body).
struct SweepGuard {
    docker: Docker,
    run: String,
    armed: bool,
}

impl SweepGuard {
    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for SweepGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let (docker, run) = (self.docker.clone(), self.run.clone());
        // Drop may run inside the runtime: sweep on a thread with a runtime of its own.
        let swept = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(sweep(&docker, &run))
        })
        .join();
        if !matches!(swept, Ok(Ok(_))) {
            eprintln!(
                "sandbox-bench: could not sweep run {}: remove containers labelled zcbot.bench.run={} by hand",
                self.run, self.run
            );
        }
    }
}

async fn workloads_and_report(
    docker: &Docker,
    cli: &Cli,
    quick: bool,
    image: &str,
    seed_dir: &Path,
    users: &Path,
    run_name: &str,
) -> Result<bool> {
    let machine = report::machine(docker, image, quick).await;
    let bench = Bench::setup(docker.clone(), image, seed_dir, users, run_name, quick).await?;
    let selected: Vec<&str> = workloads::ALL
        .iter()
        .copied()
        .filter(|w| cli.only.is_empty() || cli.only.iter().any(|o| o == w))
        .collect();
    let (mut rows, mut failures) = (Vec::new(), Vec::new());
    for name in selected {
        eprintln!("{name}");
        match workloads::run(&bench, name).await {
            Ok(row) => rows.push(row),
            Err(e) => {
                eprintln!("  {name} FAILED: {e:#}");
                failures.push((name.to_owned(), format!("{e:#}")));
            }
        }
    }
    let mut gvisor_rows = Vec::new();
    if cli.only.is_empty() || cli.only.iter().any(|o| o == GVISOR) {
        let runsc = image_tag(
            cli.image_runsc.as_ref(),
            "target/sandbox-image/tag-runsc",
            "image-runsc",
        );
        match async { gvisor::run(&bench, &runsc?, users).await }.await {
            Ok(rows) => gvisor_rows = rows,
            Err(e) => {
                eprintln!("  {GVISOR} FAILED: {e:#}");
                failures.push((GVISOR.to_owned(), format!("{e:#}")));
            }
        }
    }
    if let Err(e) = bench.pool.shutdown(ShutdownPolicy::Remove).await {
        eprintln!("sandbox-bench: pool shutdown: {e}");
    }
    let mut fleet_rows = Vec::new();
    if cli.only.is_empty() || cli.only.iter().any(|o| o == ENGINES) {
        match fleet::run(image, run_name, users, quick).await {
            Ok(rows) => fleet_rows = rows,
            Err(e) => {
                eprintln!("  {ENGINES} FAILED: {e:#}");
                failures.push((ENGINES.to_owned(), format!("{e:#}")));
            }
        }
    }
    let mut table = report::markdown(&rows, &machine, &failures);
    // The tables of their own, each also as JSON.
    let extra = [
        (
            "gvisor.json",
            gvisor::markdown(&gvisor_rows),
            serde_json::to_value(&gvisor_rows)?,
        ),
        (
            "fleet.json",
            fleet::markdown(&fleet_rows),
            serde_json::to_value(&fleet_rows)?,
        ),
    ];
    for (file, markdown, json) in extra {
        if json.as_array().is_some_and(Vec::is_empty) {
            continue;
        }
        table.push_str(&markdown);
        std::fs::create_dir_all(&cli.out_dir)?;
        std::fs::write(
            cli.out_dir.join(file),
            serde_json::to_string_pretty(&json)? + "\n",
        )?;
    }
    println!("{table}");
    report::write(&cli.out_dir, &rows, &machine, &table)?;
    eprintln!(
        "sandbox-bench: wrote {}/summary.json and machine.json",
        cli.out_dir.display()
    );
    Ok(failures.is_empty())
}
