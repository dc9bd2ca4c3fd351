//! [`FileConfig`]: the one configuration file of the sandbox (`[image]`, `[pool]`, `[tools]`),
//! read by `pool-inspect`, the Python package and the service alike, from TOML, YAML or JSON.

use std::path::{Path, PathBuf};

use sandbox_pool::image::ImageConfig;
use sandbox_pool::{EngineConfig, PoolConfig};
use serde::{Deserialize, Serialize};

use crate::config::ToolsConfig;

/// Everything the sandbox configures. Missing sections and fields take the libraries'
/// defaults; unknown ones are refused, so a typo never passes silently.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileConfig {
    /// How the sandbox image is built.
    pub image: ImageConfig,
    /// What sandboxes are made from and how they are kept.
    pub pool: PoolConfig,
    /// How the tools run (timeouts, output caps, quotas, transport).
    pub tools: ToolsConfig,
    /// The Docker engines sandboxes may be placed on (`[[engines]]`); none: the local one
    /// (`DOCKER_HOST`, or the default socket).
    pub engines: Vec<EngineConfig>,
}

/// The formats a configuration is read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigFormat {
    /// TOML (`pool.toml`, and any name that is not YAML or JSON).
    Toml,
    /// YAML (`.yaml`, `.yml`).
    Yaml,
    /// JSON (`.json`).
    Json,
}

impl ConfigFormat {
    /// The format a file's name says.
    pub fn of(path: &Path) -> Self {
        match path.extension().and_then(|e| e.to_str()) {
            Some("yaml" | "yml") => Self::Yaml,
            Some("json") => Self::Json,
            _ => Self::Toml,
        }
    }
}

/// Why a configuration could not be had.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading the configuration {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The text is not a configuration (bad syntax, a wrong type, an unknown key).
    #[error("parsing the configuration {}: {message}", origin.display())]
    Parse {
        /// The file, or `<text>` for text given directly.
        origin: PathBuf,
        /// The parser's own words (line and key included).
        message: String,
    },
}

impl FileConfig {
    /// The pool's configuration, with the tools' quota as its disk quota when `[pool]` sets
    /// none: one setting sizes the user's filesystem and the file tools' gate alike.
    pub fn pool_config(&self) -> PoolConfig {
        let mut pool = self.pool.clone();
        if pool.disk_quota.is_none() {
            pool.disk_quota = self.tools.quotas.disk_bytes_per_user;
        }
        pool
    }

    /// Parses `text` in `format`; `origin` names it in an error.
    pub fn parse(text: &str, format: ConfigFormat, origin: &Path) -> Result<Self, ConfigError> {
        let parsed = match format {
            ConfigFormat::Toml => toml::from_str(text).map_err(|e| e.to_string()),
            ConfigFormat::Yaml => yaml_serde::from_str(text).map_err(|e| e.to_string()),
            ConfigFormat::Json => serde_json::from_str(text).map_err(|e| e.to_string()),
        };
        parsed.map_err(|message| ConfigError::Parse {
            origin: origin.to_owned(),
            message: message.trim_end().to_owned(),
        })
    }

    /// Reads and parses the file at `path`, in the format its name says.
    pub fn read(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, ConfigFormat::of(path), path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../../pool-inspect/examples/pool.toml");

    fn parse(text: &str, format: ConfigFormat) -> Result<FileConfig, ConfigError> {
        FileConfig::parse(text, format, Path::new("<text>"))
    }

    #[test]
    fn the_example_file_parses_and_shows_the_defaults() {
        let parsed = parse(EXAMPLE, ConfigFormat::Toml).expect("the example parses");
        assert_eq!(parsed, FileConfig::default());
    }

    #[test]
    fn the_same_structure_parses_from_yaml() {
        // The example itself, carried over to YAML mechanically: same keys, same values.
        let table: toml::Table = toml::from_str(EXAMPLE).expect("toml");
        let yaml = yaml_serde::to_string(&table).expect("to yaml");
        let from_yaml = parse(&yaml, ConfigFormat::Yaml).expect("the YAML parses");
        assert_eq!(from_yaml, FileConfig::default());

        // And as a person would write it.
        let text = "
pool:
  name_prefix: team-a
  memory: 512MiB
  idle_timeout: 90s
  labels: {team: a}
  extra_mounts:
    - {source: /srv/skills, target: /sandbox/skills}
tools:
  shell_timeout: 10s
  quotas: {disk_bytes_per_user: 2GiB, on_check_failure: open}
image:
  base: debootstrap
";
        let c = parse(text, ConfigFormat::Yaml).expect("hand-written YAML");
        assert_eq!(c.pool.name_prefix, "team-a");
        assert_eq!(c.pool.memory.as_u64(), 512 * 1024 * 1024);
        assert_eq!(c.pool.idle_timeout.as_secs(), 90);
        assert_eq!(c.pool.labels["team"], "a");
        assert_eq!(c.pool.extra_mounts[0].target, "/sandbox/skills");
        assert_eq!(c.tools.shell_timeout.as_secs(), 10);
        assert_eq!(c.tools.quotas.on_check_failure, crate::FailurePolicy::Open);
        assert_eq!(c.image.base, sandbox_pool::image::BaseChoice::Debootstrap);
        assert_eq!(c.pool.cpus, 1.0, "what the file leaves out is the default");
    }

    #[test]
    fn typos_and_unknown_sections_are_refused_with_the_key() {
        let e = parse("[pool]\nmemroy = \"1GiB\"\n", ConfigFormat::Toml).expect_err("typo");
        assert!(e.to_string().contains("memroy"), "{e}");
        assert!(parse("[pools]\n", ConfigFormat::Toml).is_err());
        assert!(parse("pool: {cpus: many}\n", ConfigFormat::Yaml).is_err());
        assert!(
            parse(
                "{\"tools\": {\"transport\": \"pigeon\"}}",
                ConfigFormat::Json
            )
            .is_err()
        );
    }

    #[test]
    fn engines_are_a_list_of_tables() {
        let text = r#"
[[engines]]
name = "local"
host = "unix:///var/run/docker.sock"

[[engines]]
name = "b"
host = "tcp://10.0.0.2:2376"
tls_ca = "/etc/zcbot/ca.pem"
tls_cert = "/etc/zcbot/cert.pem"
tls_key = "/etc/zcbot/key.pem"
weight = 2
max_sandboxes = 300
"#;
        let c = parse(text, ConfigFormat::Toml).expect("engines");
        assert_eq!(c.engines.len(), 2);
        assert_eq!(
            (c.engines[0].weight, c.engines[0].max_sandboxes),
            (1.0, None)
        );
        assert_eq!(
            (c.engines[1].weight, c.engines[1].max_sandboxes),
            (2.0, Some(300))
        );
        assert!(c.engines[1].tls_key.is_some());
        assert!(
            parse("[[engines]]\nname = \"x\"\n", ConfigFormat::Toml).is_err(),
            "a host is needed"
        );
    }

    #[test]
    fn a_missing_file_names_itself() {
        let e = FileConfig::read(Path::new("/nonexistent/pool.toml")).expect_err("missing");
        assert_eq!(
            e.to_string(),
            "reading the configuration /nonexistent/pool.toml"
        );
        assert!(matches!(e, ConfigError::Read { .. }));
    }

    #[test]
    fn the_format_follows_the_extension() {
        assert_eq!(ConfigFormat::of(Path::new("a.yaml")), ConfigFormat::Yaml);
        assert_eq!(ConfigFormat::of(Path::new("a.yml")), ConfigFormat::Yaml);
        assert_eq!(ConfigFormat::of(Path::new("a.json")), ConfigFormat::Json);
        assert_eq!(ConfigFormat::of(Path::new("a.toml")), ConfigFormat::Toml);
        assert_eq!(
            ConfigFormat::of(Path::new("sandbox.conf")),
            ConfigFormat::Toml
        );
    }
}
