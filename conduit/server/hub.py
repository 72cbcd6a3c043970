"""Fan-out buffers and subscribers, compiled or pure (see ``_hub_py`` for how it works)."""

from typing import TYPE_CHECKING

from conduit import _ext

_impl = _ext.load("conduit.server", "hub")

if TYPE_CHECKING:  # mypy reads the names from the compiled twin's stub, which both twins match
    from conduit.server._hub_c import DEFAULT_BUDGET_BYTES, FrameLog, Subscriber, Subscription
else:
    FrameLog = _impl.FrameLog
    Subscriber = _impl.Subscriber
    Subscription = _impl.Subscription
    DEFAULT_BUDGET_BYTES = _impl.DEFAULT_BUDGET_BYTES

__all__ = ["FrameLog", "Subscriber", "Subscription", "DEFAULT_BUDGET_BYTES"]
