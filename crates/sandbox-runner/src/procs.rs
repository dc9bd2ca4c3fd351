//! Reading the container's process table from `/proc`.

use std::fs;

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
    Some(Proc {
        pid,
        ppid,
        pgrp,
        state,
    })
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
                state: b'S'
            }
        );
        assert!(p.is_alive());
        assert!(!parse_stat("9 (z) Z 1 9 9").expect("parse").is_alive());
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
