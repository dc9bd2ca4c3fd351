//! Peak memory of "the calling process" for the 200 MB workload. The bench itself holds pools,
//! clients and (for the seed) whole outputs, so its own peak says nothing about the library:
//! the bench re-executes itself with a hidden subcommand that makes exactly one library call
//! and reports its `VmHWM`.

use std::process::Stdio;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use sandbox_exec::{ExecClient, ExecRequest};
use serde::{Deserialize, Serialize};

use crate::sandbox::{SANDBOX_USER, WORKSPACE};

/// What the probe reports on stdout (one JSON line).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Probe {
    /// Peak resident set after connecting, before the call.
    pub before_kib: u64,
    /// Peak resident set after the call.
    pub peak_kib: u64,
    /// Stdout bytes the call saw.
    pub bytes: u64,
    /// Bytes the outcome kept (the caps).
    pub kept_bytes: u64,
    /// Seconds of the call.
    pub secs: f64,
}

/// A `VmHWM`/`VmRSS`-style line of `/proc/self/status`, in KiB.
fn status_kib(key: &str) -> Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status").context("/proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no {key} in /proc/self/status"))
}

/// The child side: one `ExecClient::run` of `head -c BYTES /dev/zero` with default caps.
pub async fn probe(container: &str, bytes: u64) -> Result<()> {
    let docker = sandbox_exec::connect().await?;
    let exec = ExecClient::new(docker);
    let before_kib = status_kib("VmHWM:")?;
    let started = Instant::now();
    let outcome = exec
        .run(
            container,
            ExecRequest::new(["head", "-c", &bytes.to_string(), "/dev/zero"])
                .with_user(SANDBOX_USER)
                .with_working_dir(WORKSPACE),
        )
        .await?;
    let secs = started.elapsed().as_secs_f64();
    let peak_kib = status_kib("VmHWM:")?;
    if outcome.exit_code() != 0 || outcome.stdout.total() != bytes {
        bail!(
            "the probe call ended {:?} after {} bytes",
            outcome.termination,
            outcome.stdout.total()
        );
    }
    let report = Probe {
        before_kib,
        peak_kib,
        bytes,
        kept_bytes: (outcome.stdout.head().len() + outcome.stdout.tail().len()) as u64,
        secs,
    };
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

/// The parent side: runs the probe in a fresh child process and reads its report.
pub async fn measure(container: &str, bytes: u64) -> Result<Probe> {
    let exe = std::env::current_exe().context("the bench's own path")?;
    let output = tokio::process::Command::new(exe)
        .args(["rss-probe", "--container", container, "--bytes"])
        .arg(bytes.to_string())
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .output()
        .await
        .context("running the RSS probe")?;
    if !output.status.success() {
        bail!("the RSS probe failed ({:?})", output.status.code());
    }
    serde_json::from_slice(output.stdout.trim_ascii()).context("reading the RSS probe's report")
}
