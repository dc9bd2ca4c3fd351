//! What the OCI runtime changes: gVisor (`runsc`) runs a kernel of its own in each sandbox,
//! so the runner must be readable ([`crate::image::ImageConfig::gvisor`]) and the host's pids
//! limit counts gVisor's own threads rather than the sandbox's processes.

use std::path::Path;

use bollard::Docker;

use crate::PoolError;
use crate::error::unreachable_or;

/// Host threads a gVisor sandbox may use per process it runs: on gVisor's ptrace platform each
/// process costs about ten at rest (measured here: 404 host pids for 35 processes in the
/// sandbox, 54 for the two of an idle one) and up to 28 while processes come and go as fast as
/// they can (1819 for a fork bomb held to 64, over 30 s); gVisor dies when it cannot make one.
const GVISOR_HOST_PIDS_PER_PROCESS: i64 = 32;
/// Host threads of an idle gVisor sandbox, with room.
const GVISOR_HOST_PIDS_BASE: i64 = 256;

/// Whether `runtime` (a runtime the daemon knows by that name; `None`: the daemon's default)
/// is gVisor, told by the program the daemon runs for it (`runsc`), not by its name. A name
/// the daemon does not know is [`PoolError::UnknownRuntime`]: no sandbox could start.
pub async fn is_gvisor(docker: &Docker, runtime: Option<&str>) -> Result<bool, PoolError> {
    let info = docker.info().await.map_err(|e| {
        unreachable_or("asking the daemon for its runtimes", e, |source| {
            PoolError::DaemonInfo { source }
        })
    })?;
    let Some(name) = runtime.map(str::to_owned).or(info.default_runtime) else {
        return Ok(false);
    };
    let known = info.runtimes.unwrap_or_default();
    let Some(found) = known.get(&name) else {
        let mut names: Vec<String> = known.into_keys().collect();
        names.sort();
        return Err(PoolError::UnknownRuntime {
            runtime: name,
            known: names.join(", "),
        });
    };
    let path = found.path.as_deref().unwrap_or(&name);
    Ok(Path::new(path).file_name().is_some_and(|f| f == "runsc"))
}

/// How a sandbox's limit on processes is enforced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessLimits {
    /// The host's pids limit of the container (`HostConfig.PidsLimit`).
    pub host_pids: i64,
    /// `RLIMIT_NPROC` of the sandbox's processes (`nproc` ulimit), when it is the limit.
    pub nproc: Option<i64>,
}

impl ProcessLimits {
    /// The limits that hold a sandbox to `pids_limit` processes. Under runc the host's pids
    /// limit does. Under gVisor it would count gVisor's own threads (an idle sandbox uses about
    /// 50, and it dies when it cannot make one), so there the sandbox's own kernel holds its
    /// user to `pids_limit` processes with `RLIMIT_NPROC` (per uid, and each gVisor sandbox is a
    /// kernel of its own; under runc it would count the uid's processes host-wide), and the host
    /// limit only bounds gVisor's threads.
    pub fn for_runtime(pids_limit: i64, gvisor: bool) -> Self {
        if gvisor {
            Self {
                host_pids: pids_limit
                    .saturating_mul(GVISOR_HOST_PIDS_PER_PROCESS)
                    .saturating_add(GVISOR_HOST_PIDS_BASE),
                nproc: Some(pids_limit),
            }
        } else {
            Self {
                host_pids: pids_limit,
                nproc: None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn under_gvisor_the_sandboxs_kernel_counts_its_processes_and_the_host_only_bounds_threads() {
        assert_eq!(
            ProcessLimits::for_runtime(256, false),
            ProcessLimits {
                host_pids: 256,
                nproc: None
            }
        );
        let g = ProcessLimits::for_runtime(64, true);
        assert_eq!(g.nproc, Some(64));
        assert!(g.host_pids >= 1819, "a fork bomb held to 64 fits: {g:?}");
        assert_eq!(
            ProcessLimits::for_runtime(i64::MAX, true).host_pids,
            i64::MAX
        );
    }
}
