//! Connecting to the Docker daemon, and reading its answers by status code.

use bollard::Docker;
use bollard::errors::Error as DockerError;

use crate::ExecError;

/// Connects to the daemon named by `DOCKER_HOST` (unix, tcp or http), or the local default
/// socket, and negotiates the API version.
///
/// Negotiation matters: this crate's bollard defaults to API 1.53 while Docker 20.10 speaks
/// 1.41. bollard 0.21 sends unversioned paths so it works either way today, but the next
/// release pins the version in the path and would get HTTP 400 without this step.
pub async fn connect() -> Result<Docker, ExecError> {
    let docker = Docker::connect_with_defaults().map_err(ExecError::Connect)?;
    docker.negotiate_version().await.map_err(ExecError::Connect)
}

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
