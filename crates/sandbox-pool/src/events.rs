//! The daemon's events about this pool's containers: a sandbox that died or was removed is
//! known gone at once, instead of from the next call that fails in it.

use std::collections::HashMap;
use std::time::Duration;

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

/// Where the watcher reports.
pub(crate) trait Listener: Send + Sync {
    /// `user`'s container `container_id` is gone. Returns false once the pool is gone.
    fn gone(&self, user: &str, container_id: &str, how: Gone) -> bool;
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
        ("event", vec!["die".to_owned(), "destroy".to_owned()]),
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
                    if let Some((user, id, how)) = parse(&event)
                        && !listener.gone(&user, &id, how)
                    {
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

/// The user, container and what happened, for a die or destroy of one of our containers.
fn parse(event: &EventMessage) -> Option<(String, String, Gone)> {
    let how = match event.action.as_deref()? {
        "die" => Gone::Died,
        "destroy" => Gone::Removed,
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
            Some(("alice".to_owned(), "c1".to_owned(), Gone::Died))
        );
        assert_eq!(
            parse(&event("destroy", &labels)),
            Some(("alice".to_owned(), "c1".to_owned(), Gone::Removed))
        );
        // An exec's OOM comes as the container's `oom`: it says nothing of the container.
        assert_eq!(parse(&event("oom", &labels)), None);
        assert_eq!(parse(&event("die", &[(POOL, "p")])), None, "no user label");
    }
}
