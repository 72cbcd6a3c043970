"""The housekeeping sweep: heartbeats on idle streams, 408 for slow requests, idle
keep-alive connections closed. (Short timeouts; every wait is on the socket.)"""

from __future__ import annotations

import pytest
from integration_helpers import RawClient, wait_for

import conduit
from conduit import App, SSEEvent

REQUEST_TIMEOUT_408 = (b"HTTP/1.1 408 Request Timeout\r\n"
                       b"Content-Type: text/plain; charset=utf-8\r\n"
                       b"Content-Length: 16\r\nConnection: close\r\n\r\nrequest timeout\n")
PING_CHUNK = b"8\r\n: ping\n\n\r\n"


def make_app() -> App:
    app = App()

    @app.get("/")
    def index(request):
        return "ok"

    @app.get("/idle-stream")
    async def idle_stream(request):
        yield SSEEvent("first")
        await conduit.sleep(60)

    return app


def test_idle_stream_gets_heartbeats_and_is_not_timed_out(serve):
    server = serve(make_app(), heartbeat_seconds=1, keepalive_timeout_seconds=1,
                   request_timeout_seconds=1)
    with RawClient(server.address) as c:
        c.send(b"GET /idle-stream HTTP/1.1\r\nHost: t\r\n\r\n")
        assert c.read_response(head_only=True).status == 200
        assert c.read_chunk()[1] == b"data: first\n\n"
        # Two pings: the stream outlives several sweeps and both short timeouts.
        raw, payload = c.read_chunk()
        assert (raw, payload) == (PING_CHUNK, b": ping\n\n")
        assert c.read_chunk()[0] == PING_CHUNK
    wait_for(lambda: server.connection_count() == 0)


def test_heartbeat_disabled(serve):
    server = serve(make_app(), heartbeat_seconds=0)
    with RawClient(server.address) as c:
        c.send(b"GET /idle-stream HTTP/1.1\r\nHost: t\r\n\r\n")
        c.read_response(head_only=True)
        c.read_chunk()
        # Two sweeps later, still nothing was written.
        server.wait_sweeps(2)
        assert c.nothing_pending()


def test_half_a_head_gets_408_and_close(serve, server_log):
    server = serve(make_app(), request_timeout_seconds=1, keepalive_timeout_seconds=30)
    with RawClient(server.address) as c:
        c.send(b"GET / HTTP/1.1\r\nHost: t\r\n")  # no final empty line
        assert c.read_to_eof() == REQUEST_TIMEOUT_408
    assert server.call(lambda: server.server.errors_by_status.get(408)) == 1
    assert any("request not received" in r.getMessage() for r in server_log.records)
    wait_for(lambda: server.connection_count() == 0)


def test_half_a_body_gets_408(serve):
    server = serve(make_app(), request_timeout_seconds=1, keepalive_timeout_seconds=30)
    with RawClient(server.address) as c:
        c.send(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc")
        assert c.read_to_eof() == REQUEST_TIMEOUT_408


@pytest.mark.parametrize("split", ["one-send", "two-sends"])
def test_partial_request_after_a_complete_one_gets_408(serve, split):
    """A partial second request on a keep-alive connection is also subject to the request
    timeout (else a client can hold a connection past it by trickling bytes)."""
    server = serve(make_app(), request_timeout_seconds=1, keepalive_timeout_seconds=30)
    with RawClient(server.address, timeout=4) as c:
        first = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"
        partial = b"GET / HTTP/1.1\r\nHost: t\r\n"
        if split == "one-send":
            c.send(first + partial)
            assert c.read_response().status == 200
        else:
            c.send(first)
            assert c.read_response().status == 200
            c.send(partial)
        try:
            data = c.read_to_eof()
        except TimeoutError:
            data = b"<nothing within 4 s>"
        assert data == REQUEST_TIMEOUT_408


def test_idle_keep_alive_connection_is_closed(serve):
    server = serve(make_app(), keepalive_timeout_seconds=1)
    with RawClient(server.address) as c:
        c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        assert c.read_response().status == 200
        assert c.closed_by_peer()  # silently: no 408 for an idle connection
    wait_for(lambda: server.connection_count() == 0)


def test_connection_idle_from_the_start_is_closed(serve):
    server = serve(make_app(), keepalive_timeout_seconds=1)
    with RawClient(server.address) as c:
        assert c.closed_by_peer()


def test_slowloris_is_closed_while_a_normal_client_is_served(serve, server_log):
    """A client that trickles its head a byte at a time never finishes a request: the
    request timeout (from its first byte, not its last) closes it with a 408, while other
    clients are served at once."""
    server = serve(make_app(), request_timeout_seconds=2, keepalive_timeout_seconds=30)
    with RawClient(server.address) as slow:
        slow.send(b"GET / HTTP/1.1\r\nHost: t\r\nX-Slow: ")
        # A normal client on another connection, while the slowloris is still open.
        with RawClient(server.address) as normal:
            normal.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            assert normal.read_response().body == b"ok"
        assert slow.nothing_pending()
        trickled = 0
        closed = False
        for _ in range(200):  # one byte, then wait up to 0.25 s for the server's answer
            try:
                slow.send(b"a")
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            trickled += 1
            if not slow.nothing_pending(wait=0.25):
                break
        assert trickled > 1, "the server answered before the client trickled anything"
        if not closed:
            assert slow.read_to_eof() == REQUEST_TIMEOUT_408
    assert any("request not received" in r.getMessage() for r in server_log.records)
    wait_for(lambda: server.connection_count() == 0)
