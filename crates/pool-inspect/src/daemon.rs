//! The one place that connects to the daemon, starts the pool and builds the executor from
//! the configuration, and gets the pool's judgement of its containers without starting a pool,
//! as `gc` and `show` need (the read-only commands never start one).

use std::sync::Arc;

use anyhow::{Context, Result};
use sandbox_pool::bollard::Docker;
use sandbox_pool::bollard::models::ContainerSummary;
use sandbox_pool::labels::USER;
use sandbox_pool::{Fleet, Housekeeping, Judge, PoolConfig, SandboxPool};
use sandbox_tools::DockerExecutor;

use crate::commands::engines::Target;
use crate::config::FileConfig;

/// Connects to the daemon (`DOCKER_HOST` or the default socket) and negotiates the API
/// version; a daemon that does not answer is classified by [`crate::failure`].
pub async fn connect() -> Result<Docker> {
    Ok(sandbox_pool::connect().await?)
}

/// Starts a pool with the configuration, doing `housekeeping`: a guest (`call`) removes and
/// reaps nothing and uses a user's running sandbox as it is, since the service looks after the
/// pool's containers; the demo's own pool does it all, as the service does.
pub async fn start_pool(
    docker: &Docker,
    config: &FileConfig,
    housekeeping: Housekeeping,
) -> Result<SandboxPool> {
    let pool = PoolConfig {
        housekeeping,
        ..config.pool_config()
    };
    SandboxPool::start(docker.clone(), pool)
        .await
        .with_context(|| format!("starting pool {}", config.pool.name_prefix))
}

/// A guest fleet over `targets`: the one engine's pool, or a fleet placing users as the
/// service's does.
pub async fn start_fleet(targets: &[Target], config: &FileConfig) -> Result<Fleet> {
    if let [one] = targets {
        return Ok(start_pool(one.docker()?, config, Housekeeping::Guest)
            .await?
            .into());
    }
    let pool = PoolConfig {
        housekeeping: Housekeeping::Guest,
        ..config.pool_config()
    };
    let engines = targets.iter().map(|t| t.engine.clone()).collect();
    Fleet::start(engines, pool)
        .await
        .with_context(|| format!("starting pool {}", config.pool.name_prefix))
}

/// The sandbox tools of `user`, working at the root of the user's folder. The CLI has no
/// host tools of its own: its host executor offers exactly the seven sandbox tools.
pub fn executor(pool: &Fleet, config: &FileConfig, user: &str) -> DockerExecutor {
    DockerExecutor::with_config(
        Arc::new(sandbox_tools::SandboxToolsOnly),
        pool.clone(),
        config.tools.clone(),
        user,
        pool.user_root(user),
    )
}

/// The user's root, as the pool maps it (`<users_root>/<user>`).
pub fn user_root(config: &FileConfig, user: &str) -> std::path::PathBuf {
    config.pool.users_root().join(user)
}

/// Unmounts the user's own filesystem after their sandbox was removed, as the pool does (a
/// root that is not one is left alone). The image, and the user's files, stay.
pub fn release_disk(config: &FileConfig, user: &str) {
    if let Err(e) = sandbox_pool::disk::unmount(&user_root(config, user)) {
        eprintln!("pool-inspect: {:#}", anyhow::Error::new(e));
    }
}

/// `<prefix>-<user>`, the container name the pool gives a user's sandbox.
pub fn container_name(config: &FileConfig, user: &str) -> String {
    config.pool.container_name(user)
}

/// The pool's judgement of its containers, from the daemon alone (no pool is started).
pub async fn judge(docker: &Docker, config: &FileConfig) -> Result<Judge> {
    let roots = Arc::new(config.pool.users_root());
    Ok(Judge::new(docker, config.pool_config(), roots).await?)
}

/// The user a container belongs to, from its label.
pub fn user_of(c: &ContainerSummary) -> String {
    c.labels
        .as_ref()
        .and_then(|l| l.get(USER))
        .cloned()
        .unwrap_or_default()
}

/// A container's name without the leading slash.
pub fn name_of(c: &ContainerSummary) -> String {
    c.names
        .as_ref()
        .and_then(|n| n.first())
        .map(|n| n.trim_start_matches('/').to_owned())
        .unwrap_or_default()
}
