//! A user root that is a filesystem of its own (`disk_enforce = "filesystem"`): the kernel
//! enforces the quota for every write of the sandbox, on the real kernel and daemon.

use std::sync::Arc;

use e2e_tests::{FakeHost, TestPool, pool_config};
use sandbox_pool::bytesize::ByteSize;
use sandbox_pool::config::Enforce;
use sandbox_pool::{PoolConfig, PoolError, ShutdownPolicy, disk};
use sandbox_tools::{CallContext, DockerExecutor, Executor};
use serde_json::json;

fn config(quota: ByteSize) -> PoolConfig {
    PoolConfig {
        disk_quota: Some(quota),
        disk_enforce: Enforce::Filesystem,
        ..pool_config("disk")
    }
}

async fn shell(tools: &DockerExecutor, command: &str) -> sandbox_tools::ToolResult {
    tools
        .call_tool("shell", json!({"command": command}), &CallContext::new("t"))
        .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_command_writing_past_the_quota_gets_enospc_and_nothing_else_is_touched() {
    let pool = TestPool::start(config(ByteSize::mib(16))).await;
    let host = Arc::new(FakeHost::all());
    let a = DockerExecutor::new(host, pool.pool.clone(), "a", pool.user_root("a"));
    let b = a.for_user("b", pool.user_root("b"));

    let r = shell(&a, "dd if=/dev/zero of=big bs=1M count=64 2>&1; echo rc=$?").await;
    assert!(r.content.contains("No space left on device"), "{r:?}");
    assert!(r.content.contains("rc=1"), "{r:?}");
    // The next call works, and the other user is untouched.
    let r = shell(&a, "rm big && echo freed").await;
    assert_eq!(r.content, "[stdout]\nfreed\n[exit 0]", "{r:?}");
    let r = shell(
        &b,
        "dd if=/dev/zero of=f bs=1M count=8 2>/dev/null && echo wrote",
    )
    .await;
    assert_eq!(r.content, "[stdout]\nwrote\n[exit 0]", "{r:?}");
    // The host's disk holds the image, sparse, of the quota's size, and nothing grows past it.
    let image = disk::image_of(&pool.user_root("a"));
    assert_eq!(std::fs::metadata(&image).expect("image").len(), 16 << 20);

    // The gate still refuses a write past the quota before any byte is written, reading the
    // usage in one statfs.
    let r = shell(
        &a,
        "dd if=/dev/zero of=most bs=1M count=13 2>/dev/null && echo ok",
    )
    .await;
    assert_eq!(r.exit_code, 0, "{r:?}");
    let big = "x".repeat(3 << 20);
    let r = a
        .call_tool(
            "write",
            json!({"path": "more.txt", "content": big}),
            &CallContext::new("t"),
        )
        .await;
    assert_eq!(r.exit_code, 2, "{r:?}");
    assert!(r.content.contains("disk quota exceeded"), "{r:?}");
    assert!(!pool.user_root("a").join("more.txt").exists());

    // Usage as statfs reads it matches du's count of the user's files.
    let (used, size) = disk::usage(&pool.user_root("a")).expect("mounted");
    let du = e2e_tests::du_bytes(&pool.user_root("a"));
    assert!(used.abs_diff(du) < 1 << 20, "statfs {used}, du {du}");
    assert!(size <= 16 << 20, "{size}");

    // A setuid file made in the sandbox is not setuid on the host: the mount says nosuid.
    let r = shell(&a, "cp /bin/true s && chmod u+s s && stat -c %A s").await;
    assert_eq!(r.content, "[stdout]\n-rwsr-xr-x\n[exit 0]", "{r:?}");
    let flags = rustix::fs::statvfs(pool.user_root("a"))
        .expect("statvfs")
        .f_flag;
    assert!(
        flags.contains(rustix::fs::StatVfsMountFlags::NOSUID),
        "{flags:?}"
    );
    assert!(
        flags.contains(rustix::fs::StatVfsMountFlags::NODEV),
        "{flags:?}"
    );

    // Removed: unmounted, the image and the files stay; the next sandbox finds them.
    assert!(pool.remove("a").await.expect("removed"));
    assert!(!disk::is_mounted(&pool.user_root("a")));
    assert!(image.exists());
    let r = shell(&a, "ls most s").await;
    assert_eq!(r.content, "[stdout]\nmost\ns\n[exit 0]", "{r:?}");
    pool.shutdown(ShutdownPolicy::Remove)
        .await
        .expect("shutdown");
    assert!(!disk::is_mounted(&pool.user_root("b")));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_larger_quota_grows_the_filesystem_and_one_below_usage_is_refused() {
    let pool = TestPool::start(config(ByteSize::mib(16))).await;
    let users = pool.users.path().to_owned();
    let a = DockerExecutor::new(
        Arc::new(FakeHost::all()),
        pool.pool.clone(),
        "a",
        pool.user_root("a"),
    );
    let r = shell(
        &a,
        "dd if=/dev/zero of=ten bs=1M count=10 2>/dev/null && echo ok",
    )
    .await;
    assert_eq!(r.exit_code, 0, "{r:?}");
    pool.shutdown(ShutdownPolicy::Remove)
        .await
        .expect("shutdown");

    let mut grown = config(ByteSize::mib(32));
    grown.name_prefix = pool.config().name_prefix.clone();
    let bigger = TestPool::start_on(grown.clone(), &users).await;
    bigger
        .ensure("a")
        .await
        .expect("a sandbox on the grown disk");
    let (_, size) = disk::usage(&bigger.user_root("a")).expect("mounted");
    assert!(size > 24 << 20, "{size}");
    bigger
        .shutdown(ShutdownPolicy::Remove)
        .await
        .expect("shutdown");

    let mut shrunk = grown;
    shrunk.disk_quota = Some(ByteSize::mib(8));
    let smaller = TestPool::start_on(shrunk, &users).await;
    let err = smaller
        .ensure("a")
        .await
        .expect_err("10 MiB do not fit in 8");
    assert!(matches!(err, PoolError::Disk { .. }), "{err}");
    let chain = sandbox_exec::error_chain(&err);
    assert!(
        chain.contains("free space first, or keep the quota"),
        "{chain}"
    );
    smaller
        .shutdown(ShutdownPolicy::Remove)
        .await
        .expect("shutdown");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pool_that_starts_adopts_the_mounts_of_its_sandboxes_and_unmounts_the_others() {
    let pool = TestPool::start(config(ByteSize::mib(16))).await;
    let users = pool.users.path().to_owned();
    pool.ensure("a").await.expect("a sandbox");
    pool.shutdown(ShutdownPolicy::Keep).await.expect("kept");
    // A crash between mounting c's disk and starting c's sandbox.
    let root_c = users.join("c");
    disk::mount(&root_c, 16 << 20, pool.sandbox_uid()).expect("mounted by hand");

    let again = TestPool::start_on(config_named(&pool), &users).await;
    assert!(
        disk::is_mounted(&users.join("a")),
        "a's sandbox runs on: its disk stays"
    );
    assert!(!disk::is_mounted(&root_c), "c has no sandbox: unmounted");
    again
        .shutdown(ShutdownPolicy::Remove)
        .await
        .expect("shutdown");
    assert!(!disk::is_mounted(&users.join("a")));
}

fn config_named(pool: &TestPool) -> PoolConfig {
    PoolConfig {
        name_prefix: pool.config().name_prefix.clone(),
        ..config(ByteSize::mib(16))
    }
}
