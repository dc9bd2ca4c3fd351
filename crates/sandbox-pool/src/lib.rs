//! Per-user sandbox containers.
//!
//! Owns: the container lifecycle of every user's sandbox (create, start, inspect, adopt,
//! recreate, remove) and its channel (opened in the background, reopened after it went down),
//! its labels and configuration hash, the per-user locks, the idle reaper, the daemon's events
//! about its containers, start-up reconciliation, capacity, the operator view, what it reads
//! from a sandbox image ([`image`]: its labels and defaults), the Docker engines sandboxes can
//! be placed on ([`engine`]) and the placement of users over them ([`Fleet`]).
//!
//! Must not: run commands for callers (that is `sandbox-exec`), know about tools or format
//! anything for a model (that is `sandbox-tools`), build images (that is `sandbox-image`), or
//! touch containers without its labels.
//! The Docker client is injected, never global: a [`Fleet`] holds one pool per engine.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use sandbox_pool::{PoolConfig, SandboxPool, ShutdownPolicy};
//!
//! let docker = sandbox_pool::connect().await?;
//! let pool = SandboxPool::start(docker, PoolConfig::default()).await?;
//! let sandbox = pool.ensure("alice").await?; // adopted or made, and running
//! println!("{} mounts {}", sandbox.name, sandbox.user_root.display());
//! pool.shutdown(ShutdownPolicy::Keep).await?; // the sandboxes stay for the next start
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod channel;
pub mod config;
mod containers;
pub mod disk;
pub mod engine;
mod error;
mod events;
mod fleet;
pub mod host;
pub mod image;
mod judge;
pub mod labels;
mod locks;
pub mod metrics;
mod pool;
pub mod runtime;
mod sandbox;
pub mod spec;
mod user;
pub mod view;

pub use bollard;
pub use bytesize;
pub use channel::ChannelInfo;
pub use config::{ExtraMount, Housekeeping, PoolConfig};
pub use containers::{calls_running, list_containers, remove_container, remove_sandbox};
pub use engine::EngineConfig;
pub use error::PoolError;
pub use fleet::{EngineStatus, Fleet};
pub use judge::{Judge, Verdict};
pub use pool::{LOCAL_ENGINE, Lease, SandboxPool, is_reapable};
pub use sandbox::{Recreated, Sandbox, ShutdownPolicy};
pub use sandbox_exec::connect;
pub use user::{IntoUserId, UserId, UserRoots, validate_user};
pub use view::{SandboxInfo, SandboxState, Usage, daemon_view, usage};
