"""ASGI applications (FastAPI, Starlette, sse-starlette) served by conduit, over real
sockets: httpx, raw sockets and ``python -m conduit run main:app``.

What is checked is what conduit.server.asgi's theory of operation promises: the scope,
lifespan (state, startup failure = exit 3, apps without lifespan), streamed responses
(chunked, Content-Length, HTTP/1.0), backpressure-free correctness of StreamingResponse,
FileResponse and BackgroundTasks, sse-starlette's EventSourceResponse, http.disconnect
when the client goes away, and errors (500 before the head, a cut after it).
"""

from __future__ import annotations

import asyncio
import threading

import httpx
import pytest
from integration_helpers import TIMEOUT, RawClient, run_cli, wait_for

from conduit.server.asgi import ASGIApp, is_asgi_app

fastapi = pytest.importorskip("fastapi")
starlette_responses = pytest.importorskip("starlette.responses")
sse_starlette = pytest.importorskip("sse_starlette")


def serve_asgi(serve, asgi_app, **settings):
    return serve(ASGIApp(asgi_app), **settings)


# -- recognising an ASGI app ---------------------------------------------------------------
def test_is_asgi_app():
    async def app(scope, receive, send):
        pass

    class Instance:
        async def __call__(self, scope, receive, send):
            pass

    async def two(scope, receive):
        pass

    def sync(scope, receive, send):
        pass

    assert is_asgi_app(app) and is_asgi_app(Instance()) and is_asgi_app(fastapi.FastAPI())
    assert not is_asgi_app(two) and not is_asgi_app(sync) and not is_asgi_app(Instance)
    from conduit import App

    assert not is_asgi_app(App())
    with pytest.raises(TypeError, match="not an ASGI 3 application"):
        ASGIApp(sync)


# -- the scope and the request body --------------------------------------------------------
def test_scope_and_body_reach_the_app(serve):
    seen = {}

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            message = await receive()
            assert message["type"] == "lifespan.startup"
            scope["state"]["answer"] = 42
            await send({"type": "lifespan.startup.complete"})
            await receive()
            await send({"type": "lifespan.shutdown.complete"})
            return
        seen["scope"] = scope
        seen["body"] = await receive()
        await send({"type": "http.response.start", "status": 201,
                    "headers": [(b"content-type", b"text/plain"), (b"x-one", b"1")]})
        await send({"type": "http.response.body", "body": b"made"})

    server = serve_asgi(serve, app)
    response = httpx.post(server.url + "/a%20b/c?x=1&y=%20", content=b"payload",
                          headers={"X-Custom": "Yes"}, timeout=TIMEOUT)
    assert response.status_code == 201 and response.text == "made"
    assert response.headers["content-length"] == "4" and response.headers["x-one"] == "1"
    scope = seen["scope"]
    assert scope["type"] == "http" and scope["asgi"]["version"] == "3.0"
    assert scope["method"] == "POST" and scope["http_version"] == "1.1"
    assert scope["scheme"] == "http" and scope["root_path"] == ""
    assert scope["path"] == "/a b/c" and scope["raw_path"] == b"/a%20b/c"
    assert scope["query_string"] == b"x=1&y=%20"
    assert (b"x-custom", b"Yes") in scope["headers"]
    assert scope["client"][0] == "127.0.0.1" and scope["server"] == server.address
    assert scope["state"] == {"answer": 42}
    assert seen["body"] == {"type": "http.request", "body": b"payload", "more_body": False}


def test_fastapi_app_end_to_end(serve):
    app = fastapi.FastAPI()

    @app.get("/items/{item_id}")
    async def item(item_id: int, q: str | None = None):
        return {"item_id": item_id, "q": q}

    @app.post("/echo")
    async def echo(body: dict):
        return body

    server = serve_asgi(serve, app)
    with httpx.Client(base_url=server.url, timeout=TIMEOUT) as client:
        assert client.get("/items/5?q=x").json() == {"item_id": 5, "q": "x"}
        bad = client.get("/items/notanint")
        assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["path", "item_id"]
        assert client.post("/echo", json={"a": [1, 2]}).json() == {"a": [1, 2]}
        assert client.get("/nope").status_code == 404
        assert client.get("/openapi.json").json()["paths"]["/items/{item_id}"]


# -- lifespan ------------------------------------------------------------------------------
def test_lifespan_state_startup_and_shutdown(tmp_path):
    app_file = tmp_path / "main.py"
    marker = tmp_path / "shutdown.txt"
    app_file.write_text(f'''
from contextlib import asynccontextmanager
from fastapi import FastAPI, Request

@asynccontextmanager
async def lifespan(app):
    yield {{"greeting": "hello"}}
    open({str(marker)!r}, "w").write("shut down")

app = FastAPI(lifespan=lifespan)

@app.get("/")
async def root(request: Request):
    return {{"greeting": request.state.greeting}}
''')
    from integration_helpers import ConduitProcess

    proc = ConduitProcess(f"{app_file}:app", cwd=str(tmp_path))
    try:
        host, port = proc.wait_started()
        assert httpx.get(f"http://{host}:{port}/", timeout=TIMEOUT).json() == \
            {"greeting": "hello"}
        proc.signal(15)
        assert proc.wait() == 0, proc.stderr()
    finally:
        proc.kill()
    assert marker.read_text() == "shut down"


def test_lifespan_startup_failure_exits_3(tmp_path):
    app_file = tmp_path / "main.py"
    app_file.write_text('''
from contextlib import asynccontextmanager
from fastapi import FastAPI

@asynccontextmanager
async def lifespan(app):
    raise RuntimeError("no database")
    yield

app = FastAPI(lifespan=lifespan)
''')
    result = run_cli("run", f"{app_file}:app", "--port", "0", cwd=str(tmp_path))
    assert result.returncode == 3, result.stderr
    assert "no database" in result.stderr


def test_an_app_without_lifespan_still_serves(serve, caplog):
    async def app(scope, receive, send):
        if scope["type"] != "http":
            raise ValueError(f"only http, not {scope['type']}")
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"plain"})

    with caplog.at_level("INFO", logger="conduit.server"):
        server = serve_asgi(serve, app)
        assert httpx.get(server.url, timeout=TIMEOUT).text == "plain"
    assert "lifespan' protocol appears unsupported" in caplog.text


# -- responses -----------------------------------------------------------------------------
def test_streaming_response_is_chunked_and_keeps_the_connection(serve):
    app = fastapi.FastAPI()

    @app.get("/stream")
    async def stream():
        async def parts():
            for i in range(3):
                yield f"part {i}\n"
                await asyncio.sleep(0.01)

        return starlette_responses.StreamingResponse(parts(), media_type="text/plain")

    server = serve_asgi(serve, app)
    with RawClient(server.address) as client:
        for _ in range(2):  # keep-alive: two responses on one connection
            client.send(b"GET /stream HTTP/1.1\r\nHost: t\r\n\r\n")
            response = client.read_response()
            assert response.status == 200
            assert response.header(b"Transfer-Encoding") == b"chunked"
            assert response.body == b"part 0\npart 1\npart 2\n"


def test_http_10_and_head(serve):
    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"one ", "more_body": True})
        await send({"type": "http.response.body", "body": b"two"})

    server = serve_asgi(serve, app)
    with RawClient(server.address) as client:  # HTTP/1.0: no chunking, the close ends it
        client.send(b"GET / HTTP/1.0\r\n\r\n")
        raw = client.read_to_eof()
    assert raw.startswith(b"HTTP/1.1 200 OK\r\n") and raw.endswith(b"\r\n\r\none two")
    assert b"chunked" not in raw and b"Connection: close" in raw
    with RawClient(server.address) as client:
        client.send(b"HEAD / HTTP/1.1\r\nHost: t\r\n\r\n")
        response = client.read_response(head_only=True)
        assert response.status == 200
        client.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")  # nothing of the body came before
        assert client.read_response().body == b"one two"


def test_file_response_and_background_tasks(serve, tmp_path):
    done = threading.Event()
    path = tmp_path / "data.bin"
    path.write_bytes(bytes(range(256)) * 1000)
    app = fastapi.FastAPI()

    @app.get("/file")
    async def file():
        return starlette_responses.FileResponse(path)

    @app.post("/job")
    async def job(background: fastapi.BackgroundTasks):
        background.add_task(done.set)
        return {"queued": True}

    server = serve_asgi(serve, app)
    with httpx.Client(base_url=server.url, timeout=TIMEOUT) as client:
        response = client.get("/file")
        assert response.content == path.read_bytes()
        assert response.headers["content-length"] == str(256 * 1000)
        assert client.post("/job").json() == {"queued": True}
    assert done.wait(TIMEOUT)


def test_sse_starlette_streams_and_sees_the_disconnect(serve):
    """An endless EventSourceResponse: the client reads two events and leaves; the app's
    generator is told (http.disconnect) and its finally runs."""
    finished = threading.Event()
    app = fastapi.FastAPI()

    @app.get("/sse")
    async def sse():
        async def events():
            try:
                i = 0
                while True:
                    yield {"event": "tick", "data": str(i)}
                    i += 1
                    await asyncio.sleep(0.01)
            finally:
                finished.set()

        return sse_starlette.EventSourceResponse(events(), ping=3600)

    server = serve_asgi(serve, app)
    with httpx.Client(timeout=TIMEOUT) as client:
        with client.stream("GET", server.url + "/sse") as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            data = []
            for line in response.iter_lines():
                if line.startswith("data: "):
                    data.append(line[6:])
                    if len(data) == 2:
                        break
    assert data == ["0", "1"]
    assert finished.wait(TIMEOUT)
    wait_for(lambda: server.connection_count() == 0, what="the connection released")


def test_disconnect_is_delivered_to_receive(serve):
    got = {}
    waiting = threading.Event()
    told = threading.Event()

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        await receive()  # the body
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"start", "more_body": True})
        waiting.set()
        got["message"] = await receive()  # returns when the client goes away
        told.set()
        await send({"type": "http.response.body", "body": b"dropped"})  # no error

    server = serve_asgi(serve, app)
    client = RawClient(server.address)
    client.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
    assert waiting.wait(TIMEOUT)
    client.reset()
    assert told.wait(TIMEOUT)
    assert got["message"] == {"type": "http.disconnect"}
    wait_for(lambda: server.connection_count() == 0, what="the connection released")


# -- errors --------------------------------------------------------------------------------
def test_app_errors(serve, caplog):
    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        path = scope["path"]
        if path == "/raise":
            raise KeyError("before anything")
        if path == "/nothing":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"half", "more_body": True})
        raise KeyError("mid-response")

    server = serve_asgi(serve, app)
    with caplog.at_level("ERROR", logger="conduit.server"):
        with httpx.Client(base_url=server.url, timeout=TIMEOUT) as client:
            assert client.get("/raise").status_code == 500
            assert client.get("/nothing").status_code == 500
        with RawClient(server.address) as raw:
            raw.send(b"GET /mid HTTP/1.1\r\nHost: t\r\n\r\n")
            data = raw.read_to_eof()  # cut: no last chunk
        assert data.endswith(b"4\r\nhalf\r\n")
    assert "before anything" in caplog.text and "mid-response" in caplog.text
    assert "returned without a complete response" in caplog.text


def test_conduit_limits_apply_before_the_app(serve):
    calls = []

    async def app(scope, receive, send):
        if scope["type"] == "http":
            calls.append(scope["path"])
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"ok"})

    server = serve_asgi(serve, app, max_header_bytes=1024)
    with RawClient(server.address) as client:
        client.send(b"GET /big HTTP/1.1\r\nHost: t\r\nX-Big: " + b"x" * 2000 + b"\r\n\r\n")
        assert client.read_response().status == 431
    assert httpx.get(server.url + "/fine", timeout=TIMEOUT).text == "ok"
    assert calls == ["/fine"]


def test_websocket_upgrade_is_plain_http(serve):
    scopes = []

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            return
        scopes.append(scope["type"])
        await send({"type": "http.response.start", "status": 400, "headers": []})
        await send({"type": "http.response.body", "body": b"no websockets here"})

    server = serve_asgi(serve, app)
    with RawClient(server.address) as client:
        client.send(b"GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\n"
                    b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                    b"Sec-WebSocket-Version: 13\r\n\r\n")
        response = client.read_response()
    assert response.status == 400 and scopes == ["http"]


def test_a_header_that_would_split_the_response_is_refused(serve, caplog):
    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"x-evil", b"a\r\nSet-Cookie: stolen=1")]})
        await send({"type": "http.response.body", "body": b"never"})

    server = serve_asgi(serve, app)
    with caplog.at_level("ERROR", logger="conduit.server"):
        response = httpx.get(server.url, timeout=TIMEOUT)
    assert response.status_code == 500 and "set-cookie" not in response.headers
    assert "invalid response header" in caplog.text


# -- App.mount: conduit's routes first, the ASGI app for the rest ----------------------------
def test_mount_routes_conduit_first_then_the_asgi_app(serve):
    from conduit import App

    api = fastapi.FastAPI()
    seen = {}

    @api.get("/items/{n}")  # relative to the mount, as under Starlette's Mount
    async def item(n: int, request: fastapi.Request):
        seen["root_path"] = request.scope["root_path"]
        seen["path"] = request.scope["path"]
        return {"n": n}

    @api.put("/items/{n}")  # a method no conduit route has
    async def put_item(n: int):
        return {"put": n}

    @api.get("/shared")
    async def shared():
        return "from fastapi"

    root = fastapi.FastAPI()

    @root.get("/shared")
    async def root_shared():
        return "from the root app"

    app = App()
    news = app.channel("news")

    @app.get("/shared")
    def conduit_shared(request):
        return "from conduit"

    @app.get("/events")
    def events(request):
        return news.subscribe(request)

    @api.post("/publish")
    async def publish(body: dict):  # the bridge: a FastAPI route publishes to a channel
        return {"id": news.publish(body, event="news")}

    app.mount("/api", api)
    app.mount("", root)  # the longest prefix wins, whatever the order of the mounts
    with pytest.raises(ValueError, match="already mounted"):
        app.mount("/api/", api)
    server = serve(app)
    with httpx.Client(base_url=server.url, timeout=TIMEOUT) as client:
        assert client.get("/api/items/3").json() == {"n": 3}
        assert seen == {"root_path": "/api", "path": "/api/items/3"}
        assert client.put("/api/items/4").json() == {"put": 4}
        assert client.get("/shared").text == "from conduit"  # ours first
        assert client.get("/api/shared").json() == "from fastapi"
        assert client.get("/api/nowhere").json() == {"detail": "Not Found"}  # FastAPI's
        assert client.get("/elsewhere").json() == {"detail": "Not Found"}  # the root app's
        with client.stream("GET", "/events") as stream:
            lines = stream.iter_lines()
            assert next(lines).startswith(": subscribed")
            published = client.post("/api/publish", json={"title": "hello"}).json()["id"]
            assert next(lines) == ""
            assert [next(lines), next(lines), next(lines)] == [
                "event: news", f"id: {published}", 'data: {"title":"hello"}']


def test_a_mounted_apps_lifespan_runs_with_the_server(serve):
    from contextlib import asynccontextmanager

    from conduit import App

    events = []

    @asynccontextmanager
    async def lifespan(api):
        events.append("startup")
        yield {"db": "connected"}
        events.append("shutdown")

    api = fastapi.FastAPI(lifespan=lifespan)

    @api.get("/db")
    async def db(request: fastapi.Request):
        return {"db": request.state.db}

    app = App()
    app.mount("", api)
    server = serve(app)
    assert httpx.get(server.url + "/db", timeout=TIMEOUT).json() == {"db": "connected"}
    assert events == ["startup"]
    server.stop()
    assert events == ["startup", "shutdown"]


def test_fastapi_native_sse_response(serve):
    sse = pytest.importorskip("fastapi.sse")
    app = fastapi.FastAPI()

    @app.get("/native", response_class=sse.EventSourceResponse)
    async def native():
        for i in range(3):
            yield sse.ServerSentEvent(raw_data=str(i), event="n", id=str(i + 1))
            await asyncio.sleep(0)

    server = serve_asgi(serve, app)
    with httpx.Client(timeout=TIMEOUT) as client:
        with client.stream("GET", server.url + "/native") as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            data = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
    assert data == ["0", "1", "2"]
