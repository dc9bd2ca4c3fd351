//! The sandbox image build.
//!
//! Owns: building the image a pool runs (the Dockerfile in `sandbox-image/` and the static
//! runner, sent as a tar context through the Engine API), tagged with a hash of its inputs so
//! unchanged inputs never rebuild and changed ones always do; and its base. The base is
//! `debian:bookworm-slim` when the daemon already has it. Otherwise (no registry here, and we
//! never reach for one unasked) it is made locally: `debootstrap --variant=minbase` of the
//! same release, from the mirror the host's apt already uses (or debootstrap's default),
//! streamed as a tar into `create_image` with `fromSrc=-`.
//!
//! Must not: start or touch containers (that is `sandbox-pool`), or be linked by a service
//! that only runs sandboxes. What an image declares to the pool (its labels, the defaults,
//! [`ImageConfig`]) lives in [`sandbox_pool::image`], which this crate writes and the pool
//! reads.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use sandbox_image::{ImageBuilder, ImageConfig, TracingProgress};
//!
//! let docker = sandbox_pool::connect().await?;
//! let config = ImageConfig::default();
//! let built = ImageBuilder::new(&docker, &config, "target/sandbox-runner", &TracingProgress)
//!     .build()
//!     .await?;
//! println!("{} ({})", built.tag, if built.built { "built" } else { "up to date" });
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod base;
mod builder;
mod error;
mod mirror;

pub use builder::{
    BaseImage, BuildProgress, BuiltImage, ImageBuilder, ImageStatus, TracingProgress,
};
pub use error::ImageError;
pub use mirror::apt_mirror;
pub use sandbox_pool::image::{BaseChoice, ImageConfig};

/// The Dockerfile, embedded so the build needs nothing but the runner binary.
pub const DOCKERFILE: &str = include_str!("../../../sandbox-image/Dockerfile");
/// The registry base used when the daemon already has it.
pub const REGISTRY_BASE: &str = "debian:bookworm-slim";
/// Release of the debootstrap base (the same as the registry base).
pub const DEBOOTSTRAP_SUITE: &str = "bookworm";
/// Packages the debootstrap base adds to minbase (bash, coreutils and util-linux are
/// essential and always there).
pub const BASE_PACKAGES: &[&str] = &["python3", "python-is-python3", "procps"];
/// Repository of the locally made base.
pub const BASE_REPO: &str = "zcbot-sandbox-base";
/// Label on our images holding the input hash.
pub const INPUTS_LABEL: &str = "zcbot.sandbox.inputs";
