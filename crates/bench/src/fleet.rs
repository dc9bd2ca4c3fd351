//! Issue #12's workloads: a fleet over three extra dockerd that the bench starts on this
//! machine (each its own socket, data root, exec root and containerd), crashes, freezes and
//! stops itself. Their numbers go in a table of their own: the contenders are one engine and
//! three, not the library and the seed.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use e2e_tests::SecondDaemon;
use sandbox_pool::engine::rank;
use sandbox_pool::{EngineConfig, Fleet, PoolConfig, ShutdownPolicy};
use sandbox_tools::{CallContext, DockerExecutor, Executor, SandboxToolsOnly, ToolsConfig};
use serde::Serialize;
use serde_json::json;
use tokio::task::JoinSet;

use crate::bench::labels;
use crate::stats::{median, p95, round3};

/// Users calling at once in `engines_32`.
const USERS: usize = 32;

/// One row of the engines table.
#[derive(Debug, Clone, Serialize)]
pub struct FleetRow {
    pub workload: String,
    pub unit: String,
    /// The median, and the 95th percentile, of the first contender (one engine; or the
    /// failover's time).
    pub p50: f64,
    pub p95: f64,
    /// The second contender (three engines), where there is one.
    pub other_p50: Option<f64>,
    pub other_p95: Option<f64>,
    pub samples: usize,
    pub notes: String,
    /// Three engines with every user on one: the fleet's own cost (`engines_32`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub own_cost_ratio: Option<f64>,
}

/// The extra daemons, with the image loaded.
struct Engines {
    daemons: Vec<SecondDaemon>,
}

impl Engines {
    async fn start(image: &str) -> Self {
        let mut daemons = Vec::new();
        for _ in 0..3 {
            let d = SecondDaemon::start().await;
            d.load_image(image).await;
            daemons.push(d);
        }
        Self { daemons }
    }

    fn configs(&self, n: usize) -> Vec<EngineConfig> {
        SecondDaemon::engines(&self.daemons[..n])
    }
}

/// Everything one fleet's calls need.
struct Side {
    fleet: Fleet,
    tools: Vec<DockerExecutor>,
}

impl Side {
    async fn start(
        engines: Vec<EngineConfig>,
        config: PoolConfig,
        users: &Path,
        names: &[String],
    ) -> Result<Self> {
        let fleet = Fleet::start_with_roots(engines, config, users.to_owned())
            .await
            .context("starting a fleet")?;
        let mut tools = Vec::new();
        for user in names {
            let t = DockerExecutor::with_config(
                Arc::new(SandboxToolsOnly),
                fleet.clone(),
                ToolsConfig::default(),
                user.clone(),
                fleet.user_root(user),
            );
            ensure!(t.warm_up().await?, "{user}'s channel opens");
            tools.push(t);
        }
        Ok(Self { fleet, tools })
    }
}

async fn call_ok(t: &DockerExecutor, timeout: u64) -> bool {
    let ctx = CallContext::new("bench");
    let r = t
        .call_tool(
            "shell",
            json!({"command": "true", "timeout": timeout}),
            &ctx,
        )
        .await;
    r.exit_code == 0
}

/// Calls/s of every user calling `per_user` times in turn, all users at once.
async fn calls_per_second(side: &Side, per_user: usize) -> Result<f64> {
    let started = Instant::now();
    let mut set = JoinSet::new();
    for t in &side.tools {
        let t = t.clone();
        set.spawn(async move {
            for _ in 0..per_user {
                if !call_ok(&t, 10).await {
                    return false;
                }
            }
            true
        });
    }
    while let Some(done) = set.join_next().await {
        ensure!(done?, "a call failed");
    }
    Ok((side.tools.len() * per_user) as f64 / started.elapsed().as_secs_f64())
}

fn config(image: &str, run: &str, suffix: &str) -> PoolConfig {
    PoolConfig {
        image: image.to_owned(),
        name_prefix: format!("{run}-{suffix}"),
        labels: labels(run),
        idle_timeout: Duration::from_secs(6 * 3600),
        max_sandboxes: 64,
        ..PoolConfig::default()
    }
}

/// `engines_32` and `failover`.
pub async fn run(image: &str, run: &str, users: &Path, quick: bool) -> Result<Vec<FleetRow>> {
    let mut engines = Engines::start(image).await;
    let mut rows = vec![engines_32(&engines, image, run, users, quick).await?];
    rows.push(failover(&mut engines, image, run, users, quick, false).await?);
    rows.push(failover(&mut engines, image, run, users, quick, true).await?);
    Ok(rows)
}

/// 32 users calling at once on one engine, and the same load over three.
async fn engines_32(
    engines: &Engines,
    image: &str,
    run: &str,
    users: &Path,
    quick: bool,
) -> Result<FleetRow> {
    eprintln!("engines_32");
    let names: Vec<String> = (0..USERS).map(|i| format!("f{i}")).collect();
    let one = Side::start(engines.configs(1), config(image, run, "one"), users, &names).await?;
    let three = Side::start(
        engines.configs(3),
        config(image, run, "three"),
        users,
        &names,
    )
    .await?;
    // The fleet's own cost, apart from three daemons sharing this machine's two cores: the
    // same three engines, weighted so that every user's first choice is e0.
    let mut skewed_engines = engines.configs(3);
    skewed_engines[0].weight = 1e9;
    let skewed = Side::start(
        skewed_engines.clone(),
        config(image, run, "skew"),
        users,
        &names,
    )
    .await?;
    ensure!(
        names
            .iter()
            .all(|u| rank(u, &skewed_engines)[0].name == "e0"),
        "every user on e0"
    );
    let spread: Vec<usize> = (0..3)
        .map(|i| {
            let name = format!("e{i}");
            names
                .iter()
                .filter(|u| rank(u, &engines.configs(3))[0].name == name)
                .count()
        })
        .collect();
    let (rounds, per_user) = if quick { (3, 10) } else { (8, 25) };
    let (mut a, mut b, mut c) = (Vec::new(), Vec::new(), Vec::new());
    for side in [&one, &three, &skewed] {
        calls_per_second(side, 3).await?;
    }
    for round in 0..rounds {
        // Each side goes first in turn.
        let mut sides = [(&one, &mut a), (&three, &mut b), (&skewed, &mut c)];
        sides.rotate_left(round % 3);
        for (side, into) in sides {
            tokio::time::sleep(Duration::from_millis(200)).await;
            into.push(calls_per_second(side, per_user).await?);
        }
    }
    for side in [one, three, skewed] {
        side.fleet.shutdown(ShutdownPolicy::Remove).await?;
    }
    let ratio = round3(median(&b) / median(&a));
    let own = round3(median(&c) / median(&a));
    Ok(FleetRow {
        workload: "engines_32".to_owned(),
        unit: "calls/s".to_owned(),
        p50: round3(median(&a)),
        p95: round3(p95(&a)),
        other_p50: Some(round3(median(&b))),
        other_p95: Some(round3(p95(&b))),
        samples: rounds,
        own_cost_ratio: Some(own),
        notes: format!(
            "{USERS} users x {per_user} `shell true` over the channel, all at once; three engines / one = {ratio:.2}x (users per engine {spread:?}; the three daemons share this machine's cores); the fleet's own cost, three engines with every user on one: {own:.2}x of one engine ({:.0} calls/s)",
            median(&c)
        ),
    })
}

/// From an engine's failure (SIGKILL, or SIGSTOP with `freeze`) to the first call of one of
/// its users served elsewhere, the user calling in a loop; then the engine comes back.
async fn failover(
    engines: &mut Engines,
    image: &str,
    run: &str,
    users: &Path,
    quick: bool,
    freeze: bool,
) -> Result<FleetRow> {
    let workload = if freeze {
        "failover_freeze"
    } else {
        "failover_kill"
    };
    eprintln!("{workload}");
    let configs = engines.configs(3);
    let victim = if freeze { 1 } else { 0 };
    let rounds = if quick { 3 } else { 7 };
    let names: Vec<String> = (0..)
        .map(|i| format!("fo{i}"))
        .filter(|u| rank(u, &configs)[0].name == format!("e{victim}"))
        .take(rounds)
        .collect();
    let suffix = if freeze { "ff" } else { "fk" };
    let side = Side::start(configs.clone(), config(image, run, suffix), users, &names).await?;
    // A call's own deadline: what a call caught on a frozen engine waits.
    let timeout = 2;
    let mut took = Vec::new();
    for t in &side.tools {
        let failed = Instant::now();
        if freeze {
            engines.daemons[victim].freeze();
        } else {
            engines.daemons[victim].crash();
        }
        loop {
            let started = Instant::now();
            if call_ok(t, timeout).await && started >= failed {
                took.push(failed.elapsed().as_secs_f64() * 1000.0);
                break;
            }
            ensure!(
                failed.elapsed() < Duration::from_secs(60),
                "{} never served elsewhere",
                t.user()
            );
        }
        if freeze {
            engines.daemons[victim].thaw();
        } else {
            engines.daemons[victim].restart().await;
        }
        let until = Instant::now() + Duration::from_secs(60);
        while !side.fleet.engines().iter().all(|e| e.up) {
            ensure!(Instant::now() < until, "engine e{victim} did not come back");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    side.fleet.shutdown(ShutdownPolicy::Remove).await?;
    let ping = PoolConfig::default();
    Ok(FleetRow {
        workload: workload.to_owned(),
        unit: "ms".to_owned(),
        p50: round3(median(&took)),
        p95: round3(p95(&took)),
        other_p50: None,
        other_p95: None,
        samples: took.len(),
        own_cost_ratio: None,
        notes: format!(
            "{} then a call of one of its users in a loop (`shell true`, timeout {timeout} s) until one is answered on another engine; pings every {:?}, {:?} to answer",
            if freeze {
                "SIGSTOP of the user's engine"
            } else {
                "SIGKILL of the user's engine"
            },
            ping.engine_ping_interval,
            ping.engine_ping_timeout
        ),
    })
}

/// The engines table and its goals.
pub fn markdown(rows: &[FleetRow]) -> String {
    let mut s = String::new();
    s.push_str("\nEngines (issue #12; extra dockerd on this machine):\n\n| workload | n | one engine / failover p50 | p95 | three engines p50 | p95 | unit | notes |\n|---|---|---|---|---|---|---|---|\n");
    let opt = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.1}"));
    for r in rows {
        let _ = writeln!(
            s,
            "| {} | {} | {:.1} | {:.1} | {} | {} | {} | {} |",
            r.workload,
            r.samples,
            r.p50,
            r.p95,
            opt(r.other_p50),
            opt(r.other_p95),
            r.unit,
            r.notes
        );
    }
    let find = |w: &str| rows.iter().find(|r| r.workload == w);
    s.push_str("\n| goal | measured | met |\n|---|---|---|\n");
    if let Some(r) = find("engines_32")
        && let Some(three) = r.other_p50
    {
        let ratio = three / r.p50;
        let _ = writeln!(
            s,
            "| engines_32: three engines no more than 5% below one at the same load | {ratio:.2}x | {} |",
            if ratio >= 0.95 { "yes" } else { "no" }
        );
        if let Some(own) = r.own_cost_ratio {
            let _ = writeln!(
                s,
                "| engines_32, the fleet's own cost (three engines, every user on one): no more than 5% below one engine | {own:.2}x | {} |",
                if own >= 0.95 { "yes" } else { "no" }
            );
        }
    }
    if let Some(r) = find("failover_kill") {
        let _ = writeln!(
            s,
            "| failover_kill: p50 ≤ 1 s to the first call served elsewhere | {:.0} ms | {} |",
            r.p50,
            if r.p50 <= 1000.0 { "yes" } else { "no" }
        );
    }
    s
}
