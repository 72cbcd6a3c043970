"""Server monitoring: the machine's and the server's own figures, live, once a second.

The seed's "Server Monitoring" pattern with real numbers: CPU from ``/proc/stat`` deltas,
memory from ``/proc/meminfo``, this process's RSS and threads from
``/proc/self/status`` and its CPU time from ``os.times()``, and conduit's own counters
from ``app.stats()``. The page draws them as live charts (a plain <canvas>, no library).

    python -m conduit run examples/monitoring.py
    # open http://127.0.0.1:8000/

    curl -N http://127.0.0.1:8000/metrics                   # event: metrics, every second
    curl -N 'http://127.0.0.1:8000/metrics?interval=0.5'    # twice a second
    curl http://127.0.0.1:8000/metrics/now                  # one sample, as JSON
    curl -N 'http://127.0.0.1:8000/burst?n=5000' > /dev/null   # 5000 events, to see a spike

Routes
- ``GET /metrics[?interval=seconds, 0.2..10, default 1]``: an endless stream of
  ``event: metrics`` with data::

      {"time": <Unix seconds>,
       "cpu": {"percent": <machine, 0..100, over the last interval>, "cores": n,
               "load": [1, 5, 15 minute load averages]},
       "memory": {"total_bytes", "available_bytes", "used_bytes", "percent"},
       "process": {"pid", "rss_bytes", "threads", "cpu_percent" (of one core)},
       "server": {"connections", "streams", "requests", "events_sent",
                  "errors_by_status", "uptime_seconds"}}

  A figure this machine cannot give (no ``/proc``) is null.
- ``GET /metrics/now``: the same object, once.
- ``GET /burst?n=1..100000``: ``n`` events (``event: tick``, data ``i``) as fast as the
  client reads them, then ``event: done``; something to watch in the events-sent chart.
- ``GET /``: the page (examples/pages/monitoring.html).

The /proc files are read in a worker thread (``conduit.to_thread``), and one reading is
shared by every client that asks within the same half second: a hundred dashboards cost
one sample a second. ``app.stats()`` is read on the loop thread, in the stream itself.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from conduit import App, FileResponse, HTTPError, SSEEvent, sleep, to_thread

app = App()
PAGE = Path(__file__).parent / "pages" / "monitoring.html"

MIN_INTERVAL, MAX_INTERVAL = 0.2, 10.0
SHARE_SECONDS = 0.5   # a sample younger than this is reused by other clients
MAX_BURST = 100_000


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="ascii", errors="replace") as file:
            return file.read()
    except OSError:
        return None


def _kib_fields(text: str | None, *names: str) -> dict:
    """``Name:   1234 kB`` lines of /proc/meminfo or /proc/self/status, in bytes."""
    found: dict = {}
    for line in (text or "").splitlines():
        name, _, rest = line.partition(":")
        if name in names:
            parts = rest.split()
            if parts and parts[0].isdigit():
                found[name] = int(parts[0]) * (1024 if parts[1:2] == ["kB"] else 1)
    return found


def _cpu_times(text: str | None):
    """(busy, total) jiffies of all CPUs, and the number of CPUs, from /proc/stat."""
    if not text:
        return None, os.cpu_count() or 1
    cores = 0
    times = None
    for line in text.splitlines():
        if line.startswith("cpu "):
            values = [int(v) for v in line.split()[1:9]]  # user..steal
            idle = values[3] + values[4]                   # idle + iowait
            times = (sum(values) - idle, sum(values))
        elif line.startswith("cpu"):
            cores += 1
    return times, cores or os.cpu_count() or 1


class Sampler:
    """Reads the machine's and this process's figures; CPU percentages are over the time
    since the previous reading. Thread-safe; called through ``to_thread``."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.previous = self._raw()
        self.latest: dict | None = None
        self.latest_at = 0.0

    @staticmethod
    def _raw() -> dict:
        cpu, cores = _cpu_times(_read("/proc/stat"))
        times = os.times()
        return {"wall": time.monotonic(), "cpu": cpu, "cores": cores,
                "process_cpu": times.user + times.system}

    def sample(self) -> dict:
        with self.lock:
            now = time.monotonic()
            if self.latest is not None and now - self.latest_at < SHARE_SECONDS:
                return self.latest
            raw = self._raw()
            previous, self.previous = self.previous, raw
            machine = None
            if raw["cpu"] and previous["cpu"]:
                busy = raw["cpu"][0] - previous["cpu"][0]
                total = raw["cpu"][1] - previous["cpu"][1]
                machine = round(100.0 * busy / total, 1) if total > 0 else 0.0
            wall = raw["wall"] - previous["wall"]
            process_cpu = round(100.0 * (raw["process_cpu"] - previous["process_cpu"])
                                / wall, 1) if wall > 0 else 0.0
            mem = _kib_fields(_read("/proc/meminfo"), "MemTotal", "MemAvailable")
            status = _kib_fields(_read("/proc/self/status"), "VmRSS", "Threads")
            total_mem, available = mem.get("MemTotal"), mem.get("MemAvailable")
            memory = {"total_bytes": total_mem, "available_bytes": available,
                      "used_bytes": None, "percent": None}
            if total_mem and available is not None:
                memory["used_bytes"] = total_mem - available
                memory["percent"] = round(100.0 * (total_mem - available) / total_mem, 1)
            try:
                load = [round(v, 2) for v in os.getloadavg()]
            except OSError:
                load = None
            self.latest = {
                "time": round(time.time(), 3),
                "cpu": {"percent": machine, "cores": raw["cores"], "load": load},
                "memory": memory,
                "process": {"pid": os.getpid(), "rss_bytes": status.get("VmRSS"),
                            "threads": status.get("Threads"), "cpu_percent": process_cpu},
            }
            self.latest_at = now
            return self.latest


sampler = Sampler()


async def snapshot() -> dict:
    figures = dict(await to_thread(sampler.sample))
    figures["server"] = app.stats()  # on the loop thread: the server's live counters
    return figures


@app.get("/metrics")
def metrics(request):
    try:
        interval = float(request.query.get("interval", "1"))
    except ValueError:
        raise HTTPError(400, "interval must be a number of seconds") from None
    if not MIN_INTERVAL <= interval <= MAX_INTERVAL:
        raise HTTPError(400, f"interval must be from {MIN_INTERVAL} to {MAX_INTERVAL} seconds")
    return _metrics(interval)


async def _metrics(interval: float):
    while True:
        started = time.monotonic()
        yield SSEEvent(await snapshot(), event="metrics")
        await sleep(max(0.0, interval - (time.monotonic() - started)))


@app.get("/metrics/now")
async def metrics_now(request):
    return await snapshot()


@app.get("/burst")
def burst(request):
    try:
        count = int(request.query.get("n", "1000"))
    except ValueError:
        raise HTTPError(400, "n must be an integer") from None
    if not 1 <= count <= MAX_BURST:
        raise HTTPError(400, f"n must be from 1 to {MAX_BURST}")
    return _burst(count)


def _burst(count: int):
    for i in range(1, count + 1):
        yield SSEEvent(i, event="tick")
    yield SSEEvent(count, event="done")


@app.get("/")
def index(request):
    return FileResponse(PAGE)
