//! How the pool judges the containers carrying its labels, without acting on them: shared by
//! the pool's start-up reconciliation and the operator CLI (which must be able to look
//! without starting a pool, because starting one reconciles).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use bollard::Docker;
use bollard::models::{ContainerSummary, ContainerSummaryStateEnum};
use sandbox_exec::docker::is_not_found;
use sandbox_protocol::{PROTOCOL_LABEL, PROTOCOL_VERSION};

use crate::PoolError;
use crate::config::PoolConfig;
use crate::error::unreachable_or;
use crate::image::{RUNNER_LABEL, RUNNER_SEALED, UID_LABEL};
use crate::labels::{self, CONFIG_HASH, USER};
use crate::runtime;
use crate::user::{UserRoots, validate_user};

/// What the pool does with one of its containers at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Running and made for the current configuration: adopted.
    Current,
    /// Not running (exited, created, dead, paused): removed.
    NotRunning {
        /// The daemon's state.
        state: String,
    },
    /// Made for another configuration or image, or not fitting the pool's naming: removed.
    Orphaned {
        /// Why.
        why: &'static str,
    },
}

/// The pool's configuration resolved against the daemon: what a user's container must be.
pub struct Judge {
    config: PoolConfig,
    roots: Arc<dyn UserRoots>,
    image_id: String,
    uid: u32,
    gvisor: bool,
}

impl std::fmt::Debug for Judge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Judge")
            .field("pool", &self.config.name_prefix)
            .field("image_id", &self.image_id)
            .field("uid", &self.uid)
            .finish_non_exhaustive()
    }
}

impl Judge {
    /// Resolves the image (its id goes into the configuration hash) and the sandbox uid (from
    /// the configuration, or the image's label).
    pub async fn new(
        docker: &Docker,
        config: PoolConfig,
        roots: Arc<dyn UserRoots>,
    ) -> Result<Self, PoolError> {
        let image = match docker.inspect_image(&config.image).await {
            Ok(image) => image,
            Err(e) if is_not_found(&e) => {
                return Err(PoolError::ImageMissing {
                    image: config.image.clone(),
                });
            }
            Err(e) => {
                return Err(unreachable_or("inspecting the image", e, |source| {
                    PoolError::InspectImage {
                        image: config.image.clone(),
                        source,
                    }
                }));
            }
        };
        let labels = image.config.as_ref().and_then(|c| c.labels.as_ref());
        // An image whose runner speaks another protocol would make every call hang until its
        // deadline; refuse it up front. Images not built by us carry no label: trust them.
        if let Some(found) = labels.and_then(|l| l.get(PROTOCOL_LABEL))
            && *found != PROTOCOL_VERSION.to_string()
        {
            return Err(PoolError::ImageOutdated {
                image: config.image.clone(),
                found: found.clone(),
                expected: PROTOCOL_VERSION,
            });
        }
        let gvisor = runtime::is_gvisor(docker, config.runtime.as_deref()).await?;
        // gVisor cannot start an execute-only runner: every call would fail to start.
        if gvisor
            && labels.and_then(|l| l.get(RUNNER_LABEL)).map(String::as_str) == Some(RUNNER_SEALED)
        {
            return Err(PoolError::ImageNotForGvisor {
                image: config.image.clone(),
                runtime: config
                    .runtime
                    .clone()
                    .unwrap_or_else(|| "default".to_owned()),
            });
        }
        let label_uid = labels
            .and_then(|l| l.get(UID_LABEL))
            .and_then(|v| v.parse().ok());
        let uid = config
            .sandbox_uid
            .or(label_uid)
            .ok_or_else(|| PoolError::SandboxUidUnknown {
                image: config.image.clone(),
            })?;
        if uid == 0 {
            return Err(PoolError::RootSandboxUser);
        }
        Ok(Self {
            config,
            roots,
            image_id: image.id.unwrap_or_default(),
            uid,
            gvisor,
        })
    }

    /// Whether the pool's runtime is gVisor.
    pub fn gvisor(&self) -> bool {
        self.gvisor
    }

    /// The configuration.
    pub fn config(&self) -> &PoolConfig {
        &self.config
    }

    /// The image id sandboxes are made from.
    pub fn image_id(&self) -> &str {
        &self.image_id
    }

    /// The sandbox uid that owns user roots.
    pub fn uid(&self) -> u32 {
        self.uid
    }

    /// The host folder of `user`'s root.
    pub fn user_root(&self, user: &str) -> PathBuf {
        self.roots.root(user)
    }

    /// `<prefix>-<user>` ([`PoolConfig::container_name`]).
    pub fn container_name(&self, user: &str) -> String {
        self.config.container_name(user)
    }

    /// The configuration hash a current container of `user` carries.
    pub fn expected_hash(&self, user: &str) -> String {
        labels::config_hash(
            &self.config,
            &self.image_id,
            self.uid,
            &self.user_root(user).to_string_lossy(),
        )
    }

    /// Whether these labels carry the hash a current container of `user` has.
    pub fn is_current(&self, user: &str, labels: Option<&HashMap<String, String>>) -> bool {
        labels.and_then(|l| l.get(CONFIG_HASH)) == Some(&self.expected_hash(user))
    }

    /// The verdict on one of the pool's containers.
    pub fn verdict(&self, c: &ContainerSummary) -> Verdict {
        let labels = c.labels.as_ref();
        let user = labels.and_then(|l| l.get(USER)).map_or("", String::as_str);
        let name = self.container_name(user);
        let named_right = c
            .names
            .as_ref()
            .is_some_and(|names| names.iter().any(|n| n.trim_start_matches('/') == name));
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
