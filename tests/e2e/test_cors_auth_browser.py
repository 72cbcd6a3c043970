"""CORS and auth in a real browser: a page served from one origin opens
``new EventSource("http://localhost:PORT/events?access_token=...", {withCredentials: true})``
on a second conduit whose CORS list allows that origin and whose channel is private. From
the allowed origin the page receives what is published; from another origin the browser
refuses the stream (no Access-Control-Allow-Origin) and the page receives nothing.

Both servers run this module's app through ``python -m conduit run``: the page server
without CORS, the stream server with ``TEST_ALLOW_ORIGIN`` naming the page's origin.
"""

from __future__ import annotations

import textwrap
from urllib.parse import quote

import httpx
import pytest
from e2e_harness import ExampleServer

TOKEN = "e2e-browser-token-6a41"

APP = '''
import os
from conduit import App, Auth, CORS, Response

TOKEN = "@TOKEN@"
origin = os.environ.get("TEST_ALLOW_ORIGIN")
app = App(auth=Auth(tokens={TOKEN: {"publish": ["news"], "subscribe": ["news"]}}),
          cors=CORS([origin], allow_credentials=True) if origin else None)
news = app.channel("news", private=True)

PAGE = """<!doctype html>
<title>cors</title>
<pre id="log"></pre>
<script>
window.received = [];
window.opened = false;
window.errors = 0;
const source = new EventSource(new URLSearchParams(location.search).get("sse"),
                               {withCredentials: true});
window.source = source;
source.onopen = () => { window.opened = true; };
source.onmessage = (e) => {
  window.received.push(e.data);
  document.getElementById("log").textContent += e.data + "\\\\n";
};
source.onerror = () => { window.errors += 1; };
</script>
"""

@app.get("/")
def page(request):
    return Response(PAGE, content_type="text/html; charset=utf-8")

@app.get("/events")
def events(request):
    return news.subscribe(request)

@app.post("/publish", auth="publish")
def publish(request):
    request.require("publish", "news")
    return {"id": news.publish(request.body.decode())}
'''.replace("@TOKEN@", TOKEN)


@pytest.fixture
def servers(tmp_path):
    """(page server, stream server): the stream server allows the page's 127.0.0.1 origin."""
    app = tmp_path / "cors_app.py"
    app.write_text(textwrap.dedent(APP))
    started = []
    try:
        page_server = ExampleServer(app)
        started.append(page_server)
        stream_server = ExampleServer(
            app, env={"TEST_ALLOW_ORIGIN": f"http://127.0.0.1:{page_server.port}"})
        started.append(stream_server)
        yield page_server, stream_server
    finally:
        for server in started:
            code = server.stop(timeout=20)
            assert code == 0, f"exited with {code} after SIGTERM\n{server.log}"


def stream_url(stream_server) -> str:
    # "localhost", not 127.0.0.1: another origin than the page's (the port differs too)
    return f"http://localhost:{stream_server.port}/events?access_token={TOKEN}"


def publish(stream_server, text: str) -> None:
    response = httpx.post(f"{stream_server.base_url}/publish", content=text.encode(),
                          headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    assert response.status_code == 200, response.text


def test_allowed_origin_receives_private_events(servers, page):
    page_server, stream_server = servers
    page.goto(f"http://127.0.0.1:{page_server.port}/?sse={quote(stream_url(stream_server))}")
    # onopen fires once the response head passed the CORS check; the subscriber is
    # registered before the head is written, so nothing published from here is missed.
    page.wait_for_function("window.opened")
    publish(stream_server, "first")
    publish(stream_server, "second")
    page.wait_for_function("window.received.length === 2")
    assert page.evaluate("window.received") == ["first", "second"]
    assert page.evaluate("window.errors") == 0
    assert page.text_content("#log") == "first\nsecond\n"
    assert TOKEN not in stream_server.log
    assert "/events?access_token=[redacted]" in stream_server.log


def test_other_origin_is_refused_by_the_browser(servers, page):
    page_server, stream_server = servers
    # The same page from http://localhost:PORT: an origin the stream server does not list.
    page.goto(f"http://localhost:{page_server.port}/?sse={quote(stream_url(stream_server))}")
    # A CORS failure fails the EventSource for good: error, then readyState CLOSED (2).
    page.wait_for_function("window.errors > 0 && window.source.readyState === 2")
    publish(stream_server, "not for you")
    assert page.evaluate("window.opened") is False
    assert page.evaluate("window.received") == []
    # The server answered (CORS protects the reader, not the server): 200 without CORS
    # headers, which is why the browser refused it.
    with httpx.stream("GET", stream_url(stream_server).replace("localhost", "127.0.0.1"),
                      headers={"Origin": f"http://localhost:{page_server.port}"},
                      timeout=10) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert "access-control-allow-origin" not in response.headers


# -- examples/dizzy_documents.py with auth on ------------------------------------------------

DIZZY_TOKEN = "dizzy-e2e-token-03fe"


def test_dizzy_documents_with_auth(tmp_path, page):
    server = ExampleServer("examples/dizzy_documents.py", env={
        "CONDUIT_DATA_DIR": str(tmp_path), "CONDUIT_AUTH_TOKEN": DIZZY_TOKEN,
        "CONDUIT_JWT_SECRET": None})
    try:
        base = server.base_url
        body = {"type": "CreateDocument", "data": {"id": "doc1", "content": "private"}}
        assert httpx.get(f"{base}/events", timeout=10).status_code == 401
        assert httpx.get(f"{base}/documents", timeout=10).status_code == 401
        assert httpx.post(f"{base}/command", json=body, timeout=10).status_code == 401
        assert httpx.get(f"{base}/?access_token=wrong", timeout=10).status_code == 401
        bearer = {"Authorization": f"Bearer {DIZZY_TOKEN}"}
        assert httpx.post(f"{base}/command", json=body, headers=bearer,
                          timeout=10).status_code == 201
        # The page: /?access_token= sets the cookie and redirects to /, which then works.
        page.goto(f"{base}/?access_token={DIZZY_TOKEN}")
        assert page.url == f"{base}/"
        page.wait_for_function(
            "() => document.getElementById('connection').textContent === 'connected'"
            " && document.querySelectorAll('#documents .document').length === 1")
        cookies = page.context.cookies()
        assert [(c["name"], c["httpOnly"], c["sameSite"]) for c in cookies] == [
            ("conduit_token", True, "Strict")]
        assert DIZZY_TOKEN not in server.log
    finally:
        code = server.stop(timeout=20)
        assert code == 0, f"exited with {code} after SIGTERM\n{server.log}"
