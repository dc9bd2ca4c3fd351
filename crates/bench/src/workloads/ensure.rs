//! `ensure`: a user whose sandbox is warm (answered from memory, where a CLI pool or the raw API
//! asks the daemon), and a new user, until the first call in the new sandbox has run.

use std::time::Instant;

use anyhow::{Context, Result, ensure};
use sandbox_exec::ExecRequest;

use crate::bench::{Bench, interleave, ms_since};
use crate::sandbox::WORKSPACE;
use crate::stats::{Row, Who};
use crate::workloads::calls::library_true;
use crate::workloads::template::{ColdTemplate, remove_container};
use crate::{floor, seed};

/// `ensure` of a user whose sandbox is warm. The library answers from memory; a CLI pool has
/// to ask the daemon whether the container runs (`docker inspect`), the raw API likewise.
pub(super) async fn warm_ensure(b: &Bench) -> Result<Row> {
    let w = b.main();
    let series = interleave("warm_ensure", b.rounds(20, 300, 60), async |who, _| {
        let t = Instant::now();
        match who {
            Who::Library | Who::Channel => drop(b.pool.acquire(&w.user).await?),
            Who::Seed => {
                seed::run_ok(seed::inspect_running(&w.name), None).await?;
            }
            Who::Floor => {
                b.docker
                    .inspect_container(&w.id, None)
                    .await
                    .context("inspect_container")?;
            }
        }
        Ok(ms_since(t))
    })
    .await?;
    Ok(Row::new("warm_ensure", &series)
        .note("library answers from memory (no daemon round trip)")
        .detail(
            "library",
            "SandboxPool::acquire on a sandbox seen healthy within health_ttl",
        )
        .detail(
            "seed",
            "docker inspect --format {{.State.Running}} C (a CLI pool's check)",
        )
        .detail("floor", "inspect_container on one client"))
}

/// A new sandbox until its first call has run. Each is removed after its sample (not timed).
pub(super) async fn cold_ensure(b: &Bench) -> Result<Row> {
    let template = ColdTemplate::of_pool(b).await?;
    let mut n = 0;
    let series = interleave("cold_ensure", b.rounds(1, 30, 5), async |who, _| {
        n += 1;
        match who {
            Who::Library => {
                let user = format!("cold{n}");
                let t = Instant::now();
                let sandbox = b.pool.ensure(&user).await?;
                let req = ExecRequest::new(["true"])
                    .with_user(sandbox.exec_user.clone())
                    .with_working_dir(WORKSPACE);
                let out = b.exec.run(&sandbox.container_id, req).await?;
                let ms = ms_since(t);
                ensure!(
                    out.exit_code() == 0,
                    "library first call: {:?}",
                    out.termination
                );
                b.pool.remove(&user).await?;
                Ok(ms)
            }
            Who::Channel => {
                let user = format!("cold{n}");
                let t = Instant::now();
                b.pool.ensure(&user).await?;
                library_true(&b.pool, &b.exec, who, &user).await?;
                let ms = ms_since(t);
                b.pool.remove(&user).await?;
                Ok(ms)
            }
            Who::Floor => {
                let name = format!("{}-floor-cold{n}", b.run);
                let t = Instant::now();
                let id = template.create_and_start(b, &name).await?;
                floor::exec_ok(&b.docker, &id, &["true"], &[], None, false).await?;
                let ms = ms_since(t);
                remove_container(b, &id).await?;
                Ok(ms)
            }
            Who::Seed => {
                let name = format!("{}-seed-cold{n}", b.run);
                let t = Instant::now();
                let result = async {
                    seed::run_ok(seed::run_detached(&name, &template.seed_flags), None).await?;
                    seed::run_ok(seed::shell(&name, &[], "true"), None).await
                }
                .await;
                let ms = ms_since(t);
                // Remove it even when the sample failed; it carries the run label anyway.
                let removed = remove_container(b, &name).await;
                result?;
                removed?;
                Ok(ms)
            }
        }
    })
    .await?;
    Ok(Row::new("cold_ensure", &series)
        .detail(
            "library",
            "SandboxPool::ensure(new user) + first ExecClient::run([true])",
        )
        .detail(
            "channel",
            "SandboxPool::ensure(new user) + open its channel + first Channel::run([true])",
        )
        .detail(
            "seed",
            format!(
                "docker run -d --name N {} + docker exec ... N setsid bash -c true",
                template.seed_flags.join(" ")
            ),
        )
        .detail(
            "floor",
            "raw create_container (the pool container's Config + HostConfig) + start + first exec `true`",
        ))
}
