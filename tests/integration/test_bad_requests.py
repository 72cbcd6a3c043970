"""Malformed requests over raw sockets: the exact status, Connection: close, the connection
closed by the server, a warning naming the client, and everyone else still served."""

from __future__ import annotations

import logging

import pytest
from integration_helpers import RawClient, get_ok

from conduit import App, Response

HOST = b"Host: t\r\n"

CASES = {
    "content-length-with-transfer-encoding": (
        b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n"
        b"Transfer-Encoding: chunked\r\n\r\nhello",
        b"HTTP/1.1 400 Bad Request"),
    "differing-content-lengths": (
        b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
        b"HTTP/1.1 400 Bad Request"),
    "bad-chunk-size": (
        b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"zz\r\nhello\r\n0\r\n\r\n",
        b"HTTP/1.1 400 Bad Request"),
    "obs-fold": (
        b"GET / HTTP/1.1\r\nHost: t\r\nX-Folded: one\r\n  two\r\n\r\n",
        b"HTTP/1.1 400 Bad Request"),
    "bare-lf": (
        b"GET / HTTP/1.1\nHost: t\n\n",
        b"HTTP/1.1 400 Bad Request"),
    "bare-cr": (
        b"GET / HTTP/1.1\r\nHost: t\rX: y\r\n\r\n",
        b"HTTP/1.1 400 Bad Request"),
    "whitespace-before-colon": (
        b"GET / HTTP/1.1\r\nHost : t\r\n\r\n",
        b"HTTP/1.1 400 Bad Request"),
    "missing-host": (
        b"GET / HTTP/1.1\r\nX: y\r\n\r\n",
        b"HTTP/1.1 400 Bad Request"),
    "oversized-request-line": (
        b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: t\r\n\r\n",
        b"HTTP/1.1 414 URI Too Long"),
    "too-many-headers": (
        b"GET / HTTP/1.1\r\nHost: t\r\n"
        + b"".join(b"X-H%d: v\r\n" % i for i in range(2000)) + b"\r\n",
        b"HTTP/1.1 431 Request Header Fields Too Large"),
    "body-over-limit": (  # max_body_bytes=16 below; refused from the declared length
        b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 17\r\n\r\n",
        b"HTTP/1.1 413 Content Too Large"),
    "chunked-body-over-limit": (
        b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n20\r\n",
        b"HTTP/1.1 413 Content Too Large"),
    "unknown-transfer-coding": (
        b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
        b"HTTP/1.1 501 Not Implemented"),
    "unknown-expectation": (
        b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nExpect: 200-ok\r\n\r\n",
        b"HTTP/1.1 417 Expectation Failed"),
    "http-2.0": (
        b"GET / HTTP/2.0\r\nHost: t\r\n\r\n",
        b"HTTP/1.1 505 HTTP Version Not Supported"),
}


@pytest.fixture
def server(serve):
    app = App()

    @app.get("/")
    def index(request):
        return "ok"

    @app.post("/echo")
    def echo(request):
        return Response(request.body)

    return serve(app, max_body_bytes=16)


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_request_is_answered_logged_and_closed(server, server_log, case):
    data, status_line = CASES[case]
    status = int(status_line.split()[1])
    with RawClient(server.address) as other:
        # Another client, connected before the bad one, is served before and after it.
        other.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        assert other.read_response().status == 200

        with RawClient(server.address) as bad:
            port = bad.local_port
            bad.send(data)
            resp = bad.read_response()
            assert resp.status_line == status_line
            assert resp.header(b"Connection") == b"close"
            assert resp.header(b"Content-Type") == b"text/plain; charset=utf-8"
            assert resp.body.endswith(b"\n") and len(resp.body) > 1
            assert bad.closed_by_peer()

        warnings = [r for r in server_log.records
                    if r.name == "conduit.server" and r.levelno == logging.WARNING]
        assert any(f"127.0.0.1:{port}" in r.getMessage()
                   and f"answered {status}" in r.getMessage() for r in warnings), \
            [r.getMessage() for r in warnings]

        other.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        assert other.read_response().status == 200
    get_ok(server.address)  # and a new client too
    assert server.call(lambda: server.server.errors_by_status.get(status)) == 1


def test_bad_request_after_a_good_one_on_the_same_connection(server, server_log):
    """Pipelined: the good request is answered, then the bad one, then the close."""
    with RawClient(server.address) as c:
        c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\nGET / HTTP/7.0\r\nHost: t\r\n\r\n")
        assert c.read_response().status == 200
        resp = c.read_response()
        assert resp.status_line == b"HTTP/1.1 505 HTTP Version Not Supported"
        assert c.closed_by_peer()


def test_eof_in_the_middle_of_a_request_is_a_400(server, server_log):
    with RawClient(server.address) as c:
        port = c.local_port
        c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc")
        c.sock.shutdown(1)  # SHUT_WR: the client is done sending
        resp = c.read_response()
        assert resp.status_line == b"HTTP/1.1 400 Bad Request"
        assert c.closed_by_peer()
    assert any(f"127.0.0.1:{port}" in r.getMessage() for r in server_log.records)
    get_ok(server.address)
