#!/usr/bin/env python3
"""The declared minimum Rust version holds for the whole dependency graph.

The workspace declares `rust-version`; clippy's `incompatible_msrv` lint (part of `just lint`)
flags our own use of std APIs newer than it. This checks the rest: no package in the locked
graph declares a `rust-version` newer than ours. (This machine has one toolchain, so building
with the old compiler itself is not possible here.)
"""

import json
import subprocess
import sys


def version(text):
    parts = [int(p) for p in text.split(".")[:3]]
    return tuple(parts + [0] * (3 - len(parts)))


meta = json.loads(
    subprocess.run(
        ["cargo", "metadata", "--format-version", "1", "--locked"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
)
members = set(meta["workspace_members"])
ours = {p["rust_version"] for p in meta["packages"] if p["id"] in members}
if len(ours) != 1 or None in ours:
    sys.exit(f"msrv: every workspace crate should declare the workspace's rust-version, found {ours}")
msrv = ours.pop()
newer = sorted(
    (p["name"], p["version"], p["rust_version"])
    for p in meta["packages"]
    if p["id"] not in members
    and p.get("rust_version")
    and version(p["rust_version"]) > version(msrv)
)
if newer:
    for name, ver, rv in newer:
        print(f"msrv: {name} {ver} needs Rust {rv}, newer than our {msrv}", file=sys.stderr)
    sys.exit(1)
print(f"msrv: rust-version {msrv} holds for all {len(meta['packages'])} packages")
