"""Set-up errors are exceptions with the project's messages; the configuration is the file
`pool-inspect` reads, with keyword overrides."""

from __future__ import annotations

import os
import uuid

import pytest

import zcbot_sandbox
from conftest import image, make_pool


def test_a_missing_daemon_is_daemon_unavailable(monkeypatch, tmp_path):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-daemon.sock")
    with pytest.raises(zcbot_sandbox.DaemonUnavailable) as e:
        zcbot_sandbox.SandboxPool(image=image(), users_root=tmp_path)
    assert isinstance(e.value, zcbot_sandbox.SandboxError)
    assert "no-daemon.sock" in str(e.value) or "daemon" in str(e.value).lower(), e.value


def test_a_missing_image_is_image_missing(tmp_path):
    with pytest.raises(zcbot_sandbox.ImageMissing, match="just image"):
        make_pool(tmp_path, image=f"zcbot-sandbox:missing-{uuid.uuid4().hex[:8]}")


def test_bad_configuration_is_config_error(tmp_path):
    with pytest.raises(zcbot_sandbox.ConfigError, match="memroy"):
        zcbot_sandbox.SandboxPool(memroy="1GiB")
    with pytest.raises(zcbot_sandbox.ConfigError, match="pigeon"):
        zcbot_sandbox.SandboxPool(tools={"transport": "pigeon"})
    bad = tmp_path / "pool.toml"
    bad.write_text("[pools]\n")
    with pytest.raises(zcbot_sandbox.ConfigError, match="pool.toml"):
        zcbot_sandbox.SandboxPool(bad)
    with pytest.raises(zcbot_sandbox.ConfigError, match="reading the configuration"):
        zcbot_sandbox.SandboxPool(tmp_path / "absent.yaml")


@pytest.mark.parametrize("kind", ["toml", "yaml", "json"])
def test_the_file_pool_inspect_reads_with_keywords_over_it(tmp_path, kind):
    name = f"zpy-{uuid.uuid4().hex[:8]}"
    text = {
        "toml": f'[pool]\nname_prefix = "{name}"\nimage = "{image()}"\n[pool.labels]\n"zcbot.test" = "1"\n',
        "yaml": f"pool:\n  name_prefix: {name}\n  image: {image()}\n  labels: {{zcbot.test: '1'}}\n",
        "json": f'{{"pool": {{"name_prefix": "{name}", "image": "{image()}", "labels": {{"zcbot.test": "1"}}}}}}',
    }[kind]
    path = tmp_path / f"pool.{kind}"
    path.write_text(text)
    with zcbot_sandbox.SandboxPool(os.fspath(path), users_root=tmp_path / "users") as pool:
        assert pool.name == name
        assert pool.user_root("a") == tmp_path / "users" / "a"
        assert pool.list() == []
    assert pool.closed
    with pytest.raises(zcbot_sandbox.SandboxError, match="closed"):
        pool.ensure("a")


def test_ensure_list_remove(users_root):
    with make_pool(users_root) as pool:
        user = uuid.uuid4()
        name = pool.ensure(user)
        assert name == f"{pool.name}-{user}"
        assert pool.ensure(user) == name, "the same sandbox"
        listed = pool.list()
        assert [s["user"] for s in listed] == [str(user)]
        pool.mark_active(user)
        assert pool.remove(user) is True
        assert pool.remove(user) is False
        assert pool.list() == []
        with pytest.raises(ValueError, match="invalid user id"):
            pool.ensure("../etc")
