//! Reading the Docker daemon's answers by status code, and its event log.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bollard::Docker;
use bollard::errors::Error as DockerError;
use bollard::query_parameters::EventsOptionsBuilder;
use futures_util::StreamExt;

/// How far back [`oom_logged`] looks: a sandbox's death is asked about right after it.
const OOM_LOOKBACK: Duration = Duration::from_secs(600);
/// Bound on reading the daemon's event log for [`oom_logged`].
const OOM_QUERY_TIMEOUT: Duration = Duration::from_secs(2);

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

/// Whether the daemon logged an OOM kill of `container` (id or name) in the last ten minutes.
/// Docker 20.10 sets a container's `OOMKilled` only when the OOM event reaches it before the
/// exit; under gVisor, whose own process the host's OOM killer ends, it often comes after. The
/// event log has it either way. In doubt (no answer in time), no.
pub async fn oom_logged(docker: &Docker, container: &str) -> bool {
    let now = SystemTime::now();
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
    // `until` counts whole seconds: one more takes in an event of this second.
    let options = EventsOptionsBuilder::new()
        .since(&secs(now - OOM_LOOKBACK))
        .until(&secs(now + Duration::from_secs(1)))
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
    tokio::time::timeout(OOM_QUERY_TIMEOUT, read)
        .await
        .unwrap_or(false)
}
