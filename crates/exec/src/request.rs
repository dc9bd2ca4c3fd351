//! What to run: [`ExecRequest`] and its builder, and where live output goes ([`OutputSink`]).

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sandbox_protocol::{Program, Tool, ToolInput};
use tokio_util::sync::CancellationToken;

use crate::capture::{OutputCaps, StreamKind};

/// Default deadline of a call: 60 s.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// A chunk of live output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputChunk {
    /// Its stream.
    pub stream: StreamKind,
    /// Its bytes (a Docker frame, not a line).
    pub bytes: Bytes,
}

/// Receives output as it arrives, before the call ends. Called on the task that runs the
/// call, so it must not block; hand the chunk to a channel if work is needed. It receives
/// every byte, uncapped; the caps apply only to what the outcome keeps.
pub trait OutputSink: Send + Sync {
    /// One chunk of output.
    fn on_output(&self, chunk: OutputChunk);
}

impl<F: Fn(OutputChunk) + Send + Sync> OutputSink for F {
    fn on_output(&self, chunk: OutputChunk) {
        self(chunk)
    }
}

impl OutputSink for tokio::sync::mpsc::UnboundedSender<OutputChunk> {
    fn on_output(&self, chunk: OutputChunk) {
        // A receiver that went away only stops caring about live output.
        let _ = self.send(chunk);
    }
}

/// One command to run in one container.
#[derive(Clone)]
pub struct ExecRequest {
    pub(crate) program: Program,
    pub(crate) user: Option<String>,
    pub(crate) working_dir: Option<String>,
    pub(crate) env: Vec<String>,
    pub(crate) stdin: Option<Bytes>,
    pub(crate) timeout: Duration,
    pub(crate) deadline: Option<Instant>,
    pub(crate) cancel: CancellationToken,
    pub(crate) caps: OutputCaps,
    pub(crate) sink: Option<Arc<dyn OutputSink>>,
}

impl fmt::Debug for ExecRequest {
    // Stdin and env may hold secrets: show sizes and names only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExecRequest")
            .field("program", &self.program)
            .field("user", &self.user)
            .field("working_dir", &self.working_dir)
            .field(
                "env",
                &self
                    .env
                    .iter()
                    .map(|e| e.split('=').next().unwrap_or_default())
                    .collect::<Vec<_>>(),
            )
            .field("stdin_bytes", &self.stdin.as_ref().map(Bytes::len))
            .field("timeout", &self.timeout)
            .field("deadline", &self.deadline)
            .field("caps", &self.caps)
            .field("sink", &self.sink.is_some())
            .finish()
    }
}

impl ExecRequest {
    /// When the call must be over: its timeout from `started`, or its own deadline if that
    /// comes first.
    pub(crate) fn deadline_from(&self, started: Instant) -> Instant {
        let by_timeout = started + self.timeout;
        self.deadline.map_or(by_timeout, |d| d.min(by_timeout))
    }

    fn with_program(program: Program) -> Self {
        Self {
            program,
            user: None,
            working_dir: None,
            env: Vec::new(),
            stdin: None,
            timeout: DEFAULT_TIMEOUT,
            deadline: None,
            cancel: CancellationToken::new(),
            caps: OutputCaps::default(),
            sink: None,
        }
    }

    /// Runs `argv` (`argv[0]` looked up in the container's `PATH`).
    pub fn new<I, S>(argv: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self::with_program(Program::Argv {
            argv: argv.into_iter().map(Into::into).collect(),
        })
    }

    /// Runs `source` with `interpreter` (for example `["python3"]`). The source travels on
    /// stdin; the runner writes it to a private temporary file in the container, runs it with
    /// stdin from `/dev/null`, and removes it.
    pub fn script<I, S>(interpreter: I, suffix: &str, source: impl Into<Bytes>) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut req = Self::with_program(Program::Script {
            interpreter: interpreter.into_iter().map(Into::into).collect(),
            suffix: suffix.to_owned(),
        });
        req.stdin = Some(source.into());
        req
    }

    /// Runs one of the runner's file tools with `input` on stdin.
    pub fn tool(tool: Tool, input: &ToolInput) -> Self {
        let mut req = Self::with_program(Program::Tool { name: tool });
        req.stdin = Some(Bytes::from(
            serde_json::to_vec(input).expect("a JSON value always serializes"),
        ));
        req
    }

    /// Runs as this user (name or `uid[:gid]`) instead of the container's default user.
    pub fn with_user(mut self, user: impl Into<String>) -> Self {
        self.user = Some(user.into());
        self
    }

    /// Runs in this directory of the container.
    pub fn with_working_dir(mut self, dir: impl Into<String>) -> Self {
        self.working_dir = Some(dir.into());
        self
    }

    /// Adds an environment variable.
    pub fn with_env(mut self, key: impl AsRef<str>, value: impl AsRef<str>) -> Self {
        self.env
            .push(format!("{}={}", key.as_ref(), value.as_ref()));
        self
    }

    /// Writes these bytes to the command's stdin, then closes it so the command sees EOF.
    /// Without stdin the command reads from `/dev/null`.
    pub fn with_stdin(mut self, stdin: impl Into<Bytes>) -> Self {
        self.stdin = Some(stdin.into());
        self
    }

    /// The deadline, counted from the start of [`ExecClient::run`](crate::ExecClient::run).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The deadline as an instant, for a call whose time started before the exec (the caller
    /// waited for a sandbox, say). The earlier of this and the timeout counts.
    pub fn with_deadline(mut self, deadline: Instant) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// Cancelling this token stops the call at once and kills what it started.
    pub fn with_cancel(mut self, cancel: CancellationToken) -> Self {
        self.cancel = cancel;
        self
    }

    /// How much of each stream the outcome keeps.
    pub fn with_caps(mut self, caps: OutputCaps) -> Self {
        self.caps = caps;
        self
    }

    /// Where output goes as it arrives.
    pub fn with_sink(mut self, sink: Arc<dyn OutputSink>) -> Self {
        self.sink = Some(sink);
        self
    }

    /// The deadline.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }
}

/// A new call's id (the `SBX_EXEC_ID` its processes carry): 32 hex digits.
pub(crate) fn new_exec_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}
