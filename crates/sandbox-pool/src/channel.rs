//! Each sandbox's channel ([`sandbox_exec::Channel`]), opened in the background: a call that
//! finds none open goes through an exec at once while the pool opens one for the calls after
//! it, and reopens it the same way when it went down, with a backoff after a failed open so
//! that a sandbox whose channel cannot open (a command kills every serve process it sees)
//! costs its calls no more than the exec they fall back to.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use sandbox_exec::{Channel, ExecClient};
use tracing::{debug, warn};

/// Waits after failed opens: 1 s, doubling, at most 30 s.
const BACKOFF_FIRST: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// The channel of one sandbox, as the pool's memory holds it.
#[derive(Debug, Default)]
pub(crate) struct ChannelSlot {
    /// Never held across an await: a call only looks.
    state: Mutex<State>,
    /// Held by the one open in progress, so that a sandbox opens one channel at a time.
    opening: Arc<tokio::sync::Mutex<()>>,
    opened: AtomicU64,
    served_before: AtomicU64,
}

#[derive(Debug, Default)]
struct State {
    channel: Option<Channel>,
    /// After a failed open: not before this instant, and the wait after the next failure.
    retry: Option<(Instant, Duration)>,
}

/// Where to open a sandbox's channel.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub(crate) exec: ExecClient,
    pub(crate) container: String,
    pub(crate) user: String,
    pub(crate) session: String,
    /// The pool's name, for its metrics.
    pub(crate) pool: String,
    /// The engine's name, for its metrics.
    pub(crate) engine: String,
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
    fn state(&self) -> MutexGuard<'_, State> {
        // The state is a pair of plain values: a panic elsewhere leaves it whole.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The open channel, if there is one; a closed one is let go (its calls counted).
    fn current(&self) -> Option<Channel> {
        let mut state = self.state();
        let channel = state.channel.as_ref()?;
        if channel.is_open() {
            return Some(channel.clone());
        }
        self.served_before
            .fetch_add(channel.served(), Ordering::Relaxed);
        state.channel = None;
        None
    }

    fn backing_off(&self) -> bool {
        self.state()
            .retry
            .is_some_and(|(at, _)| Instant::now() < at)
    }

    /// The open channel without waiting: `None` when there is none now, and then (unless an
    /// open is in progress or a failed one is too recent) one is opening in the background.
    pub(crate) fn get(self: &Arc<Self>, target: impl FnOnce() -> Target) -> Option<Channel> {
        if let Some(channel) = self.current() {
            return Some(channel);
        }
        if self.backing_off() {
            return None;
        }
        // Outside a runtime nothing can open it; the call still runs through its exec.
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        if let Ok(guard) = Arc::clone(&self.opening).try_lock_owned() {
            let (slot, target) = (Arc::clone(self), target());
            runtime.spawn(async move {
                slot.open(&target).await;
                drop(guard);
            });
        }
        None
    }

    /// The open channel, opening it first (and waiting for it) if it is not; `None` when it
    /// cannot be had now.
    pub(crate) async fn ready(&self, target: impl FnOnce() -> Target) -> Option<Channel> {
        let _opening = self.opening.lock().await;
        if let Some(channel) = self.current() {
            return Some(channel);
        }
        if self.backing_off() {
            return None;
        }
        self.open(&target()).await
    }

    /// Opens a channel (the caller holds `opening`) and keeps it, or backs off.
    async fn open(&self, target: &Target) -> Option<Channel> {
        let generation = self.opened.load(Ordering::Relaxed);
        let session = &target.session[..target.session.len().min(16)];
        let id = format!("{session}-{generation}");
        let container = target.container.as_str();
        match Channel::open(&target.exec, container, Some(&target.user), &id).await {
            Ok(channel) => {
                self.opened.fetch_add(1, Ordering::Relaxed);
                if generation > 0 {
                    debug!(container, channel = %id, "channel reopened");
                    ::metrics::counter!(crate::metrics::CHANNEL_REOPENS, "pool" => target.pool.clone(), "engine" => target.engine.clone())
                        .increment(1);
                }
                let mut state = self.state();
                state.retry = None;
                state.channel = Some(channel.clone());
                Some(channel)
            }
            Err(e) => {
                let mut state = self.state();
                let wait = state
                    .retry
                    .map_or(BACKOFF_FIRST, |(_, w)| (w * 2).min(BACKOFF_MAX));
                warn!(container, channel = %id, error = %e, retry_in_ms = wait.as_millis() as u64, "cannot open the channel; calls go through exec meanwhile");
                state.retry = Some((Instant::now() + wait, wait));
                None
            }
        }
    }

    /// What the operator sees of it.
    pub(crate) fn info(&self) -> ChannelInfo {
        let current = self.state().channel.clone();
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
