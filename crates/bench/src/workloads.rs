//! The workloads of issues #7 and #10, one function each. Every one runs its four contenders
//! interleaved on the same warm sandbox(es) and returns one [`Row`].

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use bollard::models::{ContainerCreateBody, ContainerInspectResponse};
use bollard::query_parameters::CreateContainerOptionsBuilder;
use sandbox_exec::{ExecClient, ExecRequest, OutputChunk, StreamKind, Termination};
use sandbox_pool::SandboxPool;
use serde_json::json;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::bench::{Bench, WARM_USERS, WORKSPACE, interleave, labels, ms_since, progress, run_on};
use crate::stats::{ORDER, Row, Series, Who, median, order, round3};
use crate::{cpu, floor, rss, seed};

/// Every workload, in the order they run. `cancel` goes last: if it fails half-way it may
/// leave sleeping processes behind, and nothing should run after that in the same sandbox.
pub const ALL: &[&str] = &[
    "warm_true",
    "shell_echo_env",
    "read_10k",
    "write_10k",
    "cpu_per_call",
    "first_byte",
    "output_200mb",
    "concurrent_16",
    "concurrent_64",
    "warm_ensure",
    "idle_memory",
    "cold_ensure",
    "cancel",
];

/// Runs workload `name`.
pub async fn run(b: &Bench, name: &str) -> Result<Row> {
    match name {
        "warm_true" => warm_true(b).await,
        "shell_echo_env" => shell_echo_env(b).await,
        "read_10k" => read_10k(b).await,
        "write_10k" => write_10k(b).await,
        "cpu_per_call" => cpu_per_call(b).await,
        "first_byte" => first_byte(b).await,
        "output_200mb" => output_200mb(b).await,
        "concurrent_16" => concurrent(b, 16).await,
        "concurrent_64" => concurrent(b, 64).await,
        "warm_ensure" => crate::memory::warm_ensure(b).await,
        "idle_memory" => crate::memory::idle_memory(b).await,
        "cold_ensure" => cold_ensure(b).await,
        "cancel" => cancel(b).await,
        other => bail!("no workload named {other}; known: {}", ALL.join(", ")),
    }
}

/// `true` through the library below the tool layer (over `who`'s transport), ending with exit
/// 0.
async fn library_true(pool: &SandboxPool, exec: &ExecClient, who: Who, user: &str) -> Result<()> {
    let out = run_on(pool, exec, who, user, ExecRequest::new(["true"])).await?;
    ensure!(
        out.exit_code() == 0,
        "library `true` ended {:?}",
        out.termination
    );
    Ok(())
}

/// A warm call that does nothing: the fixed cost of one call.
async fn warm_true(b: &Bench) -> Result<Row> {
    let w = b.main();
    let series = interleave("warm_true", b.rounds(2, 40, 8), async |who, _| {
        let t = Instant::now();
        match who {
            Who::Library | Who::Channel => library_true(&b.pool, &b.exec, who, &w.user).await?,
            Who::Seed => {
                seed::run_ok(seed::shell(&w.name, &[], "true"), None).await?;
            }
            Who::Floor => {
                floor::exec_ok(&b.docker, &w.id, &["true"], &[], None, false).await?;
            }
        }
        Ok(ms_since(t))
    })
    .await?;
    Ok(Row::new("warm_true", &series)
        .detail(
            "library",
            "SandboxPool::acquire + ExecClient::run([\"true\"])",
        )
        .detail(
            "channel",
            "SandboxPool::acquire + Lease::channel + Channel::run([\"true\"])",
        )
        .detail(
            "seed",
            "docker exec --user zcbot --workdir /workspace C setsid bash -c true",
        )
        .detail(
            "floor",
            "create_exec([\"true\"]) + start_exec attached + drain + inspect_exec",
        ))
}

/// `shell` with `echo hi`. The seed and the floor pass an environment variable as the seed's
/// `-e K=V`; the library's `shell` takes none from the model, but its exec carries its own
/// (`SBX_EXEC_ID`).
async fn shell_echo_env(b: &Bench) -> Result<Row> {
    let w = b.main();
    let mut seed_lost = 0;
    let series = interleave(
        "shell_echo_env",
        b.rounds(2, 40, 8),
        async |who, recorded| {
            let t = Instant::now();
            match who {
                Who::Library | Who::Channel => {
                    let r = b
                        .call_tool(who, "shell", json!({"command": "echo hi"}))
                        .await;
                    let ms = ms_since(t);
                    ensure!(
                        r.exit_code == 0 && r.content.contains("hi"),
                        "library shell: {r:?}"
                    );
                    Ok(ms)
                }
                Who::Seed => {
                    let out = seed::run_ok(
                        seed::shell(&w.name, &[("ZCBOT_BENCH", "1")], "echo hi"),
                        None,
                    )
                    .await?;
                    let ms = ms_since(t);
                    // The seed's flaw, counted rather than fatal: `setsid` forks and the exec
                    // ends with its parent, so output can be cut off.
                    if recorded && out.stdout != b"hi\n" {
                        seed_lost += 1;
                    }
                    Ok(ms)
                }
                Who::Floor => {
                    let raw = floor::exec_ok(
                        &b.docker,
                        &w.id,
                        &["bash", "-c", "echo hi"],
                        &["ZCBOT_BENCH=1"],
                        None,
                        true,
                    )
                    .await?;
                    let ms = ms_since(t);
                    ensure!(raw.stdout == b"hi\n", "floor printed {:?}", raw.stdout);
                    Ok(ms)
                }
            }
        },
    )
    .await?;
    Ok(Row::new("shell_echo_env", &series)
        .seed_lost(seed_lost, series.seed.len())
        .detail("library", "DockerExecutor::call_tool(\"shell\", {command: \"echo hi\"})")
        .detail(
            "seed",
            "docker exec --user zcbot --workdir /workspace -e ZCBOT_BENCH=1 C setsid bash -c 'echo hi'",
        )
        .detail("floor", "raw exec bash -c 'echo hi' with Env [ZCBOT_BENCH=1]"))
}

/// Bytes of the file tools' payload.
const FILE_BYTES: usize = 10 * 1024;
const READ_FILE: &str = "bench-10k.txt";

/// 10 KiB of text in 80-byte lines.
fn text_10k() -> String {
    let mut text = String::with_capacity(FILE_BYTES + 100);
    let mut i = 0;
    while text.len() < FILE_BYTES {
        text.push_str(&format!(
            "{i:05} the quick brown fox jumps over the lazy dog; a line of the bench's file.\n"
        ));
        i += 1;
    }
    text.truncate(FILE_BYTES - 1);
    text.push('\n');
    text
}

/// Writes `text` into the user root on the host, owned by the sandbox uid (set-up, not timed).
fn put_file(b: &Bench, name: &str, text: &str) -> Result<()> {
    let path = b.main().root.join(name);
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    let id = rustix::process::Uid::from_raw(b.pool.sandbox_uid());
    let gid = rustix::process::Gid::from_raw(b.pool.sandbox_uid());
    rustix::fs::chown(&path, Some(id), Some(gid)).context("chown the bench file")?;
    Ok(())
}

/// `read` of a 10 KiB file: the library's runner against the seed's Python runner, and a raw
/// `cat` as the floor.
async fn read_10k(b: &Bench) -> Result<Row> {
    let w = b.main();
    let text = text_10k();
    put_file(b, READ_FILE, &text)?;
    let args = json!({"path": READ_FILE});
    let stdin = serde_json::to_vec(&args)?;
    let mut library_text = None;
    let mut same_text = None;
    let series = interleave("read_10k", b.rounds(2, 40, 8), async |who, _| {
        let t = Instant::now();
        match who {
            Who::Library | Who::Channel => {
                let r = b.call_tool(who, "read", args.clone()).await;
                let ms = ms_since(t);
                ensure!(r.exit_code == 0, "library read: {r:?}");
                library_text.get_or_insert(r.content);
                Ok(ms)
            }
            Who::Seed => {
                let out = seed::run_ok(seed::file_tool(&w.name, "read"), Some(&stdin)).await?;
                let ms = ms_since(t);
                // The stand-in must do the same work: same text as the library's runner.
                if let Some(lib) = &library_text {
                    let seed_text = String::from_utf8_lossy(&out.stdout);
                    same_text.get_or_insert(seed_text.trim_end() == lib.trim_end());
                }
                Ok(ms)
            }
            Who::Floor => {
                let raw =
                    floor::exec_ok(&b.docker, &w.id, &["cat", READ_FILE], &[], None, true).await?;
                let ms = ms_since(t);
                ensure!(raw.stdout == text.as_bytes(), "floor cat read other bytes");
                Ok(ms)
            }
        }
    })
    .await?;
    let same = same_text.unwrap_or(false);
    let mut row = Row::new("read_10k", &series)
        .detail("library", "DockerExecutor::call_tool(\"read\", {path})")
        .detail(
            "seed",
            "docker exec -i --user zcbot --workdir /workspace -e PYTHONIOENCODING=utf-8 C python3 /sandbox/bench/tool_runner.py read <json",
        )
        .detail("floor", "raw exec cat FILE")
        .detail("seed_output_matches_library", same);
    if !same {
        row = row.note("seed runner's text differs from the library's");
    }
    Ok(row)
}

/// `write` of 10 KiB: each contender writes its own file, then the files are checked.
async fn write_10k(b: &Bench) -> Result<Row> {
    let w = b.main();
    let text = text_10k();
    let file = |who: Who| format!("bench-w-{}.txt", who.name());
    let seed_stdin = serde_json::to_vec(&json!({"path": file(Who::Seed), "content": text}))?;
    let floor_cmd = format!("cat > {}", file(Who::Floor));
    let series = interleave("write_10k", b.rounds(2, 40, 8), async |who, _| {
        let t = Instant::now();
        match who {
            Who::Library | Who::Channel => {
                let args = json!({"path": file(who), "content": text});
                let r = b.call_tool(who, "write", args).await;
                let ms = ms_since(t);
                ensure!(r.exit_code == 0, "library write: {r:?}");
                Ok(ms)
            }
            Who::Seed => {
                seed::run_ok(seed::file_tool(&w.name, "write"), Some(&seed_stdin)).await?;
                Ok(ms_since(t))
            }
            Who::Floor => {
                floor::exec_ok(
                    &b.docker,
                    &w.id,
                    &["sh", "-c", &floor_cmd],
                    &[],
                    Some(text.as_bytes()),
                    false,
                )
                .await?;
                Ok(ms_since(t))
            }
        }
    })
    .await?;
    for who in ORDER {
        let path = w.root.join(file(who));
        let written = std::fs::read(&path).with_context(|| format!("{}", path.display()))?;
        ensure!(
            written == text.as_bytes(),
            "{} wrote other bytes",
            who.name()
        );
    }
    Ok(Row::new("write_10k", &series)
        .detail(
            "library",
            "DockerExecutor::call_tool(\"write\", {path, content})",
        )
        .detail(
            "seed",
            "docker exec -i ... python3 /sandbox/bench/tool_runner.py write <json (temp + rename)",
        )
        .detail("floor", "raw exec sh -c 'cat > FILE', stdin + half-close"))
}

/// Client CPU (user + system) per warm `true`, over batches of calls.
async fn cpu_per_call(b: &Bench) -> Result<Row> {
    let w = b.main();
    let calls = if b.quick { 5 } else { 10 };
    let mut seed_own = Vec::new();
    let per_call = |d: Duration| d.as_secs_f64() * 1000.0 / calls as f64;
    let series = interleave(
        "cpu_per_call",
        b.rounds(1, 10, 4),
        async |who, recorded| match who {
            Who::Library | Who::Channel => {
                let c0 = cpu::own();
                for _ in 0..calls {
                    library_true(&b.pool, &b.exec, who, &w.user).await?;
                }
                Ok(per_call(cpu::own() - c0))
            }
            Who::Seed => {
                let (c0, o0) = (cpu::children()?, cpu::own());
                for _ in 0..calls {
                    seed::run_ok(seed::shell(&w.name, &[], "true"), None).await?;
                }
                if recorded {
                    seed_own.push(per_call(cpu::own() - o0));
                }
                Ok(per_call(cpu::children()? - c0))
            }
            Who::Floor => {
                let c0 = cpu::own();
                for _ in 0..calls {
                    floor::exec_ok(&b.docker, &w.id, &["true"], &[], None, false).await?;
                }
                Ok(per_call(cpu::own() - c0))
            }
        },
    )
    .await?;
    let spawn = round3(median(&seed_own));
    Ok(Row::new("cpu_per_call", &series)
        .unit("client CPU ms per call (user+sys)")
        .note(format!(
            "CPU ms per call, {calls} calls per sample; seed = its CLI children, plus {spawn:.2} ms in the caller to spawn and wait"
        ))
        .detail("calls_per_sample", calls)
        .detail("seed_caller_cpu_ms_per_call", spawn)
        .detail(
            "library",
            "CLOCK_PROCESS_CPUTIME_ID of the bench process over acquire + ExecClient::run([true])",
        )
        .detail(
            "seed",
            "cutime+cstime (RUSAGE_CHILDREN) of the docker CLI children, clock-tick resolution",
        )
        .detail("floor", "CLOCK_PROCESS_CPUTIME_ID over the raw API loop"))
}

const FIRST_BYTE_CMD: &str = "echo first; sleep 1; echo second";

/// Time until the first output byte reaches the caller.
async fn first_byte(b: &Bench) -> Result<Row> {
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
async fn output_200mb(b: &Bench) -> Result<Row> {
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

/// One batch of `n` concurrent warm `true` calls spread over the warm users: the wall time
/// (s) and each call's latency (ms).
async fn batch(b: &Bench, who: Who, n: usize) -> Result<(f64, Vec<f64>)> {
    let mut set: JoinSet<Result<f64>> = JoinSet::new();
    let started = Instant::now();
    for i in 0..n {
        let w = b.warm[i % WARM_USERS].clone();
        match who {
            Who::Library | Who::Channel => {
                let (pool, exec) = (b.pool.clone(), b.exec.clone());
                set.spawn(async move {
                    let t = Instant::now();
                    library_true(&pool, &exec, who, &w.user).await?;
                    Ok(ms_since(t))
                });
            }
            Who::Seed => {
                set.spawn(async move {
                    let t = Instant::now();
                    seed::run_ok(seed::shell(&w.name, &[], "true"), None).await?;
                    Ok(ms_since(t))
                });
            }
            Who::Floor => {
                let docker = b.docker.clone();
                set.spawn(async move {
                    let t = Instant::now();
                    floor::exec_ok(&docker, &w.id, &["true"], &[], None, false).await?;
                    Ok(ms_since(t))
                });
            }
        }
    }
    let mut latencies = Vec::with_capacity(n);
    while let Some(joined) = set.join_next().await {
        latencies.push(joined.map_err(|e| anyhow!("a call task failed: {e}"))??);
    }
    Ok((started.elapsed().as_secs_f64(), latencies))
}

/// `n` calls at once over 8 users: per-call latency and calls per second.
async fn concurrent(b: &Bench, n: usize) -> Result<Row> {
    let name = format!("concurrent_{n}");
    let rounds = b.rounds(1, if n <= 16 { 10 } else { 6 }, 2);
    let (mut latency, mut rate) = (Series::default(), Series::default());
    let total = rounds.warmup + rounds.samples;
    let started = Instant::now();
    for round in 0..total {
        for who in order(round) {
            let (wall, calls) = batch(b, who, n)
                .await
                .with_context(|| format!("{name}: {} in round {}", who.name(), round + 1))?;
            if round >= rounds.warmup {
                rate.push(who, n as f64 / wall);
                for ms in calls {
                    latency.push(who, ms);
                }
            }
        }
        progress(&name, round + 1, total, started);
    }
    let calls_s = |who| round3(median(rate.of(who)));
    let mut row = Row::new(&name, &latency)
        .note(format!(
            "per-call latency; calls/s channel {:.1} / library {:.1} / seed {:.1} / floor {:.1}",
            calls_s(Who::Channel),
            calls_s(Who::Library),
            calls_s(Who::Seed),
            calls_s(Who::Floor)
        ))
        .detail("batches", rounds.samples)
        .detail("calls_per_batch", n)
        .detail("users", WARM_USERS)
        .detail(
            "library",
            "n tasks of SandboxPool::acquire + ExecClient::run([true])",
        )
        .detail(
            "seed",
            "n docker exec ... setsid bash -c true processes at once",
        )
        .detail("floor", "n tasks of raw create + start + inspect `true`");
    // `samples` counts calls here; the batches are in `details`.
    row.channel_calls_s = Some(calls_s(Who::Channel));
    row.library_calls_s = Some(calls_s(Who::Library));
    row.seed_calls_s = Some(calls_s(Who::Seed));
    row.floor_calls_s = Some(calls_s(Who::Floor));
    Ok(row)
}

/// What the floor and the seed make a cold sandbox from: the pool's own container, inspected.
#[derive(Debug)]
pub(crate) struct ColdTemplate {
    pub(crate) body: ContainerCreateBody,
    pub(crate) seed_flags: Vec<String>,
}

impl ColdTemplate {
    /// The template of the bench pool's containers (read from `u0`'s).
    pub(crate) async fn of_pool(b: &Bench) -> Result<Self> {
        let info = b
            .docker
            .inspect_container(&b.main().id, None)
            .await
            .context("inspecting a pool container")?;
        Self::new(info, &b.run)
    }

    /// Raw create + start of a container like the pool's, named `name`; returns its id.
    pub(crate) async fn create_and_start(&self, b: &Bench, name: &str) -> Result<String> {
        let options = CreateContainerOptionsBuilder::new().name(name).build();
        let created = b
            .docker
            .create_container(Some(options), self.body.clone())
            .await
            .context("raw create_container")?;
        b.docker
            .start_container(&created.id, None)
            .await
            .context("raw start_container")?;
        Ok(created.id)
    }

    fn new(info: ContainerInspectResponse, run: &str) -> Result<Self> {
        let config = info.config.context("the pool's container has no Config")?;
        let host = info
            .host_config
            .context("the pool's container has no HostConfig")?;
        let mut labels: std::collections::HashMap<String, String> =
            labels(run).into_iter().collect();
        labels.insert("zcbot.bench.kind".to_owned(), "cold".to_owned());
        // Same Config and HostConfig as the pool made, through serde (the inspect and create
        // types differ), with the daemon-set hostname dropped and our labels only.
        let mut value = serde_json::to_value(&config)?;
        let obj = value.as_object_mut().context("Config is not an object")?;
        obj.remove("Hostname");
        obj.insert("Labels".to_owned(), serde_json::to_value(&labels)?);
        obj.insert("HostConfig".to_owned(), serde_json::to_value(&host)?);
        let body: ContainerCreateBody = serde_json::from_value(value)?;

        // The equivalent `docker run -d` flags, derived from the same HostConfig.
        let mut f: Vec<String> = Vec::new();
        let mut flag = |k: &str, v: String| {
            f.push(k.to_owned());
            f.push(v);
        };
        let mut label_list: Vec<_> = labels.iter().collect();
        label_list.sort();
        for (k, v) in label_list {
            flag("--label", format!("{k}={v}"));
        }
        if let Some(user) = &config.user {
            flag("--user", user.clone());
        }
        if let Some(dir) = &config.working_dir {
            flag("--workdir", dir.clone());
        }
        if let Some(net) = &host.network_mode {
            flag("--network", net.clone());
        }
        for cap in host.cap_drop.iter().flatten() {
            flag("--cap-drop", cap.clone());
        }
        for opt in host.security_opt.iter().flatten() {
            flag("--security-opt", opt.clone());
        }
        let mut tmpfs: Vec<_> = host.tmpfs.iter().flatten().collect();
        tmpfs.sort();
        for (path, opts) in tmpfs {
            flag("--tmpfs", format!("{path}:{opts}"));
        }
        if let Some(m) = host.memory {
            flag("--memory", m.to_string());
        }
        if let Some(m) = host.memory_swap {
            flag("--memory-swap", m.to_string());
        }
        if let Some(n) = host.nano_cpus {
            flag("--cpus", format!("{}", n as f64 / 1e9));
        }
        if let Some(p) = host.pids_limit {
            flag("--pids-limit", p.to_string());
        }
        for u in host.ulimits.iter().flatten() {
            if let (Some(name), Some(soft), Some(hard)) = (&u.name, u.soft, u.hard) {
                flag("--ulimit", format!("{name}={soft}:{hard}"));
            }
        }
        for bind in host.binds.iter().flatten() {
            flag("-v", bind.clone());
        }
        // The daemon fills in its default runtime; name only another one.
        if let Some(runtime) = host
            .runtime
            .as_ref()
            .filter(|r| !r.is_empty() && r.as_str() != "runc")
        {
            flag("--runtime", runtime.clone());
        }
        if host.init == Some(true) {
            f.push("--init".to_owned());
        }
        if host.readonly_rootfs == Some(true) {
            f.push("--read-only".to_owned());
        }
        f.push(config.image.context("the pool's container has no image")?);
        Ok(Self {
            body,
            seed_flags: f,
        })
    }
}

/// Removes a container the bench made (gone already is fine), as the pool does.
pub(crate) async fn remove_container(b: &Bench, id: &str) -> Result<()> {
    sandbox_pool::remove_container(&b.docker, id)
        .await
        .with_context(|| format!("removing {id}"))
}

/// A new sandbox until its first call has run. Each is removed after its sample (not timed).
async fn cold_ensure(b: &Bench) -> Result<Row> {
    let template = ColdTemplate::of_pool(b).await?;
    let mut n = 0;
    let series = interleave("cold_ensure", b.rounds(1, 30, 5), async |who, _| {
        n += 1;
        match who {
            Who::Library => {
                let user = format!("cold{n}");
                let t = Instant::now();
                let sandbox = b.pool.ensure(&user).await?;
                let req = ExecRequest::new(["true"])
                    .with_user(sandbox.exec_user.clone())
                    .with_working_dir(WORKSPACE);
                let out = b.exec.run(&sandbox.container_id, req).await?;
                let ms = ms_since(t);
                ensure!(
                    out.exit_code() == 0,
                    "library first call: {:?}",
                    out.termination
                );
                b.pool.remove(&user).await?;
                Ok(ms)
            }
            Who::Channel => {
                let user = format!("cold{n}");
                let t = Instant::now();
                b.pool.ensure(&user).await?;
                library_true(&b.pool, &b.exec, who, &user).await?;
                let ms = ms_since(t);
                b.pool.remove(&user).await?;
                Ok(ms)
            }
            Who::Floor => {
                let name = format!("{}-floor-cold{n}", b.run);
                let t = Instant::now();
                let id = template.create_and_start(b, &name).await?;
                floor::exec_ok(&b.docker, &id, &["true"], &[], None, false).await?;
                let ms = ms_since(t);
                remove_container(b, &id).await?;
                Ok(ms)
            }
            Who::Seed => {
                let name = format!("{}-seed-cold{n}", b.run);
                let t = Instant::now();
                let result = async {
                    seed::run_ok(seed::run_detached(&name, &template.seed_flags), None).await?;
                    seed::run_ok(seed::shell(&name, &[], "true"), None).await
                }
                .await;
                let ms = ms_since(t);
                // Remove it even when the sample failed; it carries the run label anyway.
                let removed = remove_container(b, &name).await;
                result?;
                removed?;
                Ok(ms)
            }
        }
    })
    .await?;
    Ok(Row::new("cold_ensure", &series)
        .detail(
            "library",
            "SandboxPool::ensure(new user) + first ExecClient::run([true])",
        )
        .detail(
            "channel",
            "SandboxPool::ensure(new user) + open its channel + first Channel::run([true])",
        )
        .detail(
            "seed",
            format!(
                "docker run -d --name N {} + docker exec ... N setsid bash -c true",
                template.seed_flags.join(" ")
            ),
        )
        .detail(
            "floor",
            "raw create_container (the pool container's Config + HostConfig) + start + first exec `true`",
        ))
}

/// The cancelled command (the issue's): a background sleep and a foreground one.
const CANCEL_CMD: &str = "sleep 300 & sleep 301";
/// How long the call runs before it is cancelled.
const CANCEL_AFTER: Duration = Duration::from_millis(300);
/// How long the seed's way is given before we look for its processes.
const SEED_LOOK_AFTER: Duration = Duration::from_secs(5);

/// A process of the cancelled command (the library's supervisor carries it in its argv too).
fn cancel_leftover(args: &str) -> bool {
    args.contains("sleep 300") || args.contains("sleep 301")
}

/// Kills what a cancelled sample left (server-side, as the sandbox user; not timed) and waits
/// until `docker top` shows nothing of it.
async fn cancel_cleanup(b: &Bench, container: &str) -> Result<()> {
    for _ in 0..40 {
        if b.processes(container, cancel_leftover).await?.is_empty() {
            return Ok(());
        }
        // Anchored: never matches the pkill itself, the container's `sleep infinity` or init.
        floor::exec(
            &b.docker,
            container,
            &[
                "pkill",
                "-KILL",
                "-f",
                "^(sleep 30[01]|bash -c sleep 300 & sleep 301)$",
            ],
            &[],
            None,
            false,
        )
        .await?;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("the cancelled command's processes would not go away")
}

/// Cancel until nothing of the call is left.
async fn cancel(b: &Bench) -> Result<Row> {
    let w = b.main();
    cancel_cleanup(b, &w.id).await?;
    let (mut lib_report_ok, mut lib_top_ok, mut floor_top_ok) = (0, 0, 0);
    let (mut chan_report_ok, mut chan_top_ok) = (0, 0);
    let (mut seed_still, mut seed_looked) = (0, 0);
    let mut kill_ms = Vec::new();
    let series = interleave("cancel", b.rounds(1, 20, 4), async |who, recorded| {
        let ms = match who {
            Who::Library | Who::Channel => {
                let token = CancellationToken::new();
                let req = ExecRequest::new(["bash", "-c", CANCEL_CMD]).with_cancel(token.clone());
                let call = b.library_run(who, &w.user, req);
                tokio::pin!(call);
                tokio::select! {
                    ended = &mut call => bail!("the call ended before the cancel: {:?}", ended.map(|o| o.termination)),
                    () = tokio::time::sleep(CANCEL_AFTER) => {}
                }
                let t = Instant::now();
                token.cancel();
                let out = call.await?;
                let ms = ms_since(t);
                ensure!(
                    out.termination == Termination::Cancelled,
                    "library call ended {:?}",
                    out.termination
                );
                let kill = out.kill.context("a cancelled call without a kill summary")?;
                let left = b.processes(&w.id, cancel_leftover).await?;
                if recorded && who == Who::Library {
                    lib_report_ok += usize::from(kill.nothing_left());
                    lib_top_ok += usize::from(left.is_empty());
                    kill_ms.push(kill.elapsed.as_secs_f64() * 1000.0);
                }
                if recorded && who == Who::Channel {
                    chan_report_ok += usize::from(kill.nothing_left());
                    chan_top_ok += usize::from(left.is_empty());
                }
                ms
            }
            Who::Seed => {
                let mut child = seed::shell(&w.name, &[], CANCEL_CMD)
                    .spawn()
                    .context("spawning the docker CLI")?;
                tokio::time::sleep(CANCEL_AFTER).await;
                let t = Instant::now();
                // `Popen.kill()`: SIGKILL to the CLI client only.
                child.start_kill().context("killing the CLI")?;
                child.wait().await.context("waiting for the killed CLI")?;
                let ms = ms_since(t);
                if recorded {
                    tokio::time::sleep(SEED_LOOK_AFTER).await;
                    let left = b.processes(&w.id, cancel_leftover).await?;
                    seed_looked += 1;
                    seed_still += usize::from(!left.is_empty());
                }
                ms
            }
            Who::Floor => {
                // `echo $$` gives the exec's in-container pid, which runc made a session and
                // group leader: one `kill -KILL -PGID` exec takes the whole group.
                let t0 = Instant::now();
                let mut started = floor::start(
                    &b.docker,
                    &w.id,
                    &["sh", "-c", &format!("echo $$; exec bash -c '{CANCEL_CMD}'")],
                    &[],
                    None,
                )
                .await?;
                let frame = started.next_stdout().await?.context("no pid from the floor's exec")?;
                let pgid: u32 = String::from_utf8_lossy(&frame)
                    .trim()
                    .parse()
                    .context("the floor's pid")?;
                tokio::time::sleep(CANCEL_AFTER.saturating_sub(t0.elapsed())).await;
                let t = Instant::now();
                floor::exec_ok(
                    &b.docker,
                    &w.id,
                    &["sh", "-c", &format!("kill -KILL -{pgid}")],
                    &[],
                    None,
                    false,
                )
                .await?;
                let ms = ms_since(t);
                drop(started);
                let left = b.processes(&w.id, cancel_leftover).await?;
                if recorded {
                    floor_top_ok += usize::from(left.is_empty());
                }
                ms
            }
        };
        cancel_cleanup(b, &w.id).await?;
        Ok(ms)
    })
    .await?;
    let n = series.library.len();
    let still = if seed_still > 0 { "yes" } else { "no" };
    Ok(Row::new("cancel", &series)
        .note(format!(
            "channel nothing left {chan_report_ok}/{n} (kill report), {chan_top_ok}/{n} (docker top); library {lib_report_ok}/{n}, {lib_top_ok}/{n}; seed time is until its CLI is gone, and its command was still running 5 s later: {still} ({seed_still}/{seed_looked}); floor nothing left {floor_top_ok}/{n}"
        ))
        .detail("channel_nothing_left_by_report", chan_report_ok)
        .detail("channel_nothing_left_by_top", chan_top_ok)
        .detail("library_nothing_left_by_report", lib_report_ok)
        .detail("library_nothing_left_by_top", lib_top_ok)
        .detail("library_kill_ms", round3(median(&kill_ms)))
        .detail("seed_still_running_after_5s", seed_still > 0)
        .detail("seed_still_running_count", seed_still)
        .detail("seed_samples_looked_at", seed_looked)
        .detail("floor_nothing_left_by_top", floor_top_ok)
        .detail("library", "CancellationToken cancelled → ExecClient::run returned (server-side kill report included)")
        .detail("seed", "SIGKILL to the docker CLI (Popen.kill()) → CLI reaped; the seed's 0.5 s cancel polling is not included")
        .detail("floor", "one raw exec `sh -c 'kill -KILL -PGID'` as the sandbox user, to completion (`kill -KILL -1` would kill the container's own `sleep infinity`)")
)
}
