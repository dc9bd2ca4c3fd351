//! Reading the Docker daemon's answers by status code, and its event log.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bollard::Docker;
use bollard::errors::Error as DockerError;
use bollard::query_parameters::EventsOptionsBuilder;
use futures_util::StreamExt;

/// How long before a container's end an OOM event of it is looked for in the daemon's log.
const OOM_BEFORE: Duration = Duration::from_secs(5);
/// How long after a container's end an OOM event of it may still come (the daemon waits for
/// the end of this window before it answers a question about it).
const OOM_AFTER: Duration = Duration::from_secs(2);

/// The HTTP status of a daemon error answer, if it was one.
pub fn status_code(err: &DockerError) -> Option<u16> {
    match err {
        DockerError::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

/// 404: no such container, image or exec.
pub fn is_not_found(err: &DockerError) -> bool {
    status_code(err) == Some(404)
}

/// 409: a name conflict, or a container in the wrong state for the operation.
pub fn is_conflict(err: &DockerError) -> bool {
    status_code(err) == Some(409)
}

/// Whether the error means the daemon could not be reached or stopped answering (as opposed
/// to an answer we did not like).
pub fn is_unreachable(err: &DockerError) -> bool {
    matches!(
        err,
        DockerError::IOError { .. }
            | DockerError::HyperResponseError { .. }
            | DockerError::HyperLegacyError { .. }
            | DockerError::HttpClientError { .. }
            | DockerError::SocketNotFoundError(_)
            | DockerError::RequestTimeoutError
    )
}

/// Docker's timestamps (RFC 3339 with nanoseconds; the fraction is dropped).
pub fn parse_rfc3339(text: &str) -> Option<SystemTime> {
    humantime::parse_rfc3339_weak(text.split('.').next()?).ok()
}

/// Whether an OOM kill the daemon reported at `oom_at` is what ended a container that ended at
/// `finished` (both by the daemon's clock): the daemon reports every OOM kill in a container
/// as the container's, a process's that the container outlived too, so only one near the end
/// counts.
pub fn oom_near_end(oom_at: SystemTime, finished: SystemTime) -> bool {
    oom_at + OOM_BEFORE >= finished && oom_at <= finished + OOM_AFTER
}

/// Whether the daemon logged an OOM kill of `container` (its id) around `finished`, when the
/// container ended by the daemon's own clock (its state's `FinishedAt`). Docker 20.10 sets a
/// container's `OOMKilled` only when the OOM event reaches it before the exit; under gVisor,
/// whose own process the host's OOM killer ends, it may come after. The daemon's log has it
/// either way while the event is among its last 256. Asked within 2 s of the end,
/// the answer waits for the rest of it; in doubt (no answer), no.
pub async fn oom_logged(docker: &Docker, container: &str, finished: SystemTime) -> bool {
    let secs = |t: SystemTime| {
        t.duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs()
            .to_string()
    };
    let filters = HashMap::from([
        ("type".to_owned(), vec!["container".to_owned()]),
        ("container".to_owned(), vec![container.to_owned()]),
        ("event".to_owned(), vec!["oom".to_owned()]),
    ]);
    let options = EventsOptionsBuilder::new()
        .since(&secs(finished - OOM_BEFORE))
        .until(&secs(finished + OOM_AFTER))
        .filters(&filters)
        .build();
    let read = async {
        let mut events = docker.events(Some(options));
        while let Some(Ok(event)) = events.next().await {
            if event.action.as_deref() == Some("oom") {
                return true;
            }
        }
        false
    };
    tokio::time::timeout(OOM_AFTER + Duration::from_secs(1), read)
        .await
        .unwrap_or(false)
}
