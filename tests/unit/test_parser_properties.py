"""Property tests of the HTTP/1.1 request parser (both twins).

(a) generated valid pipelines, fed in arbitrary pieces, parse to exactly what was generated;
(b) random bytes and mutated valid requests give requests or a ProtocolError with one of
    the parser's statuses, never another exception, whatever the feeding;
(c) the compiled and the pure twin agree on random and mutated input.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from parser_helpers import ERROR_STATUSES, Outcome, Req, req, run_pieces, split

from conduit import _ext

TWINS = _ext.twins("conduit.http", "parser")


def with_twin(max_examples: int) -> settings:
    # The ``http_parser`` fixture only hands out a module, so sharing it across examples
    # is safe.
    return settings(
        max_examples=max_examples,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


TCHAR = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
SPECIAL_FIELDS = {"host", "content-length", "transfer-encoding", "connection", "expect"}
# request-target bytes: visible ASCII without '#'
TARGET_CHARS = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) != "#")
HOST_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()*+,;=:"
VALUE_BYTES = [0x09, 0x20, *range(0x21, 0x7F), *range(0x80, 0x100)]

tokens = st.text(alphabet=TCHAR, min_size=1, max_size=12)
field_names = tokens.filter(lambda n: n.lower() not in SPECIAL_FIELDS)
field_values = (
    st.lists(st.sampled_from(VALUE_BYTES), max_size=24).map(bytes).map(lambda v: v.strip(b" \t"))
)
ows = st.sampled_from([b"", b"", b" ", b"\t", b"  ", b" \t "])
methods = st.one_of(
    st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]),
    tokens.filter(lambda m: m.upper() != "CONNECT"),
)


def _random_case(draw, name: str) -> bytes:
    flips = draw(st.lists(st.booleans(), min_size=len(name), max_size=len(name)))
    return "".join(c.upper() if f else c.lower() for c, f in zip(name, flips, strict=True)).encode()


@st.composite
def field_lines(draw, name_strategy=field_names, value_strategy=field_values):
    """A raw field line (random name case, random OWS) and its expected (name, value)."""
    name = draw(name_strategy)
    value = draw(value_strategy)
    raw = _random_case(draw, name) + b":" + draw(ows) + value + draw(ows) + b"\r\n"
    return raw, (name.lower().encode(), value)


def _hex(draw, n: int) -> bytes:
    digits = f"{n:x}"
    if draw(st.booleans()):
        digits = digits.upper()
    return b"0" * draw(st.integers(0, 3)) + digits.encode()


chunk_exts = st.sampled_from([b"", b"", b";a", b";name=value", b" ; x = y", b";a=b;c", b"\t;k"])


@st.composite
def requests(draw, last: bool):
    """(raw bytes, expected Req) of one valid request; non-last requests keep the connection."""
    version = draw(st.sampled_from(["1.1", "1.1", "1.1", "1.0", "1.2"]))
    http11 = version != "1.0"
    method = draw(methods)
    if method == "OPTIONS" and draw(st.booleans()):
        target = "*"
    elif draw(st.integers(0, 4)) == 0:
        target = "http://" + draw(st.sampled_from(["example.com", "a.b:8080", "[::1]"])) + "/"
        target += draw(st.text(alphabet=TARGET_CHARS, max_size=20))
    else:
        target = "/" + draw(st.text(alphabet=TARGET_CHARS, max_size=30))

    lines = [draw(field_lines()) for _ in range(draw(st.integers(0, 6)))]
    if http11 or draw(st.booleans()):
        host = draw(
            st.one_of(st.text(alphabet=HOST_CHARS, max_size=20), st.just("[2001:db8::1]:443"))
        ).encode()
        lines.append(
            (
                _random_case(draw, "Host") + b":" + draw(ows) + host + draw(ows) + b"\r\n",
                (b"host", host),
            )
        )

    framing = draw(st.sampled_from(["none", "length", "chunked"] if http11 else ["none", "length"]))
    body = draw(st.binary(max_size=80)) if framing != "none" else b""
    if framing == "length":
        cl = str(len(body)).encode()
        lines.append((b"Content-Length: " + cl + b"\r\n", (b"content-length", cl)))
    elif framing == "chunked":
        coding = draw(st.sampled_from([b"chunked", b"Chunked", b"CHUNKED"]))
        lines.append((b"Transfer-Encoding: " + coding + b"\r\n", (b"transfer-encoding", coding)))

    # keep_alive per the contract; only the last request may close the connection
    if http11:
        close = last and draw(st.booleans())
        if close:
            conn = draw(st.sampled_from([b"close", b"Close", b"keep-alive, close"]))
            lines.append((b"Connection: " + conn + b"\r\n", (b"connection", conn)))
        elif draw(st.booleans()):
            lines.append((b"Connection: keep-alive\r\n", (b"connection", b"keep-alive")))
        keep_alive = not close
    else:
        keep_alive = not last or draw(st.booleans())
        if keep_alive:
            conn = draw(st.sampled_from([b"keep-alive", b"Keep-Alive"]))
            lines.append((b"Connection: " + conn + b"\r\n", (b"connection", conn)))

    lines = draw(st.permutations(lines))
    raw = draw(st.sampled_from([b"", b"", b"", b"\r\n", b"\r\n\r\n"]))
    raw += f"{method} {target} HTTP/{version}".encode() + b"\r\n"
    raw += b"".join(line for line, _ in lines) + b"\r\n"

    trailers = []
    if framing == "length":
        raw += body
    elif framing == "chunked":
        cuts = draw(st.lists(st.integers(1, max(len(body) - 1, 1)), max_size=4))
        for piece in split(body, cuts):
            raw += _hex(draw, len(piece)) + draw(chunk_exts) + b"\r\n" + piece + b"\r\n"
        raw += b"0" * draw(st.integers(1, 3)) + draw(chunk_exts) + b"\r\n"
        for _ in range(draw(st.integers(0, 3))):
            line, field = draw(field_lines())
            raw += line
            trailers.append(field)
        raw += b"\r\n"

    expected = req(
        method,
        target,
        [field for _, field in lines],
        body,
        version="1.0" if version == "1.0" else "1.1",
        trailers=trailers,
        keep_alive=keep_alive,
    )
    return raw, expected


@st.composite
def pipelines(draw, max_requests: int = 4) -> tuple[bytes, list[Req]]:
    n = draw(st.integers(1, max_requests))
    reqs = [draw(requests(last=i == n - 1)) for i in range(n)]
    return b"".join(raw for raw, _ in reqs), [expected for _, expected in reqs]


def _cuts(data: bytes):
    return st.lists(st.integers(0, len(data)), max_size=8)


# --------------------------------------------------------------------------- (a) valid pipelines


@with_twin(250)
@given(st.data())
def test_valid_pipelines_parse_exactly(http_parser, data):
    raw, expected = data.draw(pipelines())
    pieces = split(raw, data.draw(_cuts(raw), label="cuts"))
    outcome, _ = run_pieces(http_parser, pieces, eof=True)
    assert outcome == Outcome(expected, None)


@with_twin(60)
@given(pipelines(max_requests=2))
def test_valid_pipelines_bytewise(http_parser, generated):
    raw, expected = generated
    outcome, _ = run_pieces(http_parser, [raw[i : i + 1] for i in range(len(raw))], eof=True)
    assert outcome == Outcome(expected, None)


# --------------------------------------------------------------------------- (b) hostile input

SMALL_LIMITS = {
    "max_request_line_bytes": 48,
    "max_header_bytes": 96,
    "max_header_count": 4,
    "max_body_bytes": 24,
}
limit_sets = st.sampled_from([{}, SMALL_LIMITS])
interesting_bytes = st.one_of(
    st.sampled_from(list(b'\r\n :\t\x00\x7f\x80\xff;,=0aFz/#*"')),
    st.integers(0, 255),
)


@st.composite
def mutated(draw) -> bytes:
    """A valid pipeline with a few bytes flipped, inserted or deleted."""
    data = bytearray(draw(pipelines(max_requests=3))[0])
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "insert", "delete"]))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "insert" or not data:
            data.insert(pos, draw(interesting_bytes))
        elif op == "flip":
            data[pos] = draw(interesting_bytes)
        else:
            del data[pos]
    return bytes(data)


hostile = st.one_of(
    st.binary(max_size=300),
    st.binary(max_size=200).map(lambda b: b"GET / HTTP/1.1\r\n" + b),
    st.binary(max_size=200).map(
        lambda b: b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" + b
    ),
    mutated(),
)


def _check_outcome(outcome: Outcome) -> None:
    assert outcome.error is None or outcome.error in ERROR_STATUSES, outcome


@with_twin(300)
@given(st.data())
def test_hostile_input_only_protocol_errors(http_parser, data):
    raw = data.draw(hostile, label="input")
    limits = data.draw(limit_sets, label="limits")
    # run_pieces lets any exception but ProtocolError escape, and checks the error's
    # status, its reason and that the parser stays dead afterwards.
    whole, _ = run_pieces(http_parser, [raw], limits=limits, eof=True)
    _check_outcome(whole)
    pieces = split(raw, data.draw(_cuts(raw), label="cuts"))
    in_pieces, _ = run_pieces(http_parser, pieces, limits=limits, eof=True)
    _check_outcome(in_pieces)
    # How the bytes were cut cannot change the requests, nor whether the input is refused
    # (which status comes first may differ when the input breaks several rules).
    assert in_pieces.requests == whole.requests
    assert (in_pieces.error is None) == (whole.error is None), (whole, in_pieces)


# --------------------------------------------------------------------------- (c) twins agree

needs_both = pytest.mark.skipif(
    set(TWINS) != {"pure", "compiled"}, reason="the compiled twin is not built"
)


@needs_both
@settings(max_examples=250, deadline=None)
@given(st.data())
def test_twins_agree(data):
    raw = data.draw(hostile, label="input")
    limits = data.draw(limit_sets, label="limits")
    pieces = split(raw, data.draw(_cuts(raw), label="cuts"))
    for feed in ([raw], pieces):
        pure, _ = run_pieces(TWINS["pure"], feed, limits=limits, eof=True)
        compiled, _ = run_pieces(TWINS["compiled"], feed, limits=limits, eof=True)
        assert compiled == pure


@needs_both
@settings(max_examples=100, deadline=None)
@given(pipelines())
def test_twins_agree_on_valid_pipelines(generated):
    raw, expected = generated
    for mod in TWINS.values():
        assert run_pieces(mod, [raw], eof=True)[0] == Outcome(expected, None)
