//! The tools a language model calls, split between the sandbox and the host.
//!
//! Owns: the [`Executor`] trait, [`DockerExecutor`] and the routing of the seven sandbox tools
//! (`shell`, `run_python`, `read`, `write`, `edit`, `glob`, `grep`) to the user's container
//! while every other tool stays with the host executor; the sandbox tools' JSON schemas
//! ([`schema`]); the argument checks done on the host before anything reaches a container
//! ([`args`]); the text the model sees for every result and error ([`format`](mod@format)); the
//! disk-quota gate in front of `write` and `edit` ([`quota`]); the sandbox's one configuration
//! file ([`FileConfig`]), which holds the pool's and the image's sections beside its own; the
//! calls' [`metrics`]; and what a call tells the service beside the model's text ([`ToolMeta`]:
//! how it ended, typed, and a [`ToolError`] keeping the pool's or the exec's own error when it
//! failed before its command ran).
//!
//! Must not: talk to bollard or the Docker daemon directly, or create, track or remove
//! containers. Running a command is `sandbox-exec`'s job and the container lifecycle is
//! `sandbox-pool`'s; this crate only decides what to run and words the answer.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use sandbox_tools::{CallContext, DockerExecutor, Executor, SandboxToolsOnly};
//!
//! let docker = sandbox_pool::connect().await?;
//! let pool = sandbox_pool::SandboxPool::start(docker, Default::default()).await?;
//! let root = pool.user_root("alice");
//! // No host tools behind it here; an agent service passes its own executor instead.
//! let tools = DockerExecutor::new(Arc::new(SandboxToolsOnly), pool, "alice", root);
//! let args = serde_json::json!({"command": "ls"});
//! let result = tools.call_tool("shell", args, &CallContext::new("task-1")).await;
//! println!("{} (exit {})", result.content, result.exit_code);
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod args;
mod config;
mod docker_executor;
mod error;
mod executor;
mod file_config;
pub mod format;
pub mod metrics;
pub mod quota;
pub mod schema;

pub use args::{ArgError, TimeoutLimits};
pub use config::{DEFAULT_OUTPUT_HEAD, DEFAULT_OUTPUT_TAIL, ToolsConfig, Transport};
pub use docker_executor::DockerExecutor;
pub use error::ToolError;
pub use executor::{CallContext, Executor, SandboxToolsOnly, ToolMeta, ToolResult};
pub use file_config::{ConfigError, ConfigFormat, FileConfig};
pub use quota::{
    DirUsage, FailurePolicy, QuotaConfig, QuotaDecision, QuotaError, QuotaGate, UsageStore,
};
pub use sandbox_exec::{OutputChunk, OutputSink, StreamKind, Tool};
pub use schema::{SANDBOX_TOOLS, is_sandbox_tool, sandbox_tool_schemas};

/// The README, whose usage example is compiled as a doc test so that it cannot rot.
#[doc = include_str!("../../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
