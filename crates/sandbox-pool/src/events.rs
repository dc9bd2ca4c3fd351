//! The daemon's events about this pool's containers: a sandbox that died or was removed is
//! known gone at once, instead of from the next call that fails in it, and one the OOM killer
//! struck is known so even when the daemon learnt it after the death.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bollard::Docker;
use bollard::models::EventMessage;
use bollard::query_parameters::EventsOptionsBuilder;
use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::labels::{POOL, USER};
use crate::view::SandboxState;

/// Wait before subscribing again after the stream broke (the daemon restarted, say).
const RESUBSCRIBE: Duration = Duration::from_secs(1);

/// What happened to a sandbox's container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Gone {
    /// Its main process ended (it crashed, was stopped or killed, or ran out of memory).
    Died,
    /// It was removed.
    Removed,
}

impl Gone {
    /// The daemon's word for it.
    pub(crate) fn event(self) -> &'static str {
        match self {
            Self::Died => "die",
            Self::Removed => "destroy",
        }
    }

    /// The container state the operator sees for it.
    pub(crate) fn state(self) -> SandboxState {
        match self {
            Self::Died => SandboxState::Exited,
            Self::Removed => SandboxState::Removed,
        }
    }
}

/// What the daemon said of one of the pool's containers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum News {
    /// It is gone.
    Gone(Gone),
    /// The OOM killer ended a process of it, at this time by the daemon's clock: the whole
    /// container when it was its init or gVisor's own process, which Docker 20.10 may learn
    /// after the container's death, too late for the container's state.
    OomKilled {
        /// When.
        at: Option<SystemTime>,
    },
}

/// Where the watcher reports.
pub(crate) trait Listener: Send + Sync {
    /// `user`'s container `container_id` is gone. Returns false once the pool is gone.
    fn gone(&self, user: &str, container_id: &str, how: Gone) -> bool;
    /// The OOM killer struck in `user`'s container `container_id` at `at`. Returns false once
    /// the pool is gone.
    fn oom_killed(&self, user: &str, container_id: &str, at: Option<SystemTime>) -> bool;
    /// The stream was down and events may have been missed: trust nothing remembered.
    fn resync(&self) -> bool;
}

/// Follows the events of the containers labelled as pool `pool`'s until `stop`, subscribing
/// again whenever the stream breaks.
pub(crate) async fn watch(
    docker: Docker,
    pool: String,
    stop: CancellationToken,
    listener: impl Listener,
) {
    let filters = HashMap::from([
        ("type", vec!["container".to_owned()]),
        (
            "event",
            vec!["die".to_owned(), "destroy".to_owned(), "oom".to_owned()],
        ),
        ("label", vec![format!("{POOL}={pool}")]),
    ]);
    let mut first = true;
    loop {
        if !first && !listener.resync() {
            return;
        }
        first = false;
        let options = EventsOptionsBuilder::new().filters(&filters).build();
        let mut events = docker.events(Some(options));
        loop {
            let event = tokio::select! {
                _ = stop.cancelled() => return,
                event = events.next() => event,
            };
            match event {
                Some(Ok(event)) => {
                    let heard = match parse(&event) {
                        Some((user, id, News::Gone(how))) => listener.gone(&user, &id, how),
                        Some((user, id, News::OomKilled { at })) => {
                            listener.oom_killed(&user, &id, at)
                        }
                        None => true,
                    };
                    if !heard {
                        return;
                    }
                }
                Some(Err(e)) => {
                    warn!(pool = %pool, error = %e, "the daemon's event stream broke; subscribing again");
                    break;
                }
                None => {
                    debug!(pool = %pool, "the daemon's event stream ended; subscribing again");
                    break;
                }
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(RESUBSCRIBE) => {}
        }
    }
}

/// The user, container and what happened, for a die, destroy or oom of one of our containers.
fn parse(event: &EventMessage) -> Option<(String, String, News)> {
    let how = match event.action.as_deref()? {
        "die" => News::Gone(Gone::Died),
        "destroy" => News::Gone(Gone::Removed),
        "oom" => News::OomKilled {
            at: event
                .time_nano
                .and_then(|n| u64::try_from(n).ok())
                .map(|n| UNIX_EPOCH + Duration::from_nanos(n)),
        },
        _ => return None,
    };
    let actor = event.actor.as_ref()?;
    let user = actor.attributes.as_ref()?.get(USER)?.clone();
    Some((user, actor.id.clone()?, how))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::EventActor;

    fn event(action: &str, labels: &[(&str, &str)]) -> EventMessage {
        EventMessage {
            action: Some(action.to_owned()),
            actor: Some(EventActor {
                id: Some("c1".to_owned()),
                attributes: Some(
                    labels
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                        .collect(),
                ),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn die_and_destroy_of_a_users_container_are_read() {
        let labels = [(USER, "alice"), (POOL, "p")];
        assert_eq!(
            parse(&event("die", &labels)),
            Some(("alice".to_owned(), "c1".to_owned(), News::Gone(Gone::Died)))
        );
        assert_eq!(
            parse(&event("destroy", &labels)),
            Some((
                "alice".to_owned(),
                "c1".to_owned(),
                News::Gone(Gone::Removed)
            ))
        );
        // Any OOM kill in the container comes as the container's `oom`, with its time: only
        // one near the container's end says the container died of it.
        let mut oom = event("oom", &labels);
        oom.time_nano = Some(1_700_000_000_500_000_000);
        let at = UNIX_EPOCH + Duration::from_millis(1_700_000_000_500);
        assert_eq!(
            parse(&oom),
            Some((
                "alice".to_owned(),
                "c1".to_owned(),
                News::OomKilled { at: Some(at) }
            ))
        );
        assert_eq!(parse(&event("start", &labels)), None);
        assert_eq!(parse(&event("die", &[(POOL, "p")])), None, "no user label");
    }
}
