//! The host memory one idle sandbox costs (issue #4), and how this host's share of it is read:
//! PSS of the daemons, the shims and this process, from `/proc`.

use anyhow::{Context, Result};

use crate::bench::{Bench, interleave};
use crate::seed;
use crate::stats::{Row, Who};
use crate::workloads::template::{ColdTemplate, remove_container};

/// Idle sandboxes per memory sample: enough to average out the daemon's own noise.
const IDLE_BATCH: usize = 8;

/// Host memory per idle sandbox: the container's own use (cgroup), its shim, the growth of
/// dockerd and containerd, and the calling process's bookkeeping, all as PSS so shared pages
/// count once. Each sample makes [`IDLE_BATCH`] sandboxes, measures, and removes them.
pub(super) async fn idle_memory(b: &Bench) -> Result<Row> {
    let template = ColdTemplate::of_pool(b).await?;
    let mut n = 0;
    let series = interleave("idle_memory", b.rounds(0, 3, 1), async |who, _| {
        n += 1;
        let before = Host::read();
        let mut ids = Vec::new();
        let mut users = Vec::new();
        for i in 0..IDLE_BATCH {
            let name = format!("{}-{}-idle{n}x{i}", b.run, who.name());
            match who {
                Who::Library => {
                    let user = format!("idle{n}x{i}");
                    ids.push(b.pool.ensure(&user).await?.container_id);
                    users.push(user);
                }
                Who::Channel => {
                    let user = format!("idle{n}x{i}c");
                    let lease = b.pool.acquire(&user).await?;
                    let channel = lease.open_channel(&b.exec).await;
                    channel.context("the sandbox's channel would not open")?;
                    ids.push(lease.container_id.clone());
                    users.push(user);
                }
                Who::Floor => ids.push(template.create_and_start(b, &name).await?),
                Who::Seed => {
                    let out =
                        seed::run_ok(seed::run_detached(&name, &template.seed_flags), None).await?;
                    ids.push(String::from_utf8_lossy(&out.stdout).trim().to_owned());
                }
            }
        }
        // Let the daemon and the shims settle after the burst of creations.
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        let mut used_kib = 0.0;
        for id in &ids {
            let usage = sandbox_pool::usage(&b.docker, id).await?;
            used_kib += usage.memory_bytes.unwrap_or(0) as f64 / 1024.0;
        }
        let after = Host::read();
        let shims: f64 = ids.iter().map(|id| shim_pss_kib(id)).sum();
        let total = used_kib + shims + (after.daemons - before.daemons) + (after.me - before.me);
        for user in &users {
            b.pool.remove(user).await?;
        }
        if !matches!(who, Who::Library | Who::Channel) {
            for id in &ids {
                remove_container(b, id).await?;
            }
        }
        // Reported in MiB in the `*_ms` columns (unit says so).
        Ok(total / 1024.0 / IDLE_BATCH as f64)
    })
    .await?;
    Ok(Row::new("idle_memory", &series)
        .unit("MiB per idle sandbox")
        .note("MiB per idle sandbox, not ms: container (cgroup) + shim + dockerd/containerd growth + caller's bookkeeping, as PSS")
        .detail("library", "SandboxPool::ensure for new users, then idle")
        .detail("channel", "the same, each with its channel open (its serve process idle)")
        .detail("seed", "docker run -d with the pool's flags")
        .detail("floor", "raw create + start with the pool container's Config and HostConfig"))
}

/// PSS (KiB) of the daemons and of this process.
struct Host {
    daemons: f64,
    me: f64,
}

impl Host {
    fn read() -> Self {
        let daemons =
            pids_where(|cmd| cmd.starts_with("dockerd") || cmd.starts_with("containerd --config"))
                .into_iter()
                .map(pss_kib)
                .sum();
        Self {
            daemons,
            me: pss_kib(std::process::id()),
        }
    }
}

/// PSS of the shim of container `id`.
fn shim_pss_kib(id: &str) -> f64 {
    pids_where(|cmd| cmd.contains("containerd-shim") && cmd.contains(id))
        .into_iter()
        .map(pss_kib)
        .sum()
}

fn pids_where(pred: impl Fn(&str) -> bool) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|pid: &u32| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| pred(&String::from_utf8_lossy(&c).replace('\0', " ")))
                .unwrap_or(false)
        })
        .collect()
}

fn pss_kib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("Pss:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0.0)
}
