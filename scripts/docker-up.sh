#!/usr/bin/env bash
# Makes sure a Docker daemon answers, starting one when we are root on Debian.
#
# 1. If DOCKER_HOST (unix://) or /var/run/docker.sock answers, use it.
# 2. Otherwise, as root on Debian: install docker.io, debootstrap and runsc (gVisor) with apt
#    when missing, start `dockerd --bridge=none --iptables=false` in the background (no bridge
#    network, no firewall changes; gVisor registered as the runtime `runsc`), and wait for the
#    socket (bounded).
# 3. Otherwise fail, naming what is missing.
#
# Prints what it did. Safe to run repeatedly.
set -euo pipefail

WAIT_SECS=${DOCKER_UP_WAIT_SECS:-60}
LOG=${DOCKER_UP_LOG:-/var/log/zcbot-dockerd.log}

say() { echo "docker-up: $*" >&2; }
die() { say "error: $*"; exit 1; }

socket_path() {
  local host=${DOCKER_HOST:-unix:///var/run/docker.sock}
  case "$host" in
    unix://*) echo "${host#unix://}" ;;
    *) echo "" ;;
  esac
}

# The Engine API answers /_ping with "OK"; curl may be missing on a fresh machine, so fall back
# to python3 (always present on these machines) for the unix-socket request.
ping_socket() {
  local sock=$1
  [ -S "$sock" ] || return 1
  if command -v curl >/dev/null 2>&1; then
    [ "$(curl -s --max-time 3 --unix-socket "$sock" http://localhost/_ping 2>/dev/null)" = "OK" ]
  else
    python3 - "$sock" <<'PY' 2>/dev/null
import socket, sys
s = socket.socket(socket.AF_UNIX); s.settimeout(3); s.connect(sys.argv[1])
s.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
data = b""
while True:
    chunk = s.recv(4096)
    if not chunk: break
    data += chunk
sys.exit(0 if data.endswith(b"OK") else 1)
PY
  fi
}

if [ -n "${DOCKER_HOST:-}" ] && [ -z "$(socket_path)" ]; then
  # A TCP/SSH daemon: we cannot start it, only trust that it answers. The Rust side checks.
  say "DOCKER_HOST=$DOCKER_HOST is not a unix socket; assuming that daemon is managed elsewhere"
  exit 0
fi

SOCK=$(socket_path)
if ping_socket "$SOCK"; then
  say "daemon at $SOCK answers"
  exit 0
fi

[ "$(id -u)" = 0 ] || die "no daemon answers at $SOCK and we are not root, so we cannot start one; start dockerd or set DOCKER_HOST"
[ -f /etc/debian_version ] || die "no daemon answers at $SOCK and this is not Debian, so we cannot install one; install Docker Engine or set DOCKER_HOST"

missing=()
command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
# gVisor, registered as the runtime `runsc` (a pool with `runtime = "runsc"` uses it).
command -v runsc >/dev/null 2>&1 || missing+=(runsc)
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]} with apt"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq || die "apt-get update failed"
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || die "apt-get install ${missing[*]} failed"
fi
command -v dockerd >/dev/null 2>&1 || die "dockerd is still missing after installing docker.io"

if [ "$SOCK" != /var/run/docker.sock ]; then
  die "no daemon answers at $SOCK (from DOCKER_HOST); we only start the default daemon at /var/run/docker.sock"
fi

if [ -f /var/run/docker.pid ] && kill -0 "$(cat /var/run/docker.pid)" 2>/dev/null; then
  say "dockerd (pid $(cat /var/run/docker.pid)) is running but not answering yet; waiting"
else
  # gVisor as the runtime `runsc`, with its own network off (sandboxes use network `none`,
  # which runsc refuses to set up itself here). Only through a configuration file of ours,
  # so only when the machine has none of its own.
  extra=()
  if command -v runsc >/dev/null 2>&1 && [ ! -e /etc/docker/daemon.json ]; then
    conf=/run/zcbot-dockerd.json
    printf '{"runtimes": {"runsc": {"path": "%s", "runtimeArgs": ["--network=none"]}}}\n' \
      "$(command -v runsc)" >"$conf"
    extra=(--config-file "$conf")
  fi
  say "starting dockerd --bridge=none --iptables=false ${extra[*]} (log: $LOG)"
  # setsid: the daemon must outlive this script and the just recipe that called it.
  setsid dockerd --bridge=none --iptables=false "${extra[@]}" >>"$LOG" 2>&1 </dev/null &
fi

for _ in $(seq 1 $((WAIT_SECS * 5))); do
  if ping_socket "$SOCK"; then
    say "daemon at $SOCK answers"
    exit 0
  fi
  sleep 0.2
done
tail -n 20 "$LOG" >&2 || true
die "dockerd did not answer at $SOCK within ${WAIT_SECS}s (see $LOG)"
