//! File-system helpers shared by the tools: opening a regular file without ever blocking on a
//! FIFO or device, finding the file a symlink finally points to, and wording I/O errors.

use std::fs::{self, File, Metadata};
use std::io;
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags};

use super::ToolOutput;

/// Linux's own limit on symlinks followed in one lookup (`MAXSYMLINKS`).
const MAX_SYMLINKS: usize = 40;

/// Why a path could not be opened as a regular file.
#[derive(Debug)]
pub(crate) enum OpenError {
    Io(io::Error),
    Directory,
    NotRegular,
}

impl From<io::Error> for OpenError {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

impl OpenError {
    /// The tool's failure: `TOOL: PATH is a directory`, `TOOL: PATH: No such file or directory`...
    pub(crate) fn to_output(&self, tool: &str, shown: &str) -> ToolOutput {
        match self {
            Self::Io(e) => io_failure(tool, shown, e),
            Self::Directory => ToolOutput::failed(format!("{tool}: {shown} is a directory")),
            Self::NotRegular => {
                ToolOutput::failed(format!("{tool}: {shown} is not a regular file"))
            }
        }
    }
}

/// Whether `meta` is a regular file's.
pub(crate) fn check_regular(meta: &Metadata) -> Result<(), OpenError> {
    if meta.is_dir() {
        Err(OpenError::Directory)
    } else if meta.is_file() {
        Ok(())
    } else {
        Err(OpenError::NotRegular)
    }
}

/// Opens `path` (following symlinks) for reading if it is a regular file.
///
/// The type is checked before opening, since opening a FIFO blocks until a writer comes and
/// opening a device can have side effects. The file is then opened with `O_NONBLOCK` and checked
/// again, so that a FIFO swapped in between the two steps cannot block us either (the flag means
/// nothing for regular files).
pub(crate) fn open_regular(path: &Path) -> Result<(File, Metadata), OpenError> {
    check_regular(&fs::metadata(path)?)?;
    let flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let file = File::from(rustix::fs::open(path, flags, Mode::empty()).map_err(io::Error::from)?);
    let meta = file.metadata()?;
    check_regular(&meta)?;
    Ok((file, meta))
}

/// The path that `path` finally points to after following symlinks in its last component, or
/// `path` itself when it is not a symlink. A dangling link resolves to its (missing) target, so
/// writing through it creates the target and the link stays a link.
pub(crate) fn follow_symlinks(path: &Path) -> io::Result<PathBuf> {
    let mut current = path.to_path_buf();
    for _ in 0..MAX_SYMLINKS {
        match fs::symlink_metadata(&current) {
            Ok(meta) if meta.file_type().is_symlink() => {
                let target = fs::read_link(&current)?;
                // A relative target is relative to the link's directory; join keeps an
                // absolute one as is.
                let dir = current.parent().unwrap_or(Path::new("/"));
                current = dir.join(target);
            }
            Ok(_) => return Ok(current),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(current),
            Err(e) => return Err(e),
        }
    }
    Err(rustix::io::Errno::LOOP.into())
}

/// Whether a walk is at a `.git` directory, which neither `glob` nor `grep` enters: its
/// contents are git's, never what the model is looking for.
pub(crate) fn is_git_dir(entry: &ignore::DirEntry) -> bool {
    entry.file_name() == ".git" && entry.file_type().is_some_and(|t| t.is_dir())
}

/// The tool's failure for an I/O error: `TOOL: PATH: No such file or directory`.
pub(crate) fn io_failure(tool: &str, shown: &str, e: &io::Error) -> ToolOutput {
    ToolOutput::failed(format!("{tool}: {shown}: {}", describe(e)))
}

/// An I/O error as a short description ("No such file or directory"), without Rust's
/// " (os error 2)" suffix, which only adds noise for the model.
fn describe(e: &io::Error) -> String {
    let text = e.to_string();
    match text.find(" (os error ") {
        Some(i) if text.ends_with(')') => text[..i].to_owned(),
        _ => text,
    }
}

/// The names in `dir`, sorted (for tests that check nothing was left behind).
#[cfg(test)]
pub(crate) fn dir_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    #[test]
    fn describes_io_errors_briefly() {
        let e = io::Error::from_raw_os_error(2);
        assert_eq!(describe(&e), "No such file or directory");
        assert_eq!(describe(&io::Error::other("custom")), "custom");
    }

    #[test]
    fn follows_chains_of_symlinks_and_dangling_ones() {
        let dir = tempfile::tempdir().expect("tempdir");
        let real = dir.path().join("real 文件");
        fs::write(&real, "x").expect("write");
        symlink("real 文件", dir.path().join("one")).expect("symlink");
        symlink(dir.path().join("one"), dir.path().join("two")).expect("symlink");
        symlink("missing", dir.path().join("dangling")).expect("symlink");
        assert_eq!(
            follow_symlinks(&dir.path().join("two")).expect("follow"),
            real
        );
        assert_eq!(follow_symlinks(&real).expect("plain file"), real);
        assert_eq!(
            follow_symlinks(&dir.path().join("dangling")).expect("dangling"),
            dir.path().join("missing")
        );
        symlink("loop", dir.path().join("loop")).expect("symlink");
        let e = follow_symlinks(&dir.path().join("loop")).expect_err("loop");
        assert_eq!(describe(&e), "Too many levels of symbolic links");
    }

    #[test]
    fn open_regular_refuses_what_is_not_a_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(matches!(
            open_regular(dir.path()),
            Err(OpenError::Directory)
        ));
        assert!(matches!(
            open_regular(Path::new("/dev/null")),
            Err(OpenError::NotRegular)
        ));
        let missing = open_regular(&dir.path().join("nope")).expect_err("missing");
        assert_eq!(
            missing.to_output("read", "nope").stderr,
            "[Error] read: nope: No such file or directory"
        );
    }
}
