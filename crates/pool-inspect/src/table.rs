//! The one table printer, and how durations and sizes read to a person.

use std::io::{self, Write};
use std::time::{Duration, SystemTime};

/// Rows under a header, printed in left-aligned columns (the last column is not padded, so
/// long command lines do not push trailing spaces).
#[derive(Debug, Clone, Default)]
pub struct Table {
    header: Vec<String>,
    show_header: bool,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column titles.
    pub fn new<S: Into<String>>(header: impl IntoIterator<Item = S>) -> Self {
        Self {
            header: header.into_iter().map(Into::into).collect(),
            show_header: true,
            rows: Vec::new(),
        }
    }

    /// A table of `columns` columns printed without a header (key/value lists).
    pub fn headless(columns: usize) -> Self {
        Self {
            header: vec![String::new(); columns],
            show_header: false,
            rows: Vec::new(),
        }
    }

    /// Adds a row (missing cells print empty).
    pub fn row<S: Into<String>>(&mut self, cells: impl IntoIterator<Item = S>) {
        self.rows.push(cells.into_iter().map(Into::into).collect());
    }

    /// Whether no row was added.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Writes the table, each line prefixed by `indent`.
    pub fn write_to(&self, out: &mut impl Write, indent: &str) -> io::Result<()> {
        let columns = self.header.len();
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate().take(columns) {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let header = self.show_header.then_some(&self.header);
        for line in header.into_iter().chain(&self.rows) {
            let mut text = String::from(indent);
            for (i, width) in widths.iter().enumerate() {
                let cell = line.get(i).map(String::as_str).unwrap_or("");
                text.push_str(cell);
                if i + 1 < columns {
                    text.extend(std::iter::repeat_n(' ', width - cell.chars().count() + 2));
                }
            }
            writeln!(out, "{}", text.trim_end())?;
        }
        Ok(())
    }

    /// Prints the table on stdout.
    pub fn print(&self) -> io::Result<()> {
        self.write_to(&mut io::stdout().lock(), "")
    }
}

/// A duration as a person reads it, to two units: `45s`, `3m12s`, `2h05m`, `3d04h`.
pub fn human_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86400 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86400, s % 86400 / 3600),
    }
}

/// Time since `t`, or `-` when unknown (or in the future, as with clock skew).
pub fn since(t: Option<SystemTime>) -> Option<Duration> {
    t.and_then(|t| SystemTime::now().duration_since(t).ok())
}

/// [`human_duration`] of an optional duration; `-` when unknown.
pub fn human_opt_duration(d: Option<Duration>) -> String {
    d.map_or_else(|| "-".to_owned(), human_duration)
}

/// A size in binary units (`1.16 MiB`), or `-` when unknown.
pub fn human_bytes(bytes: Option<u64>) -> String {
    bytes.map_or_else(|| "-".to_owned(), |b| indicatif::HumanBytes(b).to_string())
}

/// Any value, or `-` when unknown.
pub fn or_dash<T: ToString>(value: Option<T>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

/// A container id shortened as `docker ps` does.
pub fn short_id(id: &str) -> &str {
    &id[..id.len().min(12)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_to_two_units() {
        assert_eq!(human_duration(Duration::from_secs(0)), "0s");
        assert_eq!(human_duration(Duration::from_secs(59)), "59s");
        assert_eq!(human_duration(Duration::from_secs(192)), "3m12s");
        assert_eq!(human_duration(Duration::from_secs(7500)), "2h05m");
        assert_eq!(
            human_duration(Duration::from_secs(3 * 86400 + 4 * 3600)),
            "3d04h"
        );
        assert_eq!(human_opt_duration(None), "-");
    }

    #[test]
    fn columns_line_up_and_lines_do_not_trail() {
        let mut t = Table::new(["USER", "STATE", "ARGS"]);
        t.row(["alice", "running", "sleep infinity"]);
        t.row(["b", "exited", ""]);
        let mut out = Vec::new();
        t.write_to(&mut out, "  ").expect("write");
        assert_eq!(
            String::from_utf8(out).expect("utf-8"),
            "  USER   STATE    ARGS\n  alice  running  sleep infinity\n  b      exited\n"
        );
        let mut kv = Table::headless(2);
        kv.row(["memory", "1 GiB"]);
        kv.row(["read-only rootfs", "yes"]);
        let mut out = Vec::new();
        kv.write_to(&mut out, "").expect("write");
        assert_eq!(
            String::from_utf8(out).expect("utf-8"),
            "memory            1 GiB\nread-only rootfs  yes\n"
        );
    }

    #[test]
    fn sizes_and_ids() {
        assert_eq!(human_bytes(Some(1024 * 1024)), "1.00 MiB");
        assert_eq!(human_bytes(None), "-");
        assert_eq!(short_id("0123456789abcdef"), "0123456789ab");
        assert_eq!(short_id("abc"), "abc");
    }
}
