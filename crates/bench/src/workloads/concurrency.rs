//! Many warm calls at once over the warm users: per-call latency and calls per second. Its own
//! loop rather than [`interleave`](crate::bench::interleave): a sample is a whole batch.

use std::time::Instant;

use anyhow::{Context, Result, anyhow};
use tokio::task::JoinSet;

use crate::bench::{Bench, WARM_USERS, ms_since, progress};
use crate::stats::{Row, Series, Who, median, order, round3};
use crate::workloads::calls::library_true;
use crate::{floor, seed};

/// One batch of `n` concurrent warm `true` calls spread over the warm users: the wall time
/// (s) and each call's latency (ms).
async fn batch(b: &Bench, who: Who, n: usize) -> Result<(f64, Vec<f64>)> {
    let mut set: JoinSet<Result<f64>> = JoinSet::new();
    let started = Instant::now();
    for i in 0..n {
        let w = b.warm[i % WARM_USERS].clone();
        match who {
            Who::Library | Who::Channel => {
                let (pool, exec) = (b.pool.clone(), b.exec.clone());
                set.spawn(async move {
                    let t = Instant::now();
                    library_true(&pool, &exec, who, &w.user).await?;
                    Ok(ms_since(t))
                });
            }
            Who::Seed => {
                set.spawn(async move {
                    let t = Instant::now();
                    seed::run_ok(seed::shell(&w.name, &[], "true"), None).await?;
                    Ok(ms_since(t))
                });
            }
            Who::Floor => {
                let docker = b.docker.clone();
                set.spawn(async move {
                    let t = Instant::now();
                    floor::exec_ok(&docker, &w.id, &["true"], &[], None, false).await?;
                    Ok(ms_since(t))
                });
            }
        }
    }
    let mut latencies = Vec::with_capacity(n);
    while let Some(joined) = set.join_next().await {
        latencies.push(joined.map_err(|e| anyhow!("a call task failed: {e}"))??);
    }
    Ok((started.elapsed().as_secs_f64(), latencies))
}

/// `n` calls at once over 8 users: per-call latency and calls per second.
pub(super) async fn concurrent(b: &Bench, n: usize) -> Result<Row> {
    let name = format!("concurrent_{n}");
    let rounds = b.rounds(1, if n <= 16 { 10 } else { 6 }, 2);
    let (mut latency, mut rate) = (Series::default(), Series::default());
    let total = rounds.warmup + rounds.samples;
    let started = Instant::now();
    for round in 0..total {
        for who in order(round) {
            let (wall, calls) = batch(b, who, n)
                .await
                .with_context(|| format!("{name}: {} in round {}", who.name(), round + 1))?;
            if round >= rounds.warmup {
                rate.push(who, n as f64 / wall);
                for ms in calls {
                    latency.push(who, ms);
                }
            }
        }
        progress(&name, round + 1, total, started);
    }
    let calls_s = |who| round3(median(rate.of(who)));
    let mut row = Row::new(&name, &latency)
        .note(format!(
            "per-call latency; calls/s channel {:.1} / library {:.1} / seed {:.1} / floor {:.1}",
            calls_s(Who::Channel),
            calls_s(Who::Library),
            calls_s(Who::Seed),
            calls_s(Who::Floor)
        ))
        .detail("batches", rounds.samples)
        .detail("calls_per_batch", n)
        .detail("users", WARM_USERS)
        .detail(
            "library",
            "n tasks of SandboxPool::acquire + ExecClient::run([true])",
        )
        .detail(
            "seed",
            "n docker exec ... setsid bash -c true processes at once",
        )
        .detail("floor", "n tasks of raw create + start + inspect `true`");
    // `samples` counts calls here; the batches are in `details`.
    row.channel_calls_s = Some(calls_s(Who::Channel));
    row.library_calls_s = Some(calls_s(Who::Library));
    row.seed_calls_s = Some(calls_s(Who::Seed));
    row.floor_calls_s = Some(calls_s(Who::Floor));
    Ok(row)
}
