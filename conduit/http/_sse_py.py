"""Server-sent event framing, pure Python twin of ``_sse_c.pyx``.

Theory of operation
-------------------
An event is turned into its frame bytes once (DESIGN.md 2.2, "format once, send many"):
``encode_event`` returns the frame without building an object, and ``SSEEvent`` validates
its fields when it is built and keeps the frame it produced, so every later ``encode()`` is
free. The frame is what a WHATWG "event stream" parser reads (HTML, "Server-sent events",
9.2.6): ``field: value`` lines ending in LF and a blank line that dispatches the event.
Both twins obey these rules; ``tests/unit/test_sse.py`` runs every case on both and checks
the frames with an independent parser written from the spec (``tests/unit/sse_spec.py``).

Framing rules
1. Field order is ``event``, ``id``, ``retry``, then the ``data`` lines, then a blank line.
   Every line ends with LF alone: it is the shortest terminator every client accepts. A
   field given as None is left out.
2. ``data`` is text: a str as is; bytes (also bytearray, memoryview) must be UTF-8 and are
   that text; any other value is compact JSON (``json.dumps(value, separators=(",", ":"),
   ensure_ascii=False)``; NaN and infinities are refused), so a dict or a list is one call
   away. The text is split on CRLF,
   CR and LF, the three line ends of the spec, and on nothing else: ``str.splitlines``
   would also split on VT, FF, FS, GS, RS, NEL, LS and PS, which the client keeps as text.
   Each piece becomes one ``data: <piece>`` line, so the client rebuilds the exact text:
   a trailing line end survives (the spec drops only the final LF it added itself), a
   leading space survives (the client strips exactly the one space after the colon), and
   empty data is ``data: `` and still dispatches one event with data "".
3. ``event`` is a str or None; ``""`` is written as given (the client then reports
   "message"). CR or LF in it would end the field early and inject lines: ValueError.
4. ``id`` is a str, an int (not bool: written in decimal) or None. CR, LF or NUL in it is
   a ValueError (a client ignores an id containing NUL, so sending one is a silent bug).
   ``id=""`` is written as ``id: `` and is a real reset: the client's last event id
   becomes "" and its next reconnection sends no ``Last-Event-ID``.
5. ``retry`` is an int >= 0 (not bool) or None, written in decimal; ``retry=0`` is written.
   Anything else (negative, bool, float, str, ...) is a ValueError: the client would
   ignore a retry line that is not all ASCII digits, so it is refused here instead.
6. Every text must be encodable as UTF-8 (a lone surrogate is not): ValueError naming the
   field. Types that are wrong are a TypeError naming the field, except ``retry`` (5).
7. Fields are checked one at a time in the order data, event, id, retry, and the first
   problem found is raised, so both twins raise the same exception for the same input.
8. ``SSEEvent`` is an immutable value: its attributes are read-only, it cannot be
   subclassed, it compares and hashes on (data, event, id, retry), where ``data`` is the
   text that is sent (JSON already applied) and ``id`` is a str (ints converted).
9. ``comment(text)`` is a comment frame, used as a heartbeat: each piece of ``text``
   (split as in 2) becomes ``: <piece>`` (``:`` alone for an empty piece), followed by a
   blank line. A client dispatches nothing for it.
"""

from __future__ import annotations

import json
from typing import Any

# NOTE: dumps() with non-default arguments builds a new JSONEncoder on every call; one
# encoder built here gives the same output (dumps does exactly cls(**kw).encode(obj)).
# allow_nan=False: NaN/Infinity are not JSON, and the browser's JSON.parse rejects them.
_JSON_ENCODE = json.JSONEncoder(
    separators=(",", ":"), ensure_ascii=False, allow_nan=False
).encode

_HEARTBEAT = b":\n\n"


def _unencodable(field: str, exc: UnicodeEncodeError) -> ValueError:
    return ValueError(f"SSE {field} must be encodable as UTF-8 ({exc.reason} at index {exc.start})")


def _data_text(data: Any) -> str:
    """The text an event carries for ``data`` (rule 2), always an exact str."""
    if isinstance(data, str):
        # A str subclass may override anything; str.__str__ gives a plain copy of its text.
        return data if type(data) is str else str.__str__(data)
    if isinstance(data, (bytes, bytearray, memoryview)):
        raw = bytes(data) if not isinstance(data, bytes) else data
        try:
            return str(raw, "utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(
                f"SSE data bytes are not valid UTF-8 ({exc.reason} at byte {exc.start})"
            ) from exc
    try:
        # PERF: an exact int (the commonest non-str data: counters, ids) is its decimal
        # text, exactly what the JSON encoder writes, without the encoder's overhead.
        return int.__repr__(data) if type(data) is int else _JSON_ENCODE(data)
    except (TypeError, ValueError, RecursionError) as exc:
        raise TypeError(
            f"SSE data of type {type(data).__name__} is not str, bytes or JSON-serializable: {exc}"
        ) from exc


def _json_utf8(value: Any) -> bytes:
    # The UTF-8 of _JSON_ENCODE(value), errors included; the compiled twin's function of
    # this name gets it from its own encoder (for bench/micro_json.py and the tests).
    return _JSON_ENCODE(value).encode()


def _event_text(event: Any) -> str:
    if not isinstance(event, str):
        raise TypeError(f"SSE event must be a str or None, not {type(event).__name__}")
    return event if type(event) is str else str.__str__(event)


def _id_text(id: Any) -> str:
    if isinstance(id, str):
        return id if type(id) is str else str.__str__(id)
    if isinstance(id, int) and not isinstance(id, bool):
        # int.__repr__ is decimal whatever an int subclass (IntEnum...) does to __str__.
        return int.__repr__(id)
    raise TypeError(f"SSE id must be a str, an int or None, not {type(id).__name__}")


def _retry_value(retry: Any) -> int:
    if not isinstance(retry, int) or isinstance(retry, bool):
        raise ValueError(
            f"SSE retry must be an int >= 0 (milliseconds) or None, not {type(retry).__name__}"
        )
    # int.__index__ gives a plain int for an int subclass, ignoring its overrides.
    value = retry if type(retry) is int else int.__index__(retry)
    if value < 0:
        raise ValueError("SSE retry must be an int >= 0 (milliseconds), not a negative int")
    return value


# PERF: `10 in raw` is a memchr; `b"\n" in raw` takes the buffer protocol and is ~10x slower.
_LF, _CR, _NUL = 10, 13, 0


def _build(data: Any, event: Any, id: Any, retry: Any) -> tuple[bytes, str, Any, Any, Any]:
    """Validate in rule 7's order; return (frame, data text, event, id, retry)."""
    # PERF: the common case (exact str fields) is handled inline, without helper calls;
    # str.encode() with no argument is UTF-8, strict, and skips argument parsing.
    text = data if type(data) is str else _data_text(data)
    try:
        body = text.encode()
    except UnicodeEncodeError as exc:
        raise _unencodable("data", exc) from exc
    if _LF in body or _CR in body:
        # Rule 2: CRLF first, so it counts as one line end and not two.
        body = body.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\ndata: ")
    head = b""
    if event is not None:
        if type(event) is not str:
            event = _event_text(event)
        try:
            raw = event.encode()
        except UnicodeEncodeError as exc:
            raise _unencodable("event", exc) from exc
        if _LF in raw or _CR in raw:
            raise ValueError("SSE event must not contain CR or LF")
        head = b"event: " + raw + b"\n"
    if id is not None:
        if type(id) is not str:
            id = _id_text(id)
        try:
            raw = id.encode()
        except UnicodeEncodeError as exc:
            raise _unencodable("id", exc) from exc
        if _LF in raw or _CR in raw or _NUL in raw:
            raise ValueError("SSE id must not contain CR, LF or NUL")
        head += b"id: " + raw + b"\n"
    if retry is not None:
        if type(retry) is not int or retry < 0:
            retry = _retry_value(retry)
        head += b"retry: %d\n" % retry
    return head + b"data: " + body + b"\n\n", text, event, id, retry


def encode_event(data: Any, event: Any = None, id: Any = None, retry: Any = None) -> bytes:
    """The frame bytes of one event, without building an :class:`SSEEvent`.

    >>> encode_event("hello", event="greeting", id=1)
    b'event: greeting\\nid: 1\\ndata: hello\\n\\n'
    """
    return _build(data, event, id, retry)[0]


def comment(text: str = "") -> bytes:
    """A comment frame (rule 9), e.g. a heartbeat; clients dispatch nothing for it.

    >>> comment("ping")
    b': ping\\n\\n'
    >>> comment()
    b':\\n\\n'
    """
    if not isinstance(text, str):
        raise TypeError(f"SSE comment text must be a str, not {type(text).__name__}")
    if type(text) is not str:
        text = str.__str__(text)
    if not text:
        return _HEARTBEAT
    try:
        raw = text.encode()
    except UnicodeEncodeError as exc:
        raise _unencodable("comment text", exc) from exc
    if _LF not in raw and _CR not in raw:
        return b": " + raw + b"\n\n"
    pieces = raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
    return b"".join([(b": " + piece if piece else b":") + b"\n" for piece in pieces]) + b"\n"


class SSEEvent:
    """One server-sent event, validated and framed once when it is built.

    >>> evt = SSEEvent("Hello", event="message", id="123", retry=3000)
    >>> evt.format()
    'event: message\\nid: 123\\nretry: 3000\\ndata: Hello\\n\\n'
    >>> evt.encode() == evt.format().encode()
    True

    ``data`` may be a str, UTF-8 bytes or any JSON-serializable value (sent as compact
    JSON); ``event`` a str; ``id`` a str or an int; ``retry`` an int >= 0 (milliseconds).
    Attributes are read-only; ``data`` is the text that is sent and ``id`` a str.
    """

    # PERF: one slot holding _build's tuple (frame, data, event, id, retry): building an
    # event stores one value instead of five, and read-only properties come for free.
    __slots__ = ("_fields",)

    _fields: tuple[bytes, str, str | None, str | None, int | None]

    @property
    def data(self) -> str:
        """The text sent as data (bytes decoded, JSON applied)."""
        return self._fields[1]

    @property
    def event(self) -> str | None:
        """The event type, or None (the client then reports "message")."""
        return self._fields[2]

    @property
    def id(self) -> str | None:
        """The event id as a str (an int id is converted), or None."""
        return self._fields[3]

    @property
    def retry(self) -> int | None:
        """The reconnection delay in milliseconds, or None."""
        return self._fields[4]

    def __new__(cls, data: Any, event: Any = None, id: Any = None, retry: Any = None):
        # NOTE: built in __new__, not __init__, so that calling __init__ again on an
        # existing event cannot change it (rule 8).
        self = object.__new__(cls)
        _set_fields(self, _build(data, event, id, retry))
        return self

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # The compiled twin is a final type; keep the same contract here.
        raise TypeError("SSEEvent cannot be subclassed")

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"SSEEvent is immutable: cannot set {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"SSEEvent is immutable: cannot delete {name!r}")

    def encode(self) -> bytes:
        """The frame as UTF-8 bytes, ready to send (built once, when the event was)."""
        return self._fields[0]

    def format(self) -> str:
        """The frame as text (the seed's API); ``encode()`` is what goes on the wire."""
        return self._fields[0].decode()

    def __eq__(self, other: object) -> bool:
        if type(other) is not SSEEvent:
            return NotImplemented
        # The frame is left out: equal fields make equal frames.
        return self._fields[1:] == other._fields[1:]

    def __hash__(self) -> int:
        return hash(self._fields[1:])

    def __repr__(self) -> str:
        parts = [repr(self.data)]
        if self.event is not None:
            parts.append(f"event={self.event!r}")
        if self.id is not None:
            parts.append(f"id={self.id!r}")
        if self.retry is not None:
            parts.append(f"retry={self.retry!r}")
        return f"SSEEvent({', '.join(parts)})"

    def __reduce__(self):
        # The slots cannot be restored by the default protocol (__setattr__ refuses).
        return (SSEEvent, (self.data, self.event, self.id, self.retry))


# The slot's own setter, which SSEEvent.__setattr__ does not reach.
_set_fields = SSEEvent.__dict__["_fields"].__set__

__all__ = ["SSEEvent", "comment", "encode_event"]
