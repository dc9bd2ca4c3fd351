//! Client CPU time: the bench's own process (the library and the floor run in it) and its
//! reaped children (the seed's CLI clients). No `unsafe`: the process CPU clock through rustix,
//! the children's times from `/proc/self/stat`.

use std::time::Duration;

use anyhow::{Context, Result};
use rustix::time::{ClockId, clock_gettime};

/// User + system CPU time of this process, all threads, with nanosecond resolution
/// (`CLOCK_PROCESS_CPUTIME_ID`, what `getrusage(RUSAGE_SELF)` sums).
pub fn own() -> Duration {
    let t = clock_gettime(ClockId::ProcessCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// User + system CPU time of this process's waited-for children (`cutime + cstime` of
/// `/proc/self/stat`, what `getrusage(RUSAGE_CHILDREN)` reports), in clock ticks' resolution.
pub fn children() -> Result<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").context("reading /proc/self/stat")?;
    children_from_stat(&stat, rustix::param::clock_ticks_per_second())
}

fn children_from_stat(stat: &str, ticks_per_second: u64) -> Result<Duration> {
    // The command name (field 2) is in parentheses and may hold spaces: count from after it.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .context("no ')' in /proc/self/stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state); cutime and cstime are fields 16 and 17.
    let field = |n: usize| -> Result<u64> {
        fields
            .get(n - 3)
            .context("/proc/self/stat too short")?
            .parse()
            .context("a non-numeric /proc/self/stat field")
    };
    let ticks = field(16)? + field(17)?;
    Ok(Duration::from_nanos(
        ticks * 1_000_000_000 / ticks_per_second.max(1),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn children_times_come_from_fields_16_and_17() {
        let stat = "42 (a b) S 1 42 42 0 -1 4194560 100 0 0 0 7 3 250 50 20 0 4 0 5 0";
        let d = children_from_stat(stat, 100).expect("parse");
        assert_eq!(d, Duration::from_millis(3000));
    }

    #[test]
    fn own_clock_moves() {
        let before = own();
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        assert!(x != 1);
        assert!(own() > before);
    }
}
