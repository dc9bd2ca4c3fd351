"""Fixtures: a pool of the image under test (``SANDBOX_IMAGE``) with its own name and users
root, labelled as a test's, removed with its sandboxes at the end."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import zcbot_sandbox  # noqa: E402
from seed_service import ExecCtx, HostExecutor  # noqa: E402


def image() -> str:
    tag = os.environ.get("SANDBOX_IMAGE")
    if not tag:
        pytest.fail("SANDBOX_IMAGE is not set: run the suite through `just test`")
    return tag


def make_pool(users_root: Path, **overrides) -> zcbot_sandbox.SandboxPool:
    labels = {"zcbot.test": "1", "zcbot.test.name": "python"}
    labels.update(overrides.pop("labels", {}))
    settings = dict(
        image=image(),
        name_prefix=f"zpy-{uuid.uuid4().hex[:10]}",
        users_root=users_root,
        memory="256MiB",
        labels=labels,
    )
    settings.update(overrides)
    return zcbot_sandbox.SandboxPool(**settings)


@pytest.fixture(scope="session")
def users_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("users")


@pytest.fixture(scope="session")
def pool(users_root):
    # Calls at once in the threads test: each call in flight holds a few of the pids limit.
    pool = make_pool(users_root, pids_limit=1024)
    yield pool
    pool.close(remove=True)


@pytest.fixture
def user_id() -> uuid.UUID:
    return uuid.uuid4()


@pytest.fixture
def host() -> HostExecutor:
    return HostExecutor()


@pytest.fixture
def executor(pool, host, user_id):
    root = pool.user_root(user_id)
    yield zcbot_sandbox.DockerExecutor(host, pool, user_id, root, root)
    pool.remove(user_id)


@pytest.fixture
def ctx() -> ExecCtx:
    return ExecCtx(task_id=uuid.uuid4())


def processes(container: str) -> list[str]:
    """The container's processes as the daemon lists them (not through the library), without
    the sandbox's own: its init, its main process and its channel's runner."""
    out = subprocess.run(
        ["docker", "top", container, "-o", "pid,args"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.splitlines()[1:]
    own = ("/sbin/docker-init", "sleep infinity", "/sandbox/bin/sandbox-runner serve ")
    return [p for p in out if not any(o in p for o in own)]
