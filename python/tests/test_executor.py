"""The seed's executor, called as the seed's service calls it, against the real daemon."""

from __future__ import annotations

import os
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

import zcbot_sandbox
from conftest import processes
from seed_service import ExecCtx, HostExecutor, ToolResult


def shell(executor, command, ctx=None, **args):
    return executor.call_tool("shell", {"command": command, **args}, ctx or ExecCtx(task_id="t"))


def nothing_left(pool, user_id, within=5.0):
    container = pool.ensure(user_id)
    deadline = time.monotonic() + within
    while True:
        left = processes(container)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)


# ---- routing --------------------------------------------------------------------------------


def test_host_tools_go_to_the_host_with_the_callers_own_context(executor, host, ctx, user_id):
    r = executor.call_tool("web_search", {"q": "x"}, ctx)
    assert isinstance(r, ToolResult), "the host's own result, as it made it"
    assert (r.content, r.exit_code) == ("host ran web_search", 0)
    assert host.calls == [("web_search", {"q": "x"}, ctx)]
    users = [s["user"] for s in executor.pool.list()]
    assert str(user_id) not in users, "no sandbox for a host tool"


def test_a_sandbox_tool_the_host_does_not_offer_is_unknown(pool, user_id):
    host = HostExecutor(tools=["shell", "read"])
    root = pool.user_root(user_id)
    executor = zcbot_sandbox.DockerExecutor(host, pool, user_id, root, root)
    r = executor.call_tool("run_python", {"code": "print(1)"}, ExecCtx(task_id="t"))
    assert (r.content, r.exit_code) == ("[Error] unknown tool: run_python", 2)
    assert not executor.has_tool("run_python") and executor.has_tool("shell")
    names = [s["name"] for s in executor.schemas()]
    assert names == ["shell", "read"]
    shell_schema = executor.schemas()[0]
    assert shell_schema["description"] != "host shell", "the sandbox tool's own schema"
    assert host.calls == []


# ---- the seed's result layout -----------------------------------------------------------------


def test_shell_results_are_the_seeds_layout_byte_for_byte(executor):
    r = shell(executor, "echo out; echo err >&2; exit 3")
    assert (r.content, r.exit_code) == ("[stdout]\nout\n[stderr]\nerr\n[exit 3]", 3)
    assert isinstance(r, zcbot_sandbox.ToolResult)
    assert not (r.timed_out or r.cancelled or r.truncated or r.sandbox_lost)
    r = shell(executor, "true")
    assert (r.content, r.exit_code) == ("[exit 0]", 0)
    r = shell(executor, "printf 'caf\\xc3\\xa9 \\xff'")
    assert r.content == "[stdout]\ncafé \ufffd\n[exit 0]"


def test_run_python_and_the_file_tools(executor, ctx):
    r = executor.call_tool("run_python", {"code": "import sys; print('py', sys.argv[0] != '')"}, ctx)
    assert (r.content, r.exit_code) == ("[stdout]\npy True\n[exit 0]", 0)
    r = executor.call_tool("write", {"path": "notes/a.txt", "content": "héllo\nworld\n"}, ctx)
    assert r.exit_code == 0, r
    r = executor.call_tool("read", {"path": "notes/a.txt"}, ctx)
    assert r.exit_code == 0 and "héllo" in r.content and "world" in r.content
    r = executor.call_tool(
        "edit",
        {"path": "notes/a.txt", "old_string": "world", "new_string": "there", "replace_all": False},
        ctx,
    )
    assert r.exit_code == 0, r
    assert (executor.user_root / "notes/a.txt").read_text() == "héllo\nthere\n"
    r = executor.call_tool("grep", {"pattern": "there", "path": "."}, ctx)
    assert r.exit_code == 0 and "a.txt" in r.content, r
    r = executor.call_tool("glob", {"pattern": "**/*.txt"}, ctx)
    assert r.exit_code == 0 and "notes/a.txt" in r.content, r
    r = executor.call_tool("read", {"path": "missing.txt"}, ctx)
    assert r.exit_code == 1 and r.content.startswith("[Error"), r


def test_true_exit_codes(executor):
    for code in (0, 1, 2, 42, 127, 255):
        r = shell(executor, f"exit {code}")
        assert r.exit_code == code, r
    r = shell(executor, "kill -9 $$")
    assert r.exit_code == 137, r


# ---- bad arguments ----------------------------------------------------------------------------


def test_bad_arguments_are_results_not_exceptions(executor, ctx):
    r = executor.call_tool("shell", {"command": 5}, ctx)
    assert (r.content, r.exit_code) == (
        "[Error] bad arguments to shell: command must be non-empty string",
        2,
    )
    r = executor.call_tool("shell", {"command": "echo", "timeout": "soon"}, ctx)
    assert r.exit_code == 2 and r.content.startswith("[Error] bad arguments to shell"), r
    r = executor.call_tool("shell", {"command": {1, 2}}, ctx)
    assert r.exit_code == 2 and r.content.startswith("[Error] bad arguments to shell: not JSON"), r
    r = executor.call_tool("run_python", ["print(1)"], ctx)
    assert r.exit_code == 2, r
    r = executor.call_tool("read", {"path": "\x00"}, ctx)
    assert r.exit_code != 0 and r.content.startswith("[Error"), r
    r = executor.call_tool("read", {}, ctx)
    assert r.exit_code == 2 and r.content.startswith("[Error] bad arguments to read"), r
    # A huge input is no bad argument: it arrives whole (in frames), never cut.
    r = executor.call_tool("write", {"path": "x.txt", "content": "a" * (64 << 20)}, ctx)
    assert (r.content, r.exit_code) == ("Wrote 67108864 bytes to x.txt", 0)
    assert (executor.user_root / "x.txt").stat().st_size == 64 << 20


# ---- timeout, cancel, sink --------------------------------------------------------------------


def test_a_timeout_kills_everything_the_call_started(executor, pool, user_id):
    # The sandbox is made first: on a slow host its making could take the whole second.
    executor.warm_up()
    started = time.monotonic()
    r = shell(executor, "sleep 300 & (sleep 300 &) ; sleep 300", timeout=1)
    assert time.monotonic() - started < 5
    assert r.exit_code == 124 and r.content.startswith("[Error] command timed out after 1s"), r
    assert r.timed_out and r.nothing_left
    assert nothing_left(pool, user_id) == []


def test_cancel_check_is_honoured_within_100_ms(executor, pool, user_id):
    # Made first: the cancel must find the command running, to kill it.
    executor.warm_up()
    flag = threading.Event()
    ctx = ExecCtx(task_id="t", cancel_check=flag.is_set)
    threading.Timer(0.5, flag.set).start()
    r = shell(executor, "sleep 300 & sleep 300", ctx=ctx)
    stopped = time.monotonic()
    assert (r.content, r.exit_code) == ("[Error] command cancelled by user", 130)
    assert r.cancelled and r.nothing_left
    assert nothing_left(pool, user_id) == []
    # The answer came soon after the flag: polled every 50 ms, then the kill.
    flag2 = threading.Event()
    times = {}

    def cancel_later():
        time.sleep(0.5)
        times["set"] = time.monotonic()
        flag2.set()

    threading.Thread(target=cancel_later).start()
    r = shell(executor, "sleep 300", ctx=ExecCtx(task_id="t", cancel_check=flag2.is_set))
    # Polled every 50 ms, then the kill (a few ms): the bound is loose for a noisy machine.
    assert r.exit_code == 130 and time.monotonic() - times["set"] < 0.5
    assert stopped


def test_a_cancel_check_that_raises_does_not_stop_the_call(executor, monkeypatch):
    def broken():
        raise RuntimeError("broken check")

    # Reported as Python reports what it cannot raise (sys.unraisablehook), once per poll.
    reported = []
    monkeypatch.setattr(sys, "unraisablehook", reported.append)
    r = shell(executor, "sleep 0.2; echo fine", ctx=ExecCtx(task_id="t", cancel_check=broken))
    assert (r.content, r.exit_code) == ("[stdout]\nfine\n[exit 0]", 0)
    assert reported and str(reported[0].exc_value) == "broken check"


def test_the_sink_gets_output_as_it_comes(executor):
    got = []
    r = executor.call_tool(
        "shell",
        {"command": "echo first; sleep 1; echo second >&2"},
        ExecCtx(task_id="t"),
        sink=lambda stream, data: got.append(
            (time.monotonic(), stream, data, threading.current_thread())
        ),
    )
    ended = time.monotonic()
    assert r.content == "[stdout]\nfirst\n[stderr]\nsecond\n[exit 0]"
    assert [(s, d) for _, s, d, _ in got] == [("stdout", b"first\n"), ("stderr", b"second\n")]
    assert ended - got[0][0] > 0.8, "the first chunk came a second before the end"
    assert all(t is threading.current_thread() for *_, t in got), "on the calling thread"


# ---- threads ----------------------------------------------------------------------------------


def test_64_threads_call_at_once_with_the_gil_released(executor):
    results = [None] * 64

    def call(i):
        results[i] = shell(executor, f"sleep 0.5; echo {i}")

    shell(executor, "true")  # the sandbox exists before the burst
    threads = [threading.Thread(target=call, args=(i,)) for i in range(64)]
    started = time.monotonic()
    for t in threads:
        t.start()
    # The GIL is free while they wait: this thread counts meanwhile.
    counted = 0
    while any(t.is_alive() for t in threads):
        counted += 1
        time.sleep(0.001)
    took = time.monotonic() - started
    for i, r in enumerate(results):
        assert (r.content, r.exit_code) == (f"[stdout]\n{i}\n[exit 0]", 0), (i, r)
    assert took < 10, f"64 calls of 0.5 s in {took:.1f} s: they ran at once"
    assert counted > 50


# ---- the seed's own call pattern ----------------------------------------------------------------


def test_the_seeds_service_unchanged_but_for_the_import(pool, tmp_path):
    # As the service builds it: a UUID user, the user's root, a task folder under it.
    user_id = uuid.UUID("12345678-1234-5678-1234-567812345678")
    user_root = pool.user_root(user_id)
    pool.ensure(user_id)  # makes the user root, owned by the sandbox user
    working_dir = user_root / "task-1"
    working_dir.mkdir(exist_ok=True)
    owner = user_root.stat()
    os.chown(working_dir, owner.st_uid, owner.st_gid)
    executor = zcbot_sandbox.DockerExecutor(
        HostExecutor(), pool, user_id, user_root, working_dir, result_class=ToolResult
    )
    assert executor.user_root == user_root and executor.working_dir == working_dir
    ctx = ExecCtx(task_id=uuid.uuid4(), cancel_check=lambda: False)
    r = executor.call_tool("shell", {"command": "pwd; whoami"}, ctx)
    assert r == ToolResult(content="[stdout]\n/workspace/task-1\nzcbot\n[exit 0]", exit_code=0)
    r = executor.call_tool("run_python", {"code": "import os; print(os.getcwd())", "timeout": 30}, ctx)
    assert r == ToolResult(content="[stdout]\n/workspace/task-1\n[exit 0]", exit_code=0)
    assert not (user_root / ".zcbot_tmp").exists() or not any((user_root / ".zcbot_tmp").rglob("*.py"))
    r = executor.call_tool("write", {"path": "out.md", "content": "# hi"}, ctx)
    assert r.exit_code == 0 and isinstance(r, ToolResult)
    assert (working_dir / "out.md").read_text() == "# hi"
    r = executor.call_tool("load_skill", {"name": "x"}, ctx)
    assert r == ToolResult(content="host ran load_skill", exit_code=0)
    pool.mark_active(user_id)
    assert pool.remove(user_id)


def test_user_root_must_be_the_pools(pool, host, tmp_path):
    with pytest.raises(ValueError, match="users_root="):
        zcbot_sandbox.DockerExecutor(host, pool, "u1", tmp_path / "u1", tmp_path / "u1")
    with pytest.raises(ValueError, match="invalid user id"):
        zcbot_sandbox.DockerExecutor(host, pool, "../x", tmp_path, tmp_path)


def test_the_quota_gate_asks_the_services_usage_source(pool, host, user_id):
    asked = []

    def usage(user):
        asked.append(user)
        return 10 << 30

    root = pool.user_root(user_id)
    executor = zcbot_sandbox.DockerExecutor(host, pool, user_id, root, root, usage=usage)
    # The default configuration has no limit: the source is never asked.
    r = executor.call_tool("write", {"path": "a.txt", "content": "x"}, ExecCtx(task_id="t"))
    assert r.exit_code == 0 and asked == []


def test_the_quota_gate_refuses_over_the_limit(users_root, host):
    from conftest import make_pool

    with make_pool(users_root, tools={"quotas": {"disk_bytes_per_user": "1MiB"}}) as pool:
        user = uuid.uuid4()
        root = pool.user_root(user)
        used = {"n": 0}
        executor = zcbot_sandbox.DockerExecutor(
            host, pool, user, root, root, usage=lambda u: used["n"]
        )
        r = executor.call_tool("write", {"path": "a.txt", "content": "x" * 1000}, ExecCtx(task_id="t"))
        assert r.exit_code == 0, r
        used["n"] = 2 << 20
        r = executor.call_tool("write", {"path": "b.txt", "content": "x"}, ExecCtx(task_id="t"))
        assert r.exit_code == 2 and "quota" in r.content, r
        assert not (root / "b.txt").exists()

        def failing(u):
            raise OSError("usage table down")

        executor = zcbot_sandbox.DockerExecutor(host, pool, user, root, root, usage=failing)
        r = executor.call_tool("write", {"path": "c.txt", "content": "x"}, ExecCtx(task_id="t"))
        assert r.exit_code == 2 and not (root / "c.txt").exists(), r
        pool.remove(user)


def test_metrics_for_the_services_scrape(executor):
    shell(executor, "true")
    text = zcbot_sandbox.metrics_text()
    assert 'sandbox_tool_calls_total{tool="shell",outcome="ok"}' in text
    assert "sandbox_pool_sandboxes{" in text
