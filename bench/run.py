"""The benchmark harness: conduit side by side with the servers people pick instead.

    python bench/run.py                      # everything (about 20-30 minutes on 2 cores)
    python bench/run.py --quick              # fewer repeats, smaller sizes (a few minutes)
    python bench/run.py --smoke              # conduit alone, tiny sizes (what CI runs)
    python bench/run.py --report bench/results/<run>.json   # re-render table and chart

One run:
1. Builds the C load client (bench/client) and the C reference server, starts every peer
   (a single process each, on loopback, see bench/peers/README.md) and checks it answers.
2. For each scenario, runs every peer ``--repeat`` times, alternating the order of the peers
   from one repeat to the next so that machine drift spreads evenly over them. Before each
   run it waits until no server is still using CPU (``settle``: a garbage collector
   finishing the last run must not be charged to the next server).
3. Records, per run, the figure of merit, the load client's CPU and the server's CPU
   (from /proc), so a reader can see who was saturated.
4. Writes bench/results/<timestamp>.json (every run, the machine, the command), then a
   markdown table (medians with min-max, and the ratio to the reference server measured in
   the same run) and a PNG chart next to it; bench/results/latest.* are copies.
Progress goes to stderr. Scenarios a peer cannot take part in (nchan has no /count) or that
would take too long for a slow peer (predicted from its 10,000-event rate) are reported as
skipped, with the reason, never silently dropped.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
CLIENT = BENCH / "client" / "loadclient"
RESULTS = BENCH / "results"
TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")

sys.path.insert(0, str(BENCH / "peers"))


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- peers -----------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def conduit_peers() -> list[dict]:
    base = {"supports": ["stream", "fanout", "latency", "idle", "hold", "slow", "ticks",
                         "shape", "streams"],
            "ready": "/count?n=1", "sub_path": "/events", "pub_path": "/pub"}
    run = [sys.executable, "-m", "conduit", "run", "{app}", "--port", "{port}",
           "--no-access-log", "--max-connections", "20000", "--log-level", "warning"]
    return [
        {**base, "name": "conduit", "label": "conduit (compiled)", "cmd": run,
         "app": "bench/apps/conduit_bench.py", "env": {"CONDUIT_EXTENSIONS": "1"}},
        {**base, "name": "conduit-pure", "label": "conduit (CONDUIT_EXTENSIONS=0)", "cmd": run,
         "app": "bench/apps/conduit_bench.py", "env": {"CONDUIT_EXTENSIONS": "0"}},
        # --workers 2: a supervisor and two workers; CPU and memory are the whole tree's.
        # Not in the default run (name it with --peers): it is compared with conduit.
        # A FastAPI app mounted on conduit, its routes publishing to a conduit channel
        # (bench/apps/fastapi_bridge.py): only when named, compared with sse-starlette.
        {**base, "name": "conduit-fastapi", "label": "FastAPI routes + conduit channel "
         "(App.mount, compiled)", "cmd": run, "app": "bench/apps/fastapi_bridge.py",
         "env": {"CONDUIT_EXTENSIONS": "1"}, "supports": ["fanout", "latency"],
         "optional": True},
        {**base, "name": "conduit-w2", "label": "conduit --workers 2 (compiled)",
         "cmd": run + ["--workers", "2"], "app": "bench/apps/conduit_bench.py",
         "env": {"CONDUIT_EXTENSIONS": "1"}, "workers": 2, "optional": True},
    ]


def baseline_peer(tree: Path) -> dict:
    """conduit as of an earlier commit: ``tree`` is a git worktree of it with its compiled
    extensions built in place (``python setup.py build_ext --inplace`` there); it serves
    its own bench app, so only the scenarios that app has are run."""
    tree = tree.resolve()
    commit = subprocess.run(["git", "-C", str(tree), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip() or "?"
    conduit = conduit_peers()[0]
    app = tree / "bench" / "apps" / "conduit_bench.py"
    source = app.read_text()
    supports = [s for s in conduit["supports"]
                if (s != "ticks" or "/ticks" in source)
                and (s not in ("shape", "streams") or "/shape" in source)]
    return {**conduit, "name": "conduit-base", "label": f"conduit at {commit} (baseline)",
            "app": str(app), "cwd": str(tree), "supports": supports,
            "env": {"CONDUIT_EXTENSIONS": "1", "PYTHONPATH": str(tree)}}


def all_peers() -> list[dict]:
    peers = conduit_peers()
    try:
        import registry  # bench/peers/registry.py: the other servers
    except ImportError as exc:
        log(f"no peer registry ({exc}); conduit only")
        return peers
    return peers + registry.peers(ROOT)


def cpu_seconds(pids) -> float:
    """User + system CPU seconds of these processes so far (from /proc; gone ones: 0)."""
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += (int(fields[11]) + int(fields[12])) / TICKS
    return total


class Running:
    """One started peer process."""

    def __init__(self, peer: dict) -> None:
        self.peer = peer
        self.name = peer["name"]
        self.port = free_port()
        self.extra_ports = {key: free_port() for key in peer.get("extra_ports", ())}
        values = {"port": str(self.port), "python": peer.get("python", sys.executable),
                  "app": peer.get("app", ""), "root": str(ROOT), **{
                      key: str(value) for key, value in self.extra_ports.items()}}
        argv = [part.format(**values) for part in peer["cmd"]]
        env = dict(os.environ, **peer.get("env", {}))
        self.proc = subprocess.Popen(argv, cwd=peer.get("cwd", ROOT), env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True, start_new_session=True)
        self.pid = self.proc.pid
        self._wait_ready(peer.get("ready", "/"))
        self.pid = peer_pid(self.proc, peer)

    def _wait_ready(self, path: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}: "
                                   f"{self.proc.stderr.read()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: bench\r\n"
                                 f"Connection: close\r\n\r\n".encode())
                    if sock.recv(64).startswith(b"HTTP/1.1 2") and self._all_listen():
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not answer GET {path} on port {self.port}")

    def _all_listen(self) -> bool:
        """For a peer with "workers" (--workers N): all N have their listening socket."""
        if not self.peer.get("workers"):
            return True
        listening = set()
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == self.port:
                    listening.add(f"socket:[{fields[9]}]")
        workers = self.pids()[1:]

        def listens(pid) -> bool:
            try:
                return any(os.readlink(fd) in listening for fd in Path(f"/proc/{pid}/fd")
                           .iterdir())
            except FileNotFoundError:  # a process or fd that just went away
                return False

        return len(workers) >= self.peer["workers"] and all(map(listens, workers))

    def pids(self) -> list:
        """The server's pid, and its children's for a peer with "workers" (--workers N)."""
        if not self.peer.get("workers"):
            return [self.pid]
        try:
            children = Path(f"/proc/{self.pid}/task/{self.pid}/children").read_text().split()
        except FileNotFoundError:
            children = []
        return [self.pid, *map(int, children)]

    def cpu(self) -> float:
        return cpu_seconds(self.pids())

    def rss_bytes(self) -> int:
        total = 0
        for pid in self.pids():
            status = Path(f"/proc/{pid}/status").read_text()
            total += int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) * 1024
        return total

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=10)
            except (subprocess.TimeoutExpired, ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def peer_pid(proc, peer: dict) -> int:
    """The pid that does the serving (a wrapper may exec or fork it)."""
    return proc.pid


# -- the load client ---------------------------------------------------------------------------

def client(mode: str, *args, timeout: float = 600.0) -> dict:
    argv = [str(CLIENT), mode, *[str(a) for a in args]]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"loadclient {mode} failed ({out.returncode}): "
                           f"{out.stderr.strip()[-500:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def settle(running: list, quiet: float = 0.2, limit: float = 3.0) -> None:
    """Wait until no running server has used CPU for ``quiet`` seconds (``limit`` at most).

    A server can keep working after its run ends (Node's garbage collector threads, a
    Python server freeing a million objects); measuring the next server meanwhile would
    charge it for that work.
    """
    deadline = time.monotonic() + limit
    last = [server.cpu() for server in running]
    while time.monotonic() < deadline:
        time.sleep(quiet)
        now = [server.cpu() for server in running]
        if now == last:
            return
        last = now


def measured(server: Running, fn) -> dict:
    before = server.cpu()
    result = fn()
    result["server_cpu_seconds"] = server.cpu() - before
    return result


# -- scenarios ---------------------------------------------------------------------------------

class Scenario:
    """name, what it measures, its unit, and how to run it once against one server."""

    def __init__(self, key, title, unit, needs, run, higher_is_better=True, note=""):
        self.note = note
        self.key = key
        self.title = title
        self.unit = unit
        self.needs = needs
        self.run = run
        self.higher_is_better = higher_is_better


SHORT_STREAM_SECONDS = 2.0


def stream_scenario(n: int, streams: int = 1, path: str = "/count?n={n}"):
    """One run: a warm-up stream of at most 10,000 events (not counted), then ``streams``
    streams of n events back to back, each on a new connection; the figure is the median
    stream's rate. A stream the warm-up predicts to last over SHORT_STREAM_SECONDS is run
    once: it is long enough to average the machine's noise out (a 10,000-event stream
    lasts a few milliseconds on a fast server: one alone measures the scheduler more than
    the server)."""
    def one(server: Running, events: int = n) -> dict:
        return client("stream", "--port", server.port, "--path", path.format(n=events),
                      "--expect", events, "--timeout", 600)

    def run(server: Running, sizes) -> dict:
        warm = one(server, min(n, 10_000))
        predicted = n / (warm["events"] / warm["seconds"])
        count = streams if predicted <= SHORT_STREAM_SECONDS else 1
        if count == 1:
            result = measured(server, lambda: one(server))
            result["value"] = result["events"] / result["seconds"]
            return result
        streams_ = count
        before = server.cpu()
        each = [one(server) for _ in range(streams_)]
        server_cpu = server.cpu() - before
        rates = [r["events"] / r["seconds"] for r in each]
        result = dict(sorted(each, key=lambda r: r["events"] / r["seconds"])[streams_ // 2])
        result["value"] = statistics.median(rates)
        result["stream_rates"] = rates
        # CPU over all the streams of the run, against their total time
        result["seconds_total"] = sum(r["seconds"] for r in each)
        result["cpu_seconds"] = sum(r["cpu_seconds"] for r in each)
        result["server_cpu_seconds"] = server_cpu
        return result

    return run


def fanout_scenario(subscribers: int, events: int, size: int):
    def run(server: Running, sizes) -> dict:
        peer = server.peer
        args = ["--port", server.port, "--subscribers", subscribers, "--events", events,
                "--size", size, "--sub-path", peer["sub_path"],
                "--publish-path", peer.get("publish_path",
                                           f"/publish?n={events}&size={size}")]
        if peer.get("publish_each"):
            # no /publish?n=M (nchan): M POSTs of one event each, one after the other
            args += ["--publish-requests", events, "--publish-body", "x" * size]
        if "publish_port" in peer:
            args += ["--publish-port", server.extra_ports[peer["publish_port"]]]
        if peer.get("registered_after_ms"):
            args += ["--registered-after-ms", peer["registered_after_ms"]]
        result = measured(server, lambda: client("fanout", *args))
        result["value"] = result["deliveries"] / result["seconds"]
        return result

    return run


def latency_scenario(subscribers: int, rate: int, duration: int, slow: int = 0):
    def run(server: Running, sizes) -> dict:
        peer = server.peer
        args = ["--port", server.port, "--subscribers", subscribers, "--rate", rate,
                "--duration", duration, "--sub-path", peer["sub_path"],
                "--pub-path", peer["pub_path"], "--slow", slow]
        if "publish_port" in peer:
            args += ["--pub-port", server.extra_ports[peer["publish_port"]]]
        rss_before = server.rss_bytes()
        result = measured(server, lambda: client("latency", *args))
        result["rss_growth_bytes"] = server.rss_bytes() - rss_before
        result["value"] = result["p99_ms"]
        return result

    return run


def idle_scenario(subscribers: int):
    def run(shared: Running, sizes) -> dict:
        # NOTE: a fresh process for every measurement: a process that already held (and
        # freed) connections keeps that memory in its allocator, and a second round would
        # measure almost nothing.
        server = Running(shared.peer)
        try:
            return measure(server)
        finally:
            server.stop()

    def measure(server: Running) -> dict:
        peer = server.peer
        before = server.rss_bytes()
        # hold the connections while this process reads the server's memory
        proc = subprocess.Popen(
            [str(CLIENT), "hold", "--port", str(server.port), "--subscribers",
             str(subscribers), "--seconds", "3", "--sub-path", peer["sub_path"]],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        registered = False
        for line in proc.stderr:
            if line.startswith("registered"):
                registered = True
                break
        time.sleep(1.0)
        during = server.rss_bytes()
        out, err = proc.communicate(timeout=120)
        if not registered or proc.returncode != 0:
            raise RuntimeError(f"loadclient hold failed: {err[-500:]}")
        result = json.loads(out.strip().splitlines()[-1])
        result["rss_before"] = before
        result["rss_during"] = during
        result["value"] = (during - before) / subscribers
        return result

    return run


def ticks_scenario(subscribers: int, rate: int, seconds: float):
    """``subscribers`` streams at once, each fed by its own asyncio producer on the server
    at ``rate`` events/s for ``seconds``: the p99 latency of an event (from the time its
    producer was due to send it) and the server's CPU."""
    events = max(1, int(rate * seconds))

    def run(server: Running, sizes) -> dict:
        result = measured(server, lambda: client(
            "ticks", "--port", server.port, "--subscribers", subscribers, "--events", events,
            "--sub-path", f"/ticks?n={events}&rate={rate}", "--timeout", seconds * 4 + 60))
        result["value"] = result["p99_ms"]
        return result

    return run


def streams_scenario(streams: int, events: int, kind: str = "seed"):
    """``streams`` streams of ``events`` events of the seed shape at once: the aggregate
    events/s from the first connect until the last stream ended, and the server's CPU."""
    def run(server: Running, sizes) -> dict:
        result = measured(server, lambda: client(
            "streams", "--port", server.port, "--subscribers", streams, "--events", events,
            "--sub-path", f"/shape?kind={kind}&n={events}", "--timeout", 600))
        result["value"] = result["events"] / result["seconds"]
        return result

    return run


# The shapes users write (GET /shape?kind=K on every peer that has it; bench/apps/
# conduit_bench.py has the Python of each).
SHAPES = (
    ("seed", 'SSEEvent(data=f"token {i}", event="token", id=str(i))'),
    ("fstring", 'SSEEvent(data=f"Current time: {time.time()}", event="time", id=str(i))'),
    ("json", 'SSEEvent(data={"i": i, "token": "hello", "done": False}, event="json", '
             'id=str(i))'),
    ("async", "the seed shape from an async generator that awaits asyncio.sleep(0) every "
              "100 events"),
)


def shape_scenarios(smoke: bool, n_large: int) -> list:
    found = []
    for kind, code in SHAPES:
        for n, label, repeat in ((10_000 if not smoke else 1000, "10k", 9),
                                 (n_large, "1m", 3)):
            found.append(Scenario(
                f"shape_{kind}_{label}", f"{n:,}-event stream, {kind} shape", "events/s",
                "shape", stream_scenario(n, 1 if smoke else repeat,
                                         f"/shape?kind={kind}&n={{n}}"),
                note=f"Each event as users write it: `{code}` (each peer in its own idiom: "
                     "bench/peers/README.md). Runs as in the "
                     f"{'10,000' if label == '10k' else f'{n_large:,}'}-event stream."))
    return found


def hold_scenario(subscribers: int):
    def run(server: Running, sizes) -> dict:
        peer = server.peer
        result = measured(server, lambda: client(
            "hold", "--port", server.port, "--subscribers", subscribers, "--seconds", 1,
            "--sub-path", peer["sub_path"], "--then-publish-path", "/publish?n=1&size=16"))
        result["value"] = result["delivered"]
        if result["delivered"] != subscribers:
            raise RuntimeError(f"only {result['delivered']} of {subscribers} got the broadcast")
        return result

    return run


def scenarios(mode: str) -> list[Scenario]:
    big = mode == "full"
    smoke = mode == "smoke"
    n_large = 1_000_000 if not smoke else 20_000
    subs_small, events_small = (100, 1000) if not smoke else (10, 50)
    subs_large, events_large = (1000, 200) if not smoke else (20, 20)
    latency_subs = 1000 if not smoke else 10
    return [
        Scenario("stream_10k", "10,000-event stream", "events/s", "stream",
                 stream_scenario(10_000 if not smoke else 1000, 1 if smoke else 9),
                 note="" if smoke else (
                     "Each run: one warm-up stream, then 9 streams back to back (a new "
                     "connection each); the run's figure is the median stream. CPU columns "
                     "cover the 9 streams.")),
        Scenario("stream_1m", f"{n_large:,}-event stream", "events/s", "stream",
                 stream_scenario(n_large, 1 if smoke else 3),
                 note="" if smoke else (
                     "Each run: a 10,000-event warm-up stream; then, for a server that "
                     f"streams {n_large:,} events in under {SHORT_STREAM_SECONDS:.0f} s, "
                     "3 streams back to back and the median one, else one stream (long "
                     "enough to average the noise out).")),
        Scenario("fanout_100", f"fan-out {subs_small} x {events_small}", "deliveries/s",
                 "fanout", fanout_scenario(subs_small, events_small, 64)),
        Scenario("fanout_1000", f"fan-out {subs_large} x {events_large} (64 B)",
                 "deliveries/s", "fanout", fanout_scenario(subs_large, events_large, 64)),
        Scenario("latency", f"latency p99, {latency_subs} subscribers, 100 events/s", "ms",
                 "latency", latency_scenario(latency_subs, 100, 5 if big else 2),
                 higher_is_better=False),
        Scenario("idle_memory", f"memory per idle connection ({5000 if not smoke else 500})",
                 "bytes", "idle", idle_scenario(5000 if not smoke else 500),
                 higher_is_better=False),
        Scenario("slow_subscriber", f"latency p99 with 1 slow subscriber among "
                 f"{latency_subs}", "ms", "slow",
                 latency_scenario(latency_subs, 100, 5 if big else 2, slow=1),
                 higher_is_better=False),
        Scenario("ticks_1000", f"latency p99, {latency_subs} streams each fed by an asyncio "
                 "producer at 100 events/s", "ms", "ticks",
                 ticks_scenario(latency_subs, 100, 5 if big else 2),
                 higher_is_better=False,
                 note="Each stream's events come from its own asyncio producer (an async "
                      "generator awaiting asyncio.sleep until each event is due); latency is "
                      "from the time the event was due to the time the client could read "
                      "it. The server's CPU is in the full table."),
        *shape_scenarios(smoke, n_large),
        Scenario("streams_1000", f"{1000 if not smoke else 20} streams of "
                 f"{1000 if not smoke else 100} events at once (seed shape)", "events/s",
                 "streams", streams_scenario(1000 if not smoke else 20,
                                             1000 if not smoke else 100),
                 note="Every stream opened at once, each read as fast as the server sends; "
                      "aggregate events/s from the first connect to the end of the last "
                      "stream. The server's CPU is in the full table."),
        Scenario("hold_10000", f"{10000 if not smoke else 100} subscribers held, one "
                 "broadcast delivered to all", "delivered", "hold",
                 hold_scenario(10_000 if not smoke else 100)),
    ]


# -- running -----------------------------------------------------------------------------------

def machine() -> dict:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(mem / 1048576, 1),
            "kernel": platform.release(), "python": platform.python_version()}


def build() -> None:
    log("building the load client and the reference server")
    subprocess.run(["make", "-s", "-C", str(BENCH / "client")], check=True)
    reference = BENCH / "peers" / "reference"
    if (reference / "Makefile").exists():
        subprocess.run(["make", "-s", "-C", str(reference)], check=True)


def run_all(args) -> dict:
    build()
    mode = "smoke" if args.smoke else ("quick" if args.quick else "full")
    peers = conduit_peers() if args.smoke else all_peers()
    if getattr(args, "baseline", None):
        peers.append(baseline_peer(args.baseline))
    if args.peers:
        wanted = set(args.peers.split(","))
        peers = [p for p in peers if p["name"] in wanted]
    else:
        peers = [p for p in peers if not p.get("optional")]
    repeat = args.repeat or (1 if args.smoke else (2 if args.quick else 3))
    chosen = scenarios(mode)
    if args.scenarios:
        wanted = set(args.scenarios.split(","))
        chosen = [s for s in chosen if s.key in wanted]
    results: dict = {}
    stream_rates: dict = {}
    for scenario in chosen:
        log(f"scenario {scenario.key}: {scenario.title}")
        entries = results.setdefault(scenario.key, {
            "title": scenario.title, "unit": scenario.unit,
            "higher_is_better": scenario.higher_is_better, "note": scenario.note,
            "peers": {}})
        taking = []
        for peer in peers:
            entry = entries["peers"].setdefault(peer["name"], {"label": peer.get(
                "label", peer["name"]), "runs": []})
            if scenario.needs not in peer["supports"]:
                entry["skipped"] = f"{peer['name']} does not serve this scenario"
                continue
            if scenario.key == "hold_10000" and not peer["name"].startswith("conduit"):
                entry["skipped"] = "held for conduit only (the goal is conduit's)"
                continue
            if scenario.key == "stream_1m" and peer["name"] in stream_rates:
                predicted = 1_000_000 / stream_rates[peer["name"]]
                if predicted > args.max_seconds:
                    entry["skipped"] = (f"would take about {predicted:.0f} s at its "
                                        f"10,000-event rate")
                    continue
            taking.append(peer)
        running = []
        try:
            for peer in taking:
                running.append(Running(peer))
            for r in range(repeat):
                order = running[r % len(running):] + running[:r % len(running)] if running \
                    else []
                for server in order:
                    entry = entries["peers"][server.name]
                    settle(running)
                    try:
                        result = scenario.run(server, mode)
                    except Exception as exc:  # recorded, shown in the report
                        log(f"  {server.name}: FAILED {exc}")
                        entry.setdefault("failures", []).append(str(exc)[:300])
                        continue
                    entry["runs"].append(result)
                    log(f"  {server.name}: {result['value']:,.2f} {scenario.unit} (client CPU "
                        f"{result.get('cpu_seconds', 0):.2f} s, server CPU "
                        f"{result.get('server_cpu_seconds', 0):.2f} s)")
        finally:
            for server in running:
                server.stop()
        for name, entry in entries["peers"].items():
            values = [run["value"] for run in entry["runs"]]
            if values:
                entry["median"] = statistics.median(values)
                entry["min"] = min(values)
                entry["max"] = max(values)
                if scenario.key == "stream_10k":
                    stream_rates[name] = entry["median"]
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(["python", "bench/run.py", *sys.argv[1:]]),
        "mode": mode, "repeat": repeat, "machine": machine(), "results": results,
    }


# -- the report --------------------------------------------------------------------------------

def fmt(value: float, unit: str) -> str:
    if unit in ("events/s", "deliveries/s"):
        if value >= 1e6:
            return f"{value / 1e6:.2f} M"
        if value >= 1e3:
            return f"{value / 1e3:.0f} K"
        return f"{value:.0f}"
    if unit == "bytes":
        return f"{value / 1024:.1f} KiB"
    if unit == "ms":
        return f"{value:.2f} ms"
    return f"{value:,.0f}"


def markdown(data: dict) -> str:
    m = data["machine"]
    lines = [
        f"# Benchmark results ({data['date']})",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, Linux "
        f"{m['kernel']}, CPython {m['python']}. Command: `{data['command']}` "
        f"({data['repeat']} runs per server, alternated)"
        + "".join(f"; scenarios {', '.join(m['scenarios'])} from `{m['command']}` "
                  f"({m['date']})" for m in data.get("merged", []))
        + ". Each cell: median (min-max); "
        "the ratio is to the C reference server in the same run (higher is better for "
        "throughput; for latency and memory, lower is better).",
        "",
    ]
    lines += summary(data) + [""]
    for scenario in data["results"].values():
        unit = scenario["unit"]
        lines += [f"## {scenario['title']} ({unit})", ""]
        if scenario.get("note"):
            lines += [scenario["note"], ""]
        lines += ["| server | median | min-max | vs reference | client CPU | server CPU |",
                  "|---|---:|---:|---:|---:|---:|"]
        reference = scenario["peers"].get("reference", {}).get("median")
        order = sorted(scenario["peers"].items(), key=lambda item: (
            "median" not in item[1],
            -(item[1].get("median") or 0) if scenario["higher_is_better"]
            else (item[1].get("median") or 0)))
        for _, entry in order:
            if "median" not in entry:
                why = entry.get("skipped") or "; ".join(entry.get("failures", [])) or "no run"
                lines.append(f"| {entry['label']} | - | - | - | - | {why} |")
                continue
            ratio = f"{entry['median'] / reference:.2f}x" if reference else ""
            cpu_client = statistics.median(r.get("cpu_seconds", 0) for r in entry["runs"])
            cpu_server = statistics.median(r.get("server_cpu_seconds", 0)
                                           for r in entry["runs"])
            seconds = statistics.median(r.get("seconds_total", r.get("seconds", 0))
                                        for r in entry["runs"]) or 1
            lines.append(
                f"| {entry['label']} | {fmt(entry['median'], unit)} | {fmt(entry['min'], unit)}"
                f" - {fmt(entry['max'], unit)} | {ratio} | {cpu_client / seconds:.0%} | "
                f"{cpu_server / seconds:.0%} |")
        lines.append("")
    return "\n".join(lines)


def summary(data: dict) -> list[str]:
    """One row per server, one column per scenario: the medians (the README's table)."""
    results = data["results"]
    names: list = []
    labels: dict = {}
    for scenario in results.values():
        for name, entry in scenario["peers"].items():
            if name not in labels:
                names.append(name)
                labels[name] = entry["label"]
    short = {"stream_10k": "10K stream", "stream_1m": "1M stream", "fanout_100":
             "fan-out 100", "fanout_1000": "fan-out 1,000", "latency": "p99 latency",
             "idle_memory": "idle memory/conn", "slow_subscriber": "p99 with a slow one",
             "hold_10000": "10K held"}
    keys = list(results)
    lines = ["## Summary (medians)", "",
             "| server | " + " | ".join(short.get(k, k) for k in keys) + " |",
             "|---|" + "---:|" * len(keys)]
    for name in names:
        cells = []
        for key in keys:
            entry = results[key]["peers"].get(name, {})
            cells.append(fmt(entry["median"], results[key]["unit"]) if "median" in entry
                         else "-")
        lines.append(f"| {labels[name]} | " + " | ".join(cells) + " |")
    return lines


def chart(data: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scenarios_ = [(k, s) for k, s in data["results"].items()
                  if any("median" in e for e in s["peers"].values())]
    cols = 2
    rows = (len(scenarios_) + 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(14, 3.4 * rows), squeeze=False)
    for ax, (_, scenario) in zip(axes.flat, scenarios_, strict=False):
        entries = [(e["label"], e["median"], e["min"], e["max"])
                   for e in scenario["peers"].values() if "median" in e]
        entries.sort(key=lambda e: e[1], reverse=scenario["higher_is_better"])
        labels = [e[0] for e in entries]
        values = [e[1] for e in entries]
        errors = [[e[1] - e[2] for e in entries], [e[3] - e[1] for e in entries]]
        colors = ["#d62728" if label.startswith("conduit") else "#7f7f7f" for label in labels]
        ax.barh(labels, values, xerr=errors, color=colors)
        ax.invert_yaxis()
        ax.set_title(f"{textwrap.fill(scenario['title'], 44)}\n({scenario['unit']}, "
                     f"{'higher' if scenario['higher_is_better'] else 'lower'} is better)",
                     fontsize=9)
        if scenario["unit"] in ("events/s", "deliveries/s") and values and \
                max(values) / max(min(values), 1) > 50:
            ax.set_xscale("log")
        ax.tick_params(labelsize=8)
    for ax in list(axes.flat)[len(scenarios_):]:
        ax.axis("off")
    fig.suptitle(f"conduit vs peers: {data['machine']['cpu']}, {data['machine']['cores']} "
                 f"cores ({data['date']})", fontsize=10)
    # room at the top for the title: with many rows, tight_layout alone let it run into
    # the first row's titles
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / (3.4 * rows)))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(data: dict, json_path: Path) -> None:
    md_path = json_path.with_suffix(".md")
    md_path.write_text(markdown(data))
    png_path = json_path.with_suffix(".png")
    try:
        chart(data, png_path)
    except ImportError:
        log("matplotlib is not installed: no chart (pip install matplotlib)")
        png_path = None
    log(f"wrote {json_path}, {md_path}" + (f", {png_path}" if png_path else ""))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, 2 s latency runs")
    parser.add_argument("--smoke", action="store_true", help="conduit alone, tiny sizes (CI)")
    parser.add_argument("--repeat", type=int, help="runs per server and scenario")
    parser.add_argument("--peers", help="comma-separated peer names (default: all)")
    parser.add_argument("--scenarios", help="comma-separated scenario keys (default: all)")
    parser.add_argument("--baseline", type=Path, metavar="TREE",
                        help="also run conduit from TREE (a git worktree of an earlier "
                             "commit, its extensions built in place) as peer conduit-base")
    parser.add_argument("--max-seconds", type=float, default=120.0,
                        help="skip the 1M stream for a peer that would take longer")
    parser.add_argument("--out", type=Path, help="results file (default: bench/results/...)")
    parser.add_argument("--report", type=Path, help="re-render the report of a results file")
    parser.add_argument("--merge-into", type=Path,
                        help="after this run, replace its scenarios in that results file "
                             "(the command of each run is kept in it)")
    args = parser.parse_args()
    if args.report:
        write_report(json.loads(args.report.read_text()), args.report)
        return 0
    if not CLIENT.parent.exists():
        print("bench/client is missing", file=sys.stderr)
        return 2
    data = run_all(args)
    RESULTS.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = args.out or RESULTS / f"{stamp}-{data['mode']}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=1))
    write_report(data, out)
    if args.merge_into:
        target = json.loads(args.merge_into.read_text())
        target["results"].update(data["results"])
        target.setdefault("merged", []).append(
            {"date": data["date"], "command": data["command"],
             "scenarios": list(data["results"])})
        args.merge_into.write_text(json.dumps(target, indent=1))
        write_report(target, args.merge_into)
    if not args.out and data["mode"] == "full":
        for suffix in (".json", ".md", ".png"):
            source = out.with_suffix(suffix)
            if source.exists():
                shutil.copyfile(source, RESULTS / f"latest{suffix}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
