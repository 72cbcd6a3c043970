"""examples/notifications.py end to end: POST /notify fans out to concurrent subscribers
(httpx-sse), bad requests publish nothing, Last-Event-ID replay and the reset event, and
toasts in two headless Chromium pages at once, across a server restart."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from e2e_harness import ExampleServer, wait_until_bindable
from httpx_sse import connect_sse

EXAMPLE = "examples/notifications.py"
TIMEOUT = httpx.Timeout(10.0)


def stop(server: ExampleServer) -> None:
    code = server.stop(timeout=20)
    assert code == 0, f"exited with {code} after SIGTERM\n{server.log}"
    assert "graceful timeout" not in server.log, server.log


@pytest.fixture(scope="module")
def base_url():
    """One server for the module's stream tests; drained on teardown."""
    server = ExampleServer(EXAMPLE, "--no-access-log")
    try:
        yield server.base_url
    finally:
        stop(server)


def notify(base: str, **body) -> str:
    response = httpx.post(f"{base}/notify", json=body, timeout=TIMEOUT)
    assert response.status_code == 201, response.text
    answer = response.json()
    assert answer["status"] == "ok", answer
    return answer["id"]


def subscribe(client: httpx.Client, base: str, last_event_id: str | None = None):
    headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
    return connect_sse(client, "GET", f"{base}/events", headers=headers)


def read(events, count: int) -> list[tuple[str, str, dict]]:
    got = []
    for sse in events:
        got.append((sse.event, sse.id, json.loads(sse.data)))
        if len(got) == count:
            return got
    raise AssertionError(f"the stream ended after {got}")


def seq(event_id: str) -> int:
    return int(event_id.rpartition("-")[2])


# -- the stream ---------------------------------------------------------------------------

BAD_BODIES = [
    b'{"title": "x"',                                   # malformed JSON
    b"\xff\xfe",                                        # not UTF-8
    b"",                                                # empty
    b'["title"]',                                       # not an object
    b'{"body": "no title"}',
    b'{"title": "   "}',
    b'{"title": 7}',
    json.dumps({"title": "t" * 121}).encode(),
    b'{"title": "two\\nlines"}',
    b'{"title": "ok", "body": 5}',
    json.dumps({"title": "ok", "body": "b" * 1001}).encode(),
    b'{"title": "ok", "level": "fatal"}',
    b'{"title": "ok", "level": ["info"]}',
    b'{"title": "x\\ud800"}',                           # a lone surrogate
]


def test_notifications_reach_two_subscribers_and_bad_ones_publish_nothing(base_url):
    with httpx.Client(timeout=TIMEOUT) as one_client, \
            httpx.Client(timeout=TIMEOUT) as two_client, \
            subscribe(one_client, base_url) as one, subscribe(two_client, base_url) as two:
        for source in (one, two):
            assert source.response.headers["content-type"].startswith("text/event-stream")
        # Both are registered (their heads arrived): nothing published from here is missed.
        for body in BAD_BODIES:
            response = httpx.post(f"{base_url}/notify", content=body, timeout=TIMEOUT)
            assert response.status_code == 400, (body, response.text)
            assert "error" in response.json()
        ids = [
            notify(base_url, title="Deploy finished", body="v1.4.2 is live", level="success"),
            notify(base_url, title="Disk at 91%", level="warning"),
            notify(base_url, title="  <b>é ✓</b>  ", body="line one\nline two"),
        ]
        got_one = read(one.iter_sse(), 3)
        got_two = read(two.iter_sse(), 3)
    assert [seq(i) for i in ids] == [seq(ids[0]), seq(ids[0]) + 1, seq(ids[0]) + 2]
    assert got_one == got_two  # the same events, ids and order for every subscriber
    assert [(event, i) for event, i, _ in got_one] == [("notification", i) for i in ids]
    bodies = [data for _, _, data in got_one]
    for data in bodies:
        assert set(data) == {"title", "body", "level", "time"}, data
        assert abs(data["time"] - time.time()) < 60
    assert [(d["title"], d["body"], d["level"]) for d in bodies] == [
        ("Deploy finished", "v1.4.2 is live", "success"),
        ("Disk at 91%", "", "warning"),
        ("<b>é ✓</b>", "line one\nline two", "info"),
    ]


def test_last_event_id_replays_and_a_bad_cursor_gets_a_reset(base_url):
    ids = [notify(base_url, title=f"replay {i}") for i in range(3)]
    with httpx.Client(timeout=TIMEOUT) as client:
        with subscribe(client, base_url, last_event_id=ids[0]) as source:
            got = read(source.iter_sse(), 2)
        assert [(e, i, d["title"]) for e, i, d in got] == [
            ("notification", ids[1], "replay 1"), ("notification", ids[2], "replay 2")]

        with subscribe(client, base_url, last_event_id="not-a-cursor") as source:
            events = source.iter_sse()
            (event, event_id, data), = read(events, 1)
            assert (event, event_id) == ("reset", ids[2])
            assert data == {"reason": "malformed-cursor", "channels": ["notifications"],
                            "last_event_id": "not-a-cursor"}
            live = notify(base_url, title="after the reset")  # then it is live
            assert read(events, 1) == [("notification", live, read_back(base_url, live))]

    snapshot = httpx.get(f"{base_url}/notifications", timeout=TIMEOUT).json()
    assert snapshot["cursor"] == live
    assert snapshot["notifications"][-1]["id"] == live
    assert [n["id"] for n in snapshot["notifications"]][-4:] == [*ids, live]


def read_back(base: str, event_id: str) -> dict:
    """A notification as GET /notifications has it, without its id."""
    for item in httpx.get(f"{base}/notifications", timeout=TIMEOUT).json()["notifications"]:
        if item.pop("id") == event_id:
            return item
    raise AssertionError(f"{event_id} is not in /notifications")


# -- two pages in headless Chromium -----------------------------------------------------------

CONNECTED = "() => document.getElementById('connection').textContent === 'connected'"


def toast_shown(page, title: str) -> None:
    page.wait_for_function(
        """(title) => [...document.querySelectorAll("#toasts .toast .title")]
                         .some((el) => el.textContent === title)""", arg=title)


def open_pages(browser, base: str, count: int = 2):
    contexts = [browser.new_context() for _ in range(count)]
    pages = [context.new_page() for context in contexts]
    for page in pages:
        page.set_default_timeout(15_000)
        page.goto(f"{base}/")
        page.wait_for_function(CONNECTED)
    return contexts, pages


def test_toasts_in_two_pages_and_a_reset_after_a_restart(browser):
    server = ExampleServer(EXAMPLE, "--no-access-log")
    contexts = []
    try:
        early = notify(server.base_url, title="before the pages opened", level="info")
        contexts, (one, two) = open_pages(browser, server.base_url)
        assert one.title() == "conduit: live notifications"
        for page in (one, two):  # the history is in the list, not toasted
            page.wait_for_function(
                "(id) => document.querySelector(`#recent li[data-id='${id}']`) !== null",
                arg=early)
            assert page.evaluate("() => window.notify.toasts") == 0

        # A POST from outside: a toast in both pages, user content shown as text.
        markup = "<img src=x onerror=alert(1)> hello"
        first = notify(server.base_url, title=markup, body="from curl", level="warning")
        for page in (one, two):
            toast_shown(page, markup)
            assert page.locator("#toasts img").count() == 0
            toast = page.locator(f"#toasts .toast[data-id='{first}']")
            assert toast.get_attribute("class") == "toast level-warning"
            assert page.text_content("#last-event-id") == first

        # Sent from page one's form: shown in both.
        one.fill("#title", "sent from tab one")
        one.select_option("#level", "success")
        one.click("#send")
        for page in (one, two):
            toast_shown(page, "sent from tab one")
            assert page.evaluate("() => window.notify.received.map((r) => r[1])") == [
                markup, "sent from tab one"]
        one.wait_for_function(
            "() => document.getElementById('form-note').textContent.startsWith('sent')")

        # Restart on the same port: this channel lives in memory, so the pages' cursors
        # are of another epoch. They reconnect by themselves, get a reset, reload the
        # (now empty) list and carry on live.
        port = server.port
        stop(server)
        wait_until_bindable(port)
        server = ExampleServer(EXAMPLE, "--no-access-log", port=port)
        for page in (one, two):
            page.wait_for_function(
                """() => window.notify.resets.length === 1 && window.notify.opens >= 2
                     && document.querySelectorAll("#recent li").length === 0""")
            reset = page.evaluate("() => window.notify.resets[0]")
            assert reset["reason"] == "unknown-epoch" and reset["channels"] == ["notifications"]
            page.wait_for_function(CONNECTED)
        after = notify(server.base_url, title="after the restart")
        for page in (one, two):
            toast_shown(page, "after the restart")
            assert page.text_content("#last-event-id") == after
            assert page.locator("#recent li").count() == 1
    finally:
        for context in contexts:
            context.close()
        if server.proc.poll() is None:
            stop(server)
