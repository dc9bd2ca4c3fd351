//! The one place that connects to the daemon, starts the pool and builds the executor from
//! the configuration; and the daemon-side judgement of a pool's containers that `gc` and
//! `show` need without starting a pool (starting one reconciles, which removes things).

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::{Context, Result};
use sandbox_exec::docker::{is_conflict, is_not_found};
use sandbox_pool::bollard::Docker;
use sandbox_pool::bollard::models::{ContainerSummary, ContainerSummaryStateEnum};
use sandbox_pool::bollard::query_parameters::{
    ListContainersOptionsBuilder, RemoveContainerOptionsBuilder,
};
use sandbox_pool::image::UID_LABEL;
use sandbox_pool::labels::{self, CONFIG_HASH, USER};
use sandbox_pool::{PoolError, SandboxPool, validate_user};
use sandbox_tools::DockerExecutor;

use crate::config::FileConfig;
use crate::host::SandboxToolsOnly;

/// Connects to the daemon (`DOCKER_HOST` or the default socket) and negotiates the API
/// version; a daemon that does not answer is classified by [`crate::failure`].
pub async fn connect() -> Result<Docker> {
    Ok(sandbox_pool::connect().await?)
}

/// Starts a pool with the configuration. Starting reconciles as the service does: this
/// pool's running, current containers are adopted and its other containers removed.
pub async fn start_pool(docker: &Docker, config: &FileConfig) -> Result<SandboxPool> {
    SandboxPool::start(docker.clone(), config.pool.clone())
        .await
        .with_context(|| format!("starting pool {}", config.pool.name_prefix))
}

/// The sandbox tools of `user`, working at the root of the user's folder. The CLI has no
/// host tools of its own: its host executor offers exactly the seven sandbox tools.
pub fn executor(pool: &SandboxPool, config: &FileConfig, user: &str) -> DockerExecutor {
    DockerExecutor::with_config(
        Arc::new(SandboxToolsOnly),
        pool.clone(),
        config.tools.clone(),
        user,
        pool.user_root(user),
    )
}

/// `<prefix>-<user>`, the container name the pool gives a user's sandbox.
pub fn container_name(config: &FileConfig, user: &str) -> String {
    format!("{}-{user}", config.pool.name_prefix)
}

/// Every container carrying this pool's labels, in any state.
pub async fn list_pool(docker: &Docker, pool: &str) -> Result<Vec<ContainerSummary>> {
    let options = ListContainersOptionsBuilder::new()
        .all(true)
        .filters(&labels::pool_filter(pool))
        .build();
    Ok(docker
        .list_containers(Some(options))
        .await
        .map_err(PoolError::ListContainers)?)
}

/// Removes a container (force, with its anonymous volumes). Already gone, or already being
/// removed, is the outcome we wanted.
pub async fn remove_container(docker: &Docker, id: &str) -> Result<()> {
    let options = RemoveContainerOptionsBuilder::new()
        .force(true)
        .v(true)
        .build();
    match docker.remove_container(id, Some(options)).await {
        Err(e) if is_not_found(&e) || is_conflict(&e) => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing container {id}")),
        Ok(()) => Ok(()),
    }
}

/// What the pool would do with one of its containers at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Running and made for the current configuration: the pool adopts it.
    Current,
    /// Not running (exited, created, dead, paused...): the pool removes it.
    NotRunning {
        /// The daemon's state.
        state: String,
    },
    /// Made for another configuration or image, or not fitting the pool's naming: the pool
    /// removes it.
    Orphaned {
        /// Why.
        why: &'static str,
    },
}

/// The pool's rules for adopting a container, evaluated from the daemon alone.
///
/// This mirrors `SandboxPool`'s start-up reconciliation (which is private and acts at once):
/// the configuration hash the pool would expect comes from the public
/// [`labels::config_hash`] over the configuration, the image id and the sandbox uid.
#[derive(Debug)]
pub struct Judge {
    config: FileConfig,
    image_id: String,
    uid: u32,
}

impl Judge {
    /// Reads what the hash depends on from the daemon: the image's id and its uid label.
    pub async fn new(docker: &Docker, config: &FileConfig) -> Result<Self> {
        let image = &config.pool.image;
        let info = match docker.inspect_image(image).await {
            Ok(info) => info,
            Err(e) if is_not_found(&e) => {
                return Err(PoolError::ImageMissing {
                    image: image.clone(),
                }
                .into());
            }
            Err(source) => {
                return Err(PoolError::InspectImage {
                    image: image.clone(),
                    source,
                }
                .into());
            }
        };
        let label_uid = info
            .config
            .as_ref()
            .and_then(|c| c.labels.as_ref())
            .and_then(|l| l.get(UID_LABEL))
            .and_then(|v| v.parse().ok());
        let uid =
            config
                .pool
                .sandbox_uid
                .or(label_uid)
                .ok_or_else(|| PoolError::SandboxUidUnknown {
                    image: image.clone(),
                })?;
        Ok(Self {
            config: config.clone(),
            image_id: info.id.unwrap_or_default(),
            uid,
        })
    }

    /// Whether labels carry the hash the pool expects for `user` now.
    pub fn is_current(&self, user: &str, labels: Option<&HashMap<String, String>>) -> bool {
        let root = self.config.users_root().join(user);
        let expected = labels::config_hash(
            &self.config.pool,
            &self.image_id,
            self.uid,
            &root.to_string_lossy(),
        );
        labels.and_then(|l| l.get(CONFIG_HASH)) == Some(&expected)
    }

    /// The verdict on one of the pool's containers.
    pub fn judge(&self, c: &ContainerSummary) -> Verdict {
        let labels = c.labels.as_ref();
        let user = labels.and_then(|l| l.get(USER)).map_or("", String::as_str);
        let name = container_name(&self.config, user);
        let named_right = c.names.as_ref().is_some_and(|names| {
            names
                .iter()
                .any(|n| n.trim_start_matches('/') == name.as_str())
        });
        if validate_user(user).is_err() || !named_right {
            return Verdict::Orphaned {
                why: "its name or user label does not fit the pool",
            };
        }
        if c.state != Some(ContainerSummaryStateEnum::RUNNING) {
            return Verdict::NotRunning {
                state: c
                    .state
                    .map_or_else(|| "unknown".to_owned(), |s| s.to_string()),
            };
        }
        if !self.is_current(user, labels) {
            return Verdict::Orphaned {
                why: "made for another configuration or image",
            };
        }
        Verdict::Current
    }
}

/// The user a container belongs to, from its label.
pub fn user_of(c: &ContainerSummary) -> String {
    c.labels
        .as_ref()
        .and_then(|l| l.get(USER))
        .cloned()
        .unwrap_or_default()
}

/// A container's name without the leading slash.
pub fn name_of(c: &ContainerSummary) -> String {
    c.names
        .as_ref()
        .and_then(|n| n.first())
        .map(|n| n.trim_start_matches('/').to_owned())
        .unwrap_or_default()
}
