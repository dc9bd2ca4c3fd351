//! Load and soak: 16 users x 200 mixed calls at once. Zero errors; nothing of a finished call
//! left in any sandbox; the calling process's open files and memory come back to where they
//! were (within a stated bound); every sandbox reaped afterwards.
//!
//! `SOAK_CALLS` changes the calls per user (default 200).

use std::sync::Arc;
use std::time::{Duration, Instant};

use e2e_tests::{FakeHost, TestPool, chown_to_sandbox, pool_config};
use sandbox_pool::PoolConfig;
use sandbox_tools::{CallContext, DockerExecutor, Executor};
use serde_json::{Value, json};

const USERS: usize = 16;
/// Open descriptors the process may hold more after the load than before it.
const FD_BOUND: usize = 16;
/// Resident memory the process may hold more after the load than before it.
const RSS_BOUND_KIB: u64 = 64 * 1024;

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").expect("fd dir").count()
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .expect("status")
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// Call `i` of a user's sequence, and what it must answer.
fn call(i: usize) -> (&'static str, Value, Option<String>) {
    match i % 7 {
        0 => (
            "shell",
            json!({"command": format!("echo {i}")}),
            Some(format!("[stdout]\n{i}\n[exit 0]")),
        ),
        1 => (
            "run_python",
            json!({"code": format!("print({i} * 2)")}),
            Some(format!("[stdout]\n{}\n[exit 0]", i * 2)),
        ),
        2 => (
            "write",
            json!({"path": format!("f{}.txt", i % 5), "content": format!("line {i}\n")}),
            None,
        ),
        3 => (
            "read",
            json!({"path": "seed.txt"}),
            Some("     1\tcount=0".to_owned()),
        ),
        4 => (
            "edit",
            json!({"path": "notes.txt", "old_string": "a", "new_string": "b", "replace_all": true}),
            None,
        ),
        5 => ("glob", json!({"pattern": "*.txt"}), None),
        _ => (
            "grep",
            json!({"pattern": "line", "output_mode": "count"}),
            None,
        ),
    }
}

async fn user_load(tools: DockerExecutor, calls: usize) -> Vec<String> {
    let ctx = CallContext::new("soak");
    let mut errors = Vec::new();
    for (tool, args) in [
        ("write", json!({"path": "seed.txt", "content": "count=0\n"})),
        ("write", json!({"path": "notes.txt", "content": "aaa\n"})),
    ] {
        let r = tools.call_tool(tool, args, &ctx).await;
        if r.exit_code != 0 {
            errors.push(format!("{} setup {tool}: {r:?}", tools.user()));
        }
    }
    for i in 0..calls {
        let (tool, args, want) = call(i);
        let r = tools.call_tool(tool, args.clone(), &ctx).await;
        let wrong = match &want {
            Some(w) => r.content != *w,
            None => false,
        };
        // edit may find nothing left to replace after its first run: that is its answer (1).
        let ok = r.exit_code == 0 || (tool == "edit" && r.content.contains("not found"));
        if !ok || wrong {
            errors.push(format!("{} call {i} {tool} {args}: {r:?}", tools.user()));
        }
    }
    errors
}

#[tokio::test(flavor = "multi_thread")]
async fn sixteen_users_two_hundred_mixed_calls_each() {
    let calls: usize = std::env::var("SOAK_CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let config = PoolConfig {
        idle_timeout: Duration::from_secs(3),
        reap_interval: Duration::from_millis(500),
        ..pool_config("soak")
    };
    let pool = TestPool::start(config).await;
    let host = Arc::new(FakeHost::all());
    let executors: Vec<DockerExecutor> = (0..USERS)
        .map(|u| {
            let user = format!("soak{u}");
            let root = pool.user_root(&user);
            std::fs::create_dir_all(&root).expect("root");
            chown_to_sandbox(&root);
            DockerExecutor::new(host.clone(), pool.pool.clone(), user, root)
        })
        .collect();
    // Warm up (sandboxes made, connections and buffers sized) before taking the baseline.
    for tools in &executors {
        let r = tools
            .call_tool(
                "shell",
                json!({"command": "true"}),
                &CallContext::new("warm"),
            )
            .await;
        assert_eq!(r.exit_code, 0, "{r:?}");
    }
    let (fds_before, rss_before) = (open_fds(), rss_kib());

    let started = Instant::now();
    let tasks: Vec<_> = executors
        .iter()
        .cloned()
        .map(|tools| tokio::spawn(user_load(tools, calls)))
        .collect();
    let mut errors = Vec::new();
    for t in tasks {
        errors.extend(t.await.expect("task"));
    }
    let elapsed = started.elapsed();
    eprintln!(
        "soak: {} calls in {:.1}s ({:.1} calls/s)",
        USERS * calls,
        elapsed.as_secs_f64(),
        (USERS * calls) as f64 / elapsed.as_secs_f64()
    );
    assert!(
        errors.is_empty(),
        "{} errors, first: {:?}",
        errors.len(),
        errors.first()
    );

    // Nothing of any finished call is left in any sandbox (the reaper may take the sandboxes
    // of users that finished first while we look).
    for info in pool.snapshot() {
        let left = e2e_tests::try_processes(pool.docker(), &info.container_id).await;
        assert!(
            left.as_ref().is_none_or(Vec::is_empty),
            "{}: {left:?}",
            info.user
        );
    }
    let (fds_after, rss_after) = (open_fds(), rss_kib());
    eprintln!("soak: fds {fds_before} -> {fds_after}, rss {rss_before} -> {rss_after} KiB");
    assert!(
        fds_after <= fds_before + FD_BOUND,
        "fds {fds_before} -> {fds_after}"
    );
    assert!(
        rss_after <= rss_before + RSS_BOUND_KIB,
        "rss {rss_before} -> {rss_after} KiB"
    );

    // Idle now: the reaper takes every sandbox.
    let until = Instant::now() + Duration::from_secs(30);
    while (!pool.is_empty() || !pool.containers().await.is_empty()) && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(pool.is_empty(), "{:?}", pool.snapshot());
    assert!(
        pool.containers().await.is_empty(),
        "every container removed"
    );
}
