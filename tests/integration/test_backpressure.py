"""A slow reader: the server stops pulling from the handler instead of buffering without
bound, and the stream continues once the client reads again. A client that stopped reading
altogether is cut after the write timeout (or, on a busy channel, its byte budget)."""

from __future__ import annotations

import re
import socket
import threading

import pytest
from integration_helpers import TIMEOUT, RawClient, subscribe, wait_for

import conduit
from conduit import App, SSEEvent

HIGH_WATER = 16 * 1024
LOW_WATER = 4 * 1024
ITEM = "y" * 1000  # about 1 KiB per frame


@pytest.fixture
def server(serve):
    app = App()
    produced = {"n": 0}

    @app.get("/sync")
    def endless_sync(request):
        while True:
            produced["n"] += 1
            yield SSEEvent(ITEM, id=produced["n"])

    @app.get("/async")
    async def endless_async(request):
        while True:
            produced["n"] += 1
            yield SSEEvent(ITEM, id=produced["n"])
            if produced["n"] % 8 == 0:
                await conduit.sleep(0)

    running = serve(app, high_water_bytes=HIGH_WATER, low_water_bytes=LOW_WATER,
                    heartbeat_seconds=0)
    running.produced = produced
    return running


def outbox_bytes(server) -> int:
    return server.call(lambda: sum(c.transport.get_write_buffer_size()
                                   for c in server.server.connections))


def wait_paused_for_good(server) -> None:
    """Paused, with unsent bytes above low water, in two loop turns in a row (the socket
    refused more in between): not the pause of a moment before the kernel takes it all."""
    previous = None

    def state():
        conns = server.server.connections
        return server.call(lambda: (
            any(c.stream is not None and c.stream.paused for c in conns),
            server.produced["n"],
            sum(c.transport.get_write_buffer_size() for c in conns)))

    def steady():
        nonlocal previous
        current = state()
        ok = (previous is not None and previous[0] and current[0]
              and previous[1] == current[1] and current[2] > LOW_WATER)
        previous = current
        return ok

    wait_for(steady, what="the pump to stay paused")


@pytest.mark.parametrize("path", ["/sync", "/async"])
def test_slow_reader_pauses_the_generator_then_resumes(server, path):
    with RawClient(server.address, rcvbuf=8192) as client:
        client.send(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        assert client.read_response(head_only=True).status == 200
        # The client reads nothing more. The pump must pause...
        wait_paused_for_good(server)
        paused_at = server.produced["n"]
        outbox = outbox_bytes(server)
        # ...and stay paused: nothing more is produced over a couple of sweeps.
        server.wait_sweeps(2)
        assert server.produced["n"] == paused_at
        assert outbox_bytes(server) == outbox
        # What was produced fits in the socket buffers plus about the high-water mark
        # (an unbounded server would have produced millions of events by now).
        assert paused_at * len(ITEM) < 8 * 1024 * 1024, paused_at
        # The server's memory for this connection is bounded by the watermark: one batch
        # past high water at most.
        assert outbox <= 2 * HIGH_WATER + 2 * len(ITEM), outbox

        # Now the client reads: the stream continues well past the pause point.
        target = paused_at + 200
        last_id = 0
        while last_id < target:
            _, payload = client.read_chunk()
            assert payload, "the stream ended"
            ids = re.findall(rb"^id: (\d+)$", payload, re.M)
            assert ids
            last_id = int(ids[-1])
        assert server.produced["n"] >= target


# -- the write timeout: a client that stopped reading is cut --------------------------------
WRITE_TIMEOUT = 1.0


@pytest.fixture
def stalled(serve, server_log):
    """A server with a 1 s write timeout and small kernel send buffers; its app has
    endless streams (with a ``finally`` flag) and a channel with the default 4 MiB budget."""
    app = App()
    finished = threading.Event()
    news = app.channel("news", history=1000)

    @app.get("/sync")
    def endless_sync(request):
        try:
            while True:
                yield SSEEvent(ITEM)
        finally:
            finished.set()

    @app.get("/async")
    async def endless_async(request):
        try:
            while True:
                yield SSEEvent(ITEM)
                await conduit.sleep(0)
        finally:
            finished.set()

    @app.get("/events")
    def events(request):
        return news.subscribe(request)

    running = serve(app, high_water_bytes=HIGH_WATER, low_water_bytes=LOW_WATER,
                    heartbeat_seconds=0, write_timeout_seconds=WRITE_TIMEOUT)
    # Otherwise the kernel grows the send buffer of a stalled connection to megabytes
    # before the outbox fills (accepted sockets inherit the listener's, on Linux).
    running.server.listener.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
    running.finished = finished
    running.news = news
    running.log = server_log
    return running


def write_timeout_lines(server) -> list:
    return [r.getMessage() for r in server.log.records
            if "client stopped reading" in r.getMessage()]


@pytest.mark.parametrize("path", ["/sync", "/async"])
def test_stream_whose_client_stopped_reading_is_cut(stalled, path):
    server = stalled
    with RawClient(server.address, rcvbuf=8192) as client:
        client.send(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        assert client.read_response(head_only=True).status == 200
        # The client reads nothing more: paused above high water, no progress, then cut.
        wait_for(lambda: write_timeout_lines(server), what="the write timeout")
        port = client.local_port
        assert f"127.0.0.1:{port} - client stopped reading" in write_timeout_lines(server)[0]
        wait_for(lambda: server.connection_count() == 0)
        assert server.finished.is_set()  # the generator was closed: its finally ran
        assert server.call(lambda: server.server.write_timeouts) == 1
        assert len(write_timeout_lines(server)) == 1  # one log line


def test_quiet_channel_subscriber_that_stopped_reading_is_cut(stalled):
    """Under its byte budget (the channel went quiet), so the budget never fires: the write
    timeout does. The subscription is removed; it is not counted as a slow consumer."""
    server = stalled
    with subscribe(server.address, "/events", rcvbuf=4096) as sub:
        for _ in range(150):  # 150 KB: past the kernel buffers and high water; under 4 MiB
            server.news.publish(ITEM)
        wait_for(lambda: write_timeout_lines(server), what="the write timeout")
        assert f"127.0.0.1:{sub.client.local_port}" in write_timeout_lines(server)[0]
        wait_for(lambda: server.call(lambda: server.news.subscriber_count) == 0)
        assert server.call(lambda: server.news.dropped) == 0
        assert server.call(lambda: server.server.write_timeouts) == 1


def test_budget_fires_first_on_a_busy_channel(serve, server_log):
    """Publishing goes on: the subscriber passes its byte budget long before the write
    timeout (60 s here) and is dropped as a slow consumer."""
    app = App()
    news = app.channel("news", history=1000, budget_bytes=32 * 1024)

    @app.get("/events")
    def events(request):
        return news.subscribe(request)

    server = serve(app, high_water_bytes=HIGH_WATER, low_water_bytes=LOW_WATER,
                   heartbeat_seconds=0, write_timeout_seconds=60)
    server.server.listener.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
    with subscribe(server.address, "/events", rcvbuf=4096):
        for _ in range(500):
            news.publish(ITEM)
            if server.call(lambda: news.dropped):
                break
        assert server.call(lambda: news.dropped) == 1
        assert server.call(lambda: server.server.write_timeouts) == 0
    assert any("slow consumer" in r.getMessage() for r in server_log.records)


def test_slow_but_steady_reader_is_not_cut(stalled):
    """Progress (the outbox shrinking) restarts the write timeout's clock: a client that
    reads slowly keeps its stream over several write timeouts."""
    server = stalled
    stop = threading.Event()
    got = {"bytes": 0}
    with RawClient(server.address, rcvbuf=8192) as client:
        client.send(b"GET /sync HTTP/1.1\r\nHost: t\r\n\r\n")
        assert client.read_response(head_only=True).status == 200

        def read_slowly():
            while not stop.is_set():
                got["bytes"] += len(client.sock.recv(2048))
                stop.wait(0.02)  # about 100 KB/s: much slower than the server writes

        reader = threading.Thread(target=read_slowly, daemon=True)
        reader.start()
        try:
            wait_for(lambda: got["bytes"] > 4 * HIGH_WATER, what="the reader to get going")
            server.wait_sweeps(int(3 * WRITE_TIMEOUT) + 1)
            assert server.call(lambda: server.server.write_timeouts) == 0
            assert server.connection_count() == 1
            assert not server.finished.is_set()
        finally:
            stop.set()
            reader.join(TIMEOUT)
