"""conduit.http: sans-IO HTTP/1.1 request parsing and SSE framing.

No sockets, clocks or threads here, and no import of conduit.net: bytes in, values out.
"""

from conduit.http.parser import ParsedRequest, RequestParser
from conduit.http.sse import SSEEvent, SSEStream, comment, encode_event

__all__ = [
    "ParsedRequest",
    "RequestParser",
    "SSEEvent",
    "SSEStream",
    "comment",
    "encode_event",
]
