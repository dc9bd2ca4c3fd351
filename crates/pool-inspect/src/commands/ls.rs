//! `ls`: this pool's sandboxes as the daemon knows them, with usage.

use anyhow::Result;
use sandbox_pool::bollard::Docker;
use sandbox_pool::{SandboxInfo, daemon_view};
use serde::Serialize;

use crate::failure::EXIT_OK;
use crate::table::{Table, human_bytes, human_opt_duration, or_dash, short_id, since};

/// One sandbox in `ls --json`: the library's view plus the idle time in seconds.
#[derive(Debug, Serialize)]
struct Row {
    #[serde(flatten)]
    info: SandboxInfo,
    /// Seconds since the last call (or the start), when known.
    idle_secs: Option<u64>,
}

/// `ls`.
pub async fn ls(docker: &Docker, pool: &str, json: bool) -> Result<u8> {
    let list = daemon_view(docker, pool, true).await?;
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
        let table = table(&list);
        table.print()?;
        if table.is_empty() {
            println!("(no sandboxes in pool {pool})");
        }
    }
    Ok(EXIT_OK)
}

/// The `ls` table (the demo prints it too).
pub fn table(list: &[SandboxInfo]) -> Table {
    let mut table = Table::new([
        "USER",
        "CONTAINER",
        "STATE",
        "AGE",
        "IDLE FOR",
        "CALLS",
        "MEMORY",
        "PIDS",
    ]);
    for s in list {
        table.row([
            s.user.clone(),
            short_id(&s.container_id).to_owned(),
            s.state.clone(),
            human_opt_duration(since(s.created)),
            human_opt_duration(since(s.last_active)),
            or_dash(s.calls_in_flight),
            human_bytes(s.memory_bytes),
            or_dash(s.pids),
        ]);
    }
    table
}
