//! Reading the Docker daemon's answers by status code.

use bollard::errors::Error as DockerError;

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
