//! Calls at the tool layer, as the agent service makes them: `shell`, and the file tools `read`
//! and `write` against the seed's Python runner.

use std::time::Instant;

use anyhow::{Context, Result, ensure};
use serde_json::json;

use crate::bench::{Bench, interleave, ms_since, put_file};
use crate::stats::{ORDER, Row, Who};
use crate::{floor, seed};

/// `shell` with `echo hi`. The seed and the floor pass an environment variable as the seed's
/// `-e K=V`; the library's `shell` takes none from the model, but its exec carries its own
/// (`SBX_EXEC_ID`).
pub(super) async fn shell_echo_env(b: &Bench) -> Result<Row> {
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

/// `read` of a 10 KiB file: the library's runner against the seed's Python runner, and a raw
/// `cat` as the floor.
pub(super) async fn read_10k(b: &Bench) -> Result<Row> {
    let w = b.main();
    let text = text_10k();
    put_file(&b.main().root, b.pool.sandbox_uid(), READ_FILE, &text)?;
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
pub(super) async fn write_10k(b: &Bench) -> Result<Row> {
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
