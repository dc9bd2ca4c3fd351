//! The fixed cost of one warm call below the tool layer: its time and the client CPU it takes.
//! Also the call itself ([`library_true`]), which the concurrency and cold-start workloads time
//! too.

use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use sandbox_exec::{ExecClient, ExecRequest};
use sandbox_pool::SandboxPool;

use crate::bench::{Bench, interleave, ms_since, run_on};
use crate::stats::{Row, Who, median, round3};
use crate::{cpu, floor, seed};

/// `true` through the library below the tool layer (over `who`'s transport), ending with exit
/// 0.
pub(super) async fn library_true(
    pool: &SandboxPool,
    exec: &ExecClient,
    who: Who,
    user: &str,
) -> Result<()> {
    let out = run_on(pool, exec, who, user, ExecRequest::new(["true"])).await?;
    ensure!(
        out.exit_code() == 0,
        "library `true` ended {:?}",
        out.termination
    );
    Ok(())
}

/// A warm call that does nothing: the fixed cost of one call.
pub(super) async fn warm_true(b: &Bench) -> Result<Row> {
    let w = b.main();
    let series = interleave("warm_true", b.rounds(2, 40, 8), async |who, _| {
        let t = Instant::now();
        match who {
            Who::Library | Who::Channel => library_true(&b.pool, &b.exec, who, &w.user).await?,
            Who::Seed => {
                seed::run_ok(seed::shell(&w.name, &[], "true"), None).await?;
            }
            Who::Floor => {
                floor::exec_ok(&b.docker, &w.id, &["true"], &[], None, false).await?;
            }
        }
        Ok(ms_since(t))
    })
    .await?;
    Ok(Row::new("warm_true", &series)
        .detail(
            "library",
            "SandboxPool::acquire + ExecClient::run([\"true\"])",
        )
        .detail(
            "channel",
            "SandboxPool::acquire + Lease::channel + Channel::run([\"true\"])",
        )
        .detail(
            "seed",
            "docker exec --user zcbot --workdir /workspace C setsid bash -c true",
        )
        .detail(
            "floor",
            "create_exec([\"true\"]) + start_exec attached + drain + inspect_exec",
        ))
}

/// Client CPU (user + system) per warm `true`, over batches of calls.
pub(super) async fn cpu_per_call(b: &Bench) -> Result<Row> {
    let w = b.main();
    let calls = if b.quick { 5 } else { 10 };
    let mut seed_own = Vec::new();
    let per_call = |d: Duration| d.as_secs_f64() * 1000.0 / calls as f64;
    let series = interleave(
        "cpu_per_call",
        b.rounds(1, 10, 4),
        async |who, recorded| match who {
            Who::Library | Who::Channel => {
                let c0 = cpu::own();
                for _ in 0..calls {
                    library_true(&b.pool, &b.exec, who, &w.user).await?;
                }
                Ok(per_call(cpu::own() - c0))
            }
            Who::Seed => {
                let (c0, o0) = (cpu::children()?, cpu::own());
                for _ in 0..calls {
                    seed::run_ok(seed::shell(&w.name, &[], "true"), None).await?;
                }
                if recorded {
                    seed_own.push(per_call(cpu::own() - o0));
                }
                Ok(per_call(cpu::children()? - c0))
            }
            Who::Floor => {
                let c0 = cpu::own();
                for _ in 0..calls {
                    floor::exec_ok(&b.docker, &w.id, &["true"], &[], None, false).await?;
                }
                Ok(per_call(cpu::own() - c0))
            }
        },
    )
    .await?;
    let spawn = round3(median(&seed_own));
    Ok(Row::new("cpu_per_call", &series)
        .unit("client CPU ms per call (user+sys)")
        .note(format!(
            "CPU ms per call, {calls} calls per sample; seed = its CLI children, plus {spawn:.2} ms in the caller to spawn and wait"
        ))
        .detail("calls_per_sample", calls)
        .detail("seed_caller_cpu_ms_per_call", spawn)
        .detail(
            "library",
            "CLOCK_PROCESS_CPUTIME_ID of the bench process over acquire + ExecClient::run([true])",
        )
        .detail(
            "seed",
            "cutime+cstime (RUSAGE_CHILDREN) of the docker CLI children, clock-tick resolution",
        )
        .detail("floor", "CLOCK_PROCESS_CPUTIME_ID over the raw API loop"))
}
