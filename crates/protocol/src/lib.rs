//! The contract between the host side (`sandbox-exec`, `sandbox-tools`) and the in-container
//! runner (`sandbox-runner`).
//!
//! Owns: the runner's fixed paths, the environment variable that tags every process of a call,
//! the frames both directions travel in ([`frame`]), and the serde messages: [`RunRequest`]
//! (what to run), [`RunReport`] (the supervisor's last word on a call),
//! [`KillRequest`]/[`KillReport`] (the server-side kill) and [`ToolInput`] (a file tool's
//! stdin).
//!
//! Must not: depend on Docker, tokio or anything else heavy. The runner is a static binary in
//! the image, and these messages are meant to travel later over one long-lived stream as well
//! as over the stdin and stdout of one exec per call.
//!
//! Everything the supervisor sends the host is a frame, so nothing a command prints can pass
//! for the supervisor's own word: the command's bytes always arrive inside [`frame::STDOUT`]
//! and [`frame::STDERR`] frames, and only the supervisor writes the exec's stdout. Every
//! number that comes back is range-checked ([`RunReport::check`]).
//!
//! ```
//! use sandbox_protocol::frame;
//!
//! // The supervisor frames what the command printed; the host reads it back within limits.
//! let bytes = frame::encode(frame::STDOUT, b"hi\n");
//! let mut frames = frame::Decoder::new(frame::to_host_limit);
//! frames.push(&bytes);
//! assert_eq!(frames.next_frame(), Ok(Some((frame::STDOUT, b"hi\n".to_vec()))));
//! assert_eq!(frames.next_frame(), Ok(None));
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

use serde::{Deserialize, Serialize};

/// Version of this protocol. The image records the version its runner speaks (label
/// [`PROTOCOL_LABEL`]) and every [`RunRequest`] carries the host's: a mismatch is refused with
/// a clear error instead of a call that hangs until its deadline.
pub const PROTOCOL_VERSION: u32 = 6;

/// Image label holding the runner's [`PROTOCOL_VERSION`].
pub const PROTOCOL_LABEL: &str = "zcbot.sandbox.protocol";

/// Where the runner lives in the sandbox image. It is installed mode 0711 (executable, not
/// readable), which makes the kernel start every runner process non-dumpable: no process of
/// the sandbox user can open its `/proc/<pid>/fd`, read its environment or trace it, from its
/// first instruction on. (Images built for gVisor install it readable, mode 0755: gVisor's
/// loader reads a program as its caller; the runner then makes itself non-dumpable first thing.)
pub const RUNNER_PATH: &str = "/sandbox/bin/sandbox-runner";

/// Environment variable carrying the call's exec id. Every process of a call inherits it, so
/// the kill can find `setsid` and double-forked escapees by it.
pub const EXEC_ID_ENV: &str = "SBX_EXEC_ID";

/// Directory (on the `/run` tmpfs) holding one `<exec id>.pgid` file per running call, per uid:
/// `/run/sbx-<uid>/`. Per uid so that one sandbox user cannot plant files for another.
pub const PGID_DIR_PREFIX: &str = "/run/sbx-";

/// The seven sandbox tools, by the names the model calls them (on the wire too).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tool {
    /// `bash -c COMMAND`.
    Shell,
    /// A Python program.
    RunPython,
    /// Read a text file.
    Read,
    /// Write a file whole.
    Write,
    /// Replace a string in a file.
    Edit,
    /// Find files by pattern.
    Glob,
    /// Search files' contents.
    Grep,
}

impl Tool {
    /// Every tool, in the order the model is shown them.
    pub const ALL: [Tool; 7] = [
        Tool::Shell,
        Tool::RunPython,
        Tool::Read,
        Tool::Write,
        Tool::Edit,
        Tool::Glob,
        Tool::Grep,
    ];

    /// The name the model calls it by.
    pub const fn name(self) -> &'static str {
        match self {
            Tool::Shell => "shell",
            Tool::RunPython => "run_python",
            Tool::Read => "read",
            Tool::Write => "write",
            Tool::Edit => "edit",
            Tool::Glob => "glob",
            Tool::Grep => "grep",
        }
    }

    /// The tool called `name`, if it is one of the seven.
    pub fn from_name(name: &str) -> Option<Tool> {
        Tool::ALL.into_iter().find(|t| t.name() == name)
    }

    /// Whether the runner runs it itself (the file tools), rather than a program.
    pub const fn is_file_tool(self) -> bool {
        !matches!(self, Tool::Shell | Tool::RunPython)
    }

    /// Whether its arguments take a `timeout` in seconds (`shell`, `run_python`, `grep`); the
    /// others run within the configured file-tool deadline.
    pub const fn takes_timeout(self) -> bool {
        matches!(self, Tool::Shell | Tool::RunPython | Tool::Grep)
    }

    /// Whether it changes a file (`write`, `edit`): the disk-quota gate sees it first.
    pub const fn writes(self) -> bool {
        matches!(self, Tool::Write | Tool::Edit)
    }
}

impl std::fmt::Display for Tool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The runner's subcommands (`argv[1]`).
pub mod cmd {
    /// `sandbox-runner run <exec id>`: supervise one call. Its stdin carries a
    /// [`frame::REQUEST`](crate::frame::REQUEST) first, then the control channel; its stdout
    /// carries the call's output and [`RunReport`](crate::RunReport) as frames. The exec id is
    /// in argv (world-readable) so that a kill can tell this call's supervisor by its command
    /// line, since its environment is not readable (the runner is non-dumpable).
    pub const RUN: &str = "run";
    /// `sandbox-runner kill <json KillRequest>`: kill what a call left, write a
    /// [`KillReport`](crate::KillReport) as one [`frame::REPORT`](crate::frame::REPORT) on
    /// stdout.
    pub const KILL: &str = "kill";
    /// `sandbox-runner tool <name>`: one file tool, [`ToolInput`](crate::ToolInput) on stdin.
    pub const TOOL: &str = "tool";
    /// `sandbox-runner drain`: reads fd 0 and fd 1 to EOF; takes over the pipes of a call whose
    /// background processes still hold them after the drain.
    pub const DRAIN: &str = "drain";
    /// `sandbox-runner serve <channel id>`: the long-lived channel of a sandbox, many calls
    /// over its stdin and stdout (see [`channel`](crate::channel)).
    pub const SERVE: &str = "serve";
    /// `sandbox-runner ps`: the container's process table as one
    /// [`frame::REPORT`](crate::frame::REPORT) holding a [`ProcessList`](crate::ProcessList).
    /// For runtimes that run their own kernel (gVisor), whose processes `docker top` cannot
    /// see: the daemon lists the host's processes that happen to carry the same pids.
    pub const PS: &str = "ps";
}

/// Frames, `[kind: u8][length: u32 BE][payload]`, in both directions.
///
/// Host to supervisor, on its stdin: one [`REQUEST`](frame::REQUEST), then the command's stdin as [`DATA`](frame::DATA)
/// frames and [`EOF`](frame::EOF), and [`KILL`](frame::KILL) whenever the call must end. The host never closes it before
/// the call ends, so end-of-file on it means the client went away, and the supervisor kills the
/// call.
///
/// Supervisor to host, on its stdout: the command's output as [`STDOUT`](frame::STDOUT) and [`STDERR`](frame::STDERR)
/// frames, then one [`REPORT`](frame::REPORT). The supervisor's own stderr carries only its complaints about
/// a request it could not read.
///
/// Every kind has a hard size limit on the side that reads it ([`to_runner_limit`](frame::to_runner_limit),
/// [`to_host_limit`](frame::to_host_limit)); a frame over it, or of an unknown kind, breaks the channel.
pub mod frame {
    /// Bytes for the command's stdin.
    pub const DATA: u8 = 0;
    /// The command's stdin ends here.
    pub const EOF: u8 = 1;
    /// Kill the call now; the payload is a JSON [`KillOrder`](crate::KillOrder).
    pub const KILL: u8 = 2;
    /// The call to run: a JSON [`RunRequest`](crate::RunRequest). Always the first frame.
    pub const REQUEST: u8 = 3;
    /// Bytes the command wrote to its stdout.
    pub const STDOUT: u8 = 16;
    /// On a channel only: the serve process has the call's request (sent before it starts
    /// anything, so a call without it never ran).
    pub const ACK: u8 = 19;
    /// Bytes the command wrote to its stderr.
    pub const STDERR: u8 = 17;
    /// The supervisor's last word: a JSON [`RunReport`](crate::RunReport) (or a
    /// [`KillReport`](crate::KillReport) from `kill`). Nothing follows it.
    pub const REPORT: u8 = 18;
    /// Header size: kind and big-endian length.
    pub const HEADER: usize = 5;
    /// Largest payload of a data frame ([`DATA`], [`STDOUT`], [`STDERR`]): bigger writes are
    /// split.
    pub const MAX_PAYLOAD: usize = 64 * 1024;
    /// Largest [`REQUEST`]: the program's argv, escaped as JSON, fits (longer programs travel
    /// as [`DATA`]).
    pub const MAX_REQUEST: usize = 1024 * 1024;
    /// Largest [`KILL`] or [`REPORT`].
    pub const MAX_MESSAGE: usize = 64 * 1024;

    /// The header of a frame of `kind` carrying `len` bytes.
    pub fn header(kind: u8, len: usize) -> [u8; HEADER] {
        let len = u32::try_from(len).expect("frame payloads are far below 4 GiB");
        let [a, b, c, d] = len.to_be_bytes();
        [kind, a, b, c, d]
    }

    /// Encodes one frame.
    pub fn encode(kind: u8, payload: &[u8]) -> Vec<u8> {
        let mut frame = Vec::with_capacity(HEADER + payload.len());
        frame.extend_from_slice(&header(kind, payload.len()));
        frame.extend_from_slice(payload);
        frame
    }

    /// The largest payload the supervisor accepts for `kind`; `None`: not a kind it reads.
    pub fn to_runner_limit(kind: u8) -> Option<usize> {
        match kind {
            DATA => Some(MAX_PAYLOAD),
            EOF => Some(0),
            KILL => Some(MAX_MESSAGE),
            REQUEST => Some(MAX_REQUEST),
            _ => None,
        }
    }

    /// The largest payload the host accepts for `kind`; `None`: not a kind it reads.
    pub fn to_host_limit(kind: u8) -> Option<usize> {
        match kind {
            STDOUT | STDERR => Some(MAX_PAYLOAD),
            REPORT => Some(MAX_MESSAGE),
            _ => None,
        }
    }

    /// Why a frame was refused.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum FrameError {
        /// A kind the reader does not take.
        UnknownKind(u8),
        /// A payload over the kind's limit.
        TooLarge {
            /// The frame's kind.
            kind: u8,
            /// Its announced length.
            len: usize,
            /// The limit for that kind.
            limit: usize,
        },
    }

    impl std::fmt::Display for FrameError {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            match self {
                FrameError::UnknownKind(kind) => write!(f, "unknown frame kind {kind}"),
                FrameError::TooLarge { kind, len, limit } => {
                    write!(f, "frame of kind {kind} is {len} bytes, at most {limit}")
                }
            }
        }
    }

    impl std::error::Error for FrameError {}

    /// Reassembles frames from a byte stream cut anywhere. It holds at most one incomplete
    /// frame (checked against its limit from the header alone) plus the last chunk pushed.
    #[derive(Debug)]
    pub struct Decoder {
        buf: Vec<u8>,
        start: usize,
        limit: fn(u8) -> Option<usize>,
    }

    impl Decoder {
        /// A decoder that takes the kinds and sizes `limit` allows ([`to_host_limit`] or
        /// [`to_runner_limit`]).
        pub fn new(limit: fn(u8) -> Option<usize>) -> Self {
            Self {
                buf: Vec::new(),
                start: 0,
                limit,
            }
        }

        /// Appends bytes read from the stream.
        pub fn push(&mut self, bytes: &[u8]) {
            if self.start > 0 {
                self.buf.drain(..self.start);
                self.start = 0;
            }
            self.buf.extend_from_slice(bytes);
        }

        /// The next whole frame, `None` until one has arrived.
        pub fn next_frame(&mut self) -> Result<Option<(u8, Vec<u8>)>, FrameError> {
            let rest = &self.buf[self.start..];
            let Some(head) = rest.get(..HEADER) else {
                return Ok(None);
            };
            let kind = head[0];
            let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
            let limit = (self.limit)(kind).ok_or(FrameError::UnknownKind(kind))?;
            if len > limit {
                return Err(FrameError::TooLarge { kind, len, limit });
            }
            let Some(payload) = rest.get(HEADER..HEADER + len) else {
                return Ok(None);
            };
            let payload = payload.to_vec();
            self.start += HEADER + len;
            Ok(Some((kind, payload)))
        }

        /// Bytes held that are not a whole frame yet.
        pub fn pending(&self) -> usize {
            self.buf.len() - self.start
        }

        /// Those bytes (after an error: what could not be read as a frame).
        pub fn rest(&self) -> &[u8] {
            &self.buf[self.start..]
        }
    }
}

/// The channel: one long-lived `sandbox-runner serve <channel id>` per sandbox, started through
/// one exec whose stdin and stdout stay attached, with many calls over it.
///
/// Its frames are [`frame`]'s, of two kinds. [`HELLO`](channel::HELLO) is the serve process's first frame
/// (a JSON [`Hello`]). [`CALL`](channel::CALL) carries one frame of one call: its payload is the call id (u32
/// BE) then a whole per-call frame (kind, length, payload), exactly as an exec-per-call
/// supervisor reads and writes them, plus [`frame::ACK`] from the serve process. So every call
/// over a channel speaks the per-call protocol, and the serve process only routes.
pub mod channel {
    use crate::frame::{self, FrameError};

    /// One frame of one call.
    pub const CALL: u8 = 32;
    /// The serve process is up: a JSON [`Hello`](crate::Hello).
    pub const HELLO: u8 = 33;
    /// The serve process is alive (empty; at least every [`BEAT_EVERY_MS`] while it runs), so
    /// the host can tell a stopped one from a quiet one.
    pub const BEAT: u8 = 34;
    /// How often the serve process beats.
    pub const BEAT_EVERY_MS: u64 = 250;
    /// Call id and the inner frame's header.
    pub const CALL_HEADER: usize = 4 + frame::HEADER;
    /// Largest [`HELLO`].
    pub const MAX_HELLO: usize = 1024;

    /// A [`CALL`] frame carrying `payload` of `kind` for call `call`.
    pub fn wrap(call: u32, kind: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(frame::HEADER + CALL_HEADER + payload.len());
        out.extend_from_slice(&frame::header(CALL, CALL_HEADER + payload.len()));
        out.extend_from_slice(&call.to_be_bytes());
        out.extend_from_slice(&frame::header(kind, payload.len()));
        out.extend_from_slice(payload);
        out
    }

    /// The call id, inner kind and inner payload of a [`CALL`] frame's payload; the inner
    /// frame must fill it exactly and be of a kind (and size) `limit` takes.
    pub fn unwrap(
        payload: &[u8],
        limit: fn(u8) -> Option<usize>,
    ) -> Result<(u32, u8, &[u8]), FrameError> {
        let Some((head, inner)) = payload.split_at_checked(CALL_HEADER) else {
            return Err(FrameError::TooLarge {
                kind: CALL,
                len: payload.len(),
                limit: CALL_HEADER,
            });
        };
        let call = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
        let kind = head[4];
        let len = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) as usize;
        let max = limit(kind).ok_or(FrameError::UnknownKind(kind))?;
        if len != inner.len() || len > max {
            return Err(FrameError::TooLarge {
                kind,
                len: inner.len(),
                limit: max.min(len),
            });
        }
        Ok((call, kind, inner))
    }

    /// What the serve process accepts from the host, per outer kind.
    pub fn to_runner_limit(kind: u8) -> Option<usize> {
        (kind == CALL).then_some(CALL_HEADER + frame::MAX_REQUEST)
    }

    /// What the host accepts from the serve process, per outer kind.
    pub fn to_host_limit(kind: u8) -> Option<usize> {
        match kind {
            CALL => Some(CALL_HEADER + frame::MAX_PAYLOAD.max(frame::MAX_MESSAGE)),
            HELLO => Some(MAX_HELLO),
            BEAT => Some(0),
            _ => None,
        }
    }

    /// Inner kinds the host takes on a channel: a call's output, report and acknowledgement.
    pub fn to_host_inner_limit(kind: u8) -> Option<usize> {
        match kind {
            frame::ACK => Some(0),
            kind => frame::to_host_limit(kind),
        }
    }
}

/// The serve process's first frame ([`channel::HELLO`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// Its [`PROTOCOL_VERSION`].
    pub version: u32,
    /// The channel id it was started with.
    pub channel: String,
    /// Its pid in the container.
    pub pid: u32,
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
    /// The call's supervisor died without its report (a process of the call killed it); the
    /// channel's serve process killed what the call left.
    SupervisorGone,
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
        /// `read`, `write`, `edit`, `glob` or `grep` ([`Tool::is_file_tool`]).
        name: Tool,
    },
}

/// Sent as the single argument after `run`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRequest {
    /// The host's [`PROTOCOL_VERSION`] (absent: a host from before versions, 1).
    #[serde(default = "version_one")]
    pub version: u32,
    /// The call's exec id (the `SBX_EXEC_ID` its processes carry); for exec per call, the
    /// same as in argv.
    pub exec_id: String,
    /// What to run.
    pub program: Program,
    /// Environment of the command (`KEY=value`), on top of the container's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
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
    /// Wall-clock time (ms since the Unix epoch) after which the call must not start: its
    /// deadline, by when the host has answered it. A runner that gets the request later (it
    /// was stopped, or the daemon was) refuses it instead of running a call already given up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_by_unix_ms: Option<u64>,
}

impl RunRequest {
    /// Whether it is past its [`RunRequest::start_by_unix_ms`].
    pub fn too_late(&self) -> bool {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        self.start_by_unix_ms.is_some_and(|by| now > by)
    }
}

fn version_one() -> u32 {
    1
}

/// How the main process ended. The types hold only what `wait` can report: a number out of
/// range does not parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ExitStatus {
    /// It called `exit(code)`.
    Exited {
        /// The exit code.
        code: u8,
    },
    /// A signal ended it.
    Signaled {
        /// Signal number, 1 to [`MAX_SIGNAL`].
        signal: u8,
    },
}

/// The highest signal number on Linux (`SIGRTMAX`).
pub const MAX_SIGNAL: u8 = 64;

impl ExitStatus {
    /// The shell-style code: the exit code, or 128 + the signal number.
    pub fn code(self) -> i32 {
        match self {
            ExitStatus::Exited { code } => i32::from(code),
            ExitStatus::Signaled { signal } => 128 + i32::from(signal),
        }
    }
}

/// The supervisor's last word about a call, the last frame it writes ([`frame::REPORT`]).
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

/// Longest [`RunReport::spawn_error`] the host takes.
pub const MAX_SPAWN_ERROR: usize = 4096;

impl RunReport {
    /// Cuts what may be long to the limits [`RunReport::check`] holds it to (the supervisor
    /// does this before sending: a long working directory in a spawn error must not make the
    /// host refuse the whole report).
    pub fn fit(mut self) -> Self {
        if let Some(e) = &mut self.spawn_error
            && e.len() > MAX_SPAWN_ERROR
        {
            let mut end = MAX_SPAWN_ERROR;
            while !e.is_char_boundary(end) {
                end -= 1;
            }
            e.truncate(end);
        }
        if let Some((_, kill)) = &mut self.kill {
            kill.survivors.truncate(MAX_SURVIVORS);
        }
        self
    }

    /// Checks what the types cannot: a signal in range, a short message. The host refuses a
    /// report that fails this rather than acting on it.
    pub fn check(&self) -> Result<(), &'static str> {
        if let Some(ExitStatus::Signaled { signal }) = self.status
            && !(1..=MAX_SIGNAL).contains(&signal)
        {
            return Err("signal number out of range");
        }
        if self.status.is_none() && self.spawn_failure.is_none() {
            return Err("neither an exit status nor a spawn failure");
        }
        if self
            .spawn_error
            .as_ref()
            .is_some_and(|e| e.len() > MAX_SPAWN_ERROR)
        {
            return Err("spawn error too long");
        }
        if let Some((_, kill)) = &self.kill {
            kill.check()?;
        }
        Ok(())
    }
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
    /// Pids (in the container) still alive after the last round, as the process table showed
    /// them; empty when the kill succeeded.
    pub survivors: Vec<u32>,
}

/// Most survivors a report may list.
pub const MAX_SURVIVORS: usize = 1024;

impl KillReport {
    /// Checks what the types cannot: no pid 0, a bounded list.
    pub fn check(&self) -> Result<(), &'static str> {
        if self.survivors.len() > MAX_SURVIVORS {
            return Err("too many survivors listed");
        }
        if self.survivors.contains(&0) {
            return Err("pid 0 among the survivors");
        }
        Ok(())
    }
}

/// The container's processes as `sandbox-runner ps` saw them in its `/proc`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessList {
    /// The processes, the runner's own `ps` left out, at most as many as fit in one report.
    pub processes: Vec<ProcessEntry>,
    /// Whether some were left out to fit: the table holds more than the list.
    pub truncated: bool,
}

/// One process of a [`ProcessList`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessEntry {
    /// Process id, in the container.
    pub pid: u32,
    /// Parent process id.
    pub ppid: u32,
    /// Real uid.
    pub uid: u32,
    /// State letter (`R`, `S`, `Z`, ...).
    pub state: char,
    /// Seconds since it started.
    pub elapsed_secs: u64,
    /// Its name (`comm`), at most 16 bytes.
    pub name: String,
    /// Its command line, arguments joined by spaces, at most [`MAX_ARGS_SHOWN`] bytes.
    pub args: String,
}

/// Longest command line a [`ProcessEntry`] carries; longer ones are cut (at a character).
pub const MAX_ARGS_SHOWN: usize = 512;

impl ProcessList {
    /// Checks what the types cannot: no pid 0, names and command lines within their bounds.
    pub fn check(&self) -> Result<(), &'static str> {
        for p in &self.processes {
            if p.pid == 0 {
                return Err("pid 0 in the process list");
            }
            if p.name.len() > 64 || p.args.len() > MAX_ARGS_SHOWN {
                return Err("a process's name or command line is too long");
            }
        }
        Ok(())
    }
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
    /// A call that ran out of time (as `timeout(1)` reports it).
    pub const TIMED_OUT: i32 = 124;
    /// A cancelled call (128 + SIGINT, as a shell reports Ctrl-C).
    pub const CANCELLED: i32 = 130;
    /// A call whose sandbox went away under it (the code `docker run` uses for "the container
    /// failed, not the command").
    pub const SANDBOX_LOST: i32 = 125;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tools_go_by_their_names_both_ways_and_on_the_wire() {
        for tool in Tool::ALL {
            assert_eq!(Tool::from_name(tool.name()), Some(tool));
            assert_eq!(
                serde_json::to_string(&tool).expect("json"),
                format!("\"{tool}\"")
            );
        }
        assert_eq!(Tool::from_name("web_search"), None);
        let files: Vec<_> = Tool::ALL.into_iter().filter(|t| t.is_file_tool()).collect();
        assert_eq!(
            files,
            [Tool::Read, Tool::Write, Tool::Edit, Tool::Glob, Tool::Grep]
        );
        assert!(Tool::Write.writes() && Tool::Edit.writes() && !Tool::Read.writes());
    }

    #[test]
    fn run_request_round_trips_as_json() {
        let req = RunRequest {
            version: PROTOCOL_VERSION,
            exec_id: "0123abcd".into(),
            env: vec!["PYTHONPATH=/sandbox".into()],
            program: Program::Argv {
                argv: vec!["bash".into(), "-c".into(), "echo '引号' \"$(x)\"".into()],
            },
            cwd: Some("/workspace/数据".into()),
            drain_ms: 1000,
            deadline_ms: Some(60_000),
            grace_ms: 500,
            start_by_unix_ms: Some(1),
        };
        assert!(req.too_late());
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
        assert_eq!(ExitStatus::Signaled { signal: 255 }.code(), 383);
    }

    fn report(json: &str) -> Result<RunReport, String> {
        let r: RunReport = serde_json::from_str(json).map_err(|e| e.to_string())?;
        r.check().map(|()| r).map_err(str::to_owned)
    }

    #[test]
    fn reports_with_numbers_out_of_range_are_refused() {
        let ok =
            r#"{"status":{"kind":"signaled","signal":9},"leaked_output":false,"elapsed_ms":1}"#;
        assert!(report(ok).is_ok());
        for bad in [
            r#"{"status":{"kind":"signaled","signal":2147483647},"leaked_output":false,"elapsed_ms":0}"#,
            r#"{"status":{"kind":"signaled","signal":0},"leaked_output":false,"elapsed_ms":0}"#,
            r#"{"status":{"kind":"signaled","signal":65},"leaked_output":false,"elapsed_ms":0}"#,
            r#"{"status":{"kind":"exited","code":-1},"leaked_output":false,"elapsed_ms":0}"#,
            r#"{"status":{"kind":"exited","code":256},"leaked_output":false,"elapsed_ms":0}"#,
            r#"{"status":null,"leaked_output":false,"elapsed_ms":0}"#,
            r#"{"status":{"kind":"exited","code":0},"leaked_output":false,"elapsed_ms":-5}"#,
            r#"{"status":{"kind":"exited","code":0},"kill":["host",{"found":1,"terminated":0,"killed":1,"rounds":1,"survivors":[-3]}],"leaked_output":false,"elapsed_ms":0}"#,
            r#"{"status":{"kind":"exited","code":0},"kill":["host",{"found":1,"terminated":0,"killed":1,"rounds":1,"survivors":[0]}],"leaked_output":false,"elapsed_ms":0}"#,
        ] {
            assert!(report(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_report_fitted_to_the_limits_passes_the_check() {
        let report = RunReport {
            status: None,
            spawn_error: Some("é".repeat(MAX_SPAWN_ERROR)),
            spawn_failure: Some(SpawnFailure::NoWorkingDirectory),
            kill: Some((
                KillCause::Host,
                KillReport {
                    survivors: (1..=5000).collect(),
                    ..KillReport::default()
                },
            )),
            leaked_output: false,
            elapsed_ms: 0,
        };
        assert!(report.check().is_err());
        let fitted = report.fit();
        assert_eq!(fitted.check(), Ok(()));
        let json = serde_json::to_vec(&fitted).expect("json");
        assert!(json.len() < frame::MAX_MESSAGE, "{}", json.len());
    }

    #[test]
    fn call_frames_wrap_a_whole_inner_frame() {
        let outer = channel::wrap(7, frame::STDOUT, b"hi");
        let mut d = frame::Decoder::new(channel::to_host_limit);
        d.push(&outer);
        let (kind, payload) = d.next_frame().expect("valid").expect("whole");
        assert_eq!(kind, channel::CALL);
        assert_eq!(
            channel::unwrap(&payload, channel::to_host_inner_limit),
            Ok((7, frame::STDOUT, &b"hi"[..]))
        );
        // An inner length that does not fill the frame, or a kind for the other side.
        let mut short = payload.clone();
        short.push(b'!');
        assert!(channel::unwrap(&short, channel::to_host_inner_limit).is_err());
        let kill = channel::wrap(7, frame::KILL, b"{}");
        assert!(channel::unwrap(&kill[frame::HEADER..], channel::to_host_inner_limit).is_err());
        assert!(channel::unwrap(&kill[frame::HEADER..], frame::to_runner_limit).is_ok());
        assert!(channel::unwrap(&[0, 0, 0], frame::to_runner_limit).is_err());
    }

    #[test]
    fn frames_decode_from_a_stream_cut_anywhere() {
        let mut stream = frame::encode(frame::STDOUT, b"out");
        stream.extend(frame::encode(frame::STDERR, b""));
        stream.extend(frame::encode(frame::REPORT, b"{}"));
        for cut in 0..stream.len() {
            let mut d = frame::Decoder::new(frame::to_host_limit);
            let mut got = Vec::new();
            for part in [&stream[..cut], &stream[cut..]] {
                d.push(part);
                while let Some(f) = d.next_frame().expect("valid") {
                    got.push(f);
                }
            }
            assert_eq!(
                got,
                vec![
                    (frame::STDOUT, b"out".to_vec()),
                    (frame::STDERR, Vec::new()),
                    (frame::REPORT, b"{}".to_vec())
                ],
                "cut at {cut}"
            );
            assert_eq!(d.pending(), 0);
        }
    }

    #[test]
    fn frames_over_their_limit_or_of_unknown_kinds_break_the_stream() {
        let mut d = frame::Decoder::new(frame::to_host_limit);
        d.push(&frame::header(frame::STDOUT, frame::MAX_PAYLOAD + 1));
        assert_eq!(
            d.next_frame(),
            Err(frame::FrameError::TooLarge {
                kind: frame::STDOUT,
                len: frame::MAX_PAYLOAD + 1,
                limit: frame::MAX_PAYLOAD
            })
        );
        let mut d = frame::Decoder::new(frame::to_host_limit);
        d.push(&frame::encode(frame::KILL, b"{}"));
        assert_eq!(
            d.next_frame(),
            Err(frame::FrameError::UnknownKind(frame::KILL))
        );
        let mut d = frame::Decoder::new(frame::to_runner_limit);
        d.push(&frame::encode(frame::REPORT, b"{}"));
        assert_eq!(
            d.next_frame(),
            Err(frame::FrameError::UnknownKind(frame::REPORT))
        );
        d = frame::Decoder::new(frame::to_runner_limit);
        d.push(&frame::header(frame::EOF, 1));
        assert!(d.next_frame().is_err(), "EOF carries nothing");
    }
}
