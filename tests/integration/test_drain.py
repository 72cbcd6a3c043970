"""Graceful drain: of the in-process server (``Server.shutdown()``, what SIGTERM triggers):
streams end cleanly, responses in progress finish with Connection: close, no new clients;
and of ``python -m conduit run`` with real signals: every stream gets its own ``retry:``
delay (a field line just before its end), streams end in waves before the graceful
timeout, requests during the drain get their normal answer, durable events are on disk,
exit status 0."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import threading

import pytest
from integration_helpers import TIMEOUT, RawClient, SSESubscriber, request, subscribe, wait_for

import conduit
from conduit import App, SSEEvent
from conduit.server.server import DRAIN_RETRY_SECONDS


@pytest.fixture
def parts():
    return {"entered": threading.Event(), "release": threading.Event(),
            "finally": threading.Event()}


@pytest.fixture
def server(serve, parts):
    app = App()

    @app.get("/")
    def index(request):
        return "ok"

    @app.get("/slow")
    async def slow(request):
        parts["entered"].set()
        await conduit.to_thread(parts["release"].wait, TIMEOUT)
        return "finished"

    @app.get("/stream")
    async def stream(request):
        try:
            yield SSEEvent("first")
            await conduit.sleep(60)
        finally:
            parts["finally"].set()

    running = serve(app)
    yield running
    parts["release"].set()


def wait_draining(server) -> None:
    wait_for(lambda: server.call(lambda: server.server.draining), what="draining")


def test_response_in_progress_finishes_with_connection_close(server, parts):
    with RawClient(server.address) as c:
        c.send(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n")
        assert parts["entered"].wait(TIMEOUT)
        server.shutdown()
        wait_draining(server)
        parts["release"].set()
        resp = c.read_response()
        assert resp.body == b"finished"
        # The server closes after this response: it must say so.
        assert resp.header(b"Connection") == b"close", resp.raw
        assert c.closed_by_peer()
    server.thread.join(TIMEOUT)
    assert not server.thread.is_alive()
    assert server.exit_code == 0


def test_open_stream_ends_with_last_chunk_and_finally_runs(server, parts):
    with RawClient(server.address) as c, RawClient(server.address) as idle:
        c.send(b"GET /stream HTTP/1.1\r\nHost: t\r\n\r\n")
        c.read_response(head_only=True)
        assert c.read_chunk()[1] == b"data: first\n\n"
        idle.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        assert idle.read_response().body == b"ok"
        server.shutdown()
        # the reconnection delay (a retry line, its own chunk), then the last chunk
        assert re.fullmatch(rb"c\r\nretry: \d{4}\n\r\n0\r\n\r\n", c.read_to_eof())
        assert idle.closed_by_peer()
    # the handler's task is cancelled (CancelledError at its await): its finally runs on
    # the loop's next turns, possibly after the connection closed
    assert parts["finally"].wait(TIMEOUT)
    server.thread.join(TIMEOUT)
    assert server.exit_code == 0


def test_no_new_connections_while_draining(server, parts):
    with RawClient(server.address) as c:
        c.send(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n")
        assert parts["entered"].wait(TIMEOUT)
        server.shutdown()
        wait_draining(server)
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(server.address, timeout=TIMEOUT).close()
        parts["release"].set()
        assert c.read_response().body == b"finished"


def test_shutdown_twice_forces(server, parts):
    with RawClient(server.address) as c:
        c.send(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n")
        assert parts["entered"].wait(TIMEOUT)
        server.shutdown()
        wait_draining(server)
        server.shutdown()
        server.thread.join(TIMEOUT)
        assert not server.thread.is_alive()
        assert server.exit_code == 1
        assert c.read_to_eof() == b""


# -- SIGTERM to `python -m conduit run`: retry delays with jitter, waves, durable log ------
DRAIN_APP = """
import conduit
from conduit import App, SSEEvent

app = App(data_dir={data_dir!r})
news = app.channel("news", durable=True)


@app.get("/")
def index(request):
    return "ok"


@app.get("/stream")
async def stream(request):
    yield SSEEvent("first")
    while True:
        await conduit.sleep(60)


@app.get("/events")
def events(request):
    return news.subscribe(request)


@app.post("/publish")
def publish(request):
    return {{"id": news.publish(request.body.decode())}}
"""
RETRY_LINE = re.compile(rb"retry: (\d+)\n")
WAVE_LINE = re.compile(r"drain: wave (\d+) of (\d+) ended (\d+) streams")


@pytest.fixture
def drain_app(app_file, tmp_path):
    return app_file(DRAIN_APP.format(data_dir=str(tmp_path / "data")))


def open_streams(address, count: int) -> list:
    """``count`` generator streams and ``count`` channel subscriptions, each past its first
    frame (so each is registered as a stream on the server)."""
    streams = []
    for _ in range(count):
        stream = SSESubscriber(address, "/stream")
        assert stream.next_event()["data"] == "first"
        streams.append(stream)
        streams.append(subscribe(address, "/events"))
    return streams


def retry_of(stream) -> int:
    """What the stream got after its first frames: exactly one retry line, then its end."""
    rest = stream.rest_until_end()
    match = RETRY_LINE.fullmatch(rest)
    assert match, rest
    assert stream.ended  # the last chunk: a clean end, not a cut
    return int(match.group(1))


def test_sigterm_sends_spread_retry_delays_and_ends_streams_in_waves(conduit_process,
                                                                      drain_app):
    proc = conduit_process(drain_app, "--timeout-graceful-shutdown", "4", "--no-access-log",
                           "--heartbeat-seconds", "0")
    streams = open_streams(proc.address, 5)
    try:
        proc.signal(signal.SIGTERM)
        assert proc.wait() == 0, proc.stderr()
        # The kernel kept what was sent before each close: read it now.
        retries = [retry_of(stream) for stream in streams]
    finally:
        for stream in streams:
            stream.close()
    low, high = (int(1000 * s) for s in DRAIN_RETRY_SECONDS)
    assert all(low <= ms < high for ms in retries), retries
    assert len(set(retries)) == len(retries), retries  # each client its own delay
    log = proc.stderr()
    waves = [tuple(map(int, m.groups())) for m in WAVE_LINE.finditer(log)]
    assert len(waves) > 1, log
    assert [w[0] for w in waves] == list(range(1, len(waves) + 1)), waves
    assert all(w[1] == len(waves) for w in waves), waves
    assert sum(w[2] for w in waves) == len(streams), waves
    assert "graceful timeout" not in log, log  # all ended before the timeout


def test_requests_during_the_drain_are_answered_with_connection_close(conduit_process,
                                                                      drain_app):
    """Connections already open when the drain starts: a request gets its normal answer
    (never a 5xx) with Connection: close; a stream started then gets a retry line and
    ends at the next sweep."""
    proc = conduit_process(drain_app, "--timeout-graceful-shutdown", "60", "--no-access-log",
                           "--keepalive-timeout-seconds", "60")
    idle = [RawClient(proc.address) for _ in range(2)]
    for client in idle:
        client.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        resp = client.read_response()
        assert resp.status == 200 and resp.header(b"Connection") is None  # kept alive
    streams = open_streams(proc.address, 1)  # two streams: two waves, 6 s apart
    try:
        proc.signal(signal.SIGTERM)
        proc.wait_for_line(r"drain: wave 1 of 2 ended 1 streams")
        plain, late = idle
        plain.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        resp = plain.read_response()
        assert (resp.status, resp.body) == (200, b"ok")
        assert resp.header(b"Connection") == b"close"
        assert plain.closed_by_peer()
        late.send(b"GET /stream HTTP/1.1\r\nHost: t\r\n\r\n")
        resp = late.read_response()  # chunked: read to the last chunk
        assert resp.status == 200 and resp.header(b"Connection") == b"close"
        assert re.fullmatch(rb"data: first\n\nretry: \d+\n", resp.body), resp.body
        assert late.closed_by_peer()
    finally:
        for stream in streams:
            stream.close()  # the second wave need not be waited for
        for client in idle:
            client.close()
    assert proc.wait() == 0, proc.stderr()
    assert "graceful timeout" not in proc.stderr()


def test_durable_events_published_just_before_sigterm_are_on_disk(conduit_process,
                                                                  drain_app, tmp_path):
    proc = conduit_process(drain_app, "--no-access-log")
    with subscribe(proc.address, "/events") as sub:
        ids = [post_json_text(proc.address, f"event {i}") for i in range(5)]
        assert [e["id"] for e in sub.events(5)] == ids
        proc.signal(signal.SIGTERM)
        assert proc.wait() == 0, proc.stderr()
    records = []
    segments = sorted((tmp_path / "data" / "channels" / "news").glob("*.log"))
    assert segments
    for segment in segments:
        lines = segment.read_text().splitlines()
        assert lines and all(lines), segment
        records += [json.loads(line) for line in lines[1:]]  # after the header
    assert [r["data"] for r in records] == [f"event {i}" for i in range(5)]
    assert [str(r["seq"]) for r in records] == [i.rpartition("-")[2] for i in ids]


def post_json_text(address, text: str) -> str:
    body = text.encode()
    resp = request(address, b"POST /publish HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
                   b"Content-Length: %d\r\n\r\n" % len(body) + body)
    assert resp.status == 200, resp
    return json.loads(resp.body)["id"]


EARLY_SIGNAL = '''
import logging
import os
import signal
import sys

from conduit import App
from conduit.config import Config
from conduit.server.server import Server

logging.basicConfig(level=logging.INFO)
app = App()
started = []
app.on_startup(lambda: started.append(True))
server = Server(app, Config(host="127.0.0.1", port=0, access_log=False))
server.bind()
server.catch_signals()  # as a worker does before it says "ready" to its supervisor
os.kill(os.getpid(), signal.SIGTERM)  # the supervisor's stop, before run() has begun
code = server.run()
print("exit", code, "started", started, flush=True)
sys.exit(code)
'''


def test_a_sigterm_caught_before_run_drains_instead_of_killing(tmp_path):
    # A worker of --workers says "ready" before run() installs anything: a SIGTERM in
    # between killed it (SIG_DFL), and the supervisor exited 1 (seen in CI).
    script = tmp_path / "early.py"
    script.write_text(EARLY_SIGNAL)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=TIMEOUT)
    assert done.returncode == 0, done.stderr
    assert "exit 0 started [True]" in done.stdout
    assert "SIGTERM: shutting down" in done.stderr
