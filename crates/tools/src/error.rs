//! [`ToolError`]: why a sandbox tool call failed around its command rather than in it, kept
//! typed for the service (the model reads the same in words, `[Error executing ...]`).

use sandbox_exec::ExecError;
use sandbox_pool::PoolError;

/// A sandbox tool call that failed before its command could run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ToolError {
    /// The user's sandbox could not be had: the pool is full, the daemon does not answer, the
    /// image is missing, ...
    #[error("getting the sandbox of user {user}")]
    Sandbox {
        /// The user.
        user: String,
        /// The pool's answer.
        #[source]
        source: PoolError,
    },
    /// The call could not be started in the user's sandbox.
    #[error("starting the call in the sandbox of user {user}")]
    Exec {
        /// The user.
        user: String,
        /// What the exec said.
        #[source]
        source: ExecError,
    },
}

impl ToolError {
    /// The pool's error, when getting the sandbox failed.
    pub fn pool_error(&self) -> Option<&PoolError> {
        match self {
            Self::Sandbox { source, .. } => Some(source),
            Self::Exec { .. } => None,
        }
    }

    /// The exec's error, when starting the call failed.
    pub fn exec_error(&self) -> Option<&ExecError> {
        match self {
            Self::Exec { source, .. } => Some(source),
            Self::Sandbox { .. } => None,
        }
    }

    /// Whether the Docker daemon did not answer (down, hung or unreachable).
    pub fn is_daemon_unreachable(&self) -> bool {
        match self {
            Self::Sandbox { source, .. } => source.is_daemon_unreachable(),
            Self::Exec { source, .. } => source.is_daemon_unreachable(),
        }
    }

    /// Whether every sandbox of the pool was busy and it was at its cap.
    pub fn is_pool_full(&self) -> bool {
        matches!(self.pool_error(), Some(PoolError::PoolFull { .. }))
    }

    /// What the model reads after `[Error executing {tool} via docker] `: the cause and its
    /// own causes, as before the error was typed.
    pub(crate) fn detail(&self) -> String {
        match self {
            Self::Sandbox { source, .. } => sandbox_exec::error_chain(source),
            Self::Exec { source, .. } => sandbox_exec::error_chain(source),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_service_tells_a_full_pool_from_a_daemon_that_does_not_answer() {
        let full = ToolError::Sandbox {
            user: "u".into(),
            source: PoolError::PoolFull { max: 2 },
        };
        assert!(full.is_pool_full() && !full.is_daemon_unreachable());
        assert!(full.exec_error().is_none());
        assert_eq!(full.detail(), "the pool is full: 2 sandboxes, none idle");

        let down = ToolError::Sandbox {
            user: "u".into(),
            source: PoolError::NoEngine {
                engines: "a, b".into(),
            },
        };
        assert!(down.is_daemon_unreachable() && !down.is_pool_full());

        let broken = ToolError::Exec {
            user: "u".into(),
            source: ExecError::SandboxUnusable {
                container: "c".into(),
                reason: "no pids left".into(),
            },
        };
        assert!(matches!(
            broken.exec_error(),
            Some(e) if e.is_sandbox_unusable()
        ));
        assert!(broken.pool_error().is_none() && !broken.is_daemon_unreachable());
    }
}
