//! `edit`: replaces an exact string in a UTF-8 text file, once (it must be unique) or
//! everywhere, then writes the file back atomically (through symlinks, keeping its mode).

use std::io::{self, Read};
use std::path::Path;

use sandbox_protocol::{Tool, ToolInput};

use super::ToolOutput;
use super::args::Args;
use super::atomic::{check_growth, replace_file};
use super::files::{self, follow_symlinks, io_failure};

const TOOL: &str = Tool::Edit.name();
/// Largest file edited: the whole file is held in memory twice, and the runner's input is
/// capped at 256 MiB anyway, so no tool call could have written a larger one.
const MAX_EDIT_BYTES: u64 = 256 * 1024 * 1024;

pub(crate) fn run(input: &ToolInput, cwd: &Path) -> Result<String, ToolOutput> {
    let args = Args::new(TOOL, &input.args)?;
    let path = args.path("path", cwd)?;
    let old = args.non_empty_string("old_string")?;
    let new = args.string("new_string")?;
    let replace_all = args.bool("replace_all", false)?;
    if old == new {
        return Err(ToolOutput::bad_args(
            TOOL,
            "new_string must differ from old_string",
        ));
    }
    let shown = path.shown;
    let failed = |e: io::Error| io_failure(TOOL, shown, &e);

    let target = follow_symlinks(&path.path).map_err(failed)?;
    let (file, meta) = files::open_regular(&target).map_err(|e| e.to_output(TOOL, shown))?;
    if meta.len() > MAX_EDIT_BYTES {
        return Err(ToolOutput::failed(format!(
            "{TOOL}: {shown} is too large to edit ({} bytes; the limit is {MAX_EDIT_BYTES})",
            meta.len()
        )));
    }
    let mut bytes = Vec::new();
    (&file)
        .take(MAX_EDIT_BYTES)
        .read_to_end(&mut bytes)
        .map_err(failed)?;
    let text = String::from_utf8(bytes)
        .map_err(|_| ToolOutput::failed(format!("{TOOL}: {shown} is not valid UTF-8 text")))?;

    let count = text.matches(old).count();
    if count == 0 {
        return Err(ToolOutput::failed(format!(
            "{TOOL}: old_string not found in {shown}"
        )));
    }
    if count > 1 && !replace_all {
        return Err(ToolOutput::failed(format!(
            "{TOOL}: old_string occurs {count} times in {shown}; add surrounding context to make \
             it unique, or set replace_all"
        )));
    }
    let edited = if replace_all {
        text.replace(old, new)
    } else {
        text.replacen(old, new, 1)
    };
    check_growth(
        TOOL,
        text.len() as u64,
        edited.len() as u64,
        input.max_growth_bytes,
    )?;
    replace_file(&target, edited.as_bytes(), Some(&meta)).map_err(failed)?;
    Ok(format!("Edited {shown}: replaced {count} occurrence(s)"))
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::{PermissionsExt, symlink};

    use serde_json::json;

    use super::*;

    fn edit(cwd: &Path, args: serde_json::Value, max_growth_bytes: Option<u64>) -> ToolOutput {
        let input = ToolInput {
            args,
            max_growth_bytes,
        };
        crate::tools::run_tool(Tool::Edit, &input, cwd)
    }

    #[test]
    fn replaces_a_unique_string() {
        let dir = tempfile::tempdir().expect("tempdir");
        let name = "代码 $(x); \"q\".py";
        fs::write(dir.path().join(name), "print('你好')\nx = 1\n").expect("write");
        let out = edit(
            dir.path(),
            json!({"path": name, "old_string": "你好", "new_string": "世界 $(echo); \"\n"}),
            None,
        );
        assert_eq!(
            out.stdout,
            format!("Edited {name}: replaced 1 occurrence(s)")
        );
        assert_eq!(
            fs::read_to_string(dir.path().join(name)).expect("read"),
            "print('世界 $(echo); \"\n')\nx = 1\n"
        );
    }

    #[test]
    fn several_matches_need_replace_all() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        fs::write(&path, "a b a c a").expect("write");
        let out = edit(
            dir.path(),
            json!({"path": "f", "old_string": "a", "new_string": "z"}),
            None,
        );
        assert_eq!(out.code, 1);
        assert_eq!(
            out.stderr,
            "[Error] edit: old_string occurs 3 times in f; add surrounding context to make it \
             unique, or set replace_all"
        );
        assert_eq!(fs::read_to_string(&path).expect("read"), "a b a c a");
        let args = json!({"path": "f", "old_string": "a", "new_string": "", "replace_all": true});
        let out = edit(dir.path(), args, None);
        assert_eq!(out.stdout, "Edited f: replaced 3 occurrence(s)");
        assert_eq!(fs::read_to_string(&path).expect("read"), " b  c ");
    }

    #[test]
    fn not_found_and_not_text() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(dir.path().join("f"), "abc").expect("write");
        fs::write(dir.path().join("bin"), b"\xff\xfeabc").expect("write");
        let args = json!({"path": "f", "old_string": "x", "new_string": "y"});
        assert_eq!(
            edit(dir.path(), args, None).stderr,
            "[Error] edit: old_string not found in f"
        );
        let args = json!({"path": "bin", "old_string": "a", "new_string": "y"});
        assert_eq!(
            edit(dir.path(), args, None).stderr,
            "[Error] edit: bin is not valid UTF-8 text"
        );
        let args = json!({"path": "gone", "old_string": "a", "new_string": "y"});
        let out = edit(dir.path(), args, None);
        assert_eq!(
            (out.code, out.stderr.as_str()),
            (1, "[Error] edit: gone: No such file or directory")
        );
        let args = json!({"path": ".", "old_string": "a", "new_string": "y"});
        assert_eq!(
            edit(dir.path(), args, None).stderr,
            "[Error] edit: . is a directory"
        );
    }

    #[test]
    fn quota_is_checked_on_the_exact_growth() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        fs::write(&path, "one two").expect("write");
        let args = json!({"path": "f", "old_string": "one", "new_string": "three"});
        let out = edit(dir.path(), args.clone(), Some(1));
        assert_eq!(out.code, 2);
        assert_eq!(
            out.stderr,
            "[Error] edit refused: disk quota exceeded (needs 2 more bytes, 1 available)"
        );
        assert_eq!(fs::read_to_string(&path).expect("read"), "one two");
        assert_eq!(edit(dir.path(), args, Some(2)).code, 0);
        // Shrinking always passes.
        let args = json!({"path": "f", "old_string": "three", "new_string": ""});
        assert_eq!(edit(dir.path(), args, Some(0)).code, 0);
        assert_eq!(fs::read_to_string(&path).expect("read"), " two");
    }

    #[test]
    fn edits_through_a_symlink_keeping_link_and_mode() {
        let dir = tempfile::tempdir().expect("tempdir");
        let real = dir.path().join("real.sh");
        fs::write(&real, "echo old").expect("write");
        fs::set_permissions(&real, fs::Permissions::from_mode(0o700)).expect("chmod");
        symlink("real.sh", dir.path().join("link.sh")).expect("symlink");
        let args = json!({"path": "link.sh", "old_string": "old", "new_string": "new"});
        assert_eq!(
            edit(dir.path(), args, None).stdout,
            "Edited link.sh: replaced 1 occurrence(s)"
        );
        assert!(
            fs::symlink_metadata(dir.path().join("link.sh"))
                .expect("lstat")
                .is_symlink()
        );
        assert_eq!(fs::read_to_string(&real).expect("read"), "echo new");
        assert_eq!(
            fs::metadata(&real).expect("meta").permissions().mode() & 0o7777,
            0o700
        );
    }

    #[test]
    fn bad_arguments() {
        let dir = tempfile::tempdir().expect("tempdir");
        for (args, message) in [
            (
                json!({"old_string": "a", "new_string": "b"}),
                "path must be a non-empty string",
            ),
            (
                json!({"path": "f", "new_string": "b"}),
                "old_string must be a non-empty string",
            ),
            (
                json!({"path": "f", "old_string": "", "new_string": "b"}),
                "old_string must be a non-empty string",
            ),
            (
                json!({"path": "f", "old_string": "a"}),
                "new_string must be a string",
            ),
            (
                json!({"path": "f", "old_string": "a", "new_string": "a"}),
                "new_string must differ from old_string",
            ),
            (
                json!({"path": "f", "old_string": "a", "new_string": "b", "replace_all": "yes"}),
                "replace_all must be a boolean",
            ),
        ] {
            let out = edit(dir.path(), args, None);
            assert_eq!(out.code, 2, "{out:?}");
            assert_eq!(
                out.stderr,
                format!("[Error] bad arguments to edit: {message}")
            );
        }
    }
}
