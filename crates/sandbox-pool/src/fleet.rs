//! [`Fleet`]: sandboxes spread over several Docker engines.
//!
//! One [`SandboxPool`] per engine, each with its own reaper, reconciliation and events; the
//! fleet only decides where a user's sandbox goes. A user whose sandbox runs on an engine that
//! answers is served there, wherever that is (adopted, never moved); any other user is placed
//! on the first engine of their rendezvous ranking ([`engine::rank`]) that answers and has
//! room. Every engine is pinged on a timer and at once after a call saw it fail; one that does
//! not answer takes no new sandbox until it does again, and when it comes back, a sandbox it
//! still holds for a user who meanwhile got one elsewhere is removed (the one that served the
//! user's calls stays).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, SystemTime};

use futures_util::future::join_all;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::engine::{self, EngineConfig};
use crate::locks::LockMap;
use crate::pool::{Lease, SandboxPool};
use crate::{IntoUserId, PoolConfig, PoolError, UserId, metrics};
use crate::{Sandbox, SandboxInfo, ShutdownPolicy, UserRoots};

/// How long an engine that answers may take to start its pool (the image, reconciliation).
const START_WITHIN: Duration = Duration::from_secs(60);

/// One engine and its pool (none until the engine first answered).
struct Member {
    engine: EngineConfig,
    pool: RwLock<Option<SandboxPool>>,
    up: AtomicBool,
    /// Why it is down, while it is.
    error: Mutex<Option<String>>,
    /// It may still hold a second sandbox of a user held on another engine.
    dedupe: AtomicBool,
}

impl Member {
    fn new(engine: EngineConfig) -> Self {
        Self {
            engine,
            pool: RwLock::default(),
            up: AtomicBool::new(false),
            error: Mutex::default(),
            dedupe: AtomicBool::new(false),
        }
    }

    fn pool(&self) -> Option<SandboxPool> {
        self.pool.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    fn error(&self) -> std::sync::MutexGuard<'_, Option<String>> {
        self.error.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// An engine as the operator sees it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct EngineStatus {
    /// Its name.
    pub name: String,
    /// Its address.
    pub host: String,
    /// Whether it answers and takes new sandboxes.
    pub up: bool,
    /// Sandboxes its pool holds.
    pub sandboxes: usize,
    /// Why it is down, while it is.
    pub error: Option<String>,
}

struct Inner {
    members: Vec<Member>,
    config: PoolConfig,
    roots: Arc<dyn UserRoots>,
    /// Placement of one user at a time: two first calls must not land on two engines.
    locks: LockMap<String>,
    stop: CancellationToken,
    /// Wakes the health loop (a call saw an engine fail).
    wake: Arc<Notify>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Sandboxes over several Docker engines. Cheap to clone; clones share everything. A fleet of
/// one engine ([`Fleet::from`] a pool) behaves as that pool alone.
#[derive(Clone)]
pub struct Fleet {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Fleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let engines: Vec<(&str, bool)> = self
            .inner
            .members
            .iter()
            .map(|m| (m.engine.name.as_str(), m.is_up()))
            .collect();
        f.debug_struct("Fleet")
            .field("pool", &self.inner.config.name_prefix)
            .field("engines", &engines)
            .finish()
    }
}

impl From<SandboxPool> for Fleet {
    /// The fleet of this one pool's engine: no pings, never marked down (there is nowhere
    /// else to go).
    fn from(pool: SandboxPool) -> Self {
        let member = Member::new(EngineConfig::new(pool.engine(), ""));
        member.up.store(true, Ordering::Release);
        let config = pool.config().clone();
        let roots: Arc<dyn UserRoots> = Arc::new(RootsOf(pool.clone()));
        *member.pool.write().unwrap_or_else(|e| e.into_inner()) = Some(pool);
        Self::new(vec![member], config, roots)
    }
}

/// A pool's own mapping of users to roots.
struct RootsOf(SandboxPool);

impl UserRoots for RootsOf {
    fn root(&self, user: &str) -> std::path::PathBuf {
        self.0.user_root(user)
    }
}

impl Fleet {
    fn new(members: Vec<Member>, config: PoolConfig, roots: Arc<dyn UserRoots>) -> Self {
        Self {
            inner: Arc::new(Inner {
                members,
                config,
                roots,
                locks: LockMap::default(),
                stop: CancellationToken::new(),
                wake: Arc::default(),
                tasks: Mutex::default(),
            }),
        }
    }

    /// A fleet over `engines` with `config`, taking user roots from `config.users_root` (the
    /// same path on every engine's host).
    pub async fn start(engines: Vec<EngineConfig>, config: PoolConfig) -> Result<Self, PoolError> {
        let roots = config.users_root();
        Self::start_with_roots(engines, config, roots).await
    }

    /// A fleet over `engines` with `config` and the caller's mapping of users to roots.
    ///
    /// Starts a pool on every engine that answers (each reconciles with its daemon as
    /// [`SandboxPool::start_with_roots`] does), keeps one sandbox per user when two engines
    /// hold one (the newest), and pings the engines from then on, starting the pool of one
    /// that answers later. Fails when the list is empty or invalid, or no engine answers.
    pub async fn start_with_roots(
        engines: Vec<EngineConfig>,
        config: PoolConfig,
        roots: impl UserRoots + 'static,
    ) -> Result<Self, PoolError> {
        if engines.is_empty() {
            return Err(PoolError::EngineConfig {
                engine: String::new(),
                reason: "the list of engines is empty".to_owned(),
            });
        }
        for (i, e) in engines.iter().enumerate() {
            e.validate()?;
            if engines[..i].iter().any(|o| o.name == e.name) {
                return Err(PoolError::EngineConfig {
                    engine: e.name.clone(),
                    reason: "two engines have this name".to_owned(),
                });
            }
        }
        let members = engines.into_iter().map(Member::new).collect();
        let fleet = Self::new(members, config, Arc::new(roots));
        let started = join_all(fleet.inner.members.iter().map(|m| fleet.check(m, false))).await;
        if !fleet.inner.members.iter().any(Member::is_up) {
            let first = started.into_iter().find_map(Result::err);
            return Err(first.unwrap_or_else(|| fleet.no_engine()));
        }
        fleet.keep_newest().await;
        let health = tokio::spawn(health_loop(
            Arc::downgrade(&fleet.inner),
            fleet.inner.stop.clone(),
            Arc::clone(&fleet.inner.wake),
            fleet.inner.config.engine_ping_interval,
        ));
        fleet.tasks().push(health);
        Ok(fleet)
    }

    fn tasks(&self) -> std::sync::MutexGuard<'_, Vec<tokio::task::JoinHandle<()>>> {
        self.inner.tasks.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn no_engine(&self) -> PoolError {
        let names: Vec<&str> = self
            .inner
            .members
            .iter()
            .map(|m| m.engine.name.as_str())
            .collect();
        PoolError::NoEngine {
            engines: names.join(", "),
        }
    }

    /// Pings `m` (starting its pool if it has none yet) and marks it up or down. With
    /// `dedupe`, an engine that comes back first gives up its sandboxes of users held on
    /// another engine.
    async fn check(&self, m: &Member, dedupe: bool) -> Result<(), PoolError> {
        let within = self.inner.config.engine_ping_timeout;
        let no_answer = || PoolError::EngineNoAnswer {
            engine: m.engine.name.clone(),
            host: m.engine.host.clone(),
            within,
        };
        let result = match m.pool() {
            Some(pool) => match tokio::time::timeout(within, pool.docker().ping()).await {
                Ok(Ok(_)) => Ok(pool),
                Ok(Err(source)) => Err(PoolError::DaemonUnreachable {
                    op: "pinging the engine",
                    source,
                }),
                Err(_) => Err(no_answer()),
            },
            None => self.start_member(m, within).await,
        };
        let pool = match result {
            Ok(pool) => pool,
            Err(e) => {
                self.mark_down(m, &e);
                return Err(e);
            }
        };
        if dedupe && (!m.is_up() || m.dedupe.load(Ordering::Acquire)) {
            self.give_up_duplicates(m, &pool).await;
        }
        self.mark_up(m);
        Ok(())
    }

    async fn start_member(&self, m: &Member, within: Duration) -> Result<SandboxPool, PoolError> {
        let no_answer = |within| PoolError::EngineNoAnswer {
            engine: m.engine.name.clone(),
            host: m.engine.host.clone(),
            within,
        };
        let docker = tokio::time::timeout(within, m.engine.connect())
            .await
            .map_err(|_| no_answer(within))??;
        let mut config = self.inner.config.clone();
        if let Some(cap) = m.engine.max_sandboxes {
            config.max_sandboxes = config.max_sandboxes.min(cap);
        }
        let start = SandboxPool::start_on(
            m.engine.name.clone(),
            docker,
            config,
            Arc::clone(&self.inner.roots),
        );
        let pool = tokio::time::timeout(START_WITHIN, start)
            .await
            .map_err(|_| no_answer(START_WITHIN))??;
        *m.pool.write().unwrap_or_else(|e| e.into_inner()) = Some(pool.clone());
        // Its reconciliation may have adopted sandboxes of users now held elsewhere.
        m.dedupe.store(true, Ordering::Release);
        Ok(pool)
    }

    fn mark_up(&self, m: &Member) {
        if !m.up.swap(true, Ordering::AcqRel) {
            info!(engine = %m.engine.name, host = %m.engine.host, "the engine answers; it takes sandboxes");
        }
        *m.error() = None;
        self.publish(m);
    }

    /// Takes `m` out of placement at once. Never the only engine: there is nowhere else to go,
    /// and its calls fail by themselves while it is down.
    fn mark_down(&self, m: &Member, why: &(dyn std::error::Error + 'static)) {
        if self.inner.members.len() == 1 {
            return;
        }
        let why = sandbox_exec::error_chain(why);
        if m.up.swap(false, Ordering::AcqRel) {
            warn!(engine = %m.engine.name, host = %m.engine.host, error = %why, "the engine does not answer; its users' calls go to their next engine");
        }
        *m.error() = Some(why);
        self.publish(m);
    }

    fn publish(&self, m: &Member) {
        ::metrics::gauge!(metrics::ENGINE_UP, "pool" => self.inner.config.name_prefix.clone(), "engine" => m.engine.name.clone())
            .set(if m.is_up() { 1.0 } else { 0.0 });
    }

    /// `m` is coming back: it removes its sandbox of every user that an engine which stayed up
    /// holds too (that one served the user meanwhile). One busy with a call stays until the
    /// next check.
    async fn give_up_duplicates(&self, m: &Member, pool: &SandboxPool) {
        let mut pending = false;
        for user in pool.users() {
            let elsewhere = self
                .others(m)
                .any(|o| o.is_up() && o.pool().is_some_and(|p| p.holds(&user).is_some()));
            if elsewhere && pool.drop_duplicate(&user).await {
                pending = true;
            }
        }
        m.dedupe.store(pending, Ordering::Release);
    }

    /// At start: a user held on two engines keeps the newest sandbox (made last, so the one
    /// their latest calls ran in).
    async fn keep_newest(&self) {
        let mut users: Vec<String> = self.up_pools().flat_map(|(_, p)| p.users()).collect();
        users.sort();
        users.dedup();
        for user in users {
            let held: Vec<(&Member, SandboxPool, Option<SystemTime>)> = self
                .up_pools()
                .filter_map(|(m, p)| p.holds(&user).map(|created| (m, p, created)))
                .collect();
            let Some(newest) = held.iter().map(|(_, _, c)| *c).max() else {
                continue;
            };
            let mut kept = false;
            for (m, pool, created) in held {
                if created == newest && !kept {
                    kept = true;
                } else if pool.drop_duplicate(&user).await {
                    m.dedupe.store(true, Ordering::Release);
                }
            }
        }
    }

    fn others<'a>(&'a self, m: &'a Member) -> impl Iterator<Item = &'a Member> {
        self.inner
            .members
            .iter()
            .filter(move |o| !std::ptr::eq(*o, m))
    }

    fn up_pools(&self) -> impl Iterator<Item = (&Member, SandboxPool)> {
        self.inner
            .members
            .iter()
            .filter(|m| m.is_up())
            .filter_map(|m| Some((m, m.pool()?)))
    }

    fn pools_started(&self) -> impl Iterator<Item = (&Member, SandboxPool)> {
        self.inner
            .members
            .iter()
            .filter_map(|m| Some((m, m.pool()?)))
    }

    /// The engine that answers and holds `user`'s sandbox (the newest, if two still do).
    fn home(&self, user: &str) -> Option<(&Member, SandboxPool)> {
        self.up_pools()
            .filter_map(|(m, p)| Some((p.holds(user)?, m, p)))
            .max_by_key(|(created, _, _)| *created)
            .map(|(_, m, p)| (m, p))
    }

    /// The user's sandbox, made, adopted or repaired on their engine, leased for one call.
    pub async fn acquire(&self, user: impl IntoUserId) -> Result<Lease, PoolError> {
        let user = user.into_user_id()?;
        if let Some(leased) = self.at_home(&user).await {
            return leased;
        }
        let _guard = self.inner.locks.lock(user.to_string()).await;
        // Placed by a call that held the lock before us.
        if let Some(leased) = self.at_home(&user).await {
            return leased;
        }
        self.place(&user).await
    }

    /// The user's sandbox where it runs; `None` when it runs nowhere that answers (the
    /// engine it was on may just have been found down).
    async fn at_home(&self, user: &UserId) -> Option<Result<Lease, PoolError>> {
        let (m, pool) = self.home(user)?;
        match self.acquire_on(m, &pool, user).await {
            Err(e) if e.is_daemon_unreachable() && self.spans_engines() => None,
            leased => Some(leased),
        }
    }

    /// Leases the user's sandbox on `m` (whose pool is `pool`); an engine found not answering
    /// is marked down.
    async fn acquire_on(
        &self,
        m: &Member,
        pool: &SandboxPool,
        user: &UserId,
    ) -> Result<Lease, PoolError> {
        let leased = pool.acquire(user).await;
        if let Err(e) = &leased
            && e.is_daemon_unreachable()
        {
            self.mark_down(m, e);
        }
        leased
    }

    /// A new sandbox on the first engine of the user's ranking that answers and has room.
    /// When none is marked up, every engine is tried (one may be back before its next ping).
    async fn place(&self, id: &UserId) -> Result<Lease, PoolError> {
        let user = id.as_str();
        let engines: Vec<EngineConfig> = self
            .inner
            .members
            .iter()
            .map(|m| m.engine.clone())
            .collect();
        let order = engine::rank(user, &engines);
        let first_choice = &order[0].name;
        let ranked: Vec<(&Member, SandboxPool)> = order
            .iter()
            .filter_map(|e| self.inner.members.iter().find(|m| m.engine.name == e.name))
            .filter_map(|m| Some((m, m.pool()?)))
            .collect();
        let anyone_up = ranked.iter().any(|(m, _)| m.is_up());
        let mut last = None;
        for (m, pool) in &ranked {
            if anyone_up && !m.is_up() {
                continue;
            }
            match self.acquire_on(m, pool, id).await {
                Ok(lease) => {
                    if &m.engine.name != first_choice {
                        info!(user, engine = %m.engine.name, %first_choice, "placed on a later engine of the user's ranking");
                    }
                    return Ok(lease);
                }
                // Full, or not answering: the next engine.
                Err(e) if matches!(e, PoolError::PoolFull { .. }) || e.is_daemon_unreachable() => {
                    last = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| self.no_engine()))
    }

    /// The user's sandbox, made or repaired if needed. Marks it active.
    pub async fn ensure(&self, user: impl IntoUserId) -> Result<Sandbox, PoolError> {
        Ok(self.acquire(user).await?.sandbox().clone())
    }

    /// Marks the user's sandbox active now (defers the reaper), wherever it runs.
    pub fn mark_active(&self, user: &str) {
        for (_, pool) in self.pools_started() {
            pool.mark_active(user);
        }
    }

    /// Forgets that the user's sandbox was healthy: the next call asks its daemon.
    pub fn invalidate(&self, user: &str) {
        for (_, pool) in self.pools_started() {
            pool.invalidate(user);
        }
    }

    /// As [`SandboxPool::recycle`], on whichever engine runs `container_id`.
    pub async fn recycle(
        &self,
        user: impl IntoUserId,
        container_id: &str,
    ) -> Result<(), PoolError> {
        let user = user.into_user_id()?;
        for (_, pool) in self.pools_started() {
            pool.recycle(&user, container_id).await?;
        }
        Ok(())
    }

    /// A call on `engine` found it not answering: it takes no new sandbox from now on, and
    /// it is pinged at once (it comes back as soon as it answers).
    pub fn report_unreachable(&self, engine: &str, why: &(dyn std::error::Error + 'static)) {
        if let Some(m) = self.inner.members.iter().find(|m| m.engine.name == engine) {
            self.mark_down(m, why);
        }
        self.inner.wake.notify_one();
    }

    /// A call lost its sandbox or ran out of time before it could start: the engines are
    /// pinged now rather than at the next tick.
    pub fn suspect(&self) {
        self.inner.wake.notify_one();
    }

    /// Removes the user's sandbox on every engine that answers. Returns whether there was one.
    pub async fn remove(&self, user: impl IntoUserId) -> Result<bool, PoolError> {
        let user = user.into_user_id()?;
        let mut removed = false;
        for (_, pool) in self.up_pools() {
            removed |= pool.remove(&user).await?;
        }
        Ok(removed)
    }

    /// Removes idle sandboxes now on every engine that answers; returns the users reaped.
    pub async fn reap_idle(&self) -> Vec<String> {
        let mut reaped = Vec::new();
        for (_, pool) in self.up_pools() {
            reaped.extend(pool.reap_idle().await);
        }
        reaped
    }

    /// The sandboxes every engine's pool holds, by engine then user.
    pub fn snapshot(&self) -> Vec<SandboxInfo> {
        self.pools_started()
            .flat_map(|(_, pool)| pool.snapshot())
            .collect()
    }

    /// Whether there is more than one engine (somewhere else to go when one fails).
    pub fn spans_engines(&self) -> bool {
        self.inner.members.len() > 1
    }

    /// The engines, in configuration order, and whether each takes sandboxes.
    pub fn engines(&self) -> Vec<EngineStatus> {
        self.inner
            .members
            .iter()
            .map(|m| EngineStatus {
                name: m.engine.name.clone(),
                host: m.engine.host.clone(),
                up: m.is_up(),
                sandboxes: m.pool().map_or(0, |p| p.len()),
                error: m.error().clone(),
            })
            .collect()
    }

    /// The pool of each engine that has answered, in configuration order.
    pub fn pools(&self) -> Vec<SandboxPool> {
        self.pools_started().map(|(_, p)| p).collect()
    }

    /// The pool of `engine`, once it has answered.
    pub fn pool(&self, engine: &str) -> Option<SandboxPool> {
        let m = self
            .inner
            .members
            .iter()
            .find(|m| m.engine.name == engine)?;
        m.pool()
    }

    /// The configuration every engine's pool shares.
    pub fn config(&self) -> &PoolConfig {
        &self.inner.config
    }

    /// The host folder of `user`'s root.
    pub fn user_root(&self, user: &str) -> std::path::PathBuf {
        self.inner.roots.root(user)
    }

    /// Sandboxes held now, on all engines.
    pub fn len(&self) -> usize {
        self.pools_started().map(|(_, p)| p.len()).sum()
    }

    /// Whether no engine holds a sandbox.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Stops the pings, then shuts every engine's pool down by `policy` (one that does not
    /// answer keeps its sandboxes: its next pool adopts or reconciles them).
    pub async fn shutdown(&self, policy: ShutdownPolicy) -> Result<(), PoolError> {
        self.inner.stop.cancel();
        let tasks = std::mem::take(&mut *self.tasks());
        for task in tasks {
            let _ = task.await;
        }
        let mut first_error = None;
        for (m, pool) in self.pools_started() {
            let policy = if m.is_up() {
                policy
            } else {
                ShutdownPolicy::Keep
            };
            if let Err(e) = pool.shutdown(policy).await {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

async fn health_loop(
    fleet: Weak<Inner>,
    stop: CancellationToken,
    wake: Arc<Notify>,
    every: Duration,
) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
            _ = wake.notified() => {}
        }
        let Some(inner) = fleet.upgrade() else { return };
        let fleet = Fleet { inner };
        let checks = fleet.inner.members.iter().map(|m| fleet.check(m, true));
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = join_all(checks) => {}
        }
    }
}
