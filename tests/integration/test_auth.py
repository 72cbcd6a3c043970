"""Auth over real sockets: static tokens and JWTs (HS256), from the Authorization header, a
cookie or the query parameter; 401 and 403 with RFC 6750 WWW-Authenticate; private channels
(one and several per connection), wildcard grants, protected publish routes; tokens never
reach a log line; Auth.from_env through ``python -m conduit run``.
"""

from __future__ import annotations

import json
import logging
import sys
import time

import jwt
import pytest
from integration_helpers import RawClient, SSESubscriber, request, subscribe, wait_for

from conduit import App, Auth, HTTPError

SECRET = "an-hmac-key-of-at-least-32-bytes-for-hs256"
PUBLISHER = "static-publisher-token-7f3a"  # publish anywhere, subscribe nowhere
READER = "static-reader-token-91bc"  # subscribe to news and doc/*, publish nowhere


def make_app() -> App:
    auth = Auth(tokens={PUBLISHER: {"publish": ["*"]},
                        READER: {"subscribe": ["news", "doc/*"]}},
                jwt_secret=SECRET)
    app = App(auth=auth)
    news = app.channel("news", private=True)
    app.channel("doc/1", private=True)
    app.channel("secret", private=True)
    app.channel("public")

    @app.get("/news")
    def news_stream(request):
        return news.subscribe(request)

    @app.get("/feed")
    def feed(request):
        return app.subscribe(request, *request.query_all("topic"))

    @app.post("/publish/{topic:path}", auth="publish")
    def publish(request, topic):
        request.require("publish", topic)
        channel = app.hub.channels.get(topic)
        if channel is None:
            raise HTTPError(404, f"no channel {topic!r}")
        return {"id": channel.publish(request.body.decode())}

    @app.get("/whoami", auth=True)
    def whoami(request):
        grants = request.require()
        return {"publish": list(grants.publish), "subscribe": list(grants.subscribe)}

    @app.get("/cookies")
    def cookies(request):
        return request.cookies

    @app.get("/boom")
    def boom(request):
        raise RuntimeError("boom")

    @app.get("/boom-async")
    async def boom_async(request):
        raise RuntimeError("boom")

    return app


@pytest.fixture
def server(serve):
    return serve(make_app())


def get(address, path: str, headers=()):
    lines = [f"GET {path} HTTP/1.1", "Host: t", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in headers]
    return request(address, ("\r\n".join(lines) + "\r\n\r\n").encode())


def post(address, path: str, body: str, token: str | None = None):
    data = body.encode()
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    return request(address, (f"POST {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n{auth}"
                             f"Content-Length: {len(data)}\r\n\r\n").encode() + data)


def error_of(resp) -> str:
    return json.loads(resp.body)["error"]


def bearer(token: str) -> list:
    return [("Authorization", f"Bearer {token}")]


def make_jwt(claims=None, secret=SECRET, algorithm="HS256", **payload) -> str:
    if claims is not None:
        payload["conduit"] = claims
    return jwt.encode(payload, secret, algorithm=algorithm)


# -- 401: no token, or one that is not valid ----------------------------------------------------

def test_no_token_is_401_with_a_bearer_challenge(server):
    resp = get(server.address, "/news")
    assert resp.status == 401
    assert resp.header(b"WWW-Authenticate") == b'Bearer realm="conduit"'
    assert error_of(resp).startswith("missing token")
    resp = post(server.address, "/publish/news", "hi")
    assert resp.status == 401 and error_of(resp).startswith("missing token")


def test_unknown_static_token_is_401_invalid_token(server):
    resp = get(server.address, "/news", bearer("not-a-token-we-know"))
    assert resp.status == 401
    assert resp.header(b"WWW-Authenticate") == (
        b'Bearer realm="conduit", error="invalid_token", error_description="token not valid"')
    assert error_of(resp) == "token not valid"
    assert b"not-a-token-we-know" not in resp.raw


def test_bearer_without_a_token_is_401(server):
    resp = get(server.address, "/news", [("Authorization", "Bearer ")])
    assert resp.status == 401 and "no token after Bearer" in error_of(resp)


def test_the_first_place_with_a_token_is_the_only_one_used(server):
    # A wrong header token is not rescued by a good cookie: header, cookie, query, in order.
    resp = get(server.address, "/news", bearer("wrong") + [("Cookie", f"conduit_token={READER}")])
    assert resp.status == 401 and error_of(resp) == "token not valid"
    resp = get(server.address, f"/news?access_token={READER}",
               [("Cookie", "conduit_token=wrong")])
    assert resp.status == 401
    # Another scheme (Basic) is not ours: the cookie is looked at.
    with subscribe(server.address, "/news", headers=[("Authorization", "Basic dXNlcjpwdw=="),
                                                     ("Cookie", f"conduit_token={READER}")]):
        pass


JWT_FAILURES = [
    ("expired", lambda: make_jwt({"subscribe": ["*"]}, exp=int(time.time()) - 60),
     "token expired"),
    ("not yet valid", lambda: make_jwt({"subscribe": ["*"]}, nbf=int(time.time()) + 3600),
     "token not valid yet"),
    ("bad signature", lambda: make_jwt({"subscribe": ["*"]}, secret="x" * 40),
     "token not valid: bad signature"),
    ("alg none", lambda: jwt.encode({"conduit": {"subscribe": ["*"]}}, None, algorithm="none"),
     "token not valid: algorithm not allowed"),
    ("HS512 not in the list", lambda: make_jwt({"subscribe": ["*"]}, secret="y" * 64,
                                               algorithm="HS512"),
     "token not valid: algorithm not allowed"),
    ("malformed", lambda: "abc.def.ghi", "token not valid: malformed"),
    ("claim not an object", lambda: make_jwt(["news"]), "token not valid: the 'conduit' claim"),
    ("claim with a string list", lambda: make_jwt({"subscribe": "news"}),
     "token not valid: the 'conduit' claim: subscribe must be a list"),
]


@pytest.mark.parametrize("make_token, message", [f[1:] for f in JWT_FAILURES],
                         ids=[f[0] for f in JWT_FAILURES])
def test_jwt_that_is_not_valid_is_401(server, make_token, message):
    token = make_token()
    resp = get(server.address, "/news", bearer(token))
    assert resp.status == 401, resp
    assert error_of(resp).startswith(message), error_of(resp)
    challenge = resp.header(b"WWW-Authenticate").decode()
    assert challenge.startswith('Bearer realm="conduit", error="invalid_token", '
                                'error_description="token')
    assert token.encode() not in resp.raw


# -- token sources, static and JWT ----------------------------------------------------------------

@pytest.mark.parametrize("place", ["header", "cookie", "query"])
@pytest.mark.parametrize("kind", ["static", "jwt"])
def test_token_from_each_place_opens_a_private_channel(server, place, kind):
    token = READER if kind == "static" else make_jwt({"subscribe": ["news"]},
                                                     exp=int(time.time()) + 3600)
    path, headers = "/news", []
    if place == "header":
        headers = bearer(token)
    elif place == "cookie":
        headers = [("Cookie", f"theme=dark; conduit_token={token}")]
    else:
        path = f"/news?access_token={token}"
    with subscribe(server.address, path, headers=headers) as sub:
        resp = post(server.address, "/publish/news", "hello", token=PUBLISHER)
        assert resp.status == 200, resp
        event = sub.next_event()
        assert event["data"] == "hello" and event["id"] == json.loads(resp.body)["id"]


def test_valid_token_without_the_grant_is_403(server):
    # The publisher may not subscribe; the reader may not publish (the route's check).
    sub = SSESubscriber(server.address, "/news", headers=bearer(PUBLISHER), expect_status=403)
    assert error_of(sub.response) == "not allowed to subscribe to 'news'"
    assert sub.response.header(b"WWW-Authenticate") == (
        b'Bearer realm="conduit", error="insufficient_scope"')
    sub.close()
    resp = post(server.address, "/publish/news", "x", token=READER)
    assert resp.status == 403 and error_of(resp) == "not allowed to publish"


def test_jwt_grants_are_topic_scoped(server):
    token = make_jwt({"publish": ["doc/*"], "subscribe": ["doc/*"]})
    with subscribe(server.address, "/feed?topic=doc/1", headers=bearer(token)) as sub:
        resp = post(server.address, "/publish/doc/1", "v2", token=token)
        assert resp.status == 200, resp
        assert sub.next_event()["data"] == "v2"
    resp = post(server.address, "/publish/news", "x", token=token)
    assert resp.status == 403 and error_of(resp) == "not allowed to publish to 'news'"
    # A valid JWT without the claim is valid, with no grants.
    empty = make_jwt(sub="someone")
    resp = get(server.address, "/whoami", bearer(empty))
    assert resp.status == 200 and json.loads(resp.body) == {"publish": [], "subscribe": []}
    assert post(server.address, "/publish/doc/1", "x", token=empty).status == 403


def test_wildcard_selectors(server):
    # READER: subscribe ["news", "doc/*"]
    with subscribe(server.address, "/feed?topic=doc/1", headers=bearer(READER)):
        pass
    sub = SSESubscriber(server.address, "/feed?topic=secret", headers=bearer(READER),
                        expect_status=403)
    assert error_of(sub.response) == "not allowed to subscribe to 'secret'"
    sub.close()
    grants = Auth(tokens={"t": {"subscribe": ["doc/*", "a*c"]}})._check("t")
    assert grants.allows("subscribe", "doc/1") and grants.allows("subscribe", "doc/1/x")
    assert not grants.allows("subscribe", "doc") and not grants.allows("subscribe", "xdoc/1")
    assert grants.allows("subscribe", "ac") and grants.allows("subscribe", "a/b\nc")
    assert not grants.allows("publish", "doc/1")
    # Only * is special: no fnmatch ? or [...]
    grants = Auth(tokens={"t": {"subscribe": ["d?c", "[ab]"]}})._check("t")
    assert grants.allows("subscribe", "d?c") and not grants.allows("subscribe", "doc")
    assert grants.allows("subscribe", "[ab]") and not grants.allows("subscribe", "a")


def test_multi_channel_subscription_needs_every_private_grant(server):
    # public channels need no token; one private channel in the list does
    with subscribe(server.address, "/feed?topic=public"):
        pass
    sub = SSESubscriber(server.address, "/feed?topic=public&topic=news", expect_status=401)
    sub.close()
    with subscribe(server.address, "/feed?topic=news&topic=doc/1&topic=public",
                   headers=bearer(READER)) as sub:
        for topic in ("news", "doc/1", "public"):
            assert post(server.address, f"/publish/{topic}", topic, token=PUBLISHER).status \
                == 200
        assert [e["data"] for e in sub.events(3)] == ["news", "doc/1", "public"]
    channels = server.server.app.hub.channels
    counts = lambda: server.call(lambda: [c.subscriber_count for c in channels.values()])  # noqa: E731
    wait_for(lambda: counts() == [0, 0, 0, 0], what="the closed subscribers gone")
    with SSESubscriber(server.address, "/feed?topic=news&topic=secret",
                       headers=bearer(READER), expect_status=403) as sub:
        assert error_of(sub.response) == "not allowed to subscribe to 'secret'"
        assert counts() == [0, 0, 0, 0]  # refused before anything was registered


def test_request_cookies(server):
    resp = get(server.address, "/cookies",
               [("Cookie", 'a=1; b="two words"; a=3; junk; =x; c=')])
    assert json.loads(resp.body) == {"a": "1", "b": "two words", "c": ""}


# -- configuration -------------------------------------------------------------------------------

def test_bad_configuration_is_refused_clearly(monkeypatch):
    with pytest.raises(ValueError, match="needs static tokens, a jwt_secret"):
        Auth()
    with pytest.raises(ValueError, match="at least 32"):
        Auth(jwt_secret="short")
    with pytest.raises(ValueError, match="at least 64"):
        Auth(jwt_secret="z" * 40, jwt_algorithms=("HS256", "HS512"))
    for algorithm in ("none", "RS256"):
        with pytest.raises(ValueError, match="not supported"):
            Auth(jwt_secret=SECRET, jwt_algorithms=(algorithm,))
    with pytest.raises(ValueError, match="unknown keys"):
        Auth(tokens={"t": {"read": ["*"]}})
    with pytest.raises(ValueError, match="private, but the app has no auth"):
        App().channel("x", private=True)
    with pytest.raises(ValueError, match="needs auth, but the app has none"):
        App().post("/p", auth="publish")
    with pytest.raises(ValueError, match="auth must be True"):
        App(auth=Auth(tokens={"t": {}})).post("/p", auth="admin")
    # The secret never shows in a repr.
    assert SECRET not in repr(Auth(tokens={PUBLISHER: {}}, jwt_secret=SECRET))
    assert PUBLISHER not in repr(Auth(tokens={PUBLISHER: {}}, jwt_secret=SECRET))
    # Without PyJWT: a clear error for JWTs, static tokens still work.
    monkeypatch.setitem(sys.modules, "jwt", None)
    with pytest.raises(ImportError, match=r"pip install 'conduit-sse\[jwt\]'"):
        Auth(jwt_secret=SECRET)
    assert Auth(tokens={"t": {"publish": ["*"]}})._check("t").allows("publish", "x")


def test_from_env():
    assert Auth.from_env({}) is None
    auth = Auth.from_env({"CONDUIT_AUTH_TOKEN": "tok"})
    grants = auth._check("tok")
    assert grants.allows("publish", "any/thing") and grants.allows("subscribe", "x")
    auth = Auth.from_env({"CONDUIT_JWT_SECRET": SECRET})
    assert auth._check(make_jwt({"publish": ["a"]})).allows("publish", "a")


def test_from_env_through_the_cli(conduit_process, app_file, monkeypatch):
    token = "env-token-5d1e0c"
    monkeypatch.setenv("CONDUIT_AUTH_TOKEN", token)
    monkeypatch.delenv("CONDUIT_JWT_SECRET", raising=False)
    path = app_file("""
        from conduit import App, Auth
        app = App(auth=Auth.from_env())
        news = app.channel("news", private=True)

        @app.get("/news")
        def events(request):
            return news.subscribe(request)
    """)
    proc = conduit_process(path)
    assert get(proc.address, "/news").status == 401
    start = len(proc.lines)
    with subscribe(proc.address, f"/news?access_token={token}"):
        proc.wait_for_line(r"GET /news\?access_token=\[redacted\] HTTP/1.1\" 200", start=start)
    assert token not in proc.stderr()


# -- tokens never logged ---------------------------------------------------------------------------

def test_tokens_never_reach_the_logs(server, caplog):
    caplog.set_level(logging.INFO, logger="conduit")
    wrong = "wrong-token-c0ffee"

    def access_lines():
        return [r.getMessage() for r in caplog.records if r.name == "conduit.access"]

    with subscribe(server.address, f"/news?topic=x&access_token={READER}"):  # 200
        wait_for(lambda: len(access_lines()) >= 1, what="the access log line")
    assert get(server.address, f"/news?access_token={wrong}").status == 401
    assert get(server.address, f"/feed?topic=secret&access_token={READER}").status == 403
    assert get(server.address, f"/boom?access_token={PUBLISHER}").status == 500
    assert get(server.address, f"/boom-async?acc%65ss_token={PUBLISHER}").status == 500
    # the answer is sent before its line is logged
    lines = wait_for(lambda: len(access_lines()) >= 5 and access_lines(), what="5 lines")
    assert [line.rsplit(" ", 1)[1] for line in lines] == ["200", "401", "403", "500", "500"]
    assert "/news?topic=x&access_token=[redacted]" in lines[0]
    assert "/boom-async?acc%65ss_token=[redacted]" in lines[4]
    errors = [r for r in caplog.records if "application error" in r.getMessage()]
    assert len(errors) == 2
    text = caplog.text + "\n".join(lines)
    for secret in (READER, PUBLISHER, wrong):
        assert secret not in text


def test_auth_does_not_disturb_other_clients(server):
    # Refused requests are answered on a kept-alive connection, which goes on serving.
    with RawClient(server.address) as client:
        client.send(b"GET /news HTTP/1.1\r\nHost: t\r\n\r\n")
        assert client.read_response().status == 401
        client.send(f"GET /whoami HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {READER}"
                    "\r\n\r\n".encode())
        resp = client.read_response()
        assert resp.status == 200
        assert json.loads(resp.body)["subscribe"] == ["news", "doc/*"]
