"""The benchmark's peers (the servers conduit is compared with), for bench/run.py.

    python bench/peers/registry.py            # the peers as JSON, and what is missing

``peers(root)`` returns one dict per installed peer (``missing(root)`` says why the others
are left out: run ``bash bench/install-peers.sh``). Keys:

name, label      short id ("reference" is the yardstick the report divides by) and display name
cmd              argv; placeholders: {port} (where it must listen, on 127.0.0.1),
                 {python} (the value of "python"); the process started is the process that
                 serves (nginx is exec'd by its wrapper), so its pid is the server's pid
python           the interpreter for {python} (bench/.venv-peers/bin/python for the Python peers)
ready            a GET path that answers "HTTP/1.1 200" once the peer serves
supports         scenarios it takes part in: stream, fanout, latency, slow, idle, hold, and
                 ticks (GET /ticks?n=N&rate=R: a stream paced by an asyncio producer; only
                 the Python peers, whose idiom it is), shape (GET /shape?kind=K&n=N: the
                 event shapes users write) and streams (many /shape streams at once)
sub_path         GET path of the broadcast subscription
sub_headers      headers a subscriber must send (nchan answers 403 without
                 "Accept: text/event-stream"; harmless for the others, so send it always)
first_comment    the comment the peer sends once the subscriber is registered (a client that
                 has read it cannot miss a publish)
chunked          whether the SSE responses use chunked transfer encoding (nchan's EventSource
                 stream has neither chunking nor Content-Length: it runs until the close)
pub_path         POST path whose body is published as one event (latency scenarios); the
                 answer is 200, except nchan: 201 (delivered to subscribers) or 202 (none)
publish_path     (nchan only) the fan-out publish path, with
publish_each     True: there is no /publish?n=M&size=B, so the client sends M requests
                 "POST {publish_path}" each with a body of size bytes ("x" * size); they may
                 be pipelined on one keep-alive connection
event_fields     the order of the fields in an event (the client should not depend on it)
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

ALL_SCENARIOS = ["stream", "fanout", "latency", "slow", "idle", "hold"]
NCHAN_MODULES = ("/usr/lib/nginx/modules/ngx_nchan_module.so",
                 "/usr/share/nginx/modules/ngx_nchan_module.so")
ACCEPT_SSE = {"Accept": "text/event-stream"}


def _all(root: Path) -> list[dict]:
    root = Path(root).resolve()
    peers_dir = root / "bench" / "peers"
    venv_python = str(root / "bench" / ".venv-peers" / "bin" / "python")
    common = {"ready": "/count?n=1", "supports": list(ALL_SCENARIOS), "sub_path": "/events",
              "sub_headers": dict(ACCEPT_SSE), "first_comment": ": subscribed",
              "chunked": True, "pub_path": "/pub"}
    return [
        {**common, "name": "reference", "label": "C reference (epoll, 1 thread)",
         "cmd": [str(peers_dir / "reference" / "server"), "--port", "{port}"],
         "supports": [*ALL_SCENARIOS, "shape", "streams"],
         "event_fields": ["event", "id", "data"]},
        {**common, "name": "fastapi-sse-starlette",
         "label": "FastAPI + sse-starlette (uvicorn, uvloop, httptools)",
         "python": venv_python,
         "cmd": ["{python}", str(peers_dir / "fastapi_sse_starlette" / "app.py"),
                 "--port", "{port}"],
         "supports": [*ALL_SCENARIOS, "ticks", "shape", "streams"],
         "event_fields": ["id", "event", "data"]},
        {**common, "name": "fastapi-native",
         "label": "FastAPI native SSE (fastapi.sse.EventSourceResponse, uvicorn)",
         "python": venv_python,
         "cmd": ["{python}", str(peers_dir / "fastapi_native" / "app.py"), "--port", "{port}"],
         "supports": [*ALL_SCENARIOS, "shape", "streams"],
         "event_fields": ["event", "data", "id"]},
        {**common, "name": "aiohttp-sse", "label": "aiohttp + aiohttp-sse",
         "python": venv_python,
         "cmd": ["{python}", str(peers_dir / "aiohttp_sse" / "app.py"), "--port", "{port}"],
         "supports": [*ALL_SCENARIOS, "ticks", "shape", "streams"],
         "event_fields": ["id", "event", "data"]},
        {**common, "name": "node", "label": "Node.js http (built-in)",
         "cmd": [shutil.which("node") or "node", str(peers_dir / "node" / "server.js"),
                 "--port", "{port}"],
         "supports": [*ALL_SCENARIOS, "shape", "streams"],
         "event_fields": ["event", "id", "data"]},
        {**common, "name": "nginx-nchan", "label": "nginx + nchan (1 worker)",
         "python": sys.executable,
         "cmd": ["{python}", str(peers_dir / "nginx_nchan" / "run.py"), "--port", "{port}"],
         "ready": "/ready",
         "supports": ["fanout", "latency", "slow", "idle"],
         "first_comment": ": hi", "chunked": False,
         "publish_path": "/pub", "publish_each": True,
         "event_fields": ["event", "id", "data"]},
        # The floor of the ticks scenario (no HTTP framework: see its docstring).
        {**common, "name": "asyncio-floor",
         "label": "asyncio floor (uvloop Protocol, one write per event, no HTTP stack)",
         "python": venv_python,
         "cmd": ["{python}", str(peers_dir / "asyncio_floor" / "server.py"),
                 "--port", "{port}"],
         "supports": ["ticks"],
         "event_fields": ["event", "data"]},
    ]


def _why_missing(peer: dict, root: Path) -> str | None:
    name = peer["name"]
    if name == "reference":
        binary = Path(peer["cmd"][0])
        return None if binary.exists() else f"{binary} not built (make -C bench/peers/reference)"
    if "python" in peer and peer["cmd"][0] == "{python}" and name != "nginx-nchan":
        return None if os.access(peer["python"], os.X_OK) else (
            f"{peer['python']} missing (bash bench/install-peers.sh)")
    if name == "node":
        return None if shutil.which("node") else "node not on PATH"
    if name == "nginx-nchan":
        if not (shutil.which("nginx") or os.path.exists("/usr/sbin/nginx")):
            return "nginx not installed (bash bench/install-peers.sh)"
        if not any(os.path.exists(path) for path in NCHAN_MODULES):
            return "libnginx-mod-nchan not installed (bash bench/install-peers.sh)"
    return None


def missing(root: Path) -> dict[str, str]:
    """name -> why the peer cannot run here."""
    return {p["name"]: why for p in _all(root) if (why := _why_missing(p, root))}


def peers(root: Path, include_missing: bool = False) -> list[dict]:
    """The peers that can run here (all of them with include_missing)."""
    gone = missing(root)
    if gone and not include_missing:
        for name, why in gone.items():
            print(f"[peers] {name} left out: {why}", file=sys.stderr)
    return [p for p in _all(root) if include_missing or p["name"] not in gone]


if __name__ == "__main__":
    root = Path(__file__).resolve().parents[2]
    print(json.dumps({"peers": peers(root, include_missing=True), "missing": missing(root)},
                     indent=1))
