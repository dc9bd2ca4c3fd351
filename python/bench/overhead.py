"""The Python call's overhead over the Rust call (`just bench`).

The same `read` of a 10 KiB file in one warm sandbox, over its channel, called two ways in
turn in one process: through `DockerExecutor.call_tool` (Python objects in and out, the GIL
let go and taken back, the result built as a Python object) and through the library alone,
timed inside Rust. The overhead is the difference of the medians (and the median of the
per-round differences beside it). Writes `python.json` and a Markdown row to the output
folder given as the first argument (default `target/bench`).
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

from zcbot_sandbox import DockerExecutor, SandboxPool


class Host:
    """A host offering the sandbox tools only."""

    def has_tool(self, name):
        return True

    def schemas(self):
        return []

    def call_tool(self, name, args, ctx):
        raise AssertionError("no host tools here")


class Ctx:
    task_id = "bench"
    cancel_check = None


def main() -> None:
    out_dir = Path(sys.argv[1] if len(sys.argv) > 1 else "target/bench")
    quick = os.environ.get("BENCH_QUICK") == "1"
    warmup, rounds = (5, 40) if quick else (20, 300)
    run = f"zbench-py-{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory() as users:
        pool = SandboxPool(
            image=os.environ["SANDBOX_IMAGE"],
            name_prefix=run,
            users_root=users,
            labels={"zcbot.bench": "1", "zcbot.bench.run": run},
        )
        try:
            root = pool.user_root("u")
            executor = DockerExecutor(Host(), pool, "u", root, root)
            ctx = Ctx()
            executor.call_tool("write", {"path": "10k.txt", "content": "x" * 10240}, ctx)
            if not executor.warm_up():
                raise SystemExit("the sandbox's channel would not open")
            args = {"path": "10k.txt"}
            python_ms, rust_ms = [], []
            for i in range(warmup + rounds):
                started = time.perf_counter()
                r = executor.call_tool("read", args, ctx)
                took = (time.perf_counter() - started) * 1000
                assert r.exit_code == 0, r
                inside = executor._rust_call_seconds("read", args) * 1000
                if i >= warmup:
                    python_ms.append(took)
                    rust_ms.append(inside)
        finally:
            pool.close(remove=True)
    p50_python = statistics.median(python_ms)
    p50_rust = statistics.median(rust_ms)
    paired = statistics.median(p - r for p, r in zip(python_ms, rust_ms))
    overhead = p50_python - p50_rust
    summary = {
        "workload": "python_overhead",
        "n": rounds,
        "python_p50_ms": p50_python,
        "rust_p50_ms": p50_rust,
        "overhead_p50_ms": overhead,
        "overhead_paired_p50_ms": paired,
        "goal_ms": 0.3,
        "met": overhead <= 0.3,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "python.json").write_text(json.dumps(summary, indent=2) + "\n")
    row = (
        f"| python_overhead: `read` 10 KiB, Python call over the Rust call, p50 ≤ 0.3 ms "
        f"| {overhead:.3f} ms (Python {p50_python:.2f} / Rust {p50_rust:.2f}; paired {paired:.3f}; n={rounds}) "
        f"| {'yes' if overhead <= 0.3 else 'no'} |"
    )
    with open(out_dir / "summary.md", "a", encoding="utf-8") as f:
        f.write("\n" + row + "\n")
    print(row)


if __name__ == "__main__":
    main()
