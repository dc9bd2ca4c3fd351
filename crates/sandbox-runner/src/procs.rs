//! Reading the container's process table from `/proc`.

use std::fs;

use sandbox_protocol::{MAX_ARGS_SHOWN, ProcessEntry, ProcessList, frame};

/// One process, as `/proc/<pid>/stat` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Proc {
    /// Process id (in the container's pid namespace).
    pub pid: i32,
    /// Parent process id.
    pub ppid: i32,
    /// Process group id.
    pub pgrp: i32,
    /// State letter (`R`, `S`, `Z`, ...).
    pub state: u8,
    /// When it started, in clock ticks after boot.
    pub start_ticks: u64,
}

impl Proc {
    /// A zombie or dead entry is gone for every purpose of a kill: it runs no code and holds no
    /// resources beyond its table slot, which its parent (the supervisor or the init) reaps.
    pub fn is_alive(&self) -> bool {
        !matches!(self.state, b'Z' | b'X' | b'x')
    }
}

/// Parses the contents of `/proc/<pid>/stat`. The command name sits in parentheses and may
/// itself contain spaces and parentheses, so fields are counted after the last `)`.
pub fn parse_stat(text: &str) -> Option<Proc> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let pid = text[..open].trim().parse().ok()?;
    let mut rest = text.get(close + 1..)?.split_ascii_whitespace();
    let state = *rest.next()?.as_bytes().first()?;
    let ppid = rest.next()?.parse().ok()?;
    let pgrp = rest.next()?.parse().ok()?;
    // Field 22 of the whole line, the 17th after the group.
    let start_ticks = rest.nth(16).and_then(|t| t.parse().ok()).unwrap_or(0);
    Some(Proc {
        pid,
        ppid,
        pgrp,
        state,
        start_ticks,
    })
}

/// The process table for `sandbox-runner ps`: every process but `me`, as many as fit in one
/// report frame.
pub fn table(me: i32) -> ProcessList {
    let ticks = rustix::param::clock_ticks_per_second().max(1);
    let uptime = fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|t| t.split_ascii_whitespace().next()?.parse::<f64>().ok())
        .unwrap_or(0.0);
    let mut rows: Vec<Proc> = list().into_iter().filter(|p| p.pid != me).collect();
    rows.sort_by_key(|p| p.pid);
    let mut out = ProcessList::default();
    // JSON escapes may grow a command line up to six times; stay well inside the frame.
    let mut room = frame::MAX_MESSAGE - 1024;
    for p in rows {
        let entry = ProcessEntry {
            pid: u32::try_from(p.pid).unwrap_or(0),
            ppid: u32::try_from(p.ppid).unwrap_or(0),
            uid: uid(p.pid).unwrap_or(u32::MAX),
            state: char::from(p.state),
            elapsed_secs: (uptime - p.start_ticks as f64 / ticks as f64).max(0.0) as u64,
            name: comm(p.pid),
            args: shown_args(&cmdline(p.pid)),
        };
        let size = serde_json::to_vec(&entry).map_or(usize::MAX, |j| j.len() + 1);
        if entry.pid == 0 || size > room {
            out.truncated = true;
            break;
        }
        room -= size;
        out.processes.push(entry);
    }
    out
}

/// The real uid from `/proc/<pid>/status`.
fn uid(pid: i32) -> Option<u32> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix("Uid:"))?;
    line.split_ascii_whitespace().next()?.parse().ok()
}

/// The name from `/proc/<pid>/comm` (the kernel keeps it under 16 bytes).
fn comm(pid: i32) -> String {
    let raw = fs::read(format!("/proc/{pid}/comm")).unwrap_or_default();
    let name = String::from_utf8_lossy(&raw);
    let name = name.trim_end_matches('\n');
    name.char_indices()
        .take_while(|(i, c)| i + c.len_utf8() <= 64)
        .map(|(_, c)| c)
        .collect()
}

/// An argv as `ps` shows it: arguments joined by spaces, cut to [`MAX_ARGS_SHOWN`] bytes.
fn shown_args(argv: &[Vec<u8>]) -> String {
    let joined = String::from_utf8_lossy(&argv.join(&b' ')).into_owned();
    if joined.len() <= MAX_ARGS_SHOWN {
        return joined;
    }
    let mut end = MAX_ARGS_SHOWN;
    while !joined.is_char_boundary(end) {
        end -= 1;
    }
    joined[..end].to_owned()
}

/// Every process visible in `/proc`. Processes that vanish while we read are skipped.
pub fn list() -> Vec<Proc> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|entry| {
        let name = entry.ok()?.file_name();
        let pid: i32 = name.to_str()?.parse().ok()?;
        let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        parse_stat(&text)
    })
    .collect()
}

/// Whether the process's environment holds exactly `entry` (`KEY=value`). Unreadable
/// environments (another user's process, or a vanished one) count as no.
pub fn environ_has(pid: i32, entry: &[u8]) -> bool {
    fs::read(format!("/proc/{pid}/environ"))
        .map(|env| env.split(|b| *b == 0).any(|e| e == entry))
        .unwrap_or(false)
}

/// The process's argv, or empty when unreadable.
pub fn cmdline(pid: i32) -> Vec<Vec<u8>> {
    fs::read(format!("/proc/{pid}/cmdline"))
        .map(|raw| {
            raw.split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .map(<[u8]>::to_vec)
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_spaces_and_parens_in_comm() {
        let p = parse_stat("42 (we ird) (x)) S 7 42 42 0 -1 4194560").expect("parse");
        assert_eq!(
            p,
            Proc {
                pid: 42,
                ppid: 7,
                pgrp: 42,
                state: b'S',
                start_ticks: 0,
            }
        );
        assert!(p.is_alive());
        assert!(!parse_stat("9 (z) Z 1 9 9").expect("parse").is_alive());
    }

    #[test]
    fn start_time_is_field_twenty_two() {
        let line = "5 (sh) S 1 5 5 0 -1 4194560 10 0 0 0 1 2 0 0 20 0 1 0 123456 8192 100";
        assert_eq!(parse_stat(line).expect("parse").start_ticks, 123456);
    }

    #[test]
    fn the_table_lists_this_process_but_not_the_one_asking() {
        let me = std::process::id();
        let table = table(-1);
        let mine = table
            .processes
            .iter()
            .find(|p| p.pid == me)
            .expect("listed");
        assert_eq!(mine.uid, rustix::process::getuid().as_raw());
        assert!(!mine.args.is_empty() && !mine.name.is_empty());
        assert!(table.check().is_ok());
        let without = super::table(me as i32);
        assert!(without.processes.iter().all(|p| p.pid != me));
    }

    #[test]
    fn long_command_lines_are_cut_at_a_character() {
        let argv = vec![b"x".to_vec(), "é".repeat(MAX_ARGS_SHOWN).into_bytes()];
        let shown = shown_args(&argv);
        assert!(shown.len() <= MAX_ARGS_SHOWN && shown.starts_with("x é"));
    }

    #[test]
    fn own_process_is_listed_with_its_environment() {
        let me = std::process::id() as i32;
        assert!(list().iter().any(|p| p.pid == me && p.is_alive()));
        let path = std::env::var("PATH").expect("PATH is set in tests");
        assert!(environ_has(me, format!("PATH={path}").as_bytes()));
        assert!(!environ_has(me, b"PATH=/definitely/not"));
    }
}
