//! `engines`: the Docker engines the configuration names (or the local one), whether each
//! answers, and this pool's sandboxes on each.

use std::time::Duration;

use anyhow::Result;
use sandbox_pool::EngineConfig;
use sandbox_pool::bollard::Docker;
use serde::Serialize;

use crate::config::FileConfig;
use crate::failure::{EXIT_FAILURE, EXIT_OK, usage};
use crate::table::{Table, or_dash};

/// How long an engine may take to answer before it counts as down.
const ANSWER_WITHIN: Duration = Duration::from_secs(5);

/// One engine in `engines --json`.
#[derive(Debug, Serialize)]
struct Row {
    name: String,
    host: String,
    tls: bool,
    weight: f64,
    max_sandboxes: Option<usize>,
    healthy: bool,
    /// The engine's Docker version, when it answered.
    version: Option<String>,
    /// This pool's containers on it, when it answered.
    sandboxes: Option<usize>,
    /// Why it is not healthy.
    error: Option<String>,
}

/// The engines of `config`: its `[[engines]]`, or the local one (`DOCKER_HOST`, else the
/// default socket) when it names none.
fn configured(config: &FileConfig) -> Vec<EngineConfig> {
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
        let docker = crate::daemon::connect().await?;
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

async fn probe(engine: &EngineConfig, pool: &str) -> Row {
    let mut row = Row {
        name: engine.name.clone(),
        host: engine.host.clone(),
        tls: engine.tls_ca.is_some(),
        weight: engine.weight,
        max_sandboxes: engine.max_sandboxes,
        healthy: false,
        version: None,
        sandboxes: None,
        error: None,
    };
    let answered = answer(async {
        let docker = engine.connect().await?;
        let version = docker.version().await.ok().and_then(|v| v.version);
        let sandboxes = sandbox_pool::list_containers(&docker, pool).await?.len();
        Ok((version, sandboxes))
    })
    .await;
    match answered {
        Ok((version, sandboxes)) => {
            row.healthy = true;
            row.version = version;
            row.sandboxes = Some(sandboxes);
        }
        Err(why) => row.error = Some(why),
    }
    row
}

/// What `work` on an engine gave within [`ANSWER_WITHIN`], or why not, in words.
async fn answer<T>(
    work: impl Future<Output = Result<T, sandbox_pool::PoolError>>,
) -> Result<T, String> {
    match tokio::time::timeout(ANSWER_WITHIN, work).await {
        Ok(Ok(done)) => Ok(done),
        Ok(Err(e)) => Err(format!("{:#}", anyhow::Error::new(e))),
        Err(_) => Err(format!("no answer within {}s", ANSWER_WITHIN.as_secs())),
    }
}

/// `engines`: exits 1 when any engine does not answer.
pub async fn engines(config: &FileConfig, json: bool) -> Result<u8> {
    let pool = config.pool.name_prefix.as_str();
    let rows =
        futures_util::future::join_all(configured(config).iter().map(|e| probe(e, pool))).await;
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        let mut table = Table::new([
            "ENGINE",
            "HOST",
            "WEIGHT",
            "MAX",
            "HEALTH",
            "VERSION",
            "SANDBOXES",
        ]);
        for r in &rows {
            table.row([
                r.name.clone(),
                format!("{}{}", r.host, if r.tls { " (tls)" } else { "" }),
                r.weight.to_string(),
                or_dash(r.max_sandboxes),
                r.error.clone().unwrap_or_else(|| "ok".to_owned()),
                r.version.clone().unwrap_or_else(|| "-".to_owned()),
                or_dash(r.sandboxes),
            ]);
        }
        table.print()?;
    }
    Ok(if rows.iter().all(|r| r.healthy) {
        EXIT_OK
    } else {
        EXIT_FAILURE
    })
}
