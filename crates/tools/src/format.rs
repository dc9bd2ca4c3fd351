//! The text the model sees for every result and error, and the exit codes that go with it.
//!
//! Wording and layout are the seed's wherever the seed had them, so that prompts and agents
//! written against it keep working. Additions over the seed: a line in a stream's text where
//! output was dropped by the caps, and the output captured before a timeout or cancellation.
//! Invalid UTF-8 is replaced, never refused: the model should see what it can of any output.

use std::fmt::Display;

use sandbox_exec::{Captured, exit};

/// Exit code of an answer to bad arguments, an unknown tool or a refused write: 2, the
/// runner's own ([`exit::BAD_ARGS`]).
pub const EXIT_BAD_ARGS: i32 = exit::BAD_ARGS;
/// Exit code of an answer to a call that ran out of time: 124 ([`exit::TIMED_OUT`]).
pub const EXIT_TIMEOUT: i32 = exit::TIMED_OUT;
/// Exit code of an answer to a cancelled call: 130 ([`exit::CANCELLED`]).
pub const EXIT_CANCELLED: i32 = exit::CANCELLED;
/// Exit code of an answer to a failure of ours, not of the command (a lost sandbox too, as
/// the seed answered every failure to run): 1 ([`exit::FAILED`]).
pub const EXIT_INTERNAL: i32 = exit::FAILED;

/// A `shell` or `run_python` result: `[stdout]\n...`, `[stderr]\n...` (each only when the
/// stream carried anything) and always `[exit N]`, one per line. Each stream's trailing
/// whitespace is trimmed.
///
/// As in the seed, a stream that carried only whitespace still gets its (then empty) part:
/// the model learns that something was printed.
pub fn command_result(stdout: &Captured, stderr: &Captured, exit_code: i32) -> String {
    let mut parts = stream_parts(stdout, stderr);
    parts.push(format!("[exit {exit_code}]"));
    parts.join("\n")
}

/// `message` (the first line, unchanged), then whatever output the call produced before it
/// ended, as in [`command_result`] but without an `[exit N]` line: the command never exited.
pub fn with_partial_output(message: &str, stdout: &Captured, stderr: &Captured) -> String {
    let mut parts = vec![message.to_owned()];
    parts.extend(stream_parts(stdout, stderr));
    parts.join("\n")
}

/// A file tool's result: on exit 0, the runner's stdout as is; otherwise its stderr (the
/// runner's `[Error] ...` message), trimmed, or `tool_runner exit N` when it said nothing.
pub fn file_tool_result(stdout: &Captured, stderr: &Captured, exit_code: i32) -> String {
    if exit_code == 0 {
        return stream_text(stdout);
    }
    let message = stream_text(stderr);
    match message.trim() {
        "" => format!("tool_runner exit {exit_code}"),
        trimmed => trimmed.to_owned(),
    }
}

/// `[Error] command timed out after {secs}s` (answered with [`EXIT_TIMEOUT`]).
pub fn timed_out(secs: u64) -> String {
    format!("[Error] command timed out after {secs}s")
}

/// An error and its causes, `a: b: c` (one home for every crate: `sandbox-exec`).
pub use sandbox_exec::error_chain;

/// `[Error] command cancelled by user` (answered with [`EXIT_CANCELLED`]).
pub fn cancelled() -> &'static str {
    "[Error] command cancelled by user"
}

/// `[Error executing {tool} via docker] {detail}` (answered with [`EXIT_INTERNAL`]).
pub fn internal_error(tool: impl Display, detail: impl Display) -> String {
    format!("[Error executing {tool} via docker] {detail}")
}

/// `[Error executing {tool} via docker] sandbox lost: {detail}`: the container went away
/// under the call (answered with [`EXIT_INTERNAL`]).
pub fn sandbox_lost(tool: impl Display, detail: impl Display) -> String {
    internal_error(tool, format_args!("sandbox lost: {detail}"))
}

/// `[Error] unknown tool: {name}` (answered with [`EXIT_BAD_ARGS`]).
pub fn unknown_tool(name: impl Display) -> String {
    format!("[Error] unknown tool: {name}")
}

/// The `[stdout]` and `[stderr]` parts of the streams that carried anything.
fn stream_parts(stdout: &Captured, stderr: &Captured) -> Vec<String> {
    [("stdout", stdout), ("stderr", stderr)]
        .into_iter()
        .filter(|(_, stream)| stream.total() > 0)
        .map(|(name, stream)| format!("[{name}]\n{}", stream_text(stream).trim_end()))
        .collect()
}

/// A stream as text: invalid UTF-8 replaced, and where bytes were dropped between head and
/// tail, a line that says how many.
///
/// A character cut in two by the caps is not shown as a replacement character: its pieces
/// count as dropped, so the count is exactly the bytes the model does not see.
fn stream_text(stream: &Captured) -> String {
    let head = stream.head();
    let tail = stream.tail();
    if !stream.is_truncated() {
        let mut all = head.to_vec();
        all.extend_from_slice(&tail);
        return String::from_utf8_lossy(&all).into_owned();
    }
    let head = &head[..head.len() - incomplete_char_at_end(head)];
    let tail = &tail[continuation_bytes_at_start(&tail)..];
    let shown = (head.len() + tail.len()) as u64;
    let dropped = stream.total() - shown;
    format!(
        "{}\n[... {dropped} bytes of output dropped ...]\n{}",
        String::from_utf8_lossy(head),
        String::from_utf8_lossy(tail)
    )
}

/// How many bytes at the end of `bytes` are the start of a UTF-8 character cut off before its
/// end (0 when the last character is whole, or when the bytes are not UTF-8 there anyway).
fn incomplete_char_at_end(bytes: &[u8]) -> usize {
    // A character is at most 4 bytes: its lead byte is within the last 3 if it is cut.
    let from = bytes.len().saturating_sub(3);
    let Some(lead) = (from..bytes.len())
        .rev()
        .find(|&i| !is_continuation(bytes[i]))
    else {
        return 0;
    };
    let have = bytes.len() - lead;
    let need = match bytes[lead] {
        0xC0..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF7 => 4,
        _ => 1,
    };
    if have < need { have } else { 0 }
}

/// How many continuation bytes (the rest of a character cut by the caps) start `bytes`, at
/// most 3.
fn continuation_bytes_at_start(bytes: &[u8]) -> usize {
    bytes
        .iter()
        .take(3)
        .take_while(|&&b| is_continuation(b))
        .count()
}

fn is_continuation(byte: u8) -> bool {
    byte & 0xC0 == 0x80
}

#[cfg(test)]
mod tests {
    use insta::assert_snapshot;
    use sandbox_exec::OutputCaps;

    use super::*;

    /// A stream that carried `chunks`, kept with roomy caps.
    fn stream(chunks: &[&[u8]]) -> Captured {
        capped(1024, 1024, chunks)
    }

    fn capped(head: usize, tail: usize, chunks: &[&[u8]]) -> Captured {
        let mut c = Captured::new(OutputCaps::new(head, tail));
        for chunk in chunks {
            c.push(chunk);
        }
        c
    }

    fn empty() -> Captured {
        stream(&[])
    }

    #[test]
    fn exit_codes() {
        assert_eq!(
            (EXIT_BAD_ARGS, EXIT_TIMEOUT, EXIT_CANCELLED, EXIT_INTERNAL),
            (2, 124, 130, 1)
        );
    }

    #[test]
    fn command_both_streams() {
        let out = stream(&[b"hello\n", b"world\n\n"]);
        let err = stream(&[b"warning: x  \n"]);
        assert_snapshot!(command_result(&out, &err, 0), @r"
        [stdout]
        hello
        world
        [stderr]
        warning: x
        [exit 0]
        ");
    }

    #[test]
    fn command_no_output() {
        assert_snapshot!(command_result(&empty(), &empty(), 3), @"[exit 3]");
    }

    #[test]
    fn command_stderr_only() {
        let err = stream(&[b"bash: nope: command not found\n"]);
        assert_snapshot!(command_result(&empty(), &err, 127));
    }

    #[test]
    fn command_whitespace_only_stdout_keeps_its_part() {
        assert_snapshot!(command_result(&stream(&[b"\n \n"]), &empty(), 0));
    }

    #[test]
    fn command_cjk() {
        let out = stream(&["你好，世界\n文件 $(x).txt\n".as_bytes()]);
        assert_snapshot!(command_result(&out, &empty(), 0));
    }

    #[test]
    fn command_invalid_utf8_is_replaced() {
        let out = stream(&[b"ok \xff\xfe bytes\n", b"\xe4\xbd"]);
        assert_snapshot!(command_result(&out, &empty(), 1));
    }

    #[test]
    fn command_truncated() {
        let out = capped(10, 10, &[b"line 1\nline 2\nline 3\nline 4\nline 5\n"]);
        assert_eq!(out.dropped(), 15);
        assert_snapshot!(command_result(&out, &empty(), 0));
    }

    #[test]
    fn command_truncated_cjk_does_not_split_characters() {
        // 12 characters of 3 bytes: the head keeps 2 and a third, the tail a third and 2.
        let text = "一二三四五六七八九十百千";
        let out = capped(7, 8, &[text.as_bytes()]);
        let shown = command_result(&out, &empty(), 0);
        assert!(!shown.contains('\u{FFFD}'), "{shown}");
        assert_snapshot!(shown);
    }

    #[test]
    fn partial_output_after_timeout() {
        let out = stream(&[b"step 1\nstep 2\n"]);
        let err = stream(&[b"slow...\n"]);
        assert_snapshot!(with_partial_output(&timed_out(60), &out, &err));
    }

    #[test]
    fn no_partial_output_after_cancel() {
        assert_snapshot!(with_partial_output(cancelled(), &empty(), &empty()), @"[Error] command cancelled by user");
    }

    #[test]
    fn partial_output_truncated() {
        let out = capped(4, 4, &[b"0123456789abcdef"]);
        assert_snapshot!(with_partial_output(cancelled(), &out, &empty()));
    }

    #[test]
    fn file_tool_success_is_stdout_untrimmed() {
        let out = stream(&["     1\t第一行\n     2\tsecond\n".as_bytes()]);
        let err = stream(&[b"ignored"]);
        let shown = file_tool_result(&out, &err, 0);
        assert_eq!(shown, "     1\t第一行\n     2\tsecond\n");
        assert_snapshot!(shown);
    }

    #[test]
    fn file_tool_success_empty_and_invalid_utf8() {
        assert_eq!(file_tool_result(&empty(), &empty(), 0), "");
        let out = stream(&[b"name \xff.txt"]);
        assert_snapshot!(file_tool_result(&out, &empty(), 0), @"name �.txt");
    }

    #[test]
    fn file_tool_failure_is_trimmed_stderr() {
        let err = stream(&[b"\n[Error] read: a.txt: No such file or directory\n"]);
        assert_snapshot!(file_tool_result(&stream(&[b"partial"]), &err, 1), @"[Error] read: a.txt: No such file or directory");
    }

    #[test]
    fn file_tool_failure_without_a_message() {
        assert_snapshot!(file_tool_result(&empty(), &stream(&[b" \n"]), 137), @"tool_runner exit 137");
    }

    #[test]
    fn errors() {
        assert_snapshot!(timed_out(30), @"[Error] command timed out after 30s");
        assert_snapshot!(cancelled(), @"[Error] command cancelled by user");
        assert_snapshot!(internal_error("shell", "ExecError: daemon unreachable"), @"[Error executing shell via docker] ExecError: daemon unreachable");
        assert_snapshot!(sandbox_lost("run_python", "container stopped (OOM killed)"), @"[Error executing run_python via docker] sandbox lost: container stopped (OOM killed)");
        assert_snapshot!(unknown_tool("run_python"), @"[Error] unknown tool: run_python");
    }

    #[test]
    fn utf8_boundaries() {
        assert_eq!(incomplete_char_at_end(b"ab"), 0);
        assert_eq!(incomplete_char_at_end("é".as_bytes()), 0);
        assert_eq!(incomplete_char_at_end(&"é".as_bytes()[..1]), 1);
        assert_eq!(incomplete_char_at_end(&"😀".as_bytes()[..3]), 3);
        assert_eq!(incomplete_char_at_end("a😀".as_bytes()), 0);
        assert_eq!(
            incomplete_char_at_end(b"\x80\x80\x80"),
            0,
            "not UTF-8: left to lossy"
        );
        assert_eq!(continuation_bytes_at_start(&"😀".as_bytes()[1..]), 3);
        assert_eq!(continuation_bytes_at_start(b"abc"), 0);
        assert_eq!(continuation_bytes_at_start(b"\x80\x80\x80\x80"), 3);
    }
}
