"""Graceful drain of the in-process server (``Server.shutdown()``, what SIGTERM triggers):
streams end cleanly, responses in progress finish with Connection: close, no new clients."""

from __future__ import annotations

import socket
import threading

import pytest
from integration_helpers import TIMEOUT, RawClient, wait_for

import conduit
from conduit import App, SSEEvent


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
        assert c.read_to_eof() == b"0\r\n\r\n"
        assert idle.closed_by_peer()
    assert parts["finally"].is_set()
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
