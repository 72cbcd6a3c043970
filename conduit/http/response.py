"""Response values and the bytes of response heads (sans-IO).

``Response`` is a whole response (status, headers, body). ``StreamResponse`` is an SSE
stream: its head, and a *source* of items (a generator, an async generator, or anything the
server knows how to pump). Heads are built once per response as bytes; the server adds the
framing headers (``Content-Length`` or ``Transfer-Encoding``, ``Connection``) itself.
"""

from __future__ import annotations

import json
from http import HTTPStatus

_REASONS = {status.value: status.phrase for status in HTTPStatus}
# RFC 9110's phrases where Python's HTTPStatus (3.11) still has older ones, so the status
# line does not change with the Python version.
_REASONS[413] = "Content Too Large"
_REASONS[414] = "URI Too Long"
_REASONS[416] = "Range Not Satisfiable"
_REASONS[422] = "Unprocessable Content"

# Headers the server owns: a handler's value for them would break framing.
_FRAMING = frozenset({"content-length", "transfer-encoding", "connection"})

SSE_HEADERS = (
    ("Content-Type", "text/event-stream; charset=utf-8"),
    ("Cache-Control", "no-cache"),
    ("X-Accel-Buffering", "no"),
)


def reason_phrase(status: int) -> str:
    return _REASONS.get(status, "Unknown")


def _check_header(name: str, value: str) -> None:
    # CR, LF or NUL in a header would let a handler split the response (header injection).
    for text in (name, value):
        if "\r" in text or "\n" in text or "\0" in text:
            raise ValueError(f"header {name!r} contains CR, LF or NUL")
    if not name or any(c in name for c in " \t:()<>@,;\\\"/[]?={}"):
        raise ValueError(f"invalid header name {name!r}")


def _normalise_headers(headers) -> list:
    if headers is None:
        return []
    items = headers.items() if hasattr(headers, "items") else headers
    result = []
    for name, value in items:
        name = str(name)
        value = str(value)
        _check_header(name, value)
        result.append((name, value))
    return result


class Response:
    """A complete HTTP response.

    >>> Response("hello").body
    b'hello'
    >>> Response({"ok": True}, status=201).headers
    [('Content-Type', 'application/json')]

    ``body`` may be bytes, str (UTF-8) or a dict/list (compact JSON). ``content_type``
    defaults to text/plain for str, application/json for dict/list and
    application/octet-stream for bytes. ``Content-Length`` and ``Connection`` are set by
    the server.
    """

    __slots__ = ("status", "headers", "body")

    def __init__(self, body=b"", status: int = 200, headers=None, content_type=None) -> None:
        if type(status) is not int or not 100 <= status <= 999:
            raise ValueError(f"status must be an int from 100 to 999, got {status!r}")
        self.status = status
        default_type = None
        if isinstance(body, (bytes, bytearray, memoryview)):
            body = bytes(body)
            if body:
                default_type = "application/octet-stream"
        elif isinstance(body, str):
            body = body.encode("utf-8")
            default_type = "text/plain; charset=utf-8"
        elif body is None:
            body = b""
        else:
            body = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
            default_type = "application/json"
        self.body = body
        self.headers = _normalise_headers(headers)
        names = {name.lower() for name, _ in self.headers}
        if "content-type" not in names and (content_type or default_type):
            self.headers.insert(0, ("Content-Type", content_type or default_type))
        for name in names & _FRAMING:
            raise ValueError(f"the server sets {name} itself")

    def __repr__(self) -> str:
        return f"Response(status={self.status}, {len(self.body)} body bytes)"


class StreamResponse:
    """A ``text/event-stream`` response whose body comes from ``source``.

    ``source`` is a generator or an async generator yielding ``SSEEvent``, dict (JSON data),
    str (data) or bytes (pre-formatted frames, written as they are). ``on_close`` is
    called once when the stream ends for any reason.
    """

    __slots__ = ("source", "status", "headers", "on_close")

    def __init__(self, source, status: int = 200, headers=None, on_close=None) -> None:
        self.source = source
        self.status = status
        extra = _normalise_headers(headers)
        names = {name.lower() for name, _ in extra}
        self.headers = [h for h in SSE_HEADERS if h[0].lower() not in names] + extra
        self.on_close = on_close


def build_head(status: int, headers, version: str, framing: tuple) -> bytes:
    """Status line and header block, ending with the empty line.

    ``framing`` are the server's own headers (Content-Length or Transfer-Encoding,
    Connection), appended after the handler's.
    """
    lines = [f"HTTP/{version} {status} {reason_phrase(status)}\r\n"]
    for name, value in headers:
        lines.append(f"{name}: {value}\r\n")
    for name, value in framing:
        lines.append(f"{name}: {value}\r\n")
    lines.append("\r\n")
    # Header values are latin-1 on the wire (RFC 9110 5.5); a str outside it is an error.
    return "".join(lines).encode("latin-1")
