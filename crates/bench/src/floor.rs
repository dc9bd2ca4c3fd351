//! The raw Engine API floor: one bollard client, exec create + attached start + drain +
//! inspect, nothing else. No supervisor, no caps, no kill path: what any exec-per-call design
//! pays at least.

use std::pin::Pin;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use bollard::Docker;
use bollard::container::LogOutput;
use bollard::exec::{StartExecOptions, StartExecResults};
use bollard::models::ExecConfig;
use futures_util::{Stream, StreamExt};
use tokio::io::AsyncWriteExt;

use crate::sandbox::{SANDBOX_USER, WORKSPACE};

/// Read buffer of the attached stream: the library's own (`sandbox-exec` uses 64 KiB), so the
/// throughput floor is not held back by bollard's 8 KiB default.
const STREAM_BUFFER: usize = 64 * 1024;

type Output = Pin<Box<dyn Stream<Item = Result<LogOutput, bollard::errors::Error>> + Send>>;

/// What a raw exec gave.
#[derive(Debug, Default)]
pub struct Raw {
    /// Stdout, when asked to keep it.
    pub stdout: Vec<u8>,
    /// Stdout bytes received (kept or not).
    pub stdout_bytes: u64,
    /// When the first stdout frame arrived.
    pub first_stdout: Option<Instant>,
    /// The exit code `inspect_exec` reports.
    pub exit_code: Option<i64>,
}

/// An exec started and attached, not yet drained.
pub struct Started {
    pub id: String,
    output: Output,
}

impl std::fmt::Debug for Started {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Started").field("id", &self.id).finish()
    }
}

/// Creates and starts `cmd` in `container` as the sandbox user in `/workspace`, writes
/// `stdin` (if any) and half-closes it.
pub async fn start(
    docker: &Docker,
    container: &str,
    cmd: &[&str],
    env: &[&str],
    stdin: Option<&[u8]>,
) -> Result<Started> {
    let config = ExecConfig {
        attach_stdin: Some(stdin.is_some()),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        tty: Some(false),
        env: (!env.is_empty()).then(|| env.iter().map(|e| e.to_string()).collect()),
        cmd: Some(cmd.iter().map(|c| c.to_string()).collect()),
        user: Some(SANDBOX_USER.to_owned()),
        working_dir: Some(WORKSPACE.to_owned()),
        ..Default::default()
    };
    let created = docker
        .create_exec(container, config)
        .await
        .context("raw create_exec")?;
    let options = StartExecOptions {
        detach: false,
        tty: false,
        output_capacity: Some(STREAM_BUFFER),
    };
    let StartExecResults::Attached { output, mut input } = docker
        .start_exec(&created.id, Some(options))
        .await
        .context("raw start_exec")?
    else {
        bail!("raw start_exec came back detached");
    };
    if let Some(data) = stdin {
        // Small payloads only (10 KiB): the pipe takes them before anything is read.
        input.write_all(data).await.context("raw stdin write")?;
        input.shutdown().await.context("raw stdin half-close")?;
    }
    Ok(Started {
        id: created.id,
        output,
    })
}

impl Started {
    /// The next stdout frame (stderr frames skipped); `None` at the end of the stream.
    pub async fn next_stdout(&mut self) -> Result<Option<bytes::Bytes>> {
        while let Some(frame) = self.output.next().await {
            match frame.context("raw stream")? {
                LogOutput::StdOut { message } | LogOutput::Console { message } => {
                    return Ok(Some(message));
                }
                _ => {}
            }
        }
        Ok(None)
    }

    /// Drains the stream (keeping stdout if `keep`), then inspects the exec.
    pub async fn finish(mut self, docker: &Docker, keep: bool) -> Result<Raw> {
        let mut raw = Raw::default();
        while let Some(frame) = self.output.next().await {
            if let LogOutput::StdOut { message } | LogOutput::Console { message } =
                frame.context("raw stream")?
            {
                raw.first_stdout.get_or_insert_with(Instant::now);
                raw.stdout_bytes += message.len() as u64;
                if keep {
                    raw.stdout.extend_from_slice(&message);
                }
            }
        }
        let inspected = docker
            .inspect_exec(&self.id)
            .await
            .context("raw inspect_exec")?;
        raw.exit_code = inspected.exit_code;
        Ok(raw)
    }
}

/// One whole raw call: start, drain, inspect.
pub async fn exec(
    docker: &Docker,
    container: &str,
    cmd: &[&str],
    env: &[&str],
    stdin: Option<&[u8]>,
    keep: bool,
) -> Result<Raw> {
    start(docker, container, cmd, env, stdin)
        .await?
        .finish(docker, keep)
        .await
}

/// [`exec`] that must exit 0.
pub async fn exec_ok(
    docker: &Docker,
    container: &str,
    cmd: &[&str],
    env: &[&str],
    stdin: Option<&[u8]>,
    keep: bool,
) -> Result<Raw> {
    let raw = exec(docker, container, cmd, env, stdin, keep).await?;
    if raw.exit_code != Some(0) {
        bail!(
            "raw exec {cmd:?} exited {:?}: {}",
            raw.exit_code,
            String::from_utf8_lossy(&raw.stdout)
        );
    }
    Ok(raw)
}
