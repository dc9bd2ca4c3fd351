//! Output on its way to the caller: the time to the first byte, and 200 MB of it (throughput,
//! and the library's peak memory in a fresh process).

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use anyhow::{Context, Result, ensure};
use sandbox_exec::{ExecRequest, OutputChunk, StreamKind};

use crate::bench::{Bench, interleave, ms_since};
use crate::stats::{Row, Series, Who, median, round3};
use crate::{floor, rss, seed};

const FIRST_BYTE_CMD: &str = "echo first; sleep 1; echo second";

/// Time until the first output byte reaches the caller.
pub(super) async fn first_byte(b: &Bench) -> Result<Row> {
    let w = b.main();
    let mut library_total = Vec::new();
    let mut seed_lost = 0;
    let series = interleave("first_byte", b.rounds(1, 20, 4), async |who, recorded| {
        let t = Instant::now();
        match who {
            Who::Library | Who::Channel => {
                let first = Arc::new(OnceLock::new());
                let seen = Arc::clone(&first);
                let sink = move |chunk: OutputChunk| {
                    if chunk.stream == StreamKind::Stdout {
                        let _ = seen.set(Instant::now());
                    }
                };
                let req =
                    ExecRequest::new(["bash", "-c", FIRST_BYTE_CMD]).with_sink(Arc::new(sink));
                let out = b.library_run(who, &w.user, req).await?;
                if recorded && who == Who::Channel {
                    library_total.push(ms_since(t));
                }
                ensure!(
                    out.stdout.to_vec() == b"first\nsecond\n",
                    "library printed {:?}",
                    out.stdout.to_string_lossy()
                );
                let first = first.get().context("the sink saw no stdout")?;
                Ok(first.duration_since(t).as_secs_f64() * 1000.0)
            }
            Who::Seed => {
                // Popen + communicate: the seed saw output only when the CLI exited.
                let out = seed::run_ok(seed::shell(&w.name, &[], FIRST_BYTE_CMD), None).await?;
                let ms = ms_since(t);
                if recorded && out.stdout != b"first\nsecond\n" {
                    seed_lost += 1;
                }
                Ok(ms)
            }
            Who::Floor => {
                let mut started =
                    floor::start(&b.docker, &w.id, &["bash", "-c", FIRST_BYTE_CMD], &[], None)
                        .await?;
                let first = started.next_stdout().await?.context("no stdout frame")?;
                let ms = ms_since(t);
                ensure!(first.starts_with(b"first"), "floor's first frame {first:?}");
                started.finish(&b.docker, false).await?;
                Ok(ms)
            }
        }
    })
    .await?;
    Ok(Row::new("first_byte", &series)
        .note(format!(
            "`{FIRST_BYTE_CMD}`; library call ends after {:.0} ms",
            median(&library_total)
        ))
        .seed_lost(seed_lost, series.seed.len())
        .detail(
            "library",
            "ExecClient::run with ExecRequest::with_sink: first stdout chunk",
        )
        .detail(
            "seed",
            "docker exec ... setsid bash -c CMD collected at exit (Popen + communicate)",
        )
        .detail("floor", "raw attached stream: first stdout frame")
        .detail("library_call_ms", round3(median(&library_total))))
}

const OUTPUT_BYTES: u64 = 200_000_000;

/// 200 MB of stdout: throughput, and the library's memory in a fresh process.
pub(super) async fn output_200mb(b: &Bench) -> Result<Row> {
    let w = b.main();
    let count = OUTPUT_BYTES.to_string();
    let argv = ["head", "-c", count.as_str(), "/dev/zero"];
    let shell_cmd = argv.join(" ");
    // MB/s per sample: the seed's way may deliver fewer bytes than were written.
    let mut rate = Series::default();
    let mut seed_short = Vec::new();
    let mb_s = |bytes: u64, ms: f64| bytes as f64 / 1e6 / (ms / 1000.0);
    let series = interleave("output_200mb", b.rounds(1, 10, 3), async |who, recorded| {
        let t = Instant::now();
        match who {
            Who::Library | Who::Channel => {
                // Default caps: the outcome keeps 512 KiB of head and 512 KiB of tail.
                let out = b.library_run(who, &w.user, ExecRequest::new(argv)).await?;
                let ms = ms_since(t);
                ensure!(
                    out.exit_code() == 0 && out.stdout.total() == OUTPUT_BYTES,
                    "library: {:?} after {} bytes",
                    out.termination,
                    out.stdout.total()
                );
                if recorded {
                    rate.push(who, mb_s(OUTPUT_BYTES, ms));
                }
                Ok(ms)
            }
            Who::Seed => {
                let out = seed::run_ok(seed::shell(&w.name, &[], &shell_cmd), None).await?;
                let ms = ms_since(t);
                let got = out.stdout.len() as u64;
                // `setsid` forks and the exec ends when its parent exits: the stream can be
                // cut before all output is through. The seed's flaw; counted, not fatal.
                if recorded {
                    if got != OUTPUT_BYTES {
                        seed_short.push(got);
                    }
                    rate.push(who, mb_s(got, ms));
                }
                Ok(ms)
            }
            Who::Floor => {
                let raw = floor::exec_ok(&b.docker, &w.id, &argv, &[], None, false).await?;
                let ms = ms_since(t);
                ensure!(
                    raw.stdout_bytes == OUTPUT_BYTES,
                    "floor got {} bytes",
                    raw.stdout_bytes
                );
                if recorded {
                    rate.push(who, mb_s(OUTPUT_BYTES, ms));
                }
                Ok(ms)
            }
        }
    })
    .await?;

    let runs = if b.quick { 1 } else { 3 };
    let mut probes = Vec::new();
    for i in 0..runs {
        eprintln!("  output_200mb: RSS probe {}/{runs}", i + 1);
        probes.push(rss::measure(&w.id, OUTPUT_BYTES).await?);
    }
    let peak = probes.iter().map(|p| p.peak_kib).max().unwrap_or(0);
    let before = probes.iter().map(|p| p.before_kib).max().unwrap_or(0);
    let growth = probes
        .iter()
        .map(|p| p.peak_kib.saturating_sub(p.before_kib))
        .max()
        .unwrap_or(0);
    let mib = |kib: u64| round3(kib as f64 / 1024.0);
    let mb_s = |who| round3(median(rate.of(who)));
    let seed_buffer_mib = round3(OUTPUT_BYTES as f64 / 1024.0 / 1024.0);
    let mut row = Row::new("output_200mb", &series).note(format!(
            "MB/s channel {:.0} / library {:.0} / seed {:.0} / floor {:.0}; library peak RSS {:.1} MiB ({:.1} before the call); the seed's way buffers all {seed_buffer_mib:.0} MiB",
            mb_s(Who::Channel),
            mb_s(Who::Library),
            mb_s(Who::Seed),
            mb_s(Who::Floor),
            mib(peak),
            mib(before),
        ));
    if !seed_short.is_empty() {
        row = row.note(format!(
            "seed's output cut short in {}/{} samples (as little as {:.0} MB, setsid; its MB/s counts what arrived)",
            seed_short.len(),
            series.seed.len(),
            seed_short.iter().min().copied().unwrap_or(0) as f64 / 1e6
        ));
    }
    let mut row = row
        .detail("bytes", OUTPUT_BYTES)
        .detail("seed_short_samples", seed_short.len())
        .detail("seed_short_bytes", seed_short.clone())
        .detail("library_rss_before_call_mib", mib(before))
        .detail("library_rss_growth_mib", mib(growth))
        .detail("library_kept_bytes", probes.first().map_or(0, |p| p.kept_bytes))
        .detail("rss_probe_runs", runs)
        .detail("seed_buffer_mib", seed_buffer_mib)
        .detail("library", "ExecClient::run(head -c 200000000 /dev/zero), default caps; RSS = VmHWM of a fresh process making only this call")
        .detail("seed", "docker exec ... setsid bash -c 'head -c ...' with all output read into memory (communicate)")
        .detail("floor", "raw attached stream drained without keeping bytes");
    row.channel_mb_s = Some(mb_s(Who::Channel));
    row.library_mb_s = Some(mb_s(Who::Library));
    row.seed_mb_s = Some(mb_s(Who::Seed));
    row.floor_mb_s = Some(mb_s(Who::Floor));
    row.library_peak_rss_mib = Some(mib(peak));
    Ok(row)
}
