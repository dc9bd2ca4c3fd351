//! The file tools (`read`, `write`, `edit`, `glob`, `grep`), run inside the container as the
//! sandbox user: `sandbox-runner tool NAME` with a [`ToolInput`] as JSON on stdin.
//!
//! Contract (the same as the seed's `tool_runner.py`): on success the result text goes to
//! stdout and the exit code is 0; on failure an `[Error] ...` message goes to stderr with exit
//! code 1, or 2 when the arguments are wrong. Relative paths resolve against the working
//! directory (the exec's, which the host maps from the call's); absolute paths are allowed,
//! since the container itself is the boundary.

use std::path::Path;

use sandbox_protocol::{ToolInput, exit};

/// What a tool produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolOutput {
    /// Result text (success).
    pub stdout: String,
    /// `[Error] ...` message (failure).
    pub stderr: String,
    /// 0 success, 1 failure, 2 bad arguments.
    pub code: i32,
}

impl ToolOutput {
    /// A successful result.
    pub fn ok(text: impl Into<String>) -> Self {
        Self {
            stdout: text.into(),
            stderr: String::new(),
            code: exit::OK,
        }
    }

    /// A failure: `[Error] message`, exit 1.
    pub fn failed(message: impl std::fmt::Display) -> Self {
        Self {
            stdout: String::new(),
            stderr: format!("[Error] {message}"),
            code: exit::FAILED,
        }
    }

    /// Bad arguments: `[Error] bad arguments to TOOL: message`, exit 2.
    pub fn bad_args(tool: &str, message: impl std::fmt::Display) -> Self {
        Self {
            stdout: String::new(),
            stderr: format!("[Error] bad arguments to {tool}: {message}"),
            code: exit::BAD_ARGS,
        }
    }
}

/// Runs tool `name` with `input`, resolving relative paths against `cwd`.
pub fn run_tool(name: &str, input: &ToolInput, cwd: &Path) -> ToolOutput {
    let _ = (input, cwd);
    ToolOutput::bad_args(name, "unknown tool")
}
