//! The sandbox image: built through the Engine API from a tar context (the Dockerfile in
//! `sandbox-image/` and the static runner), tagged with a hash of its inputs so unchanged
//! inputs never rebuild and changed ones always do.
//!
//! The base is `debian:bookworm-slim` when the daemon already has it. Otherwise (no registry
//! here, and we never reach for one unasked) the base is made locally: `debootstrap
//! --variant=minbase` of the same release, from the mirror the host's apt already uses (or
//! debootstrap's default), streamed as a tar into `create_image` with `fromSrc=-`.

use std::collections::HashMap;
use std::fmt;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bollard::Docker;
use bollard::query_parameters::{
    BuildImageOptionsBuilder, CreateImageOptionsBuilder, TagImageOptionsBuilder,
};
use bytes::Bytes;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::mpsc;

use crate::PoolError;
use sandbox_exec::docker::is_not_found;
use sandbox_protocol::{PROTOCOL_LABEL, PROTOCOL_VERSION};

/// The Dockerfile, embedded so the build needs nothing but the runner binary.
pub const DOCKERFILE: &str = include_str!("../../../sandbox-image/Dockerfile");
/// Default image repository: `zcbot-sandbox` (tags are input hashes, plus `latest`).
pub const DEFAULT_REPO: &str = "zcbot-sandbox";
/// Default sandbox user name: `zcbot`, as the seed.
pub const DEFAULT_USER: &str = "zcbot";
/// Default sandbox uid (and gid): 61000. Never 0.
///
/// The sandbox uid owns every file a sandbox writes in its user root on the host, setuid ones
/// included (the sandbox may chmod its own files). So by default it is no one's login: above
/// the range Debian gives login accounts (1000 to 60000) and below systemd's dynamic users
/// (61184 up). The pool warns at start when the uid is a login account on the host.
pub const DEFAULT_UID: u32 = 61000;
/// The registry base used when the daemon already has it.
pub const REGISTRY_BASE: &str = "debian:bookworm-slim";
/// Release of the debootstrap base (the same as the registry base).
pub const DEBOOTSTRAP_SUITE: &str = "bookworm";
/// Packages the debootstrap base adds to minbase (bash, coreutils and util-linux are
/// essential and always there).
pub const BASE_PACKAGES: &[&str] = &["python3", "python-is-python3", "procps"];
/// Repository of the locally made base.
pub const BASE_REPO: &str = "zcbot-sandbox-base";
/// Label on our images holding the input hash.
pub const INPUTS_LABEL: &str = "zcbot.sandbox.inputs";
/// Label on our images holding the sandbox uid, so the pool can read it back.
pub const UID_LABEL: &str = "zcbot.sandbox.uid";
/// Label on our images holding the sandbox user name.
pub const USER_LABEL: &str = "zcbot.sandbox.user";
/// Label on our images saying how the runner is installed: [`RUNNER_SEALED`] or
/// [`RUNNER_READABLE`].
pub const RUNNER_LABEL: &str = "zcbot.sandbox.runner";
/// The runner is executable but unreadable (mode 0711): the kernel starts every runner process
/// non-dumpable. gVisor cannot start it (its loader reads the program as the caller).
pub const RUNNER_SEALED: &str = "sealed";
/// The runner is readable (mode 0755), for gVisor: each runner process makes itself
/// non-dumpable first thing instead.
pub const RUNNER_READABLE: &str = "readable";

/// Which base to build on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BaseChoice {
    /// `debian:bookworm-slim` if the daemon has it, else the debootstrap base.
    #[default]
    Auto,
    /// This image, which the daemon must already have (we never pull unasked).
    Image(String),
    /// Always the debootstrap base.
    Debootstrap,
}

/// What to build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ImageConfig {
    /// Repository of the image; the tag is the input hash.
    pub repo: String,
    /// Sandbox user name.
    pub user: String,
    /// Sandbox uid (and gid). Must not be 0.
    pub uid: u32,
    /// The base.
    pub base: BaseChoice,
    /// Pull the registry base (`debian:bookworm-slim`, or the `image` base) when the daemon
    /// lacks it. Off by default: without a registry a pull only waits and fails, and this
    /// project never reaches off the machine unasked. `Auto` then falls back to debootstrap.
    pub pull_base: bool,
    /// Build for gVisor: the runner installed readable ([`RUNNER_READABLE`]), since gVisor's
    /// loader reads a program as the user who runs it and cannot start an execute-only one.
    /// `pool-inspect image build` sets it when the pool's runtime is gVisor.
    pub gvisor: bool,
}

impl ImageConfig {
    /// The runner's file mode in the image.
    pub fn runner_mode(&self) -> u32 {
        if self.gvisor { 0o755 } else { 0o711 }
    }

    /// The moving tag of the newest build: `latest`, or `latest-gvisor` for gVisor (so that
    /// building one never changes what the other's pools start).
    pub fn latest_tag(&self) -> &'static str {
        if self.gvisor {
            "latest-gvisor"
        } else {
            "latest"
        }
    }

    /// The value of [`RUNNER_LABEL`] on the image.
    pub fn runner_label(&self) -> &'static str {
        if self.gvisor {
            RUNNER_READABLE
        } else {
            RUNNER_SEALED
        }
    }
}

impl Default for ImageConfig {
    fn default() -> Self {
        Self {
            repo: DEFAULT_REPO.to_owned(),
            user: DEFAULT_USER.to_owned(),
            uid: DEFAULT_UID,
            base: BaseChoice::Auto,
            pull_base: false,
            gvisor: false,
        }
    }
}

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
    docker: &'a Docker,
    config: &'a ImageConfig,
    runner: PathBuf,
    progress: &'a dyn BuildProgress,
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

    async fn has_image(&self, reference: &str) -> Result<Option<String>, PoolError> {
        match self.docker.inspect_image(reference).await {
            Ok(info) => Ok(Some(info.id.unwrap_or_default())),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(source) => Err(PoolError::InspectImage {
                image: reference.to_owned(),
                source,
            }),
        }
    }

    /// Picks the base without building anything.
    pub async fn base(&self) -> Result<BaseImage, PoolError> {
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

    fn read_runner(&self) -> Result<Vec<u8>, PoolError> {
        std::fs::read(&self.runner).map_err(|source| PoolError::ReadRunner {
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
    pub async fn status(&self) -> Result<ImageStatus, PoolError> {
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
    pub async fn build(&self) -> Result<BuiltImage, PoolError> {
        if self.config.uid == 0 {
            return Err(PoolError::RootSandboxUser);
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
                return Err(PoolError::BaseMissing {
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
            .map_err(|source| PoolError::BuildImage {
                image: tag.clone(),
                source,
            })?;
        Ok(BuiltImage { tag, id, built })
    }

    /// Pulls `reference` from its registry. With `Auto`, a failed pull is not an error (the
    /// debootstrap base follows); with an explicit `image` base it is.
    async fn pull(&self, reference: &str) -> Result<(), PoolError> {
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
                    return Err(PoolError::PullBase {
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
    ) -> Result<String, PoolError> {
        self.progress
            .stage(&format!("building {tag} on {}", base.reference));
        let context = build_context(&runner, self.config.runner_mode()).map_err(|source| {
            PoolError::ReadRunner {
                path: self.runner.clone(),
                source,
            }
        })?;
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
            let info = item.map_err(|source| PoolError::BuildImage {
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

    /// debootstrap into a temporary directory, then stream it as a tar into the daemon.
    async fn make_base(&self, reference: &str) -> Result<(), PoolError> {
        if !rustix::process::geteuid().is_root() {
            return Err(PoolError::Debootstrap {
                reason: "making the base needs root (debootstrap); run as root, or give the daemon debian:bookworm-slim".to_owned(),
            });
        }
        // Removed on drop, whatever happens.
        let dir = tempfile::Builder::new()
            .prefix("zcbot-sandbox-base-")
            .tempdir()
            .map_err(|e| PoolError::Debootstrap {
                reason: format!("creating a temporary directory: {e}"),
            })?;
        self.debootstrap_and_import(dir.path(), reference).await
    }

    async fn debootstrap_and_import(&self, dir: &Path, reference: &str) -> Result<(), PoolError> {
        let mut cmd = tokio::process::Command::new("debootstrap");
        cmd.arg("--variant=minbase")
            .arg(format!("--include={}", BASE_PACKAGES.join(",")))
            .arg(DEBOOTSTRAP_SUITE)
            .arg(dir);
        let mirror = apt_mirror(DEBOOTSTRAP_SUITE);
        if let Some(m) = &mirror {
            cmd.arg(m);
        }
        self.progress.stage(&format!(
            "making the base with debootstrap ({DEBOOTSTRAP_SUITE}, minbase + {}) from {}",
            BASE_PACKAGES.join(", "),
            mirror.as_deref().unwrap_or("debootstrap's default mirror")
        ));
        let mut child = cmd
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| PoolError::Debootstrap {
                reason: if e.kind() == io::ErrorKind::NotFound {
                    "debootstrap is not installed (apt-get install debootstrap)".to_owned()
                } else {
                    format!("starting debootstrap: {e}")
                },
            })?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        let mut lines = BufReader::new(stdout).lines();
        let mut errors = BufReader::new(stderr).lines();
        let mut tail: Vec<String> = Vec::new();
        loop {
            tokio::select! {
                line = lines.next_line() => match line {
                    Ok(Some(l)) => self.progress.line(&l),
                    _ => break,
                },
                line = errors.next_line() => if let Ok(Some(l)) = line {
                    self.progress.line(&l);
                    tail.push(l);
                },
            }
        }
        while let Ok(Some(l)) = errors.next_line().await {
            tail.push(l);
        }
        let status = child.wait().await.map_err(|e| PoolError::Debootstrap {
            reason: format!("waiting for debootstrap: {e}"),
        })?;
        if !status.success() {
            let start = tail.len().saturating_sub(5);
            return Err(PoolError::Debootstrap {
                reason: format!(
                    "debootstrap failed ({status}): {}",
                    tail[start..].join(" | ")
                ),
            });
        }
        // Docker provides /dev, /proc and /sys at run time; apt's downloaded packages are dead
        // weight.
        for sub in ["dev", "proc", "sys", "var/cache/apt/archives"] {
            empty_dir(&dir.join(sub));
        }
        self.import_base(dir, reference).await
    }

    async fn import_base(&self, dir: &Path, reference: &str) -> Result<(), PoolError> {
        let (repo, tag) = reference.split_once(':').expect("base reference has a tag");
        self.progress
            .stage(&format!("importing the base as {reference}"));
        let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(8);
        let root = dir.to_path_buf();
        let writer = tokio::task::spawn_blocking(move || {
            let mut builder = tar::Builder::new(ChannelWriter::new(tx.clone()));
            builder.follow_symlinks(false);
            let result = builder
                .append_dir_all(".", &root)
                .and_then(|()| builder.into_inner())
                .and_then(|mut w| w.flush());
            if let Err(e) = &result {
                let _ = tx.blocking_send(Err(io::Error::new(e.kind(), e.to_string())));
            }
            result
        });
        let sent = Arc::new(AtomicU64::new(0));
        let body = body_stream(rx, Arc::clone(&sent));
        let options = CreateImageOptionsBuilder::new()
            .from_src("-")
            .repo(repo)
            .tag(tag)
            .build();
        let mut stream =
            self.docker
                .create_image(Some(options), Some(bollard::body_try_stream(body)), None);
        let mut tick = tokio::time::interval(std::time::Duration::from_millis(250));
        let mut failure = None;
        loop {
            tokio::select! {
                item = stream.next() => match item {
                    Some(Ok(_)) => {}
                    Some(Err(source)) => {
                        failure = Some(source);
                        break;
                    }
                    None => break,
                },
                _ = tick.tick() => self.progress.sent(sent.load(Ordering::Relaxed)),
            }
        }
        self.progress.sent(sent.load(Ordering::Relaxed));
        drop(stream);
        let written = writer.await.map_err(|e| PoolError::Debootstrap {
            reason: format!("the tar writer panicked: {e}"),
        })?;
        if let Some(source) = failure {
            return Err(PoolError::ImportBase {
                image: reference.to_owned(),
                source,
            });
        }
        written.map_err(|e| PoolError::Debootstrap {
            reason: format!("archiving the base filesystem: {e}"),
        })?;
        if self.has_image(reference).await?.is_none() {
            return Err(PoolError::Debootstrap {
                reason: format!("the daemon accepted the base but has no {reference}"),
            });
        }
        Ok(())
    }
}

/// The request body: chunks from the tar writer, counted as they go out.
fn body_stream(
    rx: mpsc::Receiver<io::Result<Bytes>>,
    sent: Arc<AtomicU64>,
) -> impl futures_util::Stream<Item = io::Result<Bytes>> + Send + 'static {
    futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|i| (i, rx)) })
        .inspect(move |item| {
            if let Ok(b) = item {
                sent.fetch_add(b.len() as u64, Ordering::Relaxed);
            }
        })
}

/// A `Write` that sends 1 MiB chunks down a channel, for streaming a tar into a request body.
struct ChannelWriter {
    tx: mpsc::Sender<io::Result<Bytes>>,
    buf: Vec<u8>,
}

const CHUNK: usize = 1024 * 1024;

impl ChannelWriter {
    fn new(tx: mpsc::Sender<io::Result<Bytes>>) -> Self {
        Self {
            tx,
            buf: Vec::with_capacity(CHUNK),
        }
    }

    fn send(&mut self) -> io::Result<()> {
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the daemon stopped reading"))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            self.send()?;
        }
        Ok(())
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

fn empty_dir(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            let _ = if path.is_dir() && !path.is_symlink() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
        }
    }
}

/// The first mirror in the host's apt sources that serves `suite`, so debootstrap uses the
/// mirror this machine is configured for; `None` lets debootstrap pick its default.
pub fn apt_mirror(suite: &str) -> Option<String> {
    let mut texts = Vec::new();
    if let Ok(t) = std::fs::read_to_string("/etc/apt/sources.list") {
        texts.push(t);
    }
    if let Ok(dir) = std::fs::read_dir("/etc/apt/sources.list.d") {
        let mut paths: Vec<_> = dir.flatten().map(|e| e.path()).collect();
        paths.sort();
        texts.extend(paths.iter().filter_map(|p| std::fs::read_to_string(p).ok()));
    }
    texts.iter().find_map(|t| mirror_in(t, suite))
}

/// Parses one sources file, one-line (`deb [opts] URI suite ...`) or deb822 (`URIs:` /
/// `Suites:` stanzas) format.
fn mirror_in(text: &str, suite: &str) -> Option<String> {
    let usable = |uri: &str| uri.starts_with("http://") || uri.starts_with("https://");
    for line in text.lines().map(str::trim) {
        let mut words = line.split_whitespace();
        if words.next() != Some("deb") {
            continue;
        }
        let mut rest: Vec<&str> = words.collect();
        if rest.first().is_some_and(|w| w.starts_with('[')) {
            let close = rest.iter().position(|w| w.ends_with(']'))?;
            rest.drain(..=close);
        }
        if let [uri, s, ..] = rest.as_slice()
            && *s == suite
            && usable(uri)
        {
            return Some(uri.to_string());
        }
    }
    for stanza in text.split("\n\n") {
        let field = |name: &str| {
            stanza.lines().find_map(|l| {
                l.strip_prefix(name)
                    .and_then(|r| r.strip_prefix(':'))
                    .map(str::trim)
            })
        };
        let (Some(uris), Some(suites)) = (field("URIs"), field("Suites")) else {
            continue;
        };
        if stanza
            .lines()
            .any(|l| l.trim_start().starts_with('#') && l.contains("URIs"))
        {
            continue;
        }
        if suites.split_whitespace().any(|s| s == suite)
            && let Some(uri) = uris.split_whitespace().find(|u| usable(u))
        {
            return Some(uri.to_owned());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirror_from_one_line_sources() {
        let text = "# comment\ndeb [arch=amd64 signed-by=/k.gpg] http://mirror.example/debian bookworm main\n";
        assert_eq!(
            mirror_in(text, "bookworm").as_deref(),
            Some("http://mirror.example/debian")
        );
        assert_eq!(mirror_in(text, "trixie"), None);
    }

    #[test]
    fn mirror_from_deb822_sources() {
        let text = "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\n\nTypes: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n";
        assert_eq!(
            mirror_in(text, "bookworm").as_deref(),
            Some("http://mirror.example/debian")
        );
        assert_eq!(
            mirror_in(text, "bookworm-security").as_deref(),
            Some("http://mirror.example/debian-security")
        );
    }

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

    #[test]
    fn an_image_for_gvisor_has_a_readable_runner_and_says_so() {
        let runc = ImageConfig::default();
        let gvisor = ImageConfig {
            gvisor: true,
            ..ImageConfig::default()
        };
        assert_eq!(
            (runc.runner_mode(), runc.runner_label()),
            (0o711, RUNNER_SEALED)
        );
        assert_eq!(
            (gvisor.runner_mode(), gvisor.runner_label()),
            (0o755, RUNNER_READABLE)
        );
    }
}
