"""Server-sent events framing (WHATWG HTML, "Server-sent events"), compiled or pure.

    >>> from conduit.http.sse import SSEEvent
    >>> SSEEvent("Hello", event="message", id="123", retry=3000).format()
    'event: message\\nid: 123\\nretry: 3000\\ndata: Hello\\n\\n'

``SSEEvent`` and the fast path ``encode_event`` come from the compiled ``_sse_c`` when it is
active, else from the pure ``_sse_py``; the framing rules are written at the top of
``_sse_py.py``. ``SSEStream`` is the seed's helper for writing a raw stream by hand.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from conduit import _ext

_impl = _ext.load("conduit.http", "sse")

if TYPE_CHECKING:  # mypy reads the names from the compiled twin's stub, which both twins match
    from conduit.http._sse_c import SSEEvent, comment, encode_event
else:
    SSEEvent = _impl.SSEEvent
    encode_event = _impl.encode_event
    comment = _impl.comment

# Headers for a hand-written, close-delimited stream (the seed's SSEStream.get_headers()).
# The server adds chunked framing itself; this is for code that owns the socket.
STREAM_HEADERS = (
    "HTTP/1.1 200 OK\r\n"
    "Content-Type: text/event-stream; charset=utf-8\r\n"
    "Cache-Control: no-cache\r\n"
    "Connection: keep-alive\r\n"
    "X-Accel-Buffering: no\r\n"
    "\r\n"
)


class SSEStream:
    """Collects events for one stream and formats them, as in the seed.

    >>> stream = SSEStream()
    >>> stream.get_headers().splitlines()[1]
    'Content-Type: text/event-stream; charset=utf-8'
    >>> stream.send_event("Current time: 12:30:45", event="time", id="1")
    'event: time\\nid: 1\\ndata: Current time: 12:30:45\\n\\n'
    >>> len(stream.events)
    1
    """

    __slots__ = ("events",)

    def __init__(self) -> None:
        self.events: list = []

    def get_headers(self) -> str:
        """The status line and headers of an SSE response, ending with the blank line."""
        return STREAM_HEADERS

    def send_event(self, data, event=None, id=None, retry=None) -> str:
        """Build an :class:`SSEEvent`, remember it in ``events`` and return its frame."""
        evt = SSEEvent(data, event=event, id=id, retry=retry)
        self.events.append(evt)
        return evt.format()


__all__ = ["SSEEvent", "SSEStream", "encode_event", "comment", "STREAM_HEADERS"]
