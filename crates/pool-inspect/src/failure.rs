//! Exit codes and the one line that says what went wrong and what to run.
//!
//! 0 success; 1 failure; 2 usage. Clap exits 2 on bad flags by itself; arguments it cannot
//! check (JSON, user ids) are [`UsageError`]s. Failures the operator can fix by running
//! something (daemon down, image missing) get a fixed wording, found by type in the error's
//! chain, never by matching message text.

use std::fmt;

use sandbox_exec::ExecError;
use sandbox_exec::docker::is_unreachable;
use sandbox_pool::PoolError;
use sandbox_pool::bollard::errors::Error as DockerError;

/// Exit code of a success.
pub const EXIT_OK: u8 = 0;
/// Exit code of a failure.
pub const EXIT_FAILURE: u8 = 1;
/// Exit code of a usage error (as clap's own).
pub const EXIT_USAGE: u8 = 2;

/// A command-line value that clap could not check.
#[derive(Debug)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// A usage error, as an `anyhow::Error`.
pub fn usage(message: impl Into<String>) -> anyhow::Error {
    UsageError(message.into()).into()
}

/// Where we look for the daemon: `DOCKER_HOST`, else the default socket.
pub fn daemon_address() -> String {
    std::env::var("DOCKER_HOST")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unix:///var/run/docker.sock".to_owned())
}

/// The exit code and the one line (without the `pool-inspect: ` prefix) for `err`.
pub fn classify(err: &anyhow::Error) -> (u8, String) {
    let daemon_down = || {
        format!(
            "the Docker daemon does not answer at {}; start it with `just docker-up` or set DOCKER_HOST",
            daemon_address()
        )
    };
    for cause in err.chain() {
        if let Some(u) = cause.downcast_ref::<UsageError>() {
            return (EXIT_USAGE, u.0.clone());
        }
        if let Some(e) = cause.downcast_ref::<PoolError>() {
            match e {
                PoolError::ImageMissing { image } => {
                    return (
                        EXIT_FAILURE,
                        format!("image {image} is missing; build it with `just image`"),
                    );
                }
                PoolError::InvalidUser { .. } => return (EXIT_USAGE, e.to_string()),
                _ => {}
            }
        }
        if let Some(ExecError::Connect(_)) = cause.downcast_ref::<ExecError>() {
            return (EXIT_FAILURE, daemon_down());
        }
        if let Some(e) = cause.downcast_ref::<DockerError>()
            && is_unreachable(e)
        {
            return (EXIT_FAILURE, daemon_down());
        }
    }
    // One line whatever the causes hold.
    let text = format!("{err:#}").replace('\n', " ");
    (EXIT_FAILURE, text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_errors_exit_2_and_the_rest_1() {
        assert_eq!(
            classify(&usage("bad JSON")),
            (EXIT_USAGE, "bad JSON".into())
        );
        let invalid = anyhow::Error::from(PoolError::InvalidUser { user: "a b".into() });
        assert_eq!(classify(&invalid).0, EXIT_USAGE);
        let other = anyhow::anyhow!("first\nsecond").context("doing it");
        assert_eq!(
            classify(&other),
            (EXIT_FAILURE, "doing it: first second".into())
        );
    }

    #[test]
    fn a_missing_image_says_what_to_run() {
        let err = anyhow::Error::from(PoolError::ImageMissing {
            image: "x:1".into(),
        })
        .context("starting the pool");
        assert_eq!(
            classify(&err),
            (
                EXIT_FAILURE,
                "image x:1 is missing; build it with `just image`".into()
            )
        );
    }

    #[test]
    fn an_unreachable_daemon_says_what_to_run() {
        let err = anyhow::Error::from(ExecError::Connect(DockerError::SocketNotFoundError(
            "/nonexistent.sock".into(),
        )));
        let (code, line) = classify(&err);
        assert_eq!(code, EXIT_FAILURE);
        assert!(
            line.starts_with("the Docker daemon does not answer at "),
            "{line}"
        );
        assert!(
            line.ends_with("`just docker-up` or set DOCKER_HOST"),
            "{line}"
        );
        let err = anyhow::Error::from(DockerError::RequestTimeoutError).context("listing");
        assert!(classify(&err).1.contains("does not answer"));
    }
}
