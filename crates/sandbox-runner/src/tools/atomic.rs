//! Replacing a file's contents atomically, and the disk-quota gate: shared by `write` and `edit`.
//!
//! The new contents go to a fresh temporary file next to the target, which is then renamed over
//! it: readers see the old file or the new one, never half of one, and a failure leaves the
//! target untouched. There is no fsync: the promise is atomicity against readers and failures,
//! not durability across a machine crash, which would cost a disk flush per call.

use std::ffi::OsString;
use std::fs::{self, File, Metadata, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use rustix::fs::Access;
use rustix::io::Errno;

use super::ToolOutput;

/// Mode of a newly created file (before the umask).
const NEW_FILE_MODE: u32 = 0o644;
/// Longest piece of the target's name kept in the temporary name, so that the temporary name
/// stays under the 255-byte limit on a file name.
const MAX_NAME_BYTES_IN_TEMP: usize = 200;
/// Attempts at a free temporary name before giving up.
const TEMP_ATTEMPTS: u32 = 100;

/// Makes temporary names unique within this process (the pid makes them unique across).
static TEMP_COUNTER: AtomicU32 = AtomicU32::new(0);

/// Refuses (exit 2) a change from `old_len` to `new_len` bytes that grows the file by more than
/// `max_growth` bytes.
pub(crate) fn check_growth(
    tool: &str,
    old_len: u64,
    new_len: u64,
    max_growth: Option<u64>,
) -> Result<(), ToolOutput> {
    let needed = new_len.saturating_sub(old_len);
    match max_growth {
        Some(available) if needed > available => Err(ToolOutput::refused(format!(
            "{tool} refused: disk quota exceeded (needs {needed} more bytes, {available} available)"
        ))),
        _ => Ok(()),
    }
}

/// Atomically replaces `target` (which must not be a symlink: resolve it first) with `data`.
///
/// `existing` is the current file's metadata, if there is one: its permission bits are kept, and
/// a file we may not write is refused as a plain write would refuse it, since the rename alone
/// would not. A new file gets mode 0644 less the umask.
pub(crate) fn replace_file(
    target: &Path,
    data: &[u8],
    existing: Option<&Metadata>,
) -> io::Result<()> {
    if existing.is_some() {
        rustix::fs::access(target, Access::WRITE_OK)?;
    }
    let mode = existing.map(|meta| meta.permissions().mode() & 0o7777);
    let (temp, file) = create_temp(target, mode)?;
    let result = fill_and_rename(file, &temp, target, data, mode);
    if result.is_err() {
        // Best effort: the error that matters is the one we return.
        let _ = fs::remove_file(&temp);
    }
    result
}

/// Creates `.NAME.sbx-tmp-<pid>-<n>` next to `target`. `create_new` (O_EXCL) never follows a
/// symlink or reuses a file someone planted under that name.
fn create_temp(target: &Path, mode: Option<u32>) -> io::Result<(PathBuf, File)> {
    let name = target.file_name().ok_or(Errno::ISDIR)?.as_bytes();
    let name = &name[..name.len().min(MAX_NAME_BYTES_IN_TEMP)];
    let dir = match target.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let pid = std::process::id();
    for _ in 0..TEMP_ATTEMPTS {
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let mut temp_name = OsString::from(".");
        temp_name.push(std::ffi::OsStr::from_bytes(name));
        temp_name.push(format!(".sbx-tmp-{pid}-{n}"));
        let temp = dir.join(temp_name);
        // An existing file's mode is set exactly afterwards; 0600 keeps the content private
        // until then.
        let create_mode = if mode.is_some() { 0o600 } else { NEW_FILE_MODE };
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(create_mode)
            .open(&temp)
        {
            Ok(file) => return Ok((temp, file)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(Errno::EXIST.into())
}

fn fill_and_rename(
    mut file: File,
    temp: &Path,
    target: &Path,
    data: &[u8],
    mode: Option<u32>,
) -> io::Result<()> {
    file.write_all(data)?;
    if let Some(mode) = mode {
        // Set explicitly: the umask applied at creation could have cleared some of the bits.
        file.set_permissions(Permissions::from_mode(mode))?;
    }
    drop(file);
    fs::rename(temp, target)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::files::dir_names as entries;

    #[test]
    fn quota_gate_counts_growth_only() {
        assert!(check_growth("write", 10, 15, Some(5)).is_ok());
        assert!(check_growth("write", 10, 3, Some(0)).is_ok());
        assert!(check_growth("write", 0, 1 << 40, None).is_ok());
        let refused = check_growth("edit", 10, 16, Some(5)).expect_err("over quota");
        assert_eq!(refused.code, 2);
        assert_eq!(
            refused.stderr,
            "[Error] edit refused: disk quota exceeded (needs 6 more bytes, 5 available)"
        );
    }

    #[test]
    fn replaces_and_keeps_permissions() {
        let dir = tempfile::tempdir().expect("tempdir");
        let target = dir.path().join("run me.sh");
        fs::write(&target, "old").expect("write");
        fs::set_permissions(&target, Permissions::from_mode(0o750)).expect("chmod");
        let meta = fs::metadata(&target).expect("metadata");
        replace_file(&target, b"new", Some(&meta)).expect("replace");
        assert_eq!(fs::read_to_string(&target).expect("read"), "new");
        let mode = fs::metadata(&target)
            .expect("metadata")
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, 0o750);
        assert_eq!(entries(dir.path()), ["run me.sh"], "no temporary file left");
    }

    #[test]
    fn long_names_still_get_a_temporary_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let target = dir.path().join("名".repeat(85)); // 255 bytes
        replace_file(&target, b"x", None).expect("replace");
        assert_eq!(fs::read(&target).expect("read"), b"x");
    }

    #[test]
    fn a_failed_rename_leaves_no_temporary_file_and_the_target_as_it_was() {
        // Renaming a file over a non-empty directory fails even for root.
        let dir = tempfile::tempdir().expect("tempdir");
        let target = dir.path().join("busy");
        fs::create_dir(&target).expect("mkdir");
        fs::write(target.join("inside"), "keep").expect("write");
        replace_file(&target, b"data", None).expect_err("rename over a directory");
        assert_eq!(entries(dir.path()), ["busy"]);
        assert_eq!(
            fs::read_to_string(target.join("inside")).expect("read"),
            "keep"
        );
    }

    #[test]
    fn a_planted_temporary_name_is_never_followed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let outside = dir.path().join("outside");
        fs::write(&outside, "untouched").expect("write");
        // Plant symlinks under the next few temporary names this process will pick.
        let pid = std::process::id();
        let next = TEMP_COUNTER.load(Ordering::Relaxed);
        for n in next..next + 50 {
            let name = format!(".t.sbx-tmp-{pid}-{n}");
            std::os::unix::fs::symlink(&outside, dir.path().join(name)).expect("symlink");
        }
        replace_file(&dir.path().join("t"), b"new", None).expect("replace");
        assert_eq!(fs::read_to_string(&outside).expect("read"), "untouched");
        assert_eq!(
            fs::read_to_string(dir.path().join("t")).expect("read"),
            "new"
        );
    }
}
