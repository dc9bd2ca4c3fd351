//! The configuration file ([`FileConfig`], read as the libraries read it), then the flags'
//! overrides.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::cli::Global;

pub use sandbox_tools::FileConfig;

/// The file (or the defaults without one) with the flags' overrides applied, and the users
/// root filled in.
pub fn load(global: &Global) -> Result<FileConfig> {
    let mut config = match &global.config {
        None => FileConfig::default(),
        Some(path) => FileConfig::read(path)?,
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
    if let Some(runtime) = &global.runtime {
        config.pool.runtime = Some(runtime.clone()).filter(|r| !r.is_empty());
    }
    config.pool.users_root = Some(config.pool.users_root());
    Ok(config)
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

    #[test]
    fn flags_override_the_file_and_the_users_root_defaults_like_the_library() {
        let c = load(&Global::default()).expect("defaults");
        assert_eq!(c.pool.name_prefix, "zcbot-sandbox");
        assert_eq!(c.pool.image, "zcbot-sandbox:latest");
        assert_eq!(
            c.pool.users_root.as_deref(),
            Some(Path::new("/var/lib/zcbot-sandbox/users"))
        );
        let c = load(&Global {
            pool: Some("p1".into()),
            image: Some("img:1".into()),
            runtime: Some("runsc".into()),
            ..Global::default()
        })
        .expect("overrides");
        assert_eq!(c.pool.name_prefix, "p1");
        assert_eq!(c.pool.image, "img:1");
        assert_eq!(c.pool.runtime.as_deref(), Some("runsc"));
        assert_eq!(
            c.pool.users_root.as_deref(),
            Some(Path::new("/var/lib/p1/users"))
        );
        let c = load(&Global {
            users_root: Some("rel/users".into()),
            ..Global::default()
        })
        .expect("relative root");
        assert!(c.pool.users_root.expect("set").is_absolute());
    }
}
