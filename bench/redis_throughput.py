"""Throughput through Redis: two conduit servers joined by ``--broker redis://...``.

    python bench/redis_throughput.py [--events 10000] [--subscribers 50] [--size 64]
                                     [--appendfsync everysec] [--repeat 3] [--json PATH]

Starts a redis-server (``/usr/bin/redis-server``, append-only with the given fsync policy,
on a free port, in a temporary directory) and two ``python -m conduit run
bench/apps/conduit_bench.py --broker redis://...`` servers, S raw-socket subscribers on
each (registered before anything is published), then per round:

- one publisher: ``POST /publish_loop?n=M&size=B`` to server A (a route this script adds
  to the bench app: a loop of ``Channel.publish``). Publishes/s = M / the time
  until its response (every publish acknowledged by Redis, one script round trip each);
  deliveries/s = 2 S M / the time until every subscriber on both servers has all M.
- two publishers: M/2 to each server at once (the cluster's aggregate publish rate).
- one publisher with ``Channel.publish_many`` (the bench app's own ``POST
  /publish?n=M&size=B``: one round trip per 500 events).

and the single-publisher rounds against one server without a broker, for reference.
Writes the medians as JSON (default ``/tmp/redis_throughput.json``). Not a test: speed
lives here.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fanout import Subscribers  # noqa: E402
from quickserver import ROOT, cpu_seconds  # noqa: E402

REDIS_SERVER = "/usr/bin/redis-server"

# The bench app plus one route, a publish loop (written to a temporary directory; bench/apps
# is unchanged).
APP = f"""
import sys
sys.path.insert(0, {str(ROOT / "bench" / "apps")!r})
from conduit_bench import app, broadcast


@app.post("/publish_loop")
def publish_loop(request):
    n = int(request.query.get("n", "1"))
    payload = "x" * int(request.query.get("size", "64"))
    for _ in range(n):
        broadcast.publish(payload, event="bench")
    return {{"published": n}}
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_redis(directory: str, appendfsync: str):
    port = free_port()
    proc = subprocess.Popen(
        [REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--dir", directory,
         "--save", "", "--appendonly", "yes", "--appendfsync", appendfsync,
         "--logfile", os.path.join(directory, "redis.log")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(16).startswith(b"+PONG"):
                    return proc, port
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("redis-server did not start")


def start_conduit(app_path, *args):
    env = dict(os.environ, CONDUIT_EXTENSIONS="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "conduit", "run", app_path, "--port", "0",
         "--no-access-log", *args],
        cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
    port = None
    for line in proc.stderr:
        match = re.search(r"running on http://[^:]+:(\d+)", line)
        if match:
            port = int(match.group(1))
        if port and (not args or "broker" in line):  # with a broker: once it is attached
            threading.Thread(target=proc.stderr.read, daemon=True).start()  # keep draining
            return proc, port
    raise RuntimeError("conduit did not start")


def post_publish(port: int, n: int, size: int, route: str = "/publish_loop") -> float:
    """Seconds until ``POST <route>?n=&size=`` is answered (200 expected)."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        start = time.perf_counter()
        sock.sendall(f"POST {route}?n={n}&size={size} HTTP/1.1\r\nHost: bench\r\n"
                     f"Content-Length: 0\r\nConnection: close\r\n\r\n".encode())
        reply = b""
        while True:
            data = sock.recv(65536)
            if not data:
                break
            reply += data
        elapsed = time.perf_counter() - start
    if not reply.startswith(b"HTTP/1.1 200"):
        raise SystemExit(f"publish failed: {reply[:200]!r}")
    return elapsed


def run_round(ports, subs, events: int, size: int, route: str = "/publish_loop") -> dict:
    """Publish ``events`` split over ``ports`` at once; time the answers and deliveries."""
    target = {s: c + events for s, c in subs.counts.items()}
    share = events // len(ports)
    answered = []
    start = time.perf_counter()
    threads = [threading.Thread(
        target=lambda p=p: answered.append(post_publish(p, share, size, route)))
        for p in ports]
    for thread in threads:
        thread.start()
    subs.pump(lambda: all(subs.counts[s] >= target[s] for s in subs.socks), 300)
    delivered = time.perf_counter() - start
    for thread in threads:
        thread.join()
    if any(subs.counts[s] != target[s] for s in subs.socks):
        raise SystemExit("a subscriber got more events than published")
    return {"publishes_per_s": events / max(answered),
            "deliveries_per_s": len(subs.socks) * events / delivered}


def measure(label, ports, subs, args, procs, route: str = "/publish_loop") -> dict:
    rounds = []
    for _ in range(args.repeat):
        cpu = [cpu_seconds(p.pid) for p in procs]
        result = run_round(ports, subs, args.events, args.size, route)
        result["cpu_seconds"] = [round(cpu_seconds(p.pid) - c, 2) for p, c in zip(procs, cpu,
                                                                                  strict=True)]
        rounds.append(result)
        print(f"  {label}: {result['publishes_per_s']:>9,.0f} publishes/s, "
              f"{result['deliveries_per_s']:>10,.0f} deliveries/s; CPU s (conduit..., redis) "
              f"{result['cpu_seconds']}", file=sys.stderr)
    return {key: statistics.median(r[key] for r in rounds)
            for key in ("publishes_per_s", "deliveries_per_s")} | {"rounds": rounds}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=10000)
    parser.add_argument("--subscribers", type=int, default=50, help="per server")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--appendfsync", default="everysec",
                        choices=("always", "everysec", "no"))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", default="/tmp/redis_throughput.json")
    args = parser.parse_args()
    if os.path.abspath(args.json).startswith(str(ROOT / "bench" / "results")):
        raise SystemExit("write elsewhere than bench/results")
    directory = tempfile.mkdtemp(prefix="conduit-redis-bench-")
    app_path = os.path.join(directory, "redis_bench_app.py")
    Path(app_path).write_text(APP)
    procs = []
    report = {"events": args.events, "size": args.size, "appendfsync": args.appendfsync,
              "subscribers_per_server": args.subscribers}
    try:
        redis, redis_port = start_redis(directory, args.appendfsync)
        procs.append(redis)
        url = f"redis://127.0.0.1:{redis_port}/0"
        a, port_a = start_conduit(app_path, "--broker", url)
        b, port_b = start_conduit(app_path, "--broker", url)
        procs[:0] = [a, b]
        subs = Subscribers([port_a, port_b], args.subscribers)
        run_round([port_a], subs, 100, args.size)  # warm-up
        report["one_publisher"] = measure("1 publisher, 2 servers", [port_a], subs, args,
                                          procs)
        report["two_publishers"] = measure("2 publishers, 2 servers", [port_a, port_b], subs,
                                           args, procs)
        report["publish_many"] = measure("publish_many, 2 servers", [port_a], subs, args,
                                         procs, "/publish")
        subs.close()
        for proc in (a, b):
            proc.terminate()
            proc.wait(15)
        procs[:2] = []
        alone, port = start_conduit(app_path)
        procs.insert(0, alone)
        subs = Subscribers([port], 2 * args.subscribers)
        run_round([port], subs, 100, args.size)
        report["no_broker_one_server"] = measure("no broker, 1 server", [port], subs, args,
                                                 [alone])
        report["no_broker_publish_many"] = measure("no broker, publish_many", [port], subs,
                                                   args, [alone], "/publish")
        subs.close()
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(15)
        shutil.rmtree(directory, ignore_errors=True)
    Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    for key in ("one_publisher", "two_publishers", "publish_many", "no_broker_one_server",
                "no_broker_publish_many"):
        print(f"{key}: {report[key]['publishes_per_s']:,.0f} publishes/s, "
              f"{report[key]['deliveries_per_s']:,.0f} deliveries/s")
    print(f"(written to {args.json})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
