"""The App through a real HTTP client (httpx): JSON, path params, query, headers, errors,
async handlers with to_thread, and static files (content types, no way out)."""

from __future__ import annotations

import os
import threading

import httpx
import pytest
from integration_helpers import TIMEOUT, RawClient

import conduit
from conduit import App, HTTPError, Response


def make_app() -> App:
    app = App()

    @app.post("/items")
    def create(request):
        data = request.json()
        return Response({"created": data, "type": type(data).__name__}, status=201)

    @app.get("/items/{n:int}")
    def item(request, n):
        return {"n": n, "double": n * 2, "type": type(n).__name__}

    @app.get("/files/{rest:path}")
    def files(request, rest):
        return {"rest": rest}

    @app.get("/users/{name}/posts/{post_id:int}")
    def post(request):  # no keyword parameters: path_params on the request
        return dict(request.path_params)

    @app.get("/query")
    def query(request):
        return {"query": request.query, "tags": request.query_all("tag")}

    @app.get("/headers")
    def headers(request):
        h = request.headers
        return {
            "x_custom": h["X-CUSTOM"], "lower": h.get("x-custom"), "mixed": h.get("X-Custom"),
            "all": h.getall("X-Multi"), "has": "X-cUsToM" in h, "missing": h.get("Nope"),
            "version": request.http_version, "method": request.method,
            "path": request.path, "raw_path": request.raw_path,
        }

    @app.get("/teapot")
    def teapot(request):
        raise HTTPError(418, "short and stout", headers=[("X-Pot", "tea")])

    @app.get("/async-teapot")
    async def async_teapot(request):
        await conduit.sleep(0)
        raise HTTPError(409, "conflict")

    @app.get("/boom")
    def boom(request):
        raise RuntimeError("boom")

    @app.get("/none")
    def none(request):
        return None

    @app.get("/bytes")
    def raw_bytes(request):
        return b"\x00\x01"

    @app.get("/list")
    def a_list(request):
        return [1, "two", None]

    return app


@pytest.fixture
def client(serve):
    server = serve(make_app())
    with httpx.Client(base_url=server.url, timeout=TIMEOUT) as client:
        yield client


def test_json_post_and_response(client):
    r = client.post("/items", json={"name": "widget", "tags": ["a", "ü"]})
    assert r.status_code == 201
    assert r.headers["content-type"] == "application/json"
    assert r.json() == {"created": {"name": "widget", "tags": ["a", "ü"]}, "type": "dict"}


def test_malformed_json_is_400(client):
    r = client.post("/items", content=b'{"name": ', headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    assert r.json()["error"].startswith("malformed JSON body")
    r = client.post("/items", content=b"\xff\xfe\x00")
    assert r.status_code == 400


def test_path_params_int(client):
    assert client.get("/items/21").json() == {"n": 21, "double": 42, "type": "int"}
    assert client.get("/items/-3").json()["n"] == -3
    assert client.get("/items/abc").status_code == 404
    assert client.get("/items/1/2").status_code == 404


def test_path_params_path_and_multiple(client):
    assert client.get("/files/a/b/c.txt").json() == {"rest": "a/b/c.txt"}
    assert client.get("/users/ann/posts/7").json() == {"name": "ann", "post_id": 7}


def test_query(client):
    r = client.get("/query", params=[("a", "1"), ("b", "x y"), ("tag", "t1"), ("tag", "t2"),
                                     ("u", "é")])
    assert r.json() == {"query": {"a": "1", "b": "x y", "tag": "t2", "u": "é"},
                        "tags": ["t1", "t2"]}


def test_headers_are_case_insensitive(client):
    r = client.get("/headers?x=1", headers=[("x-CuStOm", "value"), ("X-Multi", "1"),
                                            ("x-multi", "2")])
    assert r.json() == {
        "x_custom": "value", "lower": "value", "mixed": "value", "all": ["1", "2"],
        "has": True, "missing": None, "version": "1.1", "method": "GET",
        "path": "/headers", "raw_path": "/headers",
    }


def test_http_error(client):
    r = client.get("/teapot")
    assert r.status_code == 418
    assert r.headers["x-pot"] == "tea"
    assert r.json() == {"error": "short and stout"}
    r = client.get("/async-teapot")
    assert r.status_code == 409
    assert r.json() == {"error": "conflict"}


def test_handler_exception_is_500_and_server_goes_on(client):
    r = client.get("/boom")
    assert r.status_code == 500
    assert r.json() == {"error": "internal server error"}
    assert client.get("/items/1").status_code == 200


def test_return_shortcuts(client):
    r = client.get("/none")
    assert r.status_code == 204 and r.content == b""
    r = client.get("/bytes")
    assert r.content == b"\x00\x01"
    assert r.headers["content-type"] == "application/octet-stream"
    assert client.get("/list").json() == [1, "two", None]


# -- async handlers and to_thread -----------------------------------------------------------
def test_async_handler_in_to_thread_does_not_block_the_loop(serve):
    entered = threading.Event()
    release = threading.Event()
    order = []

    def blocking():
        entered.set()
        assert release.wait(TIMEOUT)  # blocks a worker thread, never the loop
        order.append("slow done in thread")
        return 42

    app = App()

    @app.get("/slow")
    async def slow(request):
        value = await conduit.to_thread(blocking)
        return {"value": value, "thread": threading.current_thread().name}

    @app.get("/fast")
    def fast(request):
        return {"thread": threading.current_thread().name}

    server = serve(app)
    results = {}

    def slow_client():
        with httpx.Client(timeout=TIMEOUT) as c:
            results["slow"] = c.get(server.url + "/slow")

    thread = threading.Thread(target=slow_client)
    thread.start()
    try:
        assert entered.wait(TIMEOUT)
        # The slow handler sits in its worker thread; the loop still answers others.
        with httpx.Client(timeout=TIMEOUT) as c:
            fast = c.get(server.url + "/fast")
        order.append("fast answered")
        assert fast.status_code == 200
        assert "slow" not in results
    finally:
        release.set()
        thread.join(TIMEOUT)
    assert order == ["fast answered", "slow done in thread"]
    assert results["slow"].json()["value"] == 42
    # The handler resumed on the loop thread, where the sync handler ran.
    assert results["slow"].json()["thread"] == fast.json()["thread"] == "conduit-test-server"


def test_to_thread_exception_reaches_the_handler(serve):
    app = App()

    def fails():
        raise KeyError("missing")

    @app.get("/")
    async def handler(request):
        try:
            await conduit.to_thread(fails)
        except KeyError as exc:
            return {"caught": str(exc)}

    server = serve(app)
    assert httpx.get(server.url + "/", timeout=TIMEOUT).json() == {"caught": "'missing'"}


# -- static files --------------------------------------------------------------------------
@pytest.fixture
def static_site(tmp_path):
    root = tmp_path / "site"
    (root / "sub").mkdir(parents=True)
    files = {
        "index.html": (b"<h1>home</h1>", "text/html; charset=utf-8"),
        "style.css": (b"h1{}", "text/css; charset=utf-8"),
        "app.js": (b"let a=1;", "text/javascript; charset=utf-8"),
        "data.json": (b'{"a":1}', "application/json; charset=utf-8"),
        "pic.png": (b"\x89PNG\r\n\x1a\n", "image/png"),
        "icon.svg": (b"<svg/>", "image/svg+xml; charset=utf-8"),
        "notes.txt": (b"plain", "text/plain; charset=utf-8"),
        "blob.bin": (b"\x00\x01\x02", "application/octet-stream"),
        "sub/index.html": (b"<p>sub</p>", "text/html; charset=utf-8"),
    }
    for name, (content, _) in files.items():
        (root / name).write_bytes(content)
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"TOP-SECRET")
    os.symlink(secret, root / "link-out.txt")  # a symlink pointing outside the root
    return root, files


@pytest.fixture
def static_server(serve, static_site):
    root, _ = static_site
    app = App()
    app.static("/static", root)
    return serve(app)


def test_static_files_and_content_types(static_server, static_site):
    _, files = static_site
    with httpx.Client(base_url=static_server.url, timeout=TIMEOUT) as c:
        for name, (content, ctype) in files.items():
            r = c.get("/static/" + name)
            assert r.status_code == 200, name
            assert r.content == content, name
            assert r.headers["content-type"] == ctype, name
        for path in ("/static", "/static/", "/static/sub/"):
            r = c.get(path)
            assert r.status_code == 200, path
            assert r.headers["content-type"] == "text/html; charset=utf-8"
        assert c.get("/static/sub").content == b"<p>sub</p>"
        r = c.head("/static/style.css")
        assert r.status_code == 200 and r.content == b""
        assert r.headers["content-length"] == "4"
        assert c.get("/static/missing.css").status_code == 404


TRAVERSALS = [
    "/static/../secret.txt",
    "/static/../../secret.txt",
    "/static/sub/../../secret.txt",
    "/static/%2e%2e/secret.txt",
    "/static/%2E%2E/secret.txt",
    "/static/.%2e/secret.txt",
    "/static/..%2fsecret.txt",
    "/static/%2e%2e%2fsecret.txt",
    "/static/sub%2f..%2f..%2fsecret.txt",
    "/static/..%5csecret.txt",
    "/static/..\\secret.txt",
    "/static/%252e%252e/secret.txt",
    "/static//etc/passwd",
    "/static/%2fetc%2fpasswd",
    "/static/%2Fetc/passwd",
    "/static/%00",
    "/static/index.html%00",
    "/static/index.html%00.txt",
    "/static/%00../secret.txt",
    "/static/link-out.txt",
    "/static/./index.html/..",
    "/%2e%2e/secret.txt",
    "/static%2f..%2fsecret.txt",
    "http://t/static/../secret.txt",
]


@pytest.mark.parametrize("target", TRAVERSALS)
def test_static_path_traversal_is_404(static_server, target):
    """Sent raw (a client library would normalise the path first)."""
    with RawClient(static_server.address) as c:
        c.send(f"GET {target} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        resp = c.read_response()
    assert b"TOP-SECRET" not in resp.raw
    assert b"root:" not in resp.raw
    assert resp.status == 404, resp.raw


def test_static_mounted_at_root_traversal(serve, static_site):
    root, _ = static_site
    app = App()
    app.static("/", root)
    server = serve(app)
    with httpx.Client(base_url=server.url, timeout=TIMEOUT) as c:
        assert c.get("/").content == b"<h1>home</h1>"
        assert c.get("/style.css").headers["content-type"] == "text/css; charset=utf-8"
    for target in ("/../secret.txt", "/%2e%2e/secret.txt", "/..%2fsecret.txt",
                   "//etc/passwd", "/%2fetc%2fpasswd", "/%00", "/link-out.txt"):
        with RawClient(server.address) as c:
            c.send(f"GET {target} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
            resp = c.read_response()
        assert b"TOP-SECRET" not in resp.raw and b"root:" not in resp.raw
        assert resp.status == 404, (target, resp.raw)


def test_app_stats_counts_requests_streams_and_events(serve):
    from conduit import SSEEvent

    app = App()

    @app.get("/stream")
    def stream(request):
        for i in range(7):
            yield SSEEvent(i)

    @app.get("/stats")
    def stats(request):
        return app.stats()

    assert app.stats() == {}  # not serving yet
    server = serve(app)
    assert httpx.get(server.url + "/stream", timeout=TIMEOUT).text.count("data:") == 7
    figures = httpx.get(server.url + "/stats", timeout=TIMEOUT).json()
    assert figures["requests"] == 2
    assert figures["events_sent"] == 7
    assert figures["streams"] == 0
    assert figures["connections"] >= 1
    assert figures["uptime_seconds"] > 0
    assert figures["errors_by_status"] == {}
    assert httpx.get(server.url + "/missing", timeout=TIMEOUT).status_code == 404
    assert httpx.post(server.url + "/stream", timeout=TIMEOUT).status_code == 405
    raw = RawClient(server.address)
    raw.send(b"GET / HTTP/1.1\r\n\r\n")  # no Host: answered by conduit itself
    assert raw.read_response().status == 400
    figures = httpx.get(server.url + "/stats", timeout=TIMEOUT).json()
    assert figures["errors_by_status"] == {"404": 1, "405": 1, "400": 1}
