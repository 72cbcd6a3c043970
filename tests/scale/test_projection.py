"""Listeners and projections across processes: ``channel.listen()`` and ``sync()`` through
Redis (``--broker``, two conduit servers around a real redis-server) and through the
workers' broker (``--workers 2``), over real sockets and real processes.

- examples/dizzy_documents.py, whose documents are a projection of the channel: a
  document created through one server is saved and deleted through the other at once (no
  409), and ``GET /documents`` on both agrees after every step; Redis losing its data
  makes both projections rebuild, and they agree again.
- A small app streaming ``app.listen("docs", "alerts")``: every server yields the same
  events in the same order, live and from history.

Which worker serves a connection is the kernel's choice: the tests keep one keep-alive
connection per worker (found with ``GET /pid``) and send everything for "worker A" on it.
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
from pathlib import Path

import pytest
from integration_helpers import REPO_ROOT, ConduitProcess, RawClient, SSESubscriber, id_seq

DEADLINE = 30.0  # generous: a loaded 2-core CI machine starts processes slowly
EXAMPLES = str(Path(REPO_ROOT) / "examples")

# The example as it is, plus a route that names the process (for --workers).
DIZZY = f'''
import os
import sys

sys.path.insert(0, {EXAMPLES!r})
from dizzy_documents import app  # noqa: E402


@app.get("/pid")
def pid(request):
    return {{"pid": os.getpid()}}
'''

LISTEN_APP = '''
import os
from conduit import App, SSEEvent, StreamResponse

app = App()
docs = app.channel("docs", history=1000)
alerts = app.channel("alerts", history=1000)
PID = [("X-Worker-Pid", str(os.getpid()))]


@app.get("/pid")
def pid(request):
    return {"pid": os.getpid()}


@app.get("/listen")
def listen(request):
    after = request.query.get("after")

    async def stream():
        async with app.listen("docs", "alerts", after=after) as listener:
            yield SSEEvent("", event="listening")
            async for event in listener:
                yield SSEEvent(event._asdict(), event="item")

    return StreamResponse(stream(), headers=PID)


@app.post("/publish/{name}")
def publish(request, name):
    channel = app.hub.channels[name]
    n = int(request.query.get("n", "1"))
    items = [{"by": os.getpid(), "i": i, "tag": request.query.get("tag", "")}
             for i in range(n)]
    ids = channel.publish_many(items) if n > 1 else [channel.publish(items[0])]
    return {"ids": ids}
'''


# -- clients ----------------------------------------------------------------------------------
class Conn:
    """One keep-alive connection: every request on it reaches the same process."""

    def __init__(self, address) -> None:
        self.address = address
        self.client = RawClient(address)

    def call(self, method: str, path: str, value=None):
        body = json.dumps(value).encode() if value is not None else b""
        self.client.send(f"{method} {path} HTTP/1.1\r\nHost: t\r\n"
                         f"Content-Type: application/json\r\nContent-Length: {len(body)}"
                         f"\r\n\r\n".encode() + body)
        resp = self.client.read_response()
        return resp.status, json.loads(resp.body) if resp.body else None

    def close(self) -> None:
        self.client.close()


def one_connection_per_worker(address, count: int = 2) -> list:
    """``count`` keep-alive connections, each to a different process (``GET /pid``)."""
    found: dict = {}
    deadline = time.monotonic() + DEADLINE
    while len(found) < count:
        assert time.monotonic() < deadline, f"reached only the workers {sorted(found)}"
        conn = Conn(address)
        status, answer = conn.call("GET", "/pid")
        assert status == 200, answer
        if answer["pid"] in found:
            conn.close()
        else:
            found[answer["pid"]] = conn
    return list(found.values())


def documents(conn) -> dict:
    status, answer = conn.call("GET", "/documents")
    assert status == 200, answer
    return answer


def command(conn, kind: str, expect: int, **data) -> str | None:
    status, answer = conn.call("POST", "/command", {"type": kind, "data": data})
    assert status == expect, (kind, data, status, answer)
    return answer["event_ids"][0] if status < 300 else None


def agree(a, b, last_id: str, docs: list) -> None:
    """Both servers list the same state: ``docs``, with ``last_id`` the last event."""
    state_a, state_b = documents(a), documents(b)
    assert state_a == state_b, (state_a, state_b)
    assert state_a["last_event_id"] == last_id == state_a["cursor"]
    assert state_a["documents"] == docs


def commands_across_servers(a, b) -> None:
    """Each document created through one server, changed and deleted through the other,
    each command right after the one before (no wait for any feed)."""
    for i in range(6):
        doc = f"doc-{i}"
        first, other = (a, b) if i % 2 == 0 else (b, a)
        created = command(first, "CreateDocument", 201, id=doc, content="v1")
        command(other, "CreateDocument", 409, id=doc, content="again")  # it exists there
        agree(a, b, created, [{"id": doc, "content": "v1"}])
        saved = command(other, "SaveDocument", 200, id=doc, content="v2 ✓")
        agree(a, b, saved, [{"id": doc, "content": "v2 ✓"}])
        deleted = command(other, "DeleteDocument", 200, id=doc)
        agree(a, b, deleted, [])
        command(first, "SaveDocument", 409, id=doc, content="gone")  # deleted everywhere
        assert id_seq(created) < id_seq(saved) < id_seq(deleted)
    kept = command(a, "CreateDocument", 201, id="kept", content="stays")
    agree(a, b, kept, [{"id": "kept", "content": "stays"}])


# -- listeners ---------------------------------------------------------------------------------
class Listening:
    def __init__(self, address, after: str | None = None) -> None:
        path = "/listen" + (f"?after={after}" if after else "")
        self.sub = SSESubscriber(address, path)
        assert self.sub.next_event()["event"] == "listening"
        self.pid = int(self.sub.response.header(b"X-Worker-Pid"))

    def items(self, count: int) -> list:
        got = []
        for _ in range(count):
            event = self.sub.next_event()
            assert event["event"] == "item", event
            item = json.loads(event["data"])
            got.append((item["id"], item["channel"], item["event"], item["data"]))
        return got

    def close(self) -> None:
        self.sub.close()


def listeners_on_each(address, count: int = 2) -> list:
    found: dict = {}
    deadline = time.monotonic() + DEADLINE
    while len(found) < count:
        assert time.monotonic() < deadline, f"reached only the workers {sorted(found)}"
        client = Listening(address)
        if client.pid in found:
            client.close()
        else:
            found[client.pid] = client
    return list(found.values())


def same_events_everywhere(address, listeners, publishers) -> None:
    """Publishes through every process, interleaved: every listener yields them all, in
    one order, with the same ids; a listener started afterwards replays the same."""
    acked = []
    for k in range(12):
        conn = publishers[k % len(publishers)]
        name = ("docs", "alerts")[k % 3 == 0]
        status, answer = conn.call("POST", f"/publish/{name}?tag=k{k}")
        assert status == 200, answer
        acked += answer["ids"]
    status, answer = publishers[-1].call("POST", "/publish/alerts?n=40&tag=many")
    assert status == 200, answer
    acked += answer["ids"]
    seen = [listener.items(len(acked)) for listener in listeners]
    assert all(got == seen[0] for got in seen), seen
    assert [item[0] for item in seen[0]] == sorted(acked, key=id_seq)
    assert sorted(id_seq(i) for i in acked) == [id_seq(item[0]) for item in seen[0]]
    late = Listening(address)  # from the history
    assert late.items(len(acked)) == seen[0]
    late.close()


# -- through Redis ------------------------------------------------------------------------------
@pytest.fixture
def dizzy_path(tmp_path):
    path = tmp_path / "dizzy_with_pid.py"
    path.write_text(DIZZY)
    return path


@pytest.fixture
def listen_path(tmp_path):
    path = tmp_path / "listen_app.py"
    path.write_text(LISTEN_APP)
    return path


def test_a_document_created_through_a_is_saved_and_deleted_through_b(
        redis_server, conduit_cluster, dizzy_path):
    redis = redis_server()
    servers = conduit_cluster(dizzy_path, redis.url, 2)
    a, b = (Conn(server.address) for server in servers)
    assert documents(a)["documents"] == documents(b)["documents"] == []
    commands_across_servers(a, b)
    # A third server started now folds the same state from Redis's history.
    [c] = conduit_cluster(dizzy_path, redis.url, 1)
    assert documents(Conn(c.address)) == documents(a)


def test_redis_losing_its_data_makes_every_projection_rebuild(
        redis_server, conduit_cluster, dizzy_path):
    redis = redis_server()
    servers = conduit_cluster(dizzy_path, redis.url, 2)
    a, b = (Conn(server.address) for server in servers)
    old = command(a, "CreateDocument", 201, id="before", content="old epoch")
    agree(a, b, old, [{"id": "before", "content": "old epoch"}])
    redis.kill()
    redis.start(wipe=True)
    # Until each server's feed is back on the new Redis it answers 503 (Retry-After).
    for conn in (a, b):
        deadline = time.monotonic() + DEADLINE
        while True:
            status, answer = conn.call("GET", "/documents")
            if status == 200 and answer["documents"] == []:
                break
            assert status in (200, 503), (status, answer)
            assert time.monotonic() < deadline, ("never rebuilt", status, answer)
            time.sleep(0.05)
    for server in servers:  # the listener's reset: rebuilt from the (empty) new history
        server.wait_for_line("new epoch", timeout=DEADLINE)
    new = command(b, "CreateDocument", 201, id="after", content="new epoch")
    assert new.rpartition("-")[0] != old.rpartition("-")[0]
    agree(a, b, new, [{"id": "after", "content": "new epoch"}])
    command(a, "DeleteDocument", 200, id="after")
    command(b, "SaveDocument", 409, id="before", content="gone with the old epoch")


def test_listen_yields_the_same_events_in_the_same_order_on_every_server(
        redis_server, conduit_cluster, listen_path):
    redis = redis_server()
    servers = conduit_cluster(listen_path, redis.url, 2)
    listeners = [Listening(server.address) for server in servers]
    publishers = [Conn(server.address) for server in servers]
    same_events_everywhere(servers[-1].address, listeners, publishers)


# -- through the workers' broker ---------------------------------------------------------------
_STARTED = re.compile(r"worker \d+ started \[(\d+)\]")


class Workers:
    def __init__(self, app_path, cwd) -> None:
        self.process = ConduitProcess(app_path, "--workers", "2", "--no-access-log",
                                      "--timeout-graceful-shutdown", "2", cwd=cwd)
        self.process.wait_for_line(r"conduit running on http://[0-9.]+:\d+ with 2 workers",
                                   timeout=DEADLINE)
        self.process.wait_started()

    def stop(self) -> None:
        with self.process._cond:
            lines = list(self.process.lines)
        pids = [int(m.group(1)) for line in lines if (m := _STARTED.search(line))]
        self.process.kill()
        for pid in pids:  # the supervisor's SIGKILL takes them too; make sure
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.fixture
def workers(tmp_path):
    started = []

    def start(app_path) -> Workers:
        group = Workers(app_path, cwd=tmp_path)
        started.append(group)
        return group

    yield start
    for group in started:
        group.stop()


def test_workers_share_one_projection_of_the_documents(workers, dizzy_path):
    group = workers(dizzy_path)
    a, b = one_connection_per_worker(group.process.address)
    assert documents(a) == documents(b)
    commands_across_servers(a, b)


def test_listen_yields_the_same_events_in_the_same_order_on_every_worker(
        workers, listen_path):
    group = workers(listen_path)
    listeners = listeners_on_each(group.process.address)
    publishers = one_connection_per_worker(group.process.address)
    same_events_everywhere(group.process.address, listeners, publishers)
