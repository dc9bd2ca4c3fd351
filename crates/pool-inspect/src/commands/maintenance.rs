//! `reap`, `gc` and `rm`: removing sandboxes on the operator's word.

use anyhow::Result;
use sandbox_pool::bollard::Docker;
use sandbox_pool::{SandboxState, daemon_view, is_reapable, validate_user};

use crate::config::FileConfig;
use crate::daemon;
use crate::failure::{EXIT_OK, usage};
use crate::table::{human_duration, since};
use sandbox_pool::Verdict;

/// `reap`: what the service's reaper would remove now, judged from the daemon: running
/// sandboxes with no call in flight whose last call (or start) is older than the idle
/// timeout. A call that starts between our look and the removal finds its sandbox gone; the
/// service then makes a new one (`DockerExecutor` retries once when nothing ran yet).
pub async fn reap(docker: &Docker, config: &FileConfig) -> Result<u8> {
    let pool = &config.pool.name_prefix;
    let idle_timeout = config.pool.idle_timeout;
    let mut removed = 0;
    for s in daemon_view(docker, sandbox_pool::LOCAL_ENGINE, pool, false).await? {
        // Stopped ones are `gc`'s; unknown activity or calls are never reaped.
        let (Some(calls), Some(idle)) = (s.calls_in_flight, since(s.last_active)) else {
            continue;
        };
        if s.state != SandboxState::Running || !is_reapable(calls, idle, idle_timeout) {
            continue;
        }
        sandbox_pool::remove_container(docker, &s.container_id).await?;
        daemon::release_disk(config, &s.user);
        println!(
            "removed {} (user {}, idle for {})",
            s.name,
            s.user,
            human_duration(idle)
        );
        removed += 1;
    }
    if removed == 0 {
        println!(
            "nothing to reap in pool {pool} (idle timeout {})",
            human_duration(idle_timeout)
        );
    }
    Ok(EXIT_OK)
}

/// `gc`: this pool's containers that the pool would not adopt at start-up (not running, or
/// made for another configuration or image, or misnamed), removed or, with `dry_run`, listed.
pub async fn gc(docker: &Docker, config: &FileConfig, dry_run: bool) -> Result<u8> {
    let pool = &config.pool.name_prefix;
    let judge = daemon::judge(docker, config).await?;
    let mut found = 0;
    for c in sandbox_pool::list_containers(docker, pool).await? {
        let why = match judge.verdict(&c) {
            Verdict::Current => continue,
            Verdict::NotRunning { state } => format!("not running ({state})"),
            Verdict::Orphaned { why } => format!("orphaned: {why}"),
        };
        let (name, user) = (daemon::name_of(&c), daemon::user_of(&c));
        if dry_run {
            println!("would remove {name} (user {user}): {why}");
        } else {
            sandbox_pool::remove_container(docker, c.id.as_deref().unwrap_or(&name)).await?;
            if validate_user(&user).is_ok() {
                daemon::release_disk(config, &user);
            }
            println!("removed {name} (user {user}): {why}");
        }
        found += 1;
    }
    if found == 0 {
        println!("nothing to collect in pool {pool}");
    }
    Ok(EXIT_OK)
}

/// `rm USER`: that user's sandbox, found by name, and nothing else (no pool is started, so
/// nothing is reconciled).
pub async fn rm(docker: &Docker, config: &FileConfig, user: &str) -> Result<u8> {
    validate_user(user).map_err(|e| usage(e.to_string()))?;
    let pool_name = &config.pool.name_prefix;
    let name = daemon::container_name(config, user);
    match sandbox_pool::remove_sandbox(docker, pool_name, user).await? {
        Some(_) => {
            daemon::release_disk(config, user);
            println!("removed {name} (user {user})");
        }
        None => println!("user {user} has no sandbox in pool {pool_name}"),
    }
    Ok(EXIT_OK)
}
