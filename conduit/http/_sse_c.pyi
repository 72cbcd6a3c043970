"""Server-sent event framing, compiled twin of ``_sse_py.py`` (same API and behaviour).

Import it through ``conduit.http.sse``, which picks this module or the pure twin. The
framing rules are written at the top of ``conduit/http/_sse_py.py``.
"""

from typing import Any, final

__all__ = ["SSEEvent", "comment", "encode_event"]

@final
class SSEEvent:
    """One server-sent event, validated and framed once when it is built.

    >>> evt = SSEEvent("Hello", event="message", id="123", retry=3000)
    >>> evt.format()
    'event: message\\nid: 123\\nretry: 3000\\ndata: Hello\\n\\n'
    >>> evt.encode() == evt.format().encode()
    True

    ``data`` may be a str, UTF-8 bytes (or bytearray, memoryview) or any JSON-serializable
    value, sent as compact JSON. It is split on CRLF, CR and LF (nothing else) into one
    ``data:`` line per piece, so the client reads back exactly this text, line ends as LF.
    ``event`` is a str without CR or LF; ``id`` a str without CR, LF or NUL, or an int
    (``id=""`` is sent and resets the client's last event id); ``retry`` an int >= 0 in
    milliseconds (``retry=0`` is sent). A field left as None is not sent.

    Raises ValueError (text not UTF-8, a forbidden character, a bad retry) or TypeError (a
    wrong type, or data json cannot encode); the message names the field.

    The event is immutable and hashable; it compares equal to an event with the same
    ``data``, ``event``, ``id`` and ``retry``, and cannot be subclassed.
    """

    def __init__(
        self,
        data: Any,
        event: str | None = None,
        id: str | int | None = None,
        retry: int | None = None,
    ) -> None: ...
    @property
    def data(self) -> str:
        """The text sent as data (bytes decoded, JSON applied)."""
    @property
    def event(self) -> str | None:
        """The event type, or None (the client then reports "message")."""
    @property
    def id(self) -> str | None:
        """The event id as a str (an int id is converted), or None."""
    @property
    def retry(self) -> int | None:
        """The reconnection delay in milliseconds, or None."""
    def encode(self) -> bytes:
        """The frame as UTF-8 bytes, ready to send; built once, the same object each time."""
    def format(self) -> str:
        """The frame as text (the seed's API); ``encode()`` is what goes on the wire."""
    def __eq__(self, other: object) -> bool: ...
    def __hash__(self) -> int: ...
    def __reduce__(self) -> tuple[Any, ...]: ...

def encode_event(
    data: Any,
    event: str | None = None,
    id: str | int | None = None,
    retry: int | None = None,
) -> bytes:
    """The frame bytes of one event, without building an :class:`SSEEvent`.

    Same validation and the same bytes as ``SSEEvent(data, event, id, retry).encode()``;
    the fast path for a frame that is sent once.

    >>> encode_event("hello", event="greeting", id=1)
    b'event: greeting\\nid: 1\\ndata: hello\\n\\n'
    """

def comment(text: str = "") -> bytes:
    """A comment frame, e.g. a heartbeat; clients dispatch nothing for it.

    Each piece of ``text`` (split on CRLF, CR and LF) becomes ``: <piece>``, or ``:`` alone
    when empty, followed by a blank line.

    >>> comment("ping")
    b': ping\\n\\n'
    >>> comment()
    b':\\n\\n'
    """
