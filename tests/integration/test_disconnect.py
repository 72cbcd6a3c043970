"""A client that goes away mid-stream: the handler's generator is closed (its finally runs),
whatever it was doing, and the server forgets the connection."""

from __future__ import annotations

import socket
import threading

import pytest
from integration_helpers import TIMEOUT, RawClient, wait_for

import conduit
from conduit import App, SSEEvent, StreamResponse

BIG = "x" * 4000


@pytest.fixture
def events():
    return {name: threading.Event() for name in (
        "sync", "async-sleep", "async-paused", "async-finally-awaits", "on-close",
        "async-thread", "sync-started", "async-paused-started",
    )}


@pytest.fixture
def server(serve, events):
    app = App()
    produced = {"async-paused": 0}
    gate = threading.Event()  # holds a worker thread; released after the test

    @app.get("/sync")
    def sync_stream(request):
        events["sync-started"].set()
        try:
            i = 0
            while True:
                i += 1
                yield SSEEvent(BIG, id=i)
        finally:
            events["sync"].set()

    @app.get("/async-sleep")
    async def async_sleep(request):
        try:
            yield SSEEvent("first", id=1)
            await conduit.sleep(60)
            yield SSEEvent("never")
        finally:
            events["async-sleep"].set()

    @app.get("/async-paused")
    async def async_paused(request):
        events["async-paused-started"].set()
        try:
            while True:  # never awaits: only backpressure stops it, at a yield
                produced["async-paused"] += 1
                yield SSEEvent(BIG, id=produced["async-paused"])
        finally:
            events["async-paused"].set()

    @app.get("/async-finally-awaits")
    async def async_finally_awaits(request):
        try:
            yield SSEEvent("first")
            await conduit.sleep(60)
        finally:
            await conduit.sleep(0.01)  # cleanup that itself awaits
            events["async-finally-awaits"].set()

    @app.get("/async-thread")
    async def async_thread(request):
        try:
            yield SSEEvent("first")
            await conduit.to_thread(gate.wait, 60)
        finally:
            events["async-thread"].set()

    @app.get("/on-close")
    def on_close(request):
        def gen():
            yield SSEEvent("first")
            while True:
                yield b": filler\n\n" * 1000

        return StreamResponse(gen(), on_close=events["on-close"].set)

    running = serve(app, high_water_bytes=16 * 1024, low_water_bytes=4 * 1024)
    running.produced = produced
    yield running
    gate.set()


def open_stream(server, path, rcvbuf=None) -> RawClient:
    client = RawClient(server.address, rcvbuf=rcvbuf)
    client.send(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
    head = client.read_response(head_only=True)
    assert head.status == 200
    assert head.header(b"Transfer-Encoding") == b"chunked"
    return client


def assert_released(server) -> None:
    wait_for(lambda: server.connection_count() == 0, what="connections == 0")
    assert server.call(lambda: len(server.server.streams)) == 0


def test_sync_generator_finally_runs_on_disconnect(server, events):
    client = open_stream(server, "/sync")
    client.read_chunk()
    client.close()  # with unread data: the server sees a reset
    assert events["sync"].wait(TIMEOUT)
    assert_released(server)


def test_async_generator_in_sleep_finally_runs_on_disconnect(server, events):
    client = open_stream(server, "/async-sleep")
    _, payload = client.read_chunk()
    assert payload == b"id: 1\ndata: first\n\n"
    assert not events["async-sleep"].is_set()
    client.close()  # nothing unread: a clean FIN
    assert events["async-sleep"].wait(TIMEOUT)
    assert_released(server)


def test_async_generator_paused_at_yield_finally_runs_on_disconnect(server, events):
    client = open_stream(server, "/async-paused", rcvbuf=4096)
    assert events["async-paused-started"].wait(TIMEOUT)
    # Not reading: the outbox fills and the pump pauses the generator at a yield.
    wait_for(lambda: any(s.paused for s in server.streams()), what="the stream to pause")
    assert not events["async-paused"].is_set()
    client.close()
    assert events["async-paused"].wait(TIMEOUT)
    assert_released(server)


def test_async_generator_whose_finally_awaits(server, events):
    client = open_stream(server, "/async-finally-awaits")
    client.read_chunk()
    client.close()
    assert events["async-finally-awaits"].wait(TIMEOUT)
    assert_released(server)


def test_async_generator_in_to_thread_finally_runs_on_disconnect(server, events):
    client = open_stream(server, "/async-thread")
    client.read_chunk()
    client.close()
    assert events["async-thread"].wait(TIMEOUT)
    assert_released(server)


def test_half_close_ends_the_stream(server, events):
    """EOF from the client (shutdown of its sending side) while a stream is open."""
    client = open_stream(server, "/async-sleep")
    client.read_chunk()
    client.sock.shutdown(socket.SHUT_WR)
    assert events["async-sleep"].wait(TIMEOUT)
    assert client.read_to_eof() == b""  # the server closed; no terminating chunk
    client.close()
    assert_released(server)


def test_on_close_callback_runs_on_disconnect(server, events):
    client = open_stream(server, "/on-close")
    client.read_chunk()
    client.close()
    assert events["on-close"].wait(TIMEOUT)
    assert_released(server)


def test_many_clients_disconnecting_leave_nothing_behind(server, events):
    clients = [open_stream(server, "/async-sleep") for _ in range(20)]
    for c in clients:
        c.read_chunk()
    assert server.connection_count() == 20
    for c in clients:
        c.close()
    assert_released(server)
