//! `DockerExecutor` against a real daemon: every tool's success and error paths, routing,
//! true exit codes, timeouts and cancellation, hostile names, planted symlinks, the quota.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use e2e_tests::{FakeHost, TestTools};
use sandbox_tools::{CallContext, Executor, OutputChunk, QuotaConfig, ToolsConfig};
use serde_json::json;
use tokio_util::sync::CancellationToken;

/// Names and contents that break naive quoting.
const NASTY: &str = "数据 报告 \"q\" 'a' $(touch /tmp/pwned); `x`\nline2.txt";

e2e_tests::on_both_transports! {
    async fn shell_reports_output_and_the_commands_true_exit_code(transport) {
        let t = TestTools::start("tools_shell").await.on(transport).await;
        let r = t
            .call(
                "shell",
                json!({"command": "echo out; echo err >&2; exit 3"}),
            )
            .await;
        assert_eq!(r.content, "[stdout]\nout\n[stderr]\nerr\n[exit 3]");
        assert_eq!(r.exit_code, 3, "the seed reported 0 here");
        let r = t.call("shell", json!({"command": "pwd; id -un"})).await;
        assert_eq!(r.content, "[stdout]\n/workspace\nzcbot\n[exit 0]");
        assert_eq!(r.exit_code, 0);
    }
}

e2e_tests::on_both_transports! {
    async fn shell_bad_arguments_are_refused_on_the_host(transport) {
        let t = TestTools::start("tools_shell_args").await.on_cold(transport);
        for args in [
            json!({}),
            json!({"command": 5}),
            json!({"command": "  "}),
            json!("ls"),
            json!([1]),
        ] {
            let r = t.call("shell", args.clone()).await;
            assert_eq!(r.exit_code, 2, "{args}: {r:?}");
            assert!(
                r.content.starts_with("[Error] bad arguments to shell: "),
                "{r:?}"
            );
        }
        let r = t
            .call("shell", json!({"command": "true", "timeout": "soon"}))
            .await;
        assert_eq!(r.exit_code, 2);
        assert!(t.pool.is_empty(), "no sandbox was made for bad arguments");
    }
}

e2e_tests::on_both_transports! {
    async fn run_python_reports_the_programs_exit_code_and_never_writes_the_user_root(transport) {
        let t = TestTools::start("tools_python").await.on(transport).await;
        let code = "import sys, os\nprint('héllo', os.environ['PYTHONIOENCODING'], sys.path[1:3])\nsys.exit(7)";
        let r = t.call("run_python", json!({"code": code})).await;
        assert_eq!(
            r.content,
            "[stdout]\nhéllo utf-8 ['/sandbox', '/workspace']\n[exit 7]"
        );
        assert_eq!(r.exit_code, 7, "the seed reported 0 here");
        let r = t
            .call("run_python", json!({"code": "raise ValueError('boom')"}))
            .await;
        assert_eq!(r.exit_code, 1);
        assert!(r.content.contains("ValueError: boom"), "{}", r.content);
        let r = t.call("run_python", json!({"code": 42})).await;
        assert_eq!(
            (r.content.as_str(), r.exit_code),
            (
                "[Error] bad arguments to run_python: code must be string",
                2
            )
        );
        // The program travelled on stdin: nothing was ever written into the user's folder.
        assert_eq!(std::fs::read_dir(&t.root).expect("root").count(), 0);
    }
}

e2e_tests::on_both_transports! {
    async fn file_tools_round_trip_hostile_names_and_contents(transport) {
        let t = TestTools::start("tools_files").await.on(transport).await;
        let path = format!("dir ;x/{NASTY}");
        let r = t
            .call("write", json!({"path": path, "content": NASTY}))
            .await;
        assert_eq!(r.exit_code, 0, "{r:?}");
        // On the host, inside the user root, owned by the sandbox user.
        let host_file = t.root.join(&path);
        assert_eq!(std::fs::read_to_string(&host_file).expect("written"), NASTY);
        assert!(!std::path::Path::new("/tmp/pwned").exists());

        let r = t.call("read", json!({"path": path})).await;
        assert_eq!(r.exit_code, 0, "{r:?}");
        assert!(
            r.content
                .contains("数据 报告 \"q\" 'a' $(touch /tmp/pwned); `x`"),
            "{}",
            r.content
        );
        assert!(r.content.contains("     2\tline2.txt"), "{}", r.content);

        let r = t
            .call(
                "edit",
                json!({"path": path, "old_string": "line2", "new_string": "第二行"}),
            )
            .await;
        assert_eq!(
            (r.exit_code, r.content.contains("replaced 1")),
            (0, true),
            "{r:?}"
        );
        assert!(
            std::fs::read_to_string(&host_file)
                .expect("edited")
                .ends_with("第二行.txt")
        );

        let r = t.call("glob", json!({"pattern": "**/*.txt"})).await;
        assert_eq!(r.content.trim_end(), path, "{r:?}");

        let r = t
            .call("grep", json!({"pattern": "第二", "output_mode": "content"}))
            .await;
        assert_eq!(r.exit_code, 0, "{r:?}");
        assert!(r.content.contains(":2:第二行.txt"), "{}", r.content);
    }
}

e2e_tests::on_both_transports! {
    async fn file_tool_errors_pass_through_with_the_runners_codes(transport) {
        let t = TestTools::start("tools_file_errors").await.on(transport).await;
        let r = t.call("read", json!({"path": "missing.txt"})).await;
        assert_eq!(r.exit_code, 1);
        assert!(r.content.starts_with("[Error] read: missing.txt"), "{r:?}");
        let r = t.call("read", json!({"path": 7})).await;
        assert_eq!(r.exit_code, 2, "{r:?}");
        assert!(
            r.content.starts_with("[Error] bad arguments to read: "),
            "{r:?}"
        );
        t.call("write", json!({"path": "a.txt", "content": "x x x"}))
            .await;
        let r = t
            .call(
                "edit",
                json!({"path": "a.txt", "old_string": "x", "new_string": "y"}),
            )
            .await;
        assert_eq!(r.exit_code, 1);
        assert!(r.content.contains("occurs 3 times"), "{r:?}");
        let r = t
            .call(
                "edit",
                json!({"path": "a.txt", "old_string": "zz", "new_string": "y"}),
            )
            .await;
        assert_eq!(r.exit_code, 1);
        assert!(r.content.contains("not found"), "{r:?}");
        let r = t.call("grep", json!({"pattern": "("})).await;
        assert_eq!(r.exit_code, 2, "{r:?}");
        let r = t.call("glob", json!({"pattern": "*.none"})).await;
        assert_eq!((r.exit_code, r.content.as_str()), (0, "No files found"));
        assert_eq!(
            std::fs::read_to_string(t.root.join("a.txt")).expect("intact"),
            "x x x"
        );
    }
}

e2e_tests::on_both_transports! {
    async fn grep_respects_gitignore_and_case_insensitivity(transport) {
        let t = TestTools::start("tools_grep").await.on(transport).await;
        for (path, content) in [
            (".gitignore", "build/\n"),
            ("src/a.rs", "fn needle() {}\n"),
            ("build/b.rs", "needle\n"),
        ] {
            t.call("write", json!({"path": path, "content": content}))
                .await;
        }
        let r = t.call("grep", json!({"pattern": "needle"})).await;
        assert_eq!(r.content.trim_end(), "src/a.rs", "{r:?}");
        let r = t
            .call(
                "grep",
                json!({"pattern": "NEEDLE", "case_insensitive": true, "output_mode": "count"}),
            )
            .await;
        assert_eq!(r.content.trim_end(), "src/a.rs:1", "{r:?}");
    }
}

e2e_tests::on_both_transports! {
    async fn a_symlink_planted_by_the_sandbox_never_leads_a_tool_out_of_the_user_root(transport) {
        let t = TestTools::start("tools_symlinks").await.on(transport).await;
        let outside = tempfile::tempdir().expect("a host folder outside the user root");
        let target = outside.path().display().to_string();
        // The seed wrote run_python's program through `<root>/.zcbot_tmp/...` from the host; a
        // sandbox could point that at /etc or at any host path.
        let plant = format!(
            "ln -s /etc .zcbot_tmp && ln -s {target} escape && mkdir -p .zcbot_tmp2 && ln -s {target} .zcbot_tmp2/test-task"
        );
        let r = t.call("shell", json!({"command": plant})).await;
        assert_eq!(r.exit_code, 0, "{r:?}");
        let calls = [
            ("run_python", json!({"code": "print('ran')"})),
            (
                "write",
                json!({"path": ".zcbot_tmp/x.py", "content": "pwned"}),
            ),
            ("write", json!({"path": "escape/x.py", "content": "pwned"})),
            (
                "edit",
                json!({"path": "escape/x.py", "old_string": "a", "new_string": "b"}),
            ),
            ("read", json!({"path": "escape/x.py"})),
            ("glob", json!({"pattern": "**/*", "path": "escape"})),
            ("grep", json!({"pattern": "pwned", "path": "escape"})),
            (
                "shell",
                json!({"command": "echo pwned > escape/y.py; true"}),
            ),
        ];
        for (tool, args) in calls {
            t.call(tool, args).await;
        }
        // Inside the container the links resolve inside the container: /etc is read-only there and
        // the host path does not exist (or is the container's own tmpfs). Nothing reached the host.
        assert_eq!(
            std::fs::read_dir(outside.path()).expect("outside").count(),
            0
        );
        assert!(!std::path::Path::new("/etc/x.py").exists());
    }
}

e2e_tests::on_both_transports! {
    async fn over_quota_writes_are_refused_and_existing_data_stays(transport) {
        let config = ToolsConfig {
            quotas: QuotaConfig {
                disk_bytes_per_user: Some(sandbox_pool::bytesize::ByteSize::kib(8)),
                ..Default::default()
            },
            ..Default::default()
        };
        let t = TestTools::start_with("tools_quota", FakeHost::all(), config).await.on(transport).await;
        let r = t
            .call(
                "write",
                json!({"path": "keep.txt", "content": "k".repeat(6000)}),
            )
            .await;
        assert_eq!(r.exit_code, 0, "{r:?}");
        // 6000 used of 8192: a 3000-byte file does not fit; the refusal changes nothing.
        let r = t
            .call(
                "write",
                json!({"path": "big.txt", "content": "b".repeat(3000)}),
            )
            .await;
        assert_eq!(r.exit_code, 2, "{r:?}");
        assert!(r.content.contains("quota"), "{r:?}");
        assert!(!t.root.join("big.txt").exists());
        let r = t
            .call("edit", json!({"path": "keep.txt", "old_string": "kkkk", "new_string": "K".repeat(3000), "replace_all": false}))
            .await;
        assert_eq!(r.exit_code, 2, "{r:?}");
        assert_eq!(
            std::fs::read_to_string(t.root.join("keep.txt")).expect("intact"),
            "k".repeat(6000)
        );
        // Overwriting with something smaller still works.
        let r = t
            .call("write", json!({"path": "keep.txt", "content": "small"}))
            .await;
        assert_eq!(r.exit_code, 0, "{r:?}");
    }
}

e2e_tests::on_both_transports! {
    async fn routing_unknown_tools_and_host_tools(transport) {
        let t = TestTools::start_with(
            "tools_routing",
            FakeHost::offering(&["shell", "read"]),
            ToolsConfig::default(),
        )
        .await.on_cold(transport);
        let r = t.call("run_python", json!({"code": "print(1)"})).await;
        assert_eq!(
            (r.content.as_str(), r.exit_code),
            ("[Error] unknown tool: run_python", 2)
        );
        let r = t.call("web_search", json!({"q": "x"})).await;
        assert_eq!(
            (r.content.as_str(), r.exit_code),
            (r#"host ran web_search with {"q":"x"}"#, 0)
        );
        let names: Vec<String> = t
            .tools
            .schemas()
            .iter()
            .map(|s| s["name"].as_str().expect("name").to_owned())
            .collect();
        assert_eq!(names, ["web_search", "shell", "read"]);
        let shell = &t.tools.schemas()[1];
        assert_ne!(
            shell["description"], "host's own",
            "the sandbox tools describe themselves"
        );
        assert!(
            t.pool.is_empty(),
            "no sandbox for host tools or unknown tools"
        );
    }
}

e2e_tests::on_both_transports! {
    async fn timeout_and_cancel_answer_the_seeds_messages_and_kill_everything(transport) {
        let t = TestTools::start("tools_timeout").await.on(transport).await;
        // The deadline covers the whole call, making the sandbox included: make it first, so the
        // second counts for the command alone.
        assert_eq!(
            t.call("shell", json!({"command": "true"})).await.exit_code,
            0
        );
        let r = t
            .call(
                "shell",
                json!({"command": "echo begun; sleep 300 & sleep 301", "timeout": 1}),
            )
            .await;
        assert_eq!(r.exit_code, 124);
        assert!(
            r.content.starts_with("[Error] command timed out after 1s"),
            "{r:?}"
        );
        assert!(r.content.contains("begun"), "partial output kept: {r:?}");
        assert!(r.meta.timed_out());
        assert!(
            r.meta.kill.as_ref().is_some_and(|k| k.nothing_left()),
            "{r:?}"
        );

        let cancel = CancellationToken::new();
        let ctx = CallContext::new("task").with_cancel(cancel.clone());
        let call = t.tools.call_tool(
            "run_python",
            json!({"code": "import time; time.sleep(300)"}),
            &ctx,
        );
        let (r, ()) = tokio::join!(call, async {
            tokio::time::sleep(Duration::from_millis(500)).await;
            cancel.cancel();
        });
        assert_eq!(
            (r.content.as_str(), r.exit_code),
            ("[Error] command cancelled by user", 130)
        );
        assert!(r.meta.cancelled());
        let r = t
            .call(
                "shell",
                json!({"command": "ps -eo args | grep -c '[s]leep 30'"}),
            )
            .await;
        assert_eq!(r.content, "[stdout]\n0\n[exit 1]", "nothing left: {r:?}");
    }
}

e2e_tests::on_both_transports! {
    async fn live_output_reaches_the_sink(transport) {
        let t = TestTools::start("tools_sink").await.on(transport).await;
        let seen: Arc<Mutex<Vec<OutputChunk>>> = Arc::default();
        let record = Arc::clone(&seen);
        let ctx = CallContext::new("task").with_sink(Arc::new(move |c: OutputChunk| {
            record.lock().expect("lock").push(c)
        }));
        let r = t
            .tools
            .call_tool("shell", json!({"command": "echo one; echo two >&2"}), &ctx)
            .await;
        assert_eq!(r.exit_code, 0);
        let seen = seen.lock().expect("lock");
        let text: Vec<u8> = seen.iter().flat_map(|c| c.bytes.to_vec()).collect();
        assert_eq!(seen.len(), 2, "{seen:?}");
        assert!(text.windows(4).any(|w| w == b"one\n"));
    }
}

e2e_tests::on_both_transports! {
    async fn output_is_capped_with_a_note_and_the_flag_set(transport) {
        let config = ToolsConfig {
            output_head: sandbox_pool::bytesize::ByteSize::b(100),
            output_tail: sandbox_pool::bytesize::ByteSize::b(100),
            ..Default::default()
        };
        let t = TestTools::start_with("tools_caps", FakeHost::all(), config).await.on(transport).await;
        let r = t.call("shell", json!({"command": "seq 1 100000"})).await;
        assert!(r.meta.truncated);
        assert!(
            r.content.contains("bytes of output dropped"),
            "{}",
            r.content
        );
        assert!(r.content.len() < 400, "{}", r.content.len());
        assert!(r.content.ends_with("100000\n[exit 0]"), "{}", r.content);
    }
}

e2e_tests::on_both_transports! {
    async fn working_directory_maps_under_workspace(transport) {
        let t = TestTools::start("tools_workdir").await.on(transport).await;
        let sub = t.root.join("proj/src");
        std::fs::create_dir_all(&sub).expect("mkdir");
        e2e_tests::chown_to_sandbox(&sub);
        let inside = t.tools.for_user("u", sub.clone());
        let r = inside
            .call_tool("shell", json!({"command": "pwd"}), &CallContext::new("t"))
            .await;
        assert_eq!(r.content, "[stdout]\n/workspace/proj/src\n[exit 0]");
        let r = inside
            .call_tool(
                "write",
                json!({"path": "rel.txt", "content": "x"}),
                &CallContext::new("t"),
            )
            .await;
        assert_eq!(r.exit_code, 0, "{r:?}");
        assert!(sub.join("rel.txt").exists());
        let outside = t.tools.for_user("u", "/somewhere/else");
        let r = outside
            .call_tool("shell", json!({"command": "pwd"}), &CallContext::new("t"))
            .await;
        assert_eq!(r.content, "[stdout]\n/workspace\n[exit 0]");
    }
}

e2e_tests::on_both_transports! {
    async fn a_sandbox_removed_between_calls_is_replaced_transparently(transport) {
        let t = TestTools::start("tools_recover").await.on(transport).await;
        t.call("shell", json!({"command": "true"})).await;
        let sb = t.pool.ensure("u").await.expect("ensure");
        e2e_tests::force_remove(t.pool.docker(), &sb.container_id).await;
        let r = t.call("shell", json!({"command": "echo back"})).await;
        assert_eq!(r.content, "[stdout]\nback\n[exit 0]", "{r:?}");
        assert_eq!(r.meta.recreated, Some(sandbox_pool::Recreated::Removed));
    }
}

e2e_tests::on_both_transports! {
    async fn a_working_directory_deleted_under_the_executor_keeps_the_sandbox(transport) {
        let t = TestTools::start("tools_gone_workdir").await.on(transport).await;
        let sub = t.root.join("proj");
        std::fs::create_dir_all(&sub).expect("mkdir");
        e2e_tests::chown_to_sandbox(&sub);
        let inside = t.tools.for_user("u", sub.clone());
        let ctx = CallContext::new("t");
        let r = inside
            .call_tool("shell", json!({"command": "pwd"}), &ctx)
            .await;
        assert_eq!(r.content, "[stdout]\n/workspace/proj\n[exit 0]");
        std::fs::remove_dir(&sub).expect("rmdir");
        let r = inside
            .call_tool("shell", json!({"command": "pwd"}), &ctx)
            .await;
        assert_eq!(r.exit_code, 2, "{r:?}");
        assert!(
            r.content.contains("working directory /workspace/proj"),
            "{r:?}"
        );
        assert_eq!(r.meta.recreated, None, "the sandbox was not blamed");
    }
}

/// The agent service's own usage store (the seed read a database table): a narrow trait, so a
/// small fake stands in.
#[derive(Debug)]
struct ServiceUsage(u64);

#[async_trait::async_trait]
impl sandbox_tools::UsageStore for ServiceUsage {
    async fn usage(
        &self,
        _user: &str,
        _root: &std::path::Path,
    ) -> Result<u64, sandbox_tools::QuotaError> {
        Ok(self.0)
    }
}

e2e_tests::on_both_transports! {
    async fn the_service_can_plug_its_own_usage_store(transport) {
        let config = ToolsConfig {
            quotas: QuotaConfig {
                disk_bytes_per_user: Some(sandbox_pool::bytesize::ByteSize::gib(2)),
                ..Default::default()
            },
            ..Default::default()
        };
        let t = TestTools::start_with("tools_usage_store", FakeHost::all(), config).await.on(transport).await;
        let full = t
            .tools
            .clone()
            .with_usage_store(Arc::new(ServiceUsage(3 << 30)));
        let r = full
            .call_tool(
                "write",
                json!({"path": "x.txt", "content": "x"}),
                &CallContext::new("t"),
            )
            .await;
        assert_eq!(r.exit_code, 2, "{r:?}");
        assert!(
            r.content.starts_with("[Error] disk quota exceeded"),
            "{r:?}"
        );
        assert!(!t.root.join("x.txt").exists());
        let roomy = t.tools.clone().with_usage_store(Arc::new(ServiceUsage(0)));
        let r = roomy
            .call_tool(
                "write",
                json!({"path": "x.txt", "content": "x"}),
                &CallContext::new("t"),
            )
            .await;
        assert_eq!(r.exit_code, 0, "{r:?}");
    }
}

/// What failed before a command could run reaches the service typed, beside the model's
/// unchanged text: here a full pool, told apart from a daemon that does not answer; and a call
/// that ran carries how it ended.
#[tokio::test(flavor = "multi_thread")]
async fn a_full_pool_reaches_the_service_typed_and_the_model_in_words() {
    let config = sandbox_pool::PoolConfig {
        max_sandboxes: 1,
        ..e2e_tests::pool_config("tools_pool_full")
    };
    let t = TestTools::start_on_pool(config).await;
    let r = t.call("shell", json!({"command": "exit 3"})).await;
    assert_eq!(r.exit_code, 3, "{r:?}");
    assert_eq!(
        r.meta.termination,
        Some(sandbox_exec::Termination::Exited { code: 3 })
    );
    assert!(r.meta.error.is_none(), "{r:?}");

    // The one sandbox is busy: another user finds the pool full.
    let _busy = t.pool.acquire("u").await.expect("acquire");
    let other = sandbox_tools::DockerExecutor::new(
        Arc::new(FakeHost::all()),
        t.pool.pool.clone(),
        "v",
        t.pool.user_root("v"),
    );
    let r = other
        .call_tool("shell", json!({"command": "true"}), &CallContext::new("t"))
        .await;
    assert_eq!(
        (r.exit_code, r.content.as_str()),
        (
            1,
            "[Error executing shell via docker] the pool is full: 1 sandboxes, none idle"
        )
    );
    let error = r.meta.error.as_deref().expect("a typed error");
    assert!(
        error.is_pool_full() && !error.is_daemon_unreachable(),
        "{error:?}"
    );
    assert!(matches!(
        error.pool_error(),
        Some(sandbox_pool::PoolError::PoolFull { max: 1 })
    ));
    assert_eq!(r.meta.termination, None, "nothing ran");
}
