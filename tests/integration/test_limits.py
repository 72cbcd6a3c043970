"""Connection limits over real sockets: ``max_connections`` and
``max_connections_per_client``. A connection over a limit is closed right after accept,
before any byte of a response (what makes a browser's EventSource retry later; a 4xx/5xx
would make it give up); the connections under the limits are served, and a slot frees up
when a connection closes."""

from __future__ import annotations

import re
import socket

import pytest
from integration_helpers import TIMEOUT, RawClient, get_ok, subscribe, wait_for

from conduit import App, SSEEvent, sleep


def make_app() -> App:
    app = App()
    news = app.channel("news")

    @app.get("/")
    def index(request):
        return "ok"

    @app.get("/events")
    def events(request):
        return news.subscribe(request)

    @app.get("/stream")
    async def stream(request):
        yield SSEEvent("first")
        await sleep(60)

    return app


def connect_from(address, source: str) -> socket.socket:
    """A connection from another loopback address (Linux routes all of 127/8 locally)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(TIMEOUT)
    sock.bind((source, 0))
    sock.connect(address)
    return sock


def refused(client: RawClient) -> bool:
    """The server closed this connection without a byte, even after a request was sent."""
    try:
        client.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
    except (BrokenPipeError, ConnectionResetError):
        return True
    data = client.read_to_eof()
    assert data == b"", f"a refused connection got bytes: {data!r}"
    return True


def refusals(server, reason: str) -> int:
    return server.call(lambda: server.server.refused[reason])


def hold(server, path: str):
    """An open stream on a new connection (a channel subscription or a generator)."""
    if path == "/events":
        return subscribe(server.address, "/events")
    client = RawClient(server.address)
    client.send(b"GET /stream HTTP/1.1\r\nHost: t\r\n\r\n")
    assert client.read_response(head_only=True).status == 200
    assert client.read_chunk()[1] == b"data: first\n\n"
    return client


@pytest.mark.parametrize("path", ["/events", "/stream"])
def test_per_client_cap_refuses_extra_connections_then_frees_slots(serve, server_log, path):
    server = serve(make_app(), heartbeat_seconds=0, max_connections_per_client=3)
    held = [hold(server, path) for _ in range(3)]
    try:
        for _ in range(2):
            with RawClient(server.address) as extra:
                assert refused(extra)
        assert refusals(server, "max_connections_per_client") == 2
        lines = [r.getMessage() for r in server_log.records
                 if "too many connections from this client" in r.getMessage()]
        assert lines and "127.0.0.1:" in lines[0] and "limit 3" in lines[0], lines
        # The held streams were not disturbed.
        assert server.connection_count() == 3
        # One closes: its slot is free again, and only one.
        held.pop().close()
        wait_for(lambda: server.connection_count() == 2, what="the closed one to go")
        with RawClient(server.address) as again:
            again.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            resp = again.read_response()
            assert resp.status == 200 and resp.body == b"ok"
            with RawClient(server.address) as fourth:
                assert refused(fourth)
        assert refusals(server, "max_connections_per_client") == 3
    finally:
        for client in held:
            client.close()
    wait_for(lambda: server.connection_count() == 0)
    assert server.call(lambda: dict(server.server.per_client)) == {}  # nothing leaks
    get_ok(server.address)  # and everyone is served again


def test_per_client_cap_counts_each_address_separately(serve):
    server = serve(make_app(), keepalive_timeout_seconds=30, max_connections_per_client=2)
    first = [RawClient(server.address) for _ in range(2)]
    try:
        wait_for(lambda: server.connection_count() == 2)
        with RawClient(server.address) as extra:
            assert refused(extra)
        # Another client address still gets in, up to its own cap.
        others = [connect_from(server.address, "127.0.0.2") for _ in range(2)]
        try:
            for sock in others:
                sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
                assert sock.recv(65536).startswith(b"HTTP/1.1 200 OK\r\n")
            third = connect_from(server.address, "127.0.0.2")
            with third:
                assert third.recv(100) == b""  # refused: EOF without a byte
        finally:
            for sock in others:
                sock.close()
        assert server.call(lambda: server.server.refused["max_connections_per_client"]) == 2
    finally:
        for client in first:
            client.close()


def test_zero_means_no_per_client_limit(serve):
    server = serve(make_app(), keepalive_timeout_seconds=30, max_connections_per_client=0)
    clients = [RawClient(server.address) for _ in range(20)]
    try:
        for client in clients:
            client.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        for client in clients:
            assert client.read_response().status == 200
        assert server.connection_count() == 20
    finally:
        for client in clients:
            client.close()


def test_global_cap(serve, server_log):
    server = serve(make_app(), keepalive_timeout_seconds=30, max_connections=2,
                   max_connections_per_client=0)
    held = [RawClient(server.address) for _ in range(2)]
    try:
        wait_for(lambda: server.connection_count() == 2)
        with connect_from(server.address, "127.0.0.3") as other:
            assert other.recv(100) == b""  # refused whatever the address
        assert refusals(server, "max_connections") == 1
        assert any("too many connections (limit 2)" in r.getMessage()
                   for r in server_log.records)
        held.pop().close()
        wait_for(lambda: server.connection_count() == 1)
        get_ok(server.address)
    finally:
        for client in held:
            client.close()


def test_refusal_warnings_are_rate_limited(serve, server_log):
    """A burst of refusals: a warning at once, then the others are counted in a later line
    (the next warning or the sweep's summary), not logged one line each."""
    server = serve(make_app(), keepalive_timeout_seconds=30, max_connections_per_client=1)

    def accounted() -> tuple:
        lines = [r.getMessage() for r in server_log.records
                 if "too many connections" in r.getMessage()
                 or "more connections refused" in r.getMessage()]
        total = 0
        for line in lines:
            more = re.search(r"(\d+) more (connections )?refused", line)
            total += (0 if "too many" not in line else 1) + (int(more.group(1)) if more else 0)
        return lines, total

    with RawClient(server.address):
        wait_for(lambda: server.connection_count() == 1)
        for _ in range(5):
            with RawClient(server.address) as extra:
                assert refused(extra)
        wait_for(lambda: accounted()[1] == 5, what="all 5 refusals in the log")
    lines, _ = accounted()
    assert len(lines) < 5, lines
