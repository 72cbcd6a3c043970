"""conduit: a native-speed Server-Sent Events server for Python.

    >>> from conduit import SSEEvent
    >>> SSEEvent("Hello", event="message", id="123", retry=3000).format()
    'event: message\\nid: 123\\nretry: 3000\\ndata: Hello\\n\\n'
"""

__version__ = "0.1.0"

from conduit.errors import ConduitError, ProtocolError  # noqa: E402
from conduit.http.sse import SSEEvent, SSEStream  # noqa: E402

__all__ = [
    "__version__",
    "ConduitError",
    "ProtocolError",
    "SSEEvent",
    "SSEStream",
]
