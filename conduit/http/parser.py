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

__all__ = [
    "RequestParser",
    "ParsedRequest",
    "DEFAULT_MAX_REQUEST_LINE_BYTES",
    "DEFAULT_MAX_HEADER_BYTES",
    "DEFAULT_MAX_HEADER_COUNT",
    "DEFAULT_MAX_BODY_BYTES",
]
