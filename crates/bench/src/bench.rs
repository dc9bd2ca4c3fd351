//! The bench's set-up: one Docker client, a pool of warm sandboxes with bench labels, the
//! library's executor over it, the interleaving loop, and the sweep that removes every
//! container of this run.

use std::collections::{BTreeMap, HashMap};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bollard::Docker;
use bollard::query_parameters::ListContainersOptionsBuilder;
use sandbox_exec::{ExecClient, ExecRequest, Outcome};
use sandbox_pool::{ExtraMount, PoolConfig, SandboxPool};
use sandbox_tools::{
    CallContext, DockerExecutor, Executor, SandboxToolsOnly, ToolResult, ToolsConfig, Transport,
};
use serde_json::Value;

use crate::sandbox::{RUNNER_MOUNT, WORKSPACE};
use crate::stats::{ORDER, Series, Who};

/// Label on every container the bench makes.
pub const BENCH_LABEL: &str = "zcbot.bench";
/// Label naming this run (its pool prefix): the sweep removes exactly these.
pub const RUN_LABEL: &str = "zcbot.bench.run";
/// Users with a warm sandbox: `u0` serves the single-call workloads, all eight the
/// concurrency ones.
pub const WARM_USERS: usize = 8;

/// How many rounds a workload runs.
#[derive(Debug, Clone, Copy)]
pub struct Rounds {
    /// Not recorded: they warm caches, connections and the page cache.
    pub warmup: usize,
    /// Recorded.
    pub samples: usize,
}

/// A warm sandbox as the three contenders address it.
#[derive(Debug, Clone)]
pub struct Warm {
    pub user: String,
    /// What the library and the floor use.
    pub id: String,
    /// What the seed's CLI used (`<prefix>-<user>`).
    pub name: String,
    /// The user root on the host.
    pub root: PathBuf,
}

/// Everything the workloads share.
pub struct Bench {
    pub docker: Docker,
    pub pool: SandboxPool,
    /// The library below the tool layer (what `DockerExecutor` uses inside).
    pub exec: ExecClient,
    /// The library at the tool layer, for user `u0`, one exec per call.
    pub tools: DockerExecutor,
    /// The same over the sandbox's channel.
    pub channel_tools: DockerExecutor,
    pub warm: Vec<Warm>,
    pub quick: bool,
    /// Run name: pool prefix and the value of [`RUN_LABEL`].
    pub run: String,
}

impl std::fmt::Debug for Bench {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bench")
            .field("run", &self.run)
            .field("quick", &self.quick)
            .finish_non_exhaustive()
    }
}

/// The library at the tool layer for `user` of `pool`, over `transport`, as the agent service
/// makes it.
pub fn tools_over(pool: &SandboxPool, user: &str, transport: Transport) -> DockerExecutor {
    DockerExecutor::with_config(
        Arc::new(SandboxToolsOnly),
        pool.clone(),
        ToolsConfig {
            transport,
            ..ToolsConfig::default()
        },
        user,
        pool.user_root(user),
    )
}

/// The labels of every container of run `run`.
pub fn labels(run: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (BENCH_LABEL.to_owned(), "1".to_owned()),
        (RUN_LABEL.to_owned(), run.to_owned()),
    ])
}

impl Bench {
    /// Starts the pool (network `none`, the pool's defaults otherwise) and makes the warm
    /// sandboxes.
    pub async fn setup(
        docker: Docker,
        image: &str,
        seed_dir: &Path,
        users_dir: &Path,
        run: &str,
        quick: bool,
    ) -> Result<Self> {
        let config = PoolConfig {
            image: image.to_owned(),
            name_prefix: run.to_owned(),
            labels: labels(run),
            extra_mounts: vec![ExtraMount {
                source: seed_dir.to_owned(),
                target: RUNNER_MOUNT.to_owned(),
            }],
            // The full run is longer than the default 5 minutes: the reaper must not remove a
            // warm sandbox between two workloads (the next call would pay a cold start).
            idle_timeout: Duration::from_secs(6 * 3600),
            ..PoolConfig::default()
        };
        let pool = SandboxPool::start_with_roots(docker.clone(), config, users_dir.to_owned())
            .await
            .context("starting the pool")?;
        let (tools, channel_tools) = (
            tools_over(&pool, "u0", Transport::Exec),
            tools_over(&pool, "u0", Transport::Channel),
        );
        let mut warm = Vec::new();
        for i in 0..WARM_USERS {
            let user = format!("u{i}");
            let sandbox = pool
                .ensure(&user)
                .await
                .with_context(|| format!("making the warm sandbox of {user}"))?;
            warm.push(Warm {
                user,
                id: sandbox.container_id,
                name: sandbox.name,
                root: sandbox.user_root,
            });
        }
        Ok(Self {
            exec: ExecClient::new(docker.clone()),
            docker,
            pool,
            tools,
            channel_tools,
            warm,
            quick,
            run: run.to_owned(),
        })
    }

    /// `u0`'s sandbox.
    pub fn main(&self) -> &Warm {
        &self.warm[0]
    }

    /// `full` rounds, or `quick` with `BENCH_QUICK=1`.
    pub fn rounds(&self, warmup: usize, full: usize, quick: usize) -> Rounds {
        Rounds {
            warmup,
            samples: if self.quick { quick } else { full },
        }
    }

    /// The library below the tool layer: lease the user's sandbox from the pool, run `req` as
    /// the sandbox user in `/workspace` (over its channel for [`Who::Channel`], an exec of its
    /// own for [`Who::Library`]), give the lease back.
    pub async fn library_run(&self, who: Who, user: &str, req: ExecRequest) -> Result<Outcome> {
        run_on(&self.pool, &self.exec, who, user, req).await
    }

    /// The library at the tool layer, as the agent service calls it, over `who`'s transport.
    pub async fn call_tool(&self, who: Who, tool: &str, args: Value) -> ToolResult {
        let tools = match who {
            Who::Channel => &self.channel_tools,
            _ => &self.tools,
        };
        tools
            .call_tool(tool, args, &CallContext::new("bench"))
            .await
    }

    /// Processes in `container` whose command line matches `pred`, as the library lists them
    /// for the runtime the bench's sandboxes use.
    pub async fn processes(
        &self,
        container: &str,
        pred: impl Fn(&str) -> bool,
    ) -> Result<Vec<String>> {
        let runtime = self.pool.config().runtime.clone();
        let table = ExecClient::new(self.docker.clone())
            .processes(container, runtime.as_deref())
            .await
            .context("listing the container's processes")?;
        Ok(table
            .processes
            .into_iter()
            .map(|p| p.args)
            .filter(|args| pred(args))
            .collect())
    }
}

/// [`Bench::library_run`] with the pool and client given (for tasks of their own).
pub async fn run_on(
    pool: &SandboxPool,
    exec: &ExecClient,
    who: Who,
    user: &str,
    req: ExecRequest,
) -> Result<Outcome> {
    let lease = pool.acquire(user).await?;
    let req = req
        .with_user(lease.exec_user.clone())
        .with_working_dir(WORKSPACE);
    if who == Who::Channel {
        let channel = lease
            .open_channel(exec)
            .await
            .context("the sandbox's channel would not open")?;
        return Ok(channel.run(req).await?);
    }
    Ok(exec.run(&lease.container_id, req).await?)
}

/// The pause before each sample (see [`interleave`]).
const SETTLE: Duration = Duration::from_millis(25);

/// Runs `one(i, round)` for each of `n` contenders, round after round, the order rotating each
/// round (round `r` starts with contender `r % n`), each call after a short pause. The error
/// of a call names `name`, the contender (by `label`) and the round. Progress goes to stderr.
pub async fn rotate(
    name: &str,
    n: usize,
    total: usize,
    label: impl Fn(usize) -> String,
    mut one: impl AsyncFnMut(usize, usize) -> Result<()>,
) -> Result<()> {
    let started = Instant::now();
    for round in 0..total {
        for k in 0..n {
            let i = (k + round) % n;
            // The daemon tears an exec down after its client has the result: let that settle
            // so it lands in nobody's time (on 2 cores it would in the next contender's).
            tokio::time::sleep(SETTLE).await;
            one(i, round)
                .await
                .with_context(|| format!("{name}: {} in round {}", label(i), round + 1))?;
        }
        progress(name, round + 1, total, started);
    }
    Ok(())
}

/// Runs `one` for every contender, round after round (in [`order`](crate::stats::order)),
/// each after a short pause, recording all but the warm-up rounds.
pub async fn interleave(
    name: &str,
    rounds: Rounds,
    mut one: impl AsyncFnMut(Who, bool) -> Result<f64>,
) -> Result<Series> {
    let mut series = Series::default();
    let total = rounds.warmup + rounds.samples;
    rotate(
        name,
        ORDER.len(),
        total,
        |i| ORDER[i].name().to_owned(),
        async |i, round| {
            let (who, recorded) = (ORDER[i], round >= rounds.warmup);
            let value = one(who, recorded).await?;
            if recorded {
                series.push(who, value);
            }
            Ok(())
        },
    )
    .await?;
    Ok(series)
}

/// Writes `text` as `name` into the user root `root` on the host, owned by the sandbox uid
/// `uid` (set-up, not timed).
pub fn put_file(root: &Path, uid: u32, name: &str, text: &str) -> Result<()> {
    let path = root.join(name);
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    let (id, gid) = (
        rustix::process::Uid::from_raw(uid),
        rustix::process::Gid::from_raw(uid),
    );
    rustix::fs::chown(&path, Some(id), Some(gid)).context("chown the bench file")?;
    Ok(())
}

/// One progress line on stderr.
/// On a terminal the line is rewritten every round; in a log only the last round is written.
pub fn progress(name: &str, round: usize, total: usize, started: Instant) {
    let secs = started.elapsed().as_secs_f64();
    if std::io::stderr().is_terminal() {
        eprint!("\r  {name}: round {round}/{total} ({secs:.0} s)   ");
        if round == total {
            eprintln!();
        }
    } else if round == total {
        eprintln!("  {name}: {total} rounds in {secs:.0} s");
    }
}

/// Milliseconds since `t`.
pub fn ms_since(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

/// Force-removes every container of run `run` (by its label, never by name), whatever
/// state it is in. Returns how many were removed.
pub async fn sweep(docker: &Docker, run: &str) -> Result<usize> {
    let filters = HashMap::from([(
        "label".to_owned(),
        vec![format!("{BENCH_LABEL}=1"), format!("{RUN_LABEL}={run}")],
    )]);
    let options = ListContainersOptionsBuilder::new()
        .all(true)
        .filters(&filters)
        .build();
    let containers = docker
        .list_containers(Some(options))
        .await
        .context("listing the bench's containers")?;
    let mut removed = 0;
    let mut failed = Vec::new();
    for c in containers {
        let id = c.id.unwrap_or_default();
        // Already gone or being removed is fine (the pool's own shutdown may race us).
        match sandbox_pool::remove_container(docker, &id).await {
            Ok(()) => removed += 1,
            Err(e) => failed.push(format!("{id}: {e}")),
        }
    }
    if !failed.is_empty() {
        bail!("could not remove: {}", failed.join("; "));
    }
    Ok(removed)
}
