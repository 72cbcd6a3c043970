"""examples/monitoring.py end to end: /metrics read with httpx-sse (shapes, plausible real
figures, counters that move), and the page's charts and numbers in headless Chromium."""

from __future__ import annotations

import json
import os
import socket

import httpx
import pytest
from e2e_harness import ExampleServer
from httpx_sse import connect_sse

TIMEOUT = httpx.Timeout(10.0)
SERVER_KEYS = {"connections", "streams", "requests", "events_sent", "errors_by_status",
               "uptime_seconds"}


@pytest.fixture(scope="module")
def server():
    server = ExampleServer("examples/monitoring.py", "--no-access-log")
    try:
        yield server
    finally:
        code = server.stop(timeout=20)
    assert code == 0, f"exited with {code} after SIGTERM\n{server.log}"
    assert "graceful timeout" not in server.log, server.log


def number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_sample(m: dict, pid: int) -> None:
    assert set(m) == {"time", "cpu", "memory", "process", "server"}, m
    cpu, memory, process, stats = m["cpu"], m["memory"], m["process"], m["server"]
    assert number(cpu["percent"]) and 0 <= cpu["percent"] <= 100, cpu
    assert cpu["cores"] == os.cpu_count(), cpu
    assert len(cpu["load"]) == 3 and all(number(v) and v >= 0 for v in cpu["load"]), cpu
    assert set(memory) == {"total_bytes", "available_bytes", "used_bytes", "percent"}
    physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    assert abs(memory["total_bytes"] / physical - 1) < 0.01, (memory, physical)
    assert 0 < memory["available_bytes"] <= memory["total_bytes"], memory
    assert memory["used_bytes"] == memory["total_bytes"] - memory["available_bytes"]
    assert 0 <= memory["percent"] <= 100
    assert process["pid"] == pid, process  # the server's own process, not ours
    assert 5 * 2**20 < process["rss_bytes"] < 2 * 2**30, process
    assert process["threads"] >= 1 and number(process["cpu_percent"])
    assert 0 <= process["cpu_percent"] <= 100 * os.cpu_count(), process
    assert set(stats) == SERVER_KEYS, stats
    assert stats["connections"] >= 1 and stats["streams"] >= 1, stats  # this stream
    assert stats["requests"] >= 1 and stats["uptime_seconds"] > 0, stats
    assert all(number(stats[k]) for k in SERVER_KEYS - {"errors_by_status"}), stats


def test_metrics_stream_has_real_figures_that_move(server):
    base = server.base_url
    # An error for errors_by_status to count. It counts the requests conduit itself
    # rejects (malformed, timed out); a route's 404 or a handler's 500 is not in it.
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\n\r\n")  # no Host: 400
        assert sock.recv(100).startswith(b"HTTP/1.1 400 ")
    with httpx.Client(timeout=TIMEOUT) as client, \
            connect_sse(client, "GET", f"{base}/metrics?interval=0.3") as source:
        assert source.response.headers["content-type"].startswith("text/event-stream")
        samples = []
        for sse in source.iter_sse():
            assert sse.event == "metrics", sse
            samples.append(json.loads(sse.data))
            if len(samples) == 3:
                break
    for m in samples:
        check_sample(m, server.proc.pid)
    first, second, third = (m["server"] for m in samples)
    # Each metrics event sent is counted by the time the next one is sampled.
    assert first["events_sent"] < second["events_sent"] < third["events_sent"], samples
    assert first["uptime_seconds"] < second["uptime_seconds"] < third["uptime_seconds"]
    assert [m["time"] for m in samples] == sorted(m["time"] for m in samples)
    assert second["errors_by_status"].get("400", 0) >= 1, second


def test_stats_follow_other_streams_and_requests(server):
    base = server.base_url
    now = httpx.get(f"{base}/metrics/now", timeout=TIMEOUT).json()
    assert set(now["server"]) == SERVER_KEYS and now["server"]["requests"] >= 1, now
    with httpx.Client(timeout=TIMEOUT) as client:
        with connect_sse(client, "GET", f"{base}/burst?n=500") as burst:
            events = [sse.event for sse in burst.iter_sse()]
        assert events == ["tick"] * 500 + ["done"]
        with connect_sse(client, "GET", f"{base}/metrics") as source:
            sample = json.loads(next(source.iter_sse()).data)
    check_sample(sample, server.proc.pid)
    assert sample["server"]["events_sent"] >= now["server"]["events_sent"] + 501, sample
    assert sample["server"]["requests"] >= now["server"]["requests"] + 2, sample


@pytest.mark.parametrize("query", ["interval=x", "interval=0.01", "interval=60"])
def test_bad_interval_is_400(server, query):
    response = httpx.get(f"{server.base_url}/metrics?{query}", timeout=TIMEOUT)
    assert response.status_code == 400 and "interval" in response.json()["error"]


# -- the page in headless Chromium ----------------------------------------------------------

def test_page_draws_the_charts_and_updates_the_numbers(server, page):
    page.goto(f"{server.base_url}/")
    assert page.title() == "conduit: server monitoring"
    page.wait_for_function("() => window.monitor.count >= 2")
    first = page.text_content("#events-sent")
    page.click("#burst")  # 20,000 events: the events chart gets a spike
    page.wait_for_function(
        "() => document.getElementById('burst-note').textContent.startsWith('received 20,000')")
    page.wait_for_function("(n) => window.monitor.count >= n",
                           arg=page.evaluate("window.monitor.count") + 2)
    state = page.evaluate("""() => ({
        count: window.monitor.count, draws: window.monitor.draws,
        points: [...document.querySelectorAll("canvas")].map((c) => Number(c.dataset.points)),
        rates: window.monitor.samples.map((s) => s.rate),
        sent: window.monitor.samples.map((s) => s.server.events_sent),
    })""")
    assert state["count"] >= 4 and state["draws"] >= 2 * state["count"], state
    assert all(p >= 4 for p in state["points"]), state
    assert state["sent"] == sorted(state["sent"]) and state["sent"][-1] >= 20_000, state
    assert max(r for r in state["rates"] if r is not None) > 1000, state  # the burst
    last = page.text_content("#events-sent")
    assert int(last.replace(",", "")) > int(first.replace(",", "")) + 20_000, (first, last)
    assert int(page.text_content("#connections")) >= 1
    assert int(page.text_content("#streams")) >= 1
    assert page.text_content("#cpu").endswith(" %")
    assert page.text_content("#rss").endswith("MiB")
    assert page.text_content("#connection") == "connected"
    # Something was drawn: the CPU chart's canvas has pixels of the machine line's colour.
    blue = page.evaluate("""() => {
        const c = document.getElementById("cpu-chart");
        const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
        let n = 0;
        for (let i = 0; i < d.length; i += 4)
          if (d[i] === 0x25 && d[i + 1] === 0x63 && d[i + 2] === 0xeb) n++;
        return n;
    }""")
    assert blue > 10, blue
