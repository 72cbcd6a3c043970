"""The stream pump, compiled or pure (see ``_pump_py`` for the write path of an event)."""

from conduit import _ext

_impl = _ext.load("conduit.server", "pump")

Stream = _impl.Stream
to_frame = _impl.to_frame

__all__ = ["Stream", "to_frame"]
