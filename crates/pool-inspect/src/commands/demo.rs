//! `demo`: the project's main job, shown step by step on an embedded configuration.
//!
//! From a running daemon and nothing else: builds the image if needed (with progress),
//! makes a temporary users root, runs a short scripted agent conversation through
//! `DockerExecutor` (every sandbox tool, a timeout whose background child is shown gone, a
//! cancellation), shows the pool as `ls` does, and removes what it made, also on failure or
//! Ctrl-C. It checks what it shows: a step that does not answer as expected makes it exit 1.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use sandbox_exec::docker::is_not_found;
use sandbox_pool::bollard::Docker;
use sandbox_pool::{Housekeeping, PoolError, SandboxPool, ShutdownPolicy, daemon_view};
use sandbox_tools::format::{EXIT_CANCELLED, EXIT_TIMEOUT};
use sandbox_tools::{CallContext, DockerExecutor, Executor, ToolResult};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::commands::image::{build_image, resolve_runner};
use crate::commands::ls;
use crate::config::FileConfig;
use crate::daemon;
use crate::failure::{EXIT_FAILURE, EXIT_OK};

/// The demo's pool (container name prefix).
const POOL: &str = "zcbot-demo";
/// The demo's user.
const USER: &str = "demo";
/// Label on the demo's containers.
const LABEL: (&str, &str) = ("zcbot.demo", "1");
/// The file the conversation writes, with a CJK name (names are never quoted into a shell).
const NOTE: &str = "notes/买菜清单.txt";
/// When the demo cancels the long run_python call.
const CANCEL_AFTER: Duration = Duration::from_secs(1);

/// Colours on a terminal only (and never with `NO_COLOR`).
#[derive(Debug, Clone, Copy)]
struct Style {
    color: bool,
}

impl Style {
    fn detect() -> Self {
        Self {
            color: std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
        }
    }

    fn paint(&self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }

    fn section(&self, title: &str) {
        println!("\n{}", self.paint("1;34", &format!("== {title}")));
    }

    fn note(&self, text: &str) {
        println!("  {}", self.paint("2", text));
    }

    fn check(&self, ok: bool, text: &str) -> bool {
        if ok {
            println!("  {} {text}", self.paint("32", "ok:"));
        } else {
            println!("  {} {text}", self.paint("1;31", "UNEXPECTED:"));
        }
        ok
    }
}

/// The embedded configuration: the library's defaults, in pool `zcbot-demo`, with users'
/// roots under a temporary folder.
fn demo_config(users_root: PathBuf) -> FileConfig {
    let mut config = FileConfig::default();
    config.pool.name_prefix = POOL.to_owned();
    config.pool.users_root = Some(users_root);
    config
        .pool
        .labels
        .insert(LABEL.0.to_owned(), LABEL.1.to_owned());
    config
}

/// `demo`.
pub async fn demo(docker: &Docker) -> Result<u8> {
    let style = Style::detect();
    let users = tempfile::Builder::new()
        .prefix("zcbot-demo-")
        .tempdir()
        .context("making a temporary users root")?;
    let mut config = demo_config(users.path().to_owned());

    style.section("image");
    config.pool.image = ensure_image(docker, &config, &style).await?;

    style.section(&format!("pool {POOL}"));
    let pool = daemon::start_pool(docker, &config, Housekeeping::Full).await?;
    style.note(&format!(
        "image {}, users root {}, user {USER}",
        config.pool.image,
        users.path().display()
    ));

    let script = tokio::select! {
        r = conversation(docker, &pool, &config, &style) => r,
        _ = tokio::signal::ctrl_c() => Err(anyhow!("interrupted")),
    };

    style.section("clean up");
    let cleaned = clean_up(docker, &pool).await;
    let root = users.path().display().to_string();
    match users.close() {
        Ok(()) => style.note(&format!("removed {root}")),
        Err(e) => eprintln!("pool-inspect: warning: removing {root}: {e}"),
    }
    let all_as_expected = script?;
    cleaned?;
    Ok(if all_as_expected {
        EXIT_OK
    } else {
        EXIT_FAILURE
    })
}

/// Builds the image when a runner binary is at hand (a no-op when its inputs are unchanged),
/// else uses the configured image if the daemon has it. Returns the image to use.
async fn ensure_image(docker: &Docker, config: &FileConfig, style: &Style) -> Result<String> {
    let runner = resolve_runner(std::env::var_os("SANDBOX_RUNNER").map(PathBuf::from));
    match runner {
        Ok(runner) => {
            // The build reports on stderr, "up to date" included.
            Ok(build_image(docker, &config.image, &runner).await?.tag)
        }
        Err(no_runner) => {
            let image = &config.pool.image;
            match docker.inspect_image(image).await {
                Ok(_) => {
                    style.note(&format!("using {image} ({no_runner:#})"));
                    Ok(image.clone())
                }
                Err(e) if is_not_found(&e) => Err(PoolError::ImageMissing {
                    image: image.clone(),
                }
                .into()),
                Err(e) => Err(e).with_context(|| format!("inspecting image {image}")),
            }
        }
    }
}

/// The scripted conversation. Returns whether every step answered as expected.
async fn conversation(
    docker: &Docker,
    pool: &SandboxPool,
    config: &FileConfig,
    style: &Style,
) -> Result<bool> {
    let tools = daemon::executor(&pool.clone().into(), config, USER);
    let mut ok = true;
    // Only a surprise is worth a line of its own.
    let expect = |r: &ToolResult, code: i32| {
        r.exit_code == code || style.check(false, &format!("expected exit {code}"))
    };

    style.section("a short agent conversation");
    let r = step(
        &tools,
        style,
        "shell",
        json!({"command": "uname -a; id"}),
        None,
    )
    .await;
    ok &= expect(&r, 0);
    let code = "import statistics\nprices = [3.2, 1.5, 4.8, 2.0]\nprint('total', sum(prices), 'median', statistics.median(prices))";
    let r = step(&tools, style, "run_python", json!({"code": code}), None).await;
    ok &= expect(&r, 0);
    let note = "Shopping list\n- tea\n- rice\n- 豆腐\n";
    let r = step(
        &tools,
        style,
        "write",
        json!({"path": NOTE, "content": note}),
        None,
    )
    .await;
    ok &= expect(&r, 0);
    let r = step(&tools, style, "read", json!({"path": NOTE}), None).await;
    ok &= expect(&r, 0);
    let args = json!({"path": NOTE, "old_string": "- tea", "new_string": "- green tea"});
    let r = step(&tools, style, "edit", args, None).await;
    ok &= expect(&r, 0);
    let r = step(&tools, style, "glob", json!({"pattern": "**/*.txt"}), None).await;
    ok &= expect(&r, 0);
    let args = json!({"pattern": "tea|豆腐", "output_mode": "content"});
    let r = step(&tools, style, "grep", args, None).await;
    ok &= expect(&r, 0);

    style.section("a command that times out, leaving a background child");
    let args = json!({"command": "sleep 300 & echo started; sleep 30", "timeout": 2});
    let r = step(&tools, style, "shell", args, None).await;
    ok &= style.check(
        r.exit_code == EXIT_TIMEOUT,
        "timed out after 2 s (exit 124) although a background child held its output",
    );
    let r = step(
        &tools,
        style,
        "shell",
        json!({"command": "ps -eo pid,args"}),
        None,
    )
    .await;
    ok &= expect(&r, 0);
    ok &= style.check(
        !r.content.contains("sleep 300"),
        "the background `sleep 300` is gone: the timeout killed the call's whole process tree",
    );

    style.section(&format!(
        "a call cancelled after {} s",
        CANCEL_AFTER.as_secs()
    ));
    let code = "import time\nprint('sleeping for a minute', flush=True)\ntime.sleep(60)";
    let cancel = CancellationToken::new();
    let r = step(
        &tools,
        style,
        "run_python",
        json!({"code": code}),
        Some(cancel),
    )
    .await;
    ok &= style.check(
        r.exit_code == EXIT_CANCELLED && r.meta.duration < CANCEL_AFTER * 2,
        "cancelled at once through the call's token (exit 130)",
    );

    style.section(&format!("pool-inspect --pool {POOL} ls"));
    let list = daemon_view(docker, sandbox_pool::LOCAL_ENGINE, POOL, true).await?;
    ls::table(&list, false).write_to(&mut std::io::stdout().lock(), "  ")?;
    Ok(ok)
}

/// One call, printed as `> tool {args}`, the result indented, then `(exit N, took X ms)`.
/// With `cancel`, the call is cancelled after [`CANCEL_AFTER`] through its token.
async fn step(
    tools: &DockerExecutor,
    style: &Style,
    tool: &str,
    args: Value,
    cancel: Option<CancellationToken>,
) -> ToolResult {
    println!("\n{} {args}", style.paint("1", &format!("> {tool}")));
    let mut ctx = CallContext::new("demo");
    if let Some(token) = cancel {
        ctx = ctx.with_cancel(token.clone());
        tokio::spawn(async move {
            tokio::time::sleep(CANCEL_AFTER).await;
            token.cancel();
        });
    }
    let result = tools.call_tool(tool, args, &ctx).await;
    for line in result.content.lines() {
        println!("    {line}");
    }
    style.note(&format!(
        "(exit {}, took {} ms)",
        result.exit_code,
        result.meta.duration.as_millis()
    ));
    result
}

/// Removes the pool's sandboxes, then anything else still carrying the pool's label.
async fn clean_up(docker: &Docker, pool: &SandboxPool) -> Result<()> {
    let style = Style::detect();
    let first = pool.shutdown(ShutdownPolicy::Remove).await;
    let mut failed = first.err().map(anyhow::Error::from);
    for c in sandbox_pool::list_containers(docker, POOL).await? {
        if let Err(e) =
            sandbox_pool::remove_container(docker, c.id.as_deref().unwrap_or_default()).await
        {
            failed.get_or_insert(e.into());
        }
    }
    match failed {
        None => {
            style.note(&format!("removed the containers of pool {POOL}"));
            Ok(())
        }
        Some(e) => Err(e.context(format!("removing the containers of pool {POOL}"))),
    }
}
