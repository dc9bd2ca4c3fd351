//! `glob`: files whose path relative to a base directory matches a glob pattern, newest first.
//!
//! Unlike `grep`, it finds hidden and git-ignored files too (the model asked for names, not a
//! code search), but it never descends into `.git` and never follows symlinked directories, so a
//! link loop cannot trap it.

use std::cmp::Reverse;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use globset::{GlobBuilder, GlobMatcher};
use ignore::WalkBuilder;
use sandbox_protocol::{Tool, ToolInput};

use super::ToolOutput;
use super::args::Args;
use super::files::{io_failure, is_git_dir};
use super::text::display_path;

const TOOL: &str = Tool::Glob.name();
/// Files listed at most.
const MAX_FILES: usize = 1000;

pub(crate) fn run(input: &ToolInput, cwd: &Path) -> Result<String, ToolOutput> {
    let args = Args::new(TOOL, &input.args)?;
    let pattern = args.non_empty_string("pattern")?;
    let base = args.opt_path("path", cwd)?;
    let matcher = compile(pattern)?;
    let (root, shown) = match &base {
        Some(base) => (base.path.as_path(), Some(base.shown)),
        None => (cwd, None),
    };
    let label = shown.unwrap_or(".");
    match fs::metadata(root) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => {
            return Err(ToolOutput::failed(format!(
                "{TOOL}: {label} is not a directory"
            )));
        }
        Err(e) => return Err(io_failure(TOOL, label, &e)),
    }

    let mut found = find(root, &matcher);
    if found.is_empty() {
        return Ok("No files found".to_owned());
    }
    found.sort_by(|a, b| (Reverse(a.modified), &a.path).cmp(&(Reverse(b.modified), &b.path)));
    let mut lines: Vec<String> = found
        .iter()
        .take(MAX_FILES)
        .map(|f| display_path(shown, &f.path))
        .collect();
    if found.len() > MAX_FILES {
        lines.push(format!(
            "[... {} more files not shown]",
            found.len() - MAX_FILES
        ));
    }
    Ok(lines.join("\n"))
}

fn compile(pattern: &str) -> Result<GlobMatcher, ToolOutput> {
    // Found paths are relative and never start with `./`, so such a prefix could only make
    // the pattern match nothing.
    let pattern = pattern.trim_start_matches("./");
    if pattern.starts_with('/') {
        return Err(ToolOutput::bad_args(
            TOOL,
            "pattern must be relative to path (put the directory in path)",
        ));
    }
    GlobBuilder::new(pattern)
        .literal_separator(true)
        .build()
        .map(|glob| glob.compile_matcher())
        .map_err(|e| ToolOutput::bad_args(TOOL, format!("invalid pattern: {e}")))
}

/// A matching file: its path relative to the root, and when it was last modified.
#[derive(Debug)]
struct Found {
    path: PathBuf,
    modified: SystemTime,
}

fn find(root: &Path, matcher: &GlobMatcher) -> Vec<Found> {
    WalkBuilder::new(root)
        .standard_filters(false)
        .follow_links(false)
        .filter_entry(|entry| !is_git_dir(entry))
        .build()
        // An unreadable directory is skipped, as `find` would after its warning.
        .filter_map(Result::ok)
        .filter(|entry| !entry.file_type().is_some_and(|t| t.is_dir()))
        .filter_map(|entry| {
            let relative = entry.path().strip_prefix(root).ok()?;
            if !matcher.is_match(relative) {
                return None;
            }
            // Follows symlinks: a link to a file is listed, a link to a directory is not.
            let meta = fs::metadata(entry.path()).ok()?;
            meta.is_file().then(|| Found {
                path: relative.to_path_buf(),
                modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::fs::File;
    use std::os::unix::fs::symlink;
    use std::time::Duration;

    use serde_json::json;

    use super::*;

    fn glob(cwd: &Path, args: serde_json::Value) -> ToolOutput {
        let input = ToolInput {
            args,
            max_growth_bytes: None,
        };
        crate::tools::run_tool(Tool::Glob, &input, cwd)
    }

    /// Creates `rel` under `root` with a modification time `age` seconds in the past.
    fn touch(root: &Path, rel: &str, age: u64) {
        let path = root.join(rel);
        fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        let file = File::create(&path).expect("create");
        let when = SystemTime::now() - Duration::from_secs(age);
        file.set_modified(when).expect("set mtime");
    }

    #[test]
    fn newest_first_then_by_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        touch(dir.path(), "old.rs", 300);
        touch(dir.path(), "src/new.rs", 10);
        touch(dir.path(), "src/b.rs", 100);
        touch(dir.path(), "src/a.rs", 100);
        touch(dir.path(), "notes.txt", 1);
        let out = glob(dir.path(), json!({"pattern": "**/*.rs"}));
        assert_eq!(out.stdout, "src/new.rs\nsrc/a.rs\nsrc/b.rs\nold.rs");
    }

    #[test]
    fn star_stays_in_one_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        touch(dir.path(), "src/top.txt", 2);
        touch(dir.path(), "src/deep/inner.txt", 1);
        assert_eq!(
            glob(dir.path(), json!({"pattern": "src/*.txt"})).stdout,
            "src/top.txt"
        );
        assert_eq!(
            glob(dir.path(), json!({"pattern": "./src/*.txt"})).stdout,
            "src/top.txt"
        );
        assert_eq!(
            glob(dir.path(), json!({"pattern": "src/**/*.txt"})).stdout,
            "src/deep/inner.txt\nsrc/top.txt"
        );
    }

    #[test]
    fn finds_hidden_and_ignored_files_but_skips_git_and_directories() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(dir.path().join(".gitignore"), "ignored.txt\n").expect("write");
        touch(dir.path(), "ignored.txt", 4);
        touch(dir.path(), ".hidden/h.txt", 3);
        touch(dir.path(), ".git/config.txt", 2);
        fs::create_dir(dir.path().join("dir.txt")).expect("mkdir");
        let out = glob(dir.path(), json!({"pattern": "**/*.txt"}));
        assert_eq!(out.stdout, ".hidden/h.txt\nignored.txt");
    }

    #[test]
    fn lists_symlinked_files_but_does_not_follow_symlinked_directories() {
        let dir = tempfile::tempdir().expect("tempdir");
        touch(dir.path(), "real/f.txt", 5);
        symlink("real/f.txt", dir.path().join("link.txt")).expect("symlink");
        symlink(".", dir.path().join("real/loop")).expect("symlink");
        let out = glob(dir.path(), json!({"pattern": "**/*.txt"}));
        assert_eq!(out.stdout, "link.txt\nreal/f.txt");
    }

    #[test]
    fn joins_the_base_as_given_and_handles_odd_names() {
        let dir = tempfile::tempdir().expect("tempdir");
        let name = "目录 $(x); \"q\"\nz.md";
        touch(dir.path(), &format!("docs/{name}"), 1);
        let out = glob(dir.path(), json!({"pattern": "*.md", "path": "docs/"}));
        assert_eq!(out.stdout, format!("docs/{name}"));
        let abs = dir.path().join("docs");
        let out = glob(
            Path::new("/"),
            json!({"pattern": "*.md", "path": abs.to_str().expect("utf-8")}),
        );
        assert_eq!(out.stdout, abs.join(name).to_str().expect("utf-8"));
    }

    #[test]
    fn caps_the_listing() {
        let dir = tempfile::tempdir().expect("tempdir");
        for i in 0..MAX_FILES + 5 {
            File::create(dir.path().join(format!("f{i:04}"))).expect("create");
        }
        let out = glob(dir.path(), json!({"pattern": "f*"}));
        let lines: Vec<&str> = out.stdout.lines().collect();
        assert_eq!(lines.len(), MAX_FILES + 1);
        assert_eq!(lines[MAX_FILES], "[... 5 more files not shown]");
    }

    #[test]
    fn no_match_and_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        touch(dir.path(), "a.txt", 1);
        assert_eq!(
            glob(dir.path(), json!({"pattern": "*.rs"})).stdout,
            "No files found"
        );
        let out = glob(dir.path(), json!({"pattern": "*", "path": "missing"}));
        assert_eq!(
            (out.code, out.stderr.as_str()),
            (1, "[Error] glob: missing: No such file or directory")
        );
        let out = glob(dir.path(), json!({"pattern": "*", "path": "a.txt"}));
        assert_eq!(
            (out.code, out.stderr.as_str()),
            (1, "[Error] glob: a.txt is not a directory")
        );
        let out = glob(dir.path(), json!({"pattern": "[abc"}));
        assert_eq!(out.code, 2);
        assert!(
            out.stderr
                .starts_with("[Error] bad arguments to glob: invalid pattern: "),
            "{out:?}"
        );
        let out = glob(dir.path(), json!({"pattern": "/abs/*.rs"}));
        assert_eq!(out.code, 2);
        let out = glob(dir.path(), json!({"pattern": 3}));
        assert_eq!(
            out.stderr,
            "[Error] bad arguments to glob: pattern must be a non-empty string"
        );
        let out = glob(dir.path(), json!({"pattern": "*", "path": false}));
        assert_eq!(
            out.stderr,
            "[Error] bad arguments to glob: path must be a non-empty string"
        );
    }
}
