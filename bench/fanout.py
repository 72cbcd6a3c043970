"""Fan-out throughput: M events published once, delivered to S subscribers.

    python bench/fanout.py [--subscribers 100 1000] [--events 1000 200] [--size 64] [--pure]

Starts ``python -m conduit run bench/apps/conduit_hub.py``, opens S raw-socket subscribers
(each waits for its ``: subscribed`` comment, sent once it is registered), then
``POST /publish?n=M&size=B`` and times until every subscriber has all M events.
Deliveries per second = S * M / time. Reports the server's and the client's CPU so a
reader can see who was saturated. Not a test: speed lives here.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import selectors
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TICKS = os.sysconf("SC_CLK_TCK")


def start_server(pure: bool):
    env = dict(os.environ, CONDUIT_EXTENSIONS="0" if pure else "1")
    if os.environ.get("BENCH_EXTENSIONS_UNSET"):
        env.pop("CONDUIT_EXTENSIONS")
    proc = subprocess.Popen(
        [sys.executable, "-m", "conduit", "run", "bench/apps/conduit_hub.py", "--port", "0",
         "--no-access-log", "--max-connections", "20000"],
        cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True,
    )
    for line in proc.stderr:
        match = re.search(r"running on http://[^:]+:(\d+)", line)
        if match:
            return proc, int(match.group(1))
    raise RuntimeError("server did not start")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def run_round(port: int, subscribers: int, events: int, size: int):
    sel = selectors.DefaultSelector()
    counts = {}
    tails = {}
    socks = []
    for _ in range(subscribers):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(b"GET /events HTTP/1.1\r\nHost: bench\r\n\r\n")
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
        counts[s] = 0
        tails[s] = b""
        socks.append(s)

    def pump(until, deadline):
        while not until():
            if time.monotonic() > deadline:
                raise SystemExit("timed out waiting for events")
            for key, _ in sel.select(1.0):
                s = key.fileobj
                try:
                    data = s.recv(1 << 20)
                except BlockingIOError:
                    continue
                if not data:
                    raise SystemExit("a subscriber was disconnected")
                chunk = tails[s] + data
                counts[s] += chunk.count(b"\n\n")
                tails[s] = chunk[-1:] if chunk.endswith(b"\n") and not chunk.endswith(
                    b"\n\n") else b""

    # every subscriber registered (its comment line arrived): nothing can be missed
    pump(lambda: all(c >= 1 for c in counts.values()), time.monotonic() + 60)
    target = 1 + events
    publisher = socket.create_connection(("127.0.0.1", port))
    start = time.perf_counter()
    publisher.sendall(f"POST /publish?n={events}&size={size} HTTP/1.1\r\nHost: bench\r\n"
                      f"Content-Length: 0\r\n\r\n".encode())
    pump(lambda: all(c >= target for c in counts.values()), time.monotonic() + 120)
    elapsed = time.perf_counter() - start
    publisher.close()
    for s in socks:
        sel.unregister(s)
        s.close()
    if any(c != target for c in counts.values()):
        raise SystemExit("a subscriber got more events than published")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--events", type=int, nargs="+", default=[1000, 200],
                        help="events per round, one value per --subscribers value")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--pure", action="store_true")
    args = parser.parse_args()
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    proc, port = start_server(args.pure)
    try:
        run_round(port, 10, 10, args.size)  # warm-up
        for subscribers, events in zip(args.subscribers, args.events, strict=True):
            rates = []
            for _ in range(args.repeat):
                server_cpu = cpu_seconds(proc.pid)
                before = resource.getrusage(resource.RUSAGE_SELF)
                elapsed = run_round(port, subscribers, events, args.size)
                after = resource.getrusage(resource.RUSAGE_SELF)
                deliveries = subscribers * events
                rates.append(deliveries / elapsed)
                print(f"  {subscribers} subscribers x {events} events: "
                      f"{deliveries / elapsed:>12,.0f} deliveries/s in {elapsed * 1000:7.1f} ms"
                      f" (server CPU {cpu_seconds(proc.pid) - server_cpu:.2f} s incl. "
                      f"connection setup; client CPU "
                      f"{after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime:.2f}"
                      f" s)", file=sys.stderr)
            print(f"{'pure' if args.pure else 'compiled'} {subscribers} subscribers x "
                  f"{events} events of {args.size} B: median {statistics.median(rates):,.0f} "
                  f"deliveries/s (min {min(rates):,.0f}, max {max(rates):,.0f})")
    finally:
        proc.terminate()
        proc.wait(timeout=15)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
