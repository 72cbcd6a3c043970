"""The benchmark's C load client (bench/client/loadclient): its counting, and every mode.

(a) ``loadclient count`` reads a recorded HTTP response from stdin, in reads of 1, 2, 3, 7,
    4096 and random sizes, and must count exactly the events a WHATWG client dispatches.
    The streams come from conduit's own encoder (multi-line data, empty data, unicode,
    comments) plus hand-written lines a client must not count (fields without data,
    near-miss names), with LF, CR, CRLF or mixed line ends, a BOM, an unterminated tail;
    they are framed as chunked (random chunk sizes, 1-byte chunks, extensions, trailers),
    Content-Length or close-delimited HTTP/1.0 responses. ``sse_spec`` (the independent
    reader of the SSE tests) checks the expected count first.
(b) Every network mode against a real conduit server, in-process on port 0.

The client is built with ``make -C bench/client``: without gcc/make (or off Linux) the
tests are skipped, unless CI or CONDUIT_EXTENSIONS=1 is set, where they fail instead.
"""

from __future__ import annotations

import importlib.util
import json
import os
import random
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import sse_spec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conduit.config import Config
from conduit.http.sse import comment, encode_event
from conduit.server.server import Server

ROOT = Path(__file__).resolve().parents[2]
CLIENT_DIR = ROOT / "bench" / "client"
CLIENT = CLIENT_DIR / "loadclient"
READ_SIZES = (1, 2, 3, 7, 4096)


# -- building ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def loadclient() -> str:
    strict = bool(os.environ.get("CI")) or os.environ.get("CONDUIT_EXTENSIONS") == "1"
    missing = [tool for tool in ("make", "gcc") if shutil.which(tool) is None]
    if missing or not sys.platform.startswith("linux"):
        reason = (f"bench/client/loadclient needs {' and '.join(missing)} to build"
                  if missing else "bench/client/loadclient uses epoll: Linux only")
        if strict:
            pytest.fail(f"{reason} (CI or CONDUIT_EXTENSIONS=1 is set: it must build)")
        pytest.skip(reason)
    out = subprocess.run(["make", "-s", "-C", str(CLIENT_DIR)], capture_output=True,
                         text=True)
    if out.returncode != 0:
        pytest.fail(f"make -C bench/client failed:\n{out.stdout}{out.stderr}")
    return str(CLIENT)


def run_client(client: str, *args, stdin: bytes | None = None, timeout: float = 60):
    """(exit status, the JSON object printed, stderr)."""
    out = subprocess.run([client, *map(str, args)], input=stdin, capture_output=True,
                         timeout=timeout)
    lines = out.stdout.decode().strip().splitlines()
    assert len(lines) == 1, f"expected one JSON line, got {out.stdout!r} ({out.stderr!r})"
    return out.returncode, json.loads(lines[0]), out.stderr.decode()


def count(client: str, raw: bytes, read_size: int, seed: int | None = None) -> dict:
    args = ["count", "--read-size", read_size]
    if seed is not None:
        args += ["--seed", seed]
    status, result, err = run_client(client, *args, stdin=raw)
    assert status == 0, err
    return result


# -- generated event streams ---------------------------------------------------------------

PIECES = ["a", "x y", " ", ":", "data: x", "é", "\u2028", "😀", "\ufeff", "\n", "\r", "\r\n",
          "\r\r", "\n\n", ""]
texts = st.one_of(
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=20),
    st.lists(st.sampled_from(PIECES), max_size=8).map("".join),
)
# Whole items: (frame with LF line ends, events a client dispatches for it).
data_events = st.builds(
    lambda data, event, id_, retry: (encode_event(data, event=event, id=id_, retry=retry), 1),
    texts,
    st.one_of(st.none(), st.sampled_from(["message", "tick", "", "é"])),
    st.one_of(st.none(), st.integers(0, 10**9), st.sampled_from(["", "a-1"])),
    st.one_of(st.none(), st.integers(0, 5000)),
)
comments = st.builds(lambda text: (comment(text), 0), texts)
HAND_WRITTEN = [
    (b"event: nodata\nid: 5\n\n", 0),   # fields without data: nothing is dispatched
    (b"retry: 10\n\n", 0),
    (b"id\n\n", 0),
    (b"\n", 0),                          # a blank line alone
    (b"dat: x\n\n", 0),                  # near misses of "data"
    (b"Data: x\n\n", 0),
    (b"datas: x\n\n", 0),
    (b" data: x\n\n", 0),
    (b":data: x\n\n", 0),
    (b"data\n\n", 1),                    # a data field with an empty value
    (b"data:\n\n", 1),
    (b"data:x\ndata\nevent: e\n\n", 1),
    (b"d\nda\ndat\n\n", 0),
]
items = st.one_of(data_events, data_events, comments, st.sampled_from(HAND_WRITTEN))
LINE_ENDS = {"lf": b"\n", "cr": b"\r", "crlf": b"\r\n"}


def with_line_ends(stream: bytes, style: str, rng: random.Random) -> bytes:
    """``stream`` (every LF a line end) with its line ends as ``style`` says."""
    segments = stream.split(b"\n")
    out = [segments[0]]
    previous = b""
    for before, segment in zip(segments, segments[1:], strict=False):
        if style == "mixed":
            choices = [b"\n", b"\r", b"\r\n"]
            if previous == b"\r" and before == b"":
                choices = [b"\r", b"\r\n"]  # CR then LF would be one line end, not two
            end = rng.choice(choices)
        else:
            end = LINE_ENDS[style]
        out += [end, segment]
        previous = end
    return b"".join(out)


@st.composite
def event_streams(draw):
    """(SSE body bytes, events a client dispatches)."""
    chosen = draw(st.lists(items, max_size=25))
    rng = random.Random(draw(st.integers(0, 2**32)))
    body = b"".join(frame for frame, _ in chosen)
    expected = sum(n for _, n in chosen)
    if draw(st.booleans()):
        body += draw(st.sampled_from([b"data: never ended", b"data: x\n", b"event: y\ndata"]))
    body = with_line_ends(body, draw(st.sampled_from(["lf", "cr", "crlf", "mixed"])), rng)
    if draw(st.booleans()):
        body = b"\xef\xbb\xbf" + body
    # the independent reader agrees with the construction
    assert len(sse_spec.parse(body).events) == expected
    return body, expected


HEAD = b"Content-Type: text/event-stream; charset=utf-8\r\nCache-Control: no-cache\r\n"


@st.composite
def chunked(draw, body: bytes) -> bytes:
    rng = random.Random(draw(st.integers(0, 2**32)))
    largest = draw(st.sampled_from([1, 2, 5, 17, 300, 5000]))
    out = [draw(st.sampled_from([b"", b"HTTP/1.1 100 Continue\r\n\r\n"])),
           b"HTTP/1.1 200 OK\r\n", HEAD, b"Transfer-Encoding: chunked\r\n\r\n"]
    i = 0
    while i < len(body):
        n = min(rng.randint(1, largest), len(body) - i)
        size = rng.choice(["%x", "%X", "%04x"]) % n
        ext = rng.choice(["", "", ";ext=1", '; name="a;b"', ";a;b=c", "  "])
        out.append(f"{size}{ext}\r\n".encode() + body[i:i + n] + b"\r\n")
        i += n
    out.append(rng.choice([b"0\r\n\r\n", b"000;last\r\n\r\n", b"0\r\nX-Trailer: yes\r\n\r\n"]))
    return b"".join(out)


@st.composite
def responses(draw):
    """(raw HTTP response, events it carries)."""
    body, expected = draw(event_streams())
    framing = draw(st.sampled_from(["chunked", "close", "length"]))
    if framing == "chunked":
        raw = draw(chunked(body))
    elif framing == "close":
        raw = b"HTTP/1.0 200 OK\r\n" + HEAD + b"\r\n" + body
    else:
        raw = b"HTTP/1.1 200 OK\r\n" + HEAD + b"Content-Length: %d\r\n\r\n" % len(body) + body
    return raw, expected


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(response=responses(), seed=st.integers(0, 2**31))
def test_count_any_split(loadclient, response, seed):
    raw, expected = response
    for read_size in READ_SIZES:
        result = count(loadclient, raw, read_size)
        assert result == {"events": expected, "bytes": len(raw),
                          "body_bytes": result["body_bytes"], "complete": True}, read_size
    result = count(loadclient, raw, 64, seed=seed)
    assert (result["events"], result["complete"]) == (expected, True)


@pytest.mark.parametrize("style", ["lf", "cr", "crlf", "mixed"])
def test_count_hand_written(loadclient, style):
    """Every hand-written case, alone and together, whatever the reads."""
    rng = random.Random(style)
    for frame, expected in [*HAND_WRITTEN, (b"".join(f for f, _ in HAND_WRITTEN),
                                            sum(n for _, n in HAND_WRITTEN))]:
        body = with_line_ends(frame, style, rng)
        assert len(sse_spec.parse(body).events) == expected
        raw = b"HTTP/1.0 200 OK\r\n\r\n" + body
        for read_size in READ_SIZES:
            assert count(loadclient, raw, read_size)["events"] == expected, (body, read_size)


def test_count_examples(loadclient):
    frames = (encode_event("one") + encode_event("two\nlines") + comment("c") +
              encode_event("") + b"event: x\n\n" + encode_event("é", event="u", id=3))
    raw = b"HTTP/1.0 200 OK\r\n\r\n" + frames.replace(b"\n", b"\r\n")
    for read_size in READ_SIZES:
        assert count(loadclient, raw, read_size)["events"] == 4
    # a CR at the end of one read and an LF at the start of the next are one line end
    raw = b"HTTP/1.0 200 OK\r\n\r\ndata: a\r\n\r\ndata: b\r\r"
    assert count(loadclient, raw, 1)["events"] == 2
    assert count(loadclient, raw, len(raw) - 3)["events"] == 2


def test_count_incomplete_and_malformed(loadclient):
    body = encode_event("a") * 3
    whole = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n" % len(body) + body
    result = count(loadclient, whole + b"\r\n", 1)  # no last chunk: cut short
    assert (result["events"], result["complete"]) == (3, False)
    result = count(loadclient, b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + body, 7)
    assert (result["events"], result["complete"]) == (3, False)
    for bad in (b"SSE/1.0 200 OK\r\n\r\n",
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nab\r\n",
                b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n"):
        status, result, err = run_client(loadclient, "count", "--read-size", 2, stdin=bad)
        assert status == 1 and result["complete"] is False and result["error"], bad
        assert result["error"] in err


def test_bad_arguments(loadclient):
    status, result, err = run_client(loadclient, "stream", "--port", 1, "--nope", 2)
    assert status == 2 and "--nope" in result["error"] and "usage" in err
    status, result, _ = run_client(loadclient, "fanout", "--port", "x")
    assert status == 2


# -- against a real conduit server ---------------------------------------------------------

def bench_app():
    """The app the harness benchmarks: bench/apps/conduit_bench.py itself."""
    spec = importlib.util.spec_from_file_location(
        "conduit_bench_app", ROOT / "bench" / "apps" / "conduit_bench.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.app


@pytest.fixture(scope="module")
def server():
    srv = Server(bench_app(), Config(host="127.0.0.1", port=0, access_log=False,
                                     log_level="warning", max_connections=2000))
    _, port = srv.bind()
    thread = threading.Thread(target=srv.run, kwargs={"install_signals": False}, daemon=True)
    thread.start()
    yield port
    srv.loop.call_soon_threadsafe(srv.shutdown)
    thread.join(15)
    assert not thread.is_alive(), "the server did not stop"


def test_stream(loadclient, server):
    status, result, err = run_client(loadclient, "stream", "--port", server, "--path",
                                     "/count?n=20000", "--expect", 20000)
    assert status == 0, err
    assert result["events"] == 20000 and result["complete"] is True
    assert result["bytes"] > result["body_bytes"] > 20000 * 20
    assert result["seconds"] > 0 and result["cpu_seconds"] >= 0
    status, result, err = run_client(loadclient, "stream", "--port", server, "--path",
                                     "/count?n=10", "--expect", 11)
    assert status == 1 and result["events"] == 10 and "expected 11" in err


def test_stream_timeout(loadclient, server):
    status, result, err = run_client(loadclient, "stream", "--port", server, "--path",
                                     "/events", "--timeout", 0.3)
    assert status == 1 and "timed out" in result["error"] and result["complete"] is False


def test_fanout(loadclient, server):
    status, result, err = run_client(loadclient, "fanout", "--port", server, "--subscribers",
                                     20, "--events", 50, "--size", 16)
    assert status == 0, err
    assert result["deliveries"] == 20 * 50 and result["missing"] == 0
    assert result["subscribers"] == 20 and result["seconds"] > 0
    # one event per request, to /pub, and registration by time instead of a first byte
    status, result, err = run_client(
        loadclient, "fanout", "--port", server, "--subscribers", 5, "--events", 3,
        "--publish-path", "/pub", "--publish-requests", 3, "--publish-body", "hi",
        "--registered-after-ms", 20)
    assert status == 0, err
    assert result["deliveries"] == 15


def test_fanout_failures(loadclient, server):
    status, result, err = run_client(loadclient, "fanout", "--port", server, "--subscribers",
                                     3, "--events", 1, "--sub-path", "/nowhere")
    assert status == 1 and "HTTP status 404" in err
    # a publish that delivers fewer events than expected: missing, after --timeout
    status, result, err = run_client(loadclient, "fanout", "--port", server, "--subscribers",
                                     4, "--events", 3, "--publish-path", "/publish?n=2",
                                     "--timeout", 0.5)
    assert status == 1 and result["deliveries"] == 8 and result["missing"] == 4


def test_latency(loadclient, server):
    status, result, err = run_client(loadclient, "latency", "--port", server, "--subscribers",
                                     10, "--rate", 50, "--duration", 1)
    assert status == 0, err
    assert result["published"] == 50 and result["received"] == 50 * 10
    assert result["missing"] == 0 and result["unparsed"] == 0
    p50, p90, p99, top = (result[k] for k in ("p50_ms", "p90_ms", "p99_ms", "max_ms"))
    assert all(isinstance(v, float) for v in (p50, p90, p99, top))
    assert 0 <= p50 <= p90 <= p99 <= top < 10_000
    assert 0.9 < result["seconds"] < 30


def test_ticks(loadclient, server):
    """Server-paced streams (bench app /ticks): every event counted and sampled, the
    streams' ends are not failures; a stream shorter than --events is."""
    status, result, err = run_client(loadclient, "ticks", "--port", server, "--subscribers",
                                     20, "--events", 30, "--sub-path", "/ticks?n=30&rate=200")
    assert status == 0, err
    assert result["received"] == 20 * 30 and result["missing"] == 0
    assert result["unparsed"] == 0 and result["events_per_stream"] == 30
    p50, p90, p99, top = (result[k] for k in ("p50_ms", "p90_ms", "p99_ms", "max_ms"))
    assert 0 <= p50 <= p90 <= p99 <= top < 10_000
    status, result, err = run_client(loadclient, "ticks", "--port", server, "--subscribers",
                                     3, "--events", 30, "--sub-path", "/ticks?n=10&rate=500")
    assert status == 1 and "ended the stream after 10 events" in err


def test_latency_slow_subscribers(loadclient, server):
    status, result, err = run_client(loadclient, "latency", "--port", server, "--subscribers",
                                     6, "--slow", 2, "--rate", 40, "--duration", 0.5,
                                     "--slow-rcvbuf", 4096)
    assert status == 0, err
    assert result["slow"] == 2 and result["published"] == 20
    assert result["received"] == 20 * 4 and isinstance(result["p99_ms"], float)


def test_hold(loadclient, server):
    status, result, err = run_client(loadclient, "hold", "--port", server, "--subscribers", 50,
                                     "--seconds", 0.2, "--then-publish-path",
                                     "/publish?n=1&size=16")
    assert status == 0, err
    assert "registered 50\n" in err
    assert (result["registered"], result["delivered"]) == (50, 50)
    assert result["seconds"] >= 0.2
