//! `engines`: the Docker engines the configuration names (or the local one), whether each
//! answers, and this pool's sandboxes on each.

use anyhow::Result;
use sandbox_pool::EngineConfig;
use serde::Serialize;

use crate::config::FileConfig;
use crate::daemon::{answer, configured};
use crate::failure::{EXIT_FAILURE, EXIT_OK};
use crate::table::{Table, or_dash};

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
