//! `sandbox-pool` against a real daemon: concurrency, hardening, reaping, adoption, repair,
//! capacity, and never touching what is not ours.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

use bollard::models::ContainerCreateBody;
use bollard::query_parameters::CreateContainerOptionsBuilder;
use e2e_tests::{TestPool, docker, image, pool_config, test_labels};
use sandbox_exec::{ExecClient, ExecRequest, Termination};
use sandbox_pool::{PoolConfig, PoolError, Recreated, SandboxPool, SandboxState, ShutdownPolicy};

#[tokio::test(flavor = "multi_thread")]
async fn twenty_concurrent_ensures_for_one_user_make_one_container() {
    let pool = TestPool::start(pool_config("concurrent_one_user")).await;
    let mut calls = Vec::new();
    for _ in 0..20 {
        let p = pool.pool.clone();
        calls.push(tokio::spawn(async move { p.ensure("alice").await }));
    }
    let mut ids = HashSet::new();
    for c in calls {
        ids.insert(c.await.expect("task").expect("ensure").container_id);
    }
    assert_eq!(ids.len(), 1);
    assert_eq!(pool.containers().await.len(), 1);
    assert_eq!(pool.len(), 1);
    assert_eq!(pool.lock_entries(), 0, "the lock map shrinks back");
}

#[tokio::test(flavor = "multi_thread")]
async fn sixteen_users_at_once_get_sixteen_containers() {
    let pool = TestPool::start(pool_config("sixteen_users")).await;
    let mut calls = Vec::new();
    for i in 0..16 {
        let p = pool.pool.clone();
        calls.push(tokio::spawn(
            async move { p.ensure(&format!("user{i}")).await },
        ));
    }
    let mut ids = HashSet::new();
    for c in calls {
        ids.insert(c.await.expect("task").expect("ensure").container_id);
    }
    assert_eq!(ids.len(), 16);
    assert_eq!(pool.containers().await.len(), 16);
    assert_eq!(pool.lock_entries(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn hardening_reads_back_from_inspect() {
    let config = PoolConfig {
        pids_limit: 77,
        cpus: 0.5,
        nofile: 333,
        ..pool_config("hardening")
    };
    let pool = TestPool::start(config).await;
    let sb = pool.ensure("bob").await.expect("ensure");
    let info = pool
        .docker()
        .inspect_container(&sb.container_id, None)
        .await
        .expect("inspect");
    let host = info.host_config.expect("host config");
    let cfg = info.config.expect("config");
    assert_eq!(
        cfg.user.as_deref(),
        Some("65534:65534"),
        "the keeper, not the sandbox user"
    );
    assert_eq!(sb.exec_user, "zcbot");
    assert_eq!(host.network_mode.as_deref(), Some("none"));
    assert_eq!(host.init, Some(true));
    assert_eq!(host.cap_drop, Some(vec!["ALL".to_owned()]));
    assert_eq!(
        host.security_opt,
        Some(vec!["no-new-privileges".to_owned()])
    );
    assert_eq!(host.readonly_rootfs, Some(true));
    assert_eq!(host.memory, Some(256 * 1024 * 1024));
    assert_eq!(host.memory_swap, host.memory);
    assert_eq!(host.nano_cpus, Some(500_000_000));
    let limits = e2e_tests::process_limits(77).await;
    assert_eq!(host.pids_limit, Some(limits.host_pids));
    let ulimits = host.ulimits.expect("ulimits");
    let ulimit = |name: &str| {
        ulimits
            .iter()
            .find(|u| u.name.as_deref() == Some(name))
            .map(|u| (u.soft, u.hard))
    };
    assert_eq!(ulimit("nofile"), Some((Some(333), Some(333))));
    assert_eq!(ulimit("nproc"), limits.nproc.map(|n| (Some(n), Some(n))));
    let tmpfs = host.tmpfs.expect("tmpfs");
    assert!(
        tmpfs.contains_key("/tmp") && tmpfs.contains_key("/run"),
        "{tmpfs:?}"
    );
    let binds = host.binds.expect("binds");
    assert_eq!(
        binds,
        vec![format!("{}:/workspace:rw", sb.user_root.display())]
    );
    let labels = cfg.labels.expect("labels");
    assert_eq!(
        labels.get("zcbot.sandbox.user").map(String::as_str),
        Some("bob")
    );
    assert_eq!(labels.get("zcbot.test").map(String::as_str), Some("1"));
    assert!(labels.contains_key("zcbot.sandbox.config-hash"));
    assert_eq!(sb.name, format!("{}-bob", pool.config().name_prefix));

    // And inside: the user, the read-only root, no network but lo, writable /workspace
    // owned on the host by the sandbox uid.
    let exec = ExecClient::new(pool.docker().clone());
    let out = exec
        .run(
            &sb.container_id,
            ExecRequest::new([
                "bash",
                "-c",
                "id -u; touch ~/x 2>&1 | grep -o 'Read-only file system'; cd /sys/class/net && echo *; echo hi > /workspace/f.txt",
            ])
            .with_user(&sb.exec_user),
        )
        .await
        .expect("run");
    assert_eq!(
        out.stdout.to_string_lossy(),
        format!("{}\nRead-only file system\nlo\n", e2e_tests::SANDBOX_UID),
        "{out:?}"
    );
    let meta = std::fs::metadata(sb.user_root.join("f.txt")).expect("the file is on the host");
    assert_eq!(meta.uid(), e2e_tests::SANDBOX_UID);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_reaper_removes_idle_sandboxes_but_not_active_or_busy_ones() {
    let config = PoolConfig {
        idle_timeout: Duration::from_millis(1500),
        reap_interval: Duration::from_millis(200),
        ..pool_config("reaper")
    };
    let pool = TestPool::start(config).await;
    pool.ensure("idle").await.expect("ensure");
    pool.ensure("active").await.expect("ensure");
    let busy = pool.acquire("busy").await.expect("acquire");
    for _ in 0..12 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        pool.mark_active("active");
    }
    let users: HashSet<String> = pool.snapshot().into_iter().map(|s| s.user).collect();
    assert_eq!(
        users,
        HashSet::from(["active".to_owned(), "busy".to_owned()])
    );
    assert_eq!(pool.containers().await.len(), 2);
    drop(busy);
    // Idle from now on: reaped after 1.5 s (waited for up to 10 s, the machine may be busy).
    let until = Instant::now() + Duration::from_secs(10);
    while !(pool.is_empty() && pool.containers().await.is_empty()) && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(pool.is_empty(), "{:?}", pool.snapshot());
    assert!(pool.containers().await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_pool_adopts_the_running_sandboxes_of_the_last_one() {
    let config = pool_config("adopt");
    let first = TestPool::start(config.clone()).await;
    let a = first.ensure("a").await.expect("ensure");
    let b = first.ensure("b").await.expect("ensure");
    first
        .shutdown(ShutdownPolicy::Keep)
        .await
        .expect("shutdown");
    let second = TestPool::start_on(config, first.users.path()).await;
    let adopted: HashSet<String> = second
        .snapshot()
        .into_iter()
        .map(|s| s.container_id)
        .collect();
    assert_eq!(
        adopted,
        HashSet::from([a.container_id.clone(), b.container_id.clone()])
    );
    assert_eq!(
        second.ensure("a").await.expect("ensure").container_id,
        a.container_id
    );
    assert_eq!(first.containers().await.len(), 2, "no duplicates");
}

#[tokio::test(flavor = "multi_thread")]
async fn reconciliation_removes_dead_leftovers() {
    let config = pool_config("reconcile_dead");
    let first = TestPool::start(config.clone()).await;
    let sb = first.ensure("dead").await.expect("ensure");
    first
        .shutdown(ShutdownPolicy::Keep)
        .await
        .expect("shutdown");
    first
        .docker()
        .stop_container(&sb.container_id, None)
        .await
        .expect("stop");
    let second = TestPool::start_on(config, first.users.path()).await;
    assert!(second.is_empty());
    assert!(
        first.containers().await.is_empty(),
        "the dead one was removed"
    );
}

/// The state the pool's memory shows for `user`, once it is `want` (within 5 s).
async fn state_becomes(pool: &TestPool, user: &str, want: SandboxState) {
    let started = Instant::now();
    loop {
        let state = pool
            .snapshot()
            .into_iter()
            .find(|s| s.user == user)
            .map(|s| s.state);
        if state == Some(want) {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{user}: {state:?}, never {want}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_container_removed_from_outside_is_known_gone_at_once_and_recreated() {
    let pool = TestPool::start(pool_config("removed_outside")).await;
    let sb = pool.ensure("carol").await.expect("ensure");
    e2e_tests::force_remove(pool.docker(), &sb.container_id).await;
    // The daemon's events tell the pool; no call has to fail first.
    state_becomes(&pool, "carol", SandboxState::Removed).await;
    let again = pool.ensure("carol").await.expect("ensure");
    assert_ne!(again.container_id, sb.container_id);
    assert_eq!(again.recreated, Some(Recreated::Removed));
    let exec = ExecClient::new(pool.docker().clone());
    let out = exec
        .run(&again.container_id, ExecRequest::new(["true"]))
        .await
        .expect("run");
    assert_eq!(out.termination, Termination::Exited { code: 0 });
    state_becomes(&pool, "carol", SandboxState::Running).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_container_killed_from_outside_is_known_exited_and_recreated() {
    let pool = TestPool::start(pool_config("killed_outside")).await;
    let sb = pool.ensure("erin").await.expect("ensure");
    pool.docker()
        .kill_container(&sb.container_id, None)
        .await
        .expect("kill");
    state_becomes(&pool, "erin", SandboxState::Exited).await;
    // Killed, and the daemon's event log says it was not the OOM killer.
    assert!(!oom_logged_at_end(&pool, &sb.container_id).await);
    let again = pool.ensure("erin").await.expect("ensure");
    assert_ne!(again.container_id, sb.container_id);
    assert!(
        matches!(again.recreated, Some(Recreated::Exited { .. })),
        "{:?}",
        again.recreated
    );
    // Its own removal of the dead one is no news to the pool about the new one.
    tokio::time::sleep(Duration::from_millis(300)).await;
    state_becomes(&pool, "erin", SandboxState::Running).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_oom_killed_sandbox_is_recreated_and_the_oom_reported() {
    let config = PoolConfig {
        memory: sandbox_pool::bytesize::ByteSize::mib(64),
        ..pool_config("oom")
    };
    let pool = TestPool::start(config).await;
    let sb = pool.ensure("dave").await.expect("ensure");
    let exec = ExecClient::new(pool.docker().clone());
    // As the keeper (the init's user; an exec without a user runs as the container's), raise
    // the init's OOM score (raising needs no privilege) to make it the kernel's choice, then
    // run out of memory in several small processes so that none of them outscores it. The
    // whole container dies of OOM.
    let hogs = "echo 1000 > /proc/1/oom_score_adj; for i in 1 2 3 4 5 6; do \
        python3 -c 'import time; x = b\"\\x01\" * (15 << 20); time.sleep(30)' & done; wait";
    let out = exec
        .run(&sb.container_id, ExecRequest::new(["bash", "-c", hogs]))
        .await
        .expect("run");
    // Docker 20.10 records an OOM kill in the state only when the OOM event reaches it before
    // the exit. Under gVisor the host kernel kills the sentry, whose death races that event:
    // the call reads the event log then, but should the event come later still, it says
    // killed (137); the sandbox is lost all the same.
    let gvisor = e2e_tests::gvisor().await;
    let lost = match out.termination {
        Termination::SandboxLost {
            reason:
                sandbox_exec::LostReason::ContainerStopped {
                    oom_killed,
                    exit_code,
                },
        } => oom_killed || (gvisor && exit_code == Some(137)),
        _ => false,
    };
    assert!(lost, "{out:?}");
    // The daemon's event log has the OOM kill at the container's end, whatever its state
    // says; and so the pool says why it made a new one.
    assert!(oom_logged_at_end(&pool, &sb.container_id).await);
    pool.invalidate("dave");
    let again = pool.ensure("dave").await.expect("ensure");
    assert_eq!(again.recreated, Some(Recreated::OomKilled));
    assert_ne!(again.container_id, sb.container_id);
}

/// Whether the daemon's event log has an OOM kill at the end of the stopped container `id`.
async fn oom_logged_at_end(pool: &TestPool, id: &str) -> bool {
    let info = pool
        .docker()
        .inspect_container(id, None)
        .await
        .expect("inspect");
    let finished = info
        .state
        .and_then(|s| s.finished_at)
        .as_deref()
        .and_then(sandbox_exec::docker::parse_rfc3339)
        .expect("it finished");
    sandbox_exec::docker::oom_logged(pool.docker(), id, finished).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_configuration_change_recreates_on_next_ensure() {
    let config = pool_config("config_change");
    let first = TestPool::start(config.clone()).await;
    let old = first.ensure("erin").await.expect("ensure");
    first
        .shutdown(ShutdownPolicy::Keep)
        .await
        .expect("shutdown");
    // The same pool name with more memory: the old container is not adopted.
    let changed = PoolConfig {
        memory: sandbox_pool::bytesize::ByteSize::mib(300),
        ..config
    };
    let second = TestPool::start_on(changed, first.users.path()).await;
    assert!(second.is_empty(), "not adopted");
    let new = second.ensure("erin").await.expect("ensure");
    assert_ne!(new.container_id, old.container_id);
    assert_eq!(first.containers().await.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_outdated_running_container_is_replaced_on_ensure() {
    let config = pool_config("config_change_live");
    let first = TestPool::start(config.clone()).await;
    first.ensure("fay").await.expect("ensure");
    // Another instance with a different configuration finds it when ensuring (not at
    // start-up, because the first instance is still alive and we start the second with it).
    let changed = PoolConfig {
        pids_limit: 99,
        ..config
    };
    first
        .shutdown(ShutdownPolicy::Keep)
        .await
        .expect("shutdown");
    let second =
        SandboxPool::start_with_roots(docker().await, changed, first.users.path().to_path_buf())
            .await
            .expect("start");
    // Reconciliation already removed it; an ensure makes a current one.
    let sb = second.ensure("fay").await.expect("ensure");
    let info = second
        .docker()
        .inspect_container(&sb.container_id, None)
        .await
        .expect("inspect");
    assert_eq!(
        info.host_config.and_then(|h| h.pids_limit),
        Some(e2e_tests::process_limits(99).await.host_pids)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn at_capacity_the_least_recently_active_idle_sandbox_is_evicted_or_the_pool_is_full() {
    let config = PoolConfig {
        max_sandboxes: 2,
        ..pool_config("capacity")
    };
    let pool = TestPool::start(config).await;
    let u1 = pool.ensure("u1").await.expect("ensure");
    tokio::time::sleep(Duration::from_millis(20)).await;
    pool.ensure("u2").await.expect("ensure");
    pool.ensure("u3").await.expect("evicts u1");
    let users: HashSet<String> = pool.snapshot().into_iter().map(|s| s.user).collect();
    assert_eq!(users, HashSet::from(["u2".to_owned(), "u3".to_owned()]));
    assert!(
        pool.containers()
            .await
            .iter()
            .all(|c| c.id.as_deref() != Some(u1.container_id.as_str()))
    );
    let _busy2 = pool.acquire("u2").await.expect("acquire");
    let _busy3 = pool.acquire("u3").await.expect("acquire");
    let err = pool.ensure("u4").await.expect_err("full");
    assert!(matches!(err, PoolError::PoolFull { max: 2 }), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn containers_without_our_labels_are_never_touched() {
    let config = pool_config("foreign");
    let docker = docker().await;
    // A stranger holding the name of a user's sandbox, and a container of another pool.
    let stranger_name = format!("{}-gus", config.name_prefix);
    let mut other_pool_labels = test_labels("foreign");
    other_pool_labels.insert("zcbot.sandbox.managed-by".into(), "sandbox-pool".into());
    other_pool_labels.insert(
        "zcbot.sandbox.pool".into(),
        format!("{}-other", config.name_prefix),
    );
    other_pool_labels.insert("zcbot.sandbox.user".into(), "gus".into());
    let mut ids = Vec::new();
    for (name, labels) in [
        (stranger_name.clone(), test_labels("foreign")),
        (
            format!("{}-other-gus", config.name_prefix),
            other_pool_labels,
        ),
    ] {
        let body = ContainerCreateBody {
            image: Some(image()),
            labels: Some(labels),
            host_config: Some(bollard::models::HostConfig {
                network_mode: Some("none".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let c = docker
            .create_container(
                Some(CreateContainerOptionsBuilder::new().name(&name).build()),
                body,
            )
            .await
            .expect("create");
        ids.push(c.id);
    }
    let _cleanup = scopeguard_remove(docker.clone(), ids.clone());
    let pool = TestPool::start(config).await;
    let err = pool.ensure("gus").await.expect_err("name taken");
    assert!(matches!(err, PoolError::NameTaken { .. }), "{err}");
    assert!(pool.remove("gus").await.is_err());
    pool.reap_idle().await;
    pool.shutdown(ShutdownPolicy::Remove)
        .await
        .expect("shutdown");
    for id in &ids {
        docker
            .inspect_container(id, None)
            .await
            .expect("still there");
    }
}

/// Removes these containers when dropped.
fn scopeguard_remove(docker: bollard::Docker, ids: Vec<String>) -> impl Drop {
    struct Guard(bollard::Docker, Vec<String>);
    impl Drop for Guard {
        fn drop(&mut self) {
            let (docker, ids) = (self.0.clone(), std::mem::take(&mut self.1));
            let remove = async move {
                for id in ids {
                    let _ = sandbox_pool::remove_container(&docker, &id).await;
                }
            };
            let handle = tokio::runtime::Handle::current();
            tokio::task::block_in_place(|| handle.block_on(remove));
        }
    }
    Guard(docker, ids)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_user_root_is_created_and_given_to_the_sandbox_uid() {
    let pool = TestPool::start(pool_config("user_root")).await;
    let sb = pool.ensure("hank").await.expect("ensure");
    let meta = std::fs::metadata(&sb.user_root).expect("created");
    assert!(meta.is_dir());
    assert_eq!(meta.uid(), e2e_tests::SANDBOX_UID);
    assert_eq!(sb.user_root, pool.users.path().join("hank"));
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_user_ids_and_missing_mounts_are_clear_errors() {
    let pool = TestPool::start(pool_config("bad_input")).await;
    for bad in ["", "../etc", "a b", "-rf"] {
        let err = pool.ensure(bad).await.expect_err("invalid");
        assert!(matches!(err, PoolError::InvalidUser { .. }), "{bad}: {err}");
    }
    let config = PoolConfig {
        extra_mounts: vec![sandbox_pool::ExtraMount {
            source: "/definitely/not/here".into(),
            target: "/sandbox/skills".into(),
        }],
        ..pool_config("bad_mount")
    };
    let err = SandboxPool::start(docker().await, config)
        .await
        .expect_err("missing source");
    assert!(matches!(err, PoolError::MountSourceMissing { .. }), "{err}");
    let config = PoolConfig {
        image: "zcbot-sandbox:no-such-tag".into(),
        ..pool_config("bad_image")
    };
    let err = SandboxPool::start(docker().await, config)
        .await
        .expect_err("no image");
    assert!(err.to_string().contains("just image"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_operator_view_shows_usage_and_activity() {
    let pool = TestPool::start(pool_config("operator_view")).await;
    let sb = pool.ensure("ivy").await.expect("ensure");
    let exec = ExecClient::new(pool.docker().clone());
    exec.run(&sb.container_id, ExecRequest::new(["true"]))
        .await
        .expect("run");
    let view = sandbox_pool::daemon_view(
        pool.docker(),
        pool.engine(),
        &pool.config().name_prefix,
        true,
    )
    .await
    .expect("view");
    assert_eq!(view.len(), 1);
    let v = &view[0];
    assert_eq!((v.user.as_str(), v.state.as_str()), ("ivy", "running"));
    assert_eq!(v.container_id, sb.container_id);
    assert_eq!(v.calls_in_flight, Some(0));
    assert!(v.memory_bytes.is_some_and(|m| m > 0), "{v:?}");
    assert!(v.pids.is_some_and(|p| p >= 1), "{v:?}");
    assert!(v.last_active.is_some() && v.created.is_some());
    let mem = pool.snapshot();
    assert_eq!(mem[0].calls_in_flight, Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_long_call_outliving_the_health_check_is_never_reaped() {
    // Every acquire takes the slow path (the health check has always lapsed), and idleness
    // comes quickly: exactly the case where a second call re-adopts the container under a
    // first one that is still running.
    let config = PoolConfig {
        health_ttl: Duration::ZERO,
        idle_timeout: Duration::from_millis(100),
        reap_interval: Duration::from_secs(3600),
        ..pool_config("long_call")
    };
    let pool = TestPool::start(config).await;
    let long = pool.acquire("kim").await.expect("the long call");
    drop(pool.acquire("kim").await.expect("a short call beside it"));
    assert_eq!(pool.snapshot()[0].calls_in_flight, Some(1));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        pool.reap_idle().await.is_empty(),
        "reaped under a running call"
    );
    drop(long);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(pool.reap_idle().await, vec!["kim".to_owned()]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_runtime_the_daemon_lacks_or_that_cannot_start_the_images_runner_is_refused_at_start() {
    let docker = docker().await;
    let users = tempfile::tempdir().expect("a users folder");
    let unknown = PoolConfig {
        runtime: Some("no-such-runtime".to_owned()),
        ..pool_config("runtime_unknown")
    };
    let err = SandboxPool::start_with_roots(docker.clone(), unknown, users.path().to_owned())
        .await
        .expect_err("no sandbox could start");
    assert!(matches!(err, PoolError::UnknownRuntime { .. }), "{err}");
    assert!(
        err.to_string().contains("runsc"),
        "it names what it has: {err}"
    );

    // gVisor cannot start an execute-only runner: under it the image built for runc is refused,
    // the one built for gVisor (the suite's image when it runs under gVisor) is not.
    let labels = docker
        .inspect_image(&image())
        .await
        .expect("the image")
        .config
        .and_then(|c| c.labels)
        .unwrap_or_default();
    let sealed = labels
        .get(sandbox_pool::image::RUNNER_LABEL)
        .map(String::as_str)
        == Some(sandbox_pool::image::RUNNER_SEALED);
    let gvisor = PoolConfig {
        runtime: Some("runsc".to_owned()),
        ..pool_config("runtime_gvisor")
    };
    match SandboxPool::start_with_roots(docker, gvisor, users.path().to_owned()).await {
        Err(PoolError::ImageNotForGvisor { .. }) => assert!(sealed, "refused a readable runner"),
        Ok(pool) => {
            assert!(!sealed, "took an execute-only runner under gVisor");
            pool.shutdown(ShutdownPolicy::Remove)
                .await
                .expect("shutdown");
        }
        Err(e) => panic!("{e}"),
    }
}
