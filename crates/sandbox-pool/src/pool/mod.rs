//! [`SandboxPool`]: one container per user, made on first use, trusted from memory while
//! healthy, recreated when gone, dead or outdated, removed when idle.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant, SystemTime};

use bollard::Docker;
use bollard::models::{ContainerCreateBody, ContainerInspectResponse};
use bollard::query_parameters::CreateContainerOptionsBuilder;
use sandbox_exec::docker::{is_conflict, is_not_found};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::PoolError;
use crate::channel::{ChannelInfo, ChannelSlot};
use crate::config::{Housekeeping, PoolConfig, WORKSPACE};
use crate::events::{self, Gone};
use crate::judge::{self, Judge, Verdict, calls_running, unreachable_or};
use crate::labels::{self, CONFIG_HASH, MANAGED_BY, MANAGED_BY_VALUE, POOL, SESSION, USER};
use crate::locks::LockMap;
use crate::metrics;
use crate::spec;

/// Where each user's root lives on the host. The pool mounts it at `/workspace`.
pub trait UserRoots: Send + Sync {
    /// The host folder of `user` (need not exist yet).
    fn root(&self, user: &str) -> PathBuf;
}

/// A base folder: user `u`'s root is `<base>/u`.
impl UserRoots for PathBuf {
    fn root(&self, user: &str) -> PathBuf {
        self.join(user)
    }
}

/// Any function from user to folder.
impl<F: Fn(&str) -> PathBuf + Send + Sync> UserRoots for F {
    fn root(&self, user: &str) -> PathBuf {
        self(user)
    }
}

/// Why a user's container was replaced on this `ensure`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recreated {
    /// It had been removed from outside.
    Removed,
    /// It had exited (crashed or was stopped).
    Exited {
        /// Its exit code, when known.
        exit_code: Option<i64>,
    },
    /// The kernel's OOM killer ended it.
    OomKilled,
    /// It could no longer start processes (for example a fork bomb held every pid), and was
    /// recycled.
    Unusable,
    /// It was made with another configuration (or image).
    ConfigChanged,
}

/// A user's sandbox, as `ensure` hands it out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sandbox {
    /// The user.
    pub user: String,
    /// Container id.
    pub container_id: String,
    /// Container name (`<prefix>-<user>`).
    pub name: String,
    /// The user root on the host, mounted at [`WORKSPACE`].
    pub user_root: PathBuf,
    /// The user commands run as.
    pub exec_user: String,
    /// Set when this `ensure` replaced a previous container, saying why.
    pub recreated: Option<Recreated>,
}

impl Sandbox {
    /// The container path for a host directory: `/workspace/<path relative to the user root>`,
    /// or `/workspace` when the directory lies outside the root (as the seed did).
    pub fn container_dir(&self, host_dir: &Path) -> String {
        match host_dir.strip_prefix(&self.user_root) {
            Ok(rel) if !rel.as_os_str().is_empty() => {
                format!("{WORKSPACE}/{}", rel.to_string_lossy())
            }
            _ => WORKSPACE.to_owned(),
        }
    }
}

/// What `shutdown` does with the sandboxes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShutdownPolicy {
    /// Remove every sandbox.
    Remove,
    /// Leave them running; the next pool with the same name adopts them.
    Keep,
}

/// One sandbox in the pool's memory.
#[derive(Debug, Clone)]
struct Entry {
    container_id: String,
    name: String,
    created: Option<SystemTime>,
    last_active: Instant,
    in_flight: usize,
    /// Last time the container was seen healthy (inspected running, or a call finished).
    seen_healthy: Option<Instant>,
    /// Removed by [`SandboxPool::recycle`]; the next `ensure` says so.
    recycled: bool,
    /// The daemon said its container died or was removed (an event): not to be trusted again.
    gone: Option<Gone>,
    /// Its channel, opened on demand.
    channel: Arc<ChannelSlot>,
}

impl Entry {
    /// A sandbox just seen healthy and active, with `in_flight` calls.
    fn new(
        container_id: String,
        name: String,
        created: Option<SystemTime>,
        in_flight: usize,
    ) -> Self {
        Self {
            container_id,
            name,
            created,
            last_active: Instant::now(),
            in_flight,
            seen_healthy: Some(Instant::now()),
            recycled: false,
            gone: None,
            channel: Arc::default(),
        }
    }
}

#[derive(Debug, Default)]
struct State {
    sandboxes: HashMap<String, Entry>,
    /// Containers being created right now; they count against `max_sandboxes`.
    reserved: usize,
}

/// A sandbox as the operator sees it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SandboxInfo {
    /// The engine it runs on (`local` for a pool of one engine).
    pub engine: String,
    /// The user.
    pub user: String,
    /// Container id.
    pub container_id: String,
    /// Container name.
    pub name: String,
    /// `running`, `exited`, ...
    pub state: String,
    /// When the container was created.
    #[serde(with = "optional_unix_secs")]
    pub created: Option<SystemTime>,
    /// Last call (end) or creation.
    #[serde(with = "optional_unix_secs")]
    pub last_active: Option<SystemTime>,
    /// Calls running now, when known.
    pub calls_in_flight: Option<usize>,
    /// Memory in use (stats API), when asked for.
    pub memory_bytes: Option<u64>,
    /// Processes and threads (stats API), when asked for.
    pub pids: Option<u64>,
    /// Its channel, when known (the pool's own memory knows it; the daemon view does not).
    pub channel: Option<ChannelInfo>,
}

mod optional_unix_secs {
    use std::time::{SystemTime, UNIX_EPOCH};

    pub fn serialize<S: serde::Serializer>(
        t: &Option<SystemTime>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match t.and_then(|t| t.duration_since(UNIX_EPOCH).ok()) {
            Some(d) => s.serialize_some(&d.as_secs()),
            None => s.serialize_none(),
        }
    }
}

struct Inner {
    docker: Docker,
    /// The engine's name (in metrics and placement); `local` for a pool of one engine.
    engine: String,
    judge: Judge,
    session: String,
    state: Mutex<State>,
    locks: LockMap<String>,
    stop: CancellationToken,
    /// The reaper and the event watcher, ended by `stop`.
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl Drop for Inner {
    /// A pool let go without `shutdown` still ends its tasks (the event watcher would wait on
    /// its stream for ever otherwise).
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// The pool. Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct SandboxPool {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for SandboxPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SandboxPool")
            .field("pool", &self.config().name_prefix)
            .field("image_id", &self.image_id())
            .field("sandboxes", &self.len())
            .finish()
    }
}

/// A sandbox in use by one call. While any lease is alive the reaper leaves the sandbox
/// alone; dropping it marks the sandbox active (and healthy, unless [`Lease::mark_lost`]).
#[derive(Debug)]
pub struct Lease {
    pool: SandboxPool,
    sandbox: Sandbox,
    channel: Arc<ChannelSlot>,
    lost: bool,
}

impl Lease {
    /// The sandbox.
    pub fn sandbox(&self) -> &Sandbox {
        &self.sandbox
    }

    /// The call found the sandbox gone or broken: the next `ensure` asks the daemon instead
    /// of trusting memory.
    pub fn mark_lost(&mut self) {
        self.lost = true;
    }

    /// The sandbox's open channel for calls as its sandbox user, without waiting. `None`
    /// when it has none open now: the call goes through an exec of its own while the pool
    /// opens one in the background (with `exec`'s settings) for the calls after it, unless
    /// an open failed a moment ago.
    pub fn channel(&self, exec: &sandbox_exec::ExecClient) -> Option<sandbox_exec::Channel> {
        self.channel.get(|| self.channel_target(exec))
    }

    /// As [`Lease::channel`], but an open is waited for (at most the open's own timeout):
    /// for a caller that wants the calls after it to find the channel open.
    pub async fn open_channel(
        &self,
        exec: &sandbox_exec::ExecClient,
    ) -> Option<sandbox_exec::Channel> {
        self.channel.ready(|| self.channel_target(exec)).await
    }

    fn channel_target(&self, exec: &sandbox_exec::ExecClient) -> crate::channel::Target {
        crate::channel::Target {
            exec: exec.clone(),
            container: self.sandbox.container_id.clone(),
            user: self.sandbox.exec_user.clone(),
            session: self.pool.inner.session.clone(),
            pool: self.pool.pool_name(),
            engine: self.pool.engine().to_owned(),
        }
    }

    /// The name of the engine the sandbox runs on.
    pub fn engine(&self) -> &str {
        self.pool.engine()
    }

    /// The client of the engine the sandbox runs on.
    pub fn docker(&self) -> &Docker {
        self.pool.docker()
    }
}

impl std::ops::Deref for Lease {
    type Target = Sandbox;
    fn deref(&self) -> &Sandbox {
        &self.sandbox
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut state = self.pool.state();
        if let Some(e) = state.sandboxes.get_mut(&self.sandbox.user)
            && e.container_id == self.sandbox.container_id
        {
            e.in_flight = e.in_flight.saturating_sub(1);
            e.last_active = Instant::now();
            e.seen_healthy = if self.lost || e.gone.is_some() {
                None
            } else {
                Some(Instant::now())
            };
        }
    }
}

/// Holds a slot under `max_sandboxes` while a container is being made.
struct Reservation<'a>(&'a SandboxPool);

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        self.0.state().reserved -= 1;
    }
}

/// The engine name of a pool made on one Docker client.
pub const LOCAL_ENGINE: &str = "local";

/// How often a replacement waiting for another pool's calls to end looks again.
const BUSY_POLL: Duration = Duration::from_millis(250);
/// How long a replacement waits for another pool's calls to end: the longest call a model may
/// ask for (the call's own deadline normally ends the wait first).
const BUSY_WAIT: Duration = Duration::from_secs(600);

/// The reaper's rule, the pool's and the operator's `reap` alike: a sandbox goes when no call
/// runs in it and its last call (or its start) is at least `idle_timeout` ago.
pub fn is_reapable(calls_in_flight: usize, idle: Duration, idle_timeout: Duration) -> bool {
    calls_in_flight == 0 && idle >= idle_timeout
}

/// User ids name containers (`<prefix>-<user>`) and label values: keep them to what Docker
/// accepts in a name, and short.
pub fn validate_user(user: &str) -> Result<(), PoolError> {
    let ok = (1..=64).contains(&user.len())
        && user
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
        && !user.starts_with(['.', '-']);
    if ok {
        Ok(())
    } else {
        Err(PoolError::InvalidUser {
            user: user.to_owned(),
        })
    }
}

impl SandboxPool {
    /// A pool on `docker` with `config`, taking user roots from `config.users_root`.
    pub async fn start(docker: Docker, config: PoolConfig) -> Result<Self, PoolError> {
        let base = config.users_root();
        Self::start_with_roots(docker, config, base).await
    }

    /// A pool on `docker` with `config` and the caller's mapping of users to roots.
    ///
    /// Resolves the image, then (with [`Housekeeping::Full`], the default) reconciles with the
    /// daemon: running containers with this pool's labels and the current configuration are
    /// adopted (with fresh idle timers), the rest of ours are removed unless a call runs in
    /// them, and containers without our labels are never touched. Then starts the idle reaper.
    /// A [`Housekeeping::Guest`] pool does neither.
    pub async fn start_with_roots(
        docker: Docker,
        config: PoolConfig,
        roots: impl UserRoots + 'static,
    ) -> Result<Self, PoolError> {
        Self::start_on(LOCAL_ENGINE.to_owned(), docker, config, Arc::new(roots)).await
    }

    /// As [`SandboxPool::start_with_roots`], on the engine named `engine` (one member of a
    /// [`Fleet`](crate::Fleet)).
    pub(crate) async fn start_on(
        engine: String,
        docker: Docker,
        config: PoolConfig,
        roots: Arc<dyn UserRoots>,
    ) -> Result<Self, PoolError> {
        for m in &config.extra_mounts {
            if !m.source.exists() {
                return Err(PoolError::MountSourceMissing {
                    path: m.source.clone(),
                });
            }
        }
        if config.disk_enforce == crate::disk::Enforce::Filesystem && !crate::disk::can_mount() {
            return Err(PoolError::DiskUnavailable);
        }
        let judge = Judge::new(&docker, config, roots).await?;
        if let Some(account) = crate::host::login_account(judge.uid()) {
            warn!(
                uid = judge.uid(),
                account,
                "the sandbox uid is a login account on this host: it owns every file the \
                 sandboxes write (setuid ones included); build the image and start the pool \
                 with a uid of its own"
            );
        }
        let pool = Self {
            inner: Arc::new(Inner {
                docker,
                engine,
                judge,
                session: uuid::Uuid::new_v4().simple().to_string(),
                state: Mutex::default(),
                locks: LockMap::default(),
                stop: CancellationToken::new(),
                tasks: Mutex::default(),
            }),
        };
        let events = tokio::spawn(events::watch(
            pool.inner.docker.clone(),
            pool.config().name_prefix.clone(),
            pool.inner.stop.clone(),
            Events(Arc::downgrade(&pool.inner)),
        ));
        pool.tasks().push(events);
        if pool.config().housekeeping == Housekeeping::Full {
            pool.reconcile().await?;
            let reaper = tokio::spawn(reap_loop(
                Arc::downgrade(&pool.inner),
                pool.inner.stop.clone(),
                pool.config().reap_interval,
            ));
            pool.tasks().push(reaper);
        }
        Ok(pool)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Critical sections never panic; recover rather than poison the whole pool.
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The pool's name, as its metrics label it.
    fn pool_name(&self) -> String {
        self.config().name_prefix.clone()
    }

    /// Sets the [`metrics::SANDBOXES`] gauges from memory.
    fn publish(&self) {
        let mut by_state = [("running", 0usize), ("exited", 0), ("removed", 0)];
        for e in self.state().sandboxes.values() {
            let state = e.gone.map_or("running", Gone::state);
            if let Some(n) = by_state.iter_mut().find(|(s, _)| *s == state) {
                n.1 += 1;
            }
        }
        for (state, n) in by_state {
            ::metrics::gauge!(metrics::SANDBOXES, "pool" => self.pool_name(), "engine" => self.engine().to_owned(), "state" => state)
                .set(n as f64);
        }
    }

    fn tasks(&self) -> MutexGuard<'_, Vec<tokio::task::JoinHandle<()>>> {
        self.inner.tasks.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The Docker client.
    pub fn docker(&self) -> &Docker {
        &self.inner.docker
    }

    /// The name of the engine its sandboxes run on (`local` unless it is part of a
    /// [`Fleet`](crate::Fleet)).
    pub fn engine(&self) -> &str {
        &self.inner.engine
    }

    /// The configuration.
    pub fn config(&self) -> &PoolConfig {
        self.inner.judge.config()
    }

    /// The configuration resolved against the daemon (image id, sandbox uid, hashes).
    pub fn judge(&self) -> &Judge {
        &self.inner.judge
    }

    /// The image id sandboxes are made from.
    pub fn image_id(&self) -> &str {
        self.inner.judge.image_id()
    }

    /// The sandbox uid that owns user roots.
    pub fn sandbox_uid(&self) -> u32 {
        self.inner.judge.uid()
    }

    /// The host folder of `user`'s root (from the pool's mapping; it may not exist yet).
    pub fn user_root(&self, user: &str) -> PathBuf {
        self.inner.judge.user_root(user)
    }

    /// Sandboxes held now.
    pub fn len(&self) -> usize {
        self.state().sandboxes.len()
    }

    /// Whether the pool holds no sandbox.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Per-user lock entries alive now (they go away when nobody holds or waits).
    pub fn lock_entries(&self) -> usize {
        self.inner.locks.len()
    }

    fn name_of(&self, user: &str) -> String {
        self.inner.judge.container_name(user)
    }

    fn handle(&self, user: &str, entry: &Entry, recreated: Option<Recreated>) -> Sandbox {
        Sandbox {
            user: user.to_owned(),
            container_id: entry.container_id.clone(),
            name: entry.name.clone(),
            user_root: self.user_root(user),
            exec_user: self.config().sandbox_user.clone(),
            recreated,
        }
    }

    fn lease(&self, sandbox: Sandbox, entry: &Entry) -> Lease {
        Lease {
            pool: self.clone(),
            sandbox,
            channel: Arc::clone(&entry.channel),
            lost: false,
        }
    }

    /// The warm path: a sandbox seen healthy within `health_ttl`, from memory, no daemon.
    fn try_warm(&self, user: &str) -> Option<Lease> {
        let ttl = self.config().health_ttl;
        let mut state = self.state();
        let entry = state.sandboxes.get_mut(user)?;
        if entry.seen_healthy.is_none_or(|t| t.elapsed() >= ttl) {
            return None;
        }
        entry.in_flight += 1;
        entry.last_active = Instant::now();
        let entry = entry.clone();
        drop(state);
        Some(self.lease(self.handle(user, &entry, None), &entry))
    }

    /// The user's sandbox, made or repaired if needed, leased for one call.
    #[tracing::instrument(skip(self), fields(pool = %self.config().name_prefix))]
    pub async fn acquire(&self, user: &str) -> Result<Lease, PoolError> {
        validate_user(user)?;
        if let Some(lease) = self.try_warm(user) {
            return Ok(lease);
        }
        let _guard = self.inner.locks.lock(user.to_owned()).await;
        // Someone else may have made it while we waited for the lock.
        if let Some(lease) = self.try_warm(user) {
            return Ok(lease);
        }
        let lease = self.ensure_locked(user).await;
        self.publish();
        lease
    }

    /// The user's sandbox, made or repaired if needed. Marks it active.
    pub async fn ensure(&self, user: &str) -> Result<Sandbox, PoolError> {
        Ok(self.acquire(user).await?.sandbox.clone())
    }

    /// Marks the user's sandbox active now (defers the reaper).
    pub fn mark_active(&self, user: &str) {
        if let Some(e) = self.state().sandboxes.get_mut(user) {
            e.last_active = Instant::now();
        }
    }

    /// Removes the user's sandbox if it is still `container_id`, because it cannot start
    /// processes any more; the next `ensure` makes a new one and reports
    /// [`Recreated::Unusable`]. The user's files are in the user root and stay.
    pub async fn recycle(&self, user: &str, container_id: &str) -> Result<(), PoolError> {
        validate_user(user)?;
        let _guard = self.inner.locks.lock(user.to_owned()).await;
        let current = {
            let mut state = self.state();
            match state.sandboxes.get_mut(user) {
                Some(e) if e.container_id == container_id => {
                    e.seen_healthy = None;
                    e.recycled = true;
                    true
                }
                _ => false,
            }
        };
        if current {
            warn!(user, container = %container_id, "recycling a sandbox that cannot start processes");
            self.remove_container(user, container_id).await?;
        }
        Ok(())
    }

    /// Forgets that the user's sandbox was healthy: the next `ensure` asks the daemon.
    pub fn invalidate(&self, user: &str) {
        if let Some(e) = self.state().sandboxes.get_mut(user) {
            e.seen_healthy = None;
        }
    }

    /// The slow path, under the user's lock: ask the daemon, adopt, repair or create.
    async fn ensure_locked(&self, user: &str) -> Result<Lease, PoolError> {
        let name = self.name_of(user);
        let known = self.state().sandboxes.get(user).map(|e| e.recycled);
        let mut recreated = known.map(|recycled| {
            if recycled {
                Recreated::Unusable
            } else {
                Recreated::Removed
            }
        });
        let known = known.is_some();
        let waited_since = Instant::now();
        loop {
            let info = match self.inner.docker.inspect_container(&name, None).await {
                Ok(info) => info,
                Err(e) if is_not_found(&e) => {
                    if recreated == Some(Recreated::Removed) {
                        warn!(user, "the sandbox was removed from outside; recreating it");
                    }
                    self.state().sandboxes.remove(user);
                    break;
                }
                Err(e) => return Err(judge::inspect_failed(user, name, e)),
            };
            match self.inspect_verdict(user, &info)? {
                None => {
                    let id = info.id.clone().unwrap_or_default();
                    let mut state = self.state();
                    // Calls still running on this very container keep counting: the health
                    // check lapsing under a long call must not make it look idle to the reaper.
                    // So does its channel.
                    let same = state.sandboxes.get(user).filter(|e| e.container_id == id);
                    let running = same.map_or(0, |e| e.in_flight);
                    let channel = same.map(|e| Arc::clone(&e.channel));
                    let created = parse_time(info.created.as_deref());
                    let mut entry = Entry::new(id, name.clone(), created, running + 1);
                    if let Some(channel) = channel {
                        entry.channel = channel;
                    }
                    let sandbox = self.handle(user, &entry, None);
                    let lease = self.lease(sandbox, &entry);
                    state.sandboxes.insert(user.to_owned(), entry);
                    drop(state);
                    if !known {
                        info!(user, container = %lease.container_id, "adopted a running sandbox");
                    }
                    return Ok(lease);
                }
                Some(reason) => {
                    let id = info.id.clone().unwrap_or_default();
                    // Made with another configuration and busy: another pool process runs
                    // calls in it. They end first; this call waits (within its deadline).
                    if reason == Recreated::ConfigChanged
                        && calls_running(&self.inner.docker, &id, &info).await > 0
                    {
                        if waited_since.elapsed() >= BUSY_WAIT {
                            return Err(PoolError::SandboxBusy {
                                user: user.to_owned(),
                                container: id,
                            });
                        }
                        debug!(user, container = %id, "outdated but busy; waiting for its calls to end");
                        tokio::time::sleep(BUSY_POLL).await;
                        continue;
                    }
                    warn!(user, container = %id, ?reason, "replacing the sandbox");
                    self.state().sandboxes.remove(user);
                    self.remove_container(user, &id).await?;
                    recreated = Some(reason);
                    break;
                }
            }
        }
        self.create(user, &name, recreated).await
    }

    /// `None`: adopt this running container as it is. `Some(reason)`: replace it.
    fn inspect_verdict(
        &self,
        user: &str,
        info: &ContainerInspectResponse,
    ) -> Result<Option<Recreated>, PoolError> {
        let labels = info.config.as_ref().and_then(|c| c.labels.as_ref());
        if !labels::is_ours(labels, &self.config().name_prefix) {
            return Err(PoolError::NameTaken {
                user: user.to_owned(),
                name: self.name_of(user),
            });
        }
        let state = info.state.clone().unwrap_or_default();
        if state.oom_killed == Some(true) {
            return Ok(Some(Recreated::OomKilled));
        }
        if state.running != Some(true) || state.paused == Some(true) {
            return Ok(Some(Recreated::Exited {
                exit_code: state.exit_code,
            }));
        }
        let hash = labels.and_then(|l| l.get(CONFIG_HASH));
        // A guest uses the running sandbox it finds, whatever it was made with.
        if hash != Some(&self.inner.judge.expected_hash(user))
            && self.config().housekeeping == Housekeeping::Full
        {
            return Ok(Some(Recreated::ConfigChanged));
        }
        Ok(None)
    }

    async fn create(
        &self,
        user: &str,
        name: &str,
        recreated: Option<Recreated>,
    ) -> Result<Lease, PoolError> {
        let slot = self.reserve(user).await?;
        let root = self.user_root(user);
        prepare_root(user, &root, self.sandbox_uid())?;
        if let Some(size) = self.config().disk_filesystem() {
            self.mount_disk(user, &root, size).await?;
        }
        let body = self.container_body(user, &root);
        let options = CreateContainerOptionsBuilder::new().name(name).build();
        let created = match self
            .inner
            .docker
            .create_container(Some(options), body)
            .await
        {
            Ok(c) => c,
            // Another pool process made it between our inspect and create: take theirs (the
            // slot goes back first, or the retry would count itself twice).
            Err(e) if is_conflict(&e) => {
                drop(slot);
                return Box::pin(self.ensure_locked(user)).await;
            }
            Err(e) => {
                return Err(unreachable_or("creating the sandbox", e, |source| {
                    PoolError::CreateContainer {
                        user: user.to_owned(),
                        name: name.to_owned(),
                        source,
                    }
                }));
            }
        };
        if let Err(source) = self.inner.docker.start_container(&created.id, None).await {
            let cleanup = self.remove_container(user, &created.id).await.err();
            return Err(PoolError::StartContainer {
                user: user.to_owned(),
                container: created.id,
                source: Box::new(source),
                cleanup: cleanup.map(|e| e.to_string().into()),
            });
        }
        let entry = Entry::new(created.id, name.to_owned(), Some(SystemTime::now()), 1);
        let sandbox = self.handle(user, &entry, recreated);
        let lease = self.lease(sandbox, &entry);
        self.state().sandboxes.insert(user.to_owned(), entry);
        drop(slot);
        info!(user, container = %lease.container_id, recreated = ?lease.recreated, "created a sandbox");
        ::metrics::counter!(metrics::CREATED, "pool" => self.pool_name(), "engine" => self.engine().to_owned(), "reason" => metrics::reason(lease.recreated.as_ref())).increment(1);
        self.publish();
        Ok(lease)
    }

    /// Takes a slot under `max_sandboxes`, evicting the least recently active idle sandbox
    /// of another user when full.
    async fn reserve(&self, user: &str) -> Result<Reservation<'_>, PoolError> {
        let max = self.config().max_sandboxes;
        let mut tried = HashSet::new();
        loop {
            let victim = {
                let mut state = self.state();
                if state.sandboxes.len() + state.reserved < max {
                    state.reserved += 1;
                    return Ok(Reservation(self));
                }
                state
                    .sandboxes
                    .iter()
                    .filter(|(u, e)| e.in_flight == 0 && u.as_str() != user && !tried.contains(*u))
                    .min_by_key(|(_, e)| e.last_active)
                    .map(|(u, _)| u.clone())
            };
            let Some(victim) = victim else {
                return Err(PoolError::PoolFull { max });
            };
            tried.insert(victim.clone());
            // Never wait for another user's lock while holding ours: only take a free one.
            if let Some(_guard) = self.inner.locks.try_lock(victim.clone()) {
                info!(user, evicted = %victim, "pool full; evicting the least recently active idle sandbox");
                self.remove_if_idle(&victim, Duration::ZERO).await;
            }
        }
    }

    /// Removes `user`'s sandbox if it is idle for at least `idle` with no call in flight, of
    /// this pool or any other (the daemon lists the container's running execs). A sandbox busy
    /// with another pool's calls counts as active now. The caller holds the user's lock.
    /// Returns whether it removed one.
    async fn remove_if_idle(&self, user: &str, idle: Duration) -> bool {
        let is_idle = |e: &Entry| is_reapable(e.in_flight, e.last_active.elapsed(), idle);
        let Some(id) = self
            .state()
            .sandboxes
            .get(user)
            .filter(|e| is_idle(e))
            .map(|e| e.container_id.clone())
        else {
            return false;
        };
        let busy = self.busy(&id).await;
        let id = {
            let mut state = self.state();
            match state.sandboxes.get_mut(user) {
                Some(e) if e.container_id == id && busy => {
                    debug!(user, container = %id, "idle here but busy with another pool's calls");
                    e.last_active = Instant::now();
                    None
                }
                // Checked again: a call of ours may have started while we asked.
                Some(e) if e.container_id == id && is_idle(e) => {
                    state.sandboxes.remove(user).map(|e| e.container_id)
                }
                _ => None,
            }
        };
        let Some(id) = id else { return false };
        if let Err(e) = self.remove_container(user, &id).await {
            // The entry is gone from memory; `ensure` and reconciliation deal with leftovers.
            warn!(user, container = %id, error = %e, "failed to remove a sandbox");
        }
        true
    }

    /// When the user's sandbox is held here and not known gone: when it was created.
    pub(crate) fn holds(&self, user: &str) -> Option<Option<SystemTime>> {
        let state = self.state();
        let e = state.sandboxes.get(user).filter(|e| e.gone.is_none())?;
        Some(e.created)
    }

    /// Users whose sandbox this pool holds in memory.
    pub(crate) fn users(&self) -> Vec<String> {
        self.state().sandboxes.keys().cloned().collect()
    }

    /// Removes the user's sandbox because another engine holds the user too, unless a call
    /// runs in it (of this pool or another) or the user's lock is taken. Returns whether this
    /// pool still holds the user.
    pub(crate) async fn drop_duplicate(&self, user: &str) -> bool {
        if let Some(_guard) = self.inner.locks.try_lock(user.to_owned())
            && self.remove_if_idle(user, Duration::ZERO).await
        {
            info!(
                user,
                engine = self.engine(),
                "removed a second sandbox of a user held on another engine"
            );
            self.publish();
        }
        self.state().sandboxes.contains_key(user)
    }

    /// Removes idle sandboxes now (the reaper does this every `reap_interval`). Never one with
    /// a call in flight. Returns the users whose sandbox was removed.
    pub async fn reap_idle(&self) -> Vec<String> {
        let idle = self.config().idle_timeout;
        let candidates: Vec<String> = self
            .state()
            .sandboxes
            .iter()
            .filter(|(_, e)| is_reapable(e.in_flight, e.last_active.elapsed(), idle))
            .map(|(u, _)| u.clone())
            .collect();
        let mut reaped = Vec::new();
        for user in candidates {
            let Some(_guard) = self.inner.locks.try_lock(user.clone()) else {
                continue; // busy: someone is ensuring it right now
            };
            if self.remove_if_idle(&user, idle).await {
                info!(user, "reaped an idle sandbox");
                ::metrics::counter!(metrics::REAPED, "pool" => self.pool_name(), "engine" => self.engine().to_owned()).increment(1);
                reaped.push(user);
            }
        }
        self.publish();
        reaped
    }

    /// Removes the user's sandbox now, waiting for its lock, whatever runs in it (the caller
    /// said so). Returns whether there was one.
    pub async fn remove(&self, user: &str) -> Result<bool, PoolError> {
        validate_user(user)?;
        let _guard = self.inner.locks.lock(user.to_owned()).await;
        let known = self.state().sandboxes.remove(user).map(|e| e.container_id);
        self.publish();
        match known {
            Some(id) => self.remove_container(user, &id).await.map(|()| true),
            None => judge::remove_sandbox(&self.inner.docker, &self.config().name_prefix, user)
                .await
                .map(|removed| removed.is_some()),
        }
    }

    /// Mounts the user's own filesystem at `root` (made or resized first), for the sandbox
    /// uid alone.
    async fn mount_disk(&self, user: &str, root: &Path, size: u64) -> Result<(), PoolError> {
        let (owned, uid) = (root.to_owned(), self.sandbox_uid());
        // Formatting and resizing run programs: off the runtime's threads. A call that stops
        // waiting leaves the mount to the next sandbox of the user (or to the next start).
        let mounted = tokio::task::spawn_blocking(move || crate::disk::mount(&owned, size, uid))
            .await
            .unwrap_or_else(|e| {
                Err(crate::disk::DiskError::Step {
                    step: "mounting",
                    path: root.to_owned(),
                    reason: e.to_string(),
                })
            });
        mounted.map_err(|source| PoolError::Disk {
            user: user.to_owned(),
            source,
        })
    }

    /// Unmounts the user's own filesystem, if it has one mounted (its files stay in the
    /// image).
    fn unmount_disk(&self, user: &str) {
        if self.config().disk_filesystem().is_none() {
            return;
        }
        if let Err(e) = crate::disk::unmount(&self.user_root(user)) {
            warn!(user, error = %sandbox_exec::error_chain(&e), "failed to unmount the user's disk");
        }
    }

    async fn remove_container(&self, user: &str, id: &str) -> Result<(), PoolError> {
        let removed = self.remove_container_only(user, id).await;
        if removed.is_ok() {
            self.unmount_disk(user);
        }
        removed
    }

    async fn remove_container_only(&self, user: &str, id: &str) -> Result<(), PoolError> {
        match judge::remove_container(&self.inner.docker, id).await {
            Err(e) => Err(unreachable_or("removing a sandbox", e, |source| {
                PoolError::RemoveContainer {
                    user: user.to_owned(),
                    container: id.to_owned(),
                    source,
                }
            })),
            Ok(()) => {
                debug!(user, container = %id, "removed a sandbox");
                Ok(())
            }
        }
    }

    /// Adopts this pool's running, current containers and removes its other ones.
    async fn reconcile(&self) -> Result<(), PoolError> {
        let containers =
            judge::list_containers(&self.inner.docker, &self.config().name_prefix).await?;
        for c in containers {
            let id = c.id.clone().unwrap_or_default();
            let user = c
                .labels
                .as_ref()
                .and_then(|l| l.get(USER))
                .cloned()
                .unwrap_or_default();
            match self.inner.judge.verdict(&c) {
                Verdict::Current => {
                    let created = c
                        .created
                        .and_then(|s| u64::try_from(s).ok())
                        .map(|s| SystemTime::UNIX_EPOCH + Duration::from_secs(s));
                    let entry = Entry::new(id.clone(), self.name_of(&user), created, 0);
                    self.state().sandboxes.insert(user.clone(), entry);
                    info!(user, container = %id, "adopted a sandbox at start-up");
                }
                verdict => {
                    if matches!(verdict, Verdict::Orphaned { .. }) && self.busy(&id).await {
                        info!(user, container = %id, ?verdict, "leaving a leftover sandbox: a call runs in it");
                        continue;
                    }
                    info!(user, container = %id, ?verdict, "removing a leftover sandbox");
                    if let Err(e) = self.remove_container(&user, &id).await {
                        warn!(container = %id, error = %e, "failed to remove a leftover sandbox");
                    }
                }
            }
        }
        // A crash between mounting a user's disk and starting their sandbox leaves a mount
        // without a sandbox: unmount it (the next sandbox mounts it again).
        if self.config().disk_filesystem().is_some() {
            for at in crate::disk::our_mounts() {
                let Some(user) = at.file_name().and_then(|n| n.to_str()).map(str::to_owned) else {
                    continue;
                };
                if validate_user(&user).is_ok()
                    && self.user_root(&user) == at
                    && !self.state().sandboxes.contains_key(&user)
                {
                    info!(user, "unmounting the disk of a user without a sandbox");
                    self.unmount_disk(&user);
                }
            }
        }
        Ok(())
    }

    /// Whether a call of any pool runs in container `id`. In doubt (the daemon did not
    /// answer) yes: whoever asked keeps the container and asks again later.
    async fn busy(&self, id: &str) -> bool {
        match self.inner.docker.inspect_container(id, None).await {
            Ok(info) => calls_running(&self.inner.docker, id, &info).await > 0,
            Err(e) => !is_not_found(&e),
        }
    }

    fn container_body(&self, user: &str, root: &Path) -> ContainerCreateBody {
        let c = self.config();
        let mut labels: HashMap<String, String> = c.labels.clone().into_iter().collect();
        labels.extend([
            (MANAGED_BY.to_owned(), MANAGED_BY_VALUE.to_owned()),
            (POOL.to_owned(), c.name_prefix.clone()),
            (USER.to_owned(), user.to_owned()),
            (CONFIG_HASH.to_owned(), self.inner.judge.expected_hash(user)),
            (SESSION.to_owned(), self.inner.session.clone()),
        ]);
        ContainerCreateBody {
            image: Some(c.image.clone()),
            // Commands run as the sandbox user through their execs; the container's own
            // processes belong to another user, out of their reach.
            user: Some(c.keeper_user.clone()),
            working_dir: Some(WORKSPACE.to_owned()),
            labels: Some(labels),
            host_config: Some(spec::host_config(c, root, self.inner.judge.gvisor())),
            ..Default::default()
        }
    }

    /// The sandboxes in memory, for the operator.
    pub fn snapshot(&self) -> Vec<SandboxInfo> {
        let now = (Instant::now(), SystemTime::now());
        let mut list: Vec<SandboxInfo> = self
            .state()
            .sandboxes
            .iter()
            .map(|(user, e)| SandboxInfo {
                engine: self.engine().to_owned(),
                user: user.clone(),
                container_id: e.container_id.clone(),
                name: e.name.clone(),
                state: e.gone.map_or("running", Gone::state).to_owned(),
                created: e.created,
                last_active: now.1.checked_sub(now.0.duration_since(e.last_active)),
                calls_in_flight: Some(e.in_flight),
                memory_bytes: None,
                pids: None,
                channel: Some(e.channel.info()),
            })
            .collect();
        list.sort_by(|a, b| a.user.cmp(&b.user));
        list
    }

    /// Stops the reaper and the event watcher and, by `policy`, removes or keeps the
    /// sandboxes.
    pub async fn shutdown(&self, policy: ShutdownPolicy) -> Result<(), PoolError> {
        self.inner.stop.cancel();
        let tasks = std::mem::take(&mut *self.tasks());
        for task in tasks {
            let _ = task.await;
        }
        if policy == ShutdownPolicy::Keep {
            return Ok(());
        }
        let all: Vec<(String, String)> = self
            .state()
            .sandboxes
            .drain()
            .map(|(u, e)| (u, e.container_id))
            .collect();
        let mut first_error = None;
        for (user, id) in all {
            if let Err(e) = self.remove_container(&user, &id).await {
                warn!(user, container = %id, error = %e, "failed to remove a sandbox at shutdown");
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// The pool's side of [`events::watch`].
struct Events(Weak<Inner>);

impl events::Listener for Events {
    fn gone(&self, user: &str, container_id: &str, how: Gone) -> bool {
        let Some(inner) = self.0.upgrade() else {
            return false;
        };
        let pool = SandboxPool { inner };
        let mut state = pool.state();
        if let Some(e) = state.sandboxes.get_mut(user)
            && e.container_id == container_id
            && e.gone != Some(how)
        {
            info!(
                user,
                container = container_id,
                state = how.state(),
                "the daemon says the sandbox is gone"
            );
            e.gone = Some(how);
            e.seen_healthy = None;
            drop(state);
            ::metrics::counter!(metrics::GONE, "pool" => pool.pool_name(), "engine" => pool.engine().to_owned(), "event" => how.event())
                .increment(1);
            pool.publish();
        }
        true
    }

    fn resync(&self) -> bool {
        let Some(inner) = self.0.upgrade() else {
            return false;
        };
        let pool = SandboxPool { inner };
        for e in pool.state().sandboxes.values_mut() {
            e.seen_healthy = None;
        }
        true
    }
}

async fn reap_loop(pool: Weak<Inner>, stop: CancellationToken, every: Duration) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        // The pool was dropped without `shutdown`: nothing left to reap for.
        let Some(inner) = pool.upgrade() else { return };
        SandboxPool { inner }.reap_idle().await;
    }
}

fn parse_time(text: Option<&str>) -> Option<SystemTime> {
    crate::view::parse_rfc3339(text?)
}

/// Makes the user root exist and be writable by the sandbox uid. One it creates (and any
/// missing parent) is mode 0700, for the sandbox uid alone: the host's other users cannot reach
/// what a sandbox leaves there.
fn prepare_root(user: &str, root: &Path, uid: u32) -> Result<(), PoolError> {
    let fail = |reason: String| PoolError::UserRoot {
        user: user.to_owned(),
        path: root.to_owned(),
        reason,
    };
    if !root.is_absolute() {
        return Err(fail("must be an absolute path".to_owned()));
    }
    if !root.exists() {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(root)
            .map_err(|e| fail(format!("cannot create it: {e}")))?;
    }
    let meta = std::fs::metadata(root).map_err(|e| fail(e.to_string()))?;
    if !meta.is_dir() {
        return Err(fail("is not a directory".to_owned()));
    }
    use std::os::unix::fs::MetadataExt;
    if meta.uid() == uid {
        return Ok(());
    }
    if rustix::process::geteuid().is_root() {
        let id = Some(rustix::process::Uid::from_raw(uid));
        let gid = Some(rustix::process::Gid::from_raw(uid));
        return rustix::fs::chown(root, id, gid)
            .map_err(|e| fail(format!("cannot give it to the sandbox uid {uid}: {e}")));
    }
    if meta.mode() & 0o002 != 0 {
        return Ok(());
    }
    Err(fail(format!(
        "owned by uid {}, so the sandbox uid {uid} cannot write it; run the pool as root or chown it to {uid}",
        meta.uid()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_ids_must_make_container_names() {
        for ok in [
            "u1",
            "alice.smith",
            "a-b_c",
            "0f8c1b2e-3d4a-4b5c-9d6e-7f8a9b0c1d2e",
        ] {
            assert!(validate_user(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-x", ".x", "a/b", "a b", "ü", "x:y", &"a".repeat(65)] {
            assert!(validate_user(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn container_dir_maps_like_the_seed() {
        let sb = Sandbox {
            user: "u".into(),
            container_id: "c".into(),
            name: "n".into(),
            user_root: PathBuf::from("/srv/u"),
            exec_user: "zcbot".into(),
            recreated: None,
        };
        assert_eq!(sb.container_dir(Path::new("/srv/u")), "/workspace");
        assert_eq!(
            sb.container_dir(Path::new("/srv/u/proj/src")),
            "/workspace/proj/src"
        );
        assert_eq!(sb.container_dir(Path::new("/elsewhere")), "/workspace");
        assert_eq!(sb.container_dir(Path::new("/srv/user2")), "/workspace");
    }

    #[test]
    fn a_user_root_that_cannot_be_made_is_a_clear_error() {
        let uid = rustix::process::getuid().as_raw();
        let err = prepare_root("u", Path::new("relative/path"), uid).expect_err("relative");
        assert!(err.to_string().contains("absolute"), "{err}");
        let file = tempfile::NamedTempFile::new().expect("file");
        let err = prepare_root("u", file.path(), uid).expect_err("a file");
        assert!(err.to_string().contains("not a directory"), "{err}");
    }

    #[test]
    fn a_user_root_it_makes_is_for_the_sandbox_uid_alone() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("users/u");
        prepare_root("u", &root, rustix::process::getuid().as_raw()).expect("made");
        for made in [&root, &dir.path().join("users")] {
            let mode = std::fs::metadata(made).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o700, "{}", made.display());
        }
    }
}
