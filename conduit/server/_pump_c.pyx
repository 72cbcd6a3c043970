# cython: language_level=3
"""The stream pump, compiled twin of ``_pump_py.py`` (the write path of an event is
written there, as a numbered list; this twin follows it step for step).

How this twin is fast
1. The sync-generator loop runs in C: ``next()`` is a direct call of the generator's
   ``tp_iternext``; an ``SSEEvent``'s frame is read from its C struct (``_sse_c.pxd``),
   no method call, and a simple event not framed yet writes its frame straight into the
   batch buffer (``SSEEvent._emit``); bytes items are used as they are.
2. Frames are copied into one malloc'd batch buffer that keeps room in front for the
   chunk-size line, so a batch becomes one HTTP chunk without a join or a second buffer:
   the hex size is written right-aligned into that room when the batch is sent, and the
   size line, frames and CRLF go to the transport as one piece: to the compiled transport
   with ``_writev3``, which sends at once when nothing is queued on the connection (no
   copy, no outbox allocated) and queues only what the socket did not take; the batch
   that ends a stream carries the last chunk in the same system call. The pure transport
   gets one ``bytes`` object.
3. ``last_write`` comes from ``clock_gettime(CLOCK_MONOTONIC)``, the clock behind
   ``time.monotonic()`` and the loop's ``time()``.
"""

cimport cython
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.stdlib cimport free, realloc
from conduit.server._clock cimport monotonic
from libc.string cimport memcpy

from conduit.http._sse_c cimport SSEEvent
from conduit.net._loop_c cimport Transport as CTransport

import logging

from conduit.http._sse_c import encode_event
from conduit.server._pump_py import HEARTBEAT, LAST_CHUNK, _log_close_error, _Throw
from conduit.server._pump_py import to_frame
from conduit.server.aio import StreamCancelled, Task, foreign_awaitable

log = logging.getLogger("conduit.server")

__all__ = ["Stream", "to_frame"]

DEF HEAD_ROOM = 18  # 16 hex digits + CRLF: room for any chunk-size line

cdef const char* HEX_DIGITS = b"0123456789abcdef"
cdef const char* LAST_CHUNK_C = b"0\r\n\r\n"


cdef inline bytes _frame_of(object item):
    if type(item) is bytes:
        return <bytes>item
    return encode_event(item)


@cython.final
cdef class Stream:
    """Pumps one handler's generator into one transport (see ``_pump_py.Stream``)."""

    cdef public object loop
    cdef public object transport
    cdef public object source
    cdef public object on_end
    cdef public object on_close
    cdef public bint chunked
    cdef public bint paused
    cdef public bint done
    cdef public double last_write
    cdef public Py_ssize_t events_sent
    cdef public Py_ssize_t high_water
    cdef bint _scheduled
    cdef bint _is_async
    cdef bint _direct       # the transport is the compiled one: write to it in C
    cdef bint _last_sent    # the last chunk went out with the final batch
    cdef object _aw
    cdef object _waiting
    cdef Py_ssize_t _token
    cdef char* _buf          # batch buffer: HEAD_ROOM bytes, then frames, then CRLF room
    cdef Py_ssize_t _cap
    cdef Py_ssize_t _len     # end of the frames batched so far
    cdef Py_ssize_t _batched  # frames in the batch

    def __cinit__(self):
        self._buf = NULL

    def __init__(self, loop, transport, source, bint chunked, Py_ssize_t high_water, on_end):
        self.loop = loop
        self.transport = transport
        self.source = source
        self.chunked = chunked
        self.high_water = high_water
        self.on_end = on_end
        self.on_close = None
        self.last_write = monotonic()
        self._is_async = hasattr(source, "__anext__")
        self._direct = type(transport) is CTransport
        self._len = HEAD_ROOM

    def __dealloc__(self):
        free(self._buf)

    # -- batching ----------------------------------------------------------------------
    cdef int _reserve(self, Py_ssize_t n) except -1:
        # Room for n more bytes of frames (and the CRLF that ends a chunk).
        cdef Py_ssize_t need = self._len + n + 2
        cdef Py_ssize_t cap
        cdef char* grown
        if need > self._cap:
            cap = self._cap * 2 if self._cap else 4096
            while cap < need:
                cap *= 2
            grown = <char*>realloc(self._buf, cap)
            if grown == NULL:
                raise MemoryError()
            self._buf = grown
            self._cap = cap
        return 0

    cdef int _add(self, bytes frame) except -1:
        cdef Py_ssize_t n = PyBytes_GET_SIZE(frame)
        self._reserve(n)
        memcpy(self._buf + self._len, PyBytes_AS_STRING(frame), n)
        self._len += n
        self._batched += 1
        return 0

    cdef int _add_item(self, object item) except -1:
        # An SSEEvent not framed yet writes itself into the batch (no frame object).
        cdef SSEEvent event
        if type(item) is SSEEvent:
            event = <SSEEvent>item
            if event._frame is not None:
                return self._add(event._frame)
            self._reserve(event._size)
            event._emit(self._buf + self._len)
            self._len += event._size
            self._batched += 1
            return 0
        return self._add(_frame_of(item))

    cdef int _send_batch(self, bint last=False) except -1:
        # ``last``: the stream ends after this batch; the compiled transport then gets the
        # last chunk in the same system call.
        cdef Py_ssize_t size = self._len - HEAD_ROOM
        cdef Py_ssize_t start = HEAD_ROOM
        cdef Py_ssize_t end = self._len
        cdef Py_ssize_t v
        if not self._batched:
            return 0
        if self.chunked:
            # chunk-size line right-aligned in the head room, CRLF after the frames
            start -= 2
            self._buf[start] = 13
            self._buf[start + 1] = 10
            v = size
            while True:
                start -= 1
                self._buf[start] = HEX_DIGITS[v & 15]
                v >>= 4
                if not v:
                    break
            self._buf[end] = 13
            self._buf[end + 1] = 10
            end += 2
        self.events_sent += self._batched
        self._len = HEAD_ROOM
        self._batched = 0
        self.last_write = monotonic()
        if self._direct:
            # Sent at once when nothing is queued on the connection (no copy), else queued
            # (see Transport._writev3); with the last chunk when the stream ends here.
            if last and self.chunked:
                self._last_sent = True
                (<CTransport>self.transport)._writev3(
                    self._buf + start, end - start, LAST_CHUNK_C, 5, NULL, 0)
            else:
                (<CTransport>self.transport)._writev3(
                    self._buf + start, end - start, NULL, 0, NULL, 0)
        else:
            self.transport.write(PyBytes_FromStringAndSize(self._buf + start, end - start))
        return 0

    # -- driving -----------------------------------------------------------------------
    def start(self):
        if self._is_async:
            self._step()
        else:
            self._pull()

    def _pull(self):
        self._scheduled = False
        if self.done or self.paused:
            return
        gen = self.source
        cdef Py_ssize_t limit = HEAD_ROOM + self.high_water
        try:
            while self._len < limit:
                self._add_item(next(gen))
        except StopIteration:
            self._send_batch(True)
            self._end(None)
            return
        except Exception as exc:
            self._send_batch()
            self._end(exc)
            return
        self._send_batch()
        if not self.paused and not self.done and not self._scheduled:
            self._scheduled = True
            self.loop.call_soon(self._pull)

    def _step(self, value=None, exc=None):
        """Advance an async generator until it awaits a marker, pauses, or ends."""
        self._scheduled = False
        agen = self.source
        while not self.done:
            aw = self._aw
            if aw is None:
                if self.paused or self._len - HEAD_ROOM >= self.high_water:
                    break
                aw = self._aw = agen.asend(None)
            try:
                marker = aw.send(value) if exc is None else aw.throw(exc)
            except StopIteration as item:
                self._aw = None
                value = exc = None
                self._add_item(item.value)
                continue
            except StopAsyncIteration:
                self._aw = None
                self._send_batch(True)
                self._end(None)
                return
            except Exception as error:
                self._aw = None
                self._send_batch()
                self._end(error)
                return
            value = exc = None
            schedule = getattr(marker, "_conduit_schedule", None)
            if schedule is None:
                exc = foreign_awaitable(marker)
                continue
            self._token += 1
            self._waiting = schedule(self.loop, self._resume_for(self._token))
            break
        self._send_batch()
        if (self._aw is None and not self.paused and not self.done
                and not self._scheduled):
            self._scheduled = True
            self.loop.call_soon(self._step)

    def _resume_for(self, Py_ssize_t token):
        def resume(value=None, exc=None):
            if token == self._token and not self.done:
                self._waiting = None
                self._step(value, exc)

        return resume

    # -- writing -----------------------------------------------------------------------
    def heartbeat(self):
        """Write a comment frame (keeps proxies and the client from timing out)."""
        if not self.done:
            self._add(HEARTBEAT)
            self.events_sent -= 1  # a comment is not an event
            self._send_batch()

    # -- flow control ------------------------------------------------------------------
    def pause(self):
        self.paused = True

    def resume(self):
        self.paused = False
        if self.done or self._scheduled:
            return
        if self._is_async:
            if self._aw is None:
                self._scheduled = True
                self.loop.call_soon(self._step)
        else:
            self._scheduled = True
            self.loop.call_soon(self._pull)

    # -- ending ------------------------------------------------------------------------
    def _end(self, exc):
        if self.done:
            return
        self.done = True
        if self.chunked and not self._last_sent:
            self.transport.write(LAST_CHUNK)
        if exc is not None:
            log.error("stream handler raised; stream ended", exc_info=exc)
        self.on_end(exc)

    def cancel(self):
        """Stop now and close the generator (its ``finally`` runs). No on_end call."""
        if self.done:
            return
        self.done = True
        if self._is_async:
            self._token += 1
            waiting, self._waiting = self._waiting, None
            if waiting is not None and hasattr(waiting, "cancel"):
                waiting.cancel()
            aw, self._aw = self._aw, None
            closer = _Throw(aw, StreamCancelled()) if aw is not None else self.source.aclose()
            Task(self.loop, closer, _log_close_error).start()
        else:
            try:
                self.source.close()
            except Exception:
                log.exception("error while closing a stream handler")

    def finish(self):
        """End the stream cleanly (server draining): close the generator, last chunk."""
        if self.done:
            return
        self.cancel()
        if self.chunked:
            self.transport.write(LAST_CHUNK)
