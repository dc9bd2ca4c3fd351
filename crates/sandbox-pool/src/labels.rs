//! The labels that mark our containers, and the configuration hash.

use std::collections::HashMap;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::config::PoolConfig;

/// `zcbot.sandbox.managed-by=sandbox-pool` on every container the pool makes.
pub const MANAGED_BY: &str = "zcbot.sandbox.managed-by";
/// Value of [`MANAGED_BY`].
pub const MANAGED_BY_VALUE: &str = "sandbox-pool";
/// The pool's name (its container name prefix).
pub const POOL: &str = "zcbot.sandbox.pool";
/// The user a sandbox belongs to.
pub const USER: &str = "zcbot.sandbox.user";
/// Hash of the configuration the container was made with (labels cannot change after
/// creation; a different hash means "made for another configuration").
pub const CONFIG_HASH: &str = "zcbot.sandbox.config-hash";
/// The pool instance that created the container. Informational: a restarted service adopts
/// its predecessor's containers, so ownership is by pool name, not session.
pub const SESSION: &str = "zcbot.sandbox.session";

/// The label filter (`label=k=v`, AND-ed) that lists exactly this pool's containers.
pub fn pool_filter(pool: &str) -> HashMap<String, Vec<String>> {
    HashMap::from([(
        "label".to_owned(),
        vec![
            format!("{MANAGED_BY}={MANAGED_BY_VALUE}"),
            format!("{POOL}={pool}"),
        ],
    )])
}

/// Whether these labels say the container is ours (this pool's).
pub fn is_ours(labels: Option<&HashMap<String, String>>, pool: &str) -> bool {
    labels.is_some_and(|l| {
        l.get(MANAGED_BY).map(String::as_str) == Some(MANAGED_BY_VALUE)
            && l.get(POOL).map(String::as_str) == Some(pool)
    })
}

/// What a user's container is made from, hashed. Includes the image id (a rebuilt image is a
/// new configuration) and the user's root (a moved root is too).
pub fn config_hash(config: &PoolConfig, image_id: &str, uid: u32, user_root: &str) -> String {
    #[derive(Serialize)]
    struct Hashed<'a> {
        config: &'a PoolConfig,
        image_id: &'a str,
        uid: u32,
        user_root: &'a str,
    }
    // The timings say how the pool treats a container, not what it is made of.
    let mut config = config.clone();
    config.idle_timeout = Default::default();
    config.reap_interval = Default::default();
    config.health_ttl = Default::default();
    config.max_sandboxes = 0;
    config.engine_ping_interval = Default::default();
    config.engine_ping_timeout = Default::default();
    config.housekeeping = Default::default();
    config.users_root = None;
    let json = serde_json::to_vec(&Hashed {
        config: &config,
        image_id,
        uid,
        user_root,
    })
    .expect("the configuration serializes");
    hex::encode(&Sha256::digest(&json)[..12])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn hash_follows_what_the_container_is_made_of_only() {
        let base = PoolConfig::default();
        let h = config_hash(&base, "sha256:1", 1000, "/u/a");
        let timing = PoolConfig {
            idle_timeout: Duration::from_secs(1),
            max_sandboxes: 3,
            engine_ping_interval: Duration::from_millis(300),
            engine_ping_timeout: Duration::from_millis(300),
            ..base.clone()
        };
        assert_eq!(config_hash(&timing, "sha256:1", 1000, "/u/a"), h);
        // Another disk quota is another filesystem: the sandbox is made again on it.
        let disk = PoolConfig {
            disk_quota: Some(bytesize::ByteSize::mib(64)),
            ..base.clone()
        };
        assert_ne!(config_hash(&disk, "sha256:1", 1000, "/u/a"), h);
        let memory = PoolConfig {
            memory: bytesize::ByteSize::mib(5),
            ..base.clone()
        };
        assert_ne!(config_hash(&memory, "sha256:1", 1000, "/u/a"), h);
        assert_ne!(config_hash(&base, "sha256:2", 1000, "/u/a"), h);
        assert_ne!(config_hash(&base, "sha256:1", 1000, "/u/b"), h);
    }

    #[test]
    fn ours_means_both_labels() {
        let mut l = HashMap::from([(MANAGED_BY.to_owned(), MANAGED_BY_VALUE.to_owned())]);
        assert!(!is_ours(Some(&l), "p"));
        l.insert(POOL.to_owned(), "p".to_owned());
        assert!(is_ours(Some(&l), "p"));
        assert!(!is_ours(Some(&l), "q"));
        assert!(!is_ours(None, "p"));
    }
}
