//! The one place that connects to the daemons (the engines a command works on, [`Target`]),
//! starts the pool and builds the executor from the configuration, and gets the pool's
//! judgement of its containers without starting a pool, as `gc` and `show` need (the read-only
//! commands never start one).

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use sandbox_pool::bollard::Docker;
use sandbox_pool::bollard::models::ContainerSummary;
use sandbox_pool::labels::USER;
use sandbox_pool::{EngineConfig, Fleet, Housekeeping, Judge, PoolConfig, SandboxPool};
use sandbox_tools::DockerExecutor;

use crate::config::FileConfig;
use crate::failure::usage;

/// How long an engine may take to answer before it counts as down.
const ANSWER_WITHIN: Duration = Duration::from_secs(5);

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

/// The engines of `config`: its `[[engines]]`, or the local one (`DOCKER_HOST`, else the
/// default socket) when it names none.
pub fn configured(config: &FileConfig) -> Vec<EngineConfig> {
    if !config.engines.is_empty() {
        return config.engines.clone();
    }
    vec![EngineConfig::new("local", crate::failure::daemon_address())]
}

/// An engine a command works on.
#[derive(Debug, Clone)]
pub struct Target {
    /// How the configuration names it.
    pub engine: EngineConfig,
    /// Its client, or why it has none (it did not answer).
    pub docker: Result<Docker, String>,
}

impl Target {
    /// Its client, or the error that it does not answer.
    pub fn docker(&self) -> Result<&Docker> {
        self.docker
            .as_ref()
            .map_err(|why| anyhow::anyhow!("engine {}: {why}", self.engine.name))
    }
}

/// The engines a command works on (every configured one, or `only`), connected where they
/// answer. The implicit local engine connects as the one daemon always did: a daemon that is
/// down is then the command's error, explained the same way.
pub async fn targets(config: &FileConfig, only: Option<&str>) -> Result<Vec<Target>> {
    let mut engines = configured(config);
    if let Some(name) = only {
        engines.retain(|e| e.name == name);
        if engines.is_empty() {
            let names: Vec<String> = configured(config).into_iter().map(|e| e.name).collect();
            return Err(usage(format!(
                "no engine {name} in the configuration (engines: {})",
                names.join(", ")
            )));
        }
    }
    if config.engines.is_empty() {
        let docker = connect().await?;
        return Ok(engines
            .into_iter()
            .map(|engine| Target {
                engine,
                docker: Ok(docker.clone()),
            })
            .collect());
    }
    let connect = |engine: EngineConfig| async move {
        let docker = answer(engine.connect()).await;
        Target { engine, docker }
    };
    Ok(futures_util::future::join_all(engines.into_iter().map(connect)).await)
}

/// What `work` on an engine gave within [`ANSWER_WITHIN`], or why not, in words.
pub async fn answer<T>(
    work: impl Future<Output = Result<T, sandbox_pool::PoolError>>,
) -> Result<T, String> {
    match tokio::time::timeout(ANSWER_WITHIN, work).await {
        Ok(Ok(done)) => Ok(done),
        Ok(Err(e)) => Err(format!("{:#}", anyhow::Error::new(e))),
        Err(_) => Err(format!("no answer within {}s", ANSWER_WITHIN.as_secs())),
    }
}
