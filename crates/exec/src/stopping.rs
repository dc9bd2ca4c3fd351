//! How a running call is stopped, alike on both transports: the caller sends the kill order
//! down the call's own control channel; if the call has not ended after the grace and
//! [`KILL_FALLBACK_AFTER`], the kill goes through a second exec; once that reported, the
//! call's stream gets [`POST_KILL_WAIT`] to close.

use std::pin::Pin;
use std::time::{Duration, Instant};

use tokio::time::Sleep;

use crate::Termination;
use crate::future::{BoxFuture, maybe};
use crate::outcome::KillSummary;

/// After the kill order (and its grace), how long the supervisor may take to end the call
/// before the kill goes through a second exec.
pub(crate) const KILL_FALLBACK_AFTER: Duration = Duration::from_secs(1);
/// After the kill reports, how long to wait for the stream to end before giving up on it.
pub(crate) const POST_KILL_WAIT: Duration = Duration::from_secs(2);

/// Why a call was stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    TimedOut,
    Cancelled,
}

impl Stop {
    pub(crate) fn termination(self) -> Termination {
        match self {
            Stop::TimedOut => Termination::TimedOut,
            Stop::Cancelled => Termination::Cancelled,
        }
    }
}

/// What [`Stopping::next`] says to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// The order did not end the call in time: kill it through a second exec
    /// ([`Stopping::kill_with`]).
    Escalate,
    /// The kill exec reported; the stream has [`POST_KILL_WAIT`] to close.
    Killed,
    /// The kill never reached the sandbox (its daemon hangs, say): nothing more will come,
    /// and the answer is already late.
    Unreached,
    /// The stream stayed open after the kill: give up on it.
    GaveUp,
}

/// A call's way from running to stopped.
#[derive(Default)]
pub(crate) struct Stopping<'a> {
    stop: Option<(Stop, Instant)>,
    fallback: Option<Pin<Box<Sleep>>>,
    exec_kill: Option<BoxFuture<'a, KillSummary>>,
    post_kill: Option<Pin<Box<Sleep>>>,
    kill: Option<KillSummary>,
}

impl<'a> Stopping<'a> {
    /// Whether the call is being stopped.
    pub(crate) fn is_stopping(&self) -> bool {
        self.stop.is_some()
    }

    /// Whether a kill exec is under way (the call's answer waits for its report).
    pub(crate) fn killing(&self) -> bool {
        self.exec_kill.is_some()
    }

    /// The call is to stop; its kill order went out with `grace`.
    pub(crate) fn begin(&mut self, stop: Stop, grace: Duration) {
        self.stop = Some((stop, Instant::now()));
        self.fallback = Some(Box::pin(tokio::time::sleep(grace + KILL_FALLBACK_AFTER)));
    }

    /// Kills the call through `kill`, a second exec.
    pub(crate) fn kill_with(&mut self, kill: BoxFuture<'a, KillSummary>) {
        self.exec_kill = Some(kill);
    }

    /// The next step, once there is one (never, while the call runs unstopped). Cancel-safe:
    /// what it waits on stays here between polls.
    pub(crate) async fn next(&mut self) -> Step {
        tokio::select! {
            biased;
            _ = maybe(&mut self.fallback) => {
                self.fallback = None;
                Step::Escalate
            }
            summary = maybe(&mut self.exec_kill) => {
                self.exec_kill = None;
                let reached = summary.report.is_some();
                self.kill = Some(summary);
                if !reached {
                    return Step::Unreached;
                }
                self.post_kill = Some(Box::pin(tokio::time::sleep(POST_KILL_WAIT)));
                Step::Killed
            }
            _ = maybe(&mut self.post_kill) => {
                self.post_kill = None;
                Step::GaveUp
            }
        }
    }

    /// Why the call was stopped and when, and what the kill exec reported, if one ran.
    pub(crate) fn finish(self) -> (Option<(Stop, Instant)>, Option<KillSummary>) {
        (self.stop, self.kill)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(reached: bool) -> KillSummary {
        KillSummary {
            report: reached.then(Default::default),
            error: None,
            elapsed: Duration::ZERO,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_order_that_does_not_end_the_call_escalates_then_waits_for_the_stream() {
        let mut s = Stopping::default();
        assert!(!s.is_stopping());
        s.begin(Stop::TimedOut, Duration::from_millis(300));
        let begun = tokio::time::Instant::now();
        assert_eq!(s.next().await, Step::Escalate);
        assert_eq!(
            begun.elapsed(),
            Duration::from_millis(300) + KILL_FALLBACK_AFTER
        );
        s.kill_with(Box::pin(async { summary(true) }));
        assert!(s.killing());
        assert_eq!(s.next().await, Step::Killed);
        assert!(!s.killing());
        let killed = tokio::time::Instant::now();
        assert_eq!(s.next().await, Step::GaveUp);
        assert_eq!(killed.elapsed(), POST_KILL_WAIT);
        let (stop, kill) = s.finish();
        assert_eq!(stop.map(|(s, _)| s), Some(Stop::TimedOut));
        assert!(kill.is_some_and(|k| k.report.is_some()));
    }

    #[tokio::test(start_paused = true)]
    async fn a_kill_that_never_reached_the_sandbox_ends_the_wait() {
        let mut s = Stopping::default();
        s.begin(Stop::Cancelled, Duration::ZERO);
        assert_eq!(s.next().await, Step::Escalate);
        s.kill_with(Box::pin(async { summary(false) }));
        assert_eq!(s.next().await, Step::Unreached);
        assert_eq!(
            s.finish().0.map(|(s, _)| s.termination()),
            Some(Termination::Cancelled)
        );
    }
}
