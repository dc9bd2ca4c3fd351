//! The one error type of this crate: one variant per failed step of a build.

use std::path::PathBuf;
use std::process::ExitStatus;

use bollard::errors::Error as DockerError;

/// What failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImageError {
    /// The sandbox user would be root.
    #[error("the sandbox uid must not be 0")]
    RootSandboxUser,
    /// Inspecting an image failed (other than "not found").
    #[error("inspecting image {image}")]
    InspectImage {
        /// The image reference.
        image: String,
        /// The daemon's answer.
        #[source]
        source: DockerError,
    },
    /// Reading the runner binary for the image failed.
    #[error("reading the runner binary {path}")]
    ReadRunner {
        /// Where we looked.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Writing the build context (a tar in memory) failed.
    #[error("writing the build context")]
    BuildContext(#[source] std::io::Error),
    /// The chosen base image is not on the daemon (we never pull unasked).
    #[error("base image {image} is not on the daemon")]
    BaseMissing {
        /// The image reference.
        image: String,
    },
    /// Pulling the base image failed.
    #[error("pulling the base image {image}")]
    PullBase {
        /// The image reference.
        image: String,
        /// The daemon's answer.
        #[source]
        source: DockerError,
    },
    /// Making the base needs root (debootstrap does).
    #[error(
        "making the base image needs root (debootstrap); run as root, or give the daemon debian:bookworm-slim"
    )]
    NotRoot,
    /// The temporary directory for the base could not be made.
    #[error("making the base image: creating a temporary directory")]
    TempDir(#[source] std::io::Error),
    /// debootstrap is not installed.
    #[error("making the base image: debootstrap is not installed (apt-get install debootstrap)")]
    DebootstrapMissing,
    /// debootstrap could not be started or waited for.
    #[error("making the base image: running debootstrap")]
    DebootstrapRun(#[source] std::io::Error),
    /// debootstrap ran and failed.
    #[error("making the base image: debootstrap failed ({status}): {tail}")]
    DebootstrapFailed {
        /// How it ended.
        status: ExitStatus,
        /// The last lines of its error output.
        tail: String,
    },
    /// Archiving the base filesystem for the daemon failed.
    #[error("making the base image: archiving the base filesystem")]
    ArchiveBase(#[source] std::io::Error),
    /// The daemon refused the base filesystem.
    #[error("importing the base image {image}")]
    ImportBase {
        /// The image reference.
        image: String,
        /// The daemon's answer.
        #[source]
        source: DockerError,
    },
    /// The daemon took the base filesystem but has no image of that name afterwards.
    #[error("importing the base image {image}: the daemon accepted it but does not have it")]
    BaseNotImported {
        /// The image reference.
        image: String,
    },
    /// Building (or tagging) the sandbox image failed.
    #[error("building image {image}")]
    BuildImage {
        /// The image reference.
        image: String,
        /// The daemon's answer.
        #[source]
        source: DockerError,
    },
}
