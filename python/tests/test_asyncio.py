"""``acall_tool`` from asyncio: results, cancellation that kills, the sink on the loop."""

from __future__ import annotations

import asyncio
import threading
import time

from conftest import processes
from seed_service import ExecCtx


def test_acall_tool_returns_the_same_results(executor):
    async def main():
        r = await executor.acall_tool("shell", {"command": "echo hi; exit 4"}, ExecCtx(task_id="t"))
        assert (r.content, r.exit_code) == ("[stdout]\nhi\n[exit 4]", 4)
        r = await executor.acall_tool("web_search", {"q": "x"}, ExecCtx(task_id="t"))
        assert (r.content, r.exit_code) == ("host ran web_search", 0)
        r = await executor.acall_tool("shell", {"command": ""}, ExecCtx(task_id="t"))
        assert r.exit_code == 2

    asyncio.run(main())


def test_many_calls_at_once_on_one_loop(executor):
    async def main():
        await executor.acall_tool("shell", {"command": "true"})
        started = time.monotonic()
        rs = await asyncio.gather(
            *(executor.acall_tool("shell", {"command": f"sleep 0.5; echo {i}"}) for i in range(32))
        )
        assert [r.content for r in rs] == [f"[stdout]\n{i}\n[exit 0]" for i in range(32)]
        return time.monotonic() - started

    assert asyncio.run(main()) < 8


def test_cancelling_the_task_kills_what_the_call_started(executor, pool, user_id):
    async def main():
        await executor.acall_tool("shell", {"command": "true"})
        task = asyncio.ensure_future(
            executor.acall_tool("shell", {"command": "sleep 300 & sleep 300"})
        )
        await asyncio.sleep(0.5)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            return True
        return False

    assert asyncio.run(main()), "the task ends cancelled"
    container = pool.ensure(user_id)
    deadline = time.monotonic() + 5
    while processes(container) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert processes(container) == []


def test_a_timeout_through_asyncio(executor, pool, user_id):
    # The sandbox is made first: on a slow host its making could take the whole second.
    executor.warm_up()

    async def main():
        return await executor.acall_tool("shell", {"command": "sleep 300", "timeout": 1})

    r = asyncio.run(main())
    assert r.exit_code == 124 and r.timed_out and r.nothing_left


def test_cancel_check_and_the_sink_on_the_loop(executor):
    flag = threading.Event()
    got = []

    async def main():
        loop_thread = threading.current_thread()

        def sink(stream, data):
            assert threading.current_thread() is loop_thread
            got.append((stream, data))
            flag.set()

        return await executor.acall_tool(
            "shell",
            {"command": "echo go; sleep 300"},
            ExecCtx(task_id="t", cancel_check=flag.is_set),
            sink=sink,
        )

    r = asyncio.run(main())
    # The seed's message, then what the call printed before it was stopped.
    assert (r.content, r.exit_code) == ("[Error] command cancelled by user\n[stdout]\ngo", 130)
    assert got == [("stdout", b"go\n")]
