//! `sandbox-exec` against a real daemon and the sandbox image.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use e2e_tests::TestSandbox;
use sandbox_exec::{ExecRequest, LostReason, OutputCaps, OutputChunk, StreamKind, Termination};
use tokio_util::sync::CancellationToken;

fn sh(cmd: &str) -> ExecRequest {
    ExecRequest::new(["bash", "-c", cmd])
}

e2e_tests::on_both_transports! {
    async fn exit_codes_are_the_commands_own(transport) {
        let sb = TestSandbox::start("exit_codes").await;
        let exec = sb.runner(transport).await;
        for (cmd, want) in [
            ("true", Termination::Exited { code: 0 }),
            ("exit 3", Termination::Exited { code: 3 }),
            ("no-such-command-xyz", Termination::Exited { code: 127 }),
            ("kill -KILL $$", Termination::Signaled { signal: 9 }),
            ("bash -c 'exit 4'", Termination::Exited { code: 4 }),
        ] {
            let out = exec.run(&sb.id, sh(cmd)).await.expect("run");
            assert_eq!(out.termination, want, "{cmd}: {out:?}");
        }
        let sig = exec.run(&sb.id, sh("kill -TERM $$")).await.expect("run");
        assert_eq!(sig.termination, Termination::Signaled { signal: 15 });
        assert_eq!(sig.exit_code(), 143);
        // A program the runner cannot find at all.
        let missing = exec
            .run(&sb.id, ExecRequest::new(["/no/such/binary"]))
            .await
            .expect("run");
        assert_eq!(missing.exit_code(), 127);
        assert!(missing.spawn_error.is_some());
        assert!(
            missing
                .stderr
                .to_string_lossy()
                .contains("command not found")
        );
    }
}

e2e_tests::on_both_transports! {
    async fn stdout_and_stderr_stay_apart(transport) {
        let sb = TestSandbox::start("streams_apart").await;
        let out = sb
            .runner(transport)
            .await
            .run(
                &sb.id,
                sh("echo out; echo err >&2; echo out2; echo err2 >&2"),
            )
            .await
            .expect("run");
        assert_eq!(out.stdout.to_string_lossy(), "out\nout2\n");
        assert_eq!(out.stderr.to_string_lossy(), "err\nerr2\n");
    }
}

e2e_tests::on_both_transports! {
    async fn json_with_cjk_and_quotes_round_trips_on_stdin(transport) {
        let sb = TestSandbox::start("stdin_json").await;
        let json = r#"{"path":"数据/报告 \"最终\".txt","s":"$(rm -rf /); echo 'hi'\n"}"#;
        let out = sb
            .runner(transport)
            .await
            .run(
                &sb.id,
                ExecRequest::new(["cat"]).with_stdin(json.to_owned()),
            )
            .await
            .expect("run");
        assert_eq!(out.termination, Termination::Exited { code: 0 });
        assert_eq!(out.stdout.to_vec(), json.as_bytes());
    }
}

e2e_tests::on_both_transports! {
    async fn stdin_larger_than_10_mb_arrives_whole(transport) {
        let sb = TestSandbox::start("stdin_big").await;
        let data: Vec<u8> = (0..(12 * 1024 * 1024u32))
            .map(|i| (i % 251) as u8)
            .collect();
        let out = sb
            .runner(transport)
            .await
            .run(&sb.id, sh("wc -c; ").with_stdin(data.clone()))
            .await
            .expect("run");
        assert_eq!(out.stdout.to_string_lossy().trim(), data.len().to_string());
        let sum = sb
            .runner(transport)
            .await
            .run(
                &sb.id,
                sh("sha256sum | cut -c1-64").with_stdin(data.clone()),
            )
            .await
            .expect("run");
        let want = {
            use std::fmt::Write;
            let digest = <sha2::Sha256 as sha2::Digest>::digest(&data);
            digest.iter().fold(String::new(), |mut s, b| {
                let _ = write!(s, "{b:02x}");
                s
            })
        };
        assert_eq!(sum.stdout.to_string_lossy().trim(), want);
    }
}

e2e_tests::on_both_transports! {
    async fn output_cap_keeps_head_and_tail_and_counts_the_rest(transport) {
        let sb = TestSandbox::start("output_cap").await;
        let out = sb
            .runner(transport)
            .await
            .run(
                &sb.id,
                sh("printf 'HEAD'; head -c 1000000 /dev/zero | tr '\\0' x; printf 'TAIL'")
                    .with_caps(OutputCaps::new(10, 10)),
            )
            .await
            .expect("run");
        assert_eq!(out.stdout.head(), b"HEADxxxxxx");
        assert_eq!(out.stdout.tail(), b"xxxxxxTAIL");
        assert_eq!(out.stdout.dropped(), 1_000_008 - 20);
        assert_eq!(out.stdout.total(), 1_000_008);
    }
}

e2e_tests::on_both_transports! {
    async fn binary_and_invalid_utf8_output_is_kept_as_bytes(transport) {
        let sb = TestSandbox::start("binary_out").await;
        let out = sb
            .runner(transport)
            .await
            .run(&sb.id, sh("printf '\\x00\\xff\\xfe abc \\xc3\\x28'"))
            .await
            .expect("run");
        assert_eq!(out.stdout.to_vec(), b"\x00\xff\xfe abc \xc3\x28");
        assert!(out.stdout.to_string_lossy().contains('\u{fffd}'));
    }
}

e2e_tests::on_both_transports! {
    async fn the_sink_gets_the_first_chunk_long_before_the_end(transport) {
        let sb = TestSandbox::start("sink_early").await;
        let seen: Arc<Mutex<Vec<(Duration, StreamKind, Bytes)>>> = Arc::default();
        let started = Instant::now();
        let record = Arc::clone(&seen);
        let sink = move |c: OutputChunk| {
            record
                .lock()
                .expect("lock")
                .push((started.elapsed(), c.stream, c.bytes));
        };
        let out = sb
            .runner(transport)
            .await
            .run(
                &sb.id,
                sh("echo first; sleep 1; echo second").with_sink(Arc::new(sink)),
            )
            .await
            .expect("run");
        let seen = seen.lock().expect("lock");
        let (first_at, stream, bytes) = seen.first().cloned().expect("a chunk");
        assert_eq!((stream, &bytes[..]), (StreamKind::Stdout, &b"first\n"[..]));
        assert!(
            first_at + Duration::from_millis(700) < out.duration,
            "first chunk at {first_at:?}, call took {:?}",
            out.duration
        );
    }
}

e2e_tests::on_both_transports! {
    async fn a_background_process_does_not_hang_the_call_and_keeps_running(transport) {
        let sb = TestSandbox::start("background").await;
        let out = sb
            .runner(transport)
            .await
            .run(
                &sb.id,
                sh("sleep 300 & echo started").with_timeout(Duration::from_secs(30)),
            )
            .await
            .expect("run");
        assert_eq!(out.termination, Termination::Exited { code: 0 });
        assert_eq!(out.stdout.to_string_lossy(), "started\n");
        assert!(out.leaked_output);
        assert!(
            out.duration < Duration::from_secs(5),
            "took {:?}",
            out.duration
        );
        let left = sb.processes().await;
        assert!(left.iter().any(|p| p == "sleep 300"), "{left:?}");
    }
}

/// Commands whose processes try to outlive a kill.
const ESCAPES: &[(&str, &str)] = &[
    ("plain", "sleep 300"),
    ("background", "sleep 300 & sleep 301"),
    ("setsid", "setsid sleep 300 & sleep 301"),
    (
        "double_fork",
        "nohup sh -c 'sleep 300 &' >/dev/null 2>&1 & sleep 301",
    ),
    ("ignores_term", "trap '' TERM; sleep 300 & sleep 301"),
    (
        "clears_env",
        "env -i /bin/sleep 300 & setsid env -i /bin/sleep 302 & sleep 301",
    ),
];

e2e_tests::on_both_transports! {
    async fn timeout_leaves_nothing_running(transport) {
        let sb = TestSandbox::start("timeout_kill").await;
        let exec = sb.runner(transport).await;
        for (name, cmd) in ESCAPES {
            let out = exec
                .run(&sb.id, sh(cmd).with_timeout(Duration::from_millis(700)))
                .await
                .expect("run");
            assert_eq!(out.termination, Termination::TimedOut, "{name}");
            let kill = out.kill.as_ref().expect("a kill ran");
            assert!(kill.nothing_left(), "{name}: {kill:?}");
            let left = sb.settle(Duration::from_secs(2)).await;
            assert!(left.is_empty(), "{name}: left running: {left:?}");
        }
    }
}

e2e_tests::on_both_transports! {
    async fn cancel_acts_at_once_and_leaves_nothing_running(transport) {
        let sb = TestSandbox::start("cancel_kill").await;
        let exec = sb.runner(transport).await;
        for (name, cmd) in ESCAPES {
            let token = CancellationToken::new();
            let run = exec.run(
                &sb.id,
                sh(&format!("echo ready; {cmd}"))
                    .with_cancel(token.clone())
                    .with_timeout(Duration::from_secs(60)),
            );
            let cancel = async {
                tokio::time::sleep(Duration::from_millis(400)).await;
                token.cancel();
                Instant::now()
            };
            let (out, cancelled_at) = tokio::join!(run, cancel);
            let out = out.expect("run");
            assert_eq!(out.termination, Termination::Cancelled, "{name}");
            assert_eq!(out.stdout.to_string_lossy(), "ready\n", "{name}");
            let kill = out.kill.as_ref().expect("a kill ran");
            assert!(kill.nothing_left(), "{name}: {kill:?}");
            let left = sb.settle(Duration::from_secs(2)).await;
            assert!(left.is_empty(), "{name}: left running: {left:?}");
            // No polling interval: the kill starts when the token fires.
            assert!(cancelled_at.elapsed() < Duration::from_secs(3), "{name}");
        }
    }
}

e2e_tests::on_both_transports! {
    async fn a_cancel_before_the_start_runs_nothing(transport) {
        let sb = TestSandbox::start("cancel_early").await;
        let token = CancellationToken::new();
        token.cancel();
        let out = sb
            .runner(transport)
            .await
            .run(&sb.id, sh("touch /workspace/ran").with_cancel(token))
            .await
            .expect("run");
        assert_eq!(out.termination, Termination::Cancelled);
        assert!(!sb.root.path().join("ran").exists());
    }
}

e2e_tests::on_both_transports! {
    async fn many_sequential_calls_under_a_pids_limit_leave_no_zombies(transport) {
        let sb = TestSandbox::start_with("pids_limit", |c| c.pids_limit = 64).await;
        let exec = sb.runner(transport).await;
        for i in 0..200 {
            let out = exec
                .run(&sb.id, sh("setsid bash -c true; (sleep 0.01 &); true"))
                .await
                .unwrap_or_else(|e| panic!("call {i}: {e}"));
            assert_eq!(out.termination, Termination::Exited { code: 0 }, "call {i}");
        }
        let left = sb.settle(Duration::from_secs(2)).await;
        assert!(left.is_empty(), "left: {left:?}");
    }
}

e2e_tests::on_both_transports! {
    async fn a_container_removed_mid_call_is_reported_lost(transport) {
        let sb = TestSandbox::start("lost").await;
        let exec = sb.runner(transport).await;
        let run = exec.run(&sb.id, sh("echo started; sleep 100"));
        let remove = async {
            tokio::time::sleep(Duration::from_millis(500)).await;
            e2e_tests::force_remove(&sb.docker, &sb.id).await;
        };
        let (out, ()) = tokio::join!(run, remove);
        let out = out.expect("run");
        assert_eq!(
            out.termination,
            Termination::SandboxLost {
                reason: LostReason::ContainerRemoved
            },
            "{out:?}"
        );
        assert_eq!(out.stdout.to_string_lossy(), "started\n");
        // And a new call says which container is missing (a channel is down with it).
        let err = sb.exec().run(&sb.id, sh("true")).await.expect_err("gone");
        assert!(err.is_sandbox_gone(), "{err}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stopped_container_is_a_typed_error() {
    let sb = TestSandbox::start("stopped").await;
    sb.docker.stop_container(&sb.id, None).await.expect("stop");
    let err = sb
        .exec()
        .run(&sb.id, sh("true"))
        .await
        .expect_err("stopped");
    assert!(
        matches!(err, sandbox_exec::ExecError::ContainerNotRunning { ref container, .. } if *container == sb.id),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_runner_is_static_and_supervises_inside_the_image() {
    let sb = TestSandbox::start("runner_static").await;
    let out = sb
        .exec()
        .run(
            &sb.id,
            sh("/sandbox/bin/sandbox-runner version; id -u; cat /proc/$PPID/cmdline | tr '\\0' ' '; echo; \
                stat -c '%a %U' /sandbox/bin/sandbox-runner; \
                cat /sandbox/bin/sandbox-runner >/dev/null 2>&1 || echo unreadable; \
                ls /proc/$PPID/fd >/dev/null 2>&1 || echo the supervisor is out of reach"),
        )
        .await
        .expect("run");
    let text = out.stdout.to_string_lossy();
    assert!(text.starts_with("sandbox-runner "), "{text}");
    assert!(
        text.contains(&format!("\n{}\n", e2e_tests::SANDBOX_UID)),
        "{text}"
    );
    // The command's parent is the supervisor, which the command cannot reach: the runner is
    // executable but unreadable, so every runner process is non-dumpable.
    assert!(text.contains("/sandbox/bin/sandbox-runner run "), "{text}");
    assert!(text.contains("\n711 root\nunreadable\n"), "{text}");
    assert!(text.contains("the supervisor is out of reach"), "{text}");
    // Static, so it runs whatever the host's glibc was (root may read it).
    let ldd = sb
        .exec()
        .run(
            &sb.id,
            sh("ldd /sandbox/bin/sandbox-runner 2>&1").with_user("root"),
        )
        .await
        .expect("run");
    let text = ldd.stdout.to_string_lossy();
    assert!(
        text.contains("statically linked") || text.contains("not a dynamic executable"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn connecting_negotiates_the_api_version_down_to_the_daemons() {
    let docker = e2e_tests::docker().await;
    let server = docker.version().await.expect("version");
    let api = server.api_version.expect("the daemon says its API version");
    let client = docker.client_version();
    // bollard defaults to 1.53; this daemon (Docker 20.10) speaks 1.41.
    assert_eq!(
        format!("{}.{}", client.major_version, client.minor_version),
        api
    );
}

e2e_tests::on_both_transports! {
    async fn a_stopped_supervisor_is_killed_through_a_second_exec(transport) {
        let sb = TestSandbox::start("kill_fallback").await;
        let token = CancellationToken::new();
        // The command stops its own supervisor, so the in-band kill order is never read.
        let exec = sb.runner(transport).await;
        let run = exec.run(
            &sb.id,
            sh("kill -STOP $PPID; setsid sleep 300 & sleep 301").with_cancel(token.clone()),
        );
        let cancel = async {
            tokio::time::sleep(Duration::from_millis(500)).await;
            token.cancel();
        };
        let (out, ()) = tokio::join!(run, cancel);
        let out = out.expect("run");
        assert_eq!(out.termination, Termination::Cancelled);
        let kill = out.kill.as_ref().expect("a kill ran");
        assert!(kill.nothing_left(), "{kill:?}");
        assert!(out.duration < Duration::from_secs(6), "{:?}", out.duration);
        let left = sb.settle(Duration::from_secs(2)).await;
        assert!(left.is_empty(), "left running: {left:?}");
    }
}

e2e_tests::on_both_transports! {
    async fn a_call_dropped_by_its_caller_kills_what_it_started(transport) {
        let sb = TestSandbox::start("client_gone").await;
        let exec = sb.runner(transport).await;
        let run = exec.run(&sb.id, sh("setsid sleep 300 & sleep 301"));
        // Dropping the future (a caller that gives up without cancelling) closes the stream; the
        // supervisor takes that as "the client went away". Not what the library relies on, but
        // nothing is left behind either way.
        assert!(
            tokio::time::timeout(Duration::from_millis(700), run)
                .await
                .is_err()
        );
        let left = sb.settle(Duration::from_secs(3)).await;
        assert!(left.is_empty(), "left running: {left:?}");
    }
}

e2e_tests::on_both_transports! {
    async fn a_missing_working_directory_is_a_clear_answer_not_a_broken_sandbox(transport) {
        let sb = TestSandbox::start("missing_cwd").await;
        let out = sb
            .runner(transport)
            .await
            .run(&sb.id, sh("pwd").with_working_dir("/workspace/not/there"))
            .await
            .expect("an outcome, not a sandbox error");
        assert_eq!(out.termination, Termination::Exited { code: 2 });
        let why = out.spawn_error.expect("why");
        assert!(
            why.contains("working directory /workspace/not/there"),
            "{why}"
        );
        let ok = sb
            .runner(transport)
            .await
            .run(&sb.id, sh("pwd").with_working_dir("/tmp"))
            .await
            .expect("run");
        assert_eq!(ok.stdout.to_string_lossy(), "/tmp\n");
    }
}

/// The supervisor spoken to directly, as a host that sends the request and then never says
/// another word (it died): the runner's own backstop kills the call at its deadline, orphans
/// that left the group and cleared their environment included, and says so in its report.
#[tokio::test(flavor = "multi_thread")]
async fn the_runners_own_backstop_kills_the_whole_call_when_the_host_says_nothing() {
    use bollard::exec::{StartExecOptions, StartExecResults};
    use bollard::models::ExecConfig;
    use futures_util::StreamExt;
    use sandbox_protocol::{KillCause, PROTOCOL_VERSION, Program, RunReport, RunRequest, frame};
    use tokio::io::AsyncWriteExt;

    let sb = TestSandbox::start("backstop").await;
    let exec_id = e2e_tests::unique();
    let config = ExecConfig {
        attach_stdin: Some(true),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        env: Some(vec![format!("{}={exec_id}", sandbox_protocol::EXEC_ID_ENV)]),
        cmd: Some(vec![
            sandbox_protocol::RUNNER_PATH.to_owned(),
            "run".to_owned(),
            exec_id.clone(),
        ]),
        user: Some(e2e_tests::SANDBOX_USER.to_owned()),
        ..Default::default()
    };
    let created = sb.docker.create_exec(&sb.id, config).await.expect("create");
    let start = StartExecOptions {
        detach: false,
        ..Default::default()
    };
    let StartExecResults::Attached {
        mut output,
        mut input,
    } = sb
        .docker
        .start_exec(&created.id, Some(start))
        .await
        .expect("start")
    else {
        panic!("detached");
    };
    let request = RunRequest {
        version: PROTOCOL_VERSION,
        exec_id: exec_id.clone(),
        env: Vec::new(),
        program: Program::Argv {
            argv: [
                "bash",
                "-c",
                "(setsid env -i sleep 300 &); echo started; sleep 60",
            ]
            .map(str::to_owned)
            .to_vec(),
        },
        cwd: None,
        drain_ms: 200,
        deadline_ms: Some(1500),
        grace_ms: 100,
        start_by_unix_ms: None,
    };
    let json = serde_json::to_vec(&request).expect("json");
    input
        .write_all(&frame::encode(frame::REQUEST, &json))
        .await
        .expect("send the request");
    input
        .write_all(&frame::encode(frame::EOF, &[]))
        .await
        .expect("send EOF");
    // From here on the host is silent but keeps the channel open.
    let started = Instant::now();
    let mut frames = frame::Decoder::new(frame::to_host_limit);
    let mut stdout = Vec::new();
    let mut report = None;
    while let Some(item) = tokio::time::timeout(Duration::from_secs(20), output.next())
        .await
        .expect("the runner ends the call by itself")
    {
        if let bollard::container::LogOutput::StdOut { message } = item.expect("stream") {
            frames.push(&message);
            while let Some((kind, payload)) = frames.next_frame().expect("frames") {
                match kind {
                    frame::STDOUT => stdout.extend(payload),
                    frame::REPORT => report = Some(payload),
                    _ => {}
                }
            }
        }
    }
    let report: RunReport =
        serde_json::from_slice(&report.expect("a report")).expect("the report parses");
    assert!(started.elapsed() >= Duration::from_millis(1400));
    assert_eq!(stdout, b"started\n");
    let (cause, kill) = report.kill.expect("the backstop killed");
    assert_eq!(cause, KillCause::Backstop);
    // `sleep 60` (bash execs its last command) and the orphan.
    assert_eq!(kill.found, 2, "{kill:?}");
    assert!(kill.survivors.is_empty(), "{kill:?}");
    let left = sb.settle(Duration::from_secs(2)).await;
    assert!(left.is_empty(), "left: {left:?}");
    drop(input);
}

e2e_tests::on_both_transports! {
    async fn a_request_too_large_for_one_frame_is_a_typed_error_and_a_script_is_not(transport) {
        let sb = TestSandbox::start("request_size").await;
        let long = "x".repeat(sandbox_protocol::frame::MAX_REQUEST);
        let err = sb
            .runner(transport)
            .await
            .run(&sb.id, ExecRequest::new(["echo", long.as_str()]))
            .await
            .expect_err("too large");
        assert!(
            matches!(err, sandbox_exec::ExecError::RequestTooLarge { limit, .. } if limit == sandbox_protocol::frame::MAX_REQUEST),
            "{err:?}"
        );
        // The same program as a script travels on stdin, whatever its size.
        let script = format!("x='{long}'; echo ${{#x}}");
        let out = sb
            .runner(transport)
            .await
            .run(&sb.id, ExecRequest::script(["bash"], ".sh", script))
            .await
            .expect("run");
        assert_eq!(out.stdout.to_string_lossy(), format!("{}\n", long.len()));
    }
}
