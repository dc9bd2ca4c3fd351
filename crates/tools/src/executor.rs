//! The [`Executor`] interface the agent service calls, and what a call carries and returns.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sandbox_exec::{OutputSink, Termination};
use sandbox_pool::Recreated;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::ToolError;

/// Runs tools for a language model.
#[async_trait]
pub trait Executor: Send + Sync {
    /// Whether this executor offers tool `name`.
    fn has_tool(&self, name: &str) -> bool;
    /// JSON schemas (`{"name", "description", "parameters"}`) of the tools offered.
    fn schemas(&self) -> Vec<Value>;
    /// Runs tool `name` with the model's arguments. Never fails: every failure is a
    /// [`ToolResult`] with an `[Error] ...` text and a non-zero exit code, as the model sees it.
    async fn call_tool(&self, name: &str, args: Value, ctx: &CallContext) -> ToolResult;
}

/// A host executor that offers the seven sandbox tools and nothing else: for a
/// [`DockerExecutor`](crate::DockerExecutor) with no host tools behind it (an operator's CLI,
/// a benchmark, a service whose host tools live elsewhere). Any other name is an unknown tool.
#[derive(Debug, Clone, Copy, Default)]
pub struct SandboxToolsOnly;

#[async_trait]
impl Executor for SandboxToolsOnly {
    fn has_tool(&self, name: &str) -> bool {
        crate::is_sandbox_tool(name)
    }

    fn schemas(&self) -> Vec<Value> {
        // `DockerExecutor` answers the sandbox tools' schemas itself, configured.
        Vec::new()
    }

    async fn call_tool(&self, name: &str, _args: Value, _ctx: &CallContext) -> ToolResult {
        // Only reached for names that are not sandbox tools: there is nothing else here.
        ToolResult::new(
            crate::format::unknown_tool(name),
            crate::format::EXIT_BAD_ARGS,
        )
    }
}

/// What one call carries besides its arguments.
#[derive(Clone, Default)]
pub struct CallContext {
    /// The agent task the call belongs to (for logs).
    pub task_id: String,
    /// Cancelling it stops the call at once and kills what it started.
    pub cancel: CancellationToken,
    /// Receives output as it arrives (shell and run_python).
    pub sink: Option<Arc<dyn OutputSink>>,
}

impl std::fmt::Debug for CallContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallContext")
            .field("task_id", &self.task_id)
            .field("cancelled", &self.cancel.is_cancelled())
            .field("sink", &self.sink.is_some())
            .finish()
    }
}

impl CallContext {
    /// A context for task `task_id` with a fresh cancellation token and no sink.
    pub fn new(task_id: impl Into<String>) -> Self {
        Self {
            task_id: task_id.into(),
            ..Self::default()
        }
    }

    /// Uses this cancellation token.
    pub fn with_cancel(mut self, cancel: CancellationToken) -> Self {
        self.cancel = cancel;
        self
    }

    /// Streams output to this sink.
    pub fn with_sink(mut self, sink: Arc<dyn OutputSink>) -> Self {
        self.sink = Some(sink);
        self
    }
}

/// A tool's answer: what the model reads, its exit code, and typed facts about the call.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolResult {
    /// The text for the model.
    pub content: String,
    /// 0 on success; the command's own code for shell and run_python; 2 bad arguments or
    /// refused, 124 timed out, 130 cancelled, 1 internal failure.
    pub exit_code: i32,
    /// Facts about the call.
    pub meta: ToolMeta,
}

/// Facts about a call that the text only says in words.
#[derive(Debug, Clone, Default)]
pub struct ToolMeta {
    /// Some output was dropped by the caps.
    pub truncated: bool,
    /// How the call ended: the command's exit or signal, a timeout or cancel (also while it
    /// waited for its sandbox), or its sandbox lost. `None` for a host tool, arguments refused
    /// on the host, or a failure before the command could run ([`ToolMeta::error`]).
    pub termination: Option<Termination>,
    /// Why the call failed before its command could run, typed: the pool's or the exec's own
    /// error (a full pool, a daemon that does not answer, ...).
    pub error: Option<Arc<ToolError>>,
    /// The sandbox was made anew for this call, and why (for example after an OOM kill).
    pub recreated: Option<Recreated>,
    /// What the server-side kill found and did, when the call timed out or was cancelled.
    pub kill: Option<sandbox_exec::KillSummary>,
    /// From the start of the call to its result.
    pub duration: Duration,
}

/// Equal when every fact is; errors (which are not `PartialEq`) by what they say.
impl PartialEq for ToolMeta {
    fn eq(&self, other: &Self) -> bool {
        let said = |e: &Option<Arc<ToolError>>| e.as_deref().map(|e| sandbox_exec::error_chain(e));
        self.truncated == other.truncated
            && self.termination == other.termination
            && said(&self.error) == said(&other.error)
            && self.recreated == other.recreated
            && self.kill == other.kill
            && self.duration == other.duration
    }
}

impl ToolMeta {
    /// The deadline passed (the call was killed, or never started).
    pub fn timed_out(&self) -> bool {
        self.termination == Some(Termination::TimedOut)
    }

    /// The call was cancelled (and killed, or never started).
    pub fn cancelled(&self) -> bool {
        self.termination == Some(Termination::Cancelled)
    }

    /// The sandbox went away during the call.
    pub fn sandbox_lost(&self) -> bool {
        matches!(self.termination, Some(Termination::SandboxLost { .. }))
    }
}

impl ToolResult {
    /// A result with default facts.
    pub fn new(content: impl Into<String>, exit_code: i32) -> Self {
        Self {
            content: content.into(),
            exit_code,
            meta: ToolMeta::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_sandbox_only_host_offers_the_seven_tools_and_nothing_else() {
        let host = SandboxToolsOnly;
        assert!(crate::SANDBOX_TOOLS.iter().all(|t| host.has_tool(t)));
        assert!(!host.has_tool("web_search"));
        let r = host
            .call_tool("web_search", Value::Null, &CallContext::new("t"))
            .await;
        assert_eq!(
            (r.content.as_str(), r.exit_code),
            ("[Error] unknown tool: web_search", 2)
        );
    }
}
