"""The agent service's side of the seed, as its executor module uses it: ``ExecCtx`` and
``ToolResult`` from its ``executor`` module, and a ``HostExecutor`` offering the host tools.
The tests construct and call ``DockerExecutor`` the way the seed's service does, with only
the import changed."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional

SEED_TOOLS = ["shell", "run_python", "read", "write", "edit", "glob", "grep"]


@dataclass
class ToolResult:
    """The seed's result class (``executor.ToolResult``)."""

    content: str
    exit_code: int = 0


@dataclass
class ExecCtx:
    """The seed's call context (``executor.ExecCtx``)."""

    task_id: Any
    cancel_check: Optional[Callable[[], bool]] = None


@dataclass
class HostExecutor:
    """The service's host executor: key-holding tools run here; it also says which sandbox
    tools are enabled (``caps.enable_run_python=False`` drops ``run_python``)."""

    tools: List[str] = field(default_factory=lambda: SEED_TOOLS + ["web_search", "load_skill"])
    calls: List[tuple] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def has_tool(self, name: str) -> bool:
        return name in self.tools

    def schemas(self) -> List[Dict[str, Any]]:
        return [
            {"name": n, "description": f"host {n}", "parameters": {"type": "object", "properties": {}}}
            for n in self.tools
        ]

    def call_tool(self, name: str, args: Dict[str, Any], ctx: ExecCtx) -> ToolResult:
        with self.lock:
            self.calls.append((name, args, ctx))
        return ToolResult(content=f"host ran {name}", exit_code=0)
