//! `ls`: this pool's sandboxes as each engine's daemon knows them, with usage.

use anyhow::Result;
use sandbox_pool::{SandboxInfo, daemon_view};
use serde::Serialize;

use crate::daemon::Target;
use crate::failure::{EXIT_FAILURE, EXIT_OK};
use crate::table::{Table, human_bytes, human_opt_duration, or_dash, short_id, since};

/// One sandbox in `ls --json`: the library's view plus the idle time in seconds.
#[derive(Debug, Serialize)]
struct Row {
    #[serde(flatten)]
    info: SandboxInfo,
    /// Seconds since the last call (or the start), when known.
    idle_secs: Option<u64>,
}

/// `ls`: every engine's sandboxes, grouped by engine. An engine that does not answer is
/// said on stderr, and `ls` exits 1 after listing the others.
pub async fn ls(targets: &[Target], pool: &str, json: bool) -> Result<u8> {
    let mut list = Vec::new();
    let mut code = EXIT_OK;
    for t in targets {
        let found = match t.docker() {
            Ok(docker) => daemon_view(docker, &t.engine.name, pool, true)
                .await
                .map_err(|e| anyhow::Error::new(e).context(format!("engine {}", t.engine.name))),
            Err(e) => Err(e),
        };
        match found {
            Ok(found) => list.extend(found),
            Err(e) if targets.len() > 1 => {
                eprintln!("pool-inspect: {e:#}");
                code = EXIT_FAILURE;
            }
            Err(e) => return Err(e),
        }
    }
    if json {
        let rows: Vec<Row> = list
            .into_iter()
            .map(|info| Row {
                idle_secs: since(info.last_active).map(|d| d.as_secs()),
                info,
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        let table = table(&list, targets.len() > 1);
        table.print()?;
        if table.is_empty() {
            println!("(no sandboxes in pool {pool})");
        }
    }
    Ok(code)
}

/// The `ls` table (the demo prints it too).
pub fn table(list: &[SandboxInfo], by_engine: bool) -> Table {
    let mut headers = vec![
        "USER",
        "CONTAINER",
        "STATE",
        "AGE",
        "IDLE FOR",
        "CALLS",
        "MEMORY",
        "PIDS",
    ];
    if by_engine {
        headers.insert(0, "ENGINE");
    }
    let mut table = Table::new(headers);
    for s in list {
        let mut row = vec![
            s.user.clone(),
            short_id(&s.container_id).to_owned(),
            s.state.to_string(),
            human_opt_duration(since(s.created)),
            human_opt_duration(since(s.last_active)),
            or_dash(s.calls_in_flight),
            human_bytes(s.memory_bytes),
            or_dash(s.pids),
        ];
        if by_engine {
            row.insert(0, s.engine.clone());
        }
        table.row(row);
    }
    table
}
