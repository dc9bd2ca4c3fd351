//! The one error type of this crate: one variant per failed operation, carrying the ids.

use std::path::PathBuf;

use bollard::errors::Error as DockerError;

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
    /// The chosen base image is not on the daemon (we never pull unasked).
    #[error("base image {image} is not on the daemon")]
    BaseMissing {
        /// The image reference.
        image: String,
    },
    /// The sandbox user would be root.
    #[error("the sandbox uid must not be 0")]
    RootSandboxUser,
    /// Reading the runner binary for the image failed.
    #[error("reading the runner binary {path}")]
    ReadRunner {
        /// Where we looked.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Making the debootstrap base failed.
    #[error("making the base image: {reason}")]
    Debootstrap {
        /// What went wrong.
        reason: String,
    },
    /// Importing the base filesystem into the daemon failed.
    #[error("importing the base image {image}")]
    ImportBase {
        /// The image reference.
        image: String,
        /// The daemon's answer.
        #[source]
        source: DockerError,
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
