"""Strict, sans-IO HTTP/1.1 request parser (RFC 9112), compiled or pure.

Usage::

    parser = RequestParser()            # limits: see DEFAULT_* below
    parser.feed(data)                   # bytes from the socket; b"" means EOF
    while (request := parser.next_request()) is not None:
        ...                             # a complete ParsedRequest (head and body)

``next_request()`` returns ``None`` when it needs more bytes, and raises a
:class:`conduit.errors.ProtocolError` subclass (``.status``, ``.reason``) when the input is
not acceptable; after an error the parser is dead and raises the same error again. After a
request whose ``keep_alive`` is false, ``next_request()`` returns ``None`` for good (the
server closes after answering it).

Streamed bodies: with ``RequestParser(head_first=True)`` a request with a body comes out
as soon as its head is complete (``body == b""``, ``body_pending()`` True) and the caller
decides, per request, what to do with the body::

    parser = RequestParser(head_first=True, max_streamed_body_bytes=None)
    parser.feed(data)
    request = parser.next_request()
    if request is not None and parser.body_pending():
        if wants_stream(request):          # conduit: the route is an ASGI app
            parser.stream_body()           # may raise 413 (Content-Length over the limit)
            while piece := parser.next_body():   # bytes; None: feed more; b"": the end
                ...
        else:
            parser.buffer_body()           # may raise 413; next_request() returns it whole

The same bytes give the same requests and the same errors at the same points either way
(with equal limits); ``max_streamed_body_bytes`` (None: unbounded) bounds streamed bodies,
``max_body_bytes`` whole ones. The rules are 6-10 in ``_parser_py.py``.

The implementation is chosen by ``conduit._ext`` (compiled ``_parser_c`` or pure
``_parser_py``); both follow the rules written at the top of ``_parser_py.py``.
"""

from typing import TYPE_CHECKING

from conduit import _ext

_impl = _ext.load("conduit.http", "parser")

if TYPE_CHECKING:  # mypy reads the names from the compiled twin's stub, which both twins match
    from conduit.http._parser_c import ParsedRequest, RequestParser
else:
    RequestParser = _impl.RequestParser
    ParsedRequest = _impl.ParsedRequest

DEFAULT_MAX_REQUEST_LINE_BYTES = 8 * 1024
DEFAULT_MAX_HEADER_BYTES = 64 * 1024
# NOTE: Node's limit (server.maxHeadersCount); nginx, h11 and httptools count no fields and
# only bound the header block's size (here max_header_bytes), so no lower than theirs.
DEFAULT_MAX_HEADER_COUNT = 2000
DEFAULT_MAX_BODY_BYTES = 1024 * 1024
# A streamed body (an ASGI app's, read as it arrives) is unbounded unless a limit is set,
# as under uvicorn; the parser then counts up to MAX_STREAMED_BODY_BYTES.
DEFAULT_MAX_STREAMED_BODY_BYTES = None

__all__ = [
    "RequestParser",
    "ParsedRequest",
    "DEFAULT_MAX_REQUEST_LINE_BYTES",
    "DEFAULT_MAX_HEADER_BYTES",
    "DEFAULT_MAX_HEADER_COUNT",
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_MAX_STREAMED_BODY_BYTES",
]
