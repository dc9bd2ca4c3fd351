//! Docker engines a pool can place sandboxes on: their configuration (`[[engines]]`), the
//! connection to each (a unix socket, or TCP with TLS client certificates), and the ranking of
//! the engines for a user by rendezvous (highest random weight) hashing, so that adding or
//! removing an engine moves only the users it must.

use std::path::{Path, PathBuf};

use bollard::{API_DEFAULT_VERSION, Docker};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::PoolError;

/// Seconds a request to an engine may take before the client gives up (bollard's default).
const TIMEOUT_SECS: u64 = 120;

/// One Docker engine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineConfig {
    /// Its name: in logs, metrics and placement (renaming an engine moves its users).
    pub name: String,
    /// `unix:///var/run/docker.sock`, or `tcp://host:2376`.
    pub host: String,
    /// The CA that signed the engine's certificate (TCP with TLS: all three or none).
    #[serde(default)]
    pub tls_ca: Option<PathBuf>,
    /// The client certificate the engine accepts.
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    /// Its private key.
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
    /// Its share of the users, relative to the others' (default 1).
    #[serde(default = "one")]
    pub weight: f64,
    /// At most this many sandboxes on it (default: the pool's `max_sandboxes` alone).
    #[serde(default)]
    pub max_sandboxes: Option<usize>,
}

fn one() -> f64 {
    1.0
}

impl EngineConfig {
    /// An engine at `host` with weight 1 and no TLS.
    pub fn new(name: impl Into<String>, host: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            host: host.into(),
            tls_ca: None,
            tls_cert: None,
            tls_key: None,
            weight: 1.0,
            max_sandboxes: None,
        }
    }

    /// With TLS client certificates.
    pub fn with_tls(mut self, ca: &Path, cert: &Path, key: &Path) -> Self {
        self.tls_ca = Some(ca.to_owned());
        self.tls_cert = Some(cert.to_owned());
        self.tls_key = Some(key.to_owned());
        self
    }

    fn invalid(&self, reason: impl Into<String>) -> PoolError {
        PoolError::EngineConfig {
            engine: self.name.clone(),
            reason: reason.into(),
        }
    }

    /// Checks what can be checked without connecting: a name, a positive weight, a
    /// `unix://` or `tcp://` host, and TLS files all three or none (and only over TCP).
    pub fn validate(&self) -> Result<(), PoolError> {
        self.tls().map(|_| ())
    }

    fn tls(&self) -> Result<Option<(&Path, &Path, &Path)>, PoolError> {
        if self.name.is_empty() {
            return Err(self.invalid("an engine needs a name"));
        }
        if !(self.weight.is_finite() && self.weight > 0.0) {
            return Err(self.invalid(format!("weight {} is not a positive number", self.weight)));
        }
        let tls = match (&self.tls_ca, &self.tls_cert, &self.tls_key) {
            (None, None, None) => None,
            (Some(ca), Some(cert), Some(key)) => {
                Some((ca.as_path(), cert.as_path(), key.as_path()))
            }
            _ => return Err(self.invalid("tls_ca, tls_cert and tls_key go together")),
        };
        if self.host.starts_with("unix://") {
            if tls.is_some() {
                return Err(self.invalid("TLS is for tcp:// engines"));
            }
        } else if !(self.host.starts_with("tcp://") || self.host.starts_with("https://")) {
            return Err(self.invalid(format!("host {} is neither unix:// nor tcp://", self.host)));
        }
        Ok(tls)
    }

    /// A client of the engine, its API version negotiated (which also proves it answers).
    pub async fn connect(&self) -> Result<Docker, PoolError> {
        let tls = self.tls()?;
        let client = match (self.host.strip_prefix("unix://"), tls) {
            (Some(path), _) => Docker::connect_with_unix(path, TIMEOUT_SECS, API_DEFAULT_VERSION),
            (None, Some((ca, cert, key))) => Docker::connect_with_ssl(
                &self.host,
                key,
                cert,
                ca,
                TIMEOUT_SECS,
                API_DEFAULT_VERSION,
            ),
            (None, None) => {
                Docker::connect_with_http(&self.host, TIMEOUT_SECS, API_DEFAULT_VERSION)
            }
        };
        let connect = |source| PoolError::EngineConnect {
            engine: self.name.clone(),
            host: self.host.clone(),
            source,
        };
        client
            .map_err(connect)?
            .negotiate_version()
            .await
            .map_err(connect)
    }
}

/// A number in (0, 1) for `user` on `engine`, the same in every process and version.
fn unit(user: &str, engine: &str) -> f64 {
    let digest = Sha256::new()
        .chain_update(engine.as_bytes())
        .chain_update([0])
        .chain_update(user.as_bytes())
        .finalize();
    let bits = u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"));
    // 53 bits fill an f64's mantissa; the half keeps it off 0 and 1.
    ((bits >> 11) as f64 + 0.5) / (1u64 << 53) as f64
}

/// `engines` in `user`'s order of preference: by weighted rendezvous hashing, each engine
/// scores `-weight / ln(u)` for a `u` in (0, 1) drawn from the user and the engine's name; the
/// highest score is first. An engine's share of the users is its share of the total weight,
/// and adding or removing one moves only the users that go to or come from it.
pub fn rank<'a>(user: &str, engines: &'a [EngineConfig]) -> Vec<&'a EngineConfig> {
    let mut scored: Vec<(f64, &EngineConfig)> = engines
        .iter()
        .map(|e| (-e.weight / unit(user, &e.name).ln(), e))
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.name.cmp(&b.1.name)));
    scored.into_iter().map(|(_, e)| e).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engines(names: &[&str]) -> Vec<EngineConfig> {
        names
            .iter()
            .map(|n| EngineConfig::new(*n, format!("unix:///run/{n}.sock")))
            .collect()
    }

    fn first(user: &str, engines: &[EngineConfig]) -> String {
        rank(user, engines)[0].name.clone()
    }

    fn users() -> impl Iterator<Item = String> {
        (0..10_000).map(|i| format!("user-{i}"))
    }

    #[test]
    fn a_ranking_is_stable_and_lists_every_engine_once() {
        let three = engines(&["a", "b", "c"]);
        let ranked: Vec<&str> = rank("alice", &three)
            .iter()
            .map(|e| e.name.as_str())
            .collect();
        assert_eq!(ranked.len(), 3);
        for _ in 0..3 {
            let again: Vec<&str> = rank("alice", &three)
                .iter()
                .map(|e| e.name.as_str())
                .collect();
            assert_eq!(again, ranked);
        }
        // The order of the list does not matter, only the names.
        let mut reversed = three.clone();
        reversed.reverse();
        assert_eq!(first("alice", &reversed), ranked[0]);
    }

    #[test]
    fn users_spread_evenly_and_an_added_engine_takes_about_its_share_from_each() {
        let three = engines(&["a", "b", "c"]);
        let four = engines(&["a", "b", "c", "d"]);
        let mut counts = std::collections::HashMap::new();
        let mut moved = 0;
        for user in users() {
            let before = first(&user, &three);
            let after = first(&user, &four);
            *counts.entry(before.clone()).or_insert(0) += 1;
            if before != after {
                moved += 1;
                assert_eq!(after, "d", "{user} moved between old engines");
            }
        }
        for n in counts.values() {
            assert!((3000..3700).contains(n), "{counts:?}");
        }
        // About 1/4 of the users move, all of them to the new engine.
        assert!((2200..2800).contains(&moved), "{moved}");
    }

    #[test]
    fn a_removed_engine_moves_only_its_own_users() {
        let three = engines(&["a", "b", "c"]);
        let two = engines(&["a", "c"]);
        for user in users() {
            let before = first(&user, &three);
            if before != "b" {
                assert_eq!(first(&user, &two), before, "{user}");
            }
            // Its users go to their second choice: the next engine in their ranking.
            if before == "b" {
                assert_eq!(first(&user, &two), rank(&user, &three)[1].name);
            }
        }
    }

    #[test]
    fn weights_set_the_shares() {
        let mut weighted = engines(&["a", "b"]);
        weighted[1].weight = 3.0;
        let on_b = users().filter(|u| first(u, &weighted) == "b").count();
        assert!((7200..7800).contains(&on_b), "{on_b}");
    }

    #[tokio::test]
    async fn a_bad_engine_configuration_names_the_engine() {
        let mut e = EngineConfig::new("x", "ftp://host");
        let err = e.connect().await.expect_err("scheme");
        assert_eq!(
            err.to_string(),
            "engine x: host ftp://host is neither unix:// nor tcp://"
        );
        e.host = "tcp://127.0.0.1:1".to_owned();
        e.tls_ca = Some("/ca.pem".into());
        let err = e.connect().await.expect_err("partial TLS");
        assert_eq!(
            err.to_string(),
            "engine x: tls_ca, tls_cert and tls_key go together"
        );
        e.tls_ca = None;
        e.weight = 0.0;
        assert!(e.connect().await.is_err());
        e.weight = 1.0;
        let err = e.connect().await.expect_err("nothing listens");
        assert!(matches!(err, PoolError::EngineConnect { .. }), "{err}");
    }
}
