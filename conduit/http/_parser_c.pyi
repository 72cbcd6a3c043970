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
    """

    def __init__(
        self,
        *,
        max_request_line_bytes: int = ...,
        max_header_bytes: int = ...,
        max_header_count: int = ...,
        max_body_bytes: int = ...,
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
    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Append bytes received from the peer; ``b""`` means the peer closed (EOF)."""
    def has_partial(self) -> bool:
        """True when part of a request (not yet complete) has been received."""
    def needs_continue(self) -> bool:
        """True once per request that sent ``Expect: 100-continue`` and awaits its body."""
    def next_request(self) -> ParsedRequest | None:
        """The next complete request, ``None`` if more bytes are needed, or raise.

        Raises a ``conduit.errors.ProtocolError`` subclass (``.status``, ``.reason``) when
        the input is not acceptable; after that the parser raises the same error again.
        """
