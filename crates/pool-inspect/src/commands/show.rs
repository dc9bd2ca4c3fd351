//! `show USER`: one sandbox read back from the daemon: what it runs, its labels, the limits
//! the daemon actually applied, its mounts, its usage and its processes.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use sandbox_exec::docker::is_not_found;
use sandbox_exec::{ExecClient, Process, ProcessSource};
use sandbox_pool::bollard::Docker;
use sandbox_pool::bollard::models::{ContainerInspectResponse, HostConfig};
use sandbox_pool::labels::is_ours;
use sandbox_pool::{Usage, usage, validate_user};
use sandbox_tools::Transport;
use serde::Serialize;

use crate::config::FileConfig;
use crate::daemon::{self, Target, container_name};
use crate::failure::{EXIT_OK, usage as usage_error};
use crate::table::{Table, human_bytes, or_dash};

/// How the channel's serve process shows in `ps`: `sandbox-runner serve <pool session>-<n>`,
/// the n-th channel of that sandbox (so reopened n times), named `served:<calls>` (no space:
/// the daemon splits `ps` columns at spaces).
const SERVE_ARGS: &str = "/sandbox/bin/sandbox-runner serve ";

/// What `show --json` prints.
#[derive(Debug, Serialize)]
struct Shown {
    user: String,
    container_id: String,
    name: String,
    /// The image reference it was made from, and its id.
    image: Option<String>,
    image_id: Option<String>,
    state: Option<String>,
    created: Option<String>,
    started_at: Option<String>,
    /// Whether it was made for the current configuration and image (what the pool adopts);
    /// unknown when the configured image is missing.
    current: Option<bool>,
    exec_user: Option<String>,
    working_dir: Option<String>,
    labels: BTreeMap<String, String>,
    limits: Limits,
    mounts: Vec<Mount>,
    usage: Usage,
    /// How this configuration's calls reach the sandbox (`tools.transport`).
    transport: Transport,
    /// The user's disk quota and how it is enforced.
    disk: DiskShown,
    /// The sandbox's channels (normally one: the service's; one per pool process using it).
    channels: Vec<ChannelShown>,
    /// Its processes, as the daemon sees them on the host or, for runtimes with a kernel of
    /// their own (gVisor), as the runner reads them inside.
    processes: Vec<Process>,
    /// Where the list came from (`top` or `runner`).
    processes_from: Option<ProcessSource>,
}

/// The disk quota of a user.
#[derive(Debug, Default, Serialize)]
struct DiskShown {
    /// `filesystem` (the user root is a filesystem of the quota's size), `gate` (only `write`
    /// and `edit` are checked), or `none` (no quota).
    enforce: &'static str,
    quota_bytes: Option<u64>,
    /// In use on the user's filesystem (statfs), when it is mounted.
    used_bytes: Option<u64>,
    /// The filesystem's size, when it is mounted.
    size_bytes: Option<u64>,
}

impl DiskShown {
    fn of(config: &FileConfig, user: &str) -> Self {
        let pool = config.pool_config();
        let quota_bytes = pool.disk_quota.map(|q| q.as_u64()).filter(|&b| b > 0);
        let mounted = sandbox_pool::disk::usage(&daemon::user_root(config, user));
        let enforce = match (quota_bytes, mounted, pool.disk_filesystem()) {
            (None, None, _) => "none",
            (_, Some(_), _) | (_, None, Some(_)) => "filesystem",
            _ => "gate",
        };
        Self {
            enforce,
            quota_bytes,
            used_bytes: mounted.map(|(used, _)| used),
            size_bytes: mounted.map(|(_, size)| size),
        }
    }
}

/// A channel into the sandbox, as its serve process shows in the process list.
#[derive(Debug, Serialize)]
struct ChannelShown {
    id: String,
    pid: String,
    /// Times the pool that opened it opened one again for this sandbox.
    reopened: Option<u64>,
    /// Calls it took.
    calls_served: Option<u64>,
}

impl ChannelShown {
    fn of(process: &Process) -> Option<Self> {
        let id = process.args.strip_prefix(SERVE_ARGS)?.trim().to_owned();
        Some(Self {
            reopened: id.rsplit_once('-').and_then(|(_, n)| n.parse().ok()),
            calls_served: process
                .name
                .strip_prefix("served:")
                .and_then(|n| n.parse().ok())
                .or(Some(0)),
            pid: process.pid.to_string(),
            id,
        })
    }
}

/// The limits as the daemon applied them.
#[derive(Debug, Default, Serialize)]
struct Limits {
    memory_bytes: Option<i64>,
    memory_swap_bytes: Option<i64>,
    cpus: Option<f64>,
    pids: Option<i64>,
    nofile: Option<i64>,
    network_mode: Option<String>,
    read_only_rootfs: Option<bool>,
    tmpfs: BTreeMap<String, String>,
    init: Option<bool>,
    cap_drop: Vec<String>,
    security_opt: Vec<String>,
    runtime: Option<String>,
}

impl Limits {
    fn of(h: &HostConfig) -> Self {
        Self {
            memory_bytes: h.memory,
            memory_swap_bytes: h.memory_swap,
            cpus: h.nano_cpus.filter(|n| *n > 0).map(|n| n as f64 / 1e9),
            pids: h.pids_limit,
            nofile: h.ulimits.iter().flatten().find_map(|u| {
                (u.name.as_deref() == Some("nofile"))
                    .then_some(u.hard)
                    .flatten()
            }),
            network_mode: h.network_mode.clone(),
            read_only_rootfs: h.readonly_rootfs,
            tmpfs: h.tmpfs.clone().unwrap_or_default().into_iter().collect(),
            init: h.init,
            cap_drop: h.cap_drop.clone().unwrap_or_default(),
            security_opt: h.security_opt.clone().unwrap_or_default(),
            runtime: h.runtime.clone(),
        }
    }
}

/// One mount.
#[derive(Debug, Serialize)]
struct Mount {
    source: String,
    target: String,
    read_only: bool,
    kind: String,
}

/// The client of the engine holding `user`'s sandbox (the first that answers and does), else
/// of the first engine that answers (which then says the user has none).
pub async fn locate<'a>(
    targets: &'a [Target],
    config: &FileConfig,
    user: &str,
) -> Result<&'a Docker> {
    validate_user(user).map_err(|e| usage_error(e.to_string()))?;
    let name = container_name(config, user);
    let answering: Vec<&Docker> = targets
        .iter()
        .filter_map(|t| t.docker.as_ref().ok())
        .collect();
    for docker in &answering {
        if docker.inspect_container(&name, None).await.is_ok() {
            return Ok(docker);
        }
    }
    match answering.first() {
        Some(docker) => Ok(docker),
        None => targets[0].docker(),
    }
}

/// `show USER`.
pub async fn show(docker: &Docker, config: &FileConfig, user: &str, json: bool) -> Result<u8> {
    validate_user(user).map_err(|e| usage_error(e.to_string()))?;
    let name = container_name(config, user);
    let pool = &config.pool.name_prefix;
    let info = match docker.inspect_container(&name, None).await {
        Ok(info) => info,
        Err(e) if is_not_found(&e) => bail!("user {user} has no sandbox in pool {pool}"),
        Err(e) => return Err(e).with_context(|| format!("inspecting container {name}")),
    };
    let labels = info.config.as_ref().and_then(|c| c.labels.as_ref());
    if !is_ours(labels, pool) {
        bail!("container {name} exists but was not made by pool {pool}; not touching it");
    }
    // The image may be gone (rebuilt and pruned): the rest of the answer still stands.
    let current = match daemon::judge(docker, config).await {
        Ok(judge) => Some(judge.is_current(user, labels)),
        Err(_) => None,
    };
    let mut shown = read_back(docker, user, name, info, current).await?;
    shown.transport = config.tools.transport;
    shown.disk = DiskShown::of(config, user);
    if json {
        println!("{}", serde_json::to_string_pretty(&shown)?);
    } else {
        print(&shown)?;
    }
    Ok(EXIT_OK)
}

async fn read_back(
    docker: &Docker,
    user: &str,
    name: String,
    info: ContainerInspectResponse,
    current: Option<bool>,
) -> Result<Shown> {
    let id = info.id.clone().unwrap_or_default();
    let state = info.state.as_ref();
    let running = state.and_then(|s| s.running) == Some(true);
    let (used, table) = if running {
        let used = usage(docker, &id).await?;
        let runtime = info.host_config.as_ref().and_then(|h| h.runtime.as_deref());
        let table = ExecClient::new(docker.clone())
            .processes(&id, runtime)
            .await
            .with_context(|| format!("listing the processes of {name}"))?;
        (used, Some(table))
    } else {
        (Usage::default(), None)
    };
    let processes_from = table.as_ref().map(|t| t.source);
    let processes = table.map(|t| t.processes).unwrap_or_default();
    let config = info.config.unwrap_or_default();
    Ok(Shown {
        user: user.to_owned(),
        container_id: id,
        name,
        image: config.image,
        image_id: info.image,
        state: state.and_then(|s| s.status).map(|s| s.to_string()),
        created: info.created,
        started_at: state.and_then(|s| s.started_at.clone()),
        current,
        exec_user: config.user,
        working_dir: config.working_dir,
        labels: config.labels.unwrap_or_default().into_iter().collect(),
        limits: info
            .host_config
            .as_ref()
            .map(Limits::of)
            .unwrap_or_default(),
        mounts: info
            .mounts
            .unwrap_or_default()
            .into_iter()
            .map(|m| Mount {
                source: m.source.unwrap_or_default(),
                target: m.destination.unwrap_or_default(),
                read_only: m.rw == Some(false),
                kind: m.typ.map(|t| t.to_string()).unwrap_or_default(),
            })
            .collect(),
        usage: used,
        transport: Transport::default(),
        disk: DiskShown::default(),
        channels: processes.iter().filter_map(ChannelShown::of).collect(),
        processes,
        processes_from,
    })
}

/// Seconds as `ps` shows an elapsed time: `[[dd-]hh:]mm:ss`.
fn elapsed(secs: u64) -> String {
    let (days, hours, mins, secs) = (secs / 86400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    match (days, hours) {
        (0, 0) => format!("{mins:02}:{secs:02}"),
        (0, _) => format!("{hours:02}:{mins:02}:{secs:02}"),
        _ => format!("{days}-{hours:02}:{mins:02}:{secs:02}"),
    }
}

fn print(s: &Shown) -> Result<()> {
    let yes_no = |b: Option<bool>| match b {
        Some(true) => "yes",
        Some(false) => "no",
        None => "-",
    };
    let mut facts = Table::headless(2);
    let mut fact = |k: &str, v: String| facts.row([k.to_owned(), v]);
    fact("user", s.user.clone());
    fact("container", format!("{} ({})", s.name, s.container_id));
    fact(
        "image",
        format!(
            "{} ({})",
            or_dash(s.image.as_ref()),
            or_dash(s.image_id.as_ref())
        ),
    );
    fact("state", or_dash(s.state.as_ref()));
    fact("created", or_dash(s.created.as_ref()));
    fact("started", or_dash(s.started_at.as_ref()));
    fact(
        "current",
        match s.current {
            Some(true) => "yes: made for this configuration and image".to_owned(),
            Some(false) => {
                "no: made for another configuration or image (`gc` removes it)".to_owned()
            }
            None => "unknown: the configured image is missing".to_owned(),
        },
    );
    fact("exec user", or_dash(s.exec_user.as_ref()));
    fact("working dir", or_dash(s.working_dir.as_ref()));
    let l = &s.limits;
    fact(
        "memory",
        format!(
            "{} (with swap {})",
            human_bytes(l.memory_bytes.and_then(|m| u64::try_from(m).ok())),
            human_bytes(l.memory_swap_bytes.and_then(|m| u64::try_from(m).ok()))
        ),
    );
    fact("cpus", or_dash(l.cpus));
    fact("pids limit", or_dash(l.pids));
    fact("nofile", or_dash(l.nofile));
    fact("network", or_dash(l.network_mode.as_ref()));
    fact("read-only rootfs", yes_no(l.read_only_rootfs).to_owned());
    fact("init", yes_no(l.init).to_owned());
    fact("cap drop", l.cap_drop.join(","));
    fact("security opt", l.security_opt.join(","));
    fact(
        "runtime",
        l.runtime.clone().unwrap_or_else(|| "default".into()),
    );
    for (path, options) in &l.tmpfs {
        fact("tmpfs", format!("{path} {options}"));
    }
    fact(
        "usage",
        format!(
            "{} memory, {} pids",
            human_bytes(s.usage.memory_bytes),
            or_dash(s.usage.pids)
        ),
    );
    let d = &s.disk;
    fact(
        "disk",
        match d.enforce {
            "filesystem" => format!(
                "{} of {} used (the user root is a filesystem of the quota's size)",
                human_bytes(d.used_bytes),
                human_bytes(d.size_bytes.or(d.quota_bytes))
            ),
            "gate" => format!(
                "quota {} checked by write and edit only (no filesystem per user here)",
                human_bytes(d.quota_bytes)
            ),
            _ => "no quota".to_owned(),
        },
    );
    fact(
        "transport",
        match s.transport {
            Transport::Channel => "channel (tools.transport; an exec per call while none is open)",
            Transport::Exec => "exec (tools.transport; one docker exec per call)",
        }
        .to_owned(),
    );
    if s.channels.is_empty() {
        fact("channel", "none open".to_owned());
    }
    for c in &s.channels {
        fact(
            "channel",
            format!(
                "{} (pid {}): {} calls served, reopened {} times",
                c.id,
                c.pid,
                or_dash(c.calls_served),
                or_dash(c.reopened)
            ),
        );
    }
    facts.print()?;

    println!("\nlabels:");
    let mut labels = Table::new(["KEY", "VALUE"]);
    for (k, v) in &s.labels {
        labels.row([k.as_str(), v.as_str()]);
    }
    labels.write_to(&mut std::io::stdout().lock(), "  ")?;

    println!("\nmounts:");
    let mut mounts = Table::new(["SOURCE", "TARGET", "MODE", "KIND"]);
    for m in &s.mounts {
        mounts.row([
            m.source.as_str(),
            m.target.as_str(),
            if m.read_only { "ro" } else { "rw" },
            m.kind.as_str(),
        ]);
    }
    mounts.write_to(&mut std::io::stdout().lock(), "  ")?;

    println!("\nprocesses:");
    if s.processes.is_empty() {
        println!("  (none: the container is not running)");
    } else {
        let mut procs = Table::new(["PID", "PPID", "UID", "STAT", "ELAPSED", "NAME", "COMMAND"]);
        for p in &s.processes {
            procs.row([
                p.pid.to_string(),
                p.ppid.to_string(),
                p.uid.to_string(),
                p.state.clone(),
                elapsed(p.elapsed_secs),
                p.name.clone(),
                p.args.clone(),
            ]);
        }
        procs.write_to(&mut std::io::stdout().lock(), "  ")?;
    }
    Ok(())
}
