//! Samples of the four contenders, their medians and p95s, and one result row per workload.

use serde::Serialize;
use serde_json::{Map, Value};

/// One of the four ways of doing the same work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Who {
    /// This project's crates over the sandbox's channel (the default transport).
    Channel,
    /// This project's crates, one exec per call.
    Library,
    /// The seed's way: the `docker` CLI spawned per call.
    Seed,
    /// The raw Engine API through one bollard client: the floor of any exec-per-call design.
    Floor,
}

/// The contenders. Interleaving per sample spreads the machine's noise (other builds, other
/// tests) evenly over them instead of over one of them; [`order`] rotates them per round.
pub const ORDER: [Who; 4] = [Who::Channel, Who::Library, Who::Seed, Who::Floor];

/// The order of round `round`: rotated, so that no contender always runs right after the same
/// other one (the daemon is still cleaning up an exec when its client has its answer, and that
/// work lands on whoever comes next).
pub fn order(round: usize) -> [Who; 4] {
    let mut o = ORDER;
    o.rotate_left(round % ORDER.len());
    o
}

impl Who {
    /// Lower-case name, for progress and errors.
    pub fn name(self) -> &'static str {
        match self {
            Who::Channel => "channel",
            Who::Library => "library",
            Who::Seed => "seed",
            Who::Floor => "floor",
        }
    }
}

/// Recorded samples of one workload, one list per contender (milliseconds unless the row says
/// otherwise).
#[derive(Debug, Clone, Default)]
pub struct Series {
    pub channel: Vec<f64>,
    pub library: Vec<f64>,
    pub seed: Vec<f64>,
    pub floor: Vec<f64>,
}

impl Series {
    pub fn push(&mut self, who: Who, value: f64) {
        self.of_mut(who).push(value);
    }

    pub fn of(&self, who: Who) -> &[f64] {
        match who {
            Who::Channel => &self.channel,
            Who::Library => &self.library,
            Who::Seed => &self.seed,
            Who::Floor => &self.floor,
        }
    }

    fn of_mut(&mut self, who: Who) -> &mut Vec<f64> {
        match who {
            Who::Channel => &mut self.channel,
            Who::Library => &mut self.library,
            Who::Seed => &mut self.seed,
            Who::Floor => &mut self.floor,
        }
    }
}

fn sorted(values: &[f64]) -> Vec<f64> {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v
}

/// The median (mean of the middle two for an even count); NaN when empty.
pub fn median(values: &[f64]) -> f64 {
    let v = sorted(values);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// The 95th percentile by nearest rank (the maximum for fewer than 20 samples); NaN when empty.
pub fn p95(values: &[f64]) -> f64 {
    let v = sorted(values);
    if v.is_empty() {
        return f64::NAN;
    }
    let rank = (0.95 * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

/// Rounded to 3 decimals, for readable JSON.
pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// One workload's result: the `summary.json` object and a line of the markdown table.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub workload: String,
    /// What the `*_ms` numbers measure.
    pub unit: String,
    pub channel_ms: f64,
    pub library_ms: f64,
    pub seed_ms: f64,
    pub floor_ms: f64,
    pub channel_p95_ms: f64,
    pub library_p95_ms: f64,
    pub seed_p95_ms: f64,
    pub floor_p95_ms: f64,
    /// seed_ms / channel_ms: how many times faster than the seed's way over the channel.
    pub channel_vs_seed: f64,
    /// seed_ms / library_ms: how many times faster than the seed's way (higher is better).
    pub ratio_vs_seed: f64,
    /// library_ms / floor_ms: how far above the raw API (1.0 is the floor; lower is better).
    pub ratio_vs_floor: f64,
    /// Recorded samples per contender (warm-up rounds excluded).
    pub samples: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel_mb_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub library_mb_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed_mb_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub floor_mb_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub library_peak_rss_mib: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel_calls_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub library_calls_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed_calls_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub floor_calls_s: Option<f64>,
    /// Short text for the table's last column.
    pub notes: String,
    /// Workload-specific facts (checks, counts, what exactly each contender ran).
    #[serde(skip_serializing_if = "Map::is_empty")]
    pub details: Map<String, Value>,
}

impl Row {
    /// A row of `series` in milliseconds.
    pub fn new(workload: &str, series: &Series) -> Self {
        let m = |who| round3(median(series.of(who)));
        let p = |who| round3(p95(series.of(who)));
        let (chan, lib, seed, floor) = (
            median(&series.channel),
            median(&series.library),
            median(&series.seed),
            median(&series.floor),
        );
        Self {
            workload: workload.to_owned(),
            unit: "ms".to_owned(),
            channel_ms: m(Who::Channel),
            library_ms: m(Who::Library),
            seed_ms: m(Who::Seed),
            floor_ms: m(Who::Floor),
            channel_p95_ms: p(Who::Channel),
            library_p95_ms: p(Who::Library),
            seed_p95_ms: p(Who::Seed),
            floor_p95_ms: p(Who::Floor),
            channel_vs_seed: round3(seed / chan),
            ratio_vs_seed: round3(seed / lib),
            ratio_vs_floor: round3(lib / floor),
            samples: series
                .library
                .len()
                .min(series.channel.len())
                .min(series.seed.len())
                .min(series.floor.len()),
            channel_mb_s: None,
            library_mb_s: None,
            seed_mb_s: None,
            floor_mb_s: None,
            library_peak_rss_mib: None,
            channel_calls_s: None,
            library_calls_s: None,
            seed_calls_s: None,
            floor_calls_s: None,
            notes: String::new(),
            details: Map::new(),
        }
    }

    pub fn unit(mut self, unit: &str) -> Self {
        self.unit = unit.to_owned();
        self
    }

    pub fn note(mut self, note: impl AsRef<str>) -> Self {
        if !self.notes.is_empty() {
            self.notes.push_str("; ");
        }
        self.notes.push_str(note.as_ref());
        self
    }

    /// Notes (and records) how many of `samples` lost the seed's output: its `setsid` forks,
    /// and the exec can end before the child has written.
    pub fn seed_lost(self, lost: usize, samples: usize) -> Self {
        let row = if lost > 0 {
            self.note(format!(
                "seed lost its output in {lost}/{samples} samples (setsid)"
            ))
        } else {
            self
        };
        row.detail("seed_lost_output", lost)
    }

    pub fn detail(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.details.insert(key.to_owned(), value.into());
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_p95() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(p95(&v), 95.0);
        assert_eq!(p95(&[1.0, 9.0, 5.0]), 9.0);
        assert_eq!(p95(&[7.0]), 7.0);
    }

    #[test]
    fn every_contender_follows_every_other_in_turn() {
        assert_eq!(order(0), ORDER);
        assert_eq!(
            order(1),
            [Who::Library, Who::Seed, Who::Floor, Who::Channel]
        );
        assert_eq!(order(4), ORDER);
    }

    #[test]
    fn ratios_read_as_the_issue_defines_them() {
        let s = Series {
            channel: vec![4.0, 4.0],
            library: vec![50.0, 50.0],
            seed: vec![80.0, 80.0],
            floor: vec![40.0, 40.0],
        };
        let row = Row::new("w", &s);
        assert_eq!(row.ratio_vs_seed, 1.6);
        assert_eq!(row.ratio_vs_floor, 1.25);
        assert_eq!(row.channel_vs_seed, 20.0);
        assert_eq!(row.samples, 2);
    }
}
