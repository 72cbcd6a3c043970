"""Streaming throughput of one connection: events per second from a generator handler.

    python bench/stream.py [--events 10000 1000000] [--repeat 3] [--pure]

Starts ``python -m conduit run bench/apps/conduit_bench.py`` (compiled twins unless --pure),
reads ``GET /count?n=N`` over a raw socket, counts events (frames end with a blank line;
counted across read boundaries) and reports events/s with the server's and the client's
CPU time, so a reader can see who was saturated. Not a test: speed lives here.
(The full side-by-side harness against other servers is bench/README, issue 6.)
"""

from __future__ import annotations

import argparse
import resource
import socket
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quickserver import cpu_seconds, start_server  # noqa: E402


def count_events(port: int, n: int) -> tuple[int, float]:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
    start = time.perf_counter()
    sock.sendall(f"GET /count?n={n} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
    events = 0
    tail = b""
    while True:
        data = sock.recv(1 << 20)
        if not data:
            break
        chunk = tail + data
        events += chunk.count(b"\n\n")
        # keep one byte so a blank line split across reads is still seen once
        tail = chunk[-1:] if chunk[-1:] == b"\n" and not chunk.endswith(b"\n\n") else b""
        if chunk.endswith(b"0\r\n\r\n"):
            break
    elapsed = time.perf_counter() - start
    sock.close()
    return events, elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, nargs="+", default=[10_000, 1_000_000])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--pure", action="store_true", help="CONDUIT_EXTENSIONS=0")
    args = parser.parse_args()
    proc, port = start_server(args.pure)
    try:
        count_events(port, 1000)  # warm-up
        for n in args.events:
            rates = []
            for _ in range(args.repeat):
                server_cpu = cpu_seconds(proc.pid)
                client_cpu = resource.getrusage(resource.RUSAGE_SELF)
                events, elapsed = count_events(port, n)
                client_after = resource.getrusage(resource.RUSAGE_SELF)
                if events != n:
                    raise SystemExit(f"counted {events} events, expected {n}")
                server_used = cpu_seconds(proc.pid) - server_cpu
                client_used = (client_after.ru_utime + client_after.ru_stime
                               - client_cpu.ru_utime - client_cpu.ru_stime)
                rates.append(n / elapsed)
                print(f"  n={n:>9,}: {n / elapsed:>12,.0f} events/s  {elapsed:7.3f} s  "
                      f"server CPU {server_used / elapsed:5.0%}  client CPU "
                      f"{client_used / elapsed:5.0%}", file=sys.stderr)
            print(f"{'pure' if args.pure else 'compiled'} n={n:,}: median "
                  f"{statistics.median(rates):,.0f} events/s (min {min(rates):,.0f}, "
                  f"max {max(rates):,.0f}, {args.repeat} runs)")
    finally:
        proc.terminate()
        proc.wait(timeout=15)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
