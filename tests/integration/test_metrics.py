"""``app.metrics("/metrics")``: the Prometheus text format (0.0.4) over a real socket.

The exposition is read by a strict parser written here (comment lines, metric and label
names, label value escapes, numbers, one HELP and one TYPE per family, before its
samples), and the values are checked to move as they should: after subscribing,
publishing, streaming, a slow subscriber dropped, and bad requests.
"""

from __future__ import annotations

import re
import socket

import pytest
from integration_helpers import RawClient, request, subscribe, wait_for

from conduit import App, HTTPError, SSEEvent
from conduit.app.metrics import escape_label

CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"
NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL_NAME = r"[a-zA-Z_][a-zA-Z0-9_]*"
TYPES = ("counter", "gauge", "histogram", "summary", "untyped")


# -- a strict parser for the text exposition format 0.0.4 ---------------------------------
def _unescape(text: str, allowed: str) -> str:
    out = []
    i = 0
    while i < len(text):
        char = text[i]
        if char == "\\":
            assert i + 1 < len(text), f"dangling backslash in {text!r}"
            nxt = text[i + 1]
            assert nxt in allowed, f"bad escape \\{nxt} in {text!r}"
            out.append({"\\": "\\", "n": "\n", '"': '"'}[nxt])
            i += 2
            continue
        out.append(char)
        i += 1
    return "".join(out)


def _labels(text: str) -> tuple:
    """``a="x",b="y"`` -> (("a", "x"), ("b", "y")); label values may hold escapes."""
    labels = []
    i = 0
    while i < len(text):
        match = re.compile(LABEL_NAME + '="').match(text, i)
        assert match, f"bad label at {text[i:]!r}"
        name = match.group(0)[:-2]
        i = match.end()
        value = []
        while True:
            assert i < len(text), f"unterminated label value in {text!r}"
            char = text[i]
            if char == "\\":
                value.append(text[i:i + 2])
                i += 2
                continue
            if char == '"':
                i += 1
                break
            assert char != "\n", text
            value.append(char)
            i += 1
        labels.append((name, _unescape("".join(value), '\\n"')))
        if i < len(text):
            assert text[i] == ",", f"expected ',' at {text[i:]!r}"
            i += 1
    names = [n for n, _ in labels]
    assert len(names) == len(set(names)), f"duplicate label in {text!r}"
    return tuple(labels)


def _number(text: str) -> float:
    if text in ("+Inf", "-Inf", "NaN"):
        return float(text.replace("Inf", "inf"))
    assert re.fullmatch(r"-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?", text), f"bad number {text!r}"
    return float(text)


def parse_exposition(text: str) -> dict:
    """{family: {"type", "help", "samples": {labels tuple: value}}}; asserts the format."""
    assert text.endswith("\n"), "the exposition must end with a newline"
    families: dict = {}
    sample_re = re.compile(rf"({NAME})(?:\{{(.*)\}})? (\S+)(?: (-?[0-9]+))?")
    for line in text[:-1].split("\n"):
        assert line, "no empty lines"
        if line.startswith("#"):
            match = re.fullmatch(rf"# (HELP|TYPE) ({NAME}) (.*)", line)
            if match is None:
                continue  # a plain comment
            kind, name, rest = match.groups()
            family = families.setdefault(name, {"type": None, "help": None, "samples": {}})
            assert not family["samples"], f"{kind} of {name} after its samples"
            if kind == "HELP":
                assert family["help"] is None, f"two HELP lines for {name}"
                family["help"] = _unescape(rest, "\\n")
            else:
                assert family["type"] is None, f"two TYPE lines for {name}"
                assert rest in TYPES, line
                family["type"] = rest
            continue
        match = sample_re.fullmatch(line)
        assert match, f"bad sample line {line!r}"
        name, labels, value, _ = match.groups()
        assert name in families and families[name]["type"], f"{name}: no TYPE before it"
        key = _labels(labels) if labels else ()
        samples = families[name]["samples"]
        assert key not in samples, f"duplicate sample {line!r}"
        samples[key] = _number(value)
    return families


def test_parser_rejects_what_the_format_forbids():
    good = '# HELP m h\n# TYPE m gauge\nm{a="x\\"y\\\\z\\n"} 1.5\n'
    assert parse_exposition(good)["m"]["samples"] == {(("a", 'x"y\\z\n'),): 1.5}
    for bad in ("m 1\n",                                   # no TYPE
                "# TYPE m gauge\nm 1",                     # no final newline
                "# TYPE m gauge\nm{a=\"x\\q\"} 1\n",       # bad escape
                "# TYPE m gauge\nm{a=\"x\"} one\n",        # not a number
                "# TYPE m gauge\nm 1\nm 2\n",              # duplicate sample
                "# TYPE m gauge\n# TYPE m counter\n"):     # two TYPE lines
        with pytest.raises(AssertionError):
            parse_exposition(bad)


# -- the server side --------------------------------------------------------------------
def make_app(budget_bytes: int = 4 * 1024 * 1024) -> App:
    app = App()
    app.metrics("/metrics")
    news = app.channel("news", history=2000, budget_bytes=budget_bytes)
    app.channel('odd "name" \\ with\nnewline')

    @app.get("/events")
    def events(request):
        return news.subscribe(request)

    @app.get("/count")
    def count(request):
        for i in range(5):
            yield SSEEvent(i)

    @app.get("/teapot")
    def teapot(request):
        raise HTTPError(418, "short and stout")

    return app


class Scraper:
    def __init__(self, server) -> None:
        self.server = server

    def __call__(self) -> dict:
        resp = request(self.server.address,
                       b"GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        assert resp.status == 200, resp
        assert resp.header(b"Content-Type") == CONTENT_TYPE, resp.raw
        families = parse_exposition(resp.body.decode("utf-8"))
        for name, family in families.items():
            assert name.startswith("conduit_"), name
            assert family["help"], f"{name} has no HELP"
            if family["type"] == "counter":
                assert name.endswith("_total"), name
        return families

    def value(self, name: str, **labels) -> float:
        return value_of(self(), name, **labels)


def value_of(families: dict, name: str, **labels) -> float:
    key = tuple(sorted(labels.items()))
    samples = {tuple(sorted(k)): v for k, v in families[name]["samples"].items()}
    assert key in samples, f"{name}{labels} not in {samples}"
    return samples[key]


@pytest.fixture
def scrape(serve):
    server = serve(make_app(), heartbeat_seconds=0)
    return Scraper(server)


def test_types_and_first_values(scrape):
    families = scrape()
    expected = {
        "conduit_connections": "gauge", "conduit_streams": "gauge",
        "conduit_requests_total": "counter", "conduit_events_delivered_total": "counter",
        "conduit_outbox_bytes": "gauge", "conduit_error_responses_total": "counter",
        "conduit_connections_refused_total": "counter",
        "conduit_write_timeouts_total": "counter", "conduit_draining": "gauge",
        "conduit_uptime_seconds": "gauge", "conduit_channel_subscribers": "gauge",
        "conduit_channel_events_published_total": "counter",
        "conduit_channel_slow_subscribers_dropped_total": "counter",
        "conduit_channel_subscriber_lag_max_bytes": "gauge",
        "conduit_channel_subscriber_lag_bytes": "gauge",
    }
    assert {name: f["type"] for name, f in families.items()} == expected
    assert value_of(families, "conduit_connections") == 1  # this scrape
    assert value_of(families, "conduit_streams") == 0
    assert value_of(families, "conduit_requests_total") == 1
    assert value_of(families, "conduit_draining") == 0
    assert value_of(families, "conduit_uptime_seconds") > 0
    assert families["conduit_error_responses_total"]["samples"] == {}
    for name in ("conduit_channel_subscribers", "conduit_channel_events_published_total",
                 "conduit_channel_slow_subscribers_dropped_total"):
        assert value_of(families, name, channel="news") == 0
    # The odd channel name went through label escaping and back.
    odd = 'odd "name" \\ with\nnewline'
    assert value_of(families, "conduit_channel_subscribers", channel=odd) == 0
    assert escape_label(odd) == 'odd \\"name\\" \\\\ with\\nnewline'


def test_subscribe_publish_stream_and_errors_move_the_values(scrape):
    server = scrape.server
    news = server.server.app.hub.channels["news"]
    before = scrape()
    delivered = value_of(before, "conduit_events_delivered_total")
    with subscribe(server.address, "/events") as one, \
            subscribe(server.address, "/events") as two:
        now = scrape()
        assert value_of(now, "conduit_channel_subscribers", channel="news") == 2
        assert value_of(now, "conduit_streams") == 2
        assert value_of(now, "conduit_connections") == 3
        for i in range(3):
            news.publish(f"event {i}")
        for sub in (one, two):
            assert [e["data"] for e in sub.events(3)] == ["event 0", "event 1", "event 2"]
        now = scrape()
        assert value_of(now, "conduit_channel_events_published_total", channel="news") == 3
        # 3 frames to each of 2 subscribers, counted as they were handed to the sockets
        assert value_of(now, "conduit_events_delivered_total") == delivered + 6
        assert value_of(now, "conduit_channel_subscriber_lag_max_bytes", channel="news") == 0
    wait_for(lambda: scrape.value("conduit_channel_subscribers", channel="news") == 0)
    assert scrape.value("conduit_streams") == 0
    # A generator stream of 5 events; the count stays after the stream ended.
    resp = request(server.address, b"GET /count HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    assert resp.body.count(b"data: ") == 5
    assert scrape.value("conduit_events_delivered_total") == delivered + 11
    # Errors by status: a malformed request (answered by conduit), a 404, a 418.
    assert request(server.address, b"GET / HTTP/1.1\r\n\r\n").status == 400  # no Host
    assert request(server.address, b"GET /nope HTTP/1.1\r\nHost: t\r\n\r\n").status == 404
    assert request(server.address, b"GET /teapot HTTP/1.1\r\nHost: t\r\n\r\n").status == 418
    assert request(server.address, b"GET / HTTP/1.1\r\n\r\n").status == 400
    families = scrape()
    assert families["conduit_error_responses_total"]["samples"] == {
        (("status", "400"),): 2, (("status", "404"),): 1, (("status", "418"),): 1}
    requests = value_of(families, "conduit_requests_total")
    assert scrape.value("conduit_requests_total") == requests + 1


def test_slow_subscriber_lag_then_drop(serve):
    """A subscriber that stops reading: its lag shows in the channel's lag gauges, then
    it passes its budget and is dropped (the counter moves, the subscriber count falls)."""
    app = make_app(budget_bytes=64 * 1024)
    server = serve(app, heartbeat_seconds=0, high_water_bytes=8192, low_water_bytes=2048)
    scrape = Scraper(server)
    news = app.hub.channels["news"]
    # Small kernel buffers for the slow client (see test_channels' slow consumer scene).
    server.server.listener.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
    slow = subscribe(server.address, "/events", rcvbuf=4096)
    lags = []
    try:
        for _ in range(400):
            for _ in range(5):
                news.publish("x" * 2000)
            families = scrape()
            if value_of(families, "conduit_channel_slow_subscribers_dropped_total",
                        channel="news"):
                break
            lags.append((
                value_of(families, "conduit_channel_subscriber_lag_max_bytes", channel="news"),
                value_of(families, "conduit_channel_subscriber_lag_bytes", channel="news"),
                value_of(families, "conduit_outbox_bytes")))
        else:
            raise AssertionError("the slow subscriber was never dropped")
        # Before the drop the lag was seen, and it grew; one subscriber: max == sum.
        assert lags and max(lag for lag, _, _ in lags) > 0, lags
        assert all(lag_max == lag_sum for lag_max, lag_sum, _ in lags), lags
        assert max(outbox for _, _, outbox in lags) > 0, lags
        assert value_of(families, "conduit_channel_subscribers", channel="news") == 0
        assert value_of(families, "conduit_channel_subscriber_lag_max_bytes",
                        channel="news") == 0
        published = value_of(families, "conduit_channel_events_published_total",
                             channel="news")
        assert published == 5 * (len(lags) + 1)
    finally:
        slow.close()


def test_no_metrics_route_unless_asked(serve):
    server = serve(App())
    assert request(server.address, b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n").status == 404


def test_refused_connections_are_counted(serve):
    server = serve(make_app(), heartbeat_seconds=0, max_connections_per_client=2)
    scrape = Scraper(server)
    with subscribe(server.address, "/events"), subscribe(server.address, "/events") as two:
        with RawClient(server.address) as refused:  # a third one from 127.0.0.1
            assert refused.read_to_eof() == b""
        two.close()
        wait_for(lambda: server.connection_count() == 1)
        families = scrape()  # the second connection now
    assert families["conduit_connections_refused_total"]["samples"] == {
        (("reason", "draining"),): 0, (("reason", "max_connections"),): 0,
        (("reason", "max_connections_per_client"),): 1}
    assert value_of(families, "conduit_write_timeouts_total") == 0
