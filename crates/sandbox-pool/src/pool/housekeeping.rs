//! The pool's housekeeping: the idle reaper and its rule, removal on request, start-up
//! reconciliation, duplicates across engines, and the daemon's news of containers gone.

use std::sync::Weak;
use std::time::{Duration, Instant, SystemTime};

use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::{Entry, Inner, SandboxPool};
use crate::containers::{self, calls_running};
use crate::events::{self, Gone};
use crate::judge::Verdict;
use crate::labels::USER;
use crate::{IntoUserId, PoolError, metrics, validate_user};
use sandbox_exec::docker::is_not_found;

/// The reaper's rule, the pool's and the operator's `reap` alike: a sandbox goes when no call
/// runs in it and its last call (or its start) is at least `idle_timeout` ago.
pub fn is_reapable(calls_in_flight: usize, idle: Duration, idle_timeout: Duration) -> bool {
    calls_in_flight == 0 && idle >= idle_timeout
}

impl SandboxPool {
    /// Removes `user`'s sandbox if it is idle for at least `idle` with no call in flight, of
    /// this pool or any other (the daemon lists the container's running execs). A sandbox busy
    /// with another pool's calls counts as active now. The caller holds the user's lock.
    /// Returns whether it removed one.
    pub(super) async fn remove_if_idle(&self, user: &str, idle: Duration) -> bool {
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
    pub async fn remove(&self, user: impl IntoUserId) -> Result<bool, PoolError> {
        let user = user.into_user_id()?;
        let user = user.as_str();
        let _guard = self.inner.locks.lock(user.to_owned()).await;
        let known = self.state().sandboxes.remove(user).map(|e| e.container_id);
        self.publish();
        match known {
            Some(id) => self.remove_container(user, &id).await.map(|()| true),
            None => {
                containers::remove_sandbox(&self.inner.docker, &self.config().name_prefix, user)
                    .await
                    .map(|removed| removed.is_some())
            }
        }
    }

    /// Adopts this pool's running, current containers and removes its other ones.
    pub(super) async fn reconcile(&self) -> Result<(), PoolError> {
        let containers =
            containers::list_containers(&self.inner.docker, &self.config().name_prefix).await?;
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
}

/// The pool's side of [`events::watch`].
pub(super) struct Events(pub(super) Weak<Inner>);

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
                state = how.state().as_str(),
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

    fn oom_killed(&self, user: &str, container_id: &str, at: Option<SystemTime>) -> bool {
        let Some(inner) = self.0.upgrade() else {
            return false;
        };
        let pool = SandboxPool { inner };
        if let Some(e) = pool.state().sandboxes.get_mut(user)
            && e.container_id == container_id
        {
            debug!(
                user,
                container = container_id,
                "the daemon says the OOM killer struck in the sandbox"
            );
            e.oom_at = at;
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

pub(super) async fn reap_loop(pool: Weak<Inner>, stop: CancellationToken, every: Duration) {
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
