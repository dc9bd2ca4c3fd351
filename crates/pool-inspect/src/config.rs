//! The configuration file: the library's own serde structures under `[image]`, `[pool]` and
//! `[tools]`, read from TOML (or YAML or JSON, by extension), then the flags' overrides.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use sandbox_pool::PoolConfig;
use sandbox_pool::image::ImageConfig;
use sandbox_tools::ToolsConfig;
use serde::{Deserialize, Serialize};

use crate::cli::Global;

/// Everything `pool-inspect` (and the service) configures. Missing sections and fields take
/// the library's defaults; unknown ones are refused, so a typo never passes silently.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileConfig {
    /// How the sandbox image is built.
    pub image: ImageConfig,
    /// What sandboxes are made from and how they are kept.
    pub pool: PoolConfig,
    /// How the tools run (timeouts, output caps, quotas).
    pub tools: ToolsConfig,
}

/// The file formats we read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Toml,
    Yaml,
    Json,
}

impl Format {
    fn of(path: &Path) -> Self {
        match path.extension().and_then(|e| e.to_str()) {
            Some("yaml" | "yml") => Self::Yaml,
            Some("json") => Self::Json,
            _ => Self::Toml,
        }
    }
}

impl FileConfig {
    /// Parses `text` in the format the file name says.
    fn parse(text: &str, format: Format) -> Result<Self> {
        Ok(match format {
            Format::Toml => toml::from_str(text)?,
            Format::Yaml => serde_yaml::from_str(text)?,
            Format::Json => serde_json::from_str(text)?,
        })
    }

    /// The file (or the defaults without one) with the flags' overrides applied, and the
    /// users root filled in.
    pub fn load(global: &Global) -> Result<Self> {
        let mut config = match &global.config {
            None => Self::default(),
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading the configuration {}", path.display()))?;
                Self::parse(&text, Format::of(path))
                    .with_context(|| format!("parsing the configuration {}", path.display()))?
            }
        };
        if let Some(pool) = &global.pool {
            config.pool.name_prefix = pool.clone();
        }
        if let Some(root) = &global.users_root {
            config.pool.users_root = Some(absolute(root)?);
        }
        if let Some(image) = &global.image {
            config.pool.image = image.clone();
        }
        config.pool.users_root = Some(config.users_root());
        Ok(config)
    }

    /// The folder of the users' roots, as the pool computes it.
    pub fn users_root(&self) -> PathBuf {
        self.pool.users_root()
    }
}

/// The pool needs absolute roots (they are bind-mount sources); a relative flag means
/// relative to where the operator stands.
fn absolute(path: &Path) -> Result<PathBuf> {
    if path.is_absolute() {
        return Ok(path.to_owned());
    }
    Ok(std::env::current_dir()
        .context("reading the current directory")?
        .join(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../examples/pool.toml");

    #[test]
    fn the_example_file_parses_and_shows_the_defaults() {
        let parsed = FileConfig::parse(EXAMPLE, Format::Toml).expect("the example parses");
        assert_eq!(parsed, FileConfig::default());
    }

    #[test]
    fn the_same_structure_parses_from_yaml() {
        // The example itself, carried over to YAML mechanically: same keys, same values.
        let table: toml::Table = toml::from_str(EXAMPLE).expect("toml");
        let yaml = serde_yaml::to_string(&table).expect("to yaml");
        let from_yaml = FileConfig::parse(&yaml, Format::Yaml).expect("the YAML parses");
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
        let c = FileConfig::parse(text, Format::Yaml).expect("hand-written YAML");
        assert_eq!(c.pool.name_prefix, "team-a");
        assert_eq!(c.pool.memory.as_u64(), 512 * 1024 * 1024);
        assert_eq!(c.pool.idle_timeout.as_secs(), 90);
        assert_eq!(c.pool.labels["team"], "a");
        assert_eq!(c.pool.extra_mounts[0].target, "/sandbox/skills");
        assert_eq!(c.tools.shell_timeout.as_secs(), 10);
        assert_eq!(
            c.tools.quotas.on_check_failure,
            sandbox_tools::FailurePolicy::Open
        );
        assert_eq!(c.image.base, sandbox_pool::image::BaseChoice::Debootstrap);
        assert_eq!(c.pool.cpus, 1.0, "what the file leaves out is the default");
    }

    #[test]
    fn typos_and_unknown_sections_are_refused() {
        assert!(FileConfig::parse("[pool]\nmemroy = \"1GiB\"\n", Format::Toml).is_err());
        assert!(FileConfig::parse("[pools]\n", Format::Toml).is_err());
        assert!(FileConfig::parse("pool: {cpus: many}\n", Format::Yaml).is_err());
    }

    #[test]
    fn flags_override_the_file_and_the_users_root_defaults_like_the_library() {
        let c = FileConfig::load(&Global::default()).expect("defaults");
        assert_eq!(c.pool.name_prefix, "zcbot-sandbox");
        assert_eq!(c.pool.image, "zcbot-sandbox:latest");
        assert_eq!(
            c.pool.users_root.as_deref(),
            Some(Path::new("/var/lib/zcbot-sandbox/users"))
        );
        let c = FileConfig::load(&Global {
            pool: Some("p1".into()),
            image: Some("img:1".into()),
            ..Global::default()
        })
        .expect("overrides");
        assert_eq!(c.pool.name_prefix, "p1");
        assert_eq!(c.pool.image, "img:1");
        assert_eq!(
            c.pool.users_root.as_deref(),
            Some(Path::new("/var/lib/p1/users"))
        );
        let c = FileConfig::load(&Global {
            users_root: Some("rel/users".into()),
            ..Global::default()
        })
        .expect("relative root");
        assert!(c.pool.users_root.expect("set").is_absolute());
    }

    #[test]
    fn the_format_follows_the_extension() {
        assert_eq!(Format::of(Path::new("a.yaml")), Format::Yaml);
        assert_eq!(Format::of(Path::new("a.yml")), Format::Yaml);
        assert_eq!(Format::of(Path::new("a.json")), Format::Json);
        assert_eq!(Format::of(Path::new("a.toml")), Format::Toml);
        assert_eq!(Format::of(Path::new("sandbox.conf")), Format::Toml);
    }
}
