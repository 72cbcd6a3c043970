"""Fan-out: shared frame buffers and the subscribers that read them, compiled twin of
``_hub_py.py`` (same API and behaviour).

Import it through ``conduit.server.hub``, which picks this module or the pure twin. The
life of a published event, from ``FrameLog.append`` to every subscriber's socket, is
written at the top of ``conduit/server/_hub_py.py`` as numbered steps.
"""

import logging
from collections.abc import Callable, Iterator, Sequence
from typing import final

from conduit.net._loop_c import Loop, Transport
from conduit.server._hub_py import CRLF as CRLF
from conduit.server._hub_py import DEFAULT_BUDGET_BYTES as DEFAULT_BUDGET_BYTES
from conduit.server._hub_py import HEARTBEAT as HEARTBEAT
from conduit.server._hub_py import LAST_CHUNK as LAST_CHUNK
from conduit.server._hub_py import TRIM_SLACK_BYTES as TRIM_SLACK_BYTES
from conduit.server._hub_py import Subscription as Subscription

__all__ = ["FrameLog", "Subscriber", "Subscription", "DEFAULT_BUDGET_BYTES"]

log: logging.Logger

@final
class FrameLog:
    """The frames of one channel: one shared, append-only buffer, and per frame its
    sequence number and absolute offset. It is also the channel's in-memory history.

    >>> flog = FrameLog("news", history=100)
    >>> flog.append(1, b"id: 1\\ndata: a\\n\\n")
    >>> flog.end, flog.first_seq, flog.offset_after(1)
    (15, 1, 15)

    Offsets are absolute (they keep growing as old frames are trimmed); ``base`` is the
    offset of the first retained byte.
    """

    name: str
    history: int
    loop: Loop | None
    subscribers: set[Subscriber]
    trimmed_seq: int | None
    dropped: int
    def __init__(self, name: str, history: int) -> None: ...
    @property
    def base(self) -> int:
        """The absolute offset of the first retained byte."""
    @property
    def end(self) -> int:
        """The absolute offset after the last frame."""
    @property
    def first_seq(self) -> int | None:
        """The sequence of the oldest retained frame, or None when there is none."""
    @property
    def seqs(self) -> list[int]:
        """The sequence of each retained frame (a copy)."""
    @property
    def starts(self) -> list[int]:
        """The absolute offset of each retained frame (a copy)."""
    @property
    def buf(self) -> bytes:
        """A copy of the retained bytes (for inspection; the hot path never copies)."""
    def append(self, seq: int, frame: bytes) -> None:
        """Add one frame (on the loop thread); subscribers get it next turn."""
    def offset_after(self, seq: int) -> int:
        """Absolute offset of the first retained frame with a sequence above ``seq``."""
    def frames(self, start: int = 0) -> Iterator[tuple[int, bytes]]:
        """(seq, frame bytes) of the retained frames from absolute offset ``start``."""
    def flush(self) -> None:
        """Give every subscriber what it has not had yet, then trim."""

@final
class Subscriber:
    """One connection reading one or more frame logs.

    ``cursors``: (FrameLog, absolute start offset) pairs. A subscriber whose lag (unsent
    bytes in its logs plus its queued bytes) passes ``budget`` (plus the replay owed when
    it subscribed, ``allowance``) is a slow consumer: it is disconnected (``dropped``).
    """

    loop: Loop
    transport: Transport
    chunked: bool
    logs: list[FrameLog]
    budget: int
    allowance: int
    paused: bool
    done: bool
    dropped: bool
    last_write: float
    events_sent: int
    on_close: Callable[[], object] | None
    def __init__(
        self,
        loop: Loop,
        transport: Transport,
        chunked: bool,
        cursors: Sequence[tuple[FrameLog, int]],
        budget: int,
    ) -> None: ...
    @property
    def offsets(self) -> list[int]:
        """The absolute offset reached in each of ``logs`` (a copy)."""
    def start(self, prelude: bytes) -> None:
        """Register with the logs, then write ``prelude`` and any replay (no gap)."""
    def offset_in(self, flog: FrameLog) -> int:
        """The offset reached in ``flog``."""
    def lag(self) -> int:
        """Bytes in the logs not yet sent to this subscriber."""
    def deliver(self) -> None:
        """Send what this subscriber has not had yet (one chunk, one writev)."""
    def heartbeat(self) -> None:
        """Write a comment frame (keeps proxies and the client from timing out)."""
    def pause(self) -> None:
        """Skip this subscriber (its outbox is above its high-water mark)."""
    def resume(self) -> None:
        """Deliver again, from its offsets."""
    def cancel(self) -> None:
        """The client went away: unsubscribe."""
    def finish(self) -> None:
        """End the stream cleanly (server draining): what was published goes first."""
