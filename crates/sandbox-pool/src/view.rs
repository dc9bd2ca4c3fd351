//! The operator's view of a pool read from the daemon alone (for `pool-inspect`, which runs
//! in another process than the service and so cannot see the pool's memory).
//!
//! Last activity comes from the daemon's recent events (`exec_start`/`exec_die` of the
//! container; the daemon keeps the last few hundred), falling back to the container's start;
//! calls in flight are the container's running execs.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use bollard::Docker;
use bollard::models::ContainerSummaryStateEnum;
use bollard::query_parameters::{EventsOptionsBuilder, StatsOptionsBuilder};
use futures_util::StreamExt;

use sandbox_exec::docker::parse_rfc3339;

use crate::PoolError;
use crate::channel::ChannelInfo;
use crate::containers::{calls_running, list_containers};
use crate::labels::{self, USER};

/// How far back to look for a container's last call in the daemon's events.
const EVENTS_WINDOW: Duration = Duration::from_secs(24 * 3600);

/// A sandbox as the operator sees it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SandboxInfo {
    /// The engine it runs on (`local` for a pool of one engine).
    pub engine: String,
    /// The user (as its container's label says, for the daemon's view).
    pub user: String,
    /// Container id.
    pub container_id: String,
    /// Container name.
    pub name: String,
    /// Where its container stands.
    pub state: SandboxState,
    /// When the container was created.
    #[serde(with = "optional_unix_secs")]
    pub created: Option<SystemTime>,
    /// Last call (end) or creation.
    #[serde(with = "optional_unix_secs")]
    pub last_active: Option<SystemTime>,
    /// Calls running now, when known.
    pub calls_in_flight: Option<usize>,
    /// Memory in use (stats API), when asked for.
    pub memory_bytes: Option<u64>,
    /// Processes and threads (stats API), when asked for.
    pub pids: Option<u64>,
    /// Its channel, when known (the pool's own memory knows it; the daemon view does not).
    pub channel: Option<ChannelInfo>,
}

mod optional_unix_secs {
    use std::time::{SystemTime, UNIX_EPOCH};

    pub fn serialize<S: serde::Serializer>(
        t: &Option<SystemTime>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match t.and_then(|t| t.duration_since(UNIX_EPOCH).ok()) {
            Some(d) => s.serialize_some(&d.as_secs()),
            None => s.serialize_none(),
        }
    }
}

/// Where a sandbox's container stands: the daemon's container states, and `removed` for one
/// the pool knows is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SandboxState {
    /// Made, never started.
    Created,
    /// Running.
    Running,
    /// Paused.
    Paused,
    /// Being restarted by the daemon.
    Restarting,
    /// Being removed.
    Removing,
    /// Being stopped.
    Stopping,
    /// Its main process ended.
    Exited,
    /// The daemon failed to stop or remove it.
    Dead,
    /// Removed (the pool saw it go).
    Removed,
    /// The daemon did not say.
    Unknown,
}

impl SandboxState {
    /// The word the daemon (and the operator's table) uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Running => "running",
            Self::Paused => "paused",
            Self::Restarting => "restarting",
            Self::Removing => "removing",
            Self::Stopping => "stopping",
            Self::Exited => "exited",
            Self::Dead => "dead",
            Self::Removed => "removed",
            Self::Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for SandboxState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<Option<ContainerSummaryStateEnum>> for SandboxState {
    fn from(state: Option<ContainerSummaryStateEnum>) -> Self {
        use ContainerSummaryStateEnum as S;
        match state {
            Some(S::CREATED) => Self::Created,
            Some(S::RUNNING) => Self::Running,
            Some(S::PAUSED) => Self::Paused,
            Some(S::RESTARTING) => Self::Restarting,
            Some(S::REMOVING) => Self::Removing,
            Some(S::STOPPING) => Self::Stopping,
            Some(S::EXITED) => Self::Exited,
            Some(S::DEAD) => Self::Dead,
            Some(S::EMPTY) | None => Self::Unknown,
        }
    }
}

/// Memory and process count of one container, from one stats sample.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Usage {
    /// Memory in use, bytes.
    pub memory_bytes: Option<u64>,
    /// Processes and threads.
    pub pids: Option<u64>,
}

/// One stats sample of `container`.
pub async fn usage(docker: &Docker, container: &str) -> Result<Usage, PoolError> {
    let options = StatsOptionsBuilder::new()
        .stream(false)
        .one_shot(true)
        .build();
    let mut stream = docker.stats(container, Some(options));
    let stats = match stream.next().await {
        Some(Ok(s)) => s,
        Some(Err(source)) => {
            return Err(PoolError::Stats {
                container: container.to_owned(),
                source,
            });
        }
        None => return Ok(Usage::default()),
    };
    Ok(Usage {
        memory_bytes: stats.memory_stats.and_then(|m| m.usage),
        pids: stats.pids_stats.and_then(|p| p.current),
    })
}

/// This pool's containers as the daemon of `engine` knows them, with usage when `with_usage`.
pub async fn daemon_view(
    docker: &Docker,
    engine: &str,
    pool: &str,
    with_usage: bool,
) -> Result<Vec<SandboxInfo>, PoolError> {
    let containers = list_containers(docker, pool).await?;
    let last_calls = last_calls(docker, pool).await;
    let mut list = Vec::new();
    for c in containers {
        let id = c.id.clone().unwrap_or_default();
        let state = SandboxState::from(c.state);
        let running = state == SandboxState::Running;
        let (started, in_flight) = match docker.inspect_container(&id, None).await {
            Ok(info) => {
                let started = info
                    .state
                    .as_ref()
                    .and_then(|s| s.started_at.as_deref())
                    .and_then(parse_rfc3339);
                let in_flight = calls_running(docker, &id, &info).await;
                (started, Some(in_flight))
            }
            Err(_) => (None, None),
        };
        let used = if with_usage && running {
            usage(docker, &id).await.unwrap_or_default()
        } else {
            Usage::default()
        };
        list.push(SandboxInfo {
            engine: engine.to_owned(),
            user: c
                .labels
                .as_ref()
                .and_then(|l| l.get(USER))
                .cloned()
                .unwrap_or_default(),
            name: c
                .names
                .as_ref()
                .and_then(|n| n.first())
                .map(|n| n.trim_start_matches('/').to_owned())
                .unwrap_or_default(),
            state,
            created: c
                .created
                .and_then(|s| u64::try_from(s).ok())
                .map(|s| SystemTime::UNIX_EPOCH + Duration::from_secs(s)),
            last_active: last_calls.get(&id).copied().or(started),
            calls_in_flight: in_flight,
            memory_bytes: used.memory_bytes,
            pids: used.pids,
            channel: None,
            container_id: id,
        });
    }
    list.sort_by(|a, b| a.user.cmp(&b.user));
    Ok(list)
}

/// Latest exec start or end per container id, from the daemon's retained events.
async fn last_calls(docker: &Docker, pool: &str) -> HashMap<String, SystemTime> {
    let now = SystemTime::now();
    let secs = |t: SystemTime| {
        t.duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs()
            .to_string()
    };
    let mut filters = labels::pool_filter(pool);
    filters.insert("type".to_owned(), vec!["container".to_owned()]);
    filters.insert(
        "event".to_owned(),
        vec!["exec_start".to_owned(), "exec_die".to_owned()],
    );
    let options = EventsOptionsBuilder::new()
        .since(&secs(now - EVENTS_WINDOW))
        .until(&secs(now))
        .filters(&filters)
        .build();
    let mut events = docker.events(Some(options));
    let mut last = HashMap::new();
    while let Some(Ok(event)) = events.next().await {
        let (Some(actor), Some(nanos)) = (event.actor, event.time_nano) else {
            continue;
        };
        let at = SystemTime::UNIX_EPOCH + Duration::from_nanos(nanos.max(0) as u64);
        let entry = last.entry(actor.id.unwrap_or_default()).or_insert(at);
        *entry = (*entry).max(at);
    }
    last
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_daemon_state_has_its_word() {
        use ContainerSummaryStateEnum as S;
        for (daemon, ours) in [
            (Some(S::CREATED), SandboxState::Created),
            (Some(S::RUNNING), SandboxState::Running),
            (Some(S::PAUSED), SandboxState::Paused),
            (Some(S::RESTARTING), SandboxState::Restarting),
            (Some(S::REMOVING), SandboxState::Removing),
            (Some(S::STOPPING), SandboxState::Stopping),
            (Some(S::EXITED), SandboxState::Exited),
            (Some(S::DEAD), SandboxState::Dead),
            (Some(S::EMPTY), SandboxState::Unknown),
            (None, SandboxState::Unknown),
        ] {
            assert_eq!(SandboxState::from(daemon), ours);
            if let Some(d) = daemon.filter(|d| *d != S::EMPTY) {
                // The operator's table and JSON keep the daemon's own words.
                assert_eq!(ours.to_string(), d.to_string());
                assert_eq!(
                    serde_json::to_value(ours).expect("json"),
                    serde_json::Value::String(d.to_string())
                );
            }
        }
        assert_eq!(SandboxState::Removed.as_str(), "removed");
    }
}
