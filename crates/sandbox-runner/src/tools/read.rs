//! `read`: a text file's lines, numbered like `cat -n`, from `offset` for `limit` lines.
//!
//! The file is read lazily, line by line, and even a single line is never held beyond what can
//! be shown, so a huge file (or a huge line) costs no memory. Binary files, directories, FIFOs
//! and devices are refused without blocking.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Cursor, Read};
use std::path::Path;

use sandbox_protocol::{Tool, ToolInput};

use super::ToolOutput;
use super::args::Args;
use super::files::{self, io_failure};
use super::text::cut_chars;

const TOOL: &str = Tool::Read.name();
/// Lines shown when the model gives no `limit`.
const DEFAULT_LIMIT: u64 = 2000;
/// Characters of one line shown before it is cut.
const MAX_LINE_CHARS: usize = 2000;
/// Bytes of one line kept in memory: enough for `MAX_LINE_CHARS` characters of up to 4 bytes,
/// plus the next character, so the cut point is always inside what was kept.
const MAX_LINE_BYTES: usize = MAX_LINE_CHARS * 4 + 4;
/// Cap on the whole output.
const MAX_OUTPUT_BYTES: usize = 256 * 1024;
/// A NUL byte in this much of the file's start makes it binary (the same test as git's).
const SNIFF_BYTES: u64 = 8 * 1024;

pub(crate) fn run(input: &ToolInput, cwd: &Path) -> Result<String, ToolOutput> {
    let args = Args::new(TOOL, &input.args)?;
    let path = args.path("path", cwd)?;
    let offset = args.positive_int("offset", 1)?;
    let limit = args.positive_int("limit", DEFAULT_LIMIT)?;

    let (file, meta) =
        files::open_regular(&path.path).map_err(|e| e.to_output(TOOL, path.shown))?;
    let io_failed = |e: io::Error| io_failure(TOOL, path.shown, &e);
    let Some(reader) = text_reader(file).map_err(io_failed)? else {
        return Err(ToolOutput::failed(format!(
            "{TOOL}: {} is a binary file ({} bytes); not shown",
            path.shown,
            meta.len()
        )));
    };
    let mut lines = LineReader::new(reader);
    let out = render(&mut lines, offset, limit).map_err(io_failed)?;
    match out {
        Rendered::Text(text) => Ok(text),
        Rendered::Empty => Ok("(empty file)".to_owned()),
        Rendered::PastEnd { lines } => Err(ToolOutput::failed(format!(
            "{TOOL}: offset {offset} is past the end of {} ({lines} lines)",
            path.shown
        ))),
    }
}

/// A buffered reader over `file`, or `None` if its start holds a NUL byte (binary).
fn text_reader(file: File) -> io::Result<Option<impl BufRead>> {
    let mut head = Vec::new();
    (&file).take(SNIFF_BYTES).read_to_end(&mut head)?;
    if head.contains(&0) {
        return Ok(None);
    }
    Ok(Some(BufReader::new(Cursor::new(head).chain(file))))
}

/// What `render` produced.
#[derive(Debug, PartialEq, Eq)]
enum Rendered {
    Text(String),
    Empty,
    PastEnd { lines: u64 },
}

/// Numbers and formats lines `offset..offset + limit`, with the notes that say how to go on.
fn render(lines: &mut LineReader<impl BufRead>, offset: u64, limit: u64) -> io::Result<Rendered> {
    let end = offset.saturating_add(limit); // first line not shown
    let mut out = String::new();
    let mut line_no = 0;
    while line_no + 1 < end {
        let keep = if line_no + 1 >= offset {
            MAX_LINE_BYTES
        } else {
            0
        };
        let Some(cut) = lines.next_line(keep)? else {
            break;
        };
        line_no += 1;
        if line_no < offset {
            continue;
        }
        let formatted = format_line(line_no, lines.line(), cut);
        if out.len() + formatted.len() + 1 > MAX_OUTPUT_BYTES {
            out.push_str(&format!(
                "\n[... output truncated at 256 KiB; continue with offset={line_no}]"
            ));
            return Ok(Rendered::Text(out));
        }
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(&formatted);
    }
    if line_no < offset {
        return Ok(if line_no == 0 {
            Rendered::Empty
        } else {
            Rendered::PastEnd { lines: line_no }
        });
    }
    if !lines.at_end()? {
        out.push_str(&format!(
            "\n[... more lines follow; continue with offset={end}]"
        ));
    }
    Ok(Rendered::Text(out))
}

/// `cat -n` style: the number right-aligned in 6 columns, a tab, the text (cut if too long).
fn format_line(line_no: u64, bytes: &[u8], chars_dropped: u64) -> String {
    let text = String::from_utf8_lossy(bytes);
    let (head, rest) = cut_chars(&text, MAX_LINE_CHARS);
    let more = rest as u64 + chars_dropped;
    if more > 0 {
        format!("{line_no:>6}\t{head} [... line truncated, {more} more characters]")
    } else {
        format!("{line_no:>6}\t{head}")
    }
}

/// Reads lines keeping at most a given number of bytes of each.
struct LineReader<R> {
    inner: R,
    line: Vec<u8>,
}

impl<R: BufRead> LineReader<R> {
    fn new(inner: R) -> Self {
        Self {
            inner,
            line: Vec::new(),
        }
    }

    /// The kept bytes of the last line read, without its `\n` or `\r\n`.
    fn line(&self) -> &[u8] {
        &self.line
    }

    fn at_end(&mut self) -> io::Result<bool> {
        Ok(self.inner.fill_buf()?.is_empty())
    }

    /// Reads the next line keeping its first `keep` bytes; `None` at the end of the input, else
    /// how many characters were not kept.
    fn next_line(&mut self, keep: usize) -> io::Result<Option<u64>> {
        self.line.clear();
        let mut dropped = Dropped::default();
        let mut any = false;
        loop {
            let chunk = match self.inner.fill_buf() {
                Ok(chunk) => chunk,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if chunk.is_empty() {
                break;
            }
            any = true;
            let newline = chunk.iter().position(|&b| b == b'\n');
            let part = &chunk[..newline.unwrap_or(chunk.len())];
            let room = keep.saturating_sub(self.line.len()).min(part.len());
            self.line.extend_from_slice(&part[..room]);
            dropped.add(&part[room..]);
            let consumed = newline.map_or(chunk.len(), |i| i + 1);
            self.inner.consume(consumed);
            if newline.is_some() {
                // `\r\n` endings: the `\r` is part of the ending, not of the text.
                if dropped.bytes == 0 && self.line.last() == Some(&b'\r') {
                    self.line.pop();
                } else if dropped.last == Some(b'\r') {
                    dropped.chars -= 1;
                }
                break;
            }
        }
        Ok(any.then_some(dropped.chars))
    }
}

/// The part of a line that was not kept: counted, not stored.
#[derive(Debug, Default)]
struct Dropped {
    bytes: u64,
    /// Characters, counted as UTF-8 lead bytes (exact for valid UTF-8).
    chars: u64,
    last: Option<u8>,
}

impl Dropped {
    fn add(&mut self, bytes: &[u8]) {
        self.bytes += bytes.len() as u64;
        self.chars += bytes.iter().filter(|&&b| b & 0xC0 != 0x80).count() as u64;
        if let Some(&b) = bytes.last() {
            self.last = Some(b);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::time::{Duration, Instant};

    use serde_json::json;

    use super::*;

    fn read(cwd: &Path, args: serde_json::Value) -> ToolOutput {
        let input = ToolInput {
            args,
            max_growth_bytes: None,
        };
        crate::tools::run_tool(Tool::Read, &input, cwd)
    }

    fn ok(cwd: &Path, args: serde_json::Value) -> String {
        let out = read(cwd, args);
        assert_eq!(out.code, 0, "{out:?}");
        out.stdout
    }

    fn failed(cwd: &Path, args: serde_json::Value) -> String {
        let out = read(cwd, args);
        assert_eq!(out.code, 1, "{out:?}");
        out.stderr
    }

    #[test]
    fn numbers_lines_like_cat_n() {
        let dir = tempfile::tempdir().expect("tempdir");
        let name = "文件 $(rm -rf x); \"q\" 'a'.txt";
        fs::write(dir.path().join(name), "第一行\r\n  two\t$(x);\n\nlast").expect("write");
        assert_eq!(
            ok(dir.path(), json!({"path": name})),
            "     1\t第一行\n     2\t  two\t$(x);\n     3\t\n     4\tlast"
        );
    }

    #[test]
    fn absolute_paths_and_a_trailing_newline() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("a.txt");
        fs::write(&path, "a\nb\n").expect("write");
        let shown = path.to_str().expect("utf-8 path");
        assert_eq!(
            ok(Path::new("/"), json!({"path": shown})),
            "     1\ta\n     2\tb"
        );
    }

    #[test]
    fn offset_and_limit() {
        let dir = tempfile::tempdir().expect("tempdir");
        let text: String = (1..=10).map(|i| format!("line {i}\n")).collect();
        fs::write(dir.path().join("f"), text).expect("write");
        assert_eq!(
            ok(dir.path(), json!({"path": "f", "offset": 3, "limit": 2.0})),
            "     3\tline 3\n     4\tline 4\n[... more lines follow; continue with offset=5]"
        );
        assert_eq!(
            ok(dir.path(), json!({"path": "f", "offset": 9, "limit": 2})),
            "     9\tline 9\n    10\tline 10"
        );
        assert_eq!(
            ok(dir.path(), json!({"path": "f", "offset": 10})),
            "    10\tline 10"
        );
        assert_eq!(
            failed(dir.path(), json!({"path": "f", "offset": 11})),
            "[Error] read: offset 11 is past the end of f (10 lines)"
        );
    }

    #[test]
    fn empty_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(dir.path().join("e"), "").expect("write");
        assert_eq!(ok(dir.path(), json!({"path": "e"})), "(empty file)");
    }

    #[test]
    fn long_lines_are_cut_on_a_char_boundary() {
        let dir = tempfile::tempdir().expect("tempdir");
        // 2500 three-byte characters, then a CRLF.
        fs::write(
            dir.path().join("l"),
            format!("{}\r\nnext", "汉".repeat(2500)),
        )
        .expect("write");
        let out = ok(dir.path(), json!({"path": "l"}));
        let expected = format!(
            "     1\t{} [... line truncated, 500 more characters]\n     2\tnext",
            "汉".repeat(2000)
        );
        assert_eq!(out, expected);
        // Beyond what is kept in memory, the rest is counted, not stored.
        fs::write(dir.path().join("h"), format!("{}\r\n", "a".repeat(100_000))).expect("write");
        let out = ok(dir.path(), json!({"path": "h"}));
        assert!(
            out.ends_with(" [... line truncated, 98000 more characters]"),
            "{out:.80}"
        );
    }

    #[test]
    fn output_is_capped_at_256_kib() {
        let dir = tempfile::tempdir().expect("tempdir");
        let line = "x".repeat(999);
        let text: String = (0..1000).map(|_| format!("{line}\n")).collect();
        fs::write(dir.path().join("big"), text).expect("write");
        let out = ok(dir.path(), json!({"path": "big"}));
        let (body, note) = out.rsplit_once('\n').expect("a note");
        assert!(body.len() <= MAX_OUTPUT_BYTES);
        // Each line takes 6 + 1 + 999 + 1 bytes: 260 fit.
        assert_eq!(
            note,
            "[... output truncated at 256 KiB; continue with offset=261]"
        );
        assert!(body.ends_with(&format!("   260\t{line}")));
    }

    #[test]
    fn invalid_utf8_is_replaced() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(dir.path().join("latin1"), b"caf\xe9\n").expect("write");
        assert_eq!(
            ok(dir.path(), json!({"path": "latin1"})),
            "     1\tcaf\u{fffd}"
        );
    }

    #[test]
    fn refuses_binary_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(dir.path().join("bin"), b"ELF\x00\x01\x02rest").expect("write");
        assert_eq!(
            failed(dir.path(), json!({"path": "bin"})),
            "[Error] read: bin is a binary file (10 bytes); not shown"
        );
    }

    #[test]
    fn refuses_directories_missing_files_and_devices() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::create_dir(dir.path().join("sub dir")).expect("mkdir");
        assert_eq!(
            failed(dir.path(), json!({"path": "sub dir"})),
            "[Error] read: sub dir is a directory"
        );
        assert_eq!(
            failed(dir.path(), json!({"path": "nope.txt"})),
            "[Error] read: nope.txt: No such file or directory"
        );
        assert_eq!(
            failed(dir.path(), json!({"path": "/dev/zero"})),
            "[Error] read: /dev/zero is not a regular file"
        );
    }

    #[test]
    fn a_fifo_is_refused_at_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fifo = dir.path().join("pipe");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .expect("mkfifo");
        std::os::unix::fs::symlink(&fifo, dir.path().join("link")).expect("symlink");
        let start = Instant::now();
        for name in ["pipe", "link"] {
            assert_eq!(
                failed(dir.path(), json!({"path": name})),
                format!("[Error] read: {name} is not a regular file")
            );
        }
        assert!(start.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn bad_arguments() {
        let dir = tempfile::tempdir().expect("tempdir");
        for (args, message) in [
            (json!({}), "path must be a non-empty string"),
            (json!({"path": 3}), "path must be a non-empty string"),
            (
                json!({"path": "a\u{0}b"}),
                "path must not contain a NUL byte",
            ),
            (
                json!({"path": "f", "offset": 0}),
                "offset must be a positive integer",
            ),
            (
                json!({"path": "f", "limit": 1.5}),
                "limit must be a positive integer",
            ),
            (
                json!({"path": "f", "limit": "10"}),
                "limit must be a positive integer",
            ),
            (json!(["f"]), "arguments must be a JSON object"),
        ] {
            let out = read(dir.path(), args);
            assert_eq!(out.code, 2);
            assert_eq!(
                out.stderr,
                format!("[Error] bad arguments to read: {message}")
            );
        }
    }

    #[test]
    fn line_reader_counts_what_it_does_not_keep() {
        let mut lines = LineReader::new(Cursor::new("abcdef\r\nxy\r\n\nz".as_bytes()));
        assert_eq!(lines.next_line(3).expect("read"), Some(3));
        assert_eq!(lines.line(), b"abc");
        assert_eq!(lines.next_line(0).expect("read"), Some(2));
        assert_eq!(lines.next_line(10).expect("read"), Some(0));
        assert_eq!(lines.line(), b"");
        assert!(!lines.at_end().expect("peek"));
        assert_eq!(lines.next_line(10).expect("read"), Some(0));
        assert_eq!(lines.line(), b"z");
        assert_eq!(lines.next_line(10).expect("read"), None);
    }
}
