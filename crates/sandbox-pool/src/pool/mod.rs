//! [`SandboxPool`]: one container per user, made on first use, trusted from memory while
//! healthy, recreated when gone, dead or outdated, removed when idle.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use bollard::Docker;
use bollard::models::{ContainerCreateBody, ContainerInspectResponse};
use bollard::query_parameters::CreateContainerOptionsBuilder;
use sandbox_exec::docker::{is_conflict, is_not_found, oom_logged, oom_near_end, parse_rfc3339};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::channel::ChannelSlot;
use crate::config::{Housekeeping, PoolConfig, WORKSPACE};
use crate::containers::{self, calls_running};
use crate::error::{inspect_failed, unreachable_or};
use crate::events::{self, Gone};
use crate::judge::Judge;
use crate::labels::{self, CONFIG_HASH, MANAGED_BY, MANAGED_BY_VALUE, POOL, SESSION, USER};
use crate::locks::LockMap;
use crate::view::{SandboxInfo, SandboxState};
use crate::{
    IntoUserId, PoolError, Recreated, Sandbox, ShutdownPolicy, UserId, UserRoots, metrics, spec,
};

mod housekeeping;
mod lease;
mod root;

pub use housekeeping::is_reapable;
use housekeeping::{Events, reap_loop};
pub use lease::Lease;
use lease::Reservation;
use root::prepare_root;

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
    /// When the daemon last said the OOM killer struck in it (an event; by its clock).
    oom_at: Option<SystemTime>,
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
            oom_at: None,
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

/// A container's end by SIGKILL, as its state gives it.
const KILLED: Recreated = Recreated::Exited {
    exit_code: Some(137),
};

/// The engine name of a pool made on one Docker client.
pub const LOCAL_ENGINE: &str = "local";

/// How often a replacement waiting for another pool's calls to end looks again.
const BUSY_POLL: Duration = Duration::from_millis(250);
/// How long a replacement waits for another pool's calls to end: the longest call a model may
/// ask for (the call's own deadline normally ends the wait first).
const BUSY_WAIT: Duration = Duration::from_secs(600);

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
            let state = e.gone.map_or(SandboxState::Running, Gone::state).as_str();
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

    fn handle(&self, user: &UserId, entry: &Entry, recreated: Option<Recreated>) -> Sandbox {
        Sandbox {
            user: user.clone(),
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
    fn try_warm(&self, user: &UserId) -> Option<Lease> {
        let ttl = self.config().health_ttl;
        let mut state = self.state();
        let entry = state.sandboxes.get_mut(user.as_str())?;
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
    #[tracing::instrument(skip_all, fields(pool = %self.config().name_prefix, user))]
    pub async fn acquire(&self, user: impl IntoUserId) -> Result<Lease, PoolError> {
        let user = user.into_user_id()?;
        tracing::Span::current().record("user", user.as_str());
        if let Some(lease) = self.try_warm(&user) {
            return Ok(lease);
        }
        let _guard = self.inner.locks.lock(user.to_string()).await;
        // Someone else may have made it while we waited for the lock.
        if let Some(lease) = self.try_warm(&user) {
            return Ok(lease);
        }
        let lease = self.ensure_locked(&user).await;
        self.publish();
        lease
    }

    /// The user's sandbox, made or repaired if needed. Marks it active.
    pub async fn ensure(&self, user: impl IntoUserId) -> Result<Sandbox, PoolError> {
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
    pub async fn recycle(
        &self,
        user: impl IntoUserId,
        container_id: &str,
    ) -> Result<(), PoolError> {
        let user = user.into_user_id()?;
        let user = user.as_str();
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
    async fn ensure_locked(&self, user_id: &UserId) -> Result<Lease, PoolError> {
        let user = user_id.as_str();
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
                Err(e) => return Err(inspect_failed(user, name, e)),
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
                    let sandbox = self.handle(user_id, &entry, None);
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
                    let reason = if reason == KILLED && self.oom_ended(user, &id, &info).await {
                        Recreated::OomKilled
                    } else {
                        reason
                    };
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
        self.create(user_id, &name, recreated).await
    }

    /// Whether the OOM killer ended container `id` of `user`, which its state says was killed
    /// (137): Docker 20.10 records an OOM kill in the state only when it learns of it before
    /// the container's death. Else the pool's event watcher heard it, or the daemon's event
    /// log still has it, near the container's end.
    async fn oom_ended(&self, user: &str, id: &str, info: &ContainerInspectResponse) -> bool {
        let finished = info
            .state
            .as_ref()
            .and_then(|s| s.finished_at.as_deref())
            .and_then(parse_rfc3339);
        let Some(finished) = finished else {
            return false;
        };
        let heard = self
            .state()
            .sandboxes
            .get(user)
            .filter(|e| e.container_id == id)
            .and_then(|e| e.oom_at);
        match heard {
            Some(at) if oom_near_end(at, finished) => true,
            _ => oom_logged(&self.inner.docker, id, finished).await,
        }
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
        user_id: &UserId,
        name: &str,
        recreated: Option<Recreated>,
    ) -> Result<Lease, PoolError> {
        let user = user_id.as_str();
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
                return Box::pin(self.ensure_locked(user_id)).await;
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
                cleanup: cleanup.map(Box::new),
            });
        }
        let entry = Entry::new(created.id, name.to_owned(), Some(SystemTime::now()), 1);
        let sandbox = self.handle(user_id, &entry, recreated);
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

    async fn remove_container(&self, user: &str, id: &str) -> Result<(), PoolError> {
        let removed = self.remove_container_only(user, id).await;
        if removed.is_ok() {
            self.unmount_disk(user);
        }
        removed
    }

    async fn remove_container_only(&self, user: &str, id: &str) -> Result<(), PoolError> {
        match containers::remove_container(&self.inner.docker, id).await {
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
                state: e.gone.map_or(SandboxState::Running, Gone::state),
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

fn parse_time(text: Option<&str>) -> Option<SystemTime> {
    parse_rfc3339(text?)
}
