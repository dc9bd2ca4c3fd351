//! The hostile suite: faults, hostile workloads, hostile input and escape attempts, through
//! the tools the model calls. Each case checks that the call ends, says what happened, leaves
//! nothing running, and that the next call works.

use std::time::{Duration, Instant};

use e2e_tests::{FakeHost, TestTools, pool_config};
use sandbox_pool::Recreated;
use sandbox_tools::{DockerExecutor, ToolResult, ToolsConfig};
use serde_json::{Value, json};

/// What is left in the user's sandbox besides the init and its `sleep infinity`, as the
/// daemon sees it (waiting a moment for processes being killed right now to go).
async fn leftovers(t: &TestTools) -> Vec<String> {
    let id = t.pool.ensure("u").await.expect("ensure").container_id;
    let until = Instant::now() + Duration::from_secs(2);
    loop {
        let left = e2e_tests::processes(t.pool.docker(), &id).await;
        if left.is_empty() || Instant::now() > until {
            return left;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn assert_next_call_works(t: &TestTools) {
    let r = t.call("shell", json!({"command": "echo alive"})).await;
    assert_eq!(r.content, "[stdout]\nalive\n[exit 0]", "{r:?}");
}

fn memory_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

// ---- faults ----------------------------------------------------------------------------

e2e_tests::on_both_transports! {
    async fn a_container_removed_mid_call_ends_the_call_as_lost_and_the_next_call_recovers(transport) {
        let t = TestTools::start("hostile_removed").await.on(transport).await;
        assert_next_call_works(&t).await;
        let sb = t.pool.ensure("u").await.expect("ensure");
        let call = t.call("shell", json!({"command": "echo started; sleep 60"}));
        let remove = async {
            tokio::time::sleep(Duration::from_millis(800)).await;
            e2e_tests::force_remove(t.pool.docker(), &sb.container_id).await;
        };
        let started = Instant::now();
        let (r, ()) = tokio::join!(call, remove);
        assert!(started.elapsed() < Duration::from_secs(10));
        assert_eq!(r.exit_code, 1, "{r:?}");
        assert_eq!(
            r.content,
            "[Error executing shell via docker] sandbox lost: the container was removed"
        );
        assert!(r.meta.sandbox_lost());
        assert_next_call_works(&t).await;
    }
}

e2e_tests::on_both_transports! {
    async fn a_sandbox_oom_killed_mid_call_is_reported_and_replaced(transport) {
        let config = sandbox_pool::PoolConfig {
            memory: sandbox_pool::bytesize::ByteSize::mib(64),
            ..pool_config("hostile_oom")
        };
        let t = TestTools::start_on_pool(config).await.on(transport).await;
        assert_next_call_works(&t).await;
        let id = t.pool.ensure("u").await.expect("ensure").container_id;
        // The fault, injected as the keeper (the init's user, out of the sandbox user's reach):
        // make the init the OOM killer's choice, then run out of memory in several small processes
        // so that none of them outscores it. The whole container dies of OOM under the call.
        let hogs = "echo 1000 > /proc/1/oom_score_adj; for i in 1 2 3 4 5 6; do \
            python3 -c 'import time; x = b\"\\x01\" * (15 << 20); time.sleep(30)' & done; wait";
        let exec = sandbox_exec::ExecClient::new(t.pool.docker().clone());
        let call = t.call("shell", json!({"command": "echo working; sleep 30"}));
        let fault = async {
            tokio::time::sleep(Duration::from_millis(700)).await;
            exec.run(&id, sandbox_exec::ExecRequest::new(["bash", "-c", hogs]))
                .await
        };
        let (r, _) = tokio::join!(call, fault);
        assert_eq!(r.exit_code, 1, "{r:?}");
        let gvisor = e2e_tests::gvisor().await;
        assert!(oom_said(gvisor, &r.content), "{r:?}");
        let r = t.call("shell", json!({"command": "echo alive"})).await;
        assert_eq!(r.content, "[stdout]\nalive\n[exit 0]");
        assert!(oom_recreated(gvisor, r.meta.recreated.as_ref()), "{r:?}");
    }
}

/// Whether a lost sandbox's text says it ran out of memory. Docker 20.10 records an OOM kill in
/// the container's state only when the OOM event reaches it before the exit; under gVisor the
/// host kernel kills the sentry, whose death races that event. The library then reads the
/// daemon's event log, but should the event come later still, it says killed (137).
fn oom_said(gvisor: bool, text: &str) -> bool {
    text.ends_with("the container ran out of memory and was killed")
        || gvisor && text.ends_with("the container stopped (exit code 137)")
}

/// Whether the sandbox was recreated after an OOM kill (see [`oom_said`]).
fn oom_recreated(gvisor: bool, recreated: Option<&Recreated>) -> bool {
    match recreated {
        Some(Recreated::OomKilled) => true,
        Some(Recreated::Exited {
            exit_code: Some(137),
        }) => gvisor,
        _ => false,
    }
}

e2e_tests::on_both_transports! {
    async fn commands_cannot_stop_their_own_sandbox(transport) {
        let t = TestTools::start("hostile_kill_all").await.on(transport).await;
        let r = t
            .call("shell", json!({"command": "kill -9 -1; echo survived"}))
            .await;
        // `kill -9 -1` kills every process of the sandbox user, the call's own shell included,
        // but not the container's init and main process, which belong to another user. Over a
        // channel it kills the serve process too: the call is lost with its channel, and the
        // next one gets a new channel.
        match transport {
            e2e_tests::Transport::Exec => assert_eq!(r.exit_code, 137, "{r:?}"),
            e2e_tests::Transport::Channel => assert_eq!(
                (r.exit_code, r.content.as_str()),
                (
                    1,
                    "[Error executing shell via docker] sandbox lost: the sandbox's channel closed while the call ran"
                ),
                "{r:?}"
            ),
        }
        let r = t.call("shell", json!({"command": "echo alive"})).await;
        assert_eq!(r.content, "[stdout]\nalive\n[exit 0]");
        assert_eq!(r.meta.recreated, None, "the same sandbox");
    }
}

e2e_tests::on_both_transports! {
    async fn a_memory_hog_alone_is_killed_and_the_sandbox_survives(transport) {
        let config = sandbox_pool::PoolConfig {
            memory: sandbox_pool::bytesize::ByteSize::mib(64),
            ..pool_config("hostile_hog")
        };
        let t = TestTools::start_on_pool(config).await.on(transport).await;
        let r = t
            .call(
                "run_python",
                json!({"code": "x = b'\\x01' * (200 << 20)\nprint('never')"}),
            )
            .await;
        if e2e_tests::gvisor().await {
            // gVisor's kernel holds every process's memory in its own host process: past the
            // limit the host's OOM killer takes the whole sandbox, which is said and replaced.
            assert_eq!(r.exit_code, 1, "{r:?}");
            assert!(
                r.content
                    .starts_with("[Error executing run_python via docker] sandbox lost: ")
                    && oom_said(true, &r.content),
                "{r:?}"
            );
            let r = t.call("shell", json!({"command": "echo alive"})).await;
            assert_eq!(r.content, "[stdout]\nalive\n[exit 0]");
            assert!(oom_recreated(true, r.meta.recreated.as_ref()), "{r:?}");
            return;
        }
        assert_eq!(
            r.exit_code, 137,
            "killed by SIGKILL (the OOM killer): {r:?}"
        );
        assert!(!r.content.contains("never"));
        let r = t.call("shell", json!({"command": "echo alive"})).await;
        assert_eq!(r.content, "[stdout]\nalive\n[exit 0]");
        assert_eq!(r.meta.recreated, None, "the same sandbox");
    }
}

// ---- hostile workloads -------------------------------------------------------------------

e2e_tests::on_both_transports! {
    async fn a_fork_bomb_hits_the_pids_limit_ends_at_its_deadline_and_is_cleaned_up(transport) {
        let config = sandbox_pool::PoolConfig {
            pids_limit: 64,
            ..pool_config("hostile_forkbomb")
        };
        let t = TestTools::start_on_pool(config).await.on(transport).await;
        assert_next_call_works(&t).await;
        let id = t.pool.ensure("u").await.expect("ensure").container_id;
        // A bomb inside the call: it fills the pids limit, the call ends at its deadline, and the
        // kill (in place: no new process can start) leaves nothing.
        let started = Instant::now();
        let limits = e2e_tests::process_limits(64).await;
        let watch = async {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            let host = sandbox_pool::usage(t.pool.docker(), &id)
                .await
                .expect("stats")
                .pids;
            // Under gVisor the sandbox's own kernel holds its user to the limit (the host's
            // count is gVisor's threads): count the user's processes inside.
            let inside = match limits.nproc {
                Some(_) => Some(
                    e2e_tests::all_processes(t.pool.docker(), &id)
                        .await
                        .expect("the processes")
                        .iter()
                        .filter(|p| p.uid == e2e_tests::SANDBOX_UID)
                        .count() as u64,
                ),
                None => host,
            };
            (host, inside)
        };
        let bomb = t.call(
            "shell",
            json!({"command": "bomb() { bomb | bomb & }; bomb; sleep 30", "timeout": 3}),
        );
        let (r, pids) = tokio::join!(bomb, watch);
        assert_eq!(r.exit_code, 124, "{r:?}");
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "{:?}",
            started.elapsed()
        );
        let (host, inside) = pids;
        assert!(inside.is_some_and(|p| p <= 64), "the limit holds: {pids:?}");
        assert!(
            host.is_some_and(|p| p <= limits.host_pids as u64),
            "the host's limit holds: {pids:?}"
        );
        assert!(
            leftovers(&t).await.is_empty(),
            "nothing of the bomb is left"
        );
        assert_next_call_works(&t).await;

        // A bomb left behind by a call that returns at once keeps the sandbox at its limit. The
        // next call still works: when the runtime or the runner cannot start, the sandbox is
        // recycled and the call retried on a fresh one (`recreated` says so); in a moment when
        // the churning bomb frees a slot, it just runs.
        let r = t
            .call(
                "shell",
                json!({"command": "bomb() { bomb | bomb & }; bomb"}),
            )
            .await;
        assert!(started.elapsed() < Duration::from_secs(20), "{r:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
        for _ in 0..3 {
            let r = t.call("shell", json!({"command": "echo alive"})).await;
            assert_eq!(r.content, "[stdout]\nalive\n[exit 0]", "{r:?}");
            assert!(
                matches!(r.meta.recreated, None | Some(Recreated::Unusable)),
                "{r:?}"
            );
        }
    }
}

e2e_tests::on_both_transports! {
    async fn output_floods_end_at_the_deadline_with_memory_bounded(transport) {
        let t = TestTools::start("hostile_flood").await.on(transport).await;
        assert_next_call_works(&t).await;
        let before = memory_kib();
        for cmd in ["yes", "cat /dev/zero", "yes >&2"] {
            let r = t.call("shell", json!({"command": cmd, "timeout": 3})).await;
            assert_eq!(
                r.exit_code,
                124,
                "{cmd}: {}",
                &r.content[..200.min(r.content.len())]
            );
            assert!(r.meta.truncated, "{cmd}");
            // Head and tail of each stream, 32 KiB each by default, plus the message.
            assert!(r.content.len() < 200 * 1024, "{cmd}: {}", r.content.len());
        }
        let grown = memory_kib().saturating_sub(before);
        assert!(
            grown < 64 * 1024,
            "the test process grew by {grown} KiB for GBs of output"
        );
        assert!(leftovers(&t).await.is_empty());
    }
}

e2e_tests::on_both_transports! {
    async fn processes_that_ignore_term_close_their_output_or_recurse_are_all_killed(transport) {
        let t = TestTools::start("hostile_workloads").await.on(transport).await;
        let cases = [
            (
                "ignores TERM",
                "trap '' TERM; sleep 300 & trap '' TERM; sleep 301",
            ),
            ("closed stdout, still running", "exec >&- 2>&-; sleep 300"),
            (
                "deep recursion of background children",
                "f() { if [ $1 -gt 0 ]; then (f $(($1 - 1)) &); sleep 300; fi; }; f 25",
            ),
            (
                "python children in new sessions",
                "python3 -c 'import os, time\nfor _ in range(5):\n    if os.fork() == 0:\n        os.setsid(); time.sleep(300)\ntime.sleep(300)'",
            ),
        ];
        for (name, cmd) in cases {
            let started = Instant::now();
            let r = t.call("shell", json!({"command": cmd, "timeout": 2})).await;
            assert_eq!(r.exit_code, 124, "{name}: {r:?}");
            assert!(
                started.elapsed() < Duration::from_secs(8),
                "{name}: {:?}",
                started.elapsed()
            );
            let left = leftovers(&t).await;
            assert!(left.is_empty(), "{name}: left {left:?}");
        }
    }
}

e2e_tests::on_both_transports! {
    async fn a_process_that_closes_its_output_and_stays_behind_does_not_hold_the_call(transport) {
        let t = TestTools::start("hostile_closed_background").await.on(transport).await;
        let started = Instant::now();
        let r = t
            .call(
                "shell",
                json!({"command": "(exec >&- 2>&-; sleep 300) & echo left it"}),
            )
            .await;
        assert_eq!(r.content, "[stdout]\nleft it\n[exit 0]");
        assert!(started.elapsed() < Duration::from_secs(5));
        // What the call left keeps running, as it would in a terminal; the reaper ends it with
        // the sandbox.
        assert!(leftovers(&t).await.iter().any(|p| p.contains("sleep 300")));
    }
}

// ---- hostile input -------------------------------------------------------------------------

e2e_tests::on_both_transports! {
    async fn malformed_arguments_get_bad_argument_answers_for_every_tool(transport) {
        let t = TestTools::start("hostile_args").await.on(transport).await;
        let cases: Vec<(&str, Value)> = vec![
            ("shell", json!("echo hi")),
            ("shell", json!({"command": ["echo"]})),
            ("shell", json!({"command": null})),
            ("run_python", json!(null)),
            ("run_python", json!({"code": {"x": 1}})),
            ("read", json!([])),
            ("read", json!({})),
            ("read", json!({"path": "a", "offset": "one"})),
            ("read", json!({"path": "a", "limit": -3})),
            ("write", json!({"path": "a"})),
            ("write", json!({"path": "a", "content": 5})),
            (
                "edit",
                json!({"path": "a", "old_string": "", "new_string": "b"}),
            ),
            (
                "edit",
                json!({"path": "a", "old_string": "x", "new_string": "y", "replace_all": "yes"}),
            ),
            ("glob", json!({"pattern": 3})),
            ("grep", json!({"pattern": "x", "output_mode": "everything"})),
            ("grep", json!({"pattern": "x", "context": 1.5})),
            ("read", json!({"path": "a\u{0}b"})),
            ("shell", json!({"command": "echo a\u{0}b"})),
        ];
        for (tool, args) in cases {
            let r = t.call(tool, args.clone()).await;
            assert_eq!(r.exit_code, 2, "{tool} {args}: {r:?}");
            assert!(
                r.content.starts_with("[Error] bad arguments to "),
                "{tool} {args}: {r:?}"
            );
        }
        assert_next_call_works(&t).await;
    }
}

e2e_tests::on_both_transports! {
    async fn a_ten_megabyte_program_runs(transport) {
        let t = TestTools::start("hostile_big_program").await.on(transport).await;
        let code = format!(
            "data = '{}'\nprint(len(data))\n",
            "x".repeat(10 * 1024 * 1024)
        );
        let r = t.call("run_python", json!({"code": code})).await;
        assert_eq!(
            r.content,
            "[stdout]\n10485760\n[exit 0]",
            "{}",
            &r.content[..r.content.len().min(300)]
        );
        // A shell command too long for argv travels as a script instead.
        let long = format!("x='{}'; echo ${{#x}}", "y".repeat(300 * 1024));
        let r = t.call("shell", json!({"command": long})).await;
        assert_eq!(r.content, "[stdout]\n307200\n[exit 0]");
    }
}

e2e_tests::on_both_transports! {
    async fn nul_bytes_and_invalid_utf8_in_output_are_shown_not_fatal(transport) {
        let t = TestTools::start("hostile_bytes").await.on(transport).await;
        let r = t
            .call(
                "shell",
                json!({"command": "printf 'a\\000b\\377\\376c\\n'"}),
            )
            .await;
        assert_eq!(r.exit_code, 0);
        assert_eq!(r.content, "[stdout]\na\u{0}b\u{fffd}\u{fffd}c\n[exit 0]");
        let r = t
            .call("write", json!({"path": "nul.bin", "content": "a\u{0}b"}))
            .await;
        assert_eq!(r.exit_code, 0, "{r:?}");
        let r = t.call("read", json!({"path": "nul.bin"})).await;
        assert_eq!(r.exit_code, 1, "binary files are refused: {r:?}");
        assert!(r.content.contains("binary"), "{r:?}");
    }
}

e2e_tests::on_both_transports! {
    async fn dotdot_absolute_host_paths_and_outward_symlinks_stay_in_the_container(transport) {
        let t = TestTools::start("hostile_paths").await.on(transport).await;
        // A host secret right next to the user root.
        let secret_dir = tempfile::tempdir().expect("host dir");
        let secret = secret_dir.path().join("secret.txt");
        std::fs::write(&secret, "host secret").expect("write secret");
        let host_path = secret.display().to_string();
        let r = t.call("read", json!({"path": host_path})).await;
        assert_eq!(r.exit_code, 1, "{r:?}");
        assert!(!r.content.contains("host secret"));
        let r = t
            .call("read", json!({"path": format!("../../..{host_path}")}))
            .await;
        assert!(!r.content.contains("host secret"), "{r:?}");
        let r = t
            .call(
                "write",
                json!({"path": "../../../tmp/escaped.txt", "content": "x"}),
            )
            .await;
        assert_eq!(r.exit_code, 0, "the container's own /tmp: {r:?}");
        assert!(
            !std::path::Path::new("/tmp/escaped.txt").exists(),
            "not the host's /tmp"
        );
        let r = t
            .call("shell", json!({"command": format!("ln -s {} link && cat link/secret.txt", secret_dir.path().display())}))
            .await;
        assert!(!r.content.contains("host secret"), "{r:?}");
        let r = t.call("read", json!({"path": "link/secret.txt"})).await;
        assert!(!r.content.contains("host secret"), "{r:?}");
        let r = t
            .call("grep", json!({"pattern": "secret", "path": "/"}))
            .await;
        assert!(!r.content.contains("host secret"), "{r:?}");
    }
}

e2e_tests::on_both_transports! {
    async fn a_fifo_given_to_read_ends_at_once_instead_of_hanging(transport) {
        let t = TestTools::start("hostile_fifo").await.on(transport).await;
        let r = t.call("shell", json!({"command": "mkfifo pipe"})).await;
        assert_eq!(r.exit_code, 0);
        let started = Instant::now();
        let r = t.call("read", json!({"path": "pipe"})).await;
        assert_eq!(r.exit_code, 1, "{r:?}");
        assert!(r.content.contains("not a regular file"), "{r:?}");
        assert!(started.elapsed() < Duration::from_secs(5));
        // And a read that blocks anyway (a shell reading the FIFO) ends at its deadline.
        let r = t
            .call("shell", json!({"command": "cat pipe", "timeout": 1}))
            .await;
        assert_eq!(r.exit_code, 124);
        let r = t.call("grep", json!({"pattern": "x", "timeout": 1})).await;
        assert!(matches!(r.exit_code, 0 | 1), "grep skips the FIFO: {r:?}");
    }
}

// ---- escape checks -------------------------------------------------------------------------

async fn sh(t: &TestTools, cmd: &str) -> ToolResult {
    t.call("shell", json!({"command": cmd})).await
}

e2e_tests::on_both_transports! {
    async fn inside_the_sandbox_there_is_no_way_out(transport) {
        let t = TestTools::start("hostile_escape").await.on(transport).await;
        // gVisor lets a process make a user namespace inside its own kernel: root there owns
        // nothing of the host's, and no host kernel code is reached.
        let user_ns = if e2e_tests::gvisor().await { "unshared" } else { "refused" };
        let checks: &[(&str, &str, &str)] = &[
            ("not root, no login account", "id -u", "61000"),
            (
                "no capabilities",
                "grep -E '^Cap(Prm|Eff|Bnd|Amb)' /proc/self/status | awk '{print $2}' | sort -u",
                "0000000000000000",
            ),
            (
                "no new privileges",
                "python3 -c 'import ctypes; print(ctypes.CDLL(None).prctl(39, 0, 0, 0, 0))'",
                "1",
            ),
            (
                "cannot mount",
                "mkdir -p /tmp/m && mount -t tmpfs none /tmp/m >/dev/null 2>&1 && echo mounted || echo refused",
                "refused",
            ),
            (
                "no user namespaces",
                "unshare -Ur true >/dev/null 2>&1 && echo unshared || echo refused",
                user_ns,
            ),
            ("no network but lo", "cd /sys/class/net && echo *", "lo"),
            (
                // In the user's own home, so that no permission check answers first.
                "read-only root filesystem",
                "touch ~/x 2>&1 | grep -o 'Read-only file system'",
                "Read-only file system",
            ),
            (
                "no host processes",
                "ps -eo comm= | grep -c -x -e dockerd -e containerd -e systemd -e init",
                "0",
            ),
            (
                "a handful of processes only",
                "[ $(ps -e --no-headers | wc -l) -lt 10 ] && echo few",
                "few",
            ),
            (
                "no setuid way up",
                "su -c true root </dev/null >/dev/null 2>&1 && echo root || echo refused",
                "refused",
            ),
            (
                "no raw sockets",
                "python3 -c 'import socket; socket.socket(socket.AF_INET, socket.SOCK_RAW, 1)' 2>&1 | grep -c 'Operation not permitted'",
                "1",
            ),
            (
                "no outside address",
                "python3 -c 'import socket; socket.create_connection((\"10.0.0.1\", 80), 1)' 2>&1 | grep -c -e 'Network is unreachable' -e 'No route to host'",
                "1",
            ),
        ];
        for (what, cmd, want) in checks {
            let r = sh(&t, cmd).await;
            assert_eq!(
                r.content,
                format!("[stdout]\n{want}\n[exit {}]", r.exit_code),
                "{what}: {r:?}"
            );
        }
        // Only the user root, the init and what Docker always mounts: no host path leaks in.
        let r = sh(
            &t,
            "cat /proc/mounts | awk '{print $2}' | grep -v -e '^/proc' -e '^/sys' -e '^/dev' | sort",
        )
        .await;
        assert_eq!(
            r.content,
            "[stdout]\n/\n/etc/hostname\n/etc/hosts\n/etc/resolv.conf\n/run\n/tmp\n/usr/sbin/docker-init\n/workspace\n[exit 0]"
        );
    }
}

e2e_tests::on_both_transports! {
    async fn ptrace_cannot_reach_another_users_process(transport) {
        let t = TestTools::start("hostile_ptrace").await.on(transport).await;
        let sb = t.pool.ensure("u").await.expect("ensure");
        // A root-owned process in the sandbox (run by the test as root, without capabilities).
        let exec = sandbox_exec::ExecClient::new(t.pool.docker().clone());
        let root_sleep = exec.run(
            &sb.container_id,
            sandbox_exec::ExecRequest::new(["sleep", "7"]).with_user("root"),
        );
        let attach = async {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let code = "import ctypes, subprocess\n\
    pid = int(subprocess.check_output(['pgrep', '-u', 'root', '-x', 'sleep']).split()[0])\n\
    libc = ctypes.CDLL(None, use_errno=True)\n\
    r = libc.ptrace(16, pid, 0, 0)\n\
    print('attached' if r == 0 else 'refused', ctypes.get_errno())";
            t.call("run_python", json!({"code": code})).await
        };
        let (_, r) = tokio::join!(root_sleep, attach);
        assert_eq!(r.content, "[stdout]\nrefused 1\n[exit 0]", "EPERM: {r:?}");
    }
}

// ---- many calls through one executor shape -------------------------------------------------

e2e_tests::on_both_transports! {
    async fn an_executor_per_user_shares_one_pool(transport) {
        let t = TestTools::start("hostile_shared").await.on(transport).await;
        let other: DockerExecutor = t.tools.for_user("v", t.pool.user_root("v"));
        let r = sandbox_tools::Executor::call_tool(
            &other,
            "shell",
            json!({"command": "echo v > mine.txt; ls"}),
            &sandbox_tools::CallContext::new("t"),
        )
        .await;
        assert_eq!(r.content, "[stdout]\nmine.txt\n[exit 0]", "{r:?}");
        let r = t
            .call("shell", json!({"command": "ls | wc -l"}))
            .await;
        assert_eq!(
            r.content, "[stdout]\n0\n[exit 0]",
            "users do not see each other's files"
        );
        let _ = FakeHost::all();
        let _ = ToolsConfig::default();
    }
}

// ---- integrity: one call's leftovers against later calls (issue #9) ----------------------

/// A leftover that watches `/proc` for every new `sandbox-runner` process and goes for its
/// standard streams: opens `/proc/<pid>/fd/{0,1,2}` read-write, writes `payload` into each
/// (once, or forever with `flood`), steals what it can read, and holds them open. It counts
/// the streams it managed to open in `/tmp/attack-opened` and beats `/tmp/attack-alive`.
///
/// A stream it opens is used only if the process is still a runner then: a command the
/// supervisor starts shows the runner's command line until it execs, and a command's own
/// processes are within reach of every process of the sandbox user (see the README's trust
/// model); the runner's are not.
fn stream_attacker(payload: &str, flood: bool) -> String {
    format!(
        r#"import os, threading, time
me = os.getpid()
seen, held, opened = set(), [], [0]
payload = {payload:?}.encode()
def steal(fd):
    while True:
        try:
            if not os.read(fd, 65536): return
        except OSError: return
def pour(fd):
    while True:
        try: os.write(fd, payload)
        except BlockingIOError: time.sleep(0.001)
        except OSError: return
        if not {flood}: return
def is_runner(pid):
    try: return open('/proc/%d/cmdline' % pid, 'rb').read().split(b'\0')[0].endswith(b'sandbox-runner')
    except OSError: return False
def attack(pid):
    for n in (0, 1, 2):
        try: fd = os.open('/proc/%d/fd/%d' % (pid, n), os.O_RDWR | os.O_NONBLOCK)
        except OSError: continue
        if not is_runner(pid):
            os.close(fd); continue
        opened[0] += 1
        held.append(fd)
        with open('/tmp/attack-opened', 'w') as f: f.write(str(opened[0]))
        threading.Thread(target=pour, args=(fd,), daemon=True).start()
        if n == 0:
            rd = os.dup(fd); os.set_blocking(rd, True)
            threading.Thread(target=steal, args=(rd,), daemon=True).start()
with open('/tmp/attack-opened', 'w') as f: f.write('0')
beat = 0
while True:
    beat += 1
    if beat % 200 == 0:
        with open('/tmp/attack-alive', 'w') as f: f.write(str(beat))
    for name in os.listdir('/proc'):
        if not name.isdigit() or int(name) == me or int(name) in seen: continue
        if is_runner(int(name)):
            seen.add(int(name)); attack(int(name))
"#,
        flood = if flood { "True" } else { "False" },
    )
}

/// Starts `stream_attacker` as a leftover of a call that returns at once, and waits until it
/// is watching.
async fn leave_attacker(t: &TestTools, payload: &str, flood: bool) {
    let script = stream_attacker(payload, flood);
    let r = t
        .call("write", json!({"path": "attack.py", "content": script}))
        .await;
    assert_eq!(r.exit_code, 0, "{r:?}");
    let r = sh(
        t,
        "(exec python3 /workspace/attack.py </dev/null >/dev/null 2>&1 &); \
         for i in $(seq 100); do [ -s /tmp/attack-alive ] && exit 0; sleep 0.05; done; exit 1",
    )
    .await;
    assert_eq!(r.exit_code, 0, "the attacker runs: {r:?}");
}

async fn streams_opened_by_attacker(t: &TestTools) -> String {
    sh(t, "cat /tmp/attack-opened").await.content
}

e2e_tests::on_both_transports! {
    async fn a_leftover_cannot_inject_into_steal_or_hold_open_a_later_calls_streams(transport) {
        let t = TestTools::start("hostile_inject").await.on(transport).await;
        let text = "line one\n第二行\n".repeat(50);
        let r = t
            .call("write", json!({"path": "notes.txt", "content": text}))
            .await;
        assert_eq!(r.exit_code, 0, "{r:?}");
        leave_attacker(&t, "INJECTED\n", false).await;
        for round in 0..10 {
            let r = t.call("read", json!({"path": "notes.txt"})).await;
            assert_eq!(r.exit_code, 0, "round {round}: {r:?}");
            assert!(!r.content.contains("INJECTED"), "round {round}: {r:?}");
            assert!(r.content.contains("第二行"), "round {round}: {r:?}");
            let started = Instant::now();
            let r = sh(&t, "echo exact").await;
            assert_eq!(r.content, "[stdout]\nexact\n[exit 0]", "round {round}");
            assert!(
                started.elapsed() < Duration::from_secs(2),
                "round {round}: the call ends at once, not at its deadline: {:?}",
                started.elapsed()
            );
            let r = t
                .call("run_python", json!({"code": "print(sum(range(10)))"}))
                .await;
            assert_eq!(r.content, "[stdout]\n45\n[exit 0]", "round {round}");
        }
        assert_eq!(
            streams_opened_by_attacker(&t).await,
            "[stdout]\n0\n[exit 0]",
            "no runner stream was within the leftover's reach"
        );
    }
}

e2e_tests::on_both_transports! {
    async fn a_flood_into_the_kill_exec_does_not_reach_the_service(transport) {
        let t = TestTools::start("hostile_kill_flood").await.on(transport).await;
        leave_attacker(&t, &"F".repeat(64 * 1024), true).await;
        let before = memory_kib();
        // The call stops its own supervisor, so the in-band kill cannot run and the kill goes
        // through a second exec: the runner the flooder goes for.
        let r2 = t
            .call(
                "shell",
                json!({"command": "kill -STOP $PPID; sleep 30", "timeout": 2}),
            )
            .await;
        let grown = memory_kib().saturating_sub(before);
        assert_eq!(
            r2.exit_code,
            124,
            "{}",
            &r2.content[..r2.content.len().min(300)]
        );
        assert!(
            grown < 64 * 1024,
            "the service grew by {grown} KiB while the flooder ran"
        );
        assert!(r2.content.len() < 200 * 1024);
        let kill = r2.meta.kill.as_ref().expect("a kill report");
        assert!(kill.nothing_left(), "{kill:?}");
        assert_next_call_works(&t).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_supervisors_own_kill_reaches_orphans_that_left_the_group_and_cleared_their_environment()
 {
    let t = TestTools::start("hostile_orphans").await;
    // The subshell exits at once: its `sleep` is re-parented to the supervisor (a subreaper),
    // in a session of its own, with no environment. Timeout, then cancel, then a client that
    // goes away: the supervisor kills in place each time.
    let escapee = "(setsid env -i sleep 300 &); (setsid env -i sleep 301 &); sleep 60";
    assert_next_call_works(&t).await;
    let r = t
        .call("shell", json!({"command": escapee, "timeout": 2}))
        .await;
    assert_eq!(r.exit_code, 124, "{r:?}");
    let kill = r.meta.kill.as_ref().expect("a kill report");
    let report = kill.report.as_ref().expect("the supervisor's report");
    assert!(report.found >= 3, "{report:?}");
    assert!(report.survivors.is_empty(), "{report:?}");
    let left = leftovers(&t).await;
    assert!(left.is_empty(), "after the timeout: {left:?}");

    let cancel = tokio_util::sync::CancellationToken::new();
    let ctx = sandbox_tools::CallContext::new("t").with_cancel(cancel.clone());
    let call =
        sandbox_tools::Executor::call_tool(&t.tools, "shell", json!({"command": escapee}), &ctx);
    let stop = async {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        cancel.cancel();
    };
    let (r, ()) = tokio::join!(call, stop);
    assert_eq!(r.exit_code, 130, "{r:?}");
    let report = r.meta.kill.as_ref().and_then(|k| k.report.clone());
    assert!(report.is_some_and(|k| k.survivors.is_empty()), "{r:?}");
    let left = leftovers(&t).await;
    assert!(left.is_empty(), "after the cancel: {left:?}");

    let gone = tokio::time::timeout(
        Duration::from_millis(1500),
        t.call("shell", json!({"command": escapee})),
    )
    .await;
    assert!(gone.is_err(), "the call was still running when dropped");
    let left = leftovers(&t).await;
    assert!(left.is_empty(), "after the client went away: {left:?}");
    assert_next_call_works(&t).await;
}

/// The end of call `SBX_EXEC_ID` as the supervisor of protocol 3 wrote it on stderr, and as
/// frames of protocol 4 (stdout, stderr and report), each claiming the sandbox is out of
/// processes.
const FORGERY: &str = r#"
id=$SBX_EXEC_ID
report='{"status":null,"spawn_error":"forged","spawn_failure":"resources","leaked_output":false,"elapsed_ms":1}'
printf '\0\036SBX-END %s %s\n' "$id" "$report" >&2
python3 - "$report" <<'PY'
import os, struct, sys
report = sys.argv[1].encode()
for fd in (1, 2):
    for kind in (16, 17, 18, 2):
        os.write(fd, struct.pack('>BI', kind, len(report)) + report)
PY
echo ran >> runs.txt
"#;

e2e_tests::on_both_transports! {
    async fn a_forged_end_of_call_is_the_commands_own_output(transport) {
        let t = TestTools::start("hostile_forged_end").await.on(transport).await;
        let first = t.pool.ensure("u").await.expect("ensure").container_id;
        let r = sh(&t, &format!("{FORGERY}\nexit 3")).await;
        assert_eq!(r.exit_code, 3, "{r:?}");
        assert!(r.content.contains("SBX-END"), "{r:?}");
        assert!(
            r.content.contains(r#""spawn_failure":"resources""#),
            "{r:?}"
        );
        assert!(r.content.ends_with("[exit 3]"), "{r:?}");
        assert_eq!(r.meta.recreated, None, "the sandbox was kept: {r:?}");
        let r = sh(&t, "wc -l < runs.txt").await;
        assert_eq!(r.content, "[stdout]\n1\n[exit 0]", "the command ran once");
        assert_eq!(
            t.pool.ensure("u").await.expect("ensure").container_id,
            first
        );

        // A forged report with an absurd signal, then the supervisor killed so that no true
        // report follows: the call ends as killed, without a panic or a wrapped number.
        let r = sh(
            &t,
            r#"printf '\0\036SBX-END %s {"status":{"kind":"signaled","signal":2147483647},"leaked_output":false,"elapsed_ms":0}\n' "$SBX_EXEC_ID" >&2; kill -9 $PPID; sleep 5"#,
        )
        .await;
        assert_eq!(r.exit_code, 137, "{r:?}");
        assert_eq!(
            t.pool.ensure("u").await.expect("ensure").container_id,
            first
        );
        assert_next_call_works(&t).await;
    }
}

e2e_tests::on_both_transports! {
    async fn a_command_of_control_characters_too_long_for_argv_as_json_runs(transport) {
        let t = TestTools::start("hostile_control_chars").await.on(transport).await;
        // 30 KB of control characters: about 180 KB once escaped as JSON, more than one argument
        // may hold (128 KiB).
        let noise: String = (0..30_000).map(|i| char::from(1 + (i % 8) as u8)).collect();
        let r = sh(&t, &format!(": '{noise}'; echo ok")).await;
        assert_eq!(
            r.content,
            "[stdout]\nok\n[exit 0]",
            "{}",
            &r.content[..r.content.len().min(300)]
        );
        // What remains is one clear limit.
        let huge = format!(
            "echo {}",
            "y".repeat(sandbox_tools::args::MAX_PROGRAM_BYTES)
        );
        let r = sh(&t, &huge).await;
        assert_eq!(r.exit_code, 2, "{}", &r.content[..r.content.len().min(300)]);
        assert_eq!(
            r.content,
            format!(
                "[Error] bad arguments to shell: command is {} bytes, at most {}",
                huge.len(),
                sandbox_tools::args::MAX_PROGRAM_BYTES
            )
        );
    }
}

e2e_tests::on_both_transports! {
    async fn the_quota_walk_counts_the_user_root_and_nothing_beyond_it(transport) {
        let config = ToolsConfig {
            quotas: sandbox_tools::QuotaConfig {
                disk_bytes_per_user: Some(sandbox_pool::bytesize::ByteSize::kib(200)),
                cache_ttl: Duration::ZERO,
                ..Default::default()
            },
            ..Default::default()
        };
        let t = TestTools::start_with("hostile_quota_walk", FakeHost::all(), config).await.on(transport).await;
        // The sandbox points links at everything it can name, and owns 100 KiB.
        let r = sh(
            &t,
            "ln -s / root; ln -s /workspace/.. up; ln -s /etc etc; mkdir -p d; ln -s /usr d/usr; \
             head -c 102400 /dev/zero > own.bin",
        )
        .await;
        assert_eq!(r.exit_code, 0, "{r:?}");
        // The host mounts another filesystem inside the root, with 1 MiB in it (the tests run as
        // root, as CI does): not the user's files either.
        let mnt = t.root.join("mnt");
        std::fs::create_dir(&mnt).expect("mount point");
        rustix::mount::mount(
            "tmpfs",
            &mnt,
            "tmpfs",
            rustix::mount::MountFlags::empty(),
            c"size=4m",
        )
        .expect("mount a tmpfs (the tests run as root)");
        struct Unmount(std::path::PathBuf);
        impl Drop for Unmount {
            fn drop(&mut self) {
                let _ = rustix::mount::unmount(&self.0, rustix::mount::UnmountFlags::DETACH);
            }
        }
        let _unmount = Unmount(mnt.clone());
        std::fs::write(mnt.join("big"), vec![0u8; 1024 * 1024]).expect("write");

        let store = sandbox_tools::DirUsage::new(Duration::ZERO);
        let used = sandbox_tools::UsageStore::usage(&store, "u", &t.root)
            .await
            .expect("measured");
        // Its own file alone: no link followed, no mount crossed.
        assert_eq!(used, 102_400);
        let r = t
            .call(
                "write",
                json!({"path": "small.txt", "content": "x".repeat(1000)}),
            )
            .await;
        assert_eq!(r.exit_code, 0, "within the quota: {r:?}");
        let r = t
            .call(
                "write",
                json!({"path": "big.txt", "content": "x".repeat(150_000)}),
            )
            .await;
        assert_eq!(r.exit_code, 2, "over the quota: {r:?}");
    }
}

e2e_tests::on_both_transports! {
    async fn pools_sharing_a_daemon_leave_each_others_running_calls_alone(transport) {
        // Pool B, a service process, runs a long call. To the other pools (the same configuration:
        // timings are not part of it) every sandbox looks idle at once: idle timeout 1 ms, reaper
        // every 100 ms.
        let service = pool_config("hostile_shared_daemon");
        let config = sandbox_pool::PoolConfig {
            idle_timeout: Duration::from_millis(1),
            reap_interval: Duration::from_millis(100),
            ..service.clone()
        };
        let b = TestTools::start_on_pool(service).await.on(transport).await;
        assert_next_call_works(&b).await;
        let id = b.pool.ensure("u").await.expect("ensure").container_id;
        let call = b.call("shell", json!({"command": "sleep 20; echo done"}));
        let others = async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let users = b.pool.users.path();
            // Pool A, same configuration, starts (adopting B's sandbox), reaps, and starts again.
            let a = e2e_tests::TestPool::start_on(config.clone(), users).await;
            assert!(a.reap_idle().await.is_empty(), "a busy sandbox is not idle");
            tokio::time::sleep(Duration::from_millis(500)).await;
            let again = e2e_tests::TestPool::start_on(config.clone(), users).await;
            // Pool C, another configuration: B's sandbox is outdated for it, and busy.
            let changed = sandbox_pool::PoolConfig {
                memory: sandbox_pool::bytesize::ByteSize::mib(300),
                ..config.clone()
            };
            let c = e2e_tests::TestPool::start_on(changed, users).await;
            tokio::time::sleep(Duration::from_millis(500)).await;
            let still = e2e_tests::processes(b.pool.docker(), &id).await;
            assert!(still.iter().any(|p| p.contains("sleep 20")), "{still:?}");
            // A and its restart go away (their reapers would rightly take the sandbox once B's
            // call ends). C's call for the same user waits for B's call to end, then replaces it.
            for pool in [a, again] {
                pool.shutdown(sandbox_pool::ShutdownPolicy::Keep)
                    .await
                    .expect("shutdown");
            }
            let replaced = c.acquire("u").await.expect("acquire");
            (
                replaced.recreated.clone(),
                replaced.container_id.clone(),
                Instant::now(),
            )
        };
        let started = Instant::now();
        let (r, (recreated, new_id, replaced_at)) = tokio::join!(call, others);
        assert_eq!(r.content, "[stdout]\ndone\n[exit 0]", "{r:?}");
        assert!(started.elapsed() >= Duration::from_secs(20));
        assert!(replaced_at.duration_since(started) >= Duration::from_secs(19));
        assert_eq!(recreated, Some(Recreated::ConfigChanged));
        assert_ne!(new_id, id);
    }
}

e2e_tests::on_both_transports! {
    async fn the_model_is_told_the_configured_defaults_and_they_hold(transport) {
        let config = ToolsConfig {
            shell_timeout: Duration::from_secs(2),
            file_timeout: Duration::from_secs(5),
            output_head: sandbox_pool::bytesize::ByteSize::kib(4),
            ..ToolsConfig::default()
        };
        let t = TestTools::start_with("hostile_told", FakeHost::all(), config).await.on(transport).await;
        let schemas = sandbox_tools::Executor::schemas(&t.tools);
        let shell = schemas
            .iter()
            .find(|s| s["name"] == "shell")
            .expect("shell's schema");
        let told = shell["description"].as_str().expect("description");
        assert!(told.contains("Times out after 2 s"), "{told}");
        assert!(told.contains("the first 4 KiB"), "{told}");
        assert!(
            shell["parameters"]["properties"]["timeout"]["description"]
                .as_str()
                .is_some_and(|d| d.contains("(default 2, at most 600)")),
            "{shell}"
        );
        let read = schemas.iter().find(|s| s["name"] == "read").expect("read");
        assert!(
            read["description"]
                .as_str()
                .is_some_and(|d| d.contains("after 5 s"))
        );
        // And that is what a call without `timeout` gets.
        assert_next_call_works(&t).await;
        let r = sh(&t, "sleep 30").await;
        assert_eq!(r.content, "[Error] command timed out after 2s", "{r:?}");
    }
}

e2e_tests::on_both_transports! {
    async fn a_uid_chosen_at_pool_start_owns_the_user_roots_the_pool_makes_for_it_alone(transport) {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let config = sandbox_pool::PoolConfig {
            sandbox_uid: Some(61003),
            sandbox_user: "61003:61003".to_owned(),
            ..pool_config("hostile_uid")
        };
        let pool = e2e_tests::TestPool::start(config).await;
        let lease = pool.acquire("w").await.expect("acquire");
        let meta = std::fs::metadata(&lease.user_root).expect("the pool made the user root");
        assert_eq!(meta.uid(), 61003);
        assert_eq!(
            meta.permissions().mode() & 0o777,
            0o700,
            "for the sandbox uid alone"
        );
        let exec = sandbox_exec::ExecClient::new(pool.docker().clone());
        let out = exec
            .run(
                &lease.container_id,
                sandbox_exec::ExecRequest::new(["bash", "-c", "id -u; echo x > /workspace/f"])
                    .with_user(&lease.exec_user),
            )
            .await
            .expect("run");
        assert_eq!(out.stdout.to_string_lossy(), "61003\n", "{out:?}");
        let file = std::fs::metadata(lease.user_root.join("f")).expect("the file on the host");
        assert_eq!(file.uid(), 61003);
        // The default sandbox uid is no login account here; root is one (and would be refused).
        assert_eq!(
            sandbox_pool::host::login_account(e2e_tests::SANDBOX_UID),
            None
        );
        assert_eq!(
            sandbox_pool::host::login_account(0).as_deref(),
            Some("root")
        );
    }
}

// ---- the channel's own faults (issue #10) -------------------------------------------------

/// Signals every serve process of the sandbox (a hostile command's way to find them).
const AT_SERVE: &str = "-f '^/sandbox/bin/sandbox-runner serve '";

/// Tools over the channel, with it open (a first call made it).
async fn on_the_channel(name: &str) -> TestTools {
    let t = TestTools::start(name)
        .await
        .on(e2e_tests::Transport::Channel)
        .await;
    assert_next_call_works(&t).await;
    t
}

fn channel_of(t: &TestTools) -> sandbox_pool::ChannelInfo {
    t.pool.snapshot()[0]
        .channel
        .clone()
        .expect("the pool's own view")
}

async fn lines(t: &TestTools, file: &str) -> String {
    sh(t, &format!("wc -l < {file}")).await.content
}

const LOST: &str = "[Error executing shell via docker] sandbox lost: the sandbox's channel closed while the call ran";

#[tokio::test(flavor = "multi_thread")]
async fn a_first_call_runs_through_an_exec_while_the_channel_opens_behind_it() {
    let t = TestTools::start("channel_background")
        .await
        .on_cold(e2e_tests::Transport::Channel);
    assert_next_call_works(&t).await;
    // Nobody calls now: the open the first call started completes on its own.
    let waited = Instant::now();
    while !channel_of(&t).open {
        assert!(waited.elapsed() < Duration::from_secs(10), "never opened");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        channel_of(&t).calls_served,
        0,
        "the first call went by exec"
    );
    assert_next_call_works(&t).await;
    let channel = channel_of(&t);
    assert_eq!(
        (channel.calls_served, channel.reopened),
        (1, 0),
        "{channel:?}"
    );
    assert!(leftovers(&t).await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_serve_process_killed_mid_call_loses_that_call_only_and_the_channel_reopens() {
    let t = on_the_channel("channel_kill_mid").await;
    let r = sh(
        &t,
        &format!("echo ran >> runs.txt; sleep 300 & pkill -9 {AT_SERVE}; sleep 30; echo never"),
    )
    .await;
    assert_eq!((r.exit_code, r.content.as_str()), (1, LOST), "{r:?}");
    assert!(
        leftovers(&t).await.is_empty(),
        "its supervisor killed the call"
    );
    assert_next_call_works(&t).await;
    assert_eq!(
        lines(&t, "runs.txt").await,
        "[stdout]\n1\n[exit 0]",
        "ran once"
    );
    t.channel_opens().await;
    let channel = channel_of(&t);
    assert!(channel.open && channel.reopened == 1, "{channel:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_serve_process_killed_between_calls_costs_no_call() {
    let t = on_the_channel("channel_kill_between").await;
    let r = sh(
        &t,
        &format!("(sleep 0.3; pkill -9 {AT_SERVE}) >/dev/null 2>&1 & echo left"),
    )
    .await;
    assert_eq!(r.content, "[stdout]\nleft\n[exit 0]");
    tokio::time::sleep(Duration::from_secs(1)).await;
    for i in 0..5 {
        let r = sh(&t, &format!("echo {i} >> runs.txt; echo {i}")).await;
        assert_eq!(r.content, format!("[stdout]\n{i}\n[exit 0]"), "call {i}");
    }
    assert_eq!(lines(&t, "runs.txt").await, "[stdout]\n5\n[exit 0]");
    assert!(leftovers(&t).await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_serve_process_stopped_mid_call_is_killed_and_that_call_lost_only() {
    let t = on_the_channel("channel_stop_mid").await;
    let started = Instant::now();
    let r = sh(
        &t,
        &format!("echo ran >> runs.txt; sleep 300 & pkill -STOP {AT_SERVE}; echo done"),
    )
    .await;
    assert_eq!((r.exit_code, r.content.as_str()), (1, LOST), "{r:?}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert!(
        leftovers(&t).await.is_empty(),
        "the stopped channel was killed with its calls"
    );
    assert_next_call_works(&t).await;
    assert_eq!(
        lines(&t, "runs.txt").await,
        "[stdout]\n1\n[exit 0]",
        "ran once"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_serve_process_stopped_between_calls_delays_the_next_call_only() {
    let t = on_the_channel("channel_stop_between").await;
    let r = sh(
        &t,
        &format!("(sleep 0.3; pkill -STOP {AT_SERVE}) >/dev/null 2>&1 & echo left"),
    )
    .await;
    assert_eq!(r.content, "[stdout]\nleft\n[exit 0]");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let started = Instant::now();
    let r = sh(&t, "echo ran >> runs.txt; echo once").await;
    assert_eq!(r.content, "[stdout]\nonce\n[exit 0]", "{r:?}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        lines(&t, "runs.txt").await,
        "[stdout]\n1\n[exit 0]",
        "ran once"
    );
    assert!(leftovers(&t).await.is_empty());
    t.channel_opens().await;
    assert_eq!(channel_of(&t).reopened, 1, "reopened");
}

#[tokio::test(flavor = "multi_thread")]
async fn signals_and_floods_at_the_serve_process_change_no_result() {
    let t = on_the_channel("channel_flood").await;
    // A leftover that pelts every serve process with signals it ignores, and a call that
    // floods the channel, while small calls go over it.
    let r = sh(
        &t,
        &format!(
            "(for i in $(seq 3000); do pkill -CHLD {AT_SERVE}; pkill -URG {AT_SERVE}; \
             pkill -WINCH {AT_SERVE}; pkill -CONT {AT_SERVE}; done) >/dev/null 2>&1 & echo on"
        ),
    )
    .await;
    assert_eq!(r.content, "[stdout]\non\n[exit 0]");
    let flood = t.call(
        "shell",
        json!({"command": "head -c 100000000 /dev/zero; echo end"}),
    );
    let small = async {
        for i in 0..20 {
            let r = sh(&t, &format!("echo {i}")).await;
            assert_eq!(r.content, format!("[stdout]\n{i}\n[exit 0]"));
            let r = t.call("read", json!({"path": "runs.none"})).await;
            assert_eq!(r.exit_code, 1, "{r:?}");
        }
    };
    let (r, ()) = tokio::join!(flood, small);
    assert_eq!(r.exit_code, 0, "{}", &r.content[..r.content.len().min(200)]);
    assert!(r.meta.truncated && r.content.ends_with("end\n[exit 0]"));
    let channel = channel_of(&t);
    assert!(channel.open && channel.reopened == 0, "{channel:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_pool_adopting_the_sandbox_opens_its_own_channel() {
    let t = on_the_channel("channel_second_pool").await;
    let config = t.pool.config().clone();
    let other = e2e_tests::TestPool::start_on(config, t.pool.users.path()).await;
    let theirs = DockerExecutor::with_config(
        std::sync::Arc::new(FakeHost::all()),
        other.clone(),
        ToolsConfig::default(),
        "u",
        t.root.clone(),
    );
    assert!(theirs.warm_up().await.expect("adopt"), "their own channel");
    let ctx = sandbox_tools::CallContext::new("t");
    for i in 0..3 {
        let r = sandbox_tools::Executor::call_tool(
            &theirs,
            "shell",
            json!({"command": format!("echo b{i}")}),
            &ctx,
        )
        .await;
        assert_eq!(r.content, format!("[stdout]\nb{i}\n[exit 0]"));
        assert_next_call_works(&t).await;
    }
    let id = t.pool.ensure("u").await.expect("ensure").container_id;
    let serves = process_args(&t, &id).await;
    assert_eq!(
        serves.iter().filter(|p| p.contains(" serve ")).count(),
        2,
        "{serves:?}"
    );
    other
        .shutdown(sandbox_pool::ShutdownPolicy::Keep)
        .await
        .expect("shutdown");
}

async fn process_args(t: &TestTools, id: &str) -> Vec<String> {
    e2e_tests::all_processes(t.pool.docker(), id)
        .await
        .expect("the container's processes")
        .into_iter()
        .map(|p| p.args)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn sixty_four_concurrent_calls_of_one_user_and_of_eight_users() {
    // Each call in flight costs its supervisor's threads and its command of the pids limit.
    let config = sandbox_pool::PoolConfig {
        pids_limit: 1024,
        ..pool_config("channel_concurrent")
    };
    let t = TestTools::start_on_pool(config)
        .await
        .on(e2e_tests::Transport::Channel)
        .await;
    assert_next_call_works(&t).await;
    let calls = (0..64).map(|i| {
        let t = &t;
        async move {
            let r = sh(t, &format!("echo {i}; echo {i} >> runs.txt")).await;
            assert_eq!(r.content, format!("[stdout]\n{i}\n[exit 0]"), "call {i}");
        }
    });
    futures_util::future::join_all(calls).await;
    assert_eq!(
        lines(&t, "runs.txt").await,
        "[stdout]\n64\n[exit 0]",
        "each ran once"
    );
    let users: Vec<DockerExecutor> = (0..8)
        .map(|u| {
            let user = format!("w{u}");
            let root = t.pool.user_root(&user);
            std::fs::create_dir_all(&root).expect("root");
            e2e_tests::chown_to_sandbox(&root);
            t.tools.for_user(user, root)
        })
        .collect();
    for tools in &users {
        assert!(tools.warm_up().await.expect("sandbox"), "{}", tools.user());
    }
    let ctx = sandbox_tools::CallContext::new("t");
    let calls = (0..64).map(|i| {
        let (tools, ctx) = (&users[i % 8], &ctx);
        async move {
            let r = sandbox_tools::Executor::call_tool(
                tools,
                "shell",
                json!({"command": format!("echo {i}")}),
                ctx,
            )
            .await;
            assert_eq!(r.content, format!("[stdout]\n{i}\n[exit 0]"), "call {i}");
        }
    });
    futures_util::future::join_all(calls).await;
    for info in t.pool.snapshot() {
        let left = e2e_tests::processes(t.pool.docker(), &info.container_id).await;
        assert!(left.is_empty(), "{}: {left:?}", info.user);
    }
}
