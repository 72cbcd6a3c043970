"""Fan-out: shared frame buffers and the subscribers that read them. Pure twin of ``_hub_c``.

Theory of operation (the life of a published event, from DESIGN.md section 4)
1. A channel (``conduit.app.channel``) encodes an event once and appends the frame to its
   ``FrameLog``: one shared, append-only buffer of frames, which is also its in-memory
   history. A publish costs the same whatever the number of subscribers: one append.
2. The first append in a loop turn schedules one ``flush`` of that log for the next turn,
   so everything published in a turn goes out together.
3. A subscriber keeps only an offset into each log it reads. ``flush`` gives every
   subscriber the bytes it has not had yet: one HTTP chunk (size line, the slice, CRLF)
   handed to its transport with one ``writev`` (sent at once, zero copy, when nothing is
   queued on that connection; what the socket does not take is queued).
4. A subscriber whose connection is above its high-water mark is paused: it is skipped, and
   its lag stays in the shared buffer (not copied). When it drains it resumes from its
   offset. A subscriber whose lag (unsent bytes in the logs plus its queued bytes) passes
   its byte budget (plus the replay it was owed when it subscribed, which is not falling
   behind) is the slow consumer: it is disconnected with a log line (and counted in each
   of its logs' ``dropped``, for metrics), and catches up from history when it reconnects
   with ``Last-Event-ID``. The others never wait on it.
5. A log keeps its last ``history`` frames, plus what its subscribers still need within
   their budgets; older bytes are trimmed. Replay after ``Last-Event-ID`` is just a starting
   offset: ``offset_after(seq)``.
6. A subscriber reading several logs gets their pending frames merged in sequence order
   (sequences are global across an app's channels), so its last event id is always the
   highest it has seen.
"""

from __future__ import annotations

import bisect
import logging
import time

from conduit.http.sse import comment

log = logging.getLogger("conduit.server")

DEFAULT_BUDGET_BYTES = 4 * 1024 * 1024
TRIM_SLACK_BYTES = 64 * 1024  # trim only when this much can go: amortised O(1) per byte
LAST_CHUNK = b"0\r\n\r\n"
HEARTBEAT = comment("ping")
CRLF = b"\r\n"


class FrameLog:
    """The frames of one channel: bytes, and per frame its sequence number and offset.

    Offsets are absolute (they keep growing); ``base`` is the offset of ``buf[0]``.
    """

    def __init__(self, name: str, history: int) -> None:
        self.name = name
        self.history = history
        self.buf = bytearray()
        self.base = 0
        self.seqs: list = []  # sequence number of each retained frame
        self.starts: list = []  # absolute offset of each retained frame
        self.subscribers: set = set()
        self.loop = None
        self.trimmed_seq = None  # the newest sequence trimmed away (history is complete after)
        self.dropped = 0  # slow subscribers disconnected (a counter for metrics)
        self._scheduled = False

    @property
    def end(self) -> int:
        return self.base + len(self.buf)

    @property
    def first_seq(self):
        return self.seqs[0] if self.seqs else None

    def append(self, seq: int, frame: bytes) -> None:
        """Add one frame (called on the loop thread); subscribers get it next turn."""
        self.seqs.append(seq)
        self.starts.append(self.base + len(self.buf))
        self.buf += frame
        if self.subscribers and not self._scheduled and self.loop is not None:
            self._scheduled = True
            self.loop.call_soon(self.flush)
        elif not self.subscribers and len(self.seqs) > self.history:
            self._trim()

    def offset_after(self, seq: int) -> int:
        """Absolute offset of the first retained frame with a sequence above ``seq``."""
        index = bisect.bisect_right(self.seqs, seq)
        return self.starts[index] if index < len(self.starts) else self.end

    def frames(self, start: int = 0):
        """(seq, frame bytes) of the retained frames from absolute offset ``start``."""
        index = bisect.bisect_left(self.starts, start)
        starts = self.starts[index:]
        ends = starts[1:] + [self.end]
        for seq, begin, end in zip(self.seqs[index:], starts, ends, strict=False):
            yield seq, bytes(self.buf[begin - self.base:end - self.base])

    def flush(self) -> None:
        self._scheduled = False
        for sub in list(self.subscribers):
            sub.deliver()
        self._trim()

    def _trim(self) -> None:
        """Drop bytes no subscriber needs and that are older than the history window."""
        seqs = self.seqs
        excess = len(seqs) - self.history
        if excess <= 0:
            return
        keep_from = self.starts[excess] if excess < len(seqs) else self.end
        for sub in self.subscribers:
            offset = sub.offset_in(self)
            if offset < keep_from:
                keep_from = offset
        drop = keep_from - self.base
        if drop < TRIM_SLACK_BYTES and excess < max(64, self.history // 2):
            return
        index = bisect.bisect_left(self.starts, keep_from)
        if index:
            self.trimmed_seq = seqs[index - 1]
        del self.buf[:drop]
        del seqs[:index]
        del self.starts[:index]
        self.base = keep_from


class Subscriber:
    """One connection reading one or more frame logs (see the module docstring)."""

    def __init__(self, loop, transport, chunked: bool, cursors, budget: int) -> None:
        self.loop = loop
        self.transport = transport
        self.chunked = chunked
        self.logs = [flog for flog, _ in cursors]
        self.offsets = [offset for _, offset in cursors]
        self.budget = budget
        self.allowance = 0  # the replay owed at subscription: not counted as falling behind
        self.paused = False
        self.done = False
        self.last_write = time.monotonic()
        self.events_sent = 0
        self.dropped = False
        self.on_close = None

    def start(self, prelude: bytes) -> None:
        """Register with the logs, then write ``prelude`` and any replay (no gap)."""
        for flog in self.logs:
            flog.subscribers.add(self)
        self.allowance = self.lag()
        self._write_chunk([prelude])
        self.deliver()

    def offset_in(self, flog) -> int:
        return self.offsets[self.logs.index(flog)]

    def lag(self) -> int:
        return sum(flog.end - offset for flog, offset in zip(self.logs, self.offsets,
                                                              strict=True))

    def deliver(self) -> None:
        """Send what this subscriber has not had yet (one chunk, one writev)."""
        if self.done:
            return
        queued = self.transport.get_write_buffer_size()
        if self.lag() + queued > self.budget + self.allowance:
            self._drop()
            return
        if self.paused:
            return
        if len(self.logs) == 1:
            flog = self.logs[0]
            offset = self.offsets[0]
            stop = flog.end
            if offset >= stop:
                return
            view = memoryview(flog.buf)[offset - flog.base:stop - flog.base]
            self.offsets[0] = stop
            self.events_sent += (bisect.bisect_left(flog.starts, stop)
                                 - bisect.bisect_left(flog.starts, offset))
            self._write_chunk([view])
        else:
            self._deliver_merged()

    def _deliver_merged(self) -> None:
        # k-way merge of pending frames by sequence: runs of consecutive frames of one log
        # become one buffer each.
        pending = []
        for i, flog in enumerate(self.logs):
            index = bisect.bisect_left(flog.starts, self.offsets[i])
            for j in range(index, len(flog.seqs)):
                pending.append((flog.seqs[j], i, j))
        if not pending:
            return
        pending.sort()
        buffers = []
        run_log: int | None = None  # the log of the current run; None before the first
        run_first = run_last = -1
        for _, i, j in pending:
            if i == run_log and j == run_last + 1:
                run_last = j
                continue
            if run_log is not None:
                buffers.append(self._run(run_log, run_first, run_last))
            run_log, run_first, run_last = i, j, j
        buffers.append(self._run(run_log, run_first, run_last))
        for i, flog in enumerate(self.logs):
            self.offsets[i] = flog.end
        self.events_sent += len(pending)
        self._write_chunk(buffers)

    def _run(self, i, first, last):
        flog = self.logs[i]
        start = flog.starts[first]
        end = flog.starts[last + 1] if last + 1 < len(flog.starts) else flog.end
        return memoryview(flog.buf)[start - flog.base:end - flog.base]

    def _write_chunk(self, buffers) -> None:
        size = sum(len(b) for b in buffers)
        if not size:
            return
        if self.chunked:
            buffers = [b"%x\r\n" % size, *buffers, CRLF]
        self.transport.writev(buffers)
        self.last_write = time.monotonic()

    # -- the connection's stream interface (same as the pump's Stream) -----------------
    def heartbeat(self) -> None:
        if not self.done:
            self._write_chunk([HEARTBEAT])

    def pause(self) -> None:
        self.paused = True

    def resume(self) -> None:
        self.paused = False
        if not self.done:
            self.deliver()

    def _unsubscribe(self) -> None:
        self.done = True
        for flog in self.logs:
            flog.subscribers.discard(self)

    def _drop(self) -> None:
        self._unsubscribe()
        self.dropped = True
        for flog in self.logs:
            flog.dropped += 1
        peer = getattr(self.transport, "peer", ("?", 0))
        log.warning("%s:%d - slow consumer: more than %d bytes behind on %s; disconnected",
                    peer[0], peer[1], self.budget, ", ".join(f.name for f in self.logs))
        self.transport.abort()

    def cancel(self) -> None:
        """The client went away: unsubscribe. (No generator to close.)"""
        if not self.done:
            self._unsubscribe()

    def finish(self) -> None:
        """End the stream cleanly (server draining): what was published goes first."""
        if not self.done:
            self.paused = False
            self.deliver()
        if not self.done:
            self._unsubscribe()
            if self.chunked:
                self.transport.write(LAST_CHUNK)


class Subscription:
    """What a handler returns (inside a StreamResponse) to stream channels.

    ``cursors``: (FrameLog, absolute start offset) pairs; ``prelude``: frames written once
    the subscriber is registered (the comment line, a reset event).
    """

    __slots__ = ("cursors", "prelude", "budget")

    def __init__(self, cursors, prelude: bytes, budget: int = DEFAULT_BUDGET_BYTES) -> None:
        self.cursors = cursors
        self.prelude = prelude
        self.budget = budget
