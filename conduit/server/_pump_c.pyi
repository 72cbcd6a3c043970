"""The stream pump, compiled twin of ``_pump_py.py`` (same API and behaviour).

Import it through ``conduit.server.pump``, which picks this module or the pure twin. The
write path of an event, from a handler's ``yield`` to the socket, is written at the top of
``conduit/server/_pump_py.py`` as a numbered list.
"""

import logging
from collections.abc import AsyncGenerator, Callable, Generator
from typing import Any, TypeAlias, final

from conduit.net._loop_c import Loop, Transport
from conduit.server._pump_py import HEARTBEAT as HEARTBEAT
from conduit.server._pump_py import LAST_CHUNK as LAST_CHUNK
from conduit.server._pump_py import to_frame as to_frame

__all__ = ["Stream", "to_frame"]

# What a streaming handler returns: a generator or an async generator of items (an
# SSEEvent, a dict or str encoded as an event, or bytes written as they are).
_Source: TypeAlias = Generator[Any, Any, Any] | AsyncGenerator[Any, Any]

log: logging.Logger

@final
class Stream:
    """Pumps one handler's generator into one transport, in batches of up to
    ``high_water`` bytes, one HTTP/1.1 chunk each when ``chunked`` (close-delimited
    otherwise).

    ``on_end(exc)`` is called once when the generator ends by itself (``exc`` is None, or
    the exception it raised); never after ``cancel()``. ``on_close`` is the connection's:
    the stream only keeps it.
    """

    loop: Loop
    transport: Transport
    source: _Source
    on_end: Callable[[BaseException | None], object]
    on_close: Callable[[], object] | None
    chunked: bool
    paused: bool
    done: bool
    last_write: float
    events_sent: int
    high_water: int
    def __init__(
        self,
        loop: Loop,
        transport: Transport,
        source: _Source,
        chunked: bool,
        high_water: int,
        on_end: Callable[[BaseException | None], object],
    ) -> None: ...
    def start(self) -> None:
        """Begin pulling from the generator (on the loop thread)."""
    def heartbeat(self) -> None:
        """Write a comment frame (keeps proxies and the client from timing out)."""
    def pause(self) -> None:
        """Stop pulling (the transport's outbox is above its high-water mark)."""
    def resume(self) -> None:
        """Pull again (the outbox drained to its low-water mark)."""
    def cancel(self) -> None:
        """Stop now and close the generator (its ``finally`` runs). No on_end call."""
    def finish(self) -> None:
        """End the stream cleanly (server draining): close the generator, last chunk."""
