"""Fan-out buffers and subscribers, compiled or pure (see ``_hub_py`` for how it works)."""

from conduit import _ext

_impl = _ext.load("conduit.server", "hub")

FrameLog = _impl.FrameLog
Subscriber = _impl.Subscriber
Subscription = _impl.Subscription
DEFAULT_BUDGET_BYTES = _impl.DEFAULT_BUDGET_BYTES

__all__ = ["FrameLog", "Subscriber", "Subscription", "DEFAULT_BUDGET_BYTES"]
