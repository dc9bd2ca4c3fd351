//! The hardening every sandbox gets, as one pure function of the configuration: the pool
//! makes its containers with it, and the end-to-end tests that work below the pool make theirs
//! with it too, so the two cannot drift apart.

use std::collections::HashMap;
use std::path::Path;

use bollard::models::{HostConfig, ResourcesUlimits};

use crate::config::{PoolConfig, WORKSPACE};
use crate::runtime::ProcessLimits;

/// The host configuration of a sandbox whose user root is `root`, under a runtime that is
/// gVisor or not (`gvisor`, see [`crate::runtime::is_gvisor`]): the user root read-write at
/// `/workspace` and the extra mounts read-only; no network; an init; no capabilities and no
/// new privileges; a read-only root with tmpfs `/tmp` and `/run`; memory (no swap beyond it),
/// CPU, process and open-file limits; the runtime.
pub fn host_config(c: &PoolConfig, root: &Path, gvisor: bool) -> HostConfig {
    let mut binds = vec![format!("{}:{WORKSPACE}:rw", root.display())];
    binds.extend(
        c.extra_mounts
            .iter()
            .map(|m| format!("{}:{}:ro", m.source.display(), m.target)),
    );
    let memory = i64::try_from(c.memory.as_u64()).unwrap_or(i64::MAX);
    let limits = ProcessLimits::for_runtime(c.pids_limit, gvisor);
    let ulimit = |name: &str, n: i64| ResourcesUlimits {
        name: Some(name.to_owned()),
        soft: Some(n),
        hard: Some(n),
    };
    let mut ulimits = vec![ulimit("nofile", c.nofile as i64)];
    ulimits.extend(limits.nproc.map(|n| ulimit("nproc", n)));
    HostConfig {
        binds: Some(binds),
        network_mode: Some(c.network_mode.clone()),
        init: Some(true),
        cap_drop: Some(vec!["ALL".to_owned()]),
        security_opt: Some(vec!["no-new-privileges".to_owned()]),
        readonly_rootfs: Some(c.read_only_rootfs),
        tmpfs: Some(HashMap::from([
            (
                "/tmp".to_owned(),
                format!(
                    "rw,exec,nosuid,nodev,size={},mode=1777",
                    c.tmp_size.as_u64()
                ),
            ),
            (
                "/run".to_owned(),
                format!(
                    "rw,noexec,nosuid,nodev,size={},mode=1777",
                    c.run_size.as_u64()
                ),
            ),
        ])),
        memory: Some(memory),
        memory_swap: Some(memory),
        nano_cpus: Some((c.cpus * 1e9) as i64),
        pids_limit: Some(limits.host_pids),
        ulimits: Some(ulimits),
        runtime: c.runtime.clone(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limits_and_walls_follow_the_configuration() {
        let c = PoolConfig {
            pids_limit: 64,
            ..PoolConfig::default()
        };
        let h = host_config(&c, Path::new("/srv/users/u"), false);
        assert_eq!(h.binds, Some(vec!["/srv/users/u:/workspace:rw".to_owned()]));
        assert_eq!(h.network_mode.as_deref(), Some("none"));
        assert_eq!(h.cap_drop, Some(vec!["ALL".to_owned()]));
        assert_eq!(h.memory, h.memory_swap);
        assert_eq!(h.pids_limit, Some(64));
        let nproc = |h: &HostConfig| {
            h.ulimits
                .iter()
                .flatten()
                .any(|u| u.name.as_deref() == Some("nproc"))
        };
        assert!(!nproc(&h));
        let g = host_config(&c, Path::new("/srv/users/u"), true);
        assert!(nproc(&g) && g.pids_limit > Some(64));
    }
}
