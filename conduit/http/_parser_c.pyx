# cython: language_level=3
"""Strict HTTP/1.1 request parser, compiled twin of ``_parser_py.py``.

The rules (grammar, limits, invariants) are written once, at the top of ``_parser_py.py``;
this twin obeys the same ones and the tests run every case on both. What differs is how:

1. Bytes live in one malloc'd buffer with a read offset. Space is reclaimed by moving the
   unread tail down only when at least as many bytes were consumed as remain (amortised
   O(1) per byte), and the buffer is freed whenever a request leaves it empty, so an idle
   connection (an SSE stream) holds no read buffer at all.
2. Lines are found with ``memchr`` from where the last search stopped; every byte is then
   checked once against a 256-entry table.
3. PERF: a parsed head is one ``bytes`` copy of its field lines plus an array of spans
   (name and value offsets). ``ParsedRequest.headers`` builds the list of
   ``(lowercased name, value)`` tuples on first access; the few fields the parser itself
   needs (Host, Content-Length, Transfer-Encoding, Connection, Expect) are read in C while
   scanning. Parsing a browser's ~500-byte GET head therefore costs a handful of
   allocations instead of ~40.
4. Error *reasons* for malformed lines come from the pure twin's diagnosis helpers (a slow
   path taken only on bad input), so both twins say the same thing.
5. Streamed bodies (``head_first``, rules 6-10 of the pure twin): ``_advance_body`` walks
   the same states as ``_advance``, returning each piece instead of keeping it. PERF: a
   piece that is all of a ``bytes`` object the caller fed (a Content-Length body arriving
   in whole reads) is that object itself, not a copy; once a piece empties the buffer, the
   buffer is released, so the next ``feed`` borrows again.
"""

cimport cython
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.stdint cimport uint64_t
from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.unicode cimport PyUnicode_DecodeASCII
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memchr, memcmp, memcpy, memmove

from conduit.errors import (
    BadRequest,
    ContentTooLarge,
    ExpectationFailed,
    HeaderFieldsTooLarge,
    HTTPVersionNotSupported,
    ProtocolError,
    URITooLong,
)
from conduit.http import _parser_py as _pure

DEF MAX_CHUNK_SIZE_LINE_BYTES = 4096
DEF BIG = 1 << 62
DEF MAX_STREAMED = (1 << 62) - 1  # the pure twin's MAX_STREAMED_BODY_BYTES

MAX_CHUNK_SIZE_LINE_BYTES_ = MAX_CHUNK_SIZE_LINE_BYTES

# Byte classes (bit flags) for table lookups.
DEF C_TCHAR = 1     # RFC 9110 tchar
DEF C_VALUE = 2     # field-value byte: HTAB, SP, VCHAR, obs-text
DEF C_TARGET = 4    # request-target byte: VCHAR except '#'
DEF C_HOST = 8      # uri-host / port bytes (unreserved, sub-delims, '%', ':', '[', ']')
DEF C_HEX = 16

cdef unsigned char CLASS[256]


cdef void _init_tables():
    cdef int c
    cdef bytes tchar_extra = b"!#$%&'*+-.^_`|~"
    cdef bytes host_extra = b"-._~!$&'()*+,;=%:[]"
    for c in range(256):
        CLASS[c] = 0
        if (48 <= c <= 57) or (65 <= c <= 90) or (97 <= c <= 122):
            CLASS[c] |= C_TCHAR | C_HOST
        if c == 9 or 0x20 <= c <= 0x7E or c >= 0x80:
            CLASS[c] |= C_VALUE
        if 0x21 <= c <= 0x7E and c != 35:
            CLASS[c] |= C_TARGET
        if (48 <= c <= 57) or (65 <= c <= 70) or (97 <= c <= 102):
            CLASS[c] |= C_HEX
    for c in tchar_extra:
        CLASS[c] |= C_TCHAR
    for c in host_extra:
        CLASS[c] |= C_HOST


_init_tables()

# States (same meaning as in the pure twin)
DEF S_HEAD = 0
DEF S_BODY = 1
DEF S_CHUNK_SIZE = 2
DEF S_CHUNK_DATA = 3
DEF S_CHUNK_DATA_END = 4
DEF S_TRAILERS = 5
DEF S_CLOSED = 6
DEF S_DECIDE = 7

cdef str M_GET = "GET"
cdef str M_POST = "POST"
cdef str M_PUT = "PUT"
cdef str M_DELETE = "DELETE"
cdef str M_HEAD = "HEAD"
cdef str M_OPTIONS = "OPTIONS"
cdef str M_PATCH = "PATCH"
cdef str V10 = "1.0"
cdef str V11 = "1.1"


cdef inline unsigned char _lower(unsigned char c) noexcept nogil:
    if 65 <= c <= 90:
        return c + 32
    return c


cdef inline bint _ieq(const char* p, Py_ssize_t n, const char* lit, Py_ssize_t m) noexcept nogil:
    """Case-insensitive compare of p[:n] with a lowercase literal of length m."""
    cdef Py_ssize_t i
    if n != m:
        return False
    for i in range(n):
        if _lower(<unsigned char>p[i]) != <unsigned char>lit[i]:
            return False
    return True


_LINE_NAMES = ("request line", "header block", "chunk size line", "trailer block")


cdef int _too_long(int kind, Py_ssize_t limit) except -1:
    error = (URITooLong, HeaderFieldsTooLarge, BadRequest, HeaderFieldsTooLarge)[kind]
    raise error(f"{_LINE_NAMES[kind]} longer than {limit} bytes")


cdef inline bint _plain_word(const char* p) noexcept nogil:
    """True when none of the 8 bytes at p is < 0x20 or 0x7F (exact test, see hasless)."""
    cdef uint64_t x
    memcpy(&x, p, 8)
    cdef uint64_t ones = 0x0101010101010101ULL
    cdef uint64_t high = 0x8080808080808080ULL
    cdef uint64_t y = x ^ (0x7F * ones)
    # a byte < 0x20 (only bytes < 0x80 can trigger), or a byte equal to 0x7F
    return ((x - 0x20 * ones) & ~x & high) == 0 and ((y - ones) & ~y & high) == 0


cdef tuple _field(const char* base, Py_ssize_t name_off, Py_ssize_t name_len,
                  Py_ssize_t value_off, Py_ssize_t value_len):
    cdef bytes name = PyBytes_FromStringAndSize(NULL, name_len)
    cdef char* out = PyBytes_AS_STRING(name)
    cdef Py_ssize_t i
    for i in range(name_len):
        out[i] = <char>_lower(<unsigned char>base[name_off + i])
    return (name, PyBytes_FromStringAndSize(base + value_off, value_len))


@cython.final
cdef class ParsedRequest:
    """One complete request: head and (de-chunked) body."""

    cdef readonly str method
    cdef readonly str target
    cdef readonly str version
    cdef readonly bytes body
    cdef readonly list trailers
    cdef readonly bint keep_alive
    # _head: the field lines as received, then (8-aligned, from _spans_at) their spans,
    # 4 Py_ssize_t per field (name offset and length, value offset and length): one
    # allocation for both.
    cdef bytes _head
    cdef Py_ssize_t _spans_at
    cdef Py_ssize_t _count    # number of fields
    cdef list _headers        # built on first access of .headers

    @property
    def headers(self):
        """List of ``(lowercased name, value)`` byte tuples, in arrival order."""
        cdef Py_ssize_t i
        cdef const char* base
        cdef const Py_ssize_t* spans
        if self._headers is None:
            headers = []
            base = PyBytes_AS_STRING(self._head)
            spans = <const Py_ssize_t*>(base + self._spans_at)
            for i in range(self._count):
                headers.append(_field(base, spans[4 * i], spans[4 * i + 1],
                                      spans[4 * i + 2], spans[4 * i + 3]))
            self._headers = headers
        return self._headers

    def __repr__(self):
        return (
            f"ParsedRequest({self.method} {self.target} HTTP/{self.version}, "
            f"{self._count} headers, {len(self.body)} body bytes, "
            f"keep_alive={self.keep_alive})"
        )


@cython.final
cdef class RequestParser:
    """Bytes in, :class:`ParsedRequest` out. See ``_parser_py`` for the rules."""

    cdef readonly Py_ssize_t max_request_line_bytes
    cdef readonly Py_ssize_t max_header_bytes
    cdef readonly Py_ssize_t max_header_count
    cdef readonly Py_ssize_t max_body_bytes
    cdef readonly object max_streamed_body_bytes  # None (unbounded) or an int
    cdef readonly bint head_first
    cdef Py_ssize_t _streamed_limit

    cdef char* _buf
    cdef object _borrowed         # the bytes object _buf points into, when not owned
    cdef Py_ssize_t _cap          # 0 while _buf is borrowed or NULL
    cdef Py_ssize_t _len
    cdef Py_ssize_t _pos          # start of unconsumed bytes
    cdef Py_ssize_t _scan         # where the next LF search resumes
    cdef Py_ssize_t _head_start   # first byte of the current head's field lines
    cdef int _state
    cdef bint _eof
    cdef object _error
    cdef bint _continue_pending

    # the message in progress
    cdef bint _have_line
    cdef str _method
    cdef str _target
    cdef str _version
    cdef Py_ssize_t* _spans
    cdef Py_ssize_t _count
    cdef Py_ssize_t _spans_cap
    cdef bytes _head
    cdef Py_ssize_t _spans_at
    cdef list _trailers
    cdef Py_ssize_t _field_bytes
    cdef list _body_parts
    cdef Py_ssize_t _body_len
    cdef Py_ssize_t _remaining
    cdef bint _keep_alive
    cdef Py_ssize_t _content_length
    cdef int _hosts
    cdef bint _bad_host
    cdef list _te
    cdef bint _conn_close
    cdef bint _conn_keep_alive
    cdef bint _expect
    cdef Py_ssize_t _body_limit   # max_body_bytes, or _streamed_limit for a streamed body
    cdef bint _streaming          # the body goes out through next_body()

    def __cinit__(self):
        self._buf = NULL
        self._spans = NULL

    def __init__(self, *, Py_ssize_t max_request_line_bytes=8 * 1024,
                 Py_ssize_t max_header_bytes=64 * 1024, Py_ssize_t max_header_count=2000,
                 Py_ssize_t max_body_bytes=1024 * 1024, max_streamed_body_bytes=None,
                 head_first=False):
        if (max_request_line_bytes < 0 or max_header_bytes < 0 or max_header_count < 0
                or max_body_bytes < 0 or (max_streamed_body_bytes is not None and (
                    type(max_streamed_body_bytes) is not int or max_streamed_body_bytes < 0))):
            _pure.RequestParser(
                max_request_line_bytes=max_request_line_bytes,
                max_header_bytes=max_header_bytes,
                max_header_count=max_header_count,
                max_body_bytes=max_body_bytes,
                max_streamed_body_bytes=max_streamed_body_bytes,
            )  # raises the ValueError that names the bad limit
        self.max_request_line_bytes = max_request_line_bytes
        self.max_header_bytes = max_header_bytes
        self.max_header_count = max_header_count
        self.max_body_bytes = min(max_body_bytes, BIG)
        self.max_streamed_body_bytes = max_streamed_body_bytes
        self._streamed_limit = (MAX_STREAMED if max_streamed_body_bytes is None
                                else min(max_streamed_body_bytes, MAX_STREAMED))
        self.head_first = bool(head_first)
        self._state = S_HEAD
        self._error = None
        self._reset_message()

    def __dealloc__(self):
        if self._cap:
            free(self._buf)
        free(self._spans)

    cdef void _reset_message(self):
        self._have_line = False
        self._method = None
        self._target = None
        self._version = None
        self._count = 0
        self._head = None
        self._trailers = None
        self._field_bytes = 0
        self._body_parts = None
        self._body_len = 0
        self._remaining = 0
        self._keep_alive = True
        self._content_length = -1
        self._hosts = 0
        self._bad_host = False
        self._te = None
        self._conn_close = False
        self._conn_keep_alive = False
        self._expect = False
        self._body_limit = self.max_body_bytes
        self._streaming = False

    # -- input -------------------------------------------------------------------------
    def feed(self, data):
        """Append bytes received from the peer; ``b""`` means the peer closed (EOF)."""
        cdef Py_buffer view
        if type(data) is bytes:
            if self._len == 0 and PyBytes_GET_SIZE(data) and not (
                    self._eof or self._state == S_CLOSED or self._error is not None):
                # PERF: nothing buffered: parse straight from the caller's (immutable)
                # bytes; only a leftover partial request is ever copied (in _append).
                self._borrowed = data
                self._buf = PyBytes_AS_STRING(data)
                self._len = PyBytes_GET_SIZE(data)
                self._pos = self._scan = self._head_start = 0
                return
            self._feed(PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data))
            return
        PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
        try:
            self._feed(<const char*>view.buf, view.len)
        finally:
            PyBuffer_Release(&view)

    cdef int _feed(self, const char* data, Py_ssize_t n) except -1:
        if n == 0:
            self._eof = True
        elif not (self._eof or self._state == S_CLOSED or self._error is not None):
            self._append(data, n)
        return 0

    cdef int _append(self, const char* data, Py_ssize_t n) except -1:
        cdef Py_ssize_t keep = self._pos
        cdef Py_ssize_t need, cap
        cdef char* grown
        if self._state == S_HEAD and self._have_line and self._head_start < keep:
            keep = self._head_start  # spans point into the head: keep it in place
        if self._borrowed is not None:
            self._own(keep, n)
        elif self._len + n > self._cap:
            if keep and keep >= self._len - keep:
                # PERF: move the unread tail down only when that costs no more than what
                # was consumed since the last move (amortised O(1) per byte).
                memmove(self._buf, self._buf + keep, self._len - keep)
                self._len -= keep
                self._pos -= keep
                self._scan -= keep
                self._head_start -= keep
            need = self._len + n
            if need > self._cap:
                cap = self._cap * 2 if self._cap else 1024
                while cap < need:
                    cap *= 2
                grown = <char*>realloc(self._buf, cap)
                if grown == NULL:
                    raise MemoryError()
                self._buf = grown
                self._cap = cap
        memcpy(self._buf + self._len, data, n)
        self._len += n
        return 0

    cdef int _own(self, Py_ssize_t keep, Py_ssize_t n) except -1:
        """Copy the unconsumed part of a borrowed buffer into an owned one, with room for n."""
        cdef Py_ssize_t cap = 1024
        cdef char* owned
        while cap < self._len - keep + n:
            cap *= 2
        owned = <char*>malloc(cap)
        if owned == NULL:
            raise MemoryError()
        memcpy(owned, self._buf + keep, self._len - keep)
        self._buf = owned
        self._cap = cap
        self._borrowed = None
        self._len -= keep
        self._pos -= keep
        self._scan -= keep
        self._head_start -= keep
        return 0

    def has_partial(self):
        """True when part of a request (not yet complete) has been received."""
        if self._state == S_CLOSED or self._error is not None:
            return False
        return self._have_line or self._state != S_HEAD or self._pos < self._len

    def needs_continue(self):
        """True once per request that sent ``Expect: 100-continue`` and awaits its body."""
        if self._continue_pending:
            self._continue_pending = False
            return True
        return False

    def body_pending(self):
        """True when ``next_request()`` returned a head whose body is to come (rule 6)."""
        return self._state == S_DECIDE and self._error is None

    # -- output ------------------------------------------------------------------------
    def next_request(self):
        """The next complete request, ``None`` if more bytes are needed, or raise."""
        if self._error is not None:
            raise self._error
        if self._streaming or self._state == S_DECIDE:
            raise RuntimeError("next_request() while a request body awaits buffer_body() or "
                               "stream_body(), or is being streamed (next_body())")
        try:
            return self._advance()
        except ProtocolError as exc:
            self._error = exc
            self._continue_pending = False
            raise

    def buffer_body(self):
        """Read the pending body whole (rule 7): ``next_request()`` returns it complete."""
        self._choose(False)

    def stream_body(self):
        """Stream the pending body (rule 7): its pieces come from ``next_body()``."""
        self._choose(True)

    def next_body(self):
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

    cdef int _choose(self, bint streaming) except -1:
        if self._error is not None:
            raise self._error
        if self._state != S_DECIDE:
            raise RuntimeError("no request body awaits buffer_body() or stream_body()")
        cdef Py_ssize_t limit = self._streamed_limit if streaming else self.max_body_bytes
        self._body_limit = limit
        if self._te is not None:
            self._state = S_CHUNK_SIZE
            self._scan = self._pos
            self._field_bytes = 0
            if not streaming:
                self._body_parts = []
        else:
            if self._content_length > limit:
                self._error = ContentTooLarge(f"body larger than {limit} bytes")
                raise self._error
            self._state = S_BODY
        self._streaming = streaming
        if self._expect and self._version is V11:
            self._continue_pending = True
        return 0

    cdef Py_ssize_t _next_line(self, Py_ssize_t limit, int kind) except -2:
        """Index of the LF ending the line at _pos (CRLF checked), or -1 for more data.

        ``kind`` names the line for errors (no Python objects on the hot path):
        0 request line, 1 header block, 2 chunk size line, 3 trailer block.
        """
        cdef Py_ssize_t start = self._scan if self._scan > self._pos else self._pos
        cdef Py_ssize_t pending
        cdef const char* found = NULL
        if start < self._len:
            found = <const char*>memchr(self._buf + start, 10, self._len - start)
        if found == NULL:
            self._scan = self._len
            pending = self._len - self._pos
            if pending and self._buf[self._len - 1] == 13:
                pending -= 1
            if pending > limit:
                _too_long(kind, limit)
            return -1
        cdef Py_ssize_t lf = found - self._buf
        self._scan = lf + 1
        if lf - 1 - self._pos > limit:
            _too_long(kind, limit)
        if lf == self._pos or self._buf[lf - 1] != 13:
            raise BadRequest(f"bare LF in {_LINE_NAMES[kind]}")
        return lf

    cdef object _advance(self):
        cdef Py_ssize_t lf, available, take
        cdef int state
        while True:
            state = self._state
            if state == S_HEAD:
                if not self._have_line:
                    while (self._len - self._pos >= 2 and self._buf[self._pos] == 13
                           and self._buf[self._pos + 1] == 10):
                        self._pos += 2
                    lf = self._next_line(self.max_request_line_bytes, 0)
                    if lf < 0:
                        return self._need_more()
                    self._request_line(lf)
                    continue
                lf = self._next_line(self.max_header_bytes - self._field_bytes, 1)
                if lf < 0:
                    return self._need_more()
                if lf == self._pos + 1:
                    if self._end_of_head(lf):  # head_first, and a body to come (rule 6)
                        return self._head_only()
                    continue
                self._field_line(lf, False)
            elif state == S_BODY:
                if self._len - self._pos < self._remaining:
                    return self._need_more()
                body = PyBytes_FromStringAndSize(self._buf + self._pos, self._remaining)
                self._pos += self._remaining
                return self._finish(body)
            elif state == S_CHUNK_SIZE:
                lf = self._next_line(MAX_CHUNK_SIZE_LINE_BYTES, 2)
                if lf < 0:
                    return self._need_more()
                self._chunk_size_line(lf)
            elif state == S_CHUNK_DATA:
                available = self._len - self._pos
                if not available:
                    return self._need_more()
                take = available if available < self._remaining else self._remaining
                self._body_parts.append(PyBytes_FromStringAndSize(self._buf + self._pos, take))
                self._pos += take
                self._remaining -= take
                if not self._remaining:
                    self._state = S_CHUNK_DATA_END
            elif state == S_CHUNK_DATA_END:
                if self._len - self._pos < 2:
                    if self._len > self._pos and self._buf[self._pos] != 13:
                        raise BadRequest("chunk data not followed by CRLF")
                    return self._need_more()
                if self._buf[self._pos] != 13 or self._buf[self._pos + 1] != 10:
                    raise BadRequest("chunk data not followed by CRLF")
                self._pos += 2
                self._scan = self._pos
                self._state = S_CHUNK_SIZE
            elif state == S_TRAILERS:
                lf = self._next_line(self.max_header_bytes - self._field_bytes, 3)
                if lf < 0:
                    return self._need_more()
                if lf == self._pos + 1:
                    self._pos = lf + 1
                    return self._finish(b"".join(self._body_parts))
                self._field_line(lf, True)
            else:
                return None

    cdef object _advance_body(self):
        """``_advance`` for a streamed body (rule 8 of the pure twin)."""
        cdef Py_ssize_t lf, available, take
        cdef int state
        while True:
            state = self._state
            if state == S_BODY:
                if not self._remaining:
                    return self._end_of_stream()
                available = self._len - self._pos
                if not available:
                    if self._len:
                        self._release_buffer()  # so that the next feed is borrowed
                    return self._need_more()
                take = available if available < self._remaining else self._remaining
                self._remaining -= take
                return self._piece(take)
            elif state == S_CHUNK_SIZE:
                lf = self._next_line(MAX_CHUNK_SIZE_LINE_BYTES, 2)
                if lf < 0:
                    return self._need_more()
                self._chunk_size_line(lf)
            elif state == S_CHUNK_DATA:
                available = self._len - self._pos
                if not available:
                    if self._len:
                        self._release_buffer()  # so that the next feed is borrowed
                    return self._need_more()
                take = available if available < self._remaining else self._remaining
                self._remaining -= take
                if not self._remaining:
                    self._state = S_CHUNK_DATA_END
                return self._piece(take)
            elif state == S_CHUNK_DATA_END:
                if self._len - self._pos < 2:
                    if self._len > self._pos and self._buf[self._pos] != 13:
                        raise BadRequest("chunk data not followed by CRLF")
                    return self._need_more()
                if self._buf[self._pos] != 13 or self._buf[self._pos + 1] != 10:
                    raise BadRequest("chunk data not followed by CRLF")
                self._pos += 2
                self._scan = self._pos
                self._state = S_CHUNK_SIZE
            else:  # S_TRAILERS
                lf = self._next_line(self.max_header_bytes - self._field_bytes, 3)
                if lf < 0:
                    return self._need_more()
                if lf == self._pos + 1:
                    self._pos = lf + 1
                    return self._end_of_stream()
                self._field_line(lf, True)

    cdef bytes _piece(self, Py_ssize_t take):
        """The next ``take`` buffered bytes as a piece of a streamed body."""
        cdef bytes piece
        if self._pos == 0 and take == self._len and self._borrowed is not None:
            piece = self._borrowed  # PERF: all of what the caller fed: no copy
        else:
            piece = PyBytes_FromStringAndSize(self._buf + self._pos, take)
        self._pos += take
        if self._pos == self._len:
            self._release_buffer()
        return piece

    cdef void _release_buffer(self):
        # Nothing buffered: drop the buffer (owned or borrowed); the next feed borrows again.
        if self._cap:
            free(self._buf)
        self._borrowed = None
        self._buf = NULL
        self._cap = self._len = self._pos = self._scan = self._head_start = 0

    cdef ParsedRequest _head_only(self):
        cdef ParsedRequest request = ParsedRequest.__new__(ParsedRequest)
        request.method = self._method
        request.target = self._target
        request.version = self._version
        request.body = b""
        if self._trailers is None:
            self._trailers = []
        request.trailers = self._trailers  # a streamed body's trailers land in it
        request.keep_alive = self._keep_alive
        request._head = self._head
        request._spans_at = self._spans_at
        request._count = self._count
        return request

    cdef bytes _end_of_stream(self):
        self._continue_pending = False
        self._state = S_HEAD if self._keep_alive else S_CLOSED
        self._reset_message()
        if self._pos == self._len:
            # NOTE: as in _finish: an idle connection holds no parsing memory.
            free(self._spans)
            self._spans = NULL
            self._spans_cap = 0
            self._release_buffer()
        self._scan = self._pos
        return b""

    cdef object _need_more(self):
        if self._eof and (self._have_line or self._pos < self._len):
            raise BadRequest("connection closed before the request was complete")
        return None

    cdef int _request_line(self, Py_ssize_t lf) except -1:
        cdef const char* p = self._buf + self._pos
        cdef Py_ssize_t n = lf - 1 - self._pos  # without CRLF
        cdef Py_ssize_t i = 0, sp1, sp2
        # method
        while i < n and CLASS[<unsigned char>p[i]] & C_TCHAR:
            i += 1
        sp1 = i
        if sp1 == 0 or i >= n or p[i] != 32:
            self._line_error(lf, True)
        i += 1
        while i < n and CLASS[<unsigned char>p[i]] & C_TARGET:
            i += 1
        sp2 = i
        if sp2 == sp1 + 1 or i >= n or p[i] != 32:
            self._line_error(lf, True)
        i += 1
        # version: exactly HTTP/d.d
        if (n - i != 8 or memcmp(p + i, b"HTTP/", 5) != 0 or not (48 <= p[i + 5] <= 57)
                or p[i + 6] != 46 or not (48 <= p[i + 7] <= 57)):
            self._line_error(lf, True)
        if p[i + 5] != 49:
            raise HTTPVersionNotSupported(
                f"HTTP/{chr(<int>p[i + 5])}.{chr(<int>p[i + 7])} not supported")
        self._version = V10 if p[i + 7] == 48 else V11
        self._method = _method_str(p, sp1)
        if p[sp1 + 1] != 47:  # not origin-form: the rare forms are checked by the pure twin
            _pure._check_target(self._method,
                                PyBytes_FromStringAndSize(p + sp1 + 1, sp2 - sp1 - 1))
        self._target = PyUnicode_DecodeASCII(p + sp1 + 1, sp2 - sp1 - 1, NULL)
        self._pos = lf + 1
        self._scan = self._pos
        self._head_start = self._pos
        self._have_line = True
        return 0

    cdef int _line_error(self, Py_ssize_t lf, bint request_line) except -1:
        line = PyBytes_FromStringAndSize(self._buf + self._pos, lf - self._pos)
        if request_line:
            raise _pure._request_line_error(line)
        raise _pure._field_line_error(line)

    cdef int _field_line(self, Py_ssize_t lf, bint trailer) except -1:
        cdef const char* p = self._buf + self._pos
        cdef Py_ssize_t n = lf - 1 - self._pos  # without CRLF
        cdef Py_ssize_t i = 0, name_len, vstart, vend
        cdef Py_ssize_t count = len(self._trailers) if trailer else self._count
        if count >= self.max_header_count:
            raise HeaderFieldsTooLarge(f"more than {self.max_header_count} header fields")
        cdef const char* colon = <const char*>memchr(p, 58, n)
        cdef unsigned char bad = 0
        if colon == NULL:
            self._line_error(lf, False)
        name_len = colon - p
        # PERF: no early exit: an OR over the bytes has no data-dependent branch to
        # mispredict (the loop exits were the hottest instructions here).
        for i in range(name_len):
            bad |= (CLASS[<unsigned char>p[i]] & C_TCHAR) ^ C_TCHAR
        if name_len == 0 or bad:
            self._line_error(lf, False)
        i = name_len + 1
        while i < n and (p[i] == 32 or p[i] == 9):
            i += 1
        vstart = i
        # PERF: check 8 bytes at a time; a word with no control byte and no DEL is all
        # field-value bytes (HTAB, rare, is checked by the byte loop below).
        while i + 8 <= n and _plain_word(p + i):
            i += 8
        while i < n:
            bad |= (CLASS[<unsigned char>p[i]] & C_VALUE) ^ C_VALUE
            i += 1
        if bad:
            self._line_error(lf, False)
        vend = n
        while vend > vstart and (p[vend - 1] == 32 or p[vend - 1] == 9):
            vend -= 1
        self._field_bytes += lf + 1 - self._pos
        if trailer:
            self._trailers.append(_field(p, 0, name_len, vstart, vend - vstart))
        else:
            self._add_span(self._pos - self._head_start, name_len, vstart, vend - vstart)
            self._special(p, name_len, p + vstart, vend - vstart)
        self._pos = lf + 1
        return 0

    cdef int _add_span(self, Py_ssize_t off, Py_ssize_t name_len, Py_ssize_t vstart,
                       Py_ssize_t vlen) except -1:
        cdef Py_ssize_t* grown
        cdef Py_ssize_t k
        if self._count == self._spans_cap or self._spans == NULL:
            k = self._spans_cap * 2 if self._spans_cap else 16
            grown = <Py_ssize_t*>realloc(self._spans, k * 4 * sizeof(Py_ssize_t))
            if grown == NULL:
                raise MemoryError()
            self._spans = grown
            self._spans_cap = k
        k = 4 * self._count
        self._spans[k] = off
        self._spans[k + 1] = name_len
        self._spans[k + 2] = off + vstart
        self._spans[k + 3] = vlen
        self._count += 1
        return 0

    cdef int _special(self, const char* name, Py_ssize_t name_len, const char* value,
                      Py_ssize_t vlen) except -1:
        cdef Py_ssize_t i
        if name_len == 4 and _ieq(name, 4, b"host", 4):
            self._hosts += 1
            for i in range(vlen):
                if not CLASS[<unsigned char>value[i]] & C_HOST:
                    self._bad_host = True
        elif name_len == 14 and _ieq(name, 14, b"content-length", 14):
            self._content_length = _content_length(value, vlen, self._content_length)
        elif name_len == 17 and _ieq(name, 17, b"transfer-encoding", 17):
            if self._te is None:
                self._te = []
            self._te.append(PyBytes_FromStringAndSize(value, vlen))
        elif name_len == 10 and _ieq(name, 10, b"connection", 10):
            self._connection(value, vlen)
        elif name_len == 6 and _ieq(name, 6, b"expect", 6):
            if _ieq(value, vlen, b"100-continue", 12):
                self._expect = True
            elif self._version is V11:
                raise ExpectationFailed("unsupported expectation")
        return 0

    cdef void _connection(self, const char* value, Py_ssize_t vlen):
        cdef Py_ssize_t i = 0, start, end
        while _list_item(value, vlen, &i, &start, &end):
            if _ieq(value + start, end - start, b"close", 5):
                self._conn_close = True
            elif _ieq(value + start, end - start, b"keep-alive", 10):
                self._conn_keep_alive = True

    cdef int _end_of_head(self, Py_ssize_t lf) except -1:
        """Check the head; 1 when it goes out first (rule 6), its body to come."""
        cdef str version = self._version
        # PERF: the head and its spans in one bytes object (see ParsedRequest._head).
        cdef Py_ssize_t head_len = self._pos - self._head_start
        self._spans_at = (head_len + 7) & ~7
        self._head = PyBytes_FromStringAndSize(
            NULL, self._spans_at + self._count * 4 * <Py_ssize_t>sizeof(Py_ssize_t))
        memcpy(PyBytes_AS_STRING(self._head), self._buf + self._head_start, head_len)
        if self._count:
            memcpy(PyBytes_AS_STRING(self._head) + self._spans_at, self._spans,
                   self._count * 4 * sizeof(Py_ssize_t))
        self._pos = lf + 1
        self._scan = self._pos
        if version is V11:
            if self._hosts != 1:
                raise BadRequest("missing Host header" if not self._hosts else "duplicate Host")
            if self._bad_host:
                raise BadRequest("invalid Host header")
        elif self._hosts > 1:
            raise BadRequest("duplicate Host")
        if version is V11:
            self._keep_alive = not self._conn_close
        else:
            self._keep_alive = self._conn_keep_alive and not self._conn_close
        if self._te is not None:
            if version is V10:
                raise BadRequest("Transfer-Encoding in an HTTP/1.0 request")
            if self._content_length != -1:
                raise BadRequest("both Content-Length and Transfer-Encoding")
            te = self._te[0] if len(self._te) == 1 else None
            if te is None or not _ieq(PyBytes_AS_STRING(te), PyBytes_GET_SIZE(te), b"chunked", 7):
                _pure._is_chunked(self._te)  # anything but a plain "chunked": full rules
            self._trailers = []
            if self.head_first:
                self._state = S_DECIDE
                return 1
            self._state = S_CHUNK_SIZE
            self._field_bytes = 0
            self._body_parts = []
        elif self._content_length > 0:
            self._remaining = self._content_length
            if self.head_first:
                self._state = S_DECIDE
                return 1
            if self._content_length > self.max_body_bytes:
                raise ContentTooLarge(f"body larger than {self.max_body_bytes} bytes")
            self._state = S_BODY
        else:
            self._remaining = 0
            self._state = S_BODY
            return 0
        if self._expect and version is V11:
            self._continue_pending = True
        return 0

    cdef int _chunk_size_line(self, Py_ssize_t lf) except -1:
        cdef const char* p = self._buf + self._pos
        cdef Py_ssize_t n = lf - 1 - self._pos
        cdef Py_ssize_t i = 0, digits = 0, size = 0
        cdef unsigned char c
        while i < n and CLASS[<unsigned char>p[i]] & C_HEX:
            c = <unsigned char>p[i]
            if digits or c != 48:
                digits += 1
                if digits <= 15:
                    size = size * 16 + (c - 48 if c <= 57 else (c | 32) - 87)
            i += 1
        if i == 0:
            raise BadRequest("invalid chunk size line")
        if i != n:
            # chunk extensions (rare): validated by the pure twin's grammar
            if _pure._CHUNK_SIZE_LINE_RE.fullmatch(
                    PyBytes_FromStringAndSize(p, n + 1)) is None:
                raise BadRequest("invalid chunk size line")
        if digits > 15:
            size = BIG
        self._pos = lf + 1
        if size == 0:
            self._state = S_TRAILERS
            self._field_bytes = 0
            return 0
        self._body_len += size
        if self._body_len > self._body_limit:
            raise ContentTooLarge(f"body larger than {self._body_limit} bytes")
        self._remaining = size
        self._state = S_CHUNK_DATA
        return 0

    cdef ParsedRequest _finish(self, bytes body):
        cdef ParsedRequest request = ParsedRequest.__new__(ParsedRequest)
        request.method = self._method
        request.target = self._target
        request.version = self._version
        request.body = body
        request.trailers = self._trailers if self._trailers is not None else []
        request.keep_alive = self._keep_alive
        request._head = self._head
        request._spans_at = self._spans_at
        request._count = self._count
        self._continue_pending = False
        self._state = S_HEAD if self._keep_alive else S_CLOSED
        self._reset_message()
        if self._pos == self._len:
            # NOTE: nothing buffered: free the buffer and the spans so an idle connection (an
            # SSE stream) holds no parsing memory; the next request allocates again.
            free(self._spans)
            self._spans = NULL
            self._spans_cap = 0
            if self._cap:
                free(self._buf)
            self._borrowed = None
            self._buf = NULL
            self._cap = self._len = self._pos = 0
        self._scan = self._pos
        return request


cdef str _method_str(const char* p, Py_ssize_t n):
    if n == 3 and memcmp(p, b"GET", 3) == 0:
        return M_GET
    if n == 4 and memcmp(p, b"POST", 4) == 0:
        return M_POST
    if n == 3 and memcmp(p, b"PUT", 3) == 0:
        return M_PUT
    if n == 6 and memcmp(p, b"DELETE", 6) == 0:
        return M_DELETE
    if n == 4 and memcmp(p, b"HEAD", 4) == 0:
        return M_HEAD
    if n == 7 and memcmp(p, b"OPTIONS", 7) == 0:
        return M_OPTIONS
    if n == 5 and memcmp(p, b"PATCH", 5) == 0:
        return M_PATCH
    return PyUnicode_DecodeASCII(p, n, NULL)


cdef inline bint _list_item(const char* value, Py_ssize_t vlen, Py_ssize_t* i,
                            Py_ssize_t* start, Py_ssize_t* end) noexcept nogil:
    """The next element of a comma-separated field value, OWS trimmed (may be empty).

    Call with ``i[0] = 0``; returns False when the list is exhausted.
    """
    if i[0] > vlen:
        return False
    start[0] = i[0]
    while i[0] < vlen and value[i[0]] != 44:
        i[0] += 1
    end[0] = i[0]
    i[0] += 1
    while start[0] < end[0] and (value[start[0]] == 32 or value[start[0]] == 9):
        start[0] += 1
    while end[0] > start[0] and (value[end[0] - 1] == 32 or value[end[0] - 1] == 9):
        end[0] -= 1
    return True


cdef Py_ssize_t _content_length(const char* value, Py_ssize_t vlen,
                                Py_ssize_t current) except -2:
    """Same rules as the pure twin: a list of equal 1*DIGIT values; -1 = not seen yet."""
    cdef Py_ssize_t i = 0, start, end, j, number
    cdef Py_ssize_t length = current
    while _list_item(value, vlen, &i, &start, &end):
        if start == end:
            raise BadRequest("invalid Content-Length")
        number = 0
        for j in range(start, end):
            if not (48 <= value[j] <= 57):
                raise BadRequest("invalid Content-Length")
            if end - start <= 18:
                number = number * 10 + (value[j] - 48)
        if end - start > 18:
            number = BIG
        if length != -1 and number != length:
            raise BadRequest("conflicting Content-Length values")
        length = number
    return length
