//! Cancelling a running call: how long until it is gone, and whether anything of it is left in
//! the sandbox (the kill report and the container's process list).

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use sandbox_exec::{ExecRequest, Termination};
use tokio_util::sync::CancellationToken;

use crate::bench::{Bench, interleave, ms_since};
use crate::stats::{Row, Who, median, round3};
use crate::{floor, seed};

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
pub(super) async fn cancel(b: &Bench) -> Result<Row> {
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
