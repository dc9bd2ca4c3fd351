//! `grep`: a regex search over a file or a directory tree, built on ripgrep's own crates:
//! `ignore` walks (honouring `.gitignore`, `.ignore` and hidden-file rules as `rg` does, even
//! outside a git repository; the `glob` filter overrides them as `rg --glob` does),
//! `grep-regex` matches and `grep-searcher` searches, skipping binary files.
//!
//! The walk is sequential and sorted by name, so results come out in path order without being
//! collected first, and entries past `head_limit` are only counted. A deadline (`timeout`) cuts
//! the search short; what was found so far is returned with a note.

use std::cell::Cell;
use std::fs;
use std::io::{self, Read};
use std::path::Path;
use std::time::{Duration, Instant};

use grep_regex::{RegexMatcher, RegexMatcherBuilder};
use grep_searcher::{BinaryDetection, Searcher, SearcherBuilder, Sink, SinkContext, SinkMatch};
use ignore::WalkBuilder;
use ignore::overrides::OverrideBuilder;
use sandbox_protocol::{Tool, ToolInput};

use super::ToolOutput;
use super::args::Args;
use super::files::{self, io_failure, is_git_dir};
use super::text::{cut_chars, display_path};

const TOOL: &str = Tool::Grep.name();
/// Entries (lines, or files) shown when the model gives no `head_limit`.
const DEFAULT_HEAD_LIMIT: u64 = 250;
/// Seconds the search may take when the model gives no `timeout`.
const DEFAULT_TIMEOUT_SECS: f64 = 30.0;
/// Characters of a matching or context line shown before it is cut.
const MAX_LINE_CHARS: usize = 500;

/// What the search reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Matching lines (and context lines), `path:LINE:text`.
    Content,
    /// Paths of the files with a match.
    Files,
    /// `path:N`, the number of matching lines per file.
    Count,
}

pub(crate) fn run(input: &ToolInput, cwd: &Path) -> Result<String, ToolOutput> {
    let args = Args::new(TOOL, &input.args)?;
    let pattern = args.non_empty_string("pattern")?;
    let base = args.opt_path("path", cwd)?;
    let glob = args.opt_non_empty_string("glob")?;
    let case_insensitive = args.bool(args.pick("case_insensitive", "-i"), false)?;
    let context = args.non_negative_int(args.pick("context", "-C"), 0)?;
    let modes = ["content", "files_with_matches", "count"];
    let mode = match args.choice("output_mode", &modes, "files_with_matches")? {
        "content" => Mode::Content,
        "count" => Mode::Count,
        _ => Mode::Files,
    };
    let head_limit = args.positive_int("head_limit", DEFAULT_HEAD_LIMIT)?;
    let timeout = args.positive_number("timeout", DEFAULT_TIMEOUT_SECS)?;
    let multiline = args.bool("multiline", false)?;

    let matcher = build_matcher(pattern, case_insensitive, multiline)?;
    let (root, shown) = match &base {
        Some(base) => (base.path.as_path(), Some(base.shown)),
        None => (cwd, None),
    };
    let label = shown.unwrap_or(".");
    let meta = fs::metadata(root).map_err(|e| io_failure(TOOL, label, &e))?;

    // Saturating: no file has that many lines.
    let context = usize::try_from(context).unwrap_or(usize::MAX);
    let head_limit = usize::try_from(head_limit).unwrap_or(usize::MAX);
    let mut search = Search {
        searcher: build_searcher(mode, context, multiline),
        matcher,
        deadline: Deadline::after(timeout),
        found: Collector::new(mode, context, head_limit),
    };
    if meta.is_dir() {
        search.tree(build_walker(root, glob)?, root, shown);
    } else if meta.is_file() {
        // A file named explicitly is searched whatever the ignore rules and `glob` say.
        search.file(root, label.to_owned());
    } else {
        return Err(ToolOutput::failed(format!(
            "{TOOL}: {label} is not a regular file or directory"
        )));
    }
    let stopped_after = search.deadline.hit.get().then_some(timeout);
    Ok(search.found.render(stopped_after))
}

fn build_matcher(
    pattern: &str,
    case_insensitive: bool,
    multiline: bool,
) -> Result<RegexMatcher, ToolOutput> {
    let mut builder = RegexMatcherBuilder::new();
    builder.case_insensitive(case_insensitive);
    if multiline {
        // As `rg -U --multiline-dotall`: matches may span lines and `.` matches `\n`.
        builder.multi_line(true).dot_matches_new_line(true);
    } else {
        // Line by line, as `rg` does: `\s` never eats the newline, and a literal `\n` in the
        // pattern is an error instead of a silent non-match.
        builder.line_terminator(Some(b'\n'));
    }
    builder
        .build(pattern)
        .map_err(|e| ToolOutput::bad_args(TOOL, format!("invalid regex: {e}")))
}

fn build_searcher(mode: Mode, context: usize, multiline: bool) -> Searcher {
    let mut builder = SearcherBuilder::new();
    builder
        .line_number(true)
        .multi_line(multiline)
        .binary_detection(BinaryDetection::quit(b'\0'));
    if mode == Mode::Content {
        builder.before_context(context).after_context(context);
    }
    builder.build()
}

fn build_walker(root: &Path, glob: Option<&str>) -> Result<ignore::Walk, ToolOutput> {
    let mut builder = WalkBuilder::new(root);
    builder
        .require_git(false)
        .follow_links(false)
        // The hidden-file rule already skips `.git`, but a `glob` such as `**/*` overrides it.
        .filter_entry(|entry| !is_git_dir(entry))
        .sort_by_file_name(|a, b| a.cmp(b));
    if let Some(glob) = glob {
        let bad_glob = |e: ignore::Error| ToolOutput::bad_args(TOOL, format!("invalid glob: {e}"));
        let mut overrides = OverrideBuilder::new(root);
        overrides.add(glob).map_err(bad_glob)?;
        builder.overrides(overrides.build().map_err(bad_glob)?);
    }
    Ok(builder.build())
}

/// The state of one `grep` call.
#[derive(Debug)]
struct Search {
    searcher: Searcher,
    matcher: RegexMatcher,
    deadline: Deadline,
    found: Collector,
}

impl Search {
    /// Searches the files `walk` yields under `root`, shown joined to `shown`.
    fn tree(&mut self, walk: ignore::Walk, root: &Path, shown: Option<&str>) {
        for entry in walk {
            if self.deadline.passed() {
                break;
            }
            // Unreadable directories and vanished files are skipped, as `rg` does.
            let Ok(entry) = entry else { continue };
            if !entry.file_type().is_some_and(|t| t.is_file()) {
                continue;
            }
            if let Ok(relative) = entry.path().strip_prefix(root) {
                self.file(entry.path(), display_path(shown, relative));
            }
        }
    }

    /// Searches one file, shown as `display`.
    fn file(&mut self, path: &Path, display: String) {
        // Opened without blocking, so a FIFO that replaced a file cannot hang the search.
        let Ok((file, _)) = files::open_regular(path) else {
            return;
        };
        self.found.start_file(display);
        let reader = DeadlineReader {
            inner: file,
            deadline: &self.deadline,
        };
        // A read error mid-file keeps what was found before it, as `rg` does.
        let _ = self
            .searcher
            .search_reader(&self.matcher, reader, &mut self.found);
        self.found.finish_file();
    }
}

/// When the search must stop, and whether it had to.
#[derive(Debug)]
struct Deadline {
    at: Option<Instant>,
    hit: Cell<bool>,
}

impl Deadline {
    fn after(seconds: f64) -> Self {
        // A timeout too large to represent means no deadline.
        let at = Duration::try_from_secs_f64(seconds)
            .ok()
            .and_then(|d| Instant::now().checked_add(d));
        Self {
            at,
            hit: Cell::new(false),
        }
    }

    fn passed(&self) -> bool {
        let passed = self.at.is_some_and(|at| Instant::now() >= at);
        if passed {
            self.hit.set(true);
        }
        passed
    }
}

/// Ends the input early (a clean end of file) once the deadline passes, so that even one huge
/// file cannot keep the search past it.
struct DeadlineReader<'a, R> {
    inner: R,
    deadline: &'a Deadline,
}

impl<R: Read> Read for DeadlineReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.deadline.passed() {
            return Ok(0);
        }
        self.inner.read(buf)
    }
}

/// Gathers the output entries as the searcher reports them; counts those past the limit.
#[derive(Debug)]
struct Collector {
    mode: Mode,
    context: usize,
    limit: usize,
    lines: Vec<String>,
    /// Entries shown so far (`--` separators are not entries).
    shown: usize,
    /// Entries past the limit.
    not_shown: u64,
    /// The file being searched, as shown.
    current: String,
    /// Matching lines in the file being searched.
    file_matches: u64,
    /// A `--` goes before the next line shown (ripgrep's break between context groups).
    separator_pending: bool,
}

impl Collector {
    fn new(mode: Mode, context: usize, limit: usize) -> Self {
        Self {
            mode,
            context,
            limit,
            lines: Vec::new(),
            shown: 0,
            not_shown: 0,
            current: String::new(),
            file_matches: 0,
            separator_pending: false,
        }
    }

    fn start_file(&mut self, display: String) {
        self.current = display;
        self.file_matches = 0;
        // Context groups of different files are never adjacent.
        self.separator_pending = self.context > 0;
    }

    fn finish_file(&mut self) {
        let n = self.file_matches;
        match self.mode {
            Mode::Content => {}
            _ if n == 0 => {}
            Mode::Files => self.push(|c| c.current.clone()),
            Mode::Count => self.push(|c| format!("{}:{n}", c.current)),
        }
    }

    /// Adds an entry, formatting it only if it will be shown.
    fn push(&mut self, entry: impl FnOnce(&Self) -> String) {
        if self.shown >= self.limit {
            self.not_shown += 1;
            return;
        }
        if self.separator_pending && !self.lines.is_empty() {
            self.lines.push("--".to_owned());
        }
        self.separator_pending = false;
        let entry = entry(self);
        self.lines.push(entry);
        self.shown += 1;
    }

    /// A content line: `path:LINE:text` for a match, `path-LINE-text` for context.
    fn push_line(&mut self, separator: char, line_no: u64, bytes: &[u8]) {
        self.push(|c| {
            let text = String::from_utf8_lossy(bytes);
            let text = text.trim_end_matches(['\n', '\r']);
            let (head, cut) = cut_chars(text, MAX_LINE_CHARS);
            let tail = if cut > 0 { " [... truncated]" } else { "" };
            format!("{}{separator}{line_no}{separator}{head}{tail}", c.current)
        });
    }

    fn render(self, stopped_after: Option<f64>) -> String {
        let mut lines = self.lines;
        if lines.is_empty() {
            lines.push("No matches found".to_owned());
        }
        if self.not_shown > 0 {
            lines.push(match (stopped_after, self.mode) {
                // Counted only up to the deadline: the number would mislead.
                (Some(_), _) => "[... more results not shown]".to_owned(),
                (None, Mode::Content) => format!("[... {} more lines not shown]", self.not_shown),
                (None, _) => format!("[... {} more files not shown]", self.not_shown),
            });
        }
        if let Some(seconds) = stopped_after {
            lines.push(format!(
                "[... search stopped after {seconds}s; results are incomplete]"
            ));
        }
        lines.join("\n")
    }
}

impl Sink for Collector {
    type Error = io::Error;

    fn matched(&mut self, _: &Searcher, mat: &SinkMatch<'_>) -> Result<bool, io::Error> {
        let first = mat.line_number().unwrap_or(0);
        for (i, line) in mat.lines().enumerate() {
            self.file_matches += 1;
            match self.mode {
                // One match is enough to list the file.
                Mode::Files => return Ok(false),
                Mode::Count => {}
                Mode::Content => self.push_line(':', first + i as u64, line),
            }
        }
        Ok(true)
    }

    fn context(&mut self, _: &Searcher, context: &SinkContext<'_>) -> Result<bool, io::Error> {
        let line_no = context.line_number().unwrap_or(0);
        self.push_line('-', line_no, context.bytes());
        Ok(true)
    }

    fn context_break(&mut self, _: &Searcher) -> Result<bool, io::Error> {
        self.separator_pending = true;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn grep(cwd: &Path, args: serde_json::Value) -> ToolOutput {
        let input = ToolInput {
            args,
            max_growth_bytes: None,
        };
        crate::tools::run_tool(Tool::Grep, &input, cwd)
    }

    fn ok(cwd: &Path, args: serde_json::Value) -> String {
        let out = grep(cwd, args);
        assert_eq!(out.code, 0, "{out:?}");
        out.stdout
    }

    /// A small tree: two source files, a hidden one, an ignored one and a binary one.
    fn tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        fs::create_dir_all(root.join("src/深 层")).expect("mkdir");
        fs::write(root.join(".gitignore"), "target/\n*.log\n").expect("write");
        fs::write(root.join("src/main.rs"), "fn main() {\n    hello();\n}\n").expect("write");
        fs::write(
            root.join("src/深 层/lib $(x).rs"),
            "// 你好 Hello\npub fn hello() {}\n",
        )
        .expect("write");
        fs::write(root.join("notes.md"), "say HELLO\n").expect("write");
        fs::write(root.join(".hidden.rs"), "hello hidden\n").expect("write");
        fs::create_dir(root.join("target")).expect("mkdir");
        fs::write(root.join("target/out.rs"), "hello ignored\n").expect("write");
        fs::write(root.join("debug.log"), "hello log\n").expect("write");
        fs::write(root.join("blob.bin"), b"\x00\x01hello\n").expect("write");
        dir
    }

    #[test]
    fn files_with_matches_respects_gitignore_hidden_and_binary() {
        let dir = tree();
        assert_eq!(
            ok(dir.path(), json!({"pattern": "hello"})),
            "src/main.rs\nsrc/深 层/lib $(x).rs"
        );
    }

    #[test]
    fn case_insensitive_under_both_names() {
        let dir = tree();
        let expected = "notes.md\nsrc/main.rs\nsrc/深 层/lib $(x).rs";
        assert_eq!(
            ok(
                dir.path(),
                json!({"pattern": "hello", "case_insensitive": true})
            ),
            expected
        );
        assert_eq!(
            ok(dir.path(), json!({"pattern": "hello", "-i": true})),
            expected
        );
    }

    #[test]
    fn content_and_count_modes() {
        let dir = tree();
        let args = json!({"pattern": "hel+o", "output_mode": "content", "-i": true, "path": "src"});
        assert_eq!(
            ok(dir.path(), args),
            "src/main.rs:2:    hello();\nsrc/深 层/lib $(x).rs:1:// 你好 Hello\nsrc/深 层/lib $(x).rs:2:pub fn hello() {}"
        );
        let args = json!({"pattern": "hello", "output_mode": "count", "-i": true});
        assert_eq!(
            ok(dir.path(), args),
            "notes.md:1\nsrc/main.rs:1\nsrc/深 层/lib $(x).rs:2"
        );
    }

    #[test]
    fn context_lines_and_separators() {
        let dir = tempfile::tempdir().expect("tempdir");
        let text: String = (1..=12)
            .map(|i| format!("line {i}{}\n", if i == 3 || i == 10 { " hit" } else { "" }))
            .collect();
        fs::write(dir.path().join("a.txt"), &text).expect("write");
        fs::write(dir.path().join("b.txt"), "hit\n").expect("write");
        let args = json!({"pattern": "hit", "output_mode": "content", "context": 1});
        assert_eq!(
            ok(dir.path(), args),
            "a.txt-2-line 2\na.txt:3:line 3 hit\na.txt-4-line 4\n--\n\
             a.txt-9-line 9\na.txt:10:line 10 hit\na.txt-11-line 11\n--\nb.txt:1:hit"
        );
        let args = json!({"pattern": "hit", "output_mode": "content", "-C": 0, "path": "a.txt"});
        assert_eq!(
            ok(dir.path(), args),
            "a.txt:3:line 3 hit\na.txt:10:line 10 hit"
        );
    }

    #[test]
    fn head_limit_counts_what_it_leaves_out() {
        let dir = tempfile::tempdir().expect("tempdir");
        for i in 0..5 {
            fs::write(dir.path().join(format!("f{i}.txt")), "x\nx\nx\n").expect("write");
        }
        let args = json!({"pattern": "x", "head_limit": 2});
        assert_eq!(
            ok(dir.path(), args),
            "f0.txt\nf1.txt\n[... 3 more files not shown]"
        );
        let args = json!({"pattern": "x", "head_limit": 4, "output_mode": "content"});
        assert_eq!(
            ok(dir.path(), args),
            "f0.txt:1:x\nf0.txt:2:x\nf0.txt:3:x\nf1.txt:1:x\n[... 11 more lines not shown]"
        );
    }

    #[test]
    fn glob_filter_and_single_files() {
        let dir = tree();
        let args = json!({"pattern": "hello", "glob": "*.md", "-i": true});
        assert_eq!(ok(dir.path(), args), "notes.md");
        // As with `rg --glob`, a matching glob overrides the hidden and ignore rules for files
        // (`target/` stays skipped: the glob matches no directory).
        let args = json!({"pattern": "hello", "glob": "**/*.{rs,ts}"});
        assert_eq!(
            ok(dir.path(), args),
            ".hidden.rs\nsrc/main.rs\nsrc/深 层/lib $(x).rs"
        );
        // An explicitly named file is searched even if ignored.
        let args = json!({"pattern": "hello", "path": "debug.log", "output_mode": "content"});
        assert_eq!(ok(dir.path(), args), "debug.log:1:hello log");
        let abs = dir.path().join("notes.md");
        let args = json!({"pattern": "HELLO", "path": abs.to_str().expect("utf-8")});
        assert_eq!(ok(Path::new("/"), args), abs.to_str().expect("utf-8"));
    }

    #[test]
    fn never_searches_git_internals() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::create_dir(dir.path().join(".git")).expect("mkdir");
        fs::write(dir.path().join(".git/HEAD"), "needle").expect("write");
        fs::write(dir.path().join(".env"), "needle").expect("write");
        fs::write(dir.path().join("a.txt"), "needle").expect("write");
        let args = json!({"pattern": "needle", "glob": "*"});
        assert_eq!(ok(dir.path(), args), ".env\na.txt");
    }

    #[test]
    fn long_lines_are_cut() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(
            dir.path().join("l"),
            format!("needle {}\n", "字".repeat(600)),
        )
        .expect("write");
        let out = ok(
            dir.path(),
            json!({"pattern": "needle", "output_mode": "content"}),
        );
        assert_eq!(
            out,
            format!("l:1:needle {} [... truncated]", "字".repeat(493))
        );
    }

    #[test]
    fn multiline_matches_span_lines() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(dir.path().join("m"), "a\nstart\nmiddle\nend\nz\n").expect("write");
        let args = json!({"pattern": "start.*end", "multiline": true, "output_mode": "content"});
        assert_eq!(ok(dir.path(), args), "m:2:start\nm:3:middle\nm:4:end");
        let args = json!({"pattern": "start.*end", "output_mode": "content"});
        assert_eq!(ok(dir.path(), args), "No matches found");
    }

    #[test]
    fn timeout_returns_partial_results() {
        let dir = tree();
        let out = ok(dir.path(), json!({"pattern": "hello", "timeout": 1e-9}));
        assert_eq!(
            out,
            "No matches found\n[... search stopped after 0.000000001s; results are incomplete]"
        );
    }

    #[test]
    fn no_match_and_errors() {
        let dir = tree();
        assert_eq!(
            ok(dir.path(), json!({"pattern": "absent"})),
            "No matches found"
        );
        let out = grep(dir.path(), json!({"pattern": "x", "path": "nope"}));
        assert_eq!(
            (out.code, out.stderr.as_str()),
            (1, "[Error] grep: nope: No such file or directory")
        );
        let out = grep(dir.path(), json!({"pattern": "x", "path": "/dev/null"}));
        assert_eq!(
            out.stderr,
            "[Error] grep: /dev/null is not a regular file or directory"
        );
        let out = grep(dir.path(), json!({"pattern": "(unclosed"}));
        assert_eq!(out.code, 2);
        assert!(
            out.stderr
                .starts_with("[Error] bad arguments to grep: invalid regex: "),
            "{out:?}"
        );
        let out = grep(dir.path(), json!({"pattern": "x", "glob": "[z"}));
        assert_eq!(out.code, 2);
        assert!(
            out.stderr
                .starts_with("[Error] bad arguments to grep: invalid glob: "),
            "{out:?}"
        );
        for (args, message) in [
            (json!({}), "pattern must be a non-empty string"),
            (
                json!({"pattern": "x", "output_mode": "lines"}),
                "output_mode must be one of \"content\", \"files_with_matches\", \"count\"",
            ),
            (
                json!({"pattern": "x", "head_limit": 0}),
                "head_limit must be a positive integer",
            ),
            (
                json!({"pattern": "x", "-C": -1}),
                "-C must be a non-negative integer",
            ),
            (json!({"pattern": "x", "-i": "yes"}), "-i must be a boolean"),
            (
                json!({"pattern": "x", "timeout": 0}),
                "timeout must be a positive number",
            ),
        ] {
            let out = grep(dir.path(), args);
            assert_eq!(out.code, 2);
            assert_eq!(
                out.stderr,
                format!("[Error] bad arguments to grep: {message}")
            );
        }
    }
}
