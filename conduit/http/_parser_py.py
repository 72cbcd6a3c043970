"""Strict HTTP/1.1 request parser, pure Python twin of ``_parser_c.pyx``.

Theory of operation
-------------------
The parser is sans-IO: ``feed(data)`` appends bytes (``b""`` means the peer closed its
side), ``next_request()`` returns the next complete :class:`ParsedRequest` (head and whole
body), ``None`` when it needs more bytes, or raises a ``conduit.errors.ProtocolError``
subclass carrying the status to answer. Both twins obey these rules; the tests run every
case on both.

Invariants
1. Bytes are kept in one ``bytearray`` with a read offset; consumed bytes are dropped in
   bulk, never one request at a time from the front, so pipelined input costs O(n).
2. The search for the end of the head resumes where the last search stopped (minus 3
   bytes), so a head arriving one byte at a time costs O(n), not O(n^2) (a DoS concern).
3. Nothing is buffered past a limit. The request line may have ``max_request_line_bytes``
   bytes, its CRLF not counted: one more byte without a CRLF is a 414 at once. The header
   block may have ``max_header_bytes`` bytes, counted as its field lines with their CRLFs
   (the request line and the final empty line not counted), and ``max_header_count``
   fields: past either, a 431 at once. Trailers get the same two limits of their own. A body
   longer than ``max_body_bytes`` is a 413 as soon as its declared length (or the running
   total of its chunk sizes) says so, before the bytes arrive.
4. After an error the parser is dead: every later ``next_request()`` raises the same error.
5. After a request with ``keep_alive`` false, ``next_request()`` returns ``None`` for good.

Accepted grammar (RFC 9112, strict)
- Lines end with CRLF. A bare LF or a bare CR anywhere in the head or in chunk framing is a
  400. Empty lines (CRLF) before a request line are skipped (RFC 9112 2.2).
- request-line = method SP request-target SP HTTP-version CRLF, single spaces only.
  method is a token (RFC 9110 tchar). The target is visible ASCII (0x21-0x7E) without '#';
  its form must be origin-form ("/..."), absolute-form ("http://..." or "https://...",
  scheme case-insensitive), asterisk-form ("*", OPTIONS only) or authority-form (CONNECT
  only); anything else is 400. The authority of an absolute-form target (up to the first
  "/" or "?") must be a non-empty host (reg-name or a bracketed IP literal) with an
  optional all-digit port; an empty host (RFC 9110 4.2.1) or userinfo ("user@", RFC 9110
  4.2.4) is a 400. The Host field is still required and checked (RFC 9112 3.2); that the
  target's authority takes precedence over it (RFC 9112 3.2.2) is the application's
  business.
  HTTP-version is "HTTP/" DIGIT "." DIGIT, case-sensitive (else 400); major 1 with minor 0
  is "1.0", minor 1-9 is "1.1" (RFC 9110 6.2); any other major is 505.
- field-line = field-name ":" OWS field-value OWS CRLF. field-name is a token (else 400),
  with nothing between it and the colon (whitespace there is a 400). field-value bytes are
  HTAB, SP, 0x21-0x7E or 0x80-0xFF; NUL and other controls (including DEL) are a 400.
  A line starting with SP or HTAB (obs-fold) is a 400. Names are lowercased; values lose
  leading and trailing OWS; order and duplicates are kept.
- Host: an HTTP/1.1 request must have exactly one (missing or duplicate: 400); its value
  may be empty or a uri-host[:port] made of unreserved / sub-delims / pct-encoded / ':' /
  '[' / ']' characters (else 400).
- Message body (RFC 9112 6):
  * Transfer-Encoding and Content-Length together: 400. Transfer-Encoding in an HTTP/1.0
    request: 400. Transfer-Encoding is a comma list of codings over all its lines; the
    only coding understood is "chunked" (case-insensitive). If "chunked" is not the last
    coding: 400; "chunked" twice: 400; an empty list: 400; any other coding: 501.
  * Content-Length is 1*DIGIT. Duplicates (separate lines or a comma list) with the same
    value are accepted; differing values, empty, signs, spaces inside or non-digits: 400.
  * Neither: no body (length 0).
  * chunked: chunk-size is 1*HEXDIG, optionally followed by chunk extensions
    (";" name["=" value], ignored; BWS around ";" and "=" allowed), then CRLF; a size line
    longer than 4096 bytes or without hex digits is a 400. Chunk data is followed by
    exactly CRLF (else 400). A chunk size that takes the body past ``max_body_bytes`` is a
    413 (this includes sizes that would overflow 64 bits). The last chunk ("0") is
    followed by trailer fields (same rules as header fields, same limits, kept apart in
    ``trailers``) and CRLF.
- Expect: "100-continue" (case-insensitive) on an HTTP/1.1 request with a body to come
  makes ``needs_continue()`` answer True once, until the body is complete; any other
  expectation is a 417.
- keep_alive: HTTP/1.1 unless "close" is among the Connection tokens; HTTP/1.0 only if
  "keep-alive" is among them and "close" is not (tokens are case-insensitive).
- EOF (``feed(b"")``) in the middle of a request is a 400 ("connection closed before the
  request was complete"); EOF between requests just makes ``next_request()`` return None.

Head first, and streamed bodies (``RequestParser(head_first=True)``)
--------------------------------------------------------------------
For a server that hands some requests' bodies to the application as they arrive (ASGI
apps: conduit.server.asgi) and reads others whole (conduit's own routes), the caller
decides per request, once it has seen the head. Without ``head_first`` nothing below
happens and the parser behaves exactly as above.

6. With ``head_first=True``, ``next_request()`` returns a request that has a body to come
   (a Content-Length above 0, or chunked) as soon as its head is complete, with
   ``body == b""``; ``body_pending()`` is then True. A request without a body comes out
   complete, as before (``body_pending()`` False).
7. While ``body_pending()``, the caller must choose, before anything else:
   - ``buffer_body()``: this body is read whole, as without ``head_first`` (limit
     ``max_body_bytes``); the next ``next_request()`` calls return None until it is
     complete, then the complete request (the same head, and its body).
   - ``stream_body()``: this body is delivered in pieces by ``next_body()`` (limit
     ``max_streamed_body_bytes``; None, the default, means unbounded, in practice
     ``MAX_STREAMED_BODY_BYTES``).
   Either may raise 413 at once when the declared Content-Length is over its limit.
   ``Expect: 100-continue`` makes ``needs_continue()`` True from the choice on (not before:
   a request refused with 413 gets no 100), until the body is complete.
8. ``next_body()`` returns the next piece of a streamed body (``bytes``, never empty: the
   de-chunked bytes that have arrived, taken as they are, so pieces follow the reads),
   ``None`` when it needs more bytes, or ``b""`` once, at the end of the body (after a
   chunked body's trailer section). Then the parser is back to ``next_request()``. A
   streamed request's ``trailers`` (the list on the head returned earlier) is filled in
   when the trailer section has been parsed.
9. Strictness does not change with the mode: the same bytes give the same requests (the
   streamed pieces joined are the body) and, with equal limits, the same error at the same
   byte (bare CR/LF in chunk framing, bad chunk sizes, trailers, EOF mid-body...); an
   error from ``next_body()``, ``buffer_body()`` or ``stream_body()`` kills the parser as
   in rule 4. Calling ``next_request()`` while a choice is due or a body is being
   streamed, or the choice or ``next_body()`` out of turn, is a RuntimeError (a bug in
   the caller), never a protocol error.
10. PERF: the whole-body path pays nothing per byte for this: one flag test at the end of
    a head with a body, and the body limit read from one attribute.
"""

from __future__ import annotations

import re
from operator import itemgetter

from conduit.errors import (
    BadRequest,
    ContentTooLarge,
    ExpectationFailed,
    HeaderFieldsTooLarge,
    HTTPVersionNotSupported,
    NotImplementedByServer,
    ProtocolError,
    URITooLong,
)

MAX_CHUNK_SIZE_LINE_BYTES = 4096
# The limit of a streamed body when ``max_streamed_body_bytes`` is None ("unbounded"): the
# largest length both twins count without overflow (a declared length or chunk size above
# it is a 413, as every length that does not fit 64 bits is).
MAX_STREAMED_BODY_BYTES = (1 << 62) - 1

# RFC 9110 5.6.2 tchar
_TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_TOKEN_RE = re.compile(_TOKEN)
_VCHAR_OBS = rb"\x21-\x7e\x80-\xff"
_REQUEST_LINE_RE = re.compile(
    rb"(" + _TOKEN + rb") ([\x21\x22\x24-\x7e]+) HTTP/([0-9])\.([0-9])\r"
)
_FIELD_LINE_RE = re.compile(
    rb"(" + _TOKEN + rb"):[ \t]*"
    rb"((?:[" + _VCHAR_OBS + rb"](?:[\t\x20" + _VCHAR_OBS + rb"]*[" + _VCHAR_OBS + rb"])?)?)"
    rb"[ \t]*\r"
)
_QUOTED = rb'"(?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x21-\x7e\x80-\xff])*"'
_CHUNK_SIZE_LINE_RE = re.compile(
    rb"([0-9A-Fa-f]+)(?:[ \t]*;[ \t]*" + _TOKEN
    + rb"(?:[ \t]*=[ \t]*(?:" + _TOKEN + rb"|" + _QUOTED + rb"))?)*\r"
)
# uri-host [ ":" port ]: unreserved / sub-delims / pct-encoded, IP literals in brackets
_HOST_RE = re.compile(rb"[A-Za-z0-9\-._~!$&'()*+,;=%:\[\]]*")
# The authority of an absolute-form target: host (reg-name or IP literal), optional port.
_AUTHORITY_RE = re.compile(
    rb"(?:[A-Za-z0-9\-._~!$&'()*+,;=%]+|\[[A-Za-z0-9\-._~!$&'()*+,;=%:]+\])(?::[0-9]*)?"
)
_DIGITS_RE = re.compile(rb"[0-9]+")
_CONTROL_RE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")

_METHODS = {m.encode(): m for m in ("GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH")}

# States
_HEAD = 0
_BODY = 1  # Content-Length body
_CHUNK_SIZE = 2
_CHUNK_DATA = 3
_CHUNK_DATA_END = 4
_TRAILERS = 5
_CLOSED = 6  # after a request with keep_alive False
_DECIDE = 7  # head_first: the head went out, buffer_body() or stream_body() is due


class ParsedRequest(tuple):
    """One complete request: head and (de-chunked) body. Immutable, like the compiled one."""

    __slots__ = ()
    _fields = ("method", "target", "version", "headers", "body", "trailers", "keep_alive")

    def __new__(cls, method, target, version, headers, body, trailers, keep_alive):
        return tuple.__new__(cls, (method, target, version, headers, body, trailers, keep_alive))

    method = property(itemgetter(0), doc="e.g. 'GET'")
    target = property(itemgetter(1), doc="the request-target as sent, e.g. '/events?x=1'")
    version = property(itemgetter(2), doc="'1.0' or '1.1'")
    headers = property(itemgetter(3), doc="list of (lowercased name, value) byte tuples")
    body = property(itemgetter(4), doc="the body, de-chunked")
    trailers = property(itemgetter(5), doc="trailer fields of a chunked body")
    keep_alive = property(itemgetter(6), doc="whether the connection stays open after it")

    def __repr__(self) -> str:
        return (
            f"ParsedRequest({self.method} {self.target} HTTP/{self.version}, "
            f"{len(self.headers)} headers, {len(self.body)} body bytes, "
            f"keep_alive={self.keep_alive})"
        )


def _field_line_error(line: bytes) -> ProtocolError:
    """Say precisely why a field line did not match (slow path, errors only)."""
    if line[:1] in (b" ", b"\t"):
        return BadRequest("obsolete line folding (obs-fold) in header")
    name, colon, value = line.partition(b":")
    if not colon:
        return BadRequest("header line without a colon")
    if not name:
        return BadRequest("empty header field name")
    if name[-1:] in (b" ", b"\t"):
        return BadRequest("whitespace between header field name and colon")
    if not _TOKEN_RE.fullmatch(name):
        return BadRequest("invalid character in header field name")
    if b"\r" in value[:-1]:
        return BadRequest("bare CR in header field value")
    return BadRequest("invalid character in header field value")


def _request_line_error(line: bytes) -> ProtocolError:
    line = line[:-1]  # drop the CR
    if b"\r" in line:
        return BadRequest("bare CR in request line")
    parts = line.split(b" ")
    if len(parts) != 3 or not all(parts):
        return BadRequest("request line is not 'method SP target SP version'")
    method, target, version = parts
    if not _TOKEN_RE.fullmatch(method):
        return BadRequest("invalid character in method")
    if not re.fullmatch(rb"HTTP/[0-9]\.[0-9]", version):
        return BadRequest("invalid HTTP version")
    return BadRequest("invalid character in request target")


def _check_target(method: str, target: bytes) -> None:
    first = target[:1]
    if first == b"/":
        return
    if target == b"*":
        if method == "OPTIONS":
            return
        raise BadRequest("asterisk-form target is only allowed with OPTIONS")
    if method == "CONNECT":
        # authority-form: host ":" port
        host, colon, port = target.rpartition(b":")
        if colon and host and _DIGITS_RE.fullmatch(port) and _HOST_RE.fullmatch(host):
            return
        raise BadRequest("invalid authority-form target")
    lowered = target[:8].lower()
    if lowered.startswith(b"http://"):
        _check_authority(target, 7)
        return
    if lowered.startswith(b"https://"):
        _check_authority(target, 8)
        return
    raise BadRequest("invalid request target form")


def _check_authority(target: bytes, start: int) -> None:
    """The authority of an absolute-form target, from ``start`` to the first '/' or '?'."""
    end = len(target)
    for sep in b"/?":
        index = target.find(sep, start, end)
        if index != -1:
            end = index
    authority = target[start:end]
    if b"@" in authority:
        raise BadRequest("userinfo in absolute-form target")
    if not _AUTHORITY_RE.fullmatch(authority):
        raise BadRequest("invalid authority in absolute-form target")


def _content_length(value: bytes, current: int) -> int:
    """Parse a Content-Length value (maybe a list of equal values); -1 = not seen yet."""
    length = current
    for item in value.split(b","):
        item = item.strip(b" \t")
        if not _DIGITS_RE.fullmatch(item):
            raise BadRequest("invalid Content-Length")
        # PERF/NOTE: more than 18 digits cannot fit the body limit; avoid big ints.
        number = int(item) if len(item) <= 18 else 1 << 62
        if length != -1 and number != length:
            raise BadRequest("conflicting Content-Length values")
        length = number
    return length


def _is_chunked(codings: list) -> bool:
    """Validate the Transfer-Encoding codings; True when the body is chunked."""
    names = []
    for item in b",".join(codings).split(b","):
        name = item.split(b";", 1)[0].strip(b" \t").lower()
        if not name:
            if item.strip(b" \t"):
                raise BadRequest("invalid Transfer-Encoding")
            continue  # empty list elements are allowed (RFC 9110 5.6.1)
        if not _TOKEN_RE.fullmatch(name):
            raise BadRequest("invalid Transfer-Encoding")
        names.append(name)
    if not names:
        raise BadRequest("empty Transfer-Encoding")
    if names[-1] != b"chunked":
        raise BadRequest("Transfer-Encoding does not end with chunked")
    if names.count(b"chunked") > 1:
        raise BadRequest("chunked applied more than once")
    if len(names) > 1:
        raise NotImplementedByServer("unsupported transfer coding")
    return True


def _connection_tokens(values: list) -> set:
    tokens = set()
    for value in values:
        for item in value.split(b","):
            item = item.strip(b" \t").lower()
            if item:
                tokens.add(item)
    return tokens


class RequestParser:
    """Bytes in, :class:`ParsedRequest` out. See the module docstring for the rules."""

    __slots__ = (
        "max_request_line_bytes", "max_header_bytes", "max_header_count", "max_body_bytes",
        "_buf", "_pos", "_scan", "_state", "_eof", "_error",
        "_method", "_target", "_version", "_headers", "_field_bytes", "_body_parts",
        "_body_len", "_remaining", "_keep_alive", "_chunked", "_content_length", "_hosts",
        "_te", "_connection", "_expect", "_continue_pending", "_trailers",
        "head_first", "max_streamed_body_bytes", "_streamed_limit", "_body_limit",
        "_streaming",
    )

    def __init__(
        self,
        *,
        max_request_line_bytes: int = 8 * 1024,
        max_header_bytes: int = 64 * 1024,
        max_header_count: int = 2000,
        max_body_bytes: int = 1024 * 1024,
        max_streamed_body_bytes: int | None = None,
        head_first: bool = False,
    ) -> None:
        for name, value in (
            ("max_request_line_bytes", max_request_line_bytes),
            ("max_header_bytes", max_header_bytes),
            ("max_header_count", max_header_count),
            ("max_body_bytes", max_body_bytes),
        ):
            if type(value) is not int or value < 0:
                raise ValueError(f"{name} must be an int >= 0, got {value!r}")
        if max_streamed_body_bytes is not None and (
                type(max_streamed_body_bytes) is not int or max_streamed_body_bytes < 0):
            raise ValueError(f"max_streamed_body_bytes must be None or an int >= 0, "
                             f"got {max_streamed_body_bytes!r}")
        self.max_request_line_bytes = max_request_line_bytes
        self.max_header_bytes = max_header_bytes
        self.max_header_count = max_header_count
        self.max_body_bytes = max_body_bytes
        self.max_streamed_body_bytes = max_streamed_body_bytes
        self._streamed_limit = (MAX_STREAMED_BODY_BYTES if max_streamed_body_bytes is None
                                else min(max_streamed_body_bytes, MAX_STREAMED_BODY_BYTES))
        self.head_first = bool(head_first)
        self._buf = bytearray()
        self._pos = 0  # start of unconsumed bytes
        self._scan = 0  # where the search for the next LF resumes (rule 2)
        self._eof = False
        self._error: ProtocolError | None = None
        self._state = _HEAD
        self._continue_pending = False
        self._reset_message()

    def _reset_message(self) -> None:
        self._method: str | None = None  # set once the request line is parsed
        self._target = ""
        self._version = ""
        self._headers: list = []
        self._trailers: list = []
        self._field_bytes = 0
        self._body_parts: list = []
        self._body_len = 0
        self._remaining = 0
        self._keep_alive = True
        self._chunked = False
        self._content_length = -1
        self._hosts = 0
        self._te: list = []
        self._connection: list = []
        self._expect = False
        self._body_limit = self.max_body_bytes
        self._streaming = False

    # -- input -------------------------------------------------------------------------
    def feed(self, data: bytes) -> None:
        """Append bytes received from the peer; ``b""`` means the peer closed (EOF)."""
        if not data:
            self._eof = True
            return
        if self._eof or self._state == _CLOSED or self._error is not None:
            return  # nothing after EOF, a closing request or an error is ever parsed
        buf = self._buf
        if self._pos:
            # NOTE: deleting a bytearray's head is O(1) in CPython (it moves its start).
            del buf[: self._pos]
            self._scan -= self._pos
            self._pos = 0
        buf += data

    def has_partial(self) -> bool:
        """True when part of a request (not yet complete) has been received."""
        if self._state == _CLOSED or self._error is not None:
            return False
        return self._method is not None or self._state != _HEAD or self._pos < len(self._buf)

    def needs_continue(self) -> bool:
        """True once per request that sent ``Expect: 100-continue`` and awaits its body."""
        if self._continue_pending:
            self._continue_pending = False
            return True
        return False

    def body_pending(self) -> bool:
        """True when ``next_request()`` returned a head whose body is to come (rule 6)."""
        return self._state == _DECIDE and self._error is None

    # -- output ------------------------------------------------------------------------
    def next_request(self) -> ParsedRequest | None:
        """The next complete request, ``None`` if more bytes are needed, or raise."""
        if self._error is not None:
            raise self._error
        if self._streaming or self._state == _DECIDE:
            raise RuntimeError("next_request() while a request body awaits buffer_body() or "
                               "stream_body(), or is being streamed (next_body())")
        try:
            return self._advance()
        except ProtocolError as exc:
            self._error = exc
            self._continue_pending = False
            raise

    def buffer_body(self) -> None:
        """Read the pending body whole (rule 7): ``next_request()`` returns it complete."""
        self._choose(False)

    def stream_body(self) -> None:
        """Stream the pending body (rule 7): its pieces come from ``next_body()``."""
        self._choose(True)

    def next_body(self) -> bytes | None:
        """The next piece of a streamed body, ``None`` for more bytes, ``b""`` at its end."""
        if self._error is not None:
            raise self._error
        if not self._streaming:
            raise RuntimeError("next_body() without a streamed request body (stream_body())")
        try:
            return self._advance_body()
        except ProtocolError as exc:
            self._error = exc
            self._continue_pending = False
            raise

    def _choose(self, streaming: bool) -> None:
        if self._error is not None:
            raise self._error
        if self._state != _DECIDE:
            raise RuntimeError("no request body awaits buffer_body() or stream_body()")
        limit = self._streamed_limit if streaming else self.max_body_bytes
        self._body_limit = limit
        try:
            if self._te:
                self._state = _CHUNK_SIZE
                self._scan = self._pos
                self._field_bytes = 0
            else:
                if self._content_length > limit:
                    raise ContentTooLarge(f"body larger than {limit} bytes")
                self._state = _BODY
        except ProtocolError as exc:
            self._error = exc
            raise
        self._streaming = streaming
        if self._expect and self._version == "1.1":
            self._continue_pending = True

    def _next_line(self, limit: int, too_long: type, what: str) -> int:
        """Index of the LF ending the line at ``_pos`` (checked CRLF), or -1 for more data.

        Raises ``too_long`` when the line (without CRLF) is longer than ``limit``.
        """
        buf = self._buf
        pos = self._pos
        lf = buf.find(b"\n", max(self._scan, pos))
        if lf < 0:
            end = len(buf)
            self._scan = end
            pending = end - pos
            if pending and buf[end - 1] == 13:
                pending -= 1
            if pending > limit:
                raise too_long(f"{what} longer than {limit} bytes")
            return -1
        self._scan = lf + 1
        if lf - 1 - pos > limit:
            raise too_long(f"{what} longer than {limit} bytes")
        if lf == pos or buf[lf - 1] != 13:
            raise BadRequest(f"bare LF in {what}")
        return lf

    def _advance(self) -> ParsedRequest | None:
        buf = self._buf
        while True:
            state = self._state
            if state == _HEAD:
                if self._method is None:
                    # Skip empty lines before a request line (RFC 9112 2.2).
                    while buf.startswith(b"\r\n", self._pos):
                        self._pos += 2
                    lf = self._next_line(self.max_request_line_bytes, URITooLong, "request line")
                    if lf < 0:
                        self._need_more()
                        return None
                    self._request_line(lf)
                    continue
                lf = self._next_line(
                    self.max_header_bytes - self._field_bytes, HeaderFieldsTooLarge, "header block"
                )
                if lf < 0:
                    self._need_more()
                    return None
                if lf == self._pos + 1:  # the empty line: end of the head
                    self._pos = lf + 1
                    if self._end_of_head():  # head_first, and a body to come (rule 6)
                        return self._head_only()
                    continue
                self._field_line(lf, self._headers)
            elif state == _BODY:
                available = len(buf) - self._pos
                if available < self._remaining:
                    self._need_more()
                    return None
                end = self._pos + self._remaining
                body = bytes(buf[self._pos:end])
                self._pos = end
                return self._finish(body)
            elif state == _CHUNK_SIZE:
                lf = self._next_line(MAX_CHUNK_SIZE_LINE_BYTES, BadRequest, "chunk size line")
                if lf < 0:
                    self._need_more()
                    return None
                self._chunk_size_line(lf)
            elif state == _CHUNK_DATA:
                available = len(buf) - self._pos
                if not available:
                    self._need_more()
                    return None
                take = min(available, self._remaining)
                self._body_parts.append(bytes(buf[self._pos:self._pos + take]))
                self._pos += take
                self._remaining -= take
                if not self._remaining:
                    self._state = _CHUNK_DATA_END
            elif state == _CHUNK_DATA_END:
                if len(buf) - self._pos < 2:
                    if len(buf) > self._pos and buf[self._pos] != 13:
                        raise BadRequest("chunk data not followed by CRLF")
                    self._need_more()
                    return None
                if buf[self._pos] != 13 or buf[self._pos + 1] != 10:
                    raise BadRequest("chunk data not followed by CRLF")
                self._pos += 2
                self._scan = self._pos
                self._state = _CHUNK_SIZE
            elif state == _TRAILERS:
                lf = self._next_line(
                    self.max_header_bytes - self._field_bytes, HeaderFieldsTooLarge, "trailer block"
                )
                if lf < 0:
                    self._need_more()
                    return None
                if lf == self._pos + 1:
                    self._pos = lf + 1
                    return self._finish(b"".join(self._body_parts))
                self._field_line(lf, self._trailers)
            else:  # _CLOSED
                return None

    def _advance_body(self) -> bytes | None:
        """``_advance`` for a streamed body (rule 8): the same states and checks, but each
        piece of data is returned as it comes instead of being kept."""
        buf = self._buf
        while True:
            state = self._state
            if state == _BODY:
                remaining = self._remaining
                if not remaining:
                    return self._end_of_stream()
                available = len(buf) - self._pos
                if not available:
                    self._need_more()
                    return None
                take = min(available, remaining)
                piece = bytes(buf[self._pos:self._pos + take])
                self._pos += take
                self._remaining = remaining - take
                return piece
            elif state == _CHUNK_SIZE:
                lf = self._next_line(MAX_CHUNK_SIZE_LINE_BYTES, BadRequest, "chunk size line")
                if lf < 0:
                    self._need_more()
                    return None
                self._chunk_size_line(lf)
            elif state == _CHUNK_DATA:
                available = len(buf) - self._pos
                if not available:
                    self._need_more()
                    return None
                take = min(available, self._remaining)
                piece = bytes(buf[self._pos:self._pos + take])
                self._pos += take
                self._remaining -= take
                if not self._remaining:
                    self._state = _CHUNK_DATA_END
                return piece
            elif state == _CHUNK_DATA_END:
                if len(buf) - self._pos < 2:
                    if len(buf) > self._pos and buf[self._pos] != 13:
                        raise BadRequest("chunk data not followed by CRLF")
                    self._need_more()
                    return None
                if buf[self._pos] != 13 or buf[self._pos + 1] != 10:
                    raise BadRequest("chunk data not followed by CRLF")
                self._pos += 2
                self._scan = self._pos
                self._state = _CHUNK_SIZE
            else:  # _TRAILERS
                lf = self._next_line(
                    self.max_header_bytes - self._field_bytes, HeaderFieldsTooLarge, "trailer block"
                )
                if lf < 0:
                    self._need_more()
                    return None
                if lf == self._pos + 1:
                    self._pos = lf + 1
                    return self._end_of_stream()
                self._field_line(lf, self._trailers)

    def _need_more(self) -> None:
        # Raises if EOF came in the middle of a request; else the caller returns None.
        if self._eof and (self._method is not None or self._pos < len(self._buf)):
            raise BadRequest("connection closed before the request was complete")
        return None

    def _request_line(self, lf: int) -> None:
        buf = self._buf
        match = _REQUEST_LINE_RE.fullmatch(buf, self._pos, lf)
        if match is None:
            raise _request_line_error(bytes(buf[self._pos:lf]))
        raw_method, target, major, minor = match.groups()
        if major != b"1":
            raise HTTPVersionNotSupported(f"HTTP/{major.decode()}.{minor.decode()} not supported")
        method = _METHODS.get(raw_method) or raw_method.decode("ascii")
        _check_target(method, target)
        self._method = method
        self._target = target.decode("ascii")
        self._version = "1.0" if minor == b"0" else "1.1"
        self._pos = lf + 1

    def _field_line(self, lf: int, into: list) -> None:
        buf = self._buf
        if len(into) >= self.max_header_count:
            raise HeaderFieldsTooLarge(f"more than {self.max_header_count} header fields")
        match = _FIELD_LINE_RE.fullmatch(buf, self._pos, lf)
        if match is None:
            raise _field_line_error(bytes(buf[self._pos:lf]))
        self._field_bytes += lf + 1 - self._pos
        self._pos = lf + 1
        name = match.group(1).lower()
        value = match.group(2)
        into.append((name, value))
        if into is self._headers:
            if name == b"host":
                self._hosts += 1
            elif name == b"content-length":
                self._content_length = _content_length(value, self._content_length)
            elif name == b"transfer-encoding":
                self._te.append(value)
            elif name == b"connection":
                self._connection.append(value)
            elif name == b"expect":
                if value.lower() != b"100-continue":
                    if self._version == "1.1":
                        raise ExpectationFailed("unsupported expectation")
                else:
                    self._expect = True

    def _end_of_head(self) -> bool:
        """Check the head; True when it goes out first (rule 6), its body to come."""
        version = self._version
        if version == "1.1":
            if self._hosts != 1:
                raise BadRequest("missing Host header" if not self._hosts else "duplicate Host")
            for name, value in self._headers:
                if name == b"host" and not _HOST_RE.fullmatch(value):
                    raise BadRequest("invalid Host header")
        elif self._hosts > 1:
            raise BadRequest("duplicate Host")
        tokens = _connection_tokens(self._connection) if self._connection else ()
        if version == "1.1":
            self._keep_alive = b"close" not in tokens
        else:
            self._keep_alive = b"keep-alive" in tokens and b"close" not in tokens
        if self._te:
            if version == "1.0":
                raise BadRequest("Transfer-Encoding in an HTTP/1.0 request")
            if self._content_length != -1:
                raise BadRequest("both Content-Length and Transfer-Encoding")
            self._chunked = _is_chunked(self._te)
            if self.head_first:
                self._state = _DECIDE
                return True
            self._state = _CHUNK_SIZE
            self._scan = self._pos
            self._field_bytes = 0
        elif self._content_length > 0:
            self._remaining = self._content_length
            if self.head_first:
                self._state = _DECIDE
                return True
            if self._content_length > self.max_body_bytes:
                raise ContentTooLarge(f"body larger than {self.max_body_bytes} bytes")
            self._state = _BODY
        else:
            self._state = _BODY
            self._remaining = 0
            return False
        if self._expect and version == "1.1":
            self._continue_pending = True
        return False

    def _chunk_size_line(self, lf: int) -> None:
        buf = self._buf
        match = _CHUNK_SIZE_LINE_RE.fullmatch(buf, self._pos, lf)
        if match is None:
            raise BadRequest("invalid chunk size line")
        digits = match.group(1).lstrip(b"0")
        size = (int(digits, 16) if digits else 0) if len(digits) <= 15 else 1 << 62
        self._pos = lf + 1
        if size == 0:
            self._state = _TRAILERS
            self._field_bytes = 0
            return
        self._body_len += size
        if self._body_len > self._body_limit:
            raise ContentTooLarge(f"body larger than {self._body_limit} bytes")
        self._remaining = size
        self._state = _CHUNK_DATA

    def _head_only(self) -> ParsedRequest:
        # The trailers list is the message's own: a streamed body's trailers land in it.
        return ParsedRequest(
            self._method, self._target, self._version, self._headers, b"",
            self._trailers, self._keep_alive,
        )

    def _end_of_stream(self) -> bytes:
        self._continue_pending = False
        keep_alive = self._keep_alive
        self._reset_message()
        self._scan = self._pos
        self._state = _HEAD if keep_alive else _CLOSED
        return b""

    def _finish(self, body: bytes) -> ParsedRequest:
        request = ParsedRequest(
            self._method, self._target, self._version, self._headers, body,
            self._trailers, self._keep_alive,
        )
        self._continue_pending = False
        keep_alive = self._keep_alive
        self._reset_message()
        self._scan = self._pos
        self._state = _HEAD if keep_alive else _CLOSED
        return request
