"""examples/sse_simple_server.py end to end: the real CLI, curl, and headless Chromium."""

from __future__ import annotations

import re
import subprocess
import time

import httpx
from e2e_harness import ExampleServer

COUNTER_FRAMES = "".join(f"event: counter\nid: {i}\ndata: {i}\n\n" for i in range(1, 11))
TIME_DATA = re.compile(r"Current time: \d\d:\d\d:\d\d\.\d\d\d")
CURL_TIMED_OUT = 28


def parse_frames(text: str) -> list[dict[str, str]]:
    """The events in a raw SSE stream, as {field: value}; comment frames are left out."""
    frames = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.split("\n"):
            if not line or line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            fields[name] = fields[name] + "\n" + value if name == "data" and name in fields \
                else value
        if fields:
            frames.append(fields)
    return frames


def run_curl(curl: str, *args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([curl, "-N", "-sS", *args], capture_output=True, text=True,
                          timeout=timeout)


# -- curl against the raw streams ----------------------------------------------------------

def test_count_prints_ten_counter_frames_and_ends(simple_server, curl):
    result = run_curl(curl, f"{simple_server}/count")
    assert result.returncode == 0, result.stderr  # the stream ended cleanly, by itself
    assert result.stdout == COUNTER_FRAMES


def test_count_resumes_after_last_event_id(simple_server, curl):
    result = run_curl(curl, "-H", "Last-Event-ID: 7", f"{simple_server}/count")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "".join(
        f"event: counter\nid: {i}\ndata: {i}\n\n" for i in (8, 9, 10)
    )
    done = run_curl(curl, "-H", "Last-Event-ID: 10", f"{simple_server}/count")
    assert done.returncode == 0, done.stderr
    assert parse_frames(done.stdout) == []


def test_time_streams_increasing_ids(simple_server, curl):
    result = run_curl(curl, "-m", "3", f"{simple_server}/time")
    assert result.returncode == CURL_TIMED_OUT, (result.returncode, result.stderr)
    frames = parse_frames(result.stdout)
    assert len(frames) >= 2, result.stdout
    assert all(f.get("event") == "time" for f in frames), frames
    assert all(TIME_DATA.fullmatch(f.get("data", "")) for f in frames), frames
    ids = [int(f["id"]) for f in frames]
    assert ids == list(range(1, len(ids) + 1)), ids


def test_index_is_html(simple_server):
    response = httpx.get(f"{simple_server}/", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "new EventSource(\"/count\")" in response.text


# -- the page in headless Chromium ---------------------------------------------------------

COUNTER_DONE = """() => {
  const status = document.getElementById("counter-status").textContent;
  return document.querySelectorAll("#counter-output .event").length >= 10
      && status.startsWith("done");
}"""


def panel_events(page, output_id: str) -> list[tuple[int, str]]:
    """(id, text) of a panel's lines, oldest first (the page prepends new ones)."""
    lines = page.eval_on_selector_all(
        f"#{output_id} .event", "els => els.map(e => [e.dataset.id, e.textContent])"
    )
    return [(int(i), text) for i, text in reversed(lines)]


def test_page_shows_both_streams_live(simple_server, page):
    page.goto(f"{simple_server}/")
    assert page.title() == "conduit: Server-Sent Events demo"

    page.wait_for_function(COUNTER_DONE, timeout=30_000)
    # Done means event 10 arrived and the page closed the stream: exactly ten lines, 1..10,
    # once each (a restarted counter would have repeated ids).
    assert panel_events(page, "counter-output") == [(i, f"#{i} {i}") for i in range(1, 11)]
    assert page.text_content("#counter-status") == "done: 10 events received"

    page.wait_for_function(
        "() => document.querySelectorAll('#time-output .event').length >= 2", timeout=30_000
    )
    time_events = panel_events(page, "time-output")
    ids = [i for i, _ in time_events]
    assert ids == list(range(ids[0], ids[0] + len(ids))) and ids[0] == 1, ids
    assert all(re.fullmatch(rf"#{i} Current time: [\d:.]+", text) for i, text in time_events)
    assert page.text_content("#time-status") == "connected"


RECONNECTING_COUNTER = """() => {
  window.counterLog = {opens: 0, events: []};
  const source = new EventSource("/count");
  window.counterSource = source;
  source.onopen = () => { window.counterLog.opens += 1; };
  source.addEventListener("counter", (e) => {
    window.counterLog.events.push([e.lastEventId, e.data, window.counterLog.opens]);
  });
}"""


def test_eventsource_reconnect_sends_last_event_id(simple_server, page):
    """Unlike the page, this EventSource is left open when /count ends: the browser
    reconnects by itself with Last-Event-ID: 10, and the server resumes after it (sends
    nothing) instead of starting over."""
    count_requests = []
    page.on(
        "request",
        lambda r: count_requests.append(r.all_headers()) if r.url.endswith("/count") else None,
    )
    page.goto(f"{simple_server}/")
    page.evaluate("() => { counterSource.close(); timeSource.close(); }")
    page.evaluate(RECONNECTING_COUNTER)
    # Three opens: the first stream and two reconnects, so the first reconnect's stream has
    # been read to its end (the second reconnect only follows that end).
    page.wait_for_function("() => window.counterLog.opens >= 3", timeout=45_000)
    page.evaluate("() => window.counterSource.close()")
    log = page.evaluate("() => window.counterLog")
    assert log["events"] == [[str(i), str(i), 1] for i in range(1, 11)]
    headers = [h for h in count_requests if "last-event-id" in h]
    assert len(headers) >= 2, count_requests
    assert all(h["last-event-id"] == "10" for h in headers), headers


def test_sigterm_drains_an_open_stream():
    """SIGTERM with a /time stream open: the stream ends cleanly (terminating chunk) and
    the server exits with 0, well before the graceful timeout."""
    with ExampleServer("examples/sse_simple_server.py") as server:
        with httpx.Client(timeout=10) as client:
            with client.stream("GET", f"{server.base_url}/time") as response:
                assert response.headers["content-type"].startswith("text/event-stream")
                lines = response.iter_lines()
                assert next(lines) == "event: time"
                start = time.monotonic()
                code = server.stop(timeout=20)
                elapsed = time.monotonic() - start
                rest = list(lines)  # raises if the stream was cut, not ended
    assert code == 0, server.log
    assert elapsed < 5, (elapsed, server.log)
    assert "graceful timeout" not in server.log
    assert all(not line.startswith("event:") or line == "event: time" for line in rest)
