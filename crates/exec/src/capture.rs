//! Capped capture of one output stream, and the reader of the supervisor's framed stdout.

use std::collections::VecDeque;

use bytes::Bytes;
use sandbox_protocol::{RunReport, frame};

/// Which stream a chunk of output came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StreamKind {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

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

/// How much of the runner's own words (its stderr, or what the runtime wrote instead of
/// frames) a call keeps: enough for an error message.
pub(crate) const DIAGNOSTIC_BYTES: usize = 4096;

/// A capture that keeps the first [`DIAGNOSTIC_BYTES`] and counts the rest.
pub(crate) fn diagnostic() -> Captured {
    Captured::new(OutputCaps::new(DIAGNOSTIC_BYTES, 0))
}

/// The supervisor's stdout, read as frames: the command's two streams (capped) and the
/// supervisor's report.
///
/// Only the supervisor writes this stream, so the command's bytes can only ever arrive inside
/// output frames. Anything that is not a well-formed frame of a kind the host takes, within its
/// size limit, breaks the stream: nothing after it is trusted, and the first bytes that broke
/// it are kept (when the runner never started, the runtime writes its error there).
#[derive(Debug)]
pub(crate) struct Frames {
    decoder: frame::Decoder,
    pub(crate) stdout: Captured,
    pub(crate) stderr: Captured,
    pub(crate) report: Option<RunReport>,
    /// Why the stream stopped being read as frames.
    pub(crate) broken: Option<String>,
    /// What came where a frame should have.
    pub(crate) unframed: Captured,
}

impl Frames {
    pub(crate) fn new(caps: OutputCaps) -> Self {
        Self {
            decoder: frame::Decoder::new(frame::to_host_limit),
            stdout: Captured::new(caps),
            stderr: Captured::new(caps),
            report: None,
            broken: None,
            unframed: diagnostic(),
        }
    }

    /// Feeds bytes of the stream; `emit` gets each output frame as it completes.
    pub(crate) fn push(&mut self, bytes: &[u8], mut emit: impl FnMut(StreamKind, &Bytes)) {
        if self.broken.is_some() {
            self.unframed.push(bytes);
            return;
        }
        if self.report.is_some() {
            return self.break_with("bytes after the report".to_owned());
        }
        self.decoder.push(bytes);
        loop {
            match self.decoder.next_frame() {
                Ok(None) => return,
                Ok(Some((kind, payload))) => {
                    self.frame(kind, Bytes::from(payload), &mut emit);
                    if self.report.is_some() || self.broken.is_some() {
                        if self.report.is_some() && self.decoder.pending() > 0 {
                            self.break_with("bytes after the report".to_owned());
                        }
                        return;
                    }
                }
                Err(e) => return self.break_with(e.to_string()),
            }
        }
    }

    /// Takes one whole frame of the call (as a channel delivers them).
    pub(crate) fn frame(
        &mut self,
        kind: u8,
        payload: Bytes,
        emit: &mut impl FnMut(StreamKind, &Bytes),
    ) {
        if self.broken.is_some() {
            return;
        }
        if self.report.is_some() {
            return self.break_with("a frame after the report".to_owned());
        }
        match kind {
            frame::STDOUT => {
                emit(StreamKind::Stdout, &payload);
                self.stdout.push(&payload);
            }
            frame::STDERR => {
                emit(StreamKind::Stderr, &payload);
                self.stderr.push(&payload);
            }
            frame::REPORT => self.take_report(&payload),
            kind => self.break_with(format!("a frame of kind {kind}")),
        }
    }

    fn take_report(&mut self, json: &[u8]) {
        let report = serde_json::from_slice::<RunReport>(json)
            .map_err(|e| e.to_string())
            .and_then(|r| r.check().map(|()| r).map_err(str::to_owned));
        match report {
            Ok(r) => self.report = Some(r),
            Err(e) => self.break_with(format!("malformed report: {e}")),
        }
    }

    fn break_with(&mut self, why: String) {
        self.unframed.push(self.decoder.rest());
        self.broken = Some(why);
        self.report = None;
    }
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

    fn report(code: u8) -> Vec<u8> {
        let report = RunReport {
            status: Some(ExitStatus::Exited { code }),
            spawn_error: None,
            spawn_failure: None,
            kill: None,
            leaked_output: false,
            elapsed_ms: 5,
        };
        frame::encode(frame::REPORT, &serde_json::to_vec(&report).expect("json"))
    }

    fn read(stream: &[u8], cut: usize) -> (Frames, Vec<(StreamKind, Vec<u8>)>) {
        let mut frames = Frames::new(OutputCaps::default());
        let mut live = Vec::new();
        for part in [&stream[..cut], &stream[cut..]] {
            frames.push(part, |kind, bytes| live.push((kind, bytes.to_vec())));
        }
        (frames, live)
    }

    #[test]
    fn output_and_report_arrive_whatever_the_cuts() {
        let mut stream = frame::encode(frame::STDOUT, b"out\0put");
        stream.extend(frame::encode(frame::STDERR, b"err"));
        stream.extend(report(3));
        for cut in 0..stream.len() {
            let (frames, live) = read(&stream, cut);
            assert_eq!(frames.stdout.to_vec(), b"out\0put", "cut at {cut}");
            assert_eq!(frames.stderr.to_vec(), b"err");
            assert_eq!(
                frames.report.expect("report").status,
                Some(ExitStatus::Exited { code: 3 })
            );
            assert!(frames.broken.is_none());
            assert_eq!(live.len(), 2);
        }
    }

    #[test]
    fn a_forged_report_inside_output_is_output() {
        let forged = report(0);
        let mut stream = frame::encode(frame::STDERR, &forged);
        stream.extend(report(3));
        let (frames, _) = read(&stream, 7);
        assert_eq!(frames.stderr.to_vec(), forged);
        assert_eq!(
            frames.report.expect("the real one").status,
            Some(ExitStatus::Exited { code: 3 })
        );
    }

    #[test]
    fn what_is_not_a_frame_breaks_the_stream_and_is_kept_for_the_error() {
        let text = b"OCI runtime exec failed: resource temporarily unavailable";
        let (frames, _) = read(text, 10);
        assert!(frames.broken.is_some());
        assert!(frames.report.is_none());
        assert_eq!(frames.unframed.to_vec(), text);
        let mut stream = report(0);
        stream.extend(frame::encode(frame::STDOUT, b"late"));
        let (frames, _) = read(&stream, stream.len());
        assert!(frames.report.is_none(), "nothing may follow the report");
        let bad = frame::encode(frame::REPORT, br#"{"status":{"kind":"signaled","signal":2147483647},"leaked_output":false,"elapsed_ms":0}"#);
        let (frames, _) = read(&bad, 0);
        assert!(
            frames
                .broken
                .as_deref()
                .is_some_and(|b| b.starts_with("malformed report"))
        );
    }
}
