//! The image build: the input hash, the build context and the build through the Engine API.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::path::PathBuf;

use bollard::Docker;
use bollard::query_parameters::{
    BuildImageOptionsBuilder, CreateImageOptionsBuilder, TagImageOptionsBuilder,
};
use bytes::Bytes;
use futures_util::StreamExt;
use sandbox_exec::docker::is_not_found;
use sandbox_pool::image::{BaseChoice, ImageConfig, RUNNER_LABEL, UID_LABEL, USER_LABEL};
use sandbox_protocol::{PROTOCOL_LABEL, PROTOCOL_VERSION};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::{
    BASE_PACKAGES, BASE_REPO, DEBOOTSTRAP_SUITE, DOCKERFILE, INPUTS_LABEL, ImageError,
    REGISTRY_BASE,
};

/// Where an image build reports what it is doing. The default writes to `tracing`.
pub trait BuildProgress: Send + Sync {
    /// A new stage began.
    fn stage(&self, message: &str);
    /// A line of output from debootstrap or the build.
    fn line(&self, line: &str);
    /// Bytes of the base filesystem sent to the daemon so far.
    fn sent(&self, bytes: u64);
}

/// Progress into `tracing` events.
#[derive(Debug, Default, Clone, Copy)]
pub struct TracingProgress;

impl BuildProgress for TracingProgress {
    fn stage(&self, message: &str) {
        tracing::info!(message, "image build");
    }
    fn line(&self, line: &str) {
        tracing::debug!(line, "image build output");
    }
    fn sent(&self, bytes: u64) {
        tracing::trace!(bytes, "base filesystem sent");
    }
}

/// The base an image is built on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BaseImage {
    /// Its reference (`debian:bookworm-slim` or `zcbot-sandbox-base:bookworm-<hash>`).
    pub reference: String,
    /// Whether the daemon has it.
    pub present: bool,
    /// Whether we make it with debootstrap (then its tag is a hash of the recipe).
    pub local: bool,
}

/// Where an image stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImageStatus {
    /// `repo:hash`.
    pub tag: String,
    /// The input hash.
    pub inputs_hash: String,
    /// Whether the daemon has that tag.
    pub present: bool,
    /// The base.
    pub base: BaseImage,
}

/// A built (or already present) image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BuiltImage {
    /// `repo:hash`.
    pub tag: String,
    /// The daemon's image id.
    pub id: String,
    /// Whether this call built it (false: it was already there).
    pub built: bool,
}

/// Builds the sandbox image for a config and a runner binary.
pub struct ImageBuilder<'a> {
    pub(crate) docker: &'a Docker,
    pub(crate) config: &'a ImageConfig,
    pub(crate) runner: PathBuf,
    pub(crate) progress: &'a dyn BuildProgress,
}

impl fmt::Debug for ImageBuilder<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImageBuilder")
            .field("config", self.config)
            .field("runner", &self.runner)
            .finish_non_exhaustive()
    }
}

impl<'a> ImageBuilder<'a> {
    /// A builder for `config`, putting the runner binary at `runner` into the image.
    pub fn new(
        docker: &'a Docker,
        config: &'a ImageConfig,
        runner: impl Into<PathBuf>,
        progress: &'a dyn BuildProgress,
    ) -> Self {
        Self {
            docker,
            config,
            runner: runner.into(),
            progress,
        }
    }

    pub(crate) async fn has_image(&self, reference: &str) -> Result<Option<String>, ImageError> {
        match self.docker.inspect_image(reference).await {
            Ok(info) => Ok(Some(info.id.unwrap_or_default())),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(source) => Err(ImageError::InspectImage {
                image: reference.to_owned(),
                source,
            }),
        }
    }

    /// Picks the base without building anything.
    pub async fn base(&self) -> Result<BaseImage, ImageError> {
        let local = || {
            let recipe = format!(
                "debootstrap --variant=minbase --include={} {DEBOOTSTRAP_SUITE}",
                BASE_PACKAGES.join(",")
            );
            format!(
                "{BASE_REPO}:{DEBOOTSTRAP_SUITE}-{}",
                &sha256_hex(recipe.as_bytes())[..12]
            )
        };
        Ok(match &self.config.base {
            BaseChoice::Image(reference) => BaseImage {
                present: self.has_image(reference).await?.is_some(),
                reference: reference.clone(),
                local: false,
            },
            BaseChoice::Auto if self.has_image(REGISTRY_BASE).await?.is_some() => BaseImage {
                reference: REGISTRY_BASE.to_owned(),
                present: true,
                local: false,
            },
            BaseChoice::Auto | BaseChoice::Debootstrap => {
                let reference = local();
                BaseImage {
                    present: self.has_image(&reference).await?.is_some(),
                    reference,
                    local: true,
                }
            }
        })
    }

    fn read_runner(&self) -> Result<Vec<u8>, ImageError> {
        std::fs::read(&self.runner).map_err(|source| ImageError::ReadRunner {
            path: self.runner.clone(),
            source,
        })
    }

    /// The input hash: Dockerfile, runner binary and its mode, user, uid and base (its image id
    /// when it comes from elsewhere, its recipe when we make it).
    fn inputs_hash(&self, runner: &[u8], base: &BaseImage, base_id: &str) -> String {
        let mut h = Sha256::new();
        for part in [
            DOCKERFILE.as_bytes(),
            runner,
            self.config.user.as_bytes(),
            self.config.uid.to_string().as_bytes(),
            base.reference.as_bytes(),
            if base.local { b"" } else { base_id.as_bytes() },
            self.config.runner_label().as_bytes(),
        ] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part);
        }
        hex::encode(h.finalize())
    }

    /// Where the image stands, without building.
    pub async fn status(&self) -> Result<ImageStatus, ImageError> {
        let runner = self.read_runner()?;
        let base = self.base().await?;
        let base_id = if base.local {
            String::new()
        } else {
            self.has_image(&base.reference).await?.unwrap_or_default()
        };
        let inputs_hash = self.inputs_hash(&runner, &base, &base_id);
        let tag = format!("{}:{}", self.config.repo, &inputs_hash[..16]);
        Ok(ImageStatus {
            present: self.has_image(&tag).await?.is_some(),
            tag,
            inputs_hash,
            base,
        })
    }

    /// Builds the image unless its tag is already present, making the base first if needed;
    /// then points `repo:latest` (`repo:latest-gvisor` for gVisor) at it.
    pub async fn build(&self) -> Result<BuiltImage, ImageError> {
        if self.config.uid == 0 {
            return Err(ImageError::RootSandboxUser);
        }
        let runner = self.read_runner()?;
        if self.config.pull_base {
            let wanted = match &self.config.base {
                BaseChoice::Image(reference) => Some(reference.as_str()),
                BaseChoice::Auto => Some(REGISTRY_BASE),
                BaseChoice::Debootstrap => None,
            };
            if let Some(reference) = wanted
                && self.has_image(reference).await?.is_none()
            {
                self.pull(reference).await?;
            }
        }
        let base = self.base().await?;
        if !base.present {
            if !base.local {
                return Err(ImageError::BaseMissing {
                    image: base.reference.clone(),
                });
            }
            self.make_base(&base.reference).await?;
        }
        let base_id = self.has_image(&base.reference).await?.unwrap_or_default();
        let inputs_hash = self.inputs_hash(&runner, &base, &base_id);
        let tag = format!("{}:{}", self.config.repo, &inputs_hash[..16]);
        let (id, built) = match self.has_image(&tag).await? {
            Some(id) => {
                self.progress.stage(&format!("{tag} is up to date"));
                (id, false)
            }
            None => (
                self.build_from(&tag, &inputs_hash, &base, runner).await?,
                true,
            ),
        };
        let (repo, _) = tag.split_once(':').expect("tag has a colon");
        self.docker
            .tag_image(
                &tag,
                Some(
                    TagImageOptionsBuilder::new()
                        .repo(repo)
                        .tag(self.config.latest_tag())
                        .build(),
                ),
            )
            .await
            .map_err(|source| ImageError::BuildImage {
                image: tag.clone(),
                source,
            })?;
        Ok(BuiltImage { tag, id, built })
    }

    /// Pulls `reference` from its registry. With `Auto`, a failed pull is not an error (the
    /// debootstrap base follows); with an explicit `image` base it is.
    async fn pull(&self, reference: &str) -> Result<(), ImageError> {
        self.progress.stage(&format!("pulling {reference}"));
        let options = CreateImageOptionsBuilder::new()
            .from_image(reference)
            .build();
        let mut stream = self.docker.create_image(Some(options), None, None);
        while let Some(item) = stream.next().await {
            match item {
                Ok(info) => {
                    if let Some(status) = info.status.as_deref() {
                        self.progress.line(status);
                    }
                }
                Err(source) if matches!(self.config.base, BaseChoice::Image(_)) => {
                    return Err(ImageError::PullBase {
                        image: reference.to_owned(),
                        source,
                    });
                }
                Err(e) => {
                    self.progress.stage(&format!(
                        "pulling {reference} failed ({e}); making the base locally"
                    ));
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    async fn build_from(
        &self,
        tag: &str,
        inputs_hash: &str,
        base: &BaseImage,
        runner: Vec<u8>,
    ) -> Result<String, ImageError> {
        self.progress
            .stage(&format!("building {tag} on {}", base.reference));
        let context =
            build_context(&runner, self.config.runner_mode()).map_err(ImageError::BuildContext)?;
        let args = HashMap::from([
            ("BASE", base.reference.clone()),
            ("SANDBOX_USER", self.config.user.clone()),
            ("SANDBOX_UID", self.config.uid.to_string()),
        ]);
        let labels = HashMap::from([
            (PROTOCOL_LABEL, PROTOCOL_VERSION.to_string()),
            (INPUTS_LABEL, inputs_hash.to_owned()),
            (UID_LABEL, self.config.uid.to_string()),
            (USER_LABEL, self.config.user.clone()),
            (RUNNER_LABEL, self.config.runner_label().to_owned()),
        ]);
        let mut options = BuildImageOptionsBuilder::new()
            .dockerfile("Dockerfile")
            .t(tag)
            .rm(true)
            .forcerm(true)
            .buildargs(&args)
            .labels(&labels);
        // Our own base already has every package: its RUN steps need no network, and the
        // daemon here has no bridge to give them one.
        if base.local {
            options = options.networkmode("none");
        }
        let mut stream = self.docker.build_image(
            options.build(),
            None,
            Some(bollard::body_full(Bytes::from(context))),
        );
        let mut id = None;
        while let Some(item) = stream.next().await {
            let info = item.map_err(|source| ImageError::BuildImage {
                image: tag.to_owned(),
                source,
            })?;
            if let Some(text) = info.stream.as_deref() {
                for line in text.lines().filter(|l| !l.trim().is_empty()) {
                    self.progress.line(line);
                }
            }
            if let Some(aux) = info.aux.and_then(|a| a.id) {
                id = Some(aux);
            }
        }
        match id {
            Some(id) => Ok(id),
            None => Ok(self.has_image(tag).await?.unwrap_or_default()),
        }
    }
}

/// The build context: the Dockerfile and the runner, executable but unreadable (`COPY` keeps
/// the mode, and root owns it): the kernel starts a process of an unreadable binary
/// non-dumpable, so no runner process is ever within reach of the sandbox user's other
/// processes, not even before its first instruction.
fn build_context(runner: &[u8], runner_mode: u32) -> io::Result<Vec<u8>> {
    let mut tar = tar::Builder::new(Vec::new());
    for (name, data, mode) in [
        ("Dockerfile", DOCKERFILE.as_bytes(), 0o644),
        ("sandbox-runner", runner, runner_mode),
    ] {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(mode);
        header.set_cksum();
        tar.append_data(&mut header, name, data)?;
    }
    tar.into_inner()
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_context_holds_dockerfile_and_executable_runner() {
        let tar = build_context(b"\x7fELF...", ImageConfig::default().runner_mode()).expect("tar");
        let mut archive = tar::Archive::new(tar.as_slice());
        let entries: Vec<(String, u32)> = archive
            .entries()
            .expect("entries")
            .map(|e| {
                let e = e.expect("entry");
                (
                    e.path().expect("path").display().to_string(),
                    e.header().mode().expect("mode"),
                )
            })
            .collect();
        assert_eq!(
            entries,
            vec![
                ("Dockerfile".to_owned(), 0o644),
                ("sandbox-runner".to_owned(), 0o711)
            ]
        );
    }
}
