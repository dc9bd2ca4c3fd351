//! Argument checks done on the host, before anything reaches a container.
//!
//! The host checks only what it needs itself: the command or program to run and the deadline.
//! Everything else in a file tool's arguments is checked by the in-container runner, which
//! words its errors the same way (`[Error] bad arguments to TOOL: ...`, exit 2).

use std::borrow::Cow;
use std::time::Duration;

use sandbox_exec::Tool;
use serde_json::{Map, Value};

use crate::format::EXIT_BAD_ARGS;

/// Default deadline of `shell`: 60 s (the seed's).
pub const DEFAULT_SHELL_TIMEOUT: Duration = Duration::from_secs(60);
/// Default deadline of `run_python`: 120 s (the seed's).
pub const DEFAULT_PYTHON_TIMEOUT: Duration = Duration::from_secs(120);
/// Default deadline of the file tools, and of grep's own `timeout`: 30 s (the seed's).
pub const DEFAULT_FILE_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest deadline a model may ask for: 600 s. A larger `timeout` is cut to this, so one call
/// cannot hold a sandbox (and the agent's turn) for hours.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(600);
/// Extra time the host gives `grep` over its own `timeout`: 2 s.
///
/// grep stops itself at its deadline and returns what it found so far, marked incomplete. If
/// the host killed it at the same moment, that partial answer would be lost to a bare
/// "timed out". The slack lets grep's own answer arrive first; the host deadline stays as the
/// backstop for a grep that hangs.
pub const GREP_SLACK: Duration = Duration::from_secs(2);
/// Largest `shell` command and `run_python` program: 16 MiB. Both travel to the sandbox on the
/// exec's stdin, so nothing smaller (argv, the environment) limits them; this bound keeps one
/// call from shipping an unbounded amount through the service.
pub const MAX_PROGRAM_BYTES: usize = 16 * 1024 * 1024;

/// The deadlines the host applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeoutLimits {
    /// `shell` without a `timeout` ([`DEFAULT_SHELL_TIMEOUT`]).
    pub shell_default: Duration,
    /// `run_python` without a `timeout` ([`DEFAULT_PYTHON_TIMEOUT`]).
    pub python_default: Duration,
    /// The file tools, and grep without a `timeout` ([`DEFAULT_FILE_TIMEOUT`]).
    pub file_default: Duration,
    /// Cap on any `timeout` a model asks for ([`MAX_TIMEOUT`]).
    pub max: Duration,
}

impl Default for TimeoutLimits {
    fn default() -> Self {
        Self {
            shell_default: DEFAULT_SHELL_TIMEOUT,
            python_default: DEFAULT_PYTHON_TIMEOUT,
            file_default: DEFAULT_FILE_TIMEOUT,
            max: MAX_TIMEOUT,
        }
    }
}

/// Arguments a tool cannot run with. Displays as `[Error] bad arguments to TOOL: MESSAGE`
/// (the seed's wording); the call answers that with [`EXIT_BAD_ARGS`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("[Error] bad arguments to {tool}: {message}")]
pub struct ArgError {
    tool: Tool,
    message: String,
}

impl ArgError {
    /// `tool`'s arguments are wrong, as `message` says.
    pub fn new(tool: Tool, message: impl Into<String>) -> Self {
        Self {
            tool,
            message: message.into(),
        }
    }

    /// The tool whose arguments were refused.
    pub fn tool(&self) -> Tool {
        self.tool
    }

    /// What is wrong with them.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The exit code of the answer: [`EXIT_BAD_ARGS`].
    pub fn exit_code(&self) -> i32 {
        EXIT_BAD_ARGS
    }
}

/// `shell`'s checked arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShellArgs {
    /// The command line for `bash -c`.
    pub command: String,
    /// The host deadline.
    pub timeout: Duration,
}

/// `run_python`'s checked arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PythonArgs {
    /// The program's source (may be empty).
    pub code: String,
    /// The host deadline.
    pub timeout: Duration,
}

/// A file tool call as the host runs it.
#[derive(Debug, Clone, PartialEq)]
pub struct FileToolCall<'a> {
    /// The arguments to hand to the runner: the model's own, except that grep's `timeout` is
    /// replaced by the effective number of seconds (see [`parse_file_tool`]).
    pub args: Cow<'a, Value>,
    /// The host deadline.
    pub deadline: Duration,
}

/// Checks `shell`'s arguments: `command` must be a non-blank string.
pub fn parse_shell(args: &Value, limits: &TimeoutLimits) -> Result<ShellArgs, ArgError> {
    const TOOL: Tool = Tool::Shell;
    let map = object(TOOL, args)?;
    let command = match map.get("command") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
        _ => return Err(ArgError::new(TOOL, "command must be non-empty string")),
    };
    // No program can receive a NUL in its arguments; say so instead of failing in the runner.
    if command.contains('\0') {
        return Err(ArgError::new(TOOL, "command must not contain NUL bytes"));
    }
    program_size(TOOL, "command", &command)?;
    let timeout = timeout(TOOL, map, limits.shell_default, limits.max)?;
    Ok(ShellArgs { command, timeout })
}

/// Checks `run_python`'s arguments: `code` must be a string (empty is allowed).
pub fn parse_python(args: &Value, limits: &TimeoutLimits) -> Result<PythonArgs, ArgError> {
    const TOOL: Tool = Tool::RunPython;
    let map = object(TOOL, args)?;
    let Some(Value::String(code)) = map.get("code") else {
        return Err(ArgError::new(TOOL, "code must be string"));
    };
    program_size(TOOL, "code", code)?;
    let timeout = timeout(TOOL, map, limits.python_default, limits.max)?;
    Ok(PythonArgs {
        code: code.clone(),
        timeout,
    })
}

/// The host deadline of file tool `tool` ([`Tool::is_file_tool`]):
/// [`TimeoutLimits::file_default`], or for grep its own `timeout` plus [`GREP_SLACK`].
pub fn file_tool_timeout(
    tool: Tool,
    args: &Value,
    limits: &TimeoutLimits,
) -> Result<Duration, ArgError> {
    parse_file_tool(tool, args, limits).map(|call| call.deadline)
}

/// Checks what the host needs of file tool `tool`'s arguments and gives the call to run.
///
/// For grep, the host reads `timeout` with the same rules as `shell` (absent, `null`, `0` or
/// `false` mean the default; capped at [`TimeoutLimits::max`]) and writes the effective
/// seconds back into the arguments, so that the runner's own deadline is the one the host
/// planned for: the runner refuses `0`/`false` and knows no cap. Other arguments are left for
/// the runner to check, and other tools' arguments are passed on untouched (not copied).
pub fn parse_file_tool<'a>(
    tool: Tool,
    args: &'a Value,
    limits: &TimeoutLimits,
) -> Result<FileToolCall<'a>, ArgError> {
    let map = object(tool, args)?;
    if tool != Tool::Grep {
        return Ok(FileToolCall {
            args: Cow::Borrowed(args),
            deadline: limits.file_default,
        });
    }
    let own = timeout(tool, map, limits.file_default, limits.max)?;
    let mut rewritten = map.clone();
    rewritten.insert("timeout".to_owned(), Value::from(own.as_secs_f64()));
    Ok(FileToolCall {
        args: Cow::Owned(Value::Object(rewritten)),
        deadline: own + GREP_SLACK,
    })
}

fn program_size(tool: Tool, name: &str, program: &str) -> Result<(), ArgError> {
    if program.len() > MAX_PROGRAM_BYTES {
        return Err(ArgError::new(
            tool,
            format!(
                "{name} is {} bytes, at most {MAX_PROGRAM_BYTES}",
                program.len()
            ),
        ));
    }
    Ok(())
}

fn object(tool: Tool, args: &Value) -> Result<&Map<String, Value>, ArgError> {
    args.as_object()
        .ok_or_else(|| ArgError::new(tool, "arguments must be a JSON object"))
}

/// The `timeout` argument in seconds. Absent, `null`, `0` and `false` mean `default`, as the
/// seed's `int(args.get("timeout") or 60)` did; a positive number is capped at `max`.
fn timeout(
    tool: Tool,
    map: &Map<String, Value>,
    default: Duration,
    max: Duration,
) -> Result<Duration, ArgError> {
    let secs = match map.get("timeout") {
        None | Some(Value::Null | Value::Bool(false)) => return Ok(default.min(max)),
        Some(Value::Number(n)) => n.as_f64(),
        Some(_) => None,
    };
    match secs {
        Some(0.0) => Ok(default.min(max)),
        // Compared as floats first: 1e300 seconds is no `Duration`, but it is over the cap.
        Some(s) if s.is_finite() && s > 0.0 => Ok(if s >= max.as_secs_f64() {
            max
        } else {
            Duration::from_secs_f64(s)
        }),
        _ => Err(ArgError::new(
            tool,
            "timeout must be a positive number of seconds",
        )),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn limits() -> TimeoutLimits {
        TimeoutLimits::default()
    }

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn defaults_are_the_seeds() {
        let l = limits();
        assert_eq!(
            (l.shell_default, l.python_default, l.file_default, l.max),
            (secs(60.0), secs(120.0), secs(30.0), secs(600.0))
        );
    }

    #[test]
    fn shell_needs_a_non_blank_command() {
        let ok = parse_shell(&json!({"command": "echo 你好"}), &limits()).expect("valid");
        assert_eq!(ok.command, "echo 你好");
        assert_eq!(ok.timeout, DEFAULT_SHELL_TIMEOUT);
        for bad in [
            json!({}),
            json!({"command": null}),
            json!({"command": 3}),
            json!({"command": ["ls"]}),
            json!({"command": ""}),
            json!({"command": " \n\t"}),
        ] {
            let err = parse_shell(&bad, &limits()).expect_err("refused");
            assert_eq!(
                err.to_string(),
                "[Error] bad arguments to shell: command must be non-empty string",
                "{bad}"
            );
            assert_eq!(err.exit_code(), 2);
        }
        let nul = parse_shell(&json!({"command": "echo a\u{0}b"}), &limits()).expect_err("NUL");
        assert_eq!(
            nul.to_string(),
            "[Error] bad arguments to shell: command must not contain NUL bytes"
        );
    }

    #[test]
    fn programs_have_one_size_limit() {
        let at_limit = "x".repeat(MAX_PROGRAM_BYTES);
        assert!(parse_python(&json!({"code": at_limit}), &limits()).is_ok());
        let over = format!("echo {}", "y".repeat(MAX_PROGRAM_BYTES));
        let err = parse_shell(&json!({"command": over}), &limits()).expect_err("too big");
        assert_eq!(
            err.to_string(),
            format!(
                "[Error] bad arguments to shell: command is {} bytes, at most {MAX_PROGRAM_BYTES}",
                MAX_PROGRAM_BYTES + 5
            )
        );
        let err = parse_python(
            &json!({"code": "y".repeat(MAX_PROGRAM_BYTES + 1)}),
            &limits(),
        )
        .expect_err("too big");
        assert_eq!(
            err.message(),
            format!(
                "code is {} bytes, at most {MAX_PROGRAM_BYTES}",
                MAX_PROGRAM_BYTES + 1
            )
        );
    }

    #[test]
    fn python_needs_a_string_but_it_may_be_empty() {
        let ok = parse_python(&json!({"code": ""}), &limits()).expect("empty code runs");
        assert_eq!((ok.code.as_str(), ok.timeout), ("", DEFAULT_PYTHON_TIMEOUT));
        for bad in [json!({}), json!({"code": null}), json!({"code": 1})] {
            let err = parse_python(&bad, &limits()).expect_err("refused");
            assert_eq!(
                err.to_string(),
                "[Error] bad arguments to run_python: code must be string"
            );
        }
    }

    #[test]
    fn arguments_must_be_an_object_for_every_tool() {
        for bad in [json!(null), json!("ls"), json!([1]), json!(3)] {
            let shell = parse_shell(&bad, &limits()).expect_err("shell");
            assert_eq!(
                shell.to_string(),
                "[Error] bad arguments to shell: arguments must be a JSON object"
            );
            let python = parse_python(&bad, &limits()).expect_err("python");
            assert_eq!(python.tool(), Tool::RunPython);
            assert_eq!(python.message(), "arguments must be a JSON object");
            for tool in Tool::ALL.into_iter().filter(|t| t.is_file_tool()) {
                let err = file_tool_timeout(tool, &bad, &limits()).expect_err("not an object");
                assert_eq!(
                    err.to_string(),
                    format!("[Error] bad arguments to {tool}: arguments must be a JSON object")
                );
            }
        }
    }

    #[test]
    fn falsy_timeouts_mean_the_default() {
        for t in [json!(null), json!(0), json!(0.0), json!(false)] {
            let args = json!({"command": "x", "timeout": t});
            assert_eq!(
                parse_shell(&args, &limits()).expect("ok").timeout,
                DEFAULT_SHELL_TIMEOUT,
                "{t}"
            );
            let args = json!({"code": "x", "timeout": t});
            assert_eq!(
                parse_python(&args, &limits()).expect("ok").timeout,
                DEFAULT_PYTHON_TIMEOUT,
                "{t}"
            );
        }
    }

    #[test]
    fn positive_timeouts_are_used_and_capped() {
        for (t, want) in [
            (json!(5), secs(5.0)),
            (json!(0.25), secs(0.25)),
            (json!(600), secs(600.0)),
            (json!(601), secs(600.0)),
            (json!(1e300), secs(600.0)),
            (json!(u64::MAX), secs(600.0)),
        ] {
            let args = json!({"command": "x", "timeout": t});
            assert_eq!(
                parse_shell(&args, &limits()).expect("ok").timeout,
                want,
                "{t}"
            );
        }
    }

    #[test]
    fn other_timeouts_are_refused() {
        for t in [
            json!(-1),
            json!(-0.5),
            json!("30"),
            json!(true),
            json!([30]),
        ] {
            let err = parse_shell(&json!({"command": "x", "timeout": t}), &limits())
                .expect_err("refused");
            assert_eq!(
                err.to_string(),
                "[Error] bad arguments to shell: timeout must be a positive number of seconds",
                "{t}"
            );
        }
    }

    #[test]
    fn a_default_over_the_cap_is_capped_too() {
        let l = TimeoutLimits {
            max: secs(10.0),
            ..limits()
        };
        let args = json!({"command": "x"});
        assert_eq!(parse_shell(&args, &l).expect("ok").timeout, secs(10.0));
    }

    #[test]
    fn file_tools_get_the_file_default_and_ignore_timeout() {
        for tool in [Tool::Read, Tool::Write, Tool::Edit, Tool::Glob] {
            let args = json!({"path": "a", "timeout": 500});
            let call = parse_file_tool(tool, &args, &limits()).expect("a file tool");
            assert_eq!(call.deadline, DEFAULT_FILE_TIMEOUT);
            assert!(matches!(call.args, Cow::Borrowed(_)), "passed on untouched");
        }
    }

    #[test]
    fn grep_gets_its_own_timeout_plus_slack() {
        let deadline = |t: Value| {
            file_tool_timeout(
                Tool::Grep,
                &json!({"pattern": "x", "timeout": t}),
                &limits(),
            )
        };
        assert_eq!(deadline(Value::Null).expect("default"), secs(32.0));
        assert_eq!(deadline(json!(0)).expect("default"), secs(32.0));
        assert_eq!(deadline(json!(5)).expect("own"), secs(7.0));
        assert_eq!(deadline(json!(1e9)).expect("capped"), secs(602.0));
        let err = deadline(json!("5")).expect_err("string");
        assert_eq!(
            err.to_string(),
            "[Error] bad arguments to grep: timeout must be a positive number of seconds"
        );
        let without = file_tool_timeout(Tool::Grep, &json!({"pattern": "x"}), &limits());
        assert_eq!(without.expect("absent"), secs(32.0));
    }

    #[test]
    fn grep_runs_with_the_effective_timeout() {
        let args = json!({"pattern": "x", "timeout": 0, "glob": "*.rs"});
        let call = parse_file_tool(Tool::Grep, &args, &limits()).expect("ok");
        assert_eq!(
            *call.args,
            json!({"pattern": "x", "timeout": 30.0, "glob": "*.rs"})
        );
        let args = json!({"pattern": "x", "timeout": 9999});
        let call = parse_file_tool(Tool::Grep, &args, &limits()).expect("ok");
        assert_eq!(call.args["timeout"], json!(600.0));
    }
}
