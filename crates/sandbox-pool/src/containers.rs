//! The pool's containers on the daemon: listing them by label, removing one (or a user's, by
//! name, only if it is ours), and how many calls run in one now.

use bollard::Docker;
use bollard::errors::Error as DockerError;
use bollard::models::{ContainerInspectResponse, ContainerSummary};
use bollard::query_parameters::{ListContainersOptionsBuilder, RemoveContainerOptionsBuilder};
use sandbox_exec::ExecClient;
use sandbox_exec::docker::{is_conflict, is_not_found};
use sandbox_protocol::cmd;

use crate::error::{inspect_failed, unreachable_or};
use crate::labels;
use crate::{IntoUserId, PoolError};

/// Most running execs looked at one by one; a container listing more is busy anyway.
const MAX_EXECS_INSPECTED: usize = 16;

/// How many calls run in container `container` now, by any pool; `info` is its inspect answer.
///
/// Two views, since a call over a channel has no exec of its own: the container's running
/// execs (`exec_ids`; one created but never started, by a client that gave up, is not running,
/// and a channel's serve exec or a `ps` is no call), and the supervisors in its process list
/// (`sandbox-runner run`, one per call over either transport; read by the daemon from the
/// host where the runtime allows, else by the runner inside: [`ExecClient::processes`]). What
/// cannot be read counts as running: in doubt, a container is busy.
pub async fn calls_running(
    docker: &Docker,
    container: &str,
    info: &ContainerInspectResponse,
) -> usize {
    let ids = info.exec_ids.as_deref().unwrap_or_default();
    if ids.len() > MAX_EXECS_INSPECTED {
        return ids.len();
    }
    let mut execs = 0;
    for id in ids {
        match docker.inspect_exec(id).await {
            Err(e) if is_not_found(&e) => {}
            Ok(e) if e.running != Some(true) => {}
            Ok(e)
                if is_no_call(
                    e.process_config
                        .as_ref()
                        .and_then(|p| p.arguments.as_deref()),
                ) => {}
            _ => execs += 1,
        }
    }
    let runtime = info.host_config.as_ref().and_then(|h| h.runtime.as_deref());
    let supervisors = match ExecClient::new(docker.clone())
        .processes(container, runtime)
        .await
    {
        Ok(table) => {
            let running = table
                .processes
                .iter()
                .filter(|p| {
                    let mut words = p.args.split_ascii_whitespace();
                    words.next().is_some_and(|w| w.ends_with("sandbox-runner"))
                        && words.next() == Some(cmd::RUN)
                })
                .count();
            // A list cut short may hide a call.
            running.max(usize::from(!table.complete))
        }
        // Gone, or not running: nothing runs in it.
        Err(e) if e.is_sandbox_gone() => 0,
        Err(_) => 1,
    };
    execs.max(supervisors)
}

/// Whether an exec's arguments (after the program) are a channel's `serve <id>` or a `ps`:
/// runner execs that are no call.
fn is_no_call(arguments: Option<&[String]>) -> bool {
    matches!(
        arguments.and_then(<[String]>::first).map(String::as_str),
        Some(cmd::SERVE | cmd::PS)
    )
}

/// Every container carrying pool `pool`'s labels, in any state.
pub async fn list_containers(
    docker: &Docker,
    pool: &str,
) -> Result<Vec<ContainerSummary>, PoolError> {
    let options = ListContainersOptionsBuilder::new()
        .all(true)
        .filters(&labels::pool_filter(pool))
        .build();
    docker.list_containers(Some(options)).await.map_err(|e| {
        unreachable_or(
            "listing the pool's containers",
            e,
            PoolError::ListContainers,
        )
    })
}

/// Removes user `user`'s sandbox of pool `pool`, found by its name, and nothing else: a
/// container of that name without the pool's labels is left alone ([`PoolError::NameTaken`]).
/// Returns the removed container's id, `None` when the user had no sandbox.
pub async fn remove_sandbox(
    docker: &Docker,
    pool: &str,
    user: impl IntoUserId,
) -> Result<Option<String>, PoolError> {
    let user = user.into_user_id()?;
    let user = user.as_str();
    let name = crate::config::container_name(pool, user);
    let id = match docker.inspect_container(&name, None).await {
        Ok(info) if labels::is_ours(info.config.as_ref().and_then(|c| c.labels.as_ref()), pool) => {
            info.id.unwrap_or(name)
        }
        Ok(_) => {
            return Err(PoolError::NameTaken {
                user: user.to_owned(),
                name,
            });
        }
        Err(e) if is_not_found(&e) => return Ok(None),
        Err(e) => return Err(inspect_failed(user, name, e)),
    };
    remove_container(docker, &id).await.map_err(|e| {
        unreachable_or("removing a sandbox", e, |source| {
            PoolError::RemoveContainer {
                user: user.to_owned(),
                container: id.clone(),
                source,
            }
        })
    })?;
    Ok(Some(id))
}

/// Removes a container with its anonymous volumes. Already gone, or already being removed, is
/// the outcome wanted, not an error.
pub async fn remove_container(docker: &Docker, id: &str) -> Result<(), DockerError> {
    let options = RemoveContainerOptionsBuilder::new()
        .force(true)
        .v(true)
        .build();
    match docker.remove_container(id, Some(options)).await {
        Err(e) if is_not_found(&e) || is_conflict(&e) => Ok(()),
        other => other,
    }
}
