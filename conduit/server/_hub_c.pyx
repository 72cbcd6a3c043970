# cython: language_level=3
"""Fan-out: shared frame buffers and subscribers, compiled twin of ``_hub_py.py`` (whose
theory of operation is the life of a published event, in numbered steps; this twin
follows it step for step).

How this twin is fast
1. A ``FrameLog`` keeps its frames in one malloc'd byte buffer and their sequence numbers
   and offsets in C arrays; an append is a ``memcpy`` and two stores.
2. ``flush`` walks the subscribers in C. For a subscriber on the compiled transport the
   chunk-size line is formatted on the stack and the chunk goes out with one ``sendmsg``
   of three iovecs (size line, the slice of the shared buffer, CRLF) through
   ``Transport._writev3``: no Python object is created per subscriber, and nothing is
   copied unless the socket does not take it all.
3. Counting the frames in a slice (``events_sent``) is a binary search on the offsets.
"""

cimport cython
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.stdlib cimport free, realloc
from conduit.server._clock cimport monotonic
from libc.string cimport memcpy, memmove

from conduit.net._loop_c cimport Transport

import logging

from conduit.server._hub_py import (
    CRLF,
    DEFAULT_BUDGET_BYTES,
    HEARTBEAT,
    LAST_CHUNK,
    TRIM_SLACK_BYTES,
    Subscription,
)

log = logging.getLogger("conduit.server")

__all__ = ["FrameLog", "Subscriber", "Subscription", "DEFAULT_BUDGET_BYTES"]

cdef const char* HEX_DIGITS = b"0123456789abcdef"


cdef inline Py_ssize_t _chunk_head(char* out, Py_ssize_t size) noexcept nogil:
    """Write "<hex size>\\r\\n" into out (20 bytes of room); returns its length."""
    cdef char digits[16]
    cdef Py_ssize_t n = 0, i
    while True:
        digits[n] = HEX_DIGITS[size & 15]
        n += 1
        size >>= 4
        if not size:
            break
    for i in range(n):
        out[i] = digits[n - 1 - i]
    out[n] = 13
    out[n + 1] = 10
    return n + 2


@cython.final
cdef class FrameLog:
    """The frames of one channel (see ``_hub_py.FrameLog``)."""

    cdef public str name
    cdef public Py_ssize_t history
    cdef public object loop
    cdef public set subscribers
    cdef public object trimmed_seq
    cdef public Py_ssize_t dropped  # slow subscribers disconnected (a counter for metrics)
    cdef readonly long long base    # absolute offset of _buf[0]
    cdef char* _buf
    cdef Py_ssize_t _len
    cdef Py_ssize_t _cap
    cdef long long* _seqs           # frames [_first, _n): sequence and absolute start
    cdef long long* _starts
    cdef Py_ssize_t _first
    cdef Py_ssize_t _n
    cdef Py_ssize_t _ncap
    cdef bint _scheduled

    def __cinit__(self):
        self._buf = NULL
        self._seqs = NULL
        self._starts = NULL

    def __init__(self, str name, Py_ssize_t history):
        self.name = name
        self.history = history
        self.subscribers = set()
        self.loop = None
        self.trimmed_seq = None
        self.dropped = 0

    def __dealloc__(self):
        free(self._buf)
        free(self._seqs)
        free(self._starts)

    # -- inspection (Python API shared with the pure twin) -----------------------------
    @property
    def end(self):
        return self.base + self._len

    @property
    def first_seq(self):
        return self._seqs[self._first] if self._n > self._first else None

    @property
    def seqs(self):
        return [self._seqs[i] for i in range(self._first, self._n)]

    @property
    def starts(self):
        return [self._starts[i] for i in range(self._first, self._n)]

    @property
    def buf(self):
        """A copy of the retained bytes (for inspection; the hot path never copies)."""
        return PyBytes_FromStringAndSize(self._buf, self._len)

    # -- appending ---------------------------------------------------------------------
    cdef int _grow_frames(self) except -1:
        cdef Py_ssize_t live = self._n - self._first
        cdef Py_ssize_t cap
        cdef long long* seqs
        cdef long long* starts
        if self._first and self._first >= live:
            memmove(self._seqs, self._seqs + self._first, live * sizeof(long long))
            memmove(self._starts, self._starts + self._first, live * sizeof(long long))
            self._first = 0
            self._n = live
            return 0
        cap = self._ncap * 2 if self._ncap else 256
        seqs = <long long*>realloc(self._seqs, cap * sizeof(long long))
        if seqs == NULL:
            raise MemoryError()
        self._seqs = seqs
        starts = <long long*>realloc(self._starts, cap * sizeof(long long))
        if starts == NULL:
            raise MemoryError()
        self._starts = starts
        self._ncap = cap
        return 0

    def append(self, long long seq, bytes frame):
        """Add one frame (on the loop thread); subscribers get it next turn."""
        cdef Py_ssize_t n = PyBytes_GET_SIZE(frame)
        cdef Py_ssize_t cap
        cdef char* grown
        if self._n == self._ncap:
            self._grow_frames()
        if self._len + n > self._cap:
            cap = self._cap * 2 if self._cap else 65536
            while cap < self._len + n:
                cap *= 2
            grown = <char*>realloc(self._buf, cap)
            if grown == NULL:
                raise MemoryError()
            self._buf = grown
            self._cap = cap
        self._seqs[self._n] = seq
        self._starts[self._n] = self.base + self._len
        self._n += 1
        memcpy(self._buf + self._len, PyBytes_AS_STRING(frame), n)
        self._len += n
        if self.subscribers and not self._scheduled and self.loop is not None:
            self._scheduled = True
            self.loop.call_soon(self.flush)
        elif not self.subscribers and self._n - self._first > self.history:
            self._trim()

    cdef Py_ssize_t _index_at_or_after(self, long long offset) noexcept:
        """Index of the first frame starting at or after ``offset`` (bisect_left)."""
        cdef Py_ssize_t lo = self._first, hi = self._n, mid
        while lo < hi:
            mid = (lo + hi) >> 1
            if self._starts[mid] < offset:
                lo = mid + 1
            else:
                hi = mid
        return lo

    def offset_after(self, long long seq):
        """Absolute offset of the first retained frame with a sequence above ``seq``."""
        cdef Py_ssize_t lo = self._first, hi = self._n, mid
        while lo < hi:
            mid = (lo + hi) >> 1
            if self._seqs[mid] <= seq:
                lo = mid + 1
            else:
                hi = mid
        return self._starts[lo] if lo < self._n else self.base + self._len

    def frames(self, long long start=0):
        """(seq, frame bytes) of the retained frames from absolute offset ``start``."""
        cdef Py_ssize_t i = self._index_at_or_after(start)
        cdef long long begin, stop
        result = []
        while i < self._n:
            begin = self._starts[i]
            stop = self._starts[i + 1] if i + 1 < self._n else self.base + self._len
            result.append((self._seqs[i], PyBytes_FromStringAndSize(
                self._buf + (begin - self.base), stop - begin)))
            i += 1
        return iter(result)

    # -- delivering --------------------------------------------------------------------
    def flush(self):
        self._scheduled = False
        for sub in list(self.subscribers):
            (<Subscriber>sub)._deliver()
        self._trim()

    cdef int _trim(self) except -1:
        cdef Py_ssize_t excess = self._n - self._first - self.history
        cdef long long keep_from, offset, drop
        cdef Py_ssize_t index
        if excess <= 0:
            return 0
        keep_from = self._starts[self._first + excess] if self._first + excess < self._n \
            else self.base + self._len
        for sub in self.subscribers:
            offset = (<Subscriber>sub)._offset_in(self)
            if offset < keep_from:
                keep_from = offset
        drop = keep_from - self.base
        if drop < TRIM_SLACK_BYTES and excess < max(64, self.history // 2):
            return 0
        index = self._index_at_or_after(keep_from)
        if index > self._first:
            self.trimmed_seq = self._seqs[index - 1]
        memmove(self._buf, self._buf + drop, self._len - drop)
        self._len -= drop
        self.base = keep_from
        self._first = index
        return 0

    cdef inline Py_ssize_t _count_between(self, long long start, long long stop) noexcept:
        return self._index_at_or_after(stop) - self._index_at_or_after(start)


@cython.final
cdef class Subscriber:
    """One connection reading one or more frame logs (see ``_hub_py.Subscriber``)."""

    cdef public object loop
    cdef public object transport
    cdef public bint chunked
    cdef public list logs
    cdef public Py_ssize_t budget
    cdef public long long allowance  # the replay owed at subscription (see the pure twin)
    cdef public bint paused
    cdef public bint done
    cdef public bint dropped
    cdef public double last_write
    cdef public Py_ssize_t events_sent
    cdef public object on_close
    cdef long long* _offsets
    cdef Py_ssize_t _count
    cdef bint _fast                 # one log, compiled transport

    def __cinit__(self):
        self._offsets = NULL

    def __init__(self, loop, transport, bint chunked, cursors, Py_ssize_t budget):
        cdef Py_ssize_t i
        self.loop = loop
        self.transport = transport
        self.chunked = chunked
        self.budget = budget
        self.logs = [flog for flog, _ in cursors]
        self._count = len(self.logs)
        self._offsets = <long long*>realloc(NULL, (self._count or 1) * sizeof(long long))
        if self._offsets == NULL:
            raise MemoryError()
        for i in range(self._count):
            self._offsets[i] = cursors[i][1]
        self._fast = self._count == 1 and type(transport) is Transport
        self.last_write = monotonic()

    def __dealloc__(self):
        free(self._offsets)

    @property
    def offsets(self):
        return [self._offsets[i] for i in range(self._count)]

    def start(self, bytes prelude):
        """Register with the logs, then write ``prelude`` and any replay (no gap)."""
        for flog in self.logs:
            (<FrameLog>flog).subscribers.add(self)
        self.allowance = self._lag()
        self._write_bytes(prelude)
        self._deliver()

    cdef long long _offset_in(self, FrameLog flog):
        cdef Py_ssize_t i
        for i in range(self._count):
            if self.logs[i] is flog:
                return self._offsets[i]
        return flog.base + flog._len

    def offset_in(self, flog):
        return self._offset_in(flog)

    cdef long long _lag(self):
        cdef long long total = 0
        cdef Py_ssize_t i
        cdef FrameLog flog
        for i in range(self._count):
            flog = <FrameLog>self.logs[i]
            total += flog.base + flog._len - self._offsets[i]
        return total

    def lag(self):
        return self._lag()

    cdef Py_ssize_t _queued(self):
        if type(self.transport) is Transport:
            return (<Transport>self.transport)._queued()
        return self.transport.get_write_buffer_size()

    def deliver(self):
        self._deliver()

    cdef int _deliver(self) except -1:
        """Send what this subscriber has not had yet (one chunk, one sendmsg)."""
        cdef FrameLog flog
        cdef long long offset, stop
        cdef char head[20]
        cdef Py_ssize_t head_len
        if self.done:
            return 0
        if self._lag() + self._queued() > self.budget + self.allowance:
            self._drop()
            return 0
        if self.paused:
            return 0
        if self._count != 1:
            self._deliver_merged()
            return 0
        flog = <FrameLog>self.logs[0]
        offset = self._offsets[0]
        stop = flog.base + flog._len
        if offset >= stop:
            return 0
        self._offsets[0] = stop
        self.events_sent += flog._count_between(offset, stop)
        self.last_write = monotonic()
        if self._fast:
            if self.chunked:
                head_len = _chunk_head(head, stop - offset)
                (<Transport>self.transport)._writev3(
                    head, head_len, flog._buf + (offset - flog.base), stop - offset,
                    b"\r\n", 2)
            else:
                (<Transport>self.transport)._writev3(
                    NULL, 0, flog._buf + (offset - flog.base), stop - offset, NULL, 0)
        else:
            self._write_bytes(PyBytes_FromStringAndSize(flog._buf + (offset - flog.base),
                                                        stop - offset))
        return 0

    cdef int _deliver_merged(self) except -1:
        # k-way merge of pending frames by sequence (several logs: not the hot path)
        cdef Py_ssize_t i, j, index, run_log = -1, run_first = 0, run_last = 0
        cdef FrameLog flog
        pending = []
        for i in range(self._count):
            flog = <FrameLog>self.logs[i]
            index = flog._index_at_or_after(self._offsets[i])
            for j in range(index, flog._n):
                pending.append((flog._seqs[j], i, j))
        if not pending:
            return 0
        pending.sort()
        parts = []
        for _, i, j in pending:
            if i == run_log and j == run_last + 1:
                run_last = j
                continue
            if run_log >= 0:
                parts.append(self._run(run_log, run_first, run_last))
            run_log, run_first, run_last = i, j, j
        parts.append(self._run(run_log, run_first, run_last))
        for i in range(self._count):
            flog = <FrameLog>self.logs[i]
            self._offsets[i] = flog.base + flog._len
        self.events_sent += len(pending)
        self._write_bytes(b"".join(parts))
        return 0

    cdef bytes _run(self, Py_ssize_t i, Py_ssize_t first, Py_ssize_t last):
        cdef FrameLog flog = <FrameLog>self.logs[i]
        cdef long long start = flog._starts[first]
        cdef long long end = flog._starts[last + 1] if last + 1 < flog._n \
            else flog.base + flog._len
        return PyBytes_FromStringAndSize(flog._buf + (start - flog.base), end - start)

    cdef int _write_bytes(self, bytes data) except -1:
        """One chunk holding ``data`` (prelude, heartbeat, merged or slow-path frames)."""
        if not PyBytes_GET_SIZE(data):
            return 0
        if self.chunked:
            self.transport.writev((b"%x\r\n" % PyBytes_GET_SIZE(data), data, CRLF))
        else:
            self.transport.writev((data,))
        self.last_write = monotonic()
        return 0

    # -- the connection's stream interface ---------------------------------------------
    def heartbeat(self):
        if not self.done:
            self._write_bytes(HEARTBEAT)

    def pause(self):
        self.paused = True

    def resume(self):
        self.paused = False
        if not self.done:
            self._deliver()

    cdef void _unsubscribe(self):
        self.done = True
        for flog in self.logs:
            (<FrameLog>flog).subscribers.discard(self)

    cdef int _drop(self) except -1:
        self._unsubscribe()
        self.dropped = True
        for flog in self.logs:
            (<FrameLog>flog).dropped += 1
        peer = getattr(self.transport, "peer", ("?", 0))
        log.warning("%s:%d - slow consumer: more than %d bytes behind on %s; disconnected",
                    peer[0], peer[1], self.budget,
                    ", ".join((<FrameLog>f).name for f in self.logs))
        self.transport.abort()
        return 0

    def cancel(self):
        """The client went away: unsubscribe."""
        if not self.done:
            self._unsubscribe()

    def finish(self):
        """End the stream cleanly (server draining): what was published goes first."""
        if not self.done:
            self.paused = False
            self._deliver()
        if not self.done:
            self._unsubscribe()
            if self.chunked:
                self.transport.write(LAST_CHUNK)
