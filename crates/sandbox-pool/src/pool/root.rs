//! The user root on the host: made for the sandbox uid alone, and its own filesystem mounted
//! on it when the kernel enforces the quota.

use std::path::Path;

use tracing::warn;

use super::SandboxPool;
use crate::PoolError;

impl SandboxPool {
    /// Mounts the user's own filesystem at `root` (made or resized first), for the sandbox
    /// uid alone.
    pub(super) async fn mount_disk(
        &self,
        user: &str,
        root: &Path,
        size: u64,
    ) -> Result<(), PoolError> {
        let (owned, uid) = (root.to_owned(), self.sandbox_uid());
        // Formatting and resizing run programs: off the runtime's threads. A call that stops
        // waiting leaves the mount to the next sandbox of the user (or to the next start).
        let mounted = tokio::task::spawn_blocking(move || crate::disk::mount(&owned, size, uid))
            .await
            .unwrap_or_else(|e| {
                Err(crate::disk::DiskError::Step {
                    step: "mounting",
                    path: root.to_owned(),
                    reason: e.to_string(),
                })
            });
        mounted.map_err(|source| PoolError::Disk {
            user: user.to_owned(),
            source,
        })
    }

    /// Unmounts the user's own filesystem, if it has one mounted (its files stay in the
    /// image).
    pub(super) fn unmount_disk(&self, user: &str) {
        if self.config().disk_filesystem().is_none() {
            return;
        }
        if let Err(e) = crate::disk::unmount(&self.user_root(user)) {
            warn!(user, error = %sandbox_exec::error_chain(&e), "failed to unmount the user's disk");
        }
    }
}

/// Makes the user root exist and be writable by the sandbox uid. One it creates (and any
/// missing parent) is mode 0700, for the sandbox uid alone: the host's other users cannot reach
/// what a sandbox leaves there.
pub(super) fn prepare_root(user: &str, root: &Path, uid: u32) -> Result<(), PoolError> {
    let fail = |reason: String| PoolError::UserRoot {
        user: user.to_owned(),
        path: root.to_owned(),
        reason,
    };
    if !root.is_absolute() {
        return Err(fail("must be an absolute path".to_owned()));
    }
    if !root.exists() {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(root)
            .map_err(|e| fail(format!("cannot create it: {e}")))?;
    }
    let meta = std::fs::metadata(root).map_err(|e| fail(e.to_string()))?;
    if !meta.is_dir() {
        return Err(fail("is not a directory".to_owned()));
    }
    use std::os::unix::fs::MetadataExt;
    if meta.uid() == uid {
        return Ok(());
    }
    if rustix::process::geteuid().is_root() {
        let id = Some(rustix::process::Uid::from_raw(uid));
        let gid = Some(rustix::process::Gid::from_raw(uid));
        return rustix::fs::chown(root, id, gid)
            .map_err(|e| fail(format!("cannot give it to the sandbox uid {uid}: {e}")));
    }
    if meta.mode() & 0o002 != 0 {
        return Ok(());
    }
    Err(fail(format!(
        "owned by uid {}, so the sandbox uid {uid} cannot write it; run the pool as root or chown it to {uid}",
        meta.uid()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_root_that_cannot_be_made_is_a_clear_error() {
        let uid = rustix::process::getuid().as_raw();
        let err = prepare_root("u", Path::new("relative/path"), uid).expect_err("relative");
        assert!(err.to_string().contains("absolute"), "{err}");
        let file = tempfile::NamedTempFile::new().expect("file");
        let err = prepare_root("u", file.path(), uid).expect_err("a file");
        assert!(err.to_string().contains("not a directory"), "{err}");
    }

    #[test]
    fn a_user_root_it_makes_is_for_the_sandbox_uid_alone() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("users/u");
        prepare_root("u", &root, rustix::process::getuid().as_raw()).expect("made");
        for made in [&root, &dir.path().join("users")] {
            let mode = std::fs::metadata(made).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o700, "{}", made.display());
        }
    }
}
