"""Event loop, transports and listeners, compiled twin of ``_loop_py.py`` (same API and
behaviour; ``epoll`` called directly, a transport owns a file descriptor, not a socket).

Import it through ``conduit.net.loop``, which picks this module or the pure twin. The loop
turn and the write path of a byte (the outbox and its watermarks) are written at the top of
``conduit/net/_loop_py.py``.
"""

import asyncio
import logging
import socket
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeAlias, final

from conduit.net._loop_py import ACCEPTS_PER_TURN as ACCEPTS_PER_TURN
from conduit.net._loop_py import DEFAULT_HIGH_WATER_BYTES as DEFAULT_HIGH_WATER_BYTES
from conduit.net._loop_py import DEFAULT_LOW_WATER_BYTES as DEFAULT_LOW_WATER_BYTES
from conduit.net._loop_py import Handle as Handle
from conduit.net._loop_py import create_listen_socket as create_listen_socket
from conduit.net.tls import ServerTLS

__all__ = [
    "Loop",
    "Transport",
    "Listener",
    "create_listen_socket",
    "DEFAULT_HIGH_WATER_BYTES",
    "DEFAULT_LOW_WATER_BYTES",
]

_Buffer: TypeAlias = bytes | bytearray | memoryview

log: logging.Logger

@final
class Loop:
    """A single-threaded event loop: I/O callbacks, timers, a thread-safe wake-up.

    >>> loop = Loop()
    >>> _ = loop.call_later(0.01, loop.stop)
    >>> loop.run_forever()
    >>> loop.close()

    Only ``call_soon_threadsafe`` may be called from another thread.
    """

    def __init__(self) -> None: ...
    def time(self) -> float:
        """``time.monotonic()``, the clock of ``call_at``."""
    def call_soon(self, callback: Callable[..., object], *args: Any) -> Handle:
        """Run ``callback(*args)`` in the next turn."""
    def call_soon_threadsafe(self, callback: Callable[..., object], *args: Any) -> Handle:
        """``call_soon`` from any thread; wakes the loop."""
    def call_later(self, delay: float, callback: Callable[..., object], *args: Any) -> Handle:
        """Run ``callback(*args)`` in ``delay`` seconds."""
    def call_at(self, when: float, callback: Callable[..., object], *args: Any) -> Handle:
        """Run ``callback(*args)`` at ``when`` (on the ``time()`` clock)."""
    def add_reader(self, fd: int, callback: Callable[[], object]) -> None:
        """Call ``callback()`` whenever ``fd`` is readable (replaces an earlier one)."""
    def remove_reader(self, fd: int) -> None: ...
    def add_writer(self, fd: int, callback: Callable[[], object]) -> None:
        """Call ``callback()`` whenever ``fd`` is writable (replaces an earlier one)."""
    def remove_writer(self, fd: int) -> None: ...
    def run_forever(self) -> None:
        """Run turns until ``stop()``; a stop requested before this call ends it after
        one turn (as asyncio does)."""
    driver: asyncio.AbstractEventLoop | None
    """The asyncio loop running this one (``attach``), else None."""
    def attach(self, driver: asyncio.AbstractEventLoop) -> None:
        """Let ``driver`` (an asyncio event loop) run this loop from now on: it watches the
        loop's epoll descriptor and holds one timer for the nearest timer, so asyncio adds
        one callback per turn, never one per connection or event. ``stop()`` then stops
        the driver.

        >>> import asyncio
        >>> driver = asyncio.new_event_loop()
        >>> loop = Loop()
        >>> loop.attach(driver)
        >>> loop.driver is driver
        True
        >>> loop.close(); driver.close()
        """
    def detach(self) -> None:
        """Undo ``attach`` (``close`` does it too)."""
    def stop(self) -> None:
        """Stop after the current turn (thread-safe through call_soon_threadsafe); when
        attached, stop the asyncio loop."""
    def close(self) -> None:
        """Release the loop's file descriptors (after ``run_forever`` returned)."""

@final
class Transport:
    """A connected, non-blocking stream socket (a file descriptor) with an outbox.

    The protocol gets ``data_received(data)``, ``eof_received()``, ``pause_writing()``,
    ``resume_writing()`` and, exactly once, ``connection_lost(exc)``. Writes are queued
    and sent at the end of the loop turn; above ``high_water`` queued bytes the protocol
    is paused, at ``low_water`` or below it is resumed.
    """

    loop: Loop
    protocol: Any
    peer: tuple[str, int]
    high_water: int
    low_water: int
    secure: bool
    """The connection speaks TLS."""
    alpn: str | None
    """The protocol ALPN chose, once the TLS handshake is done."""
    def __init__(
        self,
        loop: Loop,
        sock: socket.socket | int,
        protocol: Any,
        high_water: int = ...,
        low_water: int = ...,
        peer: tuple[str, int] | None = None,
        tls: ServerTLS | None = None,
    ) -> None:
        """``sock``: a connected socket (its fd is detached: the transport owns it) or an
        fd; ``peer``: the client's (host, port), else asked of the socket; ``tls``: speak
        TLS with its context (the protocol only ever sees decrypted bytes)."""
    @property
    def fd(self) -> int:
        """The connection's file descriptor."""
    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...
    def write(self, data: _Buffer) -> None:
        """Queue bytes; they are sent at the end of this loop turn."""
    def writelines(self, buffers: Iterable[_Buffer]) -> None:
        """Queue several buffers, as one ``write`` of their concatenation."""
    def writev(self, buffers: Sequence[_Buffer]) -> None:
        """Send now if nothing is queued (zero copy, one sendmsg); queue what is left."""
    def get_write_buffer_size(self) -> int:
        """Bytes queued and not yet sent."""
    def is_closing(self) -> bool: ...
    def close(self) -> None:
        """Close after the queued bytes are sent."""
    def abort(self) -> None:
        """Close at once, dropping queued bytes."""

class Listener:
    """Accepts connections on a listening socket and attaches a protocol to each.

    ``protocol_factory()`` makes the protocol of each accepted connection, which then gets
    ``connection_made(transport)``. Out of file descriptors, accepting pauses for 0.1 s.
    """

    loop: Loop
    sock: socket.socket
    protocol_factory: Callable[[], Any]
    high_water: int
    low_water: int
    tls: ServerTLS | None
    def __init__(
        self,
        loop: Loop,
        sock: socket.socket,
        protocol_factory: Callable[[], Any],
        high_water: int = ...,
        low_water: int = ...,
        tls: ServerTLS | None = None,
    ) -> None: ...
    @property
    def address(self) -> tuple[str, int]:
        """The (host, port) the socket is bound to."""
    def pause(self) -> None:
        """Stop accepting (connections wait in the backlog)."""
    def resume(self) -> None: ...
    def close(self) -> None:
        """Stop accepting and close the listening socket."""

def tls_available() -> bool:
    """True when this build can speak TLS (it was compiled with OpenSSL's headers)."""
