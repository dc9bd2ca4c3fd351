//! How a call ended: [`Outcome`] and its parts.

use std::time::Duration;

use sandbox_protocol::{KillReport, exit};

use crate::capture::Captured;

/// Why a call ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Termination {
    /// The main process exited with this code.
    Exited {
        /// Its exit code (126/127 when the runner could not start the program).
        code: i32,
    },
    /// A signal ended the main process.
    Signaled {
        /// The signal number.
        signal: i32,
    },
    /// The deadline passed; the call's processes were killed.
    TimedOut,
    /// The caller cancelled; the call's processes were killed.
    Cancelled,
    /// The sandbox went away under the call.
    SandboxLost {
        /// What happened to it.
        reason: LostReason,
    },
}

impl Termination {
    /// The shell-style exit code: the code, 128 + signal, 124 for a timeout, 130 for a
    /// cancellation, and 125 for a lost sandbox (the code `docker run` uses for "the container
    /// failed, not the command").
    pub fn exit_code(&self) -> i32 {
        match self {
            Termination::Exited { code } => *code,
            Termination::Signaled { signal } => signal.saturating_add(128),
            Termination::TimedOut => exit::TIMED_OUT,
            Termination::Cancelled => exit::CANCELLED,
            Termination::SandboxLost { .. } => exit::SANDBOX_LOST,
        }
    }
}

/// What happened to a sandbox that went away mid-call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LostReason {
    /// The container was removed.
    ContainerRemoved,
    /// The container stopped (crashed, was stopped, or was OOM-killed).
    ContainerStopped {
        /// Its exit code, when known.
        exit_code: Option<i64>,
        /// Whether the daemon says the kernel's OOM killer ended it.
        oom_killed: bool,
    },
    /// The daemon stopped answering.
    DaemonUnreachable {
        /// The transport error, as text.
        error: String,
    },
    /// The sandbox's channel closed while the call ran on it (its serve process was killed,
    /// or stopped and then killed for it); the call's own supervisor killed what it started.
    ChannelLost,
    /// The supervisor's stream was not the protocol (a runner of another version, or a
    /// broken one): nothing it said was trusted.
    RunnerBroke {
        /// What was wrong with it.
        detail: String,
    },
}

/// What the server-side kill found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KillSummary {
    /// The runner's report, when the kill exec ran.
    pub report: Option<KillReport>,
    /// Why the kill could not run or report, when it could not.
    pub error: Option<crate::KillError>,
    /// From the decision to kill until the report.
    pub elapsed: Duration,
}

impl KillSummary {
    /// Whether the kill ran and left nothing of the call alive.
    pub fn nothing_left(&self) -> bool {
        self.report.as_ref().is_some_and(|r| r.survivors.is_empty())
    }
}

/// Everything about one finished call.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Our id of the call (the `SBX_EXEC_ID` its processes carry).
    pub exec_id: String,
    /// Why it ended.
    pub termination: Termination,
    /// Standard output, capped.
    pub stdout: Captured,
    /// Standard error, capped (the runner's trailer removed).
    pub stderr: Captured,
    /// From the start of the call until its outcome was known.
    pub duration: Duration,
    /// The server-side kill, when the call timed out or was cancelled.
    pub kill: Option<KillSummary>,
    /// A background process still held stdout or stderr when the call ended; it was left
    /// running, and its further output is dropped.
    pub leaked_output: bool,
    /// Why the runner could not start the program, when it could not.
    pub spawn_error: Option<String>,
}

impl Outcome {
    /// A call that ended before any exec was made (cancelled, or out of time while the caller
    /// waited for a sandbox): no output, no kill, and an empty `exec_id` (no exec was made).
    pub fn not_started(termination: Termination, duration: Duration) -> Self {
        Self {
            exec_id: String::new(),
            termination,
            stdout: Captured::default(),
            stderr: Captured::default(),
            duration,
            kill: None,
            leaked_output: false,
            spawn_error: None,
        }
    }

    /// Shorthand for `self.termination.exit_code()`.
    pub fn exit_code(&self) -> i32 {
        self.termination.exit_code()
    }
}
