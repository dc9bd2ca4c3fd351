//! The file tools (`read`, `write`, `edit`, `glob`, `grep`), run inside the container as the
//! sandbox user: `sandbox-runner tool NAME` with a [`ToolInput`] as JSON on stdin.
//!
//! Contract (the same as the seed's `tool_runner.py`): on success the result text goes to
//! stdout and the exit code is 0; on failure an `[Error] ...` message goes to stderr with exit
//! code 1, or 2 when the arguments are wrong. Relative paths resolve against the working
//! directory (the exec's, which the host maps from the call's); absolute paths are allowed,
//! since the container itself is the boundary.

use std::path::Path;

use sandbox_protocol::{Tool, ToolInput, exit};

mod args;
mod atomic;
mod edit;
mod files;
mod glob;
mod grep;
mod read;
mod text;
mod write;

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
    pub fn bad_args(tool: impl std::fmt::Display, message: impl std::fmt::Display) -> Self {
        Self {
            stdout: String::new(),
            stderr: format!("[Error] bad arguments to {tool}: {message}"),
            code: exit::BAD_ARGS,
        }
    }

    /// A refusal that is not about the arguments' form (over quota, unknown tool):
    /// `[Error] message`, exit 2.
    pub fn refused(message: impl std::fmt::Display) -> Self {
        Self {
            stdout: String::new(),
            stderr: format!("[Error] {message}"),
            code: exit::BAD_ARGS,
        }
    }
}

/// The file tool called `name`, or the runner's refusal of any other name.
pub fn file_tool(name: &str) -> Result<Tool, ToolOutput> {
    Tool::from_name(name)
        .filter(|t| t.is_file_tool())
        .ok_or_else(|| ToolOutput::refused(format!("unknown tool: {name}")))
}

/// Runs file tool `tool` with `input`, resolving relative paths against `cwd`.
pub fn run_tool(tool: Tool, input: &ToolInput, cwd: &Path) -> ToolOutput {
    let run = match tool {
        Tool::Read => read::run,
        Tool::Write => write::run,
        Tool::Edit => edit::run,
        Tool::Glob => glob::run,
        Tool::Grep => grep::run,
        Tool::Shell | Tool::RunPython => {
            return ToolOutput::refused(format!("unknown tool: {tool}"));
        }
    };
    match run(input, cwd) {
        Ok(text) => ToolOutput::ok(text),
        Err(out) => out,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn dispatches_by_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let input = |args| ToolInput {
            args,
            max_growth_bytes: None,
        };
        let out = run_tool(
            Tool::Write,
            &input(json!({"path": "a.txt", "content": "hi\n"})),
            dir.path(),
        );
        assert_eq!(out, ToolOutput::ok("Wrote 3 bytes to a.txt"));
        let out = run_tool(Tool::Read, &input(json!({"path": "a.txt"})), dir.path());
        assert_eq!(out, ToolOutput::ok("     1\thi"));
        let out = file_tool("nope").expect_err("no such tool");
        assert_eq!(
            (out.code, out.stderr.as_str()),
            (2, "[Error] unknown tool: nope")
        );
        let out = run_tool(Tool::Shell, &input(json!({})), dir.path());
        assert_eq!(out.stderr, "[Error] unknown tool: shell");
    }
}
