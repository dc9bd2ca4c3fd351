//! [`Lease`]: a sandbox held for one call, and the slot a container being made holds.

use std::sync::Arc;
use std::time::Instant;

use bollard::Docker;

use super::SandboxPool;
use crate::Sandbox;
use crate::channel::ChannelSlot;

/// A sandbox in use by one call. While any lease is alive the reaper leaves the sandbox
/// alone; dropping it marks the sandbox active (and healthy, unless [`Lease::mark_lost`]).
#[derive(Debug)]
pub struct Lease {
    pub(super) pool: SandboxPool,
    pub(super) sandbox: Sandbox,
    pub(super) channel: Arc<ChannelSlot>,
    pub(super) lost: bool,
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
        if let Some(e) = state.sandboxes.get_mut(self.sandbox.user.as_str())
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
pub(super) struct Reservation<'a>(pub(super) &'a SandboxPool);

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        self.0.state().reserved -= 1;
    }
}
