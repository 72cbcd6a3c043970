#!/usr/bin/env bash
# Install everything the benchmark's peers need (bench/peers/README.md). Idempotent.
#
#     bash bench/install-peers.sh
#
# 1. a venv at bench/.venv-peers with the pinned Python peers (bench/peers/requirements.txt):
#    FastAPI, uvicorn[standard] (uvloop, httptools), sse-starlette, aiohttp, aiohttp-sse;
# 2. Debian's nginx and libnginx-mod-nchan (apt-get, as root or through sudo; the nginx
#    service that Debian may start is stopped again if this script installed nginx);
# 3. Node.js >= 18 (checked; Debian's nodejs installed when there is none);
# 4. the C reference server (make -C bench/peers/reference);
# 5. what bench/asgi.py needs: Debian's wrk, and granian, httptools and uvloop in the
#    interpreter that runs conduit and bench/asgi.py (ASGI_PYTHON, default python).
# PYTHON=python3.12 bash bench/install-peers.sh picks the interpreter for the venv.
set -euo pipefail

BENCH="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="$BENCH/.venv-peers"
PYTHON="${PYTHON:-python3}"

say() { printf '[install-peers] %s\n' "$*"; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"
    elif command -v sudo >/dev/null 2>&1; then sudo "$@"
    else say "need root (or sudo) for: $*"; return 1
    fi
}

apt_updated=0
apt_install() {
    if [ "$apt_updated" -eq 0 ]; then
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
        apt_updated=1
    fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"
}

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

# -- 1. Python peers ---------------------------------------------------------------------------
if [ ! -x "$VENV/bin/python" ]; then
    say "creating $VENV with $("$PYTHON" --version 2>&1)"
    "$PYTHON" -m venv "$VENV"
fi
if "$VENV/bin/python" -m pip install -q --disable-pip-version-check \
        -r "$BENCH/peers/requirements.txt" 2> >(grep -v "^WARNING: Location" >&2); then
    say "python peers: $("$VENV/bin/python" -m pip freeze --disable-pip-version-check \
        | grep -iE '^(fastapi|starlette|uvicorn|uvloop|httptools|sse-starlette|aiohttp|aiohttp-sse)==' \
        | tr '\n' ' ')"
else
    say "pip install failed"; exit 1
fi

# -- 2. nginx + nchan --------------------------------------------------------------------------
if installed nginx && installed libnginx-mod-nchan; then
    say "nginx + nchan: already installed"
else
    had_nginx=0; installed nginx && had_nginx=1
    apt_install nginx libnginx-mod-nchan
    if [ "$had_nginx" -eq 0 ] && command -v systemctl >/dev/null 2>&1 \
            && systemctl is-active --quiet nginx 2>/dev/null; then
        say "stopping the nginx service Debian started (the benchmark runs its own)"
        as_root systemctl disable --now nginx || true
    fi
fi
say "nginx: $(/usr/sbin/nginx -v 2>&1 | sed 's/.*version: //'), nchan: $(dpkg-query -W -f='${Version}' libnginx-mod-nchan)"

# -- 3. Node.js --------------------------------------------------------------------------------
node_major() { node -e 'process.stdout.write(process.versions.node.split(".")[0])' 2>/dev/null || echo 0; }
if [ "$(node_major)" -lt 18 ]; then
    say "no Node.js >= 18 on PATH: installing Debian's nodejs"
    apt_install nodejs
fi
if [ "$(node_major)" -lt 18 ]; then say "Node.js >= 18 is needed, found $(node --version 2>&1)"; exit 1; fi
say "node: $(node --version) ($(command -v node))"

# -- 4. the reference server -------------------------------------------------------------------
if ! command -v make >/dev/null 2>&1 || ! command -v cc >/dev/null 2>&1; then
    apt_install make gcc libc6-dev
fi
make -s -C "$BENCH/peers/reference"
say "reference server: $BENCH/peers/reference/server"

# -- 5. the ASGI benchmark's load generator and servers ----------------------------------------
command -v wrk >/dev/null 2>&1 || apt_install wrk
ASGI_PYTHON="${ASGI_PYTHON:-python}"
"$ASGI_PYTHON" -m pip install -q "granian==2.8.9" "httptools==0.9.0" "uvloop==0.23.0" \
    "uvicorn[standard]==0.54.0"
say "asgi bench: $(wrk --version 2>&1 | head -1 | cut -d' ' -f1-2), granian $("$ASGI_PYTHON" -m pip show granian | sed -n 's/^Version: //p') in $ASGI_PYTHON"
say "done"
