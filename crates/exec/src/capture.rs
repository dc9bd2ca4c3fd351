//! Capped capture of one output stream, and the scanner that takes the runner's trailer off
//! the end of stderr.

use std::collections::VecDeque;

use bytes::Bytes;
use sandbox_protocol::{RunReport, TRAILER_MARKER};

/// How much of each stream a call keeps. Output beyond `head + tail` bytes is dropped from
/// the middle and counted, so memory stays bounded whatever the command prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputCaps {
    /// Bytes kept from the start of the stream.
    pub head: usize,
    /// Bytes kept from the end of the stream.
    pub tail: usize,
}

/// Default head kept per stream: 512 KiB.
pub const DEFAULT_HEAD_BYTES: usize = 512 * 1024;
/// Default tail kept per stream: 512 KiB.
pub const DEFAULT_TAIL_BYTES: usize = 512 * 1024;

impl Default for OutputCaps {
    fn default() -> Self {
        Self {
            head: DEFAULT_HEAD_BYTES,
            tail: DEFAULT_TAIL_BYTES,
        }
    }
}

impl OutputCaps {
    /// Keep `head` bytes from the start and `tail` from the end.
    pub fn new(head: usize, tail: usize) -> Self {
        Self { head, tail }
    }
}

/// One stream as captured: its head, its tail, and how many bytes were dropped between them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Captured {
    caps: OutputCaps,
    head: Vec<u8>,
    tail: VecDeque<u8>,
    dropped: u64,
}

impl Captured {
    /// An empty capture with these caps.
    pub fn new(caps: OutputCaps) -> Self {
        Self {
            caps,
            ..Self::default()
        }
    }

    /// Appends a chunk, dropping from the middle when over the caps.
    pub fn push(&mut self, mut chunk: &[u8]) {
        let room = self.caps.head.saturating_sub(self.head.len());
        if room > 0 {
            let take = room.min(chunk.len());
            self.head.extend_from_slice(&chunk[..take]);
            chunk = &chunk[take..];
        }
        if chunk.is_empty() {
            return;
        }
        if chunk.len() >= self.caps.tail {
            self.dropped += (self.tail.len() + chunk.len() - self.caps.tail) as u64;
            self.tail.clear();
            self.tail.extend(&chunk[chunk.len() - self.caps.tail..]);
            return;
        }
        let overflow = (self.tail.len() + chunk.len()).saturating_sub(self.caps.tail);
        self.tail.drain(..overflow);
        self.dropped += overflow as u64;
        self.tail.extend(chunk);
    }

    /// The kept bytes from the start of the stream.
    pub fn head(&self) -> &[u8] {
        &self.head
    }

    /// The kept bytes from the end of the stream (empty unless the head filled up).
    pub fn tail(&self) -> Vec<u8> {
        self.tail.iter().copied().collect()
    }

    /// Bytes dropped between head and tail.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Whether anything was dropped.
    pub fn is_truncated(&self) -> bool {
        self.dropped > 0
    }

    /// Bytes the stream carried in all.
    pub fn total(&self) -> u64 {
        (self.head.len() + self.tail.len()) as u64 + self.dropped
    }

    /// Head and tail joined (without a marker for the gap; see [`Captured::dropped`]).
    pub fn to_vec(&self) -> Vec<u8> {
        let mut all = self.head.clone();
        all.extend(self.tail.iter());
        all
    }

    /// Head and tail as text, invalid UTF-8 replaced, with a line saying how many bytes were
    /// dropped between them when some were.
    pub fn to_string_lossy(&self) -> String {
        let head = String::from_utf8_lossy(&self.head);
        if !self.is_truncated() {
            let tail = self.tail();
            return format!("{head}{}", String::from_utf8_lossy(&tail));
        }
        format!(
            "{head}\n[... {} bytes dropped ...]\n{}",
            self.dropped,
            String::from_utf8_lossy(&self.tail())
        )
    }
}

/// Takes the supervisor's trailer (`MARKER <exec id> <json>\n`) off the end of stderr.
///
/// The trailer is the last thing the supervisor writes, but Docker frames are not writes: the
/// marker can arrive split across two frames. The scanner therefore holds back any stderr
/// suffix that could be the start of the marker until the next chunk decides.
#[derive(Debug)]
pub struct TrailerScanner {
    marker: Vec<u8>,
    held: Vec<u8>,
    trailer: Option<Vec<u8>>,
}

/// The trailer is a short JSON line; more than this after the marker is not ours.
const MAX_TRAILER: usize = 64 * 1024;

impl TrailerScanner {
    /// A scanner for the call `exec_id`.
    pub fn new(exec_id: &str) -> Self {
        let mut marker = TRAILER_MARKER.to_vec();
        marker.extend_from_slice(exec_id.as_bytes());
        marker.push(b' ');
        Self {
            marker,
            held: Vec::new(),
            trailer: None,
        }
    }

    /// Feeds a stderr chunk; returns the part that is command output.
    pub fn feed(&mut self, chunk: Bytes) -> Bytes {
        if let Some(trailer) = &mut self.trailer {
            if trailer.len() < MAX_TRAILER {
                trailer.extend_from_slice(&chunk);
            }
            return Bytes::new();
        }
        let data = if self.held.is_empty() {
            chunk
        } else {
            let mut joined = std::mem::take(&mut self.held);
            joined.extend_from_slice(&chunk);
            Bytes::from(joined)
        };
        if let Some(at) = find(&data, &self.marker) {
            self.trailer = Some(data[at + self.marker.len()..].to_vec());
            return data.slice(..at);
        }
        let keep = (1..self.marker.len().min(data.len() + 1))
            .rev()
            .find(|&k| data.ends_with(&self.marker[..k]))
            .unwrap_or(0);
        self.held = data[data.len() - keep..].to_vec();
        data.slice(..data.len() - keep)
    }

    /// At end of stream: the held-back bytes (command output after all) and the parsed
    /// trailer, if one arrived whole.
    pub fn finish(self) -> (Bytes, Option<RunReport>) {
        let report = self.trailer.and_then(|t| {
            let line = t.strip_suffix(b"\n").unwrap_or(&t);
            serde_json::from_slice(line).ok()
        });
        (Bytes::from(self.held), report)
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    // Every marker starts with NUL, which text output practically never holds: jump between
    // NULs instead of comparing at every position.
    let first = *needle.first()?;
    let mut from = 0;
    while let Some(i) = haystack[from..].iter().position(|&b| b == first) {
        let at = from + i;
        if haystack[at..].starts_with(needle) {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use sandbox_protocol::ExitStatus;

    #[test]
    fn capture_keeps_head_and_tail_and_counts_the_rest() {
        let mut c = Captured::new(OutputCaps::new(4, 3));
        c.push(b"ab");
        c.push(b"cdefg");
        c.push(b"hij");
        assert_eq!(c.head(), b"abcd");
        assert_eq!(c.tail(), b"hij");
        assert_eq!(c.dropped(), 3);
        assert_eq!(c.total(), 10);
        assert_eq!(c.to_string_lossy(), "abcd\n[... 3 bytes dropped ...]\nhij");
    }

    #[test]
    fn capture_under_the_caps_keeps_everything() {
        let mut c = Captured::new(OutputCaps::new(4, 4));
        for b in b"abcdefgh" {
            c.push(&[*b]);
        }
        assert_eq!(c.to_vec(), b"abcdefgh");
        assert!(!c.is_truncated());
        let mut big = Captured::new(OutputCaps::new(2, 2));
        big.push(&[7u8; 1000]);
        assert_eq!(big.dropped(), 996);
        assert_eq!(big.total(), 1000);
    }

    fn trailer(id: &str) -> Vec<u8> {
        let report = RunReport {
            status: Some(ExitStatus::Exited { code: 3 }),
            spawn_error: None,
            spawn_failure: None,
            kill: None,
            leaked_output: false,
            elapsed_ms: 5,
        };
        let mut t = TRAILER_MARKER.to_vec();
        t.extend_from_slice(format!("{id} ").as_bytes());
        t.extend_from_slice(serde_json::to_string(&report).expect("json").as_bytes());
        t.push(b'\n');
        t
    }

    #[test]
    fn trailer_is_found_even_when_split_at_every_byte() {
        let mut stream = b"err\0or text\n".to_vec();
        stream.extend(trailer("abc"));
        for split in 0..stream.len() {
            let mut s = TrailerScanner::new("abc");
            let mut out = s.feed(Bytes::copy_from_slice(&stream[..split])).to_vec();
            out.extend_from_slice(&s.feed(Bytes::copy_from_slice(&stream[split..])));
            let (rest, report) = s.finish();
            out.extend_from_slice(&rest);
            assert_eq!(out, b"err\0or text\n", "split at {split}");
            assert_eq!(
                report.expect("report").status,
                Some(ExitStatus::Exited { code: 3 })
            );
        }
    }

    #[test]
    fn another_calls_trailer_is_plain_output() {
        let mut s = TrailerScanner::new("mine");
        let other = trailer("theirs");
        let mut out = s.feed(Bytes::from(other.clone())).to_vec();
        let (rest, report) = s.finish();
        out.extend_from_slice(&rest);
        assert_eq!(out, other);
        assert!(report.is_none());
    }
}
