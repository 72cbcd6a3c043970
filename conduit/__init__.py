"""conduit: a native-speed Server-Sent Events server for Python.

    >>> from conduit import SSEEvent
    >>> SSEEvent("Hello", event="message", id="123", retry=3000).format()
    'event: message\\nid: 123\\nretry: 3000\\ndata: Hello\\n\\n'

A server::

    from conduit import App, SSEEvent

    app = App()

    @app.get("/count")
    def count(request):
        for i in range(1, 11):
            yield SSEEvent(i, event="counter", id=i)

and ``python -m conduit run app.py``.
"""

__version__ = "0.1.0"

from conduit.app import App, FileResponse, Headers, Request  # noqa: E402
from conduit.app.auth import Auth  # noqa: E402
from conduit.app.channel import Channel, ChannelEvent, ChannelListener  # noqa: E402
from conduit.app.cors import CORS  # noqa: E402
from conduit.config import Config  # noqa: E402
from conduit.errors import ConduitError, HTTPError, ProtocolError  # noqa: E402
from conduit.http.response import Response, StreamResponse  # noqa: E402
from conduit.http.sse import SSEEvent, SSEStream  # noqa: E402
from conduit.server.aio import iterate_in_thread, sleep, to_thread  # noqa: E402


def run(app, **settings) -> int:
    """Serve ``app`` in this process until SIGINT/SIGTERM; settings are ``Config`` fields.

    Returns the exit status (0 after a graceful drain).
    """
    from conduit.server.server import Server

    return Server(app, Config(**settings)).run()


__all__ = [
    "__version__",
    "App",
    "Auth",
    "CORS",
    "Channel",
    "ChannelEvent",
    "ChannelListener",
    "Config",
    "ConduitError",
    "FileResponse",
    "HTTPError",
    "Headers",
    "ProtocolError",
    "Request",
    "Response",
    "SSEEvent",
    "SSEStream",
    "StreamResponse",
    "iterate_in_thread",
    "run",
    "sleep",
    "to_thread",
]
