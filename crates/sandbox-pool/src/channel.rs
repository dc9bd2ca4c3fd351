//! Each sandbox's channel ([`sandbox_exec::Channel`]): opened on the first call that wants it,
//! reopened when it went down, with a backoff after a failed open so that a sandbox whose
//! channel cannot open (a command kills every serve process it sees) costs its calls no more
//! than the exec they fall back to.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sandbox_exec::{Channel, ExecClient};
use tracing::{debug, warn};

/// Waits after failed opens: 1 s, doubling, at most 30 s.
const BACKOFF_FIRST: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// The channel of one sandbox, as the pool's memory holds it.
#[derive(Debug, Default)]
pub(crate) struct ChannelSlot {
    state: tokio::sync::Mutex<State>,
    opened: AtomicU64,
    served_before: AtomicU64,
}

#[derive(Debug, Default)]
struct State {
    channel: Option<Channel>,
    /// After a failed open: not before this instant, and the wait after the next failure.
    retry: Option<(Instant, Duration)>,
}

/// A sandbox's channel as the operator sees it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ChannelInfo {
    /// The channel's id (`sandbox-runner serve <id>` in the container).
    pub id: Option<String>,
    /// Whether it takes calls now.
    pub open: bool,
    /// Calls it ran, over every channel this sandbox had.
    pub calls_served: u64,
    /// Times it was opened again after the first.
    pub reopened: u64,
}

impl ChannelSlot {
    /// The open channel, opening it first if it is not (bounded by the open's own timeout);
    /// `None` when it cannot be had now: the call goes through an exec of its own.
    pub(crate) async fn get(
        &self,
        exec: &ExecClient,
        container: &str,
        user: &str,
        session: &str,
    ) -> Option<Channel> {
        let mut state = self.state.lock().await;
        if let Some(channel) = &state.channel {
            if channel.is_open() {
                return Some(channel.clone());
            }
            self.served_before
                .fetch_add(channel.served(), Ordering::Relaxed);
            state.channel = None;
        }
        if let Some((at, _)) = state.retry
            && Instant::now() < at
        {
            return None;
        }
        let generation = self.opened.load(Ordering::Relaxed);
        let id = format!("{}-{generation}", &session[..session.len().min(16)]);
        match Channel::open(exec, container, Some(user), &id).await {
            Ok(channel) => {
                self.opened.fetch_add(1, Ordering::Relaxed);
                if generation > 0 {
                    debug!(container, channel = %id, "channel reopened");
                }
                state.retry = None;
                state.channel = Some(channel.clone());
                Some(channel)
            }
            Err(e) => {
                let wait = state
                    .retry
                    .map_or(BACKOFF_FIRST, |(_, w)| (w * 2).min(BACKOFF_MAX));
                warn!(container, channel = %id, error = %e, retry_in_ms = wait.as_millis() as u64, "cannot open the channel; calls go through exec meanwhile");
                state.retry = Some((Instant::now() + wait, wait));
                None
            }
        }
    }

    /// What the operator sees of it (without waiting for an open in progress).
    pub(crate) fn info(&self) -> ChannelInfo {
        let current = self.state.try_lock().ok().and_then(|s| s.channel.clone());
        let opened = self.opened.load(Ordering::Relaxed);
        ChannelInfo {
            id: current.as_ref().map(|c| c.id().to_owned()),
            open: current.as_ref().is_some_and(Channel::is_open),
            calls_served: self.served_before.load(Ordering::Relaxed)
                + current.as_ref().map_or(0, Channel::served),
            reopened: opened.saturating_sub(1),
        }
    }
}
