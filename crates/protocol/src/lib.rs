//! The contract between the host side (`sandbox-exec`, `sandbox-tools`) and the in-container
//! runner (`sandbox-runner`).
//!
//! Owns: the runner's fixed paths, the environment variable that tags every process of a call,
//! and the serde messages: [`RunRequest`] (what to run), [`RunReport`] (the trailer the
//! supervisor writes when the call ends), [`KillRequest`]/[`KillReport`] (the server-side kill)
//! and [`ToolInput`] (a file tool's stdin).
//!
//! Must not: depend on Docker, tokio or anything else heavy. The runner is a static binary in
//! the image, and these messages are meant to travel later over one long-lived stream as well
//! as in argv and stdin of one exec per call (DESIGN.md, "Where it is going").

#![forbid(unsafe_code)]
#![warn(missing_docs)]

use serde::{Deserialize, Serialize};

/// Version of this protocol. The image records the version its runner speaks (label
/// [`PROTOCOL_LABEL`]) and every [`RunRequest`] carries the host's: a mismatch is refused with
/// a clear error instead of a call that hangs until its deadline.
pub const PROTOCOL_VERSION: u32 = 3;

/// Image label holding the runner's [`PROTOCOL_VERSION`].
pub const PROTOCOL_LABEL: &str = "zcbot.sandbox.protocol";

/// Where the runner lives in the sandbox image.
pub const RUNNER_PATH: &str = "/sandbox/bin/sandbox-runner";

/// Environment variable carrying the call's exec id. Every process of a call inherits it, so
/// the kill can find `setsid` and double-forked escapees by it.
pub const EXEC_ID_ENV: &str = "SBX_EXEC_ID";

/// Directory (on the `/run` tmpfs) holding one `<exec id>.pgid` file per running call, per uid:
/// `/run/sbx-<uid>/`. Per uid so that one sandbox user cannot plant files for another.
pub const PGID_DIR_PREFIX: &str = "/run/sbx-";

/// Marker that opens the supervisor's trailer on stderr: `MARKER <exec id> <json RunReport>\n`.
/// It starts with bytes that text output practically never contains; the exec id makes it
/// specific to one call.
pub const TRAILER_MARKER: &[u8] = b"\x00\x1eSBX-END ";

/// The runner's subcommands (argv[1]).
pub mod cmd {
    /// `sandbox-runner run <json RunRequest>`: supervise one call.
    pub const RUN: &str = "run";
    /// `sandbox-runner kill <json KillRequest>`: kill what a call left, print a [`KillReport`](crate::KillReport).
    pub const KILL: &str = "kill";
    /// `sandbox-runner tool <name>`: one file tool, [`ToolInput`](crate::ToolInput) on stdin.
    pub const TOOL: &str = "tool";
    /// `sandbox-runner drain`: reads fd 0 and fd 1 to EOF; takes over the pipes of a call whose
    /// background processes still hold them after the drain.
    pub const DRAIN: &str = "drain";
}

/// The supervisor's stdin is a control channel of frames, `[kind: u8][length: u32 BE][payload]`,
/// written by the host: the command's stdin as [`frame::DATA`] frames, then [`frame::EOF`],
/// and [`frame::KILL`] whenever the call must end. The host never closes it before the call
/// ends, so end-of-file on it means the client went away, and the supervisor kills the call.
pub mod frame {
    /// Bytes for the command's stdin.
    pub const DATA: u8 = 0;
    /// The command's stdin ends here.
    pub const EOF: u8 = 1;
    /// Kill the call now; the payload is a JSON [`KillOrder`](crate::KillOrder).
    pub const KILL: u8 = 2;
    /// Header size: kind and big-endian length.
    pub const HEADER: usize = 5;
    /// Largest payload the host sends in one frame (bigger inputs are split).
    pub const MAX_PAYLOAD: usize = 64 * 1024;
    /// Largest payload the supervisor accepts; anything bigger is a broken channel.
    pub const LIMIT: usize = 16 * 1024 * 1024;

    /// Encodes one frame.
    pub fn encode(kind: u8, payload: &[u8]) -> Vec<u8> {
        let mut frame = Vec::with_capacity(HEADER + payload.len());
        frame.push(kind);
        frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        frame.extend_from_slice(payload);
        frame
    }
}

/// The payload of a [`frame::KILL`] frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KillOrder {
    /// Grace between SIGTERM and SIGKILL. Zero sends SIGKILL at once.
    pub grace_ms: u64,
}

/// Why the supervisor killed the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KillCause {
    /// The host asked (deadline or cancellation), through a [`frame::KILL`] frame.
    Host,
    /// The control channel closed: the client went away.
    ClientGone,
    /// The supervisor's own deadline passed (the host's kill never came).
    Backstop,
}

/// Why the supervisor could not start the command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SpawnFailure {
    /// No such program (the shell's 127).
    NotFound,
    /// It cannot be executed (the shell's 126).
    NotExecutable,
    /// The sandbox is out of processes, threads or memory: nothing can start in it.
    Resources,
    /// The request itself was unusable.
    BadRequest,
    /// The working directory does not exist or cannot be entered.
    NoWorkingDirectory,
}

impl SpawnFailure {
    /// The exit code the supervisor exits with.
    pub fn exit_code(self) -> i32 {
        match self {
            SpawnFailure::NotFound => exit::NOT_FOUND,
            SpawnFailure::BadRequest | SpawnFailure::NoWorkingDirectory => exit::BAD_ARGS,
            SpawnFailure::NotExecutable | SpawnFailure::Resources => exit::CANNOT_EXECUTE,
        }
    }
}

/// What the supervisor runs for one call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Program {
    /// Run `argv` as is; the exec's stdin (if attached) is the command's stdin.
    Argv {
        /// Program and arguments; `argv[0]` is looked up in `PATH`.
        argv: Vec<String>,
    },
    /// Read the whole of stdin into a private temporary file, run `interpreter... FILE` with
    /// stdin from `/dev/null`, then remove the file. Used by `run_python` (and by `shell` for
    /// commands too long for argv), so the host never writes into the user's bind mount.
    Script {
        /// Interpreter and its leading arguments, for example `["python3"]`.
        interpreter: Vec<String>,
        /// File name suffix, for example `.py`, so tracebacks read naturally.
        suffix: String,
    },
    /// One of the runner's own file tools; its [`ToolInput`] arrives on stdin.
    Tool {
        /// `read`, `write`, `edit`, `glob` or `grep`.
        name: String,
    },
}

/// Sent as the single argument after `run`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRequest {
    /// The host's [`PROTOCOL_VERSION`] (absent: a host from before versions, 1).
    #[serde(default = "version_one")]
    pub version: u32,
    /// What to run.
    pub program: Program,
    /// Directory to run it in. The supervisor changes to it itself (rather than Docker), so a
    /// missing directory is a clear answer, not a runtime failure that looks like a broken
    /// sandbox. `None`: the exec's own directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    /// After the main process exits, how long to keep relaying output that background
    /// processes still write before the call ends anyway.
    pub drain_ms: u64,
    /// Backstop deadline enforced inside the container (the host normally kills first). The
    /// supervisor kills the call's processes itself this long after it started. `None`: no
    /// backstop.
    pub deadline_ms: Option<u64>,
    /// Grace between SIGTERM and SIGKILL when the supervisor kills on its own (backstop, or
    /// the client went away).
    pub grace_ms: u64,
}

fn version_one() -> u32 {
    1
}

/// How the main process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ExitStatus {
    /// It called `exit(code)`.
    Exited {
        /// The exit code.
        code: i32,
    },
    /// A signal ended it.
    Signaled {
        /// Signal number.
        signal: i32,
    },
}

impl ExitStatus {
    /// The shell-style code: the exit code, or 128 + the signal number.
    pub fn code(self) -> i32 {
        match self {
            ExitStatus::Exited { code } => code,
            ExitStatus::Signaled { signal } => 128 + signal,
        }
    }
}

/// The supervisor's last word about a call, written as the trailer on stderr.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunReport {
    /// How the main process ended, or `None` when it could not be started.
    pub status: Option<ExitStatus>,
    /// Why the main process could not be started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spawn_error: Option<String>,
    /// What kind of failure that was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spawn_failure: Option<SpawnFailure>,
    /// When the supervisor killed the call: why, and what it found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kill: Option<(KillCause, KillReport)>,
    /// Whether some process still held stdout or stderr when the drain ended (a background
    /// process left running).
    pub leaked_output: bool,
    /// Milliseconds from the supervisor's start to the end of the drain.
    pub elapsed_ms: u64,
}

/// Sent as the single argument after `kill`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KillRequest {
    /// The call to kill.
    pub exec_id: String,
    /// Grace between SIGTERM and SIGKILL. Zero sends SIGKILL at once.
    pub grace_ms: u64,
    /// Upper bound on SIGKILL rounds (a fork bomb can refill the table between rounds).
    pub max_rounds: u32,
}

/// What the kill found and did, printed as JSON on stdout.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KillReport {
    /// Processes of the call found alive at the start.
    pub found: u32,
    /// Processes that ended after SIGTERM, within the grace.
    pub terminated: u32,
    /// Processes that needed SIGKILL.
    pub killed: u32,
    /// SIGKILL rounds used.
    pub rounds: u32,
    /// Pids (in the container) still alive at the end; empty when the kill succeeded.
    pub survivors: Vec<i32>,
}

/// A file tool's input on stdin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolInput {
    /// The model's arguments, passed through untouched (the tool checks them).
    pub args: serde_json::Value,
    /// For `write` and `edit`: how many bytes the user root may still grow by. The tool
    /// refuses a change that would grow the file by more, before touching anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_growth_bytes: Option<u64>,
}

/// Exit codes of the file tools (and of the runner for its own usage errors).
pub mod exit {
    /// Success.
    pub const OK: i32 = 0;
    /// The operation failed (missing file, no match, I/O error...).
    pub const FAILED: i32 = 1;
    /// The arguments were wrong.
    pub const BAD_ARGS: i32 = 2;
    /// The supervisor could not start the program (like the shell's 127).
    pub const NOT_FOUND: i32 = 127;
    /// The supervisor could not execute the program (like the shell's 126).
    pub const CANNOT_EXECUTE: i32 = 126;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_request_round_trips_as_json() {
        let req = RunRequest {
            version: PROTOCOL_VERSION,
            program: Program::Argv {
                argv: vec!["bash".into(), "-c".into(), "echo '引号' \"$(x)\"".into()],
            },
            cwd: Some("/workspace/数据".into()),
            drain_ms: 1000,
            deadline_ms: Some(60_000),
            grace_ms: 500,
        };
        let text = serde_json::to_string(&req).expect("serialize");
        assert_eq!(
            serde_json::from_str::<RunRequest>(&text).expect("parse"),
            req
        );
    }

    #[test]
    fn frames_are_kind_length_payload() {
        assert_eq!(
            frame::encode(frame::KILL, b"{}"),
            vec![2, 0, 0, 0, 2, b'{', b'}']
        );
        assert_eq!(frame::encode(frame::EOF, b""), vec![1, 0, 0, 0, 0]);
    }

    #[test]
    fn exit_status_codes_are_shell_style() {
        assert_eq!(ExitStatus::Exited { code: 3 }.code(), 3);
        assert_eq!(ExitStatus::Signaled { signal: 9 }.code(), 137);
    }
}
