//! The outputs: the markdown table on stdout, `summary.json` (a list of rows),
//! `machine.json` (where it ran) and `summary.md` (the table again) in the output folder.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use bollard::Docker;
use serde_json::{Value, json};

use crate::stats::Row;

/// Where and how the bench ran.
pub async fn machine(docker: &Docker, image: &str, quick: bool) -> Value {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let cpuinfo = read("/proc/cpuinfo");
    let cpu_model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned());
    let mem_total_kib: Option<u64> = read("/proc/meminfo")
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok());
    let version = docker.version().await.ok();
    let info = docker.info().await.ok();
    // The seed's numbers depend on the CLI's version, so it belongs with them.
    let cli = crate::seed::run_ok(crate::seed::client_version(), None)
        .await
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    json!({
        "mode": if quick { "quick" } else { "full" },
        "unix_time": std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        "cores": std::thread::available_parallelism().map(usize::from).unwrap_or(0),
        "cpu_model": cpu_model,
        "mem_total_mib": mem_total_kib.map(|k| k / 1024),
        "kernel": read("/proc/sys/kernel/osrelease").trim(),
        "load_average_at_start": read("/proc/loadavg").trim(),
        "docker_server": version.as_ref().and_then(|v| v.version.clone()),
        "docker_api": version.as_ref().and_then(|v| v.api_version.clone()),
        "docker_cli": cli,
        "storage_driver": info.as_ref().and_then(|i| i.driver.clone()),
        "cgroup_version": info.as_ref().and_then(|i| i.cgroup_version.as_ref().map(|c| c.to_string())),
        "image": image,
    })
}

fn num(x: f64) -> String {
    if x.is_nan() {
        "-".to_owned()
    } else if x >= 100.0 {
        format!("{x:.0}")
    } else if x >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

fn ratio(x: f64) -> String {
    if x.is_nan() {
        "-".to_owned()
    } else {
        format!("{x:.2}x")
    }
}

/// The results table, and the goals of issue #7 read against it.
pub fn markdown(rows: &[Row], machine: &Value, failures: &[(String, String)]) -> String {
    let mut s = String::new();
    let field = |k: &str| match machine.get(k) {
        Some(Value::String(v)) => v.clone(),
        Some(v) => v.to_string(),
        None => "?".to_owned(),
    };
    let _ = writeln!(
        s,
        "Mode {}, {} cores, kernel {}, Docker {} (API {}), CLI {}. Times in ms (median / p95 over the samples) unless the notes say otherwise.\n",
        field("mode"),
        field("cores"),
        field("kernel"),
        field("docker_server"),
        field("docker_api"),
        field("docker_cli"),
    );
    s.push_str("| workload | n | channel p50 | channel p95 | library p50 | library p95 | seed p50 | seed p95 | floor p50 | floor p95 | seed/channel | seed/library | library/floor | notes |\n");
    s.push_str("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for r in rows {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.workload,
            r.samples,
            num(r.channel_ms),
            num(r.channel_p95_ms),
            num(r.library_ms),
            num(r.library_p95_ms),
            num(r.seed_ms),
            num(r.seed_p95_ms),
            num(r.floor_ms),
            num(r.floor_p95_ms),
            ratio(r.channel_vs_seed),
            ratio(r.ratio_vs_seed),
            ratio(r.ratio_vs_floor),
            r.notes.replace('|', "\\|"),
        );
    }
    for (name, error) in failures {
        let _ = writeln!(
            s,
            "| {name} | 0 | - | - | - | - | - | - | - | - | - | - | - | FAILED: {} |",
            error.replace('|', "\\|").replace('\n', " ")
        );
    }
    s.push_str("\nGoals (issues #7 and #10):\n\n| goal | measured | met |\n|---|---|---|\n");
    for (goal, measured, met) in goals(rows) {
        let met = match met {
            Some(true) => "yes",
            Some(false) => "no",
            None => "-",
        };
        let _ = writeln!(s, "| {goal} | {measured} | {met} |");
    }
    s
}

fn goals(rows: &[Row]) -> Vec<(String, String, Option<bool>)> {
    let find = |w: &str| rows.iter().find(|r| r.workload == w);
    let mut out = Vec::new();
    let mut check = |goal: &str,
                     w: &str,
                     value: &dyn Fn(&Row) -> f64,
                     ok: &dyn Fn(f64) -> bool,
                     fmt: &dyn Fn(f64) -> String| {
        match find(w) {
            Some(r) => {
                let v = value(r);
                out.push((goal.to_owned(), fmt(v), (!v.is_nan()).then(|| ok(v))));
            }
            None => out.push((goal.to_owned(), "not run".to_owned(), None)),
        }
    };
    let x = |v: f64| format!("{v:.2}x");
    check(
        "warm_true: ≥ 1.3x faster than the seed's way",
        "warm_true",
        &|r| r.ratio_vs_seed,
        &|v| v >= 1.3,
        &x,
    );
    check(
        "warm_true: within 1.15x of the floor",
        "warm_true",
        &|r| r.ratio_vs_floor,
        &|v| v <= 1.15,
        &x,
    );
    check(
        "read_10k: ≥ 1.6x faster than the seed's way",
        "read_10k",
        &|r| r.ratio_vs_seed,
        &|v| v >= 1.6,
        &x,
    );
    check(
        "cold_ensure: within 1.1x of the floor",
        "cold_ensure",
        &|r| r.ratio_vs_floor,
        &|v| v <= 1.1,
        &x,
    );
    check(
        "output_200mb: ≥ 250 MB/s",
        "output_200mb",
        &|r| r.library_mb_s.unwrap_or(f64::NAN),
        &|v| v >= 250.0,
        &|v| format!("{v:.0} MB/s"),
    );
    check(
        "output_200mb: memory bounded by the caps (peak RSS growth during the call < 32 MiB; the output is 191 MiB, the caps keep 1 MiB)",
        "output_200mb",
        &|r| {
            r.details
                .get("library_rss_growth_mib")
                .and_then(Value::as_f64)
                .unwrap_or(f64::NAN)
        },
        &|v| v < 32.0,
        &|v| format!("{v:.1} MiB growth"),
    );
    check(
        "cancel: p50 ≤ 150 ms to nothing left",
        "cancel",
        &|r| r.library_ms,
        &|v| v <= 150.0,
        &|v| format!("{v:.0} ms"),
    );
    check(
        "cpu_per_call: ≤ 2 ms client CPU per call",
        "cpu_per_call",
        &|r| r.library_ms,
        &|v| v <= 2.0,
        &|v| format!("{v:.2} ms"),
    );
    // Issue #10's goals: the channel.
    check(
        "channel warm_true: ≥ 15x faster than the seed's way",
        "warm_true",
        &|r| r.channel_vs_seed,
        &|v| v >= 15.0,
        &x,
    );
    check(
        "channel read_10k: ≥ 30x faster than the seed's way",
        "read_10k",
        &|r| r.channel_vs_seed,
        &|v| v >= 30.0,
        &x,
    );
    check(
        "channel write_10k: ≥ 25x faster than the seed's way",
        "write_10k",
        &|r| r.channel_vs_seed,
        &|v| v >= 25.0,
        &x,
    );
    check(
        "channel first_byte: ≤ 5 ms",
        "first_byte",
        &|r| r.channel_ms,
        &|v| v <= 5.0,
        &|v| format!("{v:.1} ms"),
    );
    check(
        "channel cancel: p50 ≤ 10 ms to nothing left",
        "cancel",
        &|r| r.channel_ms,
        &|v| v <= 10.0,
        &|v| format!("{v:.1} ms"),
    );
    check(
        "channel concurrent_64 (over 8 users): ≥ 8x the seed's calls/s",
        "concurrent_64",
        &|r| match (r.channel_calls_s, r.seed_calls_s) {
            (Some(c), Some(s)) => c / s,
            _ => f64::NAN,
        },
        &|v| v >= 8.0,
        &x,
    );
    check(
        "channel cpu_per_call: ≤ 0.3 ms client CPU per call",
        "cpu_per_call",
        &|r| r.channel_ms,
        &|v| v <= 0.3,
        &|v| format!("{v:.2} ms"),
    );
    check(
        "channel idle_memory: ≤ 1.15x a bare container",
        "idle_memory",
        &|r| r.channel_ms / r.floor_ms,
        &|v| v <= 1.15,
        &x,
    );
    // Issue #4's goals, measured here too.
    check(
        "warm_ensure: p50 ≤ 0.1 ms (no daemon round trip)",
        "warm_ensure",
        &|r| r.library_ms,
        &|v| v <= 0.1,
        &|v| format!("{:.1} µs", v * 1000.0),
    );
    check(
        "idle_memory: ≤ 4.5 MiB of host memory per idle sandbox, bookkeeping included",
        "idle_memory",
        &|r| r.library_ms,
        &|v| v <= 4.5,
        &|v| format!("{v:.2} MiB"),
    );
    out
}

/// Writes `summary.json`, `machine.json` and `summary.md` into `dir`.
pub fn write(dir: &Path, rows: &[Row], machine: &Value, table: &str) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let put = |name: &str, text: String| {
        let path = dir.join(name);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
    };
    put("summary.json", serde_json::to_string_pretty(rows)? + "\n")?;
    put(
        "machine.json",
        serde_json::to_string_pretty(machine)? + "\n",
    )?;
    put("summary.md", table.to_owned())?;
    Ok(())
}
