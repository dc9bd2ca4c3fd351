//! The one error type of this crate: failures before the command could start. Once it runs,
//! everything (including a lost sandbox) is an [`Outcome`](crate::Outcome), not an error.

use bollard::errors::Error as DockerError;

use crate::docker::{is_conflict, is_not_found, is_unreachable};

/// What failed, with the ids involved; bollard's error is the `source`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExecError {
    /// Connecting to the daemon or negotiating the API version failed.
    #[error("connecting to the docker daemon")]
    Connect(#[source] DockerError),
    /// The container does not exist (404).
    #[error("{op}: container {container} not found")]
    ContainerNotFound {
        /// The operation that failed.
        op: &'static str,
        /// Container id or name.
        container: String,
        /// The daemon's answer.
        #[source]
        source: DockerError,
    },
    /// The container exists but is not running (409: stopped or paused).
    #[error("{op}: container {container} is not running")]
    ContainerNotRunning {
        /// The operation that failed.
        op: &'static str,
        /// Container id or name.
        container: String,
        /// The daemon's answer.
        #[source]
        source: DockerError,
    },
    /// The daemon did not answer.
    #[error("{op}: docker daemon unreachable (container {container})")]
    DaemonUnreachable {
        /// The operation that failed.
        op: &'static str,
        /// Container id or name.
        container: String,
        /// The transport error.
        #[source]
        source: DockerError,
    },
    /// Creating the exec failed for another reason.
    #[error("creating an exec in container {container}")]
    CreateExec {
        /// Container id or name.
        container: String,
        /// The daemon's answer.
        #[source]
        source: DockerError,
    },
    /// Starting (attaching to) the exec failed for another reason.
    #[error("starting exec {docker_exec_id} in container {container}")]
    StartExec {
        /// Container id or name.
        container: String,
        /// Docker's id of the exec.
        docker_exec_id: String,
        /// The daemon's answer.
        #[source]
        source: DockerError,
    },
    /// The sandbox cannot start anything: the runtime could not start the runner, or the
    /// runner could not start the command, for lack of processes or memory (a fork bomb left
    /// running, for example). Nothing of the call ran; a fresh sandbox is the way out.
    #[error("container {container} cannot start processes: {reason}")]
    SandboxUnusable {
        /// Container id or name.
        container: String,
        /// What failed, as the runtime or the runner said it.
        reason: String,
    },
    /// The request (the program's argv and environment, as JSON) is larger than the runner
    /// takes in one frame; a long program goes on stdin instead ([`ExecRequest::script`]).
    ///
    /// [`ExecRequest::script`]: crate::ExecRequest::script
    #[error("the request for container {container} is {bytes} bytes, at most {limit}")]
    RequestTooLarge {
        /// Container id or name.
        container: String,
        /// Its size as JSON.
        bytes: usize,
        /// The runner's limit.
        limit: usize,
    },
    /// The sandbox's channel is down or did not take the call: nothing of it ran, so it may
    /// run through an exec of its own instead.
    #[error("the channel {channel} of container {container} is down: {why}")]
    ChannelDown {
        /// Container id or name.
        container: String,
        /// The channel id.
        channel: String,
        /// What happened to it.
        why: String,
    },
    /// Listing the container's processes failed (`docker top`, or the runner's `ps` in it).
    #[error("listing the processes of container {container}: {why}")]
    ListProcesses {
        /// Container id or name.
        container: String,
        /// What went wrong.
        why: String,
        /// The daemon's answer, when it was the daemon that refused.
        #[source]
        source: Option<DockerError>,
    },
    /// The daemon answered a start with a detached exec although we asked to attach.
    #[error("exec {docker_exec_id} in container {container} started detached")]
    NotAttached {
        /// Container id or name.
        container: String,
        /// Docker's id of the exec.
        docker_exec_id: String,
    },
}

impl ExecError {
    /// Classifies a daemon error by status code (never by message text) for operation `op`.
    pub(crate) fn classify(
        op: &'static str,
        container: &str,
        source: DockerError,
        otherwise: impl FnOnce(String, DockerError) -> ExecError,
    ) -> ExecError {
        let container = container.to_owned();
        if is_not_found(&source) {
            ExecError::ContainerNotFound {
                op,
                container,
                source,
            }
        } else if is_conflict(&source) {
            ExecError::ContainerNotRunning {
                op,
                container,
                source,
            }
        } else if is_unreachable(&source) {
            ExecError::DaemonUnreachable {
                op,
                container,
                source,
            }
        } else {
            otherwise(container, source)
        }
    }

    /// Whether the sandbox is gone or stopped: the caller should get a fresh one and retry.
    pub fn is_sandbox_gone(&self) -> bool {
        matches!(
            self,
            ExecError::ContainerNotFound { .. } | ExecError::ContainerNotRunning { .. }
        )
    }

    /// Whether the daemon did not answer before the command started (nothing ran).
    pub fn is_daemon_unreachable(&self) -> bool {
        matches!(
            self,
            ExecError::Connect(_) | ExecError::DaemonUnreachable { .. }
        )
    }

    /// Whether a channel could not take the call: nothing ran, so an exec of its own may.
    pub fn is_channel_down(&self) -> bool {
        matches!(self, ExecError::ChannelDown { .. })
    }

    /// Whether the sandbox runs but cannot start processes: the caller should replace it and
    /// retry (nothing of the call ran).
    pub fn is_sandbox_unusable(&self) -> bool {
        matches!(self, ExecError::SandboxUnusable { .. })
    }
}

/// Why a runner exec's report (the kill's, or `ps`'s) could not be read. `what` names the exec.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReportError {
    /// Its output stream broke.
    #[error("reading {what}: {error}")]
    Read {
        /// The exec.
        what: &'static str,
        /// The stream's error, in words (the daemon's error is not `Clone`).
        error: String,
    },
    /// Its report frame did not parse, or said something impossible.
    #[error("{what}'s report is malformed: {reason}")]
    Malformed {
        /// The exec.
        what: &'static str,
        /// What was wrong.
        reason: String,
    },
    /// It sent a frame of another kind than a report.
    #[error("{what} sent a frame of kind {kind}")]
    UnexpectedFrame {
        /// The exec.
        what: &'static str,
        /// The frame's kind.
        kind: u8,
    },
    /// It sent more than one report's worth without completing one.
    #[error("{what} sent over {limit} bytes")]
    TooLong {
        /// The exec.
        what: &'static str,
        /// The bound.
        limit: usize,
    },
    /// Its output is not frames.
    #[error("{what}'s output is not a frame: {reason}")]
    NotAFrame {
        /// The exec.
        what: &'static str,
        /// What the decoder said.
        reason: String,
    },
    /// Its output ended without a report.
    #[error("{what} gave no report: {said}")]
    NoReport {
        /// The exec.
        what: &'static str,
        /// What it wrote on stderr (bounded).
        said: String,
    },
}

/// Why the server-side kill of a call could not run or report.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KillError {
    /// The daemon did not start the kill exec within its bound.
    #[error("the daemon did not start the kill exec in time")]
    StartTimedOut,
    /// The kill exec could not be started.
    #[error("the kill exec: {0}")]
    Start(String),
    /// The kill exec did not finish within its bound.
    #[error("the kill exec did not finish in time")]
    TimedOut,
    /// The kill exec's report could not be read.
    #[error(transparent)]
    Report(#[from] ReportError),
}

/// An error and its causes, `a: b: c` (the error types of this workspace's crates keep their causes out
/// of their own messages).
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut cause = err.source();
    while let Some(next) = cause {
        text.push_str(": ");
        text.push_str(&next.to_string());
        cause = next.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status_code: u16) -> DockerError {
        DockerError::DockerResponseServerError {
            status_code,
            message: "whatever the daemon says".into(),
        }
    }

    fn other(container: String, source: DockerError) -> ExecError {
        ExecError::CreateExec { container, source }
    }

    #[test]
    fn daemon_answers_map_to_variants_by_status_code() {
        assert!(matches!(
            ExecError::classify("create exec", "c1", answer(404), other),
            ExecError::ContainerNotFound { container, .. } if container == "c1"
        ));
        assert!(matches!(
            ExecError::classify("create exec", "c1", answer(409), other),
            ExecError::ContainerNotRunning { .. }
        ));
        assert!(matches!(
            ExecError::classify("create exec", "c1", answer(500), other),
            ExecError::CreateExec { .. }
        ));
        assert!(matches!(
            ExecError::classify("create exec", "c1", DockerError::RequestTimeoutError, other),
            ExecError::DaemonUnreachable { .. }
        ));
        assert!(ExecError::classify("create exec", "c1", answer(409), other).is_sandbox_gone());
    }

    #[test]
    fn kill_and_report_errors_say_what_they_said_as_strings() {
        let said = [
            (
                KillError::StartTimedOut,
                "the daemon did not start the kill exec in time",
            ),
            (KillError::TimedOut, "the kill exec did not finish in time"),
            (
                KillError::Start("no such container".into()),
                "the kill exec: no such container",
            ),
            (
                KillError::Report(ReportError::Read {
                    what: "the kill exec",
                    error: "broken pipe".into(),
                }),
                "reading the kill exec: broken pipe",
            ),
            (
                KillError::Report(ReportError::Malformed {
                    what: "the kill exec",
                    reason: "no rounds".into(),
                }),
                "the kill exec's report is malformed: no rounds",
            ),
            (
                KillError::Report(ReportError::UnexpectedFrame {
                    what: "the kill exec",
                    kind: 16,
                }),
                "the kill exec sent a frame of kind 16",
            ),
            (
                KillError::Report(ReportError::TooLong {
                    what: "the kill exec",
                    limit: 10,
                }),
                "the kill exec sent over 10 bytes",
            ),
            (
                KillError::Report(ReportError::NotAFrame {
                    what: "the kill exec",
                    reason: "bad header".into(),
                }),
                "the kill exec's output is not a frame: bad header",
            ),
            (
                KillError::Report(ReportError::NoReport {
                    what: "the runner's ps",
                    said: "oops".into(),
                }),
                "the runner's ps gave no report: oops",
            ),
        ];
        for (error, text) in said {
            assert_eq!(error.to_string(), text);
        }
    }
}
