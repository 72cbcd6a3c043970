"""The event loop, transports and listeners, compiled or pure (see ``_loop_py``)."""

from typing import TYPE_CHECKING

from conduit import _ext

_impl = _ext.load("conduit.net", "loop")

if TYPE_CHECKING:  # mypy reads the names from the compiled twin's stub, which both twins match
    from conduit.net._loop_c import (
        DEFAULT_HIGH_WATER_BYTES,
        DEFAULT_LOW_WATER_BYTES,
        Listener,
        Loop,
        Transport,
        create_listen_socket,
        tls_available,
    )
else:
    Loop = _impl.Loop
    Transport = _impl.Transport
    Listener = _impl.Listener
    create_listen_socket = _impl.create_listen_socket
    tls_available = _impl.tls_available
    DEFAULT_HIGH_WATER_BYTES = _impl.DEFAULT_HIGH_WATER_BYTES
    DEFAULT_LOW_WATER_BYTES = _impl.DEFAULT_LOW_WATER_BYTES

__all__ = [
    "Loop",
    "Transport",
    "Listener",
    "create_listen_socket",
    "tls_available",
    "DEFAULT_HIGH_WATER_BYTES",
    "DEFAULT_LOW_WATER_BYTES",
]
