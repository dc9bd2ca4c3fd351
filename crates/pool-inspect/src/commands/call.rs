//! `call USER TOOL JSON`: one tool call through `DockerExecutor`, as the agent service makes
//! it, in a guest pool started from the configuration: it uses the user's running sandbox as
//! it is (or makes one) and removes or reaps nothing, since the service looks after the rest.

use std::io::Write;
use std::sync::Arc;

use anyhow::Result;
use sandbox_pool::{ShutdownPolicy, validate_user};
use sandbox_tools::{
    CallContext, Executor, OutputChunk, OutputSink, SANDBOX_TOOLS, StreamKind, Tool,
};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::cli::CallArgs;
use crate::config::FileConfig;
use crate::daemon;
use crate::daemon::Target;
use crate::failure::{EXIT_FAILURE, EXIT_OK, usage};

/// A call whose command-line arguments were checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The user.
    pub user: String,
    /// The tool.
    pub tool: Tool,
    /// Its arguments.
    pub args: Value,
}

/// Checks what clap cannot: the user id, the tool name, the JSON and `--timeout`. Runs
/// before anything touches the daemon, so usage errors exit 2 whatever its state.
pub fn plan(a: &CallArgs) -> Result<Plan> {
    validate_user(&a.user).map_err(|e| usage(e.to_string()))?;
    let Some(tool) = Tool::from_name(&a.tool) else {
        return Err(usage(format!(
            "unknown tool {:?}: use one of {}",
            a.tool,
            SANDBOX_TOOLS.join(", ")
        )));
    };
    let mut args: Value = serde_json::from_str(&a.args).map_err(|e| {
        usage(format!(
            "the tool arguments are not valid JSON ({e}): {}",
            a.args
        ))
    })?;
    let Some(map) = args.as_object_mut() else {
        return Err(usage(format!(
            "the tool arguments must be a JSON object, like '{{\"command\": \"ls\"}}': {}",
            a.args
        )));
    };
    if let Some(secs) = a.timeout {
        if !(secs.is_finite() && secs > 0.0) {
            return Err(usage(format!(
                "--timeout must be a positive number of seconds, not {secs}"
            )));
        }
        if !tool.takes_timeout() {
            return Err(usage(format!(
                "{tool} takes no timeout (its deadline is `tools.file_timeout` in the configuration)"
            )));
        }
        map.insert("timeout".to_owned(), Value::from(secs));
    }
    Ok(Plan {
        user: a.user.clone(),
        tool,
        args,
    })
}

/// Prints live output to our own stdout and stderr as it arrives.
fn live_sink() -> Arc<dyn OutputSink> {
    Arc::new(|chunk: OutputChunk| {
        // A closed stdout (`| head`) only stops the live copy; the call goes on.
        let _ = match chunk.stream {
            StreamKind::Stdout => {
                let mut out = std::io::stdout().lock();
                out.write_all(&chunk.bytes).and_then(|()| out.flush())
            }
            StreamKind::Stderr => std::io::stderr().lock().write_all(&chunk.bytes),
        };
    })
}

/// `call`. Exits 0 when the tool's exit code is 0, else 1 (the tool's own code is printed
/// on stderr: a shell's `exit 3` is not a failure of `pool-inspect`, but scripts want to know).
pub async fn call(targets: &[Target], config: &FileConfig, plan: Plan, stream: bool) -> Result<u8> {
    let pool = daemon::start_fleet(targets, config).await?;
    let tools = daemon::executor(&pool, config, &plan.user);
    let cancel = CancellationToken::new();
    let mut ctx = CallContext::new("pool-inspect").with_cancel(cancel.clone());
    if stream {
        ctx = ctx.with_sink(live_sink());
    }
    // Ctrl-C cancels through the call's token: the call ends at once and what it started in
    // the sandbox is killed there, as the service's own cancellation does.
    let on_ctrl_c = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("pool-inspect: cancelling the call");
            cancel.cancel();
        }
    });
    let result = tools.call_tool(plan.tool.name(), plan.args, &ctx).await;
    on_ctrl_c.abort();
    // The sandbox stays for later calls (and for `ls`/`show`); `rm` removes it.
    pool.shutdown(ShutdownPolicy::Keep).await?;
    if stream {
        eprintln!("--- result ---");
    }
    println!("{}", result.content);
    eprintln!(
        "exit code: {} (took {} ms)",
        result.exit_code,
        result.meta.duration.as_millis()
    );
    Ok(if result.exit_code == 0 {
        EXIT_OK
    } else {
        EXIT_FAILURE
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::failure::{EXIT_USAGE, classify};

    fn args(user: &str, tool: &str, json: &str, timeout: Option<f64>) -> CallArgs {
        CallArgs {
            user: user.into(),
            tool: tool.into(),
            args: json.into(),
            stream: false,
            timeout,
        }
    }

    fn usage_line(a: CallArgs) -> String {
        let err = plan(&a).expect_err("a usage error");
        let (code, line) = classify(&err);
        assert_eq!(code, EXIT_USAGE, "{line}");
        line
    }

    #[test]
    fn bad_command_lines_are_usage_errors() {
        assert!(usage_line(args("u", "shell", "{nope", None)).contains("not valid JSON"));
        assert!(usage_line(args("u", "shell", "[1]", None)).contains("JSON object"));
        assert!(usage_line(args("a b", "shell", "{}", None)).contains("invalid user id"));
        assert!(usage_line(args("u", "web_search", "{}", None)).contains("unknown tool"));
        assert!(usage_line(args("u", "read", "{}", Some(3.0))).contains("takes no timeout"));
        assert!(usage_line(args("u", "shell", "{}", Some(0.0))).contains("positive"));
    }

    #[test]
    fn timeout_becomes_the_tools_argument() {
        let p = plan(&args(
            "u1",
            "shell",
            r#"{"command": "sleep 9", "timeout": 60}"#,
            Some(2.0),
        ))
        .expect("plan");
        assert_eq!(
            p.args,
            serde_json::json!({"command": "sleep 9", "timeout": 2.0})
        );
    }
}
