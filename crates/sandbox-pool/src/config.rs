//! [`PoolConfig`]: everything a sandbox container is made from. Serde-deserializable (TOML,
//! YAML, JSON); every default is a documented constant.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use bytesize::ByteSize;
use serde::{Deserialize, Serialize};

pub use crate::disk::Enforce;

/// `<prefix>-<user>`: the name of `user`'s sandbox in the pool named `prefix`.
pub fn container_name(prefix: &str, user: &str) -> String {
    format!("{prefix}-{user}")
}

/// Default image: `zcbot-sandbox:latest` (what `just image` builds and tags).
pub const DEFAULT_IMAGE: &str = "zcbot-sandbox:latest";
/// Default container name prefix: `zcbot-sandbox` (containers are `<prefix>-<user>`).
pub const DEFAULT_NAME_PREFIX: &str = "zcbot-sandbox";
/// Default user commands run as in the sandbox: `zcbot`.
pub const DEFAULT_SANDBOX_USER: &str = crate::image::DEFAULT_USER;
/// Default user of the container's init and main process: `65534:65534` (nobody).
pub const DEFAULT_KEEPER_USER: &str = "65534:65534";
/// Default memory limit (swap included: memory-swap = memory): 1 GiB.
pub const DEFAULT_MEMORY: ByteSize = ByteSize::gib(1);
/// Default CPU limit: 1 CPU.
pub const DEFAULT_CPUS: f64 = 1.0;
/// Default limit on processes and threads: 256.
pub const DEFAULT_PIDS_LIMIT: i64 = 256;
/// Default open-files limit (soft = hard): 1024.
pub const DEFAULT_NOFILE: u64 = 1024;
/// Default network mode: `none`.
pub const DEFAULT_NETWORK_MODE: &str = "none";
/// Default size of the `/tmp` tmpfs: 256 MiB.
pub const DEFAULT_TMP_SIZE: ByteSize = ByteSize::mib(256);
/// Default size of the `/run` tmpfs (pgid files only): 16 MiB.
pub const DEFAULT_RUN_SIZE: ByteSize = ByteSize::mib(16);
/// Default idle time after which the reaper removes a sandbox: 5 minutes.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// Default interval between reaper passes: 30 s.
pub const DEFAULT_REAP_INTERVAL: Duration = Duration::from_secs(30);
/// Default time a sandbox seen healthy is trusted without asking the daemon: 30 s.
pub const DEFAULT_HEALTH_TTL: Duration = Duration::from_secs(30);
/// Default cap on sandboxes held at once: 64.
pub const DEFAULT_MAX_SANDBOXES: usize = 64;
/// Default interval between pings of each engine, and how long one may take: 1 s.
pub const DEFAULT_ENGINE_PING: Duration = Duration::from_secs(1);
/// Where the user root is mounted in the container.
pub const WORKSPACE: &str = "/workspace";

/// What a pool does with the daemon's containers besides running its users' calls.
///
/// Every pool with the same name shares the same containers: several service processes, and
/// every `pool-inspect call`, may run at once on one daemon. Whatever the mode, a container
/// with a call running (Docker lists its running execs) is never reaped, replaced or removed
/// at start-up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Housekeeping {
    /// The service's pool: at start-up adopt the running current containers and remove the
    /// pool's others; reap idle sandboxes; replace outdated ones.
    #[default]
    Full,
    /// A guest on a daemon whose containers another process looks after (an operator's
    /// one-off call): remove nothing at start-up, reap nothing, and use a user's running
    /// sandbox as it is, even if it was made with another configuration.
    Guest,
}

/// A host folder mounted read-only into every sandbox (for example skills at
/// `/sandbox/skills`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtraMount {
    /// Host path; must exist (the daemon would otherwise create an empty directory there).
    pub source: PathBuf,
    /// Path in the container.
    pub target: String,
}

/// What the pool makes containers from and how it keeps them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PoolConfig {
    /// Image reference. Its id (not the name) goes into the configuration hash, so
    /// rebuilding the image recreates sandboxes on their next use.
    pub image: String,
    /// Container names are `<name_prefix>-<user>`; the prefix also names the pool in labels,
    /// so pools with different prefixes never touch each other's containers.
    pub name_prefix: String,
    /// User that commands run as (a name from the image, or `uid[:gid]`).
    pub sandbox_user: String,
    /// The sandbox uid that must own the user root. `None`: read it from the image's label
    /// (set by our image build).
    pub sandbox_uid: Option<u32>,
    /// User the container's init and main process run as. Not the sandbox user: commands
    /// could otherwise stop their own sandbox by killing its main process (`kill -9 -1`).
    pub keeper_user: String,
    /// Read-only host folders mounted into every sandbox.
    pub extra_mounts: Vec<ExtraMount>,
    /// Memory limit; memory-swap is set to the same value (no swap).
    pub memory: ByteSize,
    /// CPU limit in CPUs (fractions allowed).
    pub cpus: f64,
    /// Limit on processes and threads.
    pub pids_limit: i64,
    /// Open-files limit.
    pub nofile: u64,
    /// Network mode.
    pub network_mode: String,
    /// Read-only root filesystem (with tmpfs `/tmp` and `/run`).
    pub read_only_rootfs: bool,
    /// Size of the `/tmp` tmpfs.
    pub tmp_size: ByteSize,
    /// Size of the `/run` tmpfs.
    pub run_size: ByteSize,
    /// OCI runtime (for example `runsc`); `None`: the daemon's default.
    pub runtime: Option<String>,
    /// Idle time after which the reaper removes a sandbox.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Interval between reaper passes.
    #[serde(with = "humantime_serde")]
    pub reap_interval: Duration,
    /// How long a sandbox seen healthy is trusted without asking the daemon.
    #[serde(with = "humantime_serde")]
    pub health_ttl: Duration,
    /// Cap on sandboxes held at once (per engine, when there are several; an engine's own
    /// `max_sandboxes` may lower it there).
    pub max_sandboxes: usize,
    /// With several engines: how often each is pinged.
    #[serde(with = "humantime_serde")]
    pub engine_ping_interval: Duration,
    /// With several engines: an engine whose ping takes longer is down (it stops receiving
    /// new sandboxes and its users' calls go to their next engine).
    #[serde(with = "humantime_serde")]
    pub engine_ping_timeout: Duration,
    /// What the pool does with containers besides running calls.
    pub housekeeping: Housekeeping,
    /// Extra labels on every container.
    pub labels: BTreeMap<String, String>,
    /// Bytes each user root may hold (`None`: no limit). With [`Enforce::Filesystem`] each
    /// user root is a filesystem of this size ([`crate::disk`]); the file tools' gate checks
    /// the same limit (a configuration file's `[tools.quotas] disk_bytes_per_user` sets it
    /// when this is not set).
    pub disk_quota: Option<ByteSize>,
    /// How the disk quota is enforced: `auto` (the default: a filesystem per user where the
    /// pool runs as root with loop devices, else the gate), `filesystem` or `gate`.
    pub disk_enforce: Enforce,
    /// Folder holding one user root per user (`<users_root>/<user>`), used when the pool is
    /// not given a mapping of its own.
    pub users_root: Option<PathBuf>,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            image: DEFAULT_IMAGE.to_owned(),
            name_prefix: DEFAULT_NAME_PREFIX.to_owned(),
            sandbox_user: DEFAULT_SANDBOX_USER.to_owned(),
            sandbox_uid: None,
            keeper_user: DEFAULT_KEEPER_USER.to_owned(),
            extra_mounts: Vec::new(),
            memory: DEFAULT_MEMORY,
            cpus: DEFAULT_CPUS,
            pids_limit: DEFAULT_PIDS_LIMIT,
            nofile: DEFAULT_NOFILE,
            network_mode: DEFAULT_NETWORK_MODE.to_owned(),
            read_only_rootfs: true,
            tmp_size: DEFAULT_TMP_SIZE,
            run_size: DEFAULT_RUN_SIZE,
            runtime: None,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            reap_interval: DEFAULT_REAP_INTERVAL,
            health_ttl: DEFAULT_HEALTH_TTL,
            max_sandboxes: DEFAULT_MAX_SANDBOXES,
            engine_ping_interval: DEFAULT_ENGINE_PING,
            engine_ping_timeout: DEFAULT_ENGINE_PING,
            housekeeping: Housekeeping::default(),
            labels: BTreeMap::new(),
            disk_quota: None,
            disk_enforce: Enforce::default(),
            users_root: None,
        }
    }
}

impl PoolConfig {
    /// The size of each user's filesystem when the quota is enforced by one here, else
    /// `None` (no quota, or the gate alone).
    pub fn disk_filesystem(&self) -> Option<u64> {
        let bytes = self.disk_quota.map(|q| q.as_u64()).filter(|&b| b > 0)?;
        (self.disk_enforce.resolve() == Enforce::Filesystem).then_some(bytes)
    }

    /// `<prefix>-<user>`: the name of `user`'s sandbox in this pool.
    pub fn container_name(&self, user: &str) -> String {
        container_name(&self.name_prefix, user)
    }

    /// The folder holding one root per user: `users_root`, or by default
    /// `/var/lib/<name_prefix>/users`.
    pub fn users_root(&self) -> PathBuf {
        self.users_root.clone().unwrap_or_else(|| {
            PathBuf::from("/var/lib")
                .join(&self.name_prefix)
                .join("users")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_fill_what_a_file_leaves_out() {
        let c: PoolConfig = serde_json::from_str(
            r#"{"memory": "512MiB", "idle_timeout": "90s", "labels": {"team": "a"}}"#,
        )
        .expect("parse");
        assert_eq!(c.memory, ByteSize::mib(512));
        assert_eq!(c.idle_timeout, Duration::from_secs(90));
        assert_eq!(c.pids_limit, DEFAULT_PIDS_LIMIT);
        assert_eq!(c.network_mode, "none");
        assert!(serde_json::from_str::<PoolConfig>(r#"{"memroy": "1GiB"}"#).is_err());
    }
}
