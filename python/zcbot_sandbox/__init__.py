"""Per-user Docker sandboxes for an agent's tools: a drop-in for the agent service's own
``SandboxPool`` and ``DockerExecutor``.

The seed's service changes one import::

    from zcbot_sandbox import DockerExecutor, SandboxPool

    pool = SandboxPool("pool.toml")            # once per process
    executor = DockerExecutor(host, pool, user_id, user_root, working_dir)
    result = executor.call_tool("shell", {"command": "ls"}, ctx)
    print(result.content, result.exit_code)

Host tools go to ``host`` as before; the seven sandbox tools run in the user's container
through the Docker Engine API (no ``docker`` CLI), with the GIL released for the whole call.
"""

from ._native import (
    SANDBOX_TOOLS,
    ConfigError,
    DaemonUnavailable,
    DockerExecutor,
    ImageMissing,
    SandboxError,
    SandboxPool,
    ToolResult,
    metrics_text,
)

__all__ = [
    "SANDBOX_TOOLS",
    "ConfigError",
    "DaemonUnavailable",
    "DockerExecutor",
    "ImageMissing",
    "SandboxError",
    "SandboxPool",
    "ToolResult",
    "metrics_text",
]
