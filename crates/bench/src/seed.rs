//! The seed's way: the `docker` CLI spawned once per call with the seed's arguments, its
//! output collected whole at exit (the seed's `Popen(...).communicate()`). The only place in
//! the workspace that runs the CLI.

use std::process::{Output, Stdio};

use anyhow::{Context, Result, bail};
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use crate::sandbox::{RUNNER_MOUNT, SANDBOX_USER, WORKSPACE};

/// The seed's client. Issue #7 allows spawning it here and only here; [`cli`] is the one
/// place that does.
const SEED_CLI: &str = "docker";

/// A fresh `docker` CLI command.
fn cli() -> Command {
    Command::new(SEED_CLI)
}

/// `docker inspect --format {{.State.Running}} C`: how a CLI pool checks a sandbox is up.
pub fn inspect_running(container: &str) -> Command {
    let mut cmd = cli();
    cmd.args(["inspect", "--format", "{{.State.Running}}", container]);
    cmd
}

/// `docker exec --user zcbot --workdir /workspace [-i] [-e K=V]... C ARGV...`, in the order
/// of the seed's `_docker_exec_argv`. Stdin is a pipe with `-i` and `/dev/null` otherwise;
/// stdout and stderr are pipes, as in the seed's `Popen`.
pub fn exec(container: &str, env: &[(&str, &str)], interactive: bool, argv: &[&str]) -> Command {
    let mut cmd = cli();
    cmd.args(["exec", "--user", SANDBOX_USER, "--workdir", WORKSPACE]);
    if interactive {
        cmd.arg("-i");
    }
    for (k, v) in env {
        cmd.arg("-e").arg(format!("{k}={v}"));
    }
    cmd.arg(container).args(argv);
    cmd.stdin(if interactive {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    // An interrupted bench must not leave CLI clients behind.
    .kill_on_drop(true);
    cmd
}

/// The seed's `shell`: `setsid bash -c CMD` behind the exec arguments.
pub fn shell(container: &str, env: &[(&str, &str)], command: &str) -> Command {
    exec(container, env, false, &["setsid", "bash", "-c", command])
}

/// The seed's file tools: `python3 <runner> TOOL` with `-i` and `PYTHONIOENCODING=utf-8`.
pub fn file_tool(container: &str, tool: &str) -> Command {
    let runner = format!("{RUNNER_MOUNT}/tool_runner.py");
    exec(
        container,
        &[("PYTHONIOENCODING", "utf-8")],
        true,
        &["python3", &runner, tool],
    )
}

/// `docker run -d --name NAME FLAGS... IMAGE` (the flags end with the image): how the seed's
/// pool made a sandbox.
pub fn run_detached(name: &str, flags: &[String]) -> Command {
    let mut cmd = cli();
    cmd.args(["run", "-d", "--name", name])
        .args(flags)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// `docker version` (client only): whether the CLI is there at all.
pub fn client_version() -> Command {
    let mut cmd = cli();
    cmd.args(["version", "--format", "{{.Client.Version}}"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// Runs the CLI to exit: writes `stdin` (if any) while collecting stdout and stderr whole,
/// as `communicate(input=...)` does.
pub async fn run(mut cmd: Command, stdin: Option<&[u8]>) -> Result<Output> {
    let mut child = cmd.spawn().context("spawning the docker CLI")?;
    let pipe = child.stdin.take();
    let feed = async {
        if let (Some(mut pipe), Some(data)) = (pipe, stdin) {
            pipe.write_all(data).await?;
            pipe.shutdown().await?;
        }
        Ok::<_, std::io::Error>(())
    };
    let (fed, output) = tokio::join!(feed, child.wait_with_output());
    let output = output.context("waiting for the docker CLI")?;
    fed.context("writing the docker CLI's stdin")?;
    Ok(output)
}

/// [`run`] that must exit 0.
pub async fn run_ok(cmd: Command, stdin: Option<&[u8]>) -> Result<Output> {
    let output = run(cmd, stdin).await?;
    if !output.status.success() {
        bail!(
            "the docker CLI exited {:?}: {}{}",
            output.status.code(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(output)
}
