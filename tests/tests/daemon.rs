//! The daemon going away and coming back, on a second dockerd this test starts, crashes,
//! restarts and stops itself (its own socket, data root, exec root and pid file).

use std::sync::Arc;
use std::time::{Duration, Instant};

use e2e_tests::{FakeHost, SecondDaemon, Transport, chown_to_sandbox, image, pool_config};
use sandbox_pool::SandboxPool;
use sandbox_tools::{CallContext, DockerExecutor, Executor};
use serde_json::json;
use tokio_util::sync::CancellationToken;

/// A second daemon with the image under test, and a pool of test `name` on it.
async fn pool_on_a_second_daemon(name: &str) -> (SecondDaemon, SandboxPool, tempfile::TempDir) {
    let daemon = SecondDaemon::start().await;
    daemon.load_image(&image()).await;
    let users = tempfile::tempdir().expect("users");
    let pool = SandboxPool::start_with_roots(
        daemon.client().await,
        pool_config(name),
        users.path().to_path_buf(),
    )
    .await
    .expect("pool on the second daemon");
    (daemon, pool, users)
}

/// `user`'s root, made and given to the sandbox uid.
fn root(pool: &SandboxPool, user: &str) -> std::path::PathBuf {
    let root = pool.user_root(user);
    std::fs::create_dir_all(&root).expect("root");
    chown_to_sandbox(&root);
    root
}

e2e_tests::on_both_transports! {
/// On the channel, the call in flight dies with the channel's exec and the next call after the
/// restart opens a new channel in the new sandbox.
async fn calls_survive_the_daemon_going_away_and_coming_back(transport) {
    let (mut daemon, pool, _users) = pool_on_a_second_daemon("daemon_restart").await;
    let config = sandbox_tools::ToolsConfig {
        transport,
        ..Default::default()
    };
    let tools = DockerExecutor::with_config(
        Arc::new(FakeHost::all()),
        pool.clone(),
        config,
        "u",
        root(&pool, "u"),
    );
    let ctx = CallContext::new("t");
    let r = tools
        .call_tool("shell", json!({"command": "echo up"}), &ctx)
        .await;
    assert_eq!(r.content, "[stdout]\nup\n[exit 0]");
    if transport == Transport::Channel {
        assert!(tools.warm_up().await.expect("sandbox"), "the channel opens");
    }

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
    assert!(
        matches!(
            r.meta.termination,
            Some(sandbox_exec::Termination::SandboxLost {
                reason: sandbox_exec::LostReason::DaemonUnreachable { .. }
            })
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
    let error = r.meta.error.as_deref().expect("a typed error");
    assert!(error.is_daemon_unreachable() && !error.is_pool_full(), "{error:?}");

    // Back: the daemon stopped the old container on its way up; the next call gets a new one.
    daemon.restart().await;
    let r = tools
        .call_tool("shell", json!({"command": "echo back"}), &ctx)
        .await;
    assert_eq!(r.content, "[stdout]\nback\n[exit 0]", "{r:?}");
    assert!(r.meta.recreated.is_some(), "{r:?}");
    if transport == Transport::Channel {
        assert!(tools.warm_up().await.expect("sandbox"), "the channel opens");
        let info = pool.snapshot().into_iter().find(|s| s.user == "u");
        let channel = info.and_then(|s| s.channel).expect("a channel in the new sandbox");
        assert!(channel.open, "{channel:?}");
    }
    pool.shutdown(sandbox_pool::ShutdownPolicy::Remove)
        .await
        .expect("shutdown");
}
}

e2e_tests::on_both_transports! {
/// On the channel, the warm call's request is written into a channel whose daemon no longer
/// copies it: the deadline holds there too.
async fn a_frozen_daemon_holds_no_call_past_its_deadline_or_its_cancel(transport) {
    let (daemon, pool, _users) = pool_on_a_second_daemon("daemon_frozen").await;
    let root = |user: &str| root(&pool, user);
    // File tools get 2 s, and writes a quota to check.
    let config = sandbox_tools::ToolsConfig {
        file_timeout: Duration::from_secs(2),
        quotas: sandbox_tools::QuotaConfig {
            disk_bytes_per_user: Some(sandbox_pool::bytesize::ByteSize::gib(1)),
            ..Default::default()
        },
        transport,
        ..Default::default()
    };
    let tools = DockerExecutor::with_config(
        Arc::new(FakeHost::all()),
        pool.clone(),
        config,
        "u",
        root("u"),
    );
    let ctx = CallContext::new("t");
    let r = tools
        .call_tool("shell", json!({"command": "echo up"}), &ctx)
        .await;
    assert_eq!(r.content, "[stdout]\nup\n[exit 0]");
    if transport == Transport::Channel {
        assert!(tools.warm_up().await.expect("sandbox"), "the channel opens");
    }

    daemon.freeze();
    // A warm sandbox: the exec's creation hangs. A new user: the sandbox's inspection hangs. A
    // write: the quota check, then the sandbox. Each ends at its deadline.
    let other = tools.for_user("v", root("v"));
    for (who, tools, tool, args) in [
        (
            "warm",
            &tools,
            "shell",
            json!({"command": "echo hi", "timeout": 2}),
        ),
        (
            "new user",
            &other,
            "shell",
            json!({"command": "echo hi", "timeout": 2}),
        ),
        (
            "write",
            &tools,
            "write",
            json!({"path": "a.txt", "content": "x"}),
        ),
    ] {
        let started = Instant::now();
        let r = tools.call_tool(tool, args, &ctx).await;
        let took = started.elapsed();
        assert_eq!(r.exit_code, 124, "{who}: {r:?}");
        assert!(
            r.content.starts_with("[Error] command timed out after "),
            "{who}: {r:?}"
        );
        assert!(
            took < Duration::from_secs(3),
            "{who}: answered after {took:?}"
        );
    }
    let cancel = CancellationToken::new();
    let cancelled = CallContext::new("t").with_cancel(cancel.clone());
    let call = tools.call_tool("shell", json!({"command": "echo hi"}), &cancelled);
    let stop = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        cancel.cancel();
        Instant::now()
    };
    let (r, at) = tokio::join!(call, stop);
    assert_eq!(r.exit_code, 130, "{r:?}");
    assert!(at.elapsed() < Duration::from_secs(1), "{:?}", at.elapsed());

    daemon.thaw();
    let r = tools
        .call_tool("shell", json!({"command": "echo back"}), &ctx)
        .await;
    assert_eq!(r.content, "[stdout]\nback\n[exit 0]", "{r:?}");
    let r = other
        .call_tool("shell", json!({"command": "echo back"}), &ctx)
        .await;
    assert_eq!(r.content, "[stdout]\nback\n[exit 0]", "{r:?}");
    pool.shutdown(sandbox_pool::ShutdownPolicy::Remove)
        .await
        .expect("shutdown");
}
}

/// openssl's arguments for a new P-256 key without a passphrase.
const NEW_EC_KEY: [&str; 5] = [
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:P-256",
    "-nodes",
];

/// A CA, and a certificate it signs for `name` (an `IP:` or `DNS:` subject name for a server,
/// none for a client), made with openssl into `dir`: `(ca.pem, cert.pem, key.pem)`.
fn certificates(
    dir: &std::path::Path,
    ca: &str,
    name: &str,
    server: bool,
) -> [std::path::PathBuf; 3] {
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl (Debian's, on every machine here)");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let (ca_key, ca_pem) = (format!("{ca}-key.pem"), format!("{ca}.pem"));
    if !dir.join(&ca_pem).exists() {
        let subject = format!("/CN={ca}");
        let tail = [
            "-keyout", &ca_key, "-out", &ca_pem, "-days", "1", "-subj", &subject,
        ];
        run(&[&["req", "-x509"], &NEW_EC_KEY[..], &tail[..]].concat());
    }
    let (key, csr, pem, ext) = (
        format!("{name}-key.pem"),
        format!("{name}.csr"),
        format!("{name}.pem"),
        format!("{name}.ext"),
    );
    let usage = if server {
        format!("subjectAltName={name}\nextendedKeyUsage=serverAuth\n")
    } else {
        "extendedKeyUsage=clientAuth\n".to_owned()
    };
    std::fs::write(dir.join(&ext), usage).expect("extensions");
    let tail = ["-keyout", &key, "-out", &csr, "-subj", "/CN=zcbot-test"];
    run(&[&["req"], &NEW_EC_KEY[..], &tail[..]].concat());
    run(&[
        "x509",
        "-req",
        "-in",
        &csr,
        "-CA",
        &ca_pem,
        "-CAkey",
        &ca_key,
        "-CAcreateserial",
        "-out",
        &pem,
        "-days",
        "1",
        "-extfile",
        &ext,
    ]);
    [dir.join(ca_pem), dir.join(pem), dir.join(key)]
}

#[tokio::test(flavor = "multi_thread")]
async fn an_engine_over_tcp_with_tls_answers_only_with_a_client_certificate_of_its_ca() {
    let dir = tempfile::tempdir().expect("certificates");
    let [ca, server, server_key] = certificates(dir.path(), "ca", "IP:127.0.0.1", true);
    let [_, client, client_key] = certificates(dir.path(), "ca", "client", false);
    let [_, stranger, stranger_key] = certificates(dir.path(), "other-ca", "stranger", false);
    // A free loopback port for the daemon's TCP socket.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let host = format!("tcp://127.0.0.1:{port}");
    let arg = |p: &std::path::Path| p.display().to_string();
    let daemon = SecondDaemon::start_with(vec![
        "--tlsverify".to_owned(),
        format!("--tlscacert={}", arg(&ca)),
        format!("--tlscert={}", arg(&server)),
        format!("--tlskey={}", arg(&server_key)),
        format!("--host={host}"),
    ])
    .await;

    let engine = sandbox_pool::EngineConfig::new("tls", &host).with_tls(&ca, &client, &client_key);
    let docker = engine.connect().await.expect("the engine answers");
    docker.ping().await.expect("ping over TLS");

    // Sandboxes on it: calls through an exec, then over the channel (one attached exec held
    // open over TLS).
    daemon.load_image(&image()).await;
    let users = tempfile::tempdir().expect("users");
    let fleet = sandbox_pool::Fleet::start_with_roots(
        vec![engine.clone()],
        pool_config("tls_engine"),
        users.path().to_path_buf(),
    )
    .await
    .expect("a fleet on the TLS engine");
    let root = users.path().join("u");
    std::fs::create_dir_all(&root).expect("root");
    chown_to_sandbox(&root);
    let tools = DockerExecutor::new(Arc::new(FakeHost::all()), fleet.clone(), "u", root);
    let ctx = CallContext::new("t");
    let r = tools
        .call_tool("shell", json!({"command": "echo over tls"}), &ctx)
        .await;
    assert_eq!(r.content, "[stdout]\nover tls\n[exit 0]", "{r:?}");
    assert!(
        tools.warm_up().await.expect("sandbox"),
        "the channel opens over TLS"
    );
    let r = tools
        .call_tool("read", json!({"path": "/etc/hostname"}), &ctx)
        .await;
    assert_eq!(r.exit_code, 0, "{r:?}");
    assert_eq!(fleet.snapshot()[0].engine, "tls");
    fleet
        .shutdown(sandbox_pool::ShutdownPolicy::Remove)
        .await
        .expect("shutdown");

    for (who, engine) in [
        (
            "no certificate",
            sandbox_pool::EngineConfig::new("tls", &host),
        ),
        (
            "a certificate of another CA",
            sandbox_pool::EngineConfig::new("tls", &host).with_tls(&ca, &stranger, &stranger_key),
        ),
    ] {
        let err = engine.connect().await.expect_err(who);
        assert!(
            matches!(err, sandbox_pool::PoolError::EngineConnect { .. }),
            "{who}: {err}"
        );
        assert!(
            err.to_string()
                .starts_with(&format!("engine tls at {host}")),
            "{who}: {err}"
        );
    }
}
