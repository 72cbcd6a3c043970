"""CORS over real sockets: an allow-list of origins, credentials, exposed headers; the
headers on plain, streamed, subscribed, async and error responses; preflights allowed and
refused; ``*`` (never with credentials).
"""

from __future__ import annotations

import json

import pytest
from integration_helpers import request, subscribe

from conduit import CORS, App, Auth, Response

ORIGIN = "http://app.example:8080"
OTHER = "http://evil.example"
TOKEN = "cors-test-token-2b7d"
SHARED = Response("shared")


def make_app(cors: CORS) -> App:
    app = App(auth=Auth(tokens={TOKEN: {"publish": ["*"], "subscribe": ["*"]}}), cors=cors)
    news = app.channel("news", private=True)

    @app.get("/plain")
    def plain(request):
        return Response("hi", headers={"X-Request-Id": "42"})

    @app.get("/shared")
    def shared(request):
        return SHARED  # the same object every time

    @app.get("/vary")
    def vary(request):
        return Response("v", headers={"Vary": "Accept-Encoding"})

    @app.get("/count")
    def count(request):
        yield from ("1", "2")

    @app.get("/async")
    async def async_handler(request):
        return {"ok": True}

    @app.get("/news")
    def news_stream(request):
        return news.subscribe(request)

    @app.post("/publish", auth="publish")
    def publish(request):
        return {"id": news.publish(request.json())}

    @app.get("/broken")
    def broken(request):
        raise RuntimeError("a bug")

    @app.get("/broken-async")
    async def broken_async(request):
        raise RuntimeError("a bug")

    return app


@pytest.fixture
def server(serve):
    return serve(make_app(CORS([ORIGIN, "http://localhost:3000"], allow_credentials=True,
                               expose_headers=("X-Request-Id",))))


def send(address, method: str, path: str, headers=(), body: bytes = b""):
    lines = [f"{method} {path} HTTP/1.1", "Host: t", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in headers]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    return request(address, ("\r\n".join(lines) + "\r\n\r\n").encode() + body)


def cors_headers(resp) -> dict:
    return {n.decode().lower(): v.decode() for n, v in resp.headers
            if n.lower().startswith(b"access-control-")}


def all_values(resp, name: bytes) -> list:
    return [v.decode() for n, v in resp.headers if n.lower() == name.lower()]


ALLOWED = {
    "access-control-allow-origin": ORIGIN,
    "access-control-allow-credentials": "true",
    "access-control-expose-headers": "X-Request-Id",
}


# -- actual requests ------------------------------------------------------------------------------

def test_allowed_origin_gets_the_cors_headers(server):
    resp = send(server.address, "GET", "/plain", [("Origin", ORIGIN)])
    assert resp.status == 200 and resp.body == b"hi"
    assert cors_headers(resp) == ALLOWED
    assert all_values(resp, b"Vary") == ["Origin"]
    assert resp.header(b"X-Request-Id") == b"42"


def test_other_origin_and_no_origin_get_none(server):
    for headers in ([("Origin", OTHER)], [("Origin", "null")], []):
        resp = send(server.address, "GET", "/plain", headers)
        assert resp.status == 200 and resp.body == b"hi"  # answered; the browser hides it
        assert cors_headers(resp) == {}
        assert all_values(resp, b"Vary") == ["Origin"]  # caches keep origins apart


def test_stream_subscription_async_and_error_responses_carry_them(server):
    with subscribe(server.address, "/news", headers=[("Origin", ORIGIN),
                                                     ("Cookie", f"conduit_token={TOKEN}")]) as sub:
        assert cors_headers(sub.response) == ALLOWED
        assert sub.response.header(b"Content-Type") == b"text/event-stream; charset=utf-8"
    resp = send(server.address, "GET", "/count", [("Origin", ORIGIN)])
    assert resp.status == 200 and b"data: 1" in resp.body
    assert cors_headers(resp) == ALLOWED
    resp = send(server.address, "GET", "/async", [("Origin", ORIGIN)])
    assert json.loads(resp.body) == {"ok": True} and cors_headers(resp) == ALLOWED
    # Errors too, so the page can read why: 401, 404, 405.
    for method, path, status in (("GET", "/news", 401), ("GET", "/nowhere", 404),
                                 ("POST", "/plain", 405)):
        resp = send(server.address, method, path, [("Origin", ORIGIN)])
        assert resp.status == status, resp
        assert cors_headers(resp) == ALLOWED, (path, resp)


def test_handler_headers_are_kept_and_shared_responses_untouched(server):
    for _ in range(3):
        resp = send(server.address, "GET", "/shared", [("Origin", ORIGIN)])
        assert all_values(resp, b"Access-Control-Allow-Origin") == [ORIGIN]
        assert all_values(resp, b"Vary") == ["Origin"]
    assert SHARED.headers == [("Content-Type", "text/plain; charset=utf-8")]
    resp = send(server.address, "GET", "/vary", [("Origin", ORIGIN)])
    assert all_values(resp, b"Vary") == ["Accept-Encoding, Origin"]


# -- preflight ------------------------------------------------------------------------------------

def preflight(address, path="/publish", origin=ORIGIN, method="POST",
              request_headers="content-type, authorization"):
    headers = [("Origin", origin), ("Access-Control-Request-Method", method)]
    if request_headers:
        headers.append(("Access-Control-Request-Headers", request_headers))
    return send(address, "OPTIONS", path, headers)


def test_preflight_allowed_then_the_post(server):
    resp = preflight(server.address)
    assert resp.status == 204 and resp.body == b""
    assert cors_headers(resp) == {
        "access-control-allow-origin": ORIGIN,
        "access-control-allow-methods": "GET, POST",
        "access-control-allow-headers": "content-type, authorization",
        "access-control-max-age": "600",
        "access-control-allow-credentials": "true",
    }
    assert all_values(resp, b"Vary") == [
        "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"]
    # no requested headers: no Allow-Headers; a GET route's path works too
    resp = preflight(server.address, "/plain", method="GET", request_headers="")
    assert resp.status == 204 and "access-control-allow-headers" not in cors_headers(resp)
    # the POST the preflight was for
    body = json.dumps({"n": 1}).encode()
    resp = send(server.address, "POST", "/publish",
                [("Origin", ORIGIN), ("Authorization", f"Bearer {TOKEN}"),
                 ("Content-Type", "application/json")], body)
    assert resp.status == 200 and "id" in json.loads(resp.body)
    assert cors_headers(resp) == ALLOWED


@pytest.mark.parametrize("kwargs, message", [
    ({"origin": OTHER}, "CORS: origin 'http://evil.example' is not allowed"),
    ({"method": "PUT"}, "CORS: method 'PUT' is not allowed (allowed: GET, POST)"),
    ({"request_headers": "content-type, x-custom"},
     "CORS: request header 'x-custom' is not allowed"),
])
def test_preflight_refused_is_403_without_cors_headers(server, kwargs, message):
    resp = preflight(server.address, **kwargs)
    assert resp.status == 403
    assert json.loads(resp.body)["error"].startswith(message)
    assert cors_headers(resp) == {}


def test_preflight_unknown_path_and_plain_options(server):
    assert preflight(server.address, "/nowhere").status == 404
    # OPTIONS that is not a preflight is answered as usual: what the path allows
    resp = send(server.address, "OPTIONS", "/plain", [("Origin", ORIGIN)])
    assert resp.status == 204 and resp.header(b"Allow") == b"GET, HEAD, OPTIONS"


# -- "*" and configuration ------------------------------------------------------------------------

def test_any_origin_without_credentials(serve):
    server = serve(make_app(CORS(["*"])))
    resp = send(server.address, "GET", "/plain", [("Origin", OTHER)])
    assert cors_headers(resp) == {"access-control-allow-origin": "*"}
    assert all_values(resp, b"Vary") == []
    resp = preflight(server.address, origin=OTHER, request_headers="last-event-id")
    assert resp.status == 204
    assert cors_headers(resp)["access-control-allow-origin"] == "*"
    assert "access-control-allow-credentials" not in cors_headers(resp)


def test_bad_configuration_is_refused():
    with pytest.raises(ValueError, match="'\\*' with allow_credentials=True"):
        CORS(["*"], allow_credentials=True)
    with pytest.raises(ValueError, match="'\\*' with allow_credentials=True"):
        CORS([ORIGIN, "*"], allow_credentials=True)
    for origin in ("http://a.example/", "a.example", "http://a.example/path", "null", ""):
        with pytest.raises(ValueError, match="is not an origin"):
            CORS([origin])
    with pytest.raises(ValueError, match="empty"):
        CORS([])
    with pytest.raises(ValueError, match="not a valid name"):
        CORS([ORIGIN], allow_headers=("Bad Header",))
    with pytest.raises(TypeError, match="cors must be a CORS"):
        App(cors={"allow_origins": [ORIGIN]})


@pytest.mark.parametrize("path", ["/broken", "/broken-async"])
def test_a_handler_error_is_a_500_the_page_can_read(server, path, caplog):
    resp = send(server.address, "GET", path, [("Origin", ORIGIN)])
    assert resp.status == 500 and resp.body == b'{"error":"internal server error"}'
    assert cors_headers(resp)["access-control-allow-origin"] == ORIGIN
    assert any("application error for GET " + path in r.getMessage() for r in caplog.records)
