"""The event loop, transports and listeners, compiled or pure (see ``_loop_py``)."""

from conduit import _ext

_impl = _ext.load("conduit.net", "loop")

Loop = _impl.Loop
Transport = _impl.Transport
Listener = _impl.Listener
create_listen_socket = _impl.create_listen_socket
DEFAULT_HIGH_WATER_BYTES = _impl.DEFAULT_HIGH_WATER_BYTES
DEFAULT_LOW_WATER_BYTES = _impl.DEFAULT_LOW_WATER_BYTES

__all__ = [
    "Loop",
    "Transport",
    "Listener",
    "create_listen_socket",
    "DEFAULT_HIGH_WATER_BYTES",
    "DEFAULT_LOW_WATER_BYTES",
]
