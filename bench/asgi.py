"""The ASGI benchmark: one FastAPI app (bench/apps/fastapi_bench.py) on conduit, on
uvicorn (httptools + uvloop) and on granian, in one run, on this machine.

    python bench/asgi.py [--repeat 3] [--seconds 10] [--connections 64]

1. GET /json over keep-alive, driven by Debian's ``wrk`` (one thread, --connections
   connections, --seconds s): requests/s.
2. GET /sse?n=10000: sse-starlette's EventSourceResponse streaming 10,000 events, read by
   the compiled load client (bench/client): events/s (median of 5 streams per run).
Each server is started once; the repeats alternate the order of the servers. Results go to
bench/results/<timestamp>-asgi.json and .md. Servers that are not installed (granian,
httptools) are reported as skipped.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
from run import cpu_seconds  # noqa: E402 - the harness's reading of /proc

ROOT = BENCH.parent
APPS = BENCH / "apps"
CLIENT = BENCH / "client" / "loadclient"
RESULTS = BENCH / "results"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def servers() -> list[dict]:
    py = sys.executable
    found = []
    found.append({"name": "conduit", "label": "FastAPI on conduit (compiled)",
                  "cmd": [py, "-m", "conduit", "run", str(APPS / "fastapi_bench.py") + ":app",
                          "--port", "{port}", "--no-access-log", "--log-level", "warning"],
                  "env": {"CONDUIT_EXTENSIONS": "1"}})
    try:
        import httptools  # noqa: F401
        import uvicorn  # noqa: F401
        import uvloop  # noqa: F401

        found.append({"name": "uvicorn", "label": "FastAPI on uvicorn (httptools, uvloop)",
                      "cmd": [py, "-m", "uvicorn", "fastapi_bench:app", "--app-dir", str(APPS),
                              "--port", "{port}", "--loop", "uvloop", "--http", "httptools",
                              "--log-level", "warning", "--no-access-log"]})
    except ImportError as exc:
        print(f"[asgi] uvicorn skipped: {exc}", file=sys.stderr)
    granian = shutil.which("granian")
    if granian:
        found.append({"name": "granian", "label": "FastAPI on granian (ASGI, 1 worker)",
                      "cmd": [granian, "--interface", "asgi", "--host", "127.0.0.1",
                              "--port", "{port}", "--workers", "1", "--log-level", "warning",
                              "--no-ws", "fastapi_bench:app"],
                      "cwd": str(APPS)})
    else:
        print("[asgi] granian skipped: not installed (pip install granian)", file=sys.stderr)
    return found


class Running:
    def __init__(self, spec: dict) -> None:
        self.spec = spec
        self.port = free_port()
        argv = [a.replace("{port}", str(self.port)) for a in spec["cmd"]]
        env = dict(os.environ, **spec.get("env", {}))
        env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        self.proc = subprocess.Popen(argv, cwd=spec.get("cwd", ROOT), env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     start_new_session=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{spec['name']} exited: {self.proc.stderr.read()[-800:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.sendall(b"GET /json HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n")
                    if s.recv(16).startswith(b"HTTP/1.1 200"):
                        return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"{spec['name']} did not start")

    def pids(self) -> list[int]:
        pids = [self.proc.pid]
        try:  # granian serves from a child process
            pids += [int(p) for p in Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
                     .read_text().split()]
        except FileNotFoundError:
            pass
        return pids

    def cpu(self) -> float:
        return cpu_seconds(self.pids())

    def stop(self) -> None:
        try:
            os.killpg(self.proc.pid, 15)
            self.proc.wait(10)
        except (subprocess.TimeoutExpired, ProcessLookupError):
            os.killpg(self.proc.pid, 9)


def wrk(port: int, seconds: int, connections: int) -> float:
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s",
                          f"http://127.0.0.1:{port}/json"], capture_output=True, text=True)
    match = re.search(r"Requests/sec:\s+([\d.]+)", out.stdout)
    if not match or "Non-2xx" in out.stdout or "Socket errors" in out.stdout:
        raise RuntimeError(f"wrk: {out.stdout[-600:]} {out.stderr[-300:]}")
    return float(match.group(1))


def sse_stream(port: int, n: int) -> float:
    out = subprocess.run([str(CLIENT), "stream", "--port", str(port), "--path",
                          f"/sse?n={n}", "--expect", str(n)], capture_output=True, text=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    if out.returncode != 0:
        raise RuntimeError(result.get("error"))
    return result["events"] / result["seconds"]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if not shutil.which("wrk"):
        print("bench/asgi.py needs wrk (apt-get install wrk)", file=sys.stderr)
        return 2
    subprocess.run(["make", "-s", "-C", str(BENCH / "client")], check=True)
    running = [Running(spec) for spec in servers()]
    results: dict = {r.spec["name"]: {"label": r.spec["label"], "json_rps": [], "json_cpu": [],
                                      "sse_rate": []} for r in running}
    try:
        for repeat in range(args.repeat):
            order = running[repeat % len(running):] + running[:repeat % len(running)]
            for server in order:
                entry = results[server.spec["name"]]
                time.sleep(1.0)  # settle
                before = server.cpu()
                rps = wrk(server.port, args.seconds, args.connections)
                entry["json_rps"].append(rps)
                entry["json_cpu"].append((server.cpu() - before) / args.seconds)
                rates = [sse_stream(server.port, 10_000) for _ in range(5)]
                entry["sse_rate"].append(statistics.median(rates))
                print(f"[asgi] {server.spec['name']}: {rps:,.0f} requests/s, "
                      f"SSE {entry['sse_rate'][-1]:,.0f} events/s", file=sys.stderr)
    finally:
        for server in running:
            server.stop()
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = args.out or RESULTS / f"{stamp}-asgi.json"
    data = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "command": " ".join(["python", "bench/asgi.py", *sys.argv[1:]]),
            "results": results}
    out.write_text(json.dumps(data, indent=1))
    lines = ["| server | GET /json requests/s (wrk, keep-alive) | server CPU | "
             "EventSourceResponse 10K events/s |", "|---|---:|---:|---:|"]
    for entry in results.values():
        lines.append(f"| {entry['label']} | {statistics.median(entry['json_rps']):,.0f} "
                     f"({min(entry['json_rps']):,.0f}-{max(entry['json_rps']):,.0f}) | "
                     f"{statistics.median(entry['json_cpu']):.0%} | "
                     f"{statistics.median(entry['sse_rate']):,.0f} |")
    out.with_suffix(".md").write_text(f"# ASGI benchmark, {data['date']}\n\n`{data['command']}`"
                                      f", medians of {args.repeat} runs\n\n"
                                      + "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
