"""Type stubs of the native extension (see the package's docstring)."""

import os
from pathlib import Path
from typing import Any, Awaitable, Callable, Optional, Protocol, Union

SANDBOX_TOOLS: frozenset[str]
"""The seven tools that run in the sandbox: shell, run_python, read, write, edit, glob, grep."""

def metrics_text() -> str:
    """The pool's and the tools' metrics in Prometheus' text format (for the service's own
    ``/metrics`` endpoint)."""

class SandboxError(Exception):
    """A sandbox could not be set up or used: the daemon, the image, the pool."""

class ConfigError(SandboxError):
    """The configuration (its file or a keyword) is not one the libraries accept."""

class DaemonUnavailable(SandboxError):
    """No Docker daemon answers (DOCKER_HOST, or the default socket)."""

class ImageMissing(SandboxError):
    """The sandbox image is not on the daemon, or is too old for this library."""

class HostExecutor(Protocol):
    """What the service's own executor offers (the seed's ``HostExecutor``)."""

    def has_tool(self, name: str) -> bool: ...
    def schemas(self) -> list[dict[str, Any]]: ...
    def warm_up(self) -> bool:
        """Makes the user's sandbox ready ahead of its first call, with its channel open."""
    def call_tool(self, name: str, args: dict[str, Any], ctx: Any) -> Any: ...

class ExecCtx(Protocol):
    """What a call's context carries (the seed's ``ExecCtx``); both may be missing or None."""

    task_id: Any
    cancel_check: Optional[Callable[[], bool]]

Sink = Callable[[str, bytes], Any]
"""Live output: ``sink("stdout" | "stderr", data)``."""

class ToolResult:
    """A tool's answer: the text for the model, its exit code, and facts about the call."""

    content: str
    exit_code: int
    """0 on success; the command's own code; 2 bad arguments, 124 timed out, 130 cancelled, 1 internal failure."""
    timed_out: bool
    cancelled: bool
    truncated: bool
    """Some output was dropped by the caps (head and tail kept)."""
    sandbox_lost: bool
    recreated: Optional[str]
    """Why the sandbox was made anew for this call, if it was."""
    duration: float
    """Seconds from the start of the call to its result."""
    nothing_left: Optional[bool]
    """After a kill (timeout or cancel): whether nothing of the call was left running."""
    def __init__(self, content: str, exit_code: int = 0) -> None: ...

class SandboxPool:
    """The pool of per-user sandbox containers: one per process, shared by executors.

    ``config`` is a TOML, YAML or JSON file as ``pool-inspect --config`` reads it; keywords
    override its ``[pool]`` section (``image=``, ``users_root=``, ``name_prefix=``,
    ``memory="2GiB"``, ...) and ``tools={...}`` its ``[tools]`` section.

    Raises ``DaemonUnavailable``, ``ImageMissing``, ``ConfigError`` or ``SandboxError``.
    """

    def __init__(
        self,
        config: Union[str, os.PathLike[str], None] = None,
        *,
        tools: Optional[dict[str, Any]] = None,
        **pool: Any,
    ) -> None: ...
    @property
    def name(self) -> str: ...
    @property
    def closed(self) -> bool: ...
    def ensure(self, user_id: Any) -> str:
        """The user's sandbox, made, adopted or repaired if needed; its container name."""
    def mark_active(self, user_id: Any) -> None:
        """Restarts the user's idle timer (calls do this themselves)."""
    def remove(self, user_id: Any) -> bool:
        """Removes the user's sandbox (their files stay); whether there was one."""
    def list(self) -> list[dict[str, Any]]:
        """The sandboxes this pool holds: engine, user, container, state, idle time, channel."""
    def engines(self) -> list[dict[str, Any]]:
        """The Docker engines: name, host, up, sandboxes, error (``[[engines]]`` in the config)."""
    def user_root(self, user_id: Any) -> Path:
        """The host folder mounted as ``/workspace`` in the user's sandbox."""
    def close(self, *, remove: bool = False) -> None:
        """Stops the reaper; sandboxes are kept for the next start to adopt (or removed)."""
    def __enter__(self) -> "SandboxPool": ...
    def __exit__(self, *exc: Any) -> bool: ...

class DockerExecutor:
    """Runs the seven sandbox tools of one user in that user's sandbox; every other tool
    goes to ``host``, exactly as the seed routes them.

    ``user_root`` must be the pool's root for this user (``pool.user_root(user_id)``).
    ``result_class`` builds results as ``result_class(content=..., exit_code=...)``;
    ``usage(user_id) -> bytes`` feeds the disk-quota gate of ``write`` and ``edit``.
    """

    host: HostExecutor
    pool: SandboxPool
    user_id: Any
    user_root: Path
    working_dir: Path
    def __init__(
        self,
        host: HostExecutor,
        pool: SandboxPool,
        user_id: Any,
        user_root: Union[str, os.PathLike[str]],
        working_dir: Union[str, os.PathLike[str]],
        *,
        result_class: Optional[Callable[..., Any]] = None,
        usage: Optional[Callable[[str], int]] = None,
    ) -> None: ...
    def has_tool(self, name: str) -> bool: ...
    def schemas(self) -> list[dict[str, Any]]: ...
    def warm_up(self) -> bool:
        """Makes the user's sandbox ready ahead of its first call, with its channel open."""
    def call_tool(
        self,
        name: str,
        args: dict[str, Any],
        ctx: Optional[ExecCtx] = None,
        *,
        sink: Optional[Sink] = None,
    ) -> Any:
        """Runs the tool; a tool's failure is a result, never an exception.

        ``ctx.cancel_check()`` is asked every 50 ms; ``sink`` gets live output on this thread.
        """
    def acall_tool(
        self,
        name: str,
        args: dict[str, Any],
        ctx: Optional[ExecCtx] = None,
        *,
        sink: Optional[Sink] = None,
    ) -> Awaitable[Any]:
        """As ``call_tool``, for asyncio; cancelling the task kills what the call started.

        ``sink`` is called on the event loop.
        """
