//! The host executor `DockerExecutor` wraps: the CLI has no host tools, so it offers exactly
//! the seven sandbox tools (which `DockerExecutor` runs in the sandbox) and answers any other
//! name as an unknown tool.

use async_trait::async_trait;
use sandbox_tools::format::{EXIT_BAD_ARGS, unknown_tool};
use sandbox_tools::{CallContext, Executor, ToolResult, is_sandbox_tool, sandbox_tool_schemas};
use serde_json::Value;

/// Offers the sandbox tools and nothing else.
#[derive(Debug, Clone, Copy, Default)]
pub struct SandboxToolsOnly;

#[async_trait]
impl Executor for SandboxToolsOnly {
    fn has_tool(&self, name: &str) -> bool {
        is_sandbox_tool(name)
    }

    fn schemas(&self) -> Vec<Value> {
        // Only names count here: `DockerExecutor` replaces these with its own, configured.
        sandbox_tool_schemas(&sandbox_tools::ToolsConfig::default())
    }

    async fn call_tool(&self, name: &str, _args: Value, _ctx: &CallContext) -> ToolResult {
        // Only reached for names that are not sandbox tools: there is nothing else here.
        ToolResult::new(unknown_tool(name), EXIT_BAD_ARGS)
    }
}
