//! `write`: creates or replaces a file with the given content, atomically, creating missing
//! parent directories. Through a symlink it writes the file the link points to.

use std::fs;
use std::io;
use std::path::Path;

use rustix::io::Errno;
use sandbox_protocol::{Tool, ToolInput};

use super::ToolOutput;
use super::args::Args;
use super::atomic::{check_growth, replace_file};
use super::files::{check_regular, follow_symlinks, io_failure};

const TOOL: &str = Tool::Write.name();

pub(crate) fn run(input: &ToolInput, cwd: &Path) -> Result<String, ToolOutput> {
    let args = Args::new(TOOL, &input.args)?;
    let path = args.path("path", cwd)?;
    let content = args.string("content")?;
    let failed = |e: io::Error| io_failure(TOOL, path.shown, &e);
    // `dir/` names a directory; without this the file `dir` would be created.
    if path.shown.ends_with('/') {
        return Err(failed(Errno::ISDIR.into()));
    }

    let target = follow_symlinks(&path.path).map_err(failed)?;
    let existing = match fs::metadata(&target) {
        Ok(meta) => Some(meta),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(failed(e)),
    };
    if let Some(meta) = &existing {
        // Renaming over a FIFO or device would silently turn it into a plain file.
        check_regular(meta).map_err(|e| e.to_output(TOOL, path.shown))?;
    }
    let old_len = existing.as_ref().map_or(0, |meta| meta.len());
    check_growth(TOOL, old_len, content.len() as u64, input.max_growth_bytes)?;

    if let Some(parent) = target.parent() {
        fs::create_dir_all(parent).map_err(failed)?;
    }
    replace_file(&target, content.as_bytes(), existing.as_ref()).map_err(failed)?;
    Ok(format!("Wrote {} bytes to {}", content.len(), path.shown))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{PermissionsExt, symlink};

    use serde_json::json;

    use super::*;
    use crate::tools::files::dir_names as names;

    fn write(cwd: &Path, args: serde_json::Value, max_growth_bytes: Option<u64>) -> ToolOutput {
        let input = ToolInput {
            args,
            max_growth_bytes,
        };
        crate::tools::run_tool(Tool::Write, &input, cwd)
    }

    #[test]
    fn creates_files_and_parent_directories() {
        let dir = tempfile::tempdir().expect("tempdir");
        let name = "新 目录/a \"b\" $(c); d\ne.txt";
        let content = "内容 $(rm -rf /); 'x'\n第二行\n";
        let out = write(dir.path(), json!({"path": name, "content": content}), None);
        assert_eq!(
            out.stdout,
            format!("Wrote {} bytes to {name}", content.len())
        );
        assert_eq!(
            fs::read_to_string(dir.path().join(name)).expect("read"),
            content
        );
        let mode = fs::metadata(dir.path().join(name))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(
            mode & 0o077 & !0o044,
            0,
            "no group/other write for a new file"
        );
        assert_eq!(
            names(&dir.path().join("新 目录")),
            ["a \"b\" $(c); d\ne.txt"]
        );
    }

    #[test]
    fn empty_content_and_overwrite_keep_permissions() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("script.sh");
        fs::write(&path, "old contents").expect("write");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o751)).expect("chmod");
        let out = write(
            dir.path(),
            json!({"path": "script.sh", "content": ""}),
            Some(0),
        );
        assert_eq!(out.stdout, "Wrote 0 bytes to script.sh");
        assert_eq!(fs::read(&path).expect("read"), b"");
        assert_eq!(
            fs::metadata(&path).expect("meta").permissions().mode() & 0o7777,
            0o751
        );
    }

    #[test]
    fn writes_through_a_symlink_and_keeps_the_link() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::create_dir(dir.path().join("real")).expect("mkdir");
        fs::write(dir.path().join("real/target.txt"), "old").expect("write");
        symlink("real/target.txt", dir.path().join("link")).expect("symlink");
        symlink("real/new.txt", dir.path().join("dangling")).expect("symlink");
        write(dir.path(), json!({"path": "link", "content": "new"}), None);
        write(
            dir.path(),
            json!({"path": "dangling", "content": "made"}),
            None,
        );
        assert!(
            fs::symlink_metadata(dir.path().join("link"))
                .expect("lstat")
                .is_symlink()
        );
        assert_eq!(
            fs::read_to_string(dir.path().join("real/target.txt")).expect("read"),
            "new"
        );
        assert_eq!(
            fs::read_to_string(dir.path().join("real/new.txt")).expect("read"),
            "made"
        );
        assert_eq!(names(&dir.path().join("real")), ["new.txt", "target.txt"]);
    }

    #[test]
    fn quota_refusal_touches_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(dir.path().join("f"), "12345").expect("write");
        let out = write(
            dir.path(),
            json!({"path": "f", "content": "1234567890"}),
            Some(4),
        );
        assert_eq!(out.code, 2);
        assert_eq!(
            out.stderr,
            "[Error] write refused: disk quota exceeded (needs 5 more bytes, 4 available)"
        );
        assert_eq!(
            fs::read_to_string(dir.path().join("f")).expect("read"),
            "12345"
        );
        let out = write(
            dir.path(),
            json!({"path": "new/dir/g", "content": "xy"}),
            Some(1),
        );
        assert_eq!(out.code, 2);
        assert_eq!(names(dir.path()), ["f"], "no parent directory created");
        // Exactly the growth available is allowed.
        let out = write(
            dir.path(),
            json!({"path": "f", "content": "123456789"}),
            Some(4),
        );
        assert_eq!(out.code, 0, "{out:?}");
    }

    #[test]
    fn refuses_directories_and_special_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::create_dir(dir.path().join("d")).expect("mkdir");
        let out = write(dir.path(), json!({"path": "d", "content": "x"}), None);
        assert_eq!(
            (out.code, out.stderr.as_str()),
            (1, "[Error] write: d is a directory")
        );
        let out = write(
            dir.path(),
            json!({"path": "/dev/null", "content": "x"}),
            None,
        );
        assert_eq!(out.stderr, "[Error] write: /dev/null is not a regular file");
        fs::write(dir.path().join("file"), "x").expect("write");
        let out = write(
            dir.path(),
            json!({"path": "file/below", "content": "x"}),
            None,
        );
        assert_eq!(out.stderr, "[Error] write: file/below: Not a directory");
        let out = write(dir.path(), json!({"path": "new/", "content": "x"}), None);
        assert_eq!(out.stderr, "[Error] write: new/: Is a directory");
        assert_eq!(names(dir.path()), ["d", "file"]);
    }

    #[test]
    fn read_only_places_are_refused_and_left_as_they_were() {
        if rustix::process::geteuid().is_root() {
            // Root ignores permissions; `atomic`'s tests cover the clean-up after a failure.
            eprintln!("skipped: running as root");
            return;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let ro = dir.path().join("ro");
        fs::create_dir(&ro).expect("mkdir");
        fs::write(ro.join("f"), "old").expect("write");
        fs::set_permissions(&ro, fs::Permissions::from_mode(0o555)).expect("chmod");
        let out = write(dir.path(), json!({"path": "ro/f", "content": "new"}), None);
        fs::set_permissions(&ro, fs::Permissions::from_mode(0o755)).expect("chmod back");
        assert_eq!(out.stderr, "[Error] write: ro/f: Permission denied");
        assert_eq!(fs::read_to_string(ro.join("f")).expect("read"), "old");
        assert_eq!(names(&ro), ["f"]);

        // A read-only file in a writable directory: the rename would succeed, the tool refuses
        // as a plain write would.
        let locked = dir.path().join("locked");
        fs::write(&locked, "old").expect("write");
        fs::set_permissions(&locked, fs::Permissions::from_mode(0o444)).expect("chmod");
        let out = write(
            dir.path(),
            json!({"path": "locked", "content": "new"}),
            None,
        );
        assert_eq!(out.stderr, "[Error] write: locked: Permission denied");
        assert_eq!(fs::read_to_string(&locked).expect("read"), "old");
    }

    #[test]
    fn bad_arguments() {
        let dir = tempfile::tempdir().expect("tempdir");
        for (args, message) in [
            (json!({"content": "x"}), "path must be a non-empty string"),
            (
                json!({"path": "", "content": "x"}),
                "path must be a non-empty string",
            ),
            (json!({"path": "f"}), "content must be a string"),
            (
                json!({"path": "f", "content": 5}),
                "content must be a string",
            ),
            (json!("f"), "arguments must be a JSON object"),
        ] {
            let out = write(dir.path(), args, None);
            assert_eq!(out.code, 2);
            assert_eq!(
                out.stderr,
                format!("[Error] bad arguments to write: {message}")
            );
        }
        assert!(names(dir.path()).is_empty());
    }
}
