"""The per-client connection cap, seen from a real browser (headless Chromium).

conduit refuses a connection over ``--max-connections-per-client`` by closing it before
any response. For EventSource that is a network error: it fires ``error`` and reconnects
later (readyState stays CONNECTING). A 4xx/5xx would make it fail for good (CLOSED). This
test checks the browser really behaves so: while the cap is full the page's EventSource
keeps retrying, and it connects once a slot frees.
"""

from __future__ import annotations

import socket
import time

from e2e_harness import ExampleServer

APP = '''
from conduit import App

app = App()
news = app.channel("news")


@app.get("/events")
def events(request):
    return news.subscribe(request)


@app.post("/publish")
def publish(request):
    return {"id": news.publish(request.body.decode())}
'''

# Served by Playwright (page.route), not by conduit: loading the page takes no slot.
PAGE = """<!doctype html>
<title>capped</title>
<script>
window.log = [];
window.source = new EventSource("/events");
source.onopen = () => log.push(["open", source.readyState]);
source.onerror = () => log.push(["error", source.readyState]);
source.onmessage = (event) => log.push(["message", event.data]);
</script>
"""
CAP = 2
TIMEOUT = 10.0


def hold(port: int) -> socket.socket:
    """A raw connection with an open subscription (it takes one slot)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    sock.sendall(b"GET /events HTTP/1.1\r\nHost: t\r\n\r\n")
    data = b""
    while b": subscribed" not in data:
        chunk = sock.recv(4096)
        assert chunk, f"the server closed a connection under the cap: {data!r}"
        data += chunk
    return sock


def publish(port: int, text: str) -> None:
    """POST /publish; a connection refused at the cap (no response) is tried again."""
    body = text.encode()
    deadline = time.monotonic() + TIMEOUT
    while True:
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
            try:
                sock.sendall(b"POST /publish HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
                             b"Content-Length: %d\r\n\r\n" % len(body) + body)
                answer = sock.recv(4096)
            except ConnectionResetError:
                answer = b""
        if answer:
            assert answer.startswith(b"HTTP/1.1 200 "), answer
            return
        assert time.monotonic() < deadline, "every POST was refused"
        time.sleep(0.05)  # a slot is being freed by the server: try again


def test_eventsource_keeps_retrying_while_the_cap_is_full(page, tmp_path):
    app = tmp_path / "capped_app.py"
    app.write_text(APP)
    server = ExampleServer(app, "--max-connections-per-client", str(CAP), "--no-access-log",
                           "--heartbeat-seconds", "0")
    held = []
    try:
        held = [hold(server.port) for _ in range(CAP)]
        page.route(f"{server.base_url}/page",
                   lambda route: route.fulfill(status=200, content_type="text/html",
                                               body=PAGE))
        page.goto(f"{server.base_url}/page")
        # Refused, and refused again after its reconnection delay: it keeps trying.
        page.wait_for_function("() => log.filter(e => e[0] === 'error').length >= 2",
                               timeout=30_000)
        log = page.evaluate("() => log")
        assert log and all(entry == ["error", 0] for entry in log), log  # 0: CONNECTING
        assert page.evaluate("() => source.readyState") == 0
        assert "too many connections from this client (limit 2)" in server.log
        # A slot frees: the next attempt connects.
        held.pop().close()
        page.wait_for_function("() => log.some(e => e[0] === 'open')", timeout=30_000)
        assert page.evaluate("() => source.readyState") == 1  # OPEN
        held.pop().close()  # room for the POST
        publish(server.port, "hello")
        page.wait_for_function(
            "() => log.some(e => e[0] === 'message' && e[1] === 'hello')", timeout=30_000)
        page.close()
    finally:
        for sock in held:
            sock.close()
        code = server.stop()
    assert code == 0, server.log
    assert "graceful timeout" not in server.log, server.log
