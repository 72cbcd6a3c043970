"""HTTP/1.x over raw sockets, byte for byte: responses, keep-alive, pipelining, HEAD, errors
from routing, SSE streams (chunked and close-delimited) and Expect: 100-continue."""

from __future__ import annotations

import pytest
from integration_helpers import SSE_HEAD_LINES, RawClient

import conduit
from conduit import App, Response, SSEEvent

HELLO = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n"
         b"Content-Length: 5\r\n\r\nhello")
FRAMES = (b"event: counter\nid: 1\ndata: 1\n\n"
          b"event: counter\nid: 2\ndata: 2\n\n"
          b"event: counter\nid: 3\ndata: 3\n\n")
STREAM_HEAD_11 = b"HTTP/1.1 200 OK\r\n" + SSE_HEAD_LINES + b"Transfer-Encoding: chunked\r\n\r\n"
STREAM_HEAD_10 = b"HTTP/1.1 200 OK\r\n" + SSE_HEAD_LINES + b"Connection: close\r\n\r\n"


def make_app() -> App:
    app = App()

    @app.get("/")
    def index(request):
        return "hello"

    @app.get("/json")
    def json_(request):
        return {"ok": True, "n": 1}

    @app.post("/echo")
    def echo(request):
        return Response(request.body, content_type=request.headers.get("content-type"))

    @app.get("/slow")
    async def slow(request):
        # Completes after the requests pipelined behind it could have: order must hold.
        await conduit.sleep(0.05)
        await conduit.to_thread(lambda: None)
        return "slow"

    @app.get("/only-get")
    def only_get(request):
        return "x"

    @app.get("/count")
    def count(request):
        for i in range(1, 4):
            yield SSEEvent(i, event="counter", id=i)

    @app.get("/async-count")
    async def async_count(request):
        for i in range(1, 4):
            yield SSEEvent(i, event="counter", id=i)
            await conduit.sleep(0)

    return app


@pytest.fixture
def server(serve):
    return serve(make_app())


def test_get_response_exact_bytes(server):
    with RawClient(server.address) as c:
        c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        assert c.read_response().raw == HELLO
        assert c.nothing_pending()  # keep-alive: the server leaves the connection open


def test_json_response_exact_bytes(server):
    with RawClient(server.address) as c:
        c.send(b"GET /json HTTP/1.1\r\nHost: t\r\n\r\n")
        body = b'{"ok":true,"n":1}'
        assert c.read_response().raw == (
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body))


def test_keep_alive_two_requests_on_one_connection(server):
    with RawClient(server.address) as c:
        c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        assert c.read_response().raw == HELLO
        c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Type: text/plain\r\n"
               b"Content-Length: 3\r\n\r\nabc")
        assert c.read_response().raw == (
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nabc")
        assert c.nothing_pending()


def test_connection_close_on_http11(server):
    with RawClient(server.address) as c:
        c.send(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        assert c.read_to_eof() == (
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n"
            b"Content-Length: 5\r\nConnection: close\r\n\r\nhello")


def test_pipelining_three_requests_in_one_send_answered_in_order(server):
    with RawClient(server.address) as c:
        c.send(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n"
               b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Type: text/plain\r\n"
               b"Content-Length: 6\r\n\r\nsecond"
               b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        first, second, third = c.read_response(), c.read_response(), c.read_response()
        assert first.body == b"slow"
        assert second.raw == (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                              b"Content-Length: 6\r\n\r\nsecond")
        assert third.raw == HELLO
        assert c.nothing_pending()


def test_chunked_request_body(server):
    with RawClient(server.address) as c:
        c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Type: text/plain\r\n"
               b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n4;ext=1\r\ndefg\r\n0\r\n\r\n")
        resp = c.read_response()
        assert resp.raw == (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                            b"Content-Length: 7\r\n\r\nabcdefg")


def test_http10_request_closes_after_response(server):
    with RawClient(server.address) as c:
        c.send(b"GET / HTTP/1.0\r\n\r\n")
        assert c.read_to_eof() == (
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n"
            b"Content-Length: 5\r\nConnection: close\r\n\r\nhello")


def test_http10_keep_alive(server):
    ka_hello = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n"
                b"Content-Length: 5\r\nConnection: keep-alive\r\n\r\nhello")
    with RawClient(server.address) as c:
        c.send(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        assert c.read_response().raw == ka_hello
        assert c.nothing_pending()
        c.send(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")
        assert c.read_response().raw == ka_hello
        c.send(b"GET / HTTP/1.0\r\n\r\n")  # no keep-alive this time: close after it
        assert c.read_to_eof().endswith(b"Connection: close\r\n\r\nhello")


def test_head_has_headers_and_no_body(server):
    with RawClient(server.address) as c:
        c.send(b"HEAD / HTTP/1.1\r\nHost: t\r\n\r\n")
        head = c.read_response(head_only=True)
        assert head.raw == HELLO[:-len(b"hello")]  # same head as GET, Content-Length: 5
        # No body was sent: the next response starts right after the head.
        c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        assert c.read_response().raw == HELLO


def test_404_is_json(server):
    with RawClient(server.address) as c:
        c.send(b"GET /nope HTTP/1.1\r\nHost: t\r\n\r\n")
        body = b'{"error":"not found"}'
        assert c.read_response().raw == (
            b"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")  # the connection stays usable
        assert c.read_response().raw == HELLO


def test_405_has_allow_header(server):
    with RawClient(server.address) as c:
        c.send(b"DELETE /only-get HTTP/1.1\r\nHost: t\r\n\r\n")
        body = b'{"error":"method DELETE not allowed"}'
        assert c.read_response().raw == (
            b"HTTP/1.1 405 Method Not Allowed\r\nContent-Type: application/json\r\n"
            b"Allow: GET, HEAD, OPTIONS\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))


@pytest.mark.parametrize("path", ["/count", "/async-count"])
def test_stream_http11_is_chunked_then_connection_serves_another_request(server, path):
    with RawClient(server.address) as c:
        c.send(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        resp = c.read_response()
        assert resp.raw.startswith(STREAM_HEAD_11)
        assert resp.body == FRAMES
        # frames sit whole inside chunks, and the stream ends with the last chunk
        assert resp.chunks and all(chunk.endswith(b"\n\n") for chunk in resp.chunks)
        assert resp.raw.endswith(b"\r\n0\r\n\r\n")
        assert c.nothing_pending()
        c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        assert c.read_response().raw == HELLO


@pytest.mark.parametrize("path", ["/count", "/async-count"])
def test_stream_http10_is_close_delimited(server, path):
    with RawClient(server.address) as c:
        c.send(f"GET {path} HTTP/1.0\r\n\r\n".encode())
        assert c.read_to_eof() == STREAM_HEAD_10 + FRAMES


def test_request_pipelined_behind_a_stream(server):
    with RawClient(server.address) as c:
        c.send(b"GET /async-count HTTP/1.1\r\nHost: t\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n")
        assert c.read_response().body == FRAMES
        assert c.read_response().raw == HELLO


def test_too_many_connections_are_closed(serve):
    server = serve(make_app(), max_connections=1)
    with RawClient(server.address) as first:
        first.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        assert first.read_response().raw == HELLO
        with RawClient(server.address) as second:
            assert second.read_to_eof() == b""  # closed without a response
        first.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        assert first.read_response().raw == HELLO


def test_stream_http10_keep_alive_is_still_close_delimited(server):
    with RawClient(server.address) as c:
        c.send(b"GET /count HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        assert c.read_to_eof() == STREAM_HEAD_10 + FRAMES


def test_head_of_a_stream_sends_no_body(server):
    """HEAD on a stream route: the head only. Bytes after it would be read by the client as
    the start of the next response."""
    with RawClient(server.address) as c:
        c.send(b"HEAD /count HTTP/1.1\r\nHost: t\r\n\r\n")
        assert c.read_response(head_only=True).raw == STREAM_HEAD_11
        c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        assert c.read_response().raw == HELLO


def test_expect_100_continue(server):
    with RawClient(server.address) as c:
        c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Type: text/plain\r\n"
               b"Content-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        assert c.read_until(b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
        assert c.nothing_pending()  # nothing else until the body arrives
        c.send(b"hello")
        assert c.read_response().raw == (
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello")


def test_absolute_form_target(server):
    with RawClient(server.address) as c:
        c.send(b"GET http://t/ HTTP/1.1\r\nHost: t\r\n\r\n")
        assert c.read_response().raw == HELLO
