"""Fuzzing the request parser, both twins (sans-IO).

Inputs are random bytes and mutated valid requests (see ``fuzz_support``), with the
default limits or small random ones, fed whole, cut at random points, one byte at a time,
and as ``bytes``, ``bytearray`` or ``memoryview``. The only allowed outcomes are complete
requests and then, maybe, a ``ProtocolError`` subclass carrying one of the parser's
statuses (any other exception is a crash), after which the parser stays dead.

Further than ``tests/unit/test_parser_properties.py``: the twins must agree on everything
observable, not only on the requests and the status: the exception class, its reason, how
many bytes had been fed when it was raised, and ``has_partial()`` / ``needs_continue()``
after every piece.

Examples per test: ``CONDUIT_FUZZ_EXAMPLES`` (default 150). Long run:
``CONDUIT_FUZZ_EXAMPLES=200000 python -m pytest -x -q tests/fuzz/test_fuzz_parser.py``.
"""

from __future__ import annotations

import pytest
from fuzz_support import cut, fuzz_settings, mutated_requests, split_points
from hypothesis import given
from hypothesis import strategies as st
from parser_helpers import as_req, check_dead, check_error

from conduit import _ext
from conduit.errors import ProtocolError

TWINS = _ext.twins("conduit.http", "parser")
MAX_REQUESTS = 1000

limits = st.one_of(
    st.just({}),
    st.just({"max_request_line_bytes": 48, "max_header_bytes": 96, "max_header_count": 4,
             "max_body_bytes": 24}),
    st.fixed_dictionaries({}, optional={
        "max_request_line_bytes": st.integers(0, 120),
        "max_header_bytes": st.integers(0, 300),
        "max_header_count": st.integers(0, 8),
        "max_body_bytes": st.integers(0, 64),
    }),
)
inputs = st.one_of(  # one_of picks each branch about as often: mostly mutations
    *[mutated_requests()] * 6,
    st.binary(max_size=400),
    st.binary(max_size=200).map(lambda b: b"POST / HTTP/1.1\r\nHost: a\r\n" + b),
    st.binary(max_size=200).map(
        lambda b: b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" + b),
)
wrappers = st.sampled_from([bytes, bytearray, memoryview])


def run(mod, pieces, limits, wrap=bytes):
    """Feed ``pieces`` then EOF. Returns (requests, error, trace) where error is
    (class name, status, reason, bytes fed when raised) or None, and trace holds
    (has_partial(), needs_continue()) after every piece."""
    parser = mod.RequestParser(**limits)
    requests, trace = [], []
    fed = 0
    # Empty pieces are dropped (b"" means EOF), and EOF comes last.
    try:
        for piece in [piece for piece in pieces if piece] + [b""]:
            parser.feed(wrap(piece))
            fed += len(piece)
            while (request := parser.next_request()) is not None:
                requests.append(as_req(request))
                assert len(requests) < MAX_REQUESTS, "next_request() keeps returning"
            trace.append((parser.has_partial(), parser.needs_continue()))
    except ProtocolError as exc:
        check_error(exc)
        check_dead(parser, exc)
        return requests, (type(exc).__name__, exc.status, exc.reason, fed), trace
    return requests, None, trace


@pytest.fixture(params=sorted(TWINS))
def twin(request):
    return TWINS[request.param]


@fuzz_settings()
@given(data=st.data())
def test_only_requests_or_protocol_errors(twin, data):
    raw = data.draw(inputs, label="input")
    lims = data.draw(limits, label="limits")
    whole, whole_error, _ = run(twin, [raw], lims)
    pieces = cut(raw, data.draw(split_points(raw), label="cuts"))
    split, split_error, _ = run(twin, pieces, lims, data.draw(wrappers, label="as"))
    # How the bytes are cut cannot change the requests, nor whether the input is refused.
    assert split == whole
    assert (split_error is None) == (whole_error is None), (whole_error, split_error)
    if len(raw) <= 200:
        bytewise, bytewise_error, _ = run(twin, [raw[i:i + 1] for i in range(len(raw))], lims)
        assert bytewise == whole
        assert (bytewise_error is None) == (whole_error is None)


needs_both = pytest.mark.skipif(set(TWINS) != {"compiled", "pure"},
                                reason="the compiled twin is not built")


@needs_both
@fuzz_settings()
@given(data=st.data())
def test_twins_agree_on_everything(data):
    raw = data.draw(inputs, label="input")
    lims = data.draw(limits, label="limits")
    feeds = [[raw], cut(raw, data.draw(split_points(raw), label="cuts"))]
    if len(raw) <= 200:
        feeds.append([raw[i:i + 1] for i in range(len(raw))])
    wrap = data.draw(wrappers, label="as")
    for pieces in feeds:
        pure = run(TWINS["pure"], pieces, lims, wrap)
        compiled = run(TWINS["compiled"], pieces, lims, wrap)
        assert compiled == pure, pieces


# --- head first (rules 6-10 of _parser_py): the same requests and errors either way --------

def run_head_first(mod, pieces, limits, mode, wrap=bytes):
    """``run`` with ``head_first=True``: each pending body read whole (``mode`` "buffer")
    or streamed and joined (``mode`` "stream", with ``max_streamed_body_bytes`` equal to
    ``max_body_bytes``). Also returns each streamed body's pieces."""
    limits = dict(limits)
    if mode == "stream":
        limits["max_streamed_body_bytes"] = limits.get("max_body_bytes", 1024 * 1024)
    parser = mod.RequestParser(**limits, head_first=True)
    requests, trace, bodies = [], [], []
    fed = 0
    head = None  # a streamed request whose body is arriving
    parts: list = []
    try:
        for piece in [piece for piece in pieces if piece] + [b""]:
            parser.feed(wrap(piece))
            fed += len(piece)
            while True:
                if head is not None:
                    part = parser.next_body()
                    if part is None:
                        break
                    if part:
                        assert type(part) is bytes
                        parts.append(part)
                        continue
                    assert head.body == b""
                    whole = as_req(head)._replace(body=b"".join(parts))
                    requests.append(whole)
                    bodies.append(parts)
                    head, parts = None, []
                    continue
                request = parser.next_request()
                if request is None:
                    break
                if parser.body_pending():
                    assert request.body == b""
                    if mode == "stream":
                        parser.stream_body()
                        head = request
                    else:
                        parser.buffer_body()
                    continue
                requests.append(as_req(request))
                assert len(requests) < MAX_REQUESTS, "next_request() keeps returning"
            trace.append((parser.has_partial(), parser.needs_continue()))
    except ProtocolError as exc:
        check_error(exc)
        return requests, (type(exc).__name__, exc.status, exc.reason, fed), trace, bodies
    return requests, None, trace, bodies


@fuzz_settings()
@given(data=st.data())
def test_head_first_gives_the_same_requests_and_errors(twin, data):
    raw = data.draw(inputs, label="input")
    lims = data.draw(limits, label="limits")
    pieces = cut(raw, data.draw(split_points(raw), label="cuts"))
    wrap = data.draw(wrappers, label="as")
    plain = run(twin, pieces, lims, wrap)
    buffered = run_head_first(twin, pieces, lims, "buffer", wrap)
    # Read whole, a head-first body is exactly a plain one: requests, error, trace.
    assert buffered[:3] == plain, pieces
    streamed = run_head_first(twin, pieces, lims, "stream", wrap)
    assert streamed[:2] == plain[:2], pieces
    for parts in streamed[3]:  # pieces follow the reads: never more than were fed
        assert len(parts) <= len(pieces) + 1


@needs_both
@fuzz_settings()
@given(data=st.data())
def test_twins_agree_on_streamed_bodies(data):
    raw = data.draw(inputs, label="input")
    lims = data.draw(limits, label="limits")
    pieces = cut(raw, data.draw(split_points(raw), label="cuts"))
    for mode in ("buffer", "stream"):
        pure = run_head_first(TWINS["pure"], pieces, lims, mode)
        compiled = run_head_first(TWINS["compiled"], pieces, lims, mode)
        assert compiled == pure, (mode, pieces)
