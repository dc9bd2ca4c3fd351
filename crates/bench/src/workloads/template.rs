//! A container like the pool's, made without the pool: what the floor and the seed start a cold
//! sandbox from, and how the bench removes what it made that way.

use anyhow::{Context, Result};
use bollard::models::{ContainerCreateBody, ContainerInspectResponse};
use bollard::query_parameters::CreateContainerOptionsBuilder;

use crate::bench::{Bench, labels};

/// What the floor and the seed make a cold sandbox from: the pool's own container, inspected.
#[derive(Debug)]
pub(super) struct ColdTemplate {
    pub(super) body: ContainerCreateBody,
    pub(super) seed_flags: Vec<String>,
}

impl ColdTemplate {
    /// The template of the bench pool's containers (read from `u0`'s).
    pub(super) async fn of_pool(b: &Bench) -> Result<Self> {
        let info = b
            .docker
            .inspect_container(&b.main().id, None)
            .await
            .context("inspecting a pool container")?;
        Self::new(info, &b.run)
    }

    /// Raw create + start of a container like the pool's, named `name`; returns its id.
    pub(super) async fn create_and_start(&self, b: &Bench, name: &str) -> Result<String> {
        let options = CreateContainerOptionsBuilder::new().name(name).build();
        let created = b
            .docker
            .create_container(Some(options), self.body.clone())
            .await
            .context("raw create_container")?;
        b.docker
            .start_container(&created.id, None)
            .await
            .context("raw start_container")?;
        Ok(created.id)
    }

    fn new(info: ContainerInspectResponse, run: &str) -> Result<Self> {
        let config = info.config.context("the pool's container has no Config")?;
        let host = info
            .host_config
            .context("the pool's container has no HostConfig")?;
        let mut labels: std::collections::HashMap<String, String> =
            labels(run).into_iter().collect();
        labels.insert("zcbot.bench.kind".to_owned(), "cold".to_owned());
        // Same Config and HostConfig as the pool made, through serde (the inspect and create
        // types differ), with the daemon-set hostname dropped and our labels only.
        let mut value = serde_json::to_value(&config)?;
        let obj = value.as_object_mut().context("Config is not an object")?;
        obj.remove("Hostname");
        obj.insert("Labels".to_owned(), serde_json::to_value(&labels)?);
        obj.insert("HostConfig".to_owned(), serde_json::to_value(&host)?);
        let body: ContainerCreateBody = serde_json::from_value(value)?;

        // The equivalent `docker run -d` flags, derived from the same HostConfig.
        let mut f: Vec<String> = Vec::new();
        let mut flag = |k: &str, v: String| {
            f.push(k.to_owned());
            f.push(v);
        };
        let mut label_list: Vec<_> = labels.iter().collect();
        label_list.sort();
        for (k, v) in label_list {
            flag("--label", format!("{k}={v}"));
        }
        if let Some(user) = &config.user {
            flag("--user", user.clone());
        }
        if let Some(dir) = &config.working_dir {
            flag("--workdir", dir.clone());
        }
        if let Some(net) = &host.network_mode {
            flag("--network", net.clone());
        }
        for cap in host.cap_drop.iter().flatten() {
            flag("--cap-drop", cap.clone());
        }
        for opt in host.security_opt.iter().flatten() {
            flag("--security-opt", opt.clone());
        }
        let mut tmpfs: Vec<_> = host.tmpfs.iter().flatten().collect();
        tmpfs.sort();
        for (path, opts) in tmpfs {
            flag("--tmpfs", format!("{path}:{opts}"));
        }
        if let Some(m) = host.memory {
            flag("--memory", m.to_string());
        }
        if let Some(m) = host.memory_swap {
            flag("--memory-swap", m.to_string());
        }
        if let Some(n) = host.nano_cpus {
            flag("--cpus", format!("{}", n as f64 / 1e9));
        }
        if let Some(p) = host.pids_limit {
            flag("--pids-limit", p.to_string());
        }
        for u in host.ulimits.iter().flatten() {
            if let (Some(name), Some(soft), Some(hard)) = (&u.name, u.soft, u.hard) {
                flag("--ulimit", format!("{name}={soft}:{hard}"));
            }
        }
        for bind in host.binds.iter().flatten() {
            flag("-v", bind.clone());
        }
        // The daemon fills in its default runtime; name only another one.
        if let Some(runtime) = host
            .runtime
            .as_ref()
            .filter(|r| !r.is_empty() && r.as_str() != "runc")
        {
            flag("--runtime", runtime.clone());
        }
        if host.init == Some(true) {
            f.push("--init".to_owned());
        }
        if host.readonly_rootfs == Some(true) {
            f.push("--read-only".to_owned());
        }
        f.push(config.image.context("the pool's container has no image")?);
        Ok(Self {
            body,
            seed_flags: f,
        })
    }
}

/// Removes a container the bench made (gone already is fine), as the pool does.
pub(super) async fn remove_container(b: &Bench, id: &str) -> Result<()> {
    sandbox_pool::remove_container(&b.docker, id)
        .await
        .with_context(|| format!("removing {id}"))
}
