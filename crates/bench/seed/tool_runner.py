#!/usr/bin/env python3
"""Stand-in for the seed's /sandbox/tool_runner.py (the original is not available to us).

The benchmark runs it the way the seed ran its runner:
`docker exec -i --user zcbot --workdir /workspace -e PYTHONIOENCODING=utf-8 C python3
/sandbox/bench/tool_runner.py TOOL` with the tool's JSON arguments on stdin. It implements only
what the benchmark calls, with the same contract as the seed's runner and the project's Rust
runner: the result on stdout and exit 0; `[Error] ...` on stderr and exit 1 on failure, exit 2
on bad arguments.

- `read`: the file's lines numbered like `cat -n` (number right-aligned in 6 columns, a tab,
  the text), from `offset` for `limit` lines, cut at 2000 characters per line and 256 KiB in
  all, like the Rust runner.
- `write`: replaces the file atomically (a temporary file next to it, then a rename), creating
  missing parent directories.
"""

import json
import os
import sys
import tempfile

DEFAULT_LIMIT = 2000
MAX_LINE_CHARS = 2000
MAX_OUTPUT_BYTES = 256 * 1024
SNIFF_BYTES = 8 * 1024


def fail(message, code=1):
    sys.stderr.write("[Error] " + message)
    sys.exit(code)


def bad_args(tool, message):
    fail("bad arguments to %s: %s" % (tool, message), 2)


def positive_int(tool, args, key, default):
    value = args.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        bad_args(tool, "%s must be a positive integer" % key)
    return value


def path_arg(tool, args):
    path = args.get("path")
    if not isinstance(path, str) or not path:
        bad_args(tool, "path must be a non-empty string")
    return path


def read(args):
    path = path_arg("read", args)
    offset = positive_int("read", args, "offset", 1)
    limit = positive_int("read", args, "limit", DEFAULT_LIMIT)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        fail("read: %s: %s" % (path, e.strerror))
    if b"\0" in data[:SNIFF_BYTES]:
        fail("read: %s is a binary file (%d bytes); not shown" % (path, len(data)))
    lines = data.decode("utf-8", errors="replace").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if not lines:
        return "(empty file)"
    if offset > len(lines):
        fail("read: offset %d is past the end of %s (%d lines)" % (offset, path, len(lines)))
    end = offset + limit
    out = []
    size = 0
    for no in range(offset, min(end, len(lines) + 1)):
        text = lines[no - 1]
        if text.endswith("\r"):
            text = text[:-1]
        if len(text) > MAX_LINE_CHARS:
            more = len(text) - MAX_LINE_CHARS
            text = "%s [... line truncated, %d more characters]" % (text[:MAX_LINE_CHARS], more)
        line = "%6d\t%s" % (no, text)
        size += len(line.encode("utf-8")) + 1
        if size > MAX_OUTPUT_BYTES:
            out.append("[... output truncated at 256 KiB; continue with offset=%d]" % no)
            return "\n".join(out)
        out.append(line)
    text = "\n".join(out)
    if end <= len(lines):
        text += "\n[... more lines follow; continue with offset=%d]" % end
    return text


def write(args):
    path = path_arg("write", args)
    content = args.get("content")
    if not isinstance(content, str):
        bad_args("write", "content must be a string")
    data = content.encode("utf-8")
    target = os.path.realpath(path)
    parent = os.path.dirname(target) or "."
    try:
        os.makedirs(parent, exist_ok=True)
        fd, temp = tempfile.mkstemp(prefix="." + os.path.basename(target) + ".", dir=parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.chmod(temp, 0o644)
            os.replace(temp, target)
        except BaseException:
            os.unlink(temp)
            raise
    except OSError as e:
        fail("write: %s: %s" % (path, e.strerror))
    return "Wrote %d bytes to %s" % (len(data), path)


TOOLS = {"read": read, "write": write}


def main():
    if len(sys.argv) != 2 or sys.argv[1] not in TOOLS:
        fail("unknown tool: %s" % " ".join(sys.argv[1:]), 2)
    tool = sys.argv[1]
    try:
        args = json.load(sys.stdin)
    except ValueError as e:
        bad_args(tool, "arguments are not JSON: %s" % e)
    if not isinstance(args, dict):
        bad_args(tool, "arguments must be a JSON object")
    sys.stdout.write(TOOLS[tool](args))
    sys.exit(0)


if __name__ == "__main__":
    main()
