//! The one error type of this crate: one variant per failed operation, carrying the ids.

use std::path::PathBuf;

use bollard::errors::Error as DockerError;
use sandbox_exec::docker::is_unreachable;

/// What failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PoolError {
    /// The user id cannot name a container.
    #[error("invalid user id {user:?}: use 1-64 of A-Z a-z 0-9 _ . - (not starting with . or -)")]
    InvalidUser {
        /// The id given.
        user: String,
    },
    /// The image carries no sandbox uid label and the configuration gives none.
    #[error(
        "image {image} does not say its sandbox uid: set `sandbox_uid` in the pool configuration"
    )]
    SandboxUidUnknown {
        /// The image reference.
        image: String,
    },
    /// A container with the sandbox's name exists but is not ours; it is never touched.
    #[error("a container named {name} exists for user {user} but was not made by this pool")]
    NameTaken {
        /// The user.
        user: String,
        /// The container name.
        name: String,
    },
    /// The user's sandbox must be replaced (it was made with another configuration) but calls
    /// of another pool process kept running in it for longer than the pool waits.
    #[error("the sandbox {container} of user {user} is busy with another pool's calls")]
    SandboxBusy {
        /// The user.
        user: String,
        /// Container id.
        container: String,
    },
    /// The user root cannot be used.
    #[error("user root {path} of user {user}: {reason}")]
    UserRoot {
        /// The user.
        user: String,
        /// The host path.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// An extra mount's host folder does not exist (the daemon would create an empty one).
    #[error("extra mount source {path} does not exist")]
    MountSourceMissing {
        /// The host path.
        path: PathBuf,
    },
    /// Every sandbox is busy and the pool is at `max_sandboxes`.
    #[error("the pool is full: {max} sandboxes, none idle")]
    PoolFull {
        /// The configured cap.
        max: usize,
    },
    /// An engine's configuration is not one that can be connected to.
    #[error("engine {engine}: {reason}")]
    EngineConfig {
        /// The engine's name.
        engine: String,
        /// What is wrong.
        reason: String,
    },
    /// The user root's own filesystem could not be made, resized or mounted.
    #[error("the disk of user {user}")]
    Disk {
        /// The user.
        user: String,
        /// What failed.
        #[source]
        source: crate::disk::DiskError,
    },
    /// `disk_enforce = "filesystem"` where filesystems cannot be mounted.
    #[error(
        "disk_enforce is \"filesystem\" but this process cannot loop-mount (it must run as root on a host with /dev/loop-control); use \"auto\" or \"gate\""
    )]
    DiskUnavailable,
    /// An engine did not answer within the time it is given (a daemon that hangs).
    #[error("engine {engine} at {host} gave no answer within {}", humantime::format_duration(*.within))]
    EngineNoAnswer {
        /// The engine's name.
        engine: String,
        /// Where it was looked for.
        host: String,
        /// How long it was given.
        within: std::time::Duration,
    },
    /// No engine of the fleet has answered since it started: nowhere to place a sandbox.
    #[error("no Docker engine answers (of {engines})")]
    NoEngine {
        /// The engines' names, comma-separated.
        engines: String,
    },
    /// An engine did not answer, or refused us (TLS, API version).
    #[error("engine {engine} at {host} does not answer")]
    EngineConnect {
        /// The engine's name.
        engine: String,
        /// Where it was looked for.
        host: String,
        /// Why.
        #[source]
        source: DockerError,
    },
    /// The daemon did not answer.
    #[error("{op}: docker daemon unreachable")]
    DaemonUnreachable {
        /// What the pool was doing.
        op: &'static str,
        /// The transport error.
        #[source]
        source: DockerError,
    },
    /// Listing containers failed.
    #[error("listing the pool's containers")]
    ListContainers(#[source] DockerError),
    /// Inspecting a user's container failed (other than "not found").
    #[error("inspecting container {container} of user {user}")]
    InspectContainer {
        /// The user.
        user: String,
        /// Container name or id.
        container: String,
        /// The daemon's answer.
        #[source]
        source: DockerError,
    },
    /// Creating a user's container failed.
    #[error("creating container {name} for user {user}")]
    CreateContainer {
        /// The user.
        user: String,
        /// The container name.
        name: String,
        /// The daemon's answer.
        #[source]
        source: DockerError,
    },
    /// Starting a user's new container failed; `cleanup` says whether removing it failed too.
    #[error("starting container {container} of user {user}{}", cleanup.as_ref().map(|c| format!(" (and removing it failed too: {c})")).unwrap_or_default())]
    StartContainer {
        /// The user.
        user: String,
        /// Container id.
        container: String,
        /// The daemon's answer to the start (boxed, as the cleanup: keeps the error small).
        #[source]
        source: Box<DockerError>,
        /// Why removing it afterwards failed too, if it did (the start's error stays the
        /// source; this one's first line is said in the message, its causes are its own).
        cleanup: Option<Box<PoolError>>,
    },
    /// Removing a container failed (other than "already gone").
    #[error("removing container {container} of user {user}")]
    RemoveContainer {
        /// The user.
        user: String,
        /// Container id.
        container: String,
        /// The daemon's answer.
        #[source]
        source: DockerError,
    },
    /// Reading a container's usage from the stats API failed.
    #[error("reading the stats of container {container}")]
    Stats {
        /// Container id.
        container: String,
        /// The daemon's answer.
        #[source]
        source: DockerError,
    },
    /// Inspecting an image failed (other than "not found").
    #[error("inspecting image {image}")]
    InspectImage {
        /// The image reference.
        image: String,
        /// The daemon's answer.
        #[source]
        source: DockerError,
    },
    /// The configured image is not on the daemon.
    #[error("image {image} is missing: build it with `just image` (or `pool-inspect image build`)")]
    ImageMissing {
        /// The image reference.
        image: String,
    },
    /// The image's runner speaks another protocol than this library.
    #[error(
        "image {image} has a runner for protocol {found}, this library speaks {expected}: rebuild it with `just image`"
    )]
    ImageOutdated {
        /// The image reference.
        image: String,
        /// The image's protocol label.
        found: String,
        /// Ours.
        expected: u32,
    },
    /// The image's runner cannot start under the pool's runtime: gVisor cannot load the
    /// execute-only runner of an image built for runc.
    #[error(
        "image {image} cannot run under runtime {runtime} (gVisor): its runner is execute-only, which gVisor cannot start; build one for gVisor (`pool-inspect --runtime {runtime} image build`, or `[image] gvisor = true`; tagged `<repo>:latest-gvisor`) and point `pool.image` at it"
    )]
    ImageNotForGvisor {
        /// The image reference.
        image: String,
        /// The pool's runtime.
        runtime: String,
    },
    /// The configured OCI runtime is not one the daemon knows.
    #[error(
        "the docker daemon has no runtime {runtime} (it has: {known}); register it in the daemon's configuration"
    )]
    UnknownRuntime {
        /// The configured runtime.
        runtime: String,
        /// The daemon's runtimes.
        known: String,
    },
    /// Asking the daemon about itself (`docker info`) failed.
    #[error("asking the docker daemon for its runtimes")]
    DaemonInfo {
        /// The daemon's answer.
        #[source]
        source: DockerError,
    },
    /// The sandbox user would be root.
    #[error("the sandbox uid must not be 0")]
    RootSandboxUser,
}

impl PoolError {
    /// Whether the engine did not answer (down, hung or unreachable), as opposed to answering
    /// with a refusal: a fleet places the user on their next engine.
    pub fn is_daemon_unreachable(&self) -> bool {
        matches!(
            self,
            PoolError::DaemonUnreachable { .. }
                | PoolError::EngineConnect { .. }
                | PoolError::EngineNoAnswer { .. }
                | PoolError::NoEngine { .. }
        ) || matches!(self, PoolError::ListContainers(e) if is_unreachable(e))
    }
}

/// Inspecting `user`'s sandbox `container` failed.
pub(crate) fn inspect_failed(user: &str, container: String, e: DockerError) -> PoolError {
    unreachable_or("inspecting the sandbox", e, |source| {
        PoolError::InspectContainer {
            user: user.to_owned(),
            container,
            source,
        }
    })
}

/// A daemon error as [`PoolError::DaemonUnreachable`] when the daemon did not answer, else as
/// `otherwise` makes it.
pub(crate) fn unreachable_or(
    op: &'static str,
    e: DockerError,
    otherwise: impl FnOnce(DockerError) -> PoolError,
) -> PoolError {
    if is_unreachable(&e) {
        PoolError::DaemonUnreachable { op, source: e }
    } else {
        otherwise(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(message: &str) -> DockerError {
        DockerError::DockerResponseServerError {
            status_code: 500,
            message: message.to_owned(),
        }
    }

    #[test]
    fn a_failed_start_keeps_its_cause_and_says_the_failed_cleanup_too() {
        let cleanup = PoolError::RemoveContainer {
            user: "u".into(),
            container: "c1".into(),
            source: refused("device busy"),
        };
        let err = PoolError::StartContainer {
            user: "u".into(),
            container: "c1".into(),
            source: Box::new(refused("no such runtime")),
            cleanup: Some(Box::new(cleanup)),
        };
        assert_eq!(
            err.to_string(),
            "starting container c1 of user u (and removing it failed too: removing container c1 \
             of user u)"
        );
        let source = std::error::Error::source(&err).expect("the start's error");
        assert!(source.to_string().contains("no such runtime"), "{source}");
        let PoolError::StartContainer {
            cleanup: Some(cleanup),
            ..
        } = &err
        else {
            panic!("{err:?}");
        };
        assert!(matches!(**cleanup, PoolError::RemoveContainer { .. }));
    }
}
