//! The daemon going away and coming back, on a second dockerd this test starts, crashes,
//! restarts and stops itself (its own socket, data root, exec root and pid file).

use std::sync::Arc;
use std::time::{Duration, Instant};

use e2e_tests::{FakeHost, SecondDaemon, chown_to_sandbox, image, pool_config};
use sandbox_pool::SandboxPool;
use sandbox_tools::{CallContext, DockerExecutor, Executor};
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn calls_survive_the_daemon_going_away_and_coming_back() {
    let mut daemon = SecondDaemon::start().await;
    daemon.load_image(&image()).await;
    let users = tempfile::tempdir().expect("users");
    let pool = SandboxPool::start_with_roots(
        daemon.client().await,
        pool_config("daemon_restart"),
        users.path().to_path_buf(),
    )
    .await
    .expect("pool on the second daemon");
    let root = pool.user_root("u");
    std::fs::create_dir_all(&root).expect("root");
    chown_to_sandbox(&root);
    let tools = DockerExecutor::new(Arc::new(FakeHost::all()), pool.clone(), "u", root);
    let ctx = CallContext::new("t");
    let r = tools
        .call_tool("shell", json!({"command": "echo up"}), &ctx)
        .await;
    assert_eq!(r.content, "[stdout]\nup\n[exit 0]");

    // A call in flight when the daemon dies ends at once, saying so.
    let started = Instant::now();
    let call = tools.call_tool("shell", json!({"command": "echo started; sleep 60"}), &ctx);
    let crash = async {
        tokio::time::sleep(Duration::from_millis(800)).await;
        daemon.crash();
    };
    let (r, ()) = tokio::join!(call, crash);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(r.exit_code, 1, "{r:?}");
    assert!(
        r.content.starts_with(
            "[Error executing shell via docker] sandbox lost: the Docker daemon stopped answering"
        ),
        "{r:?}"
    );

    // While it is down, calls fail fast with a clear daemon error; nothing hangs.
    let started = Instant::now();
    let r = tools
        .call_tool("shell", json!({"command": "true"}), &ctx)
        .await;
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(r.exit_code, 1, "{r:?}");
    assert!(r.content.contains("daemon unreachable"), "{r:?}");

    // Back: the daemon stopped the old container on its way up; the next call gets a new one.
    daemon.restart().await;
    let r = tools
        .call_tool("shell", json!({"command": "echo back"}), &ctx)
        .await;
    assert_eq!(r.content, "[stdout]\nback\n[exit 0]", "{r:?}");
    assert!(r.meta.recreated.is_some(), "{r:?}");
    pool.shutdown(sandbox_pool::ShutdownPolicy::Remove)
        .await
        .expect("shutdown");
}
