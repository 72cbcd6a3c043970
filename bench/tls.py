"""HTTPS against cleartext, in one run: conduit with and without TLS, beside Node's http and
https modules, streaming the same events.

    python bench/tls.py [--repeat 3] [--events 10000 1000000]

Each server streams GET /count?n=N (N events, ``SSEEvent(i, event="counter", id=i)`` on
conduit, Node's idiom in bench/peers/node/server.js), read by a client in its own process
(Python's ssl module over a blocking socket, 256 KiB reads, events counted by their blank
lines): events/s, and the server's CPU seconds per million events (from /proc), the figure
that says what TLS costs the server. The certificate is a P-256 one made by ``openssl`` for
this run; TLS 1.3 with AES-128-GCM is what both servers and the client agree on here.
Results go to bench/results/<timestamp>-tls.json and .md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
import asgi  # noqa: E402 - its server runner (stop, CPU) and free_port
from run import machine  # noqa: E402

ROOT = BENCH.parent
RESULTS = BENCH / "results"

READER = r'''
import json, socket, ssl, sys, time
port, path, tls, expect = int(sys.argv[1]), sys.argv[2], sys.argv[3] == "1", int(sys.argv[4])
sock = socket.create_connection(("127.0.0.1", port))
sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
if tls:
    context = ssl.create_default_context(cafile=sys.argv[5])
    sock = context.wrap_socket(sock, server_hostname="localhost")
started = time.perf_counter()
sock.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode())
events = 0
tail = b""
while True:
    data = sock.recv(262144)
    if not data:
        break
    chunk = tail + data
    events += chunk.count(b"\n\n")
    tail = chunk[-1:]
seconds = time.perf_counter() - started
print(json.dumps({"events": events, "seconds": seconds}))
sys.exit(0 if events == expect else 1)
'''


def make_cert(directory: Path) -> tuple:
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "2", "-subj", "/CN=localhost", "-addext",
                    "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True)
    return cert, key


def servers(cert: Path, key: Path) -> list[dict]:
    py = sys.executable
    app = str(BENCH / "apps" / "conduit_bench.py")
    conduit = [py, "-m", "conduit", "run", app, "--port", "{port}", "--no-access-log",
               "--log-level", "warning"]
    found = [
        {"name": "conduit", "label": "conduit, cleartext", "tls": False, "cmd": conduit},
        {"name": "conduit-tls", "label": "conduit, HTTPS (TLS 1.3)", "tls": True,
         "cmd": [*conduit, "--ssl-certfile", str(cert), "--ssl-keyfile", str(key)]},
    ]
    node = shutil.which("node")
    if node:
        script = str(BENCH / "peers" / "node" / "server.js")
        found += [
            {"name": "node", "label": "Node.js http", "tls": False,
             "cmd": [node, script, "--port", "{port}"]},
            {"name": "node-tls", "label": "Node.js https", "tls": True,
             "cmd": [node, script, "--port", "{port}", "--cert", str(cert), "--key", str(key)]},
        ]
    else:
        print("[tls] node skipped: not installed", file=sys.stderr)
    return found


class Running(asgi.Running):
    """A server started for this run (asgi.Running's stop and CPU; ready once it
    streams one event)."""

    def __init__(self, spec: dict, cert: Path) -> None:
        self.spec = spec
        self.port = asgi.free_port()
        argv = [a.replace("{port}", str(self.port)) for a in spec["cmd"]]
        env = dict(os.environ, CONDUIT_EXTENSIONS="1")
        self.proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, start_new_session=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{spec['name']} exited: {self.proc.stderr.read()[-800:]}")
            try:
                if stream(self.port, 1, spec["tls"], cert)["events"] == 1:
                    return
            except (OSError, RuntimeError, ValueError):
                time.sleep(0.1)
        raise RuntimeError(f"{spec['name']} did not start")


def stream(port: int, n: int, tls: bool, cert: Path) -> dict:
    out = subprocess.run([sys.executable, "-c", READER, str(port), f"/count?n={n}",
                          "1" if tls else "0", str(n), str(cert)],
                         capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        raise RuntimeError(f"reader: {out.stdout[-300:]} {out.stderr[-500:]}")
    return json.loads(out.stdout)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--events", type=int, nargs="+", default=[10_000, 1_000_000])
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cert, key = make_cert(Path(tmp))
        running = [Running(spec, cert) for spec in servers(cert, key)]
        try:
            results = measure(running, args, cert)
        finally:
            for server in running:
                server.stop()
    stamp = datetime.datetime.now(datetime.timezone.utc)
    out = args.out or RESULTS / f"{stamp:%Y%m%d-%H%M%S}-tls.json"
    command = "python bench/tls.py " + " ".join(sys.argv[1:])
    data = {"when": stamp.isoformat(timespec="seconds"), "machine": machine(),
            "command": command.strip(), "results": results}
    out.write_text(json.dumps(data, indent=1) + "\n")
    table = report(data)
    out.with_suffix(".md").write_text(table)
    print(table)
    return 0


def measure(running: list, args, cert: Path) -> dict:
    results: dict = {s.spec["name"]: {"label": s.spec["label"], "runs": {}} for s in running}
    for n in args.events:
        per_run = max(1, min(9, 200_000 // n))  # short streams: several back to back
        for k in range(args.repeat):
            order = running if k % 2 == 0 else running[::-1]
            for server in order:
                stream(server.port, min(n, 10_000), server.spec["tls"], cert)  # warm-up
                before = server.cpu()
                rates = []
                for _ in range(per_run):
                    got = stream(server.port, n, server.spec["tls"], cert)
                    rates.append(got["events"] / got["seconds"])
                cpu = server.cpu() - before
                runs = results[server.spec["name"]]["runs"].setdefault(str(n), [])
                runs.append({"events_per_second": statistics.median(rates),
                             "cpu_seconds_per_million": cpu / (n * per_run) * 1e6})
                print(f"[tls] {server.spec['name']} n={n}: {statistics.median(rates):,.0f} "
                      f"events/s, {cpu:.2f} s CPU", file=sys.stderr)
    return results


def report(data: dict) -> str:
    results = data["results"]
    sizes = sorted({int(n) for r in results.values() for n in r["runs"]})
    lines = [f"# HTTPS against cleartext, {data['when']}", "",
             f"`{data['command']}`; medians of the runs; machine: {data['machine']['cpu']}, "
             f"{data['machine']['cores']} cores, Python {data['machine']['python']}", "",
             "| server | " + " | ".join(
                 f"{n:,} events: events/s | server CPU s per 1M events" for n in sizes) + " |",
             "|---|" + "---:|---:|" * len(sizes)]
    for r in results.values():
        cells = []
        for n in sizes:
            runs = r["runs"].get(str(n), [])
            if not runs:
                cells += ["-", "-"]
                continue
            rate = statistics.median(x["events_per_second"] for x in runs)
            cpu = statistics.median(x["cpu_seconds_per_million"] for x in runs)
            cells += [f"{rate:,.0f}", f"{cpu:.2f}"]
        lines.append(f"| {r['label']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
