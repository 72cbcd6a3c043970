"""Strict HTTP/1.1 request parser, compiled twin of ``_parser_py.py`` (same API and behaviour).

Import it through ``conduit.http.parser``, which picks this module or the pure twin. The
rules (grammar, limits, invariants) are written at the top of ``conduit/http/_parser_py.py``.
"""

from typing import Final, final

# The pure twin's MAX_CHUNK_SIZE_LINE_BYTES (here a compile-time constant, hence the "_").
MAX_CHUNK_SIZE_LINE_BYTES_: Final[int]

@final
class ParsedRequest:
    """One complete request: head and (de-chunked) body. Immutable; made by the parser."""

    @property
    def method(self) -> str:
        """e.g. 'GET'"""
    @property
    def target(self) -> str:
        """The request-target as sent, e.g. '/events?x=1'."""
    @property
    def version(self) -> str:
        """'1.0' or '1.1'"""
    @property
    def headers(self) -> list[tuple[bytes, bytes]]:
        """List of ``(lowercased name, value)`` byte tuples, in arrival order."""
    @property
    def body(self) -> bytes:
        """The body, de-chunked."""
    @property
    def trailers(self) -> list[tuple[bytes, bytes]]:
        """Trailer fields of a chunked body, as ``headers``."""
    @property
    def keep_alive(self) -> bool:
        """Whether the connection stays open after this request."""

@final
class RequestParser:
    """Bytes in, :class:`ParsedRequest` out (sans-IO).

    >>> parser = RequestParser()
    >>> parser.feed(b"GET /events HTTP/1.1\\r\\nHost: example.com\\r\\n\\r\\n")
    >>> request = parser.next_request()
    >>> request.method, request.target, request.keep_alive
    ('GET', '/events', True)
    >>> parser.next_request() is None
    True

    The limits default to ``conduit.http.parser.DEFAULT_*``; a negative one is a
    ValueError. Past a limit ``next_request()`` raises 414, 431 or 413 (see
    ``conduit.errors``).

    With ``head_first=True`` a request with a body comes out at the end of its head, and
    the caller reads that body whole or streams it (rules 6-10 of ``_parser_py``):

    >>> parser = RequestParser(head_first=True)
    >>> parser.feed(b"POST /up HTTP/1.1\\r\\nHost: a\\r\\nContent-Length: 5\\r\\n\\r\\nhel")
    >>> head = parser.next_request()
    >>> head.target, head.body, parser.body_pending()
    ('/up', b'', True)
    >>> parser.stream_body()
    >>> parser.next_body(), parser.next_body()
    (b'hel', None)
    >>> parser.feed(b"lo")
    >>> parser.next_body(), parser.next_body()
    (b'lo', b'')
    """

    def __init__(
        self,
        *,
        max_request_line_bytes: int = ...,
        max_header_bytes: int = ...,
        max_header_count: int = ...,
        max_body_bytes: int = ...,
        max_streamed_body_bytes: int | None = ...,
        head_first: bool = ...,
    ) -> None: ...
    @property
    def max_request_line_bytes(self) -> int:
        """Longest request line accepted, its CRLF not counted (else 414)."""
    @property
    def max_header_bytes(self) -> int:
        """Largest header (and trailer) block, field lines with their CRLFs (else 431)."""
    @property
    def max_header_count(self) -> int:
        """Most header (and trailer) fields (else 431)."""
    @property
    def max_body_bytes(self) -> int:
        """Largest body, declared or de-chunked (else 413, before the bytes arrive)."""
    @property
    def max_streamed_body_bytes(self) -> int | None:
        """Largest streamed body (``stream_body()``); None: unbounded (else 413, likewise)."""
    @property
    def head_first(self) -> bool:
        """Whether a request with a body comes out at the end of its head (rule 6)."""
    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Append bytes received from the peer; ``b""`` means the peer closed (EOF)."""
    def has_partial(self) -> bool:
        """True when part of a request (not yet complete) has been received."""
    def needs_continue(self) -> bool:
        """True once per request that sent ``Expect: 100-continue`` and awaits its body."""
    def body_pending(self) -> bool:
        """True when ``next_request()`` returned a head whose body is to come (rule 6):
        call ``buffer_body()`` or ``stream_body()`` next."""
    def buffer_body(self) -> None:
        """Read the pending body whole (limit ``max_body_bytes``): ``next_request()``
        returns the complete request. May raise 413 (the declared length)."""
    def stream_body(self) -> None:
        """Stream the pending body (limit ``max_streamed_body_bytes``) through
        ``next_body()``. May raise 413 (the declared length)."""
    def next_body(self) -> bytes | None:
        """The next piece of a streamed body (never empty), ``None`` when more bytes are
        needed, or ``b""`` once, at its end; raises as ``next_request()`` does."""
    def next_request(self) -> ParsedRequest | None:
        """The next complete request, ``None`` if more bytes are needed, or raise.

        Raises a ``conduit.errors.ProtocolError`` subclass (``.status``, ``.reason``) when
        the input is not acceptable; after that the parser raises the same error again.
        """
