"""The stream pump, compiled or pure (see ``_pump_py`` for the write path of an event)."""

from typing import TYPE_CHECKING

from conduit import _ext

_impl = _ext.load("conduit.server", "pump")

if TYPE_CHECKING:  # mypy reads the names from the compiled twin's stub, which both twins match
    from conduit.server._pump_c import Stream, to_frame
else:
    Stream = _impl.Stream
    to_frame = _impl.to_frame

__all__ = ["Stream", "to_frame"]
