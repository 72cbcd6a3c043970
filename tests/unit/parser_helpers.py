"""Drive a conduit ``RequestParser`` three ways and check that the ways agree.

Like h11's reader tests, every input is parsed

(a) whole: the input in one ``feed``;
(b) bytewise: one byte per ``feed``, with ``next_request()`` drained after every byte;
(c) trailing: the input followed by the start of one more request (``TRAILING``). That
    must not change what the input alone produced; when the input ends between two
    requests, the rest of the extra request is then fed and must come out as one more
    request (so the parser consumed exactly the bytes of the input), unless the last
    request closed the connection.

Requests are turned into plain ``Req`` tuples; an error is kept as its status. After an
error the helper also checks the parser is dead (invariant 4: the same error again).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

from conduit.errors import ProtocolError

# Every status the parser may answer with.
ERROR_STATUSES = frozenset({400, 413, 414, 417, 431, 501, 505})

# Way (c): the start of one more request, then the rest of it.
TRAILING = b"GET /t HTTP/1.1\r\nHost: t"
TRAILING_REST = b"\r\n\r\n"

# A parser that keeps returning requests from a small input is broken; stop it.
_MAX_REQUESTS = 10_000


class Req(NamedTuple):
    """A ParsedRequest as a plain, comparable tuple."""

    method: str
    target: str
    version: str
    headers: tuple[tuple[bytes, bytes], ...]
    body: bytes
    trailers: tuple[tuple[bytes, bytes], ...]
    keep_alive: bool


def req(
    method: str = "GET",
    target: str = "/",
    headers: Iterable[tuple[bytes, bytes]] = (),
    body: bytes = b"",
    *,
    version: str = "1.1",
    trailers: Iterable[tuple[bytes, bytes]] = (),
    keep_alive: bool = True,
) -> Req:
    """Build an expected request (headers given as (name, value) pairs of bytes)."""
    return Req(
        method,
        target,
        version,
        tuple((bytes(n), bytes(v)) for n, v in headers),
        bytes(body),
        tuple((bytes(n), bytes(v)) for n, v in trailers),
        keep_alive,
    )


TRAILING_REQ = req("GET", "/t", [(b"host", b"t")])


class Outcome(NamedTuple):
    """What a parser made of an input: the requests, then the error status (or None)."""

    requests: list[Req]
    error: int | None


def _fields(value: Any, what: str) -> tuple[tuple[bytes, bytes], ...]:
    assert isinstance(value, list), f"{what} must be a list, got {type(value).__name__}"
    out = []
    for item in value:
        assert isinstance(item, tuple) and len(item) == 2, f"{what} item {item!r}"
        name, val = item
        assert type(name) is bytes, f"{what} name {name!r} is not bytes"
        assert type(val) is bytes, f"{what} value {val!r} is not bytes"
        out.append((name, val))
    return tuple(out)


def as_req(parsed: Any) -> Req:
    """Check a ParsedRequest's attribute types and turn it into a Req."""
    assert type(parsed.method) is str, repr(parsed.method)
    assert type(parsed.target) is str, repr(parsed.target)
    assert parsed.version in ("1.0", "1.1"), repr(parsed.version)
    assert type(parsed.body) is bytes, f"body is {type(parsed.body).__name__}"
    assert type(parsed.keep_alive) is bool, repr(parsed.keep_alive)
    return Req(
        parsed.method,
        parsed.target,
        parsed.version,
        _fields(parsed.headers, "headers"),
        parsed.body,
        _fields(parsed.trailers, "trailers"),
        parsed.keep_alive,
    )


def _drain(parser: Any, out: list[Req]) -> None:
    """Call next_request() until it returns None, appending what it returns."""
    for _ in range(_MAX_REQUESTS):
        parsed = parser.next_request()
        if parsed is None:
            return
        out.append(as_req(parsed))
    raise AssertionError("next_request() keeps returning requests")


def _feed(parser: Any, data: bytes) -> None:
    # feed() only buffers; errors belong to next_request().
    try:
        parser.feed(data)
    except ProtocolError as exc:  # pragma: no cover - only reached on a broken parser
        raise AssertionError(
            f"feed({data[:40]!r}) raised {exc!r}; only next_request() may"
        ) from exc


def check_error(exc: ProtocolError) -> None:
    """An error must carry one of the parser's statuses and a reason."""
    assert isinstance(exc, ProtocolError)
    assert exc.status in ERROR_STATUSES, f"unexpected status in {exc!r}"
    assert isinstance(exc.reason, str) and exc.reason, f"no reason in {exc!r}"


def check_dead(parser: Any, exc: ProtocolError) -> None:
    """Invariant 4: after an error every next_request() raises the same error."""
    for _ in range(2):
        try:
            again = parser.next_request()
        except ProtocolError as exc2:
            assert exc2.status == exc.status, f"{exc2!r} after {exc!r}"
            assert exc2.reason == exc.reason, f"{exc2!r} after {exc!r}"
        else:
            raise AssertionError(f"next_request() returned {again!r} after {exc!r}")
    # More bytes (even a valid request) do not revive it.
    try:
        parser.feed(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    except ProtocolError as exc2:
        assert exc2.status == exc.status, f"feed raised {exc2!r} after {exc!r}"
    try:
        again = parser.next_request()
    except ProtocolError as exc2:
        assert exc2.status == exc.status, f"{exc2!r} after {exc!r} and more bytes"
    else:
        raise AssertionError(f"next_request() returned {again!r} after {exc!r} and more bytes")


def run_pieces(
    mod: Any,
    pieces: Iterable[bytes],
    *,
    limits: dict[str, int] | None = None,
    eof: bool = False,
) -> tuple[Outcome, int | None]:
    """Feed ``pieces`` one by one (empty ones skipped), draining after each; then EOF if asked.

    Returns the outcome and, on an error, how many input bytes had been fed when it was
    raised (None without error).
    """
    parser = mod.RequestParser(**(limits or {}))
    requests: list[Req] = []
    fed = 0
    try:
        for piece in pieces:
            if not piece:
                continue  # b"" would mean EOF
            _feed(parser, piece)
            fed += len(piece)
            _drain(parser, requests)
        if eof:
            _feed(parser, b"")
            _drain(parser, requests)
    except ProtocolError as exc:
        check_error(exc)
        check_dead(parser, exc)
        return Outcome(requests, exc.status), fed
    return Outcome(requests, None), None


def parse_whole(mod: Any, data: bytes, *, limits=None, eof: bool = False) -> Outcome:
    """Way (a): the whole input in one feed."""
    return run_pieces(mod, [data], limits=limits, eof=eof)[0]


def parse_bytewise(mod: Any, data: bytes, *, limits=None, eof: bool = False) -> Outcome:
    """Way (b): one byte per feed, next_request() drained after every byte."""
    return run_pieces(mod, _bytes_of(data), limits=limits, eof=eof)[0]


def error_offset(mod: Any, data: bytes, *, limits=None) -> int | None:
    """Bytes fed one at a time until the parser raised (None if it never did)."""
    return run_pieces(mod, _bytes_of(data), limits=limits)[1]


def _bytes_of(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


def check_trailing(mod: Any, data: bytes, *, limits=None) -> None:
    """Way (c): bytes after the input do not change what the input produced.

    Applies when the input alone (no EOF) ends in an error, or ends between requests
    (EOF after it is accepted quietly). Otherwise the extra bytes would legitimately be
    part of the unfinished request, and there is nothing to check.
    """
    alone = parse_whole(mod, data, limits=limits)
    if alone.error is None:
        with_eof = parse_whole(mod, data, limits=limits, eof=True)
        if with_eof != alone:
            return  # the input stops inside a request
    parser = mod.RequestParser(**(limits or {}))
    got: list[Req] = []
    try:
        _feed(parser, data + TRAILING)
        _drain(parser, got)
    except ProtocolError as exc:
        check_error(exc)
        assert Outcome(got, exc.status) == alone, (
            f"trailing bytes changed the result: {Outcome(got, exc.status)} != {alone}"
        )
        return
    assert Outcome(got, None) == alone, (
        f"trailing bytes changed the result: {Outcome(got, None)} != {alone}"
    )
    # The parser stopped exactly at the end of the input: the extra request follows.
    _feed(parser, TRAILING_REST)
    more: list[Req] = []
    _drain(parser, more)
    if not got or got[-1].keep_alive:
        assert more == [TRAILING_REQ], f"after the input, the next request gave {more}"
    else:
        assert more == [], f"requests after keep_alive=False: {more}"


def parse(
    mod: Any,
    data: bytes,
    *,
    limits: dict[str, int] | None = None,
    eof: bool = False,
) -> Outcome:
    """Parse ``data`` the three ways, check they agree, return the outcome.

    ``eof=True`` feeds ``b""`` after the input (ways (a) and (b)).
    """
    whole = parse_whole(mod, data, limits=limits, eof=eof)
    bytewise = parse_bytewise(mod, data, limits=limits, eof=eof)
    assert bytewise == whole, f"byte-at-a-time {bytewise} != whole input {whole}"
    check_trailing(mod, data, limits=limits)
    return whole


def split(data: bytes, cuts: Sequence[int]) -> list[bytes]:
    """``data`` cut at the given offsets (any order, duplicates allowed)."""
    points = sorted({min(max(c, 0), len(data)) for c in cuts})
    pieces = []
    start = 0
    for p in points:
        pieces.append(data[start:p])
        start = p
    pieces.append(data[start:])
    return [piece for piece in pieces if piece]  # b"" would mean EOF
