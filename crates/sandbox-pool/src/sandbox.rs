//! What the pool hands out: a user's [`Sandbox`], why it was [`Recreated`], and what
//! `shutdown` does with them ([`ShutdownPolicy`]).

use std::path::{Path, PathBuf};

use crate::UserId;
use crate::config::WORKSPACE;

/// Why a user's container was replaced on this `ensure`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recreated {
    /// It had been removed from outside.
    Removed,
    /// It had exited (crashed or was stopped).
    Exited {
        /// Its exit code, when known.
        exit_code: Option<i64>,
    },
    /// The kernel's OOM killer ended it.
    OomKilled,
    /// It could no longer start processes (for example a fork bomb held every pid), and was
    /// recycled.
    Unusable,
    /// It was made with another configuration (or image).
    ConfigChanged,
}

/// A user's sandbox, as `ensure` hands it out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sandbox {
    /// The user.
    pub user: UserId,
    /// Container id.
    pub container_id: String,
    /// Container name (`<prefix>-<user>`).
    pub name: String,
    /// The user root on the host, mounted at [`WORKSPACE`].
    pub user_root: PathBuf,
    /// The user commands run as.
    pub exec_user: String,
    /// Set when this `ensure` replaced a previous container, saying why.
    pub recreated: Option<Recreated>,
}

impl Sandbox {
    /// The container path for a host directory: `/workspace/<path relative to the user root>`,
    /// or `/workspace` when the directory lies outside the root (as the seed did).
    pub fn container_dir(&self, host_dir: &Path) -> String {
        match host_dir.strip_prefix(&self.user_root) {
            Ok(rel) if !rel.as_os_str().is_empty() => {
                format!("{WORKSPACE}/{}", rel.to_string_lossy())
            }
            _ => WORKSPACE.to_owned(),
        }
    }
}

/// What `shutdown` does with the sandboxes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShutdownPolicy {
    /// Remove every sandbox.
    Remove,
    /// Leave them running; the next pool with the same name adopts them.
    Keep,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_dir_maps_like_the_seed() {
        let sb = Sandbox {
            user: UserId::new("u").expect("valid"),
            container_id: "c".into(),
            name: "n".into(),
            user_root: PathBuf::from("/srv/u"),
            exec_user: "zcbot".into(),
            recreated: None,
        };
        assert_eq!(sb.container_dir(Path::new("/srv/u")), "/workspace");
        assert_eq!(
            sb.container_dir(Path::new("/srv/u/proj/src")),
            "/workspace/proj/src"
        );
        assert_eq!(sb.container_dir(Path::new("/elsewhere")), "/workspace");
        assert_eq!(sb.container_dir(Path::new("/srv/user2")), "/workspace");
    }
}
