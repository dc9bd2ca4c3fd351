//! Issue #13's column: what gVisor (`runsc`) costs per call. One warm sandbox under the
//! daemon's default runtime (runc) and one under gVisor, made by pools of the same settings,
//! called in turn per sample over an exec and over the channel. Their numbers go in a table of
//! their own: the contenders are the runtimes, not the library and the seed.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result, ensure};
use sandbox_exec::{ExecClient, ExecRequest};
use sandbox_pool::{PoolConfig, SandboxPool, ShutdownPolicy};
use sandbox_tools::{CallContext, DockerExecutor, Executor, Transport};
use serde::Serialize;
use serde_json::json;

use crate::bench::{Bench, labels, ms_since, put_file, rotate, run_on, tools_over};
use crate::stats::{Who, median, p95, round3};

/// The runtime gVisor is registered as (by `scripts/docker-up.sh`).
pub const RUNTIME: &str = "runsc";

/// The file `read_10k` reads.
const READ_FILE: &str = "gvisor-10k.txt";

/// The four contenders: each runtime over each transport.
const CONTENDERS: [(Runtime, Transport); 4] = [
    (Runtime::Runc, Transport::Exec),
    (Runtime::Gvisor, Transport::Exec),
    (Runtime::Runc, Transport::Channel),
    (Runtime::Gvisor, Transport::Channel),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Runtime {
    Runc,
    Gvisor,
}

/// One row of the gVisor table: medians and 95th percentiles in milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct GvisorRow {
    pub workload: String,
    pub samples: usize,
    pub runc_exec: (f64, f64),
    pub runsc_exec: (f64, f64),
    pub runc_channel: (f64, f64),
    pub runsc_channel: (f64, f64),
    pub notes: String,
}

/// A user's tools over both transports, on one pool.
struct Side {
    pool: SandboxPool,
    exec: ExecClient,
    user: String,
    tools: DockerExecutor,
    channel_tools: DockerExecutor,
}

impl Side {
    fn new(pool: SandboxPool, user: &str) -> Self {
        Self {
            exec: ExecClient::new(pool.docker().clone()),
            tools: tools_over(&pool, user, Transport::Exec),
            channel_tools: tools_over(&pool, user, Transport::Channel),
            user: user.to_owned(),
            pool,
        }
    }

    fn tools(&self, transport: Transport) -> &DockerExecutor {
        match transport {
            Transport::Exec => &self.tools,
            Transport::Channel => &self.channel_tools,
        }
    }

    async fn warm_up(&self) -> Result<()> {
        ensure!(
            self.channel_tools.warm_up().await?,
            "{}'s channel opens",
            self.user
        );
        Ok(())
    }
}

/// Runs the workloads on the bench's own (runc) pool and on a gVisor pool with the image
/// `image`, which must be built for gVisor (`just image-runsc`).
pub async fn run(b: &Bench, image: &str, users: &Path) -> Result<Vec<GvisorRow>> {
    let runc_user = "g0";
    let config = PoolConfig {
        image: image.to_owned(),
        name_prefix: format!("{}-g", b.run),
        labels: labels(&b.run),
        runtime: Some(RUNTIME.to_owned()),
        idle_timeout: b.pool.config().idle_timeout,
        ..PoolConfig::default()
    };
    let users = users.join("gvisor");
    std::fs::create_dir_all(&users).context("a folder for the gVisor users")?;
    let gvisor_pool = SandboxPool::start_with_roots(b.docker.clone(), config, users)
        .await
        .context("starting the gVisor pool (is runsc registered? `just docker-up` does it)")?;
    let runc = Side::new(b.pool.clone(), runc_user);
    let gvisor = Side::new(gvisor_pool.clone(), "g0");
    let result = workloads(b, &runc, &gvisor).await;
    if let Err(e) = gvisor_pool.shutdown(ShutdownPolicy::Remove).await {
        eprintln!("sandbox-bench: gVisor pool shutdown: {e}");
    }
    result
}

async fn workloads(b: &Bench, runc: &Side, gvisor: &Side) -> Result<Vec<GvisorRow>> {
    for side in [runc, gvisor] {
        side.warm_up().await?;
        let root = side.pool.user_root(&side.user);
        let text = "0123456789abcdef\n".repeat(10 * 1024 / 17);
        put_file(&root, side.pool.sandbox_uid(), READ_FILE, &text)?;
    }
    let samples = if b.quick { 8 } else { 40 };
    let mut rows = Vec::new();

    eprintln!("gvisor warm_true");
    let series = interleave("gvisor warm_true", 2, samples, async |rt, transport| {
        let side = if rt == Runtime::Runc { runc } else { gvisor };
        let who = match transport {
            Transport::Exec => Who::Library,
            Transport::Channel => Who::Channel,
        };
        let t = Instant::now();
        let out = run_on(
            &side.pool,
            &side.exec,
            who,
            &side.user,
            ExecRequest::new(["true"]),
        )
        .await?;
        ensure!(out.exit_code() == 0, "`true` ended {:?}", out.termination);
        Ok(ms_since(t))
    })
    .await?;
    rows.push(row(
        "warm_true",
        &series,
        "SandboxPool::acquire + `true` through ExecClient::run or the channel",
    ));

    for (name, tool, args, note) in [
        (
            "shell_echo",
            "shell",
            json!({"command": "echo hi"}),
            "DockerExecutor::call_tool(\"shell\", {command: \"echo hi\"})",
        ),
        (
            "read_10k",
            "read",
            json!({"path": READ_FILE}),
            "DockerExecutor::call_tool(\"read\") of a 10 KiB file",
        ),
    ] {
        eprintln!("gvisor {name}");
        let series = interleave(name, 2, samples, async |rt, transport| {
            let side = if rt == Runtime::Runc { runc } else { gvisor };
            let t = Instant::now();
            let r = side
                .tools(transport)
                .call_tool(tool, args.clone(), &CallContext::new("bench"))
                .await;
            ensure!(r.exit_code == 0, "{tool}: {r:?}");
            Ok(ms_since(t))
        })
        .await?;
        rows.push(row(name, &series, note));
    }
    Ok(rows)
}

/// Recorded samples per contender, in [`CONTENDERS`] order.
type Samples = [Vec<f64>; 4];

/// Runs `one` for every contender, round after round, rotating who goes first, each after a
/// short pause; the first `warmup` rounds are not recorded.
async fn interleave(
    name: &str,
    warmup: usize,
    samples: usize,
    mut one: impl AsyncFnMut(Runtime, Transport) -> Result<f64>,
) -> Result<Samples> {
    let mut out: Samples = Default::default();
    let label = |i: usize| format!("{:?} over {:?}", CONTENDERS[i].0, CONTENDERS[i].1);
    rotate(
        name,
        CONTENDERS.len(),
        warmup + samples,
        label,
        async |i, round| {
            let (rt, transport) = CONTENDERS[i];
            let ms = one(rt, transport).await?;
            if round >= warmup {
                out[i].push(ms);
            }
            Ok(())
        },
    )
    .await?;
    Ok(out)
}

fn row(workload: &str, s: &Samples, notes: &str) -> GvisorRow {
    let stat = |v: &[f64]| (round3(median(v)), round3(p95(v)));
    GvisorRow {
        workload: workload.to_owned(),
        samples: s[0].len(),
        runc_exec: stat(&s[0]),
        runsc_exec: stat(&s[1]),
        runc_channel: stat(&s[2]),
        runsc_channel: stat(&s[3]),
        notes: notes.to_owned(),
    }
}

/// The gVisor table, in Markdown.
pub fn markdown(rows: &[GvisorRow]) -> String {
    let mut s = String::from(
        "\n### gVisor (runsc) against runc, per call\n\n\
         | workload | n | exec runc p50 | exec runsc p50 | exec runsc/runc | channel runc p50 | channel runsc p50 | channel runsc/runc | notes |\n\
         |---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        let ratio = |a: (f64, f64), b: (f64, f64)| a.0 / b.0;
        let _ = writeln!(
            s,
            "| {} | {} | {:.2} ms | {:.2} ms | {:.2}x | {:.2} ms | {:.2} ms | {:.2}x | {} |",
            r.workload,
            r.samples,
            r.runc_exec.0,
            r.runsc_exec.0,
            ratio(r.runsc_exec, r.runc_exec),
            r.runc_channel.0,
            r.runsc_channel.0,
            ratio(r.runsc_channel, r.runc_channel),
            r.notes
        );
    }
    s
}
