//! Run one command in one container and get a typed [`Outcome`].
//!
//! Owns: the exec (create, attached start, stdout and stderr demultiplexed), the runner's
//! control channel on stdin (the command's stdin as frames, then the kill order), output caps
//! and the live [`OutputSink`], the deadline and cancellation in one `select!`, the
//! server-side kill of the call's whole process tree (in place by the supervisor, or through a
//! second exec when the supervisor does not answer), and reading the runner's trailer for the
//! true exit status. Also the daemon connection helpers ([`docker`]) and a container's process
//! list ([`ExecClient::processes`]) that the other crates share.
//!
//! Must not: create, remove or track containers (that is `sandbox-pool`), or format results
//! for a model (that is `sandbox-tools`). It never relies on dropping a stream to stop a
//! process: Docker keeps exec'd processes running when the client goes away (the supervisor
//! does kill the call when its control channel closes, but only as a safety net).
//!
//! Every command runs under the in-container runner (`sandbox-runner run`), which supervises
//! it; see `sandbox-protocol` for the messages.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use sandbox_exec::{ExecClient, ExecRequest, Termination};
//!
//! let exec = ExecClient::new(sandbox_exec::connect().await?);
//! let req = ExecRequest::new(["bash", "-c", "echo hi; exit 3"])
//!     .with_user("zcbot")
//!     .with_timeout(Duration::from_secs(10));
//! let outcome = exec.run("zcbot-sandbox-alice", req).await?;
//! assert_eq!(outcome.termination, Termination::Exited { code: 3 });
//! assert_eq!(outcome.stdout.to_string_lossy(), "hi\n");
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod capture;
mod channel;
mod client;
pub mod docker;
mod error;
mod future;
mod outcome;
mod processes;
mod request;
mod stopping;

pub use bollard;
pub use capture::{Captured, DEFAULT_HEAD_BYTES, DEFAULT_TAIL_BYTES, OutputCaps, StreamKind};
pub use channel::{Channel, OPEN_TIMEOUT, SILENCE_LIMIT};
pub use client::{
    DEFAULT_BACKSTOP_SLACK, DEFAULT_DRAIN, DEFAULT_KILL_GRACE, DEFAULT_KILL_ROUNDS, ExecClient,
    ExecOptions, connect,
};
pub use error::{ExecError, KillError, ReportError, error_chain};
pub use outcome::{KillSummary, LostReason, Outcome, Termination};
pub use processes::{Process, ProcessSource, ProcessTable, top_sees};
pub use request::{DEFAULT_TIMEOUT, ExecRequest, OutputChunk, OutputSink};
pub use sandbox_protocol::{KillReport, Program, Tool, ToolInput, exit};
