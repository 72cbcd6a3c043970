"""SSE streams through real SSE clients: httpx-sse and curl -N."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess

import httpx
import pytest
from httpx_sse import connect_sse
from integration_helpers import REPO_ROOT, TIMEOUT, request

import conduit
from conduit import App, SSEEvent, StreamResponse

UNICODE = "héllo wörld ✓ 日本語 🚀"

# What the client should see for the items below: (event, id, data, retry)
EXPECTED = [
    ("greeting", "1", "hi", None),
    ("message", "2", "line one\nline two\n\nline four", None),
    ("message", "", "crlf\nand\ncr", None),
    ("message", "u", UNICODE, 2500),
    ("message", "", '{"n":1,"text":"ü","nested":[1,2]}', None),
    ("message", "", "plain str", None),
    ("raw", "r1", "pre-formatted bytes", None),
    ("message", "", " leading space", None),
    ("message", "", "", None),
]


def items():
    yield SSEEvent("hi", event="greeting", id=1)
    yield SSEEvent("line one\nline two\n\nline four", id="2")
    yield SSEEvent("crlf\r\nand\rcr")
    yield SSEEvent(UNICODE, id="u", retry=2500)
    yield {"n": 1, "text": "ü", "nested": [1, 2]}
    yield "plain str"
    yield b"event: raw\nid: r1\ndata: pre-formatted bytes\n\n"
    yield " leading space"
    yield ""


# Every shape of event the compiled pump writes straight into its batch (SSEEvent._emit),
# and some it does not (too big for a long long, a line end, retry).
SHAPES = [
    ((0,), {}),
    ((-1,), {"event": "e", "id": -5}),
    ((2**63 - 1,), {"event": "counter", "id": -(2**63)}),
    ((2**63,), {"id": 2**63}),
    ((7,), {"event": "", "id": ""}),
    (("café ✓",), {"event": "naïve", "id": "ид"}),
    (("a\nb",), {"event": "counter"}),
    ((5,), {"id": 3, "retry": 0}),
] + [((i,), {"event": "counter", "id": i}) for i in range(1, 3000)]


def make_app() -> App:
    app = App()

    @app.get("/sync")
    def sync_stream(request):
        yield from items()

    @app.get("/async")
    async def async_stream(request):
        for item in items():
            yield item
            await conduit.sleep(0.001)

    @app.get("/async-thread")
    async def async_thread_stream(request):
        async for item in conduit.iterate_in_thread(items()):
            yield item

    @app.get("/stream-response")
    def stream_response(request):
        return StreamResponse(items(), headers=[("X-Extra", "1")])

    @app.get("/last-id")
    def last_id(request):
        yield SSEEvent(repr(request.last_event_id), event="resume")

    @app.get("/shapes")
    def shapes(request):
        for args, kwargs in SHAPES:
            yield SSEEvent(*args, **kwargs)
        framed = SSEEvent(42, event="counter", id=42)
        framed.encode()
        yield framed

    @app.get("/shapes-async")
    async def shapes_async(request):
        for args, kwargs in SHAPES:
            yield SSEEvent(*args, **kwargs)
            await conduit.sleep(0)

    @app.get("/count")
    def count(request):
        for i in range(1, 11):
            yield SSEEvent(i, event="counter", id=i)

    return app


@pytest.fixture
def server(serve):
    return serve(make_app())


def read_events(url, headers=None) -> tuple:
    with httpx.Client(timeout=TIMEOUT) as client:
        with connect_sse(client, "GET", url, headers=dict(headers or {})) as source:
            response = source.response
            events = [(e.event, e.id, e.data, e.retry) for e in source.iter_sse()]
    return response, events


@pytest.mark.parametrize("path", ["/sync", "/async", "/async-thread", "/stream-response"])
def test_stream_items_reach_an_sse_client(server, path):
    response, events = read_events(server.url + path)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["x-accel-buffering"] == "no"
    assert response.headers["transfer-encoding"] == "chunked"
    if path == "/stream-response":
        assert response.headers["x-extra"] == "1"
    # httpx-sse keeps the last id seen; compare ids only where the server set one
    assert len(events) == len(EXPECTED), events
    got = [(ev, id_ if want_id else "", data, retry)
           for (ev, id_, data, retry), (_, want_id, _, _) in zip(events, EXPECTED, strict=True)]
    assert got == EXPECTED


def test_last_event_id_header(server):
    _, events = read_events(server.url + "/last-id", headers={"Last-Event-ID": "42"})
    assert [e[2] for e in events] == ["'42'"]


def test_last_event_id_query(server):
    _, events = read_events(server.url + "/last-id?last_event_id=7")
    assert [e[2] for e in events] == ["'7'"]


def test_last_event_id_header_wins_over_query(server):
    _, events = read_events(server.url + "/last-id?last_event_id=7",
                            headers={"Last-Event-ID": "9"})
    assert [e[2] for e in events] == ["'9'"]


def test_no_last_event_id(server):
    _, events = read_events(server.url + "/last-id")
    assert [e[2] for e in events] == ["None"]


def test_example_count_resumes_after_last_event_id(serve):
    spec = importlib.util.spec_from_file_location(
        "sse_simple_server_example", f"{REPO_ROOT}/examples/sse_simple_server.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    server = serve(module.app)
    _, events = read_events(server.url + "/count")
    assert [(e[0], e[1], e[2]) for e in events] == [
        ("counter", str(i), str(i)) for i in range(1, 11)]
    _, events = read_events(server.url + "/count", headers={"Last-Event-ID": "7"})
    assert [e[2] for e in events] == ["8", "9", "10"]


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_n_exact_output(server):
    result = subprocess.run(
        ["curl", "-sS", "-N", "--max-time", str(int(TIMEOUT)), server.url + "/count"],
        capture_output=True, timeout=TIMEOUT + 5,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode() == "".join(
        f"event: counter\nid: {i}\ndata: {i}\n\n" for i in range(1, 11))


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_n_http10(server):
    result = subprocess.run(
        ["curl", "-sS", "-N", "--http1.0", "-D", "-", "--max-time", str(int(TIMEOUT)),
         server.url + "/count"],
        capture_output=True, timeout=TIMEOUT + 5,
    )
    assert result.returncode == 0, result.stderr
    head, _, body = result.stdout.decode().partition("\r\n\r\n")
    assert "Transfer-Encoding" not in head
    assert "Connection: close" in head
    assert body == "".join(f"event: counter\nid: {i}\ndata: {i}\n\n" for i in range(1, 11))


@pytest.mark.parametrize("path", ["/shapes", "/shapes-async"])
def test_events_written_by_the_pump_are_their_frames(server, path):
    from conduit.http import _sse_py

    resp = request(server.address, f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
    assert resp.status == 200
    want = b"".join(_sse_py.SSEEvent(*a, **k).encode() for a, k in SHAPES)
    if path == "/shapes":
        want += b"event: counter\nid: 42\ndata: 42\n\n"
    assert resp.body == want
