"""``--workers 2`` over real processes: ``python -m conduit run app.py --workers 2``.

Every test starts its own supervisor (port 0: the supervisor binds and its workers join
the port with SO_REUSEPORT) and checks what the README's "Scaling" section promises:
both workers serve; a publish through either reaches the subscribers of both, once each,
in one order; Last-Event-ID resumes on either worker, and on a worker restarted after
kill -9; SIGTERM drains every worker and exits 0; a supervisor killed with SIGKILL takes
its workers with it; durable channels keep their history across a restart of the whole
group (the supervisor is their only writer).

Which worker a connection lands on is the kernel's choice (a hash of the client's
address and port): tests open connections until they have what they need, and every
response and stream says which worker answered (the ``X-Worker-Pid`` header).
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
from integration_helpers import (  # noqa: E402
    ConduitProcess,
    RawClient,
    request,
    run_cli,
    subscribe,
    wait_for,
)

DEADLINE = 30.0  # generous: a loaded 2-core CI machine starts interpreters slowly

APP = '''
import os
from conduit import App

app = App()
news = app.channel("news", history=100, durable=DURABLE)
PID = [("X-Worker-Pid", str(os.getpid()))]


@app.get("/pid")
def pid(request):
    return {"pid": os.getpid()}


@app.get("/events")
def events(request):
    return news.subscribe(request, headers=PID)


@app.post("/publish")
def publish(request):
    n = int(request.query.get("n", "1"))
    tag = request.query.get("tag", "")
    items = [{"tag": tag, "i": i, "by": os.getpid()} for i in range(n)]
    if request.query.get("many"):
        ids = news.publish_many(items)
    else:
        ids = [news.publish(item) for item in items]
    return {"ids": ids, "pid": os.getpid()}
'''

_STARTED = re.compile(r"worker (\d+) started \[(\d+)\]")


class Workers:
    """A supervisor started with ``--workers 2``, and every process it started."""

    def __init__(self, app_path, *args, cwd=None) -> None:
        self.process = ConduitProcess(app_path, "--workers", "2",
                                      "--timeout-graceful-shutdown", "2", *args, cwd=cwd)
        self.process.wait_for_line(r"conduit running on http://[0-9.]+:\d+ with 2 workers",
                                   timeout=DEADLINE)
        self.process.wait_started()

    @property
    def address(self):
        return self.process.address

    @property
    def supervisor_pid(self) -> int:
        return self.process.proc.pid

    def started(self) -> list:
        """(worker number, pid) of every worker start logged so far, oldest first."""
        with self.process._cond:
            lines = list(self.process.lines)
        return [(int(m.group(1)), int(m.group(2))) for line in lines
                if (m := _STARTED.search(line))]

    def current_pids(self) -> dict:
        """worker number -> pid of its newest start."""
        return dict(self.started())

    def all_pids(self) -> set:
        return {pid for _, pid in self.started()} | {self.supervisor_pid}

    def stop(self) -> None:
        self.process.kill()
        for pid in self.all_pids():
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture
def app_path(tmp_path):
    def write(durable: bool = False):
        path = tmp_path / "workers_app.py"
        path.write_text(APP.replace("DURABLE", repr(durable)))
        return path

    return write


@pytest.fixture
def workers(tmp_path):
    started = []

    def start(app_path, *args) -> Workers:
        group = Workers(app_path, *args, cwd=tmp_path)
        started.append(group)
        return group

    yield start
    for group in started:
        group.stop()


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting to be reaped counts as exited)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def get_json(address, path: str) -> dict:
    resp = request(address, f"GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
                   .encode())
    assert resp.status == 200, resp
    return json.loads(resp.body)


def publish(address, n: int = 1, tag: str = "", many: bool = False) -> dict:
    query = f"n={n}&tag={tag}" + ("&many=1" if many else "")
    resp = request(address, f"POST /publish?{query} HTTP/1.1\r\nHost: t\r\n"
                            f"Content-Length: 0\r\nConnection: close\r\n\r\n".encode())
    assert resp.status == 200, resp
    return json.loads(resp.body)


def worker_pid(sub) -> int:
    return int(sub.response.header(b"X-Worker-Pid"))


def subscribers_on(address, pids, each: int = 1, last_event_id=None) -> dict:
    """pid -> ``each`` subscribers connected to that worker (others are closed)."""
    found: dict = {pid: [] for pid in pids}
    deadline = time.monotonic() + DEADLINE
    while any(len(subs) < each for subs in found.values()):
        assert time.monotonic() < deadline, f"could not reach every worker: {found}"
        sub = subscribe(address, "/events", last_event_id=last_event_id)
        subs = found.get(worker_pid(sub))
        if subs is not None and len(subs) < each:
            subs.append(sub)
        else:
            sub.close()
    return found


def data_of(event: dict) -> dict:
    return json.loads(event["data"])


# -- (a) both workers serve ----------------------------------------------------------------------
def test_both_workers_serve(workers, app_path):
    group = workers(app_path())
    pids = set(group.current_pids().values())
    assert len(pids) == 2
    seen: set = set()
    deadline = time.monotonic() + DEADLINE
    while seen != pids:
        assert time.monotonic() < deadline, f"answers came from {seen}, workers are {pids}"
        seen.add(get_json(group.address, "/pid")["pid"])
    assert group.supervisor_pid not in seen


def test_bind_error_is_reported_once(tmp_path, app_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = run_cli("run", app_path(), "--workers", "2", "--port", port, cwd=tmp_path,
                         timeout=DEADLINE)
    assert result.returncode == 3, result.stderr
    assert result.stderr.count("cannot listen on") == 1, result.stderr
    assert "worker 1 started" not in result.stderr


# -- (b) one hub: every publish reaches every subscriber once, in one order ----------------------
def test_publish_many_is_one_lot_of_consecutive_ids_seen_everywhere(workers, app_path):
    group = workers(app_path())
    pids = set(group.current_pids().values())
    subs = [sub for subs in subscribers_on(group.address, pids).values() for sub in subs]
    published = []
    publishers: set = set()
    deadline = time.monotonic() + DEADLINE
    while publishers != pids:
        assert time.monotonic() < deadline, f"publishes only went through {publishers}"
        answer = publish(group.address, n=50, tag=f"m{len(published)}", many=True)
        seqs = [int(event_id.rpartition("-")[2]) for event_id in answer["ids"]]
        assert seqs == list(range(seqs[0], seqs[0] + 50)), "a lot's ids are consecutive"
        published += answer["ids"]
        publishers.add(answer["pid"])
    for sub in subs:
        events = sub.events(len(published))
        assert [event["id"] for event in events] == published
        sub.close()


def test_publish_reaches_every_worker_once_in_order(workers, app_path):
    group = workers(app_path())
    pids = set(group.current_pids().values())
    by_worker = subscribers_on(group.address, pids, each=2)
    subs = [sub for subs in by_worker.values() for sub in subs]
    published = []
    publishers: set = set()
    deadline = time.monotonic() + DEADLINE
    rounds = 0
    while publishers != pids or rounds < 4:  # publishes through both workers
        assert time.monotonic() < deadline, f"publishes only went through {publishers}"
        answer = publish(group.address, n=5, tag=f"r{rounds}")
        published += answer["ids"]
        publishers.add(answer["pid"])
        rounds += 1
    assert len(set(published)) == len(published)
    streams = []
    for sub in subs:
        events = sub.events(len(published))
        streams.append([event["id"] for event in events])
        assert {data_of(event)["by"] for event in events} == pids
        sub.close()
    assert all(ids == streams[0] for ids in streams), "subscribers saw different orders"
    assert sorted(streams[0]) == sorted(published)  # each event once, none missing
    seqs = [int(event_id.rpartition("-")[2]) for event_id in streams[0]]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    epochs = {event_id.rpartition("-")[0] for event_id in streams[0]}
    assert len(epochs) == 1


# -- (c) Last-Event-ID resumes on the other worker -----------------------------------------------
def test_last_event_id_resumes_on_the_other_worker(workers, app_path):
    group = workers(app_path())
    pids = set(group.current_pids().values())
    first_ids = publish(group.address, n=10, tag="before")["ids"]
    with subscribe(group.address, "/events", last_event_id=first_ids[0]) as sub:
        first_pid = worker_pid(sub)
        read = sub.events(4)
    assert [event["id"] for event in read] == first_ids[1:5]
    later_ids = publish(group.address, n=5, tag="after")["ids"]
    (other_pid,) = pids - {first_pid}
    resumed = subscribers_on(group.address, [other_pid], last_event_id=read[-1]["id"])
    (sub,) = resumed[other_pid]
    with sub:
        expected = first_ids[5:] + later_ids
        got = [event["id"] for event in sub.events(len(expected))]
        assert got == expected
        assert sub.client.nothing_pending(0.2)  # nothing more: no duplicate


# -- (d) kill -9 a worker: restarted, serving, with the history ---------------------------------
def test_killed_worker_is_restarted_with_the_history(workers, app_path):
    group = workers(app_path())
    before = group.current_pids()
    ids = publish(group.address, n=6, tag="before-kill")["ids"]
    killed = before[1]
    os.kill(killed, signal.SIGKILL)
    group.process.wait_for_line(rf"worker 1 \[{killed}\] exited unexpectedly "
                                r"\(signal SIGKILL\)", timeout=DEADLINE)
    # the port keeps serving meanwhile (the other worker takes every connection)
    assert get_json(group.address, "/pid")["pid"] != killed
    new_pid = wait_for(lambda: group.current_pids()[1] != killed and group.current_pids()[1],
                       timeout=DEADLINE, what="worker 1 restarted")
    group.process.wait_for_line(rf"worker \[{new_pid}\] attached", timeout=DEADLINE)
    assert alive(before[2]) and not alive(killed)
    resumed = subscribers_on(group.address, [new_pid], last_event_id=ids[1])
    (sub,) = resumed[new_pid]
    with sub:
        assert [event["id"] for event in sub.events(4)] == ids[2:]
        more = publish(group.address, n=2, tag="after-restart")["ids"]
        assert [event["id"] for event in sub.events(2)] == more
        assert more[0].rpartition("-")[0] == ids[0].rpartition("-")[0]  # same epoch


# -- (e) SIGTERM drains every worker ------------------------------------------------------------
def test_sigterm_drains_every_worker_and_exits_0(workers, app_path):
    group = workers(app_path())
    pids = set(group.current_pids().values())
    by_worker = subscribers_on(group.address, pids)
    every = group.all_pids()
    group.process.signal(signal.SIGTERM)
    for subs in by_worker.values():
        (sub,) = subs
        rest = sub.rest_until_end()
        assert re.search(rb"^retry: \d+$", rest, re.M), rest  # the drain's reconnect delay
        sub.close()
    assert group.process.wait(DEADLINE) == 0, group.process.stderr()
    wait_for(lambda: not any(alive(pid) for pid in every), timeout=DEADLINE,
             what="every process gone")
    log = group.process.stderr()
    assert log.count("exited (status 0)") == 2, log
    assert "restarting" not in log


# -- (f) the supervisor dies hard: its workers follow -------------------------------------------
def test_workers_exit_when_the_supervisor_is_killed(workers, app_path):
    group = workers(app_path())
    pids = set(group.current_pids().values())
    assert all(alive(pid) for pid in pids)
    os.kill(group.supervisor_pid, signal.SIGKILL)
    group.process.proc.wait(DEADLINE)
    wait_for(lambda: not any(alive(pid) for pid in pids), timeout=DEADLINE,
             what="the workers to exit after their supervisor")
    with pytest.raises(OSError):
        RawClient(group.address, timeout=2).close()


# -- durable channels: the supervisor writes the logs ------------------------------------------
def test_durable_history_survives_a_restart_of_the_group(workers, app_path, tmp_path):
    path = app_path(durable=True)
    group = workers(path)
    ids = publish(group.address, n=3, tag="one")["ids"]
    ids += publish(group.address, n=3, tag="two")["ids"]
    group.process.signal(signal.SIGTERM)
    assert group.process.wait(DEADLINE) == 0, group.process.stderr()
    logs = list((tmp_path / "conduit-data" / "channels" / "news").glob("*.log"))
    assert len(logs) == 1, logs
    records = [json.loads(line) for line in logs[0].read_text().splitlines()[1:]]
    assert [record["seq"] for record in records] == [int(i.rpartition("-")[2]) for i in ids]

    group = workers(path)
    pids = set(group.current_pids().values())
    for pid, (sub,) in subscribers_on(group.address, pids, last_event_id=ids[2]).items():
        with sub:
            assert [event["id"] for event in sub.events(3)] == ids[3:], pid
    newer = publish(group.address, n=1, tag="three")["ids"][0]
    assert newer.rpartition("-")[0] == ids[0].rpartition("-")[0]  # the same epoch
    assert int(newer.rpartition("-")[2]) > int(ids[-1].rpartition("-")[2])


# -- a cursor from a moment ago (read on the other worker) resumes at once --------------------
def test_fresh_cursor_from_the_other_worker_resumes(workers, app_path):
    group = workers(app_path())
    for round_ in range(20):
        (newest,) = publish(group.address, n=1, tag=f"fresh{round_}")["ids"]
        # the worker this lands on may not have read the event from its feed yet: it
        # catches up with the broker rather than calling the cursor stale
        with subscribe(group.address, "/events", last_event_id=newest) as sub:
            (next_id,) = publish(group.address, n=1, tag=f"next{round_}")["ids"]
            event = sub.next_event()
            assert event["event"] is None and event["id"] == next_id, event


# -- the supervisor's broker gives up on a worker that stops reading ----------------------------
def test_broker_drops_a_worker_that_stops_reading(tmp_path):
    import selectors
    import threading

    from conduit.server.local_broker import FrameReader, LocalBrokerServer, pack

    given_up = []
    server = LocalBrokerServer(str(tmp_path / "broker.sock"), on_slow_worker=given_up.append,
                               max_behind_bytes=256 * 1024)
    selector = selectors.DefaultSelector()
    server.start(selector)
    stop = threading.Event()

    def run():
        while not stop.is_set():
            for key, mask in selector.select(0.05):
                key.data(mask)
            server.after_turn()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    hello = pack(["hello", {"pid": 4242, "data_dir": str(tmp_path),
                            "channels": {"news": {"history": 10}}}])
    stuck = socket.socket(socket.AF_UNIX)
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stuck.connect(str(tmp_path / "broker.sock"))
    stuck.sendall(hello)  # ... and never reads again
    publisher = socket.socket(socket.AF_UNIX)
    publisher.connect(str(tmp_path / "broker.sock"))
    publisher.settimeout(DEADLINE)
    publisher.sendall(pack(["hello", {"pid": 4343, "data_dir": str(tmp_path),
                                      "channels": {"news": {"history": 10}}}]))
    frames = FrameReader()
    answers = []
    try:
        rid = 0
        while not given_up:
            assert rid < 10_000, "the broker never gave up on the stuck worker"
            rid += 1
            publisher.sendall(pack(["p", rid, "news", None, "x" * 4096]))
            while not any(m[0] == "a" and m[1][-1][0] == rid for m in answers):
                answers += frames.feed(publisher.recv(1 << 20))
        assert given_up == [4242]
        # the publisher goes on: its feed and answers are not held up by the dropped one
        publisher.sendall(pack(["p", rid + 1, "news", None, "after"]))
        while not any(m[0] == "a" and m[1][-1][0] == rid + 1 for m in answers):
            answers += frames.feed(publisher.recv(1 << 20))
    finally:
        stop.set()
        thread.join(DEADLINE)
        stuck.close()
        publisher.close()
        server.close()
        selector.close()
