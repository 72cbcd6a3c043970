"""Fan-out throughput: M events published once, delivered to S subscribers.

    python bench/fanout.py [--subscribers 100 1000] [--events 1000 200] [--size 64] [--pure]

Starts ``python -m conduit run bench/apps/conduit_bench.py``, opens S raw-socket subscribers
(each waits for its ``: subscribed`` comment, sent once it is registered), then
``POST /publish?n=M&size=B`` and times until every subscriber has all M events.
Deliveries per second = S * M / time. Reports the server's and the client's CPU so a
reader can see who was saturated. Not a test: speed lives here.
"""

from __future__ import annotations

import argparse
import resource
import selectors
import socket
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quickserver import TICKS, cpu_seconds, start_server  # noqa: E402


class Subscribers:
    """S raw-socket subscribers read with one reusable buffer (recv_into, count in place)."""

    def __init__(self, port, count: int) -> None:
        """``count`` subscribers on ``port``, or on each of a list of ports."""
        self.sel = selectors.DefaultSelector()
        self.counts: dict = {}
        self.last_byte: dict = {}
        self.buf = bytearray(1 << 20)
        self.socks = []
        ports = port if isinstance(port, list) else [port]
        for port_each in [p for p in ports for _ in range(count)]:
            s = socket.create_connection(("127.0.0.1", port_each))
            s.sendall(b"GET /events HTTP/1.1\r\nHost: bench\r\n\r\n")
            s.setblocking(False)
            self.sel.register(s, selectors.EVENT_READ)
            self.counts[s] = 0
            self.last_byte[s] = 0
            self.socks.append(s)
        # every subscriber registered (its comment line arrived): nothing can be missed
        self.pump(lambda: all(c >= 1 for c in self.counts.values()), 60)

    def pump(self, until, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        buf = self.buf
        view = memoryview(buf)
        counts = self.counts
        last_byte = self.last_byte
        while not until():
            if time.monotonic() > deadline:
                raise SystemExit("timed out waiting for events")
            for key, _ in self.sel.select(1.0):
                s = key.fileobj
                try:
                    n = s.recv_into(view)
                except BlockingIOError:
                    continue
                if not n:
                    raise SystemExit("a subscriber was disconnected")
                # a blank line split across two reads is counted once
                extra = 1 if last_byte[s] == 10 and buf[0] == 10 else 0
                counts[s] += buf.count(b"\n\n", 0, n) + extra
                last_byte[s] = buf[n - 1]

    def close(self) -> None:
        for s in self.socks:
            self.sel.unregister(s)
            s.close()


def run_round(port: int, subs: Subscribers, events: int, size: int) -> float:
    target = {s: c + events for s, c in subs.counts.items()}
    publisher = socket.create_connection(("127.0.0.1", port))
    start = time.perf_counter()
    publisher.sendall(f"POST /publish?n={events}&size={size} HTTP/1.1\r\nHost: bench\r\n"
                      f"Content-Length: 0\r\n\r\n".encode())
    subs.pump(lambda: all(subs.counts[s] >= target[s] for s in subs.socks), 120)
    elapsed = time.perf_counter() - start
    publisher.close()
    if any(subs.counts[s] != target[s] for s in subs.socks):
        raise SystemExit("a subscriber got more events than published")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--events", type=int, nargs="+", default=[1000, 200],
                        help="events per round, one value per --subscribers value")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--pure", action="store_true")
    args = parser.parse_args()
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    proc, port = start_server(args.pure)
    try:
        warm = Subscribers(port, 10)
        run_round(port, warm, 10, args.size)
        warm.close()
        for subscribers, events in zip(args.subscribers, args.events, strict=True):
            subs = Subscribers(port, subscribers)
            rates = []
            server_total = 0.0
            for _ in range(args.repeat):
                server_cpu = cpu_seconds(proc.pid)
                before = resource.getrusage(resource.RUSAGE_SELF)
                elapsed = run_round(port, subs, events, args.size)
                after = resource.getrusage(resource.RUSAGE_SELF)
                server_used = cpu_seconds(proc.pid) - server_cpu
                client_used = (after.ru_utime + after.ru_stime
                               - before.ru_utime - before.ru_stime)
                deliveries = subscribers * events
                rates.append(deliveries / elapsed)
                server_total += server_used
                print(f"  {subscribers} subscribers x {events} events: "
                      f"{deliveries / elapsed:>12,.0f} deliveries/s in {elapsed * 1000:7.1f} ms;"
                      f" server CPU {server_used * 1000:.0f} ms, client CPU "
                      f"{client_used * 1000:.0f} ms", file=sys.stderr)
            subs.close()
            print(f"{'pure' if args.pure else 'compiled'} {subscribers} subscribers x "
                  f"{events} events of {args.size} B: median {statistics.median(rates):,.0f} "
                  f"deliveries/s (min {min(rates):,.0f}, max {max(rates):,.0f}); server CPU "
                  f"{server_total * 1000:.0f} ms for all {args.repeat} rounds (clock ticks of "
                  f"{1000 // TICKS} ms)")
    finally:
        proc.terminate()
        proc.wait(timeout=15)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
