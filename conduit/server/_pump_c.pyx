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
4. An async generator's asyncio Task runs ``_TaskStep``, a C object that asyncio takes
   for a coroutine; each Task step is one C ``_advance`` that drives the generator's
   ``asend()`` awaitables and batches what it yields as in 1-2 (``_pump_py`` rules 7-9).
   An event the generator yields without suspending costs no asyncio work at all.
"""

cimport cython
from cpython.ref cimport PyObject, Py_DECREF
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.stdlib cimport free, realloc
from conduit.server._clock cimport monotonic
from libc.string cimport memcpy

from conduit.http._sse_c cimport SSEEvent
from conduit.net._loop_c cimport Transport as CTransport

import logging

from conduit.http._sse_c import encode_event
from asyncio import CancelledError

from conduit.server._pump_py import HEARTBEAT, LAST_CHUNK, to_frame

log = logging.getLogger("conduit.server")

__all__ = ["Stream", "to_frame"]

cdef extern from *:
    """
    /* PyIter_Send (3.10+) as 0 (the awaitable returned: *out is its value), 1 (it
       yielded: *out is what the Task waits on) or -1 (an exception is set). */
    static int conduit_iter_send(PyObject *iter, PyObject *arg, PyObject **out) {
        PySendResult r = PyIter_Send(iter, arg, out);
        return r == PYGEN_ERROR ? -1 : (r == PYGEN_RETURN ? 0 : 1);
    }
    """
    int _send "conduit_iter_send" (object iter, object arg, PyObject** out) except -1


DEF BARE_YIELD_HOLD_SECONDS = 0.0005  # _pump_py.BARE_YIELD_HOLD_SECONDS
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
    cdef object _aw          # async: the asend() awaitable in flight
    cdef object _waiter      # async: the future the Task waits on while paused
    cdef object _closing     # async: the aclose() awaitable driven after a cancel
    cdef object _task        # async: the asyncio Task that drives this stream
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
            driver = self.loop.driver
            if driver is None:
                raise RuntimeError("an async generator stream needs the loop run by "
                                   "asyncio (conduit.net Loop.attach)")
            self._task = driver.create_task(_TaskStep(self))
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

    cdef object _advance(self, object value, object exc):
        cdef PyObject* out
        # One step of the asyncio Task of an async-generator stream (_pump_py rules 7-9):
        # returns what the Task waits on next, raises StopIteration (over) or
        # CancelledError (cancelled).
        cdef Py_ssize_t limit = HEAD_ROOM + self.high_water
        if self._closing is not None:
            return self._drive_close(value, exc)
        if self._aw is None and (exc is not None or self.done):
            return self._start_close()
        agen = self.source
        while True:
            aw = self._aw
            if aw is None:
                if self.done:
                    return self._start_close()
                if self.paused:
                    self._send_batch()
                    waiter = self._waiter = self.loop.driver.create_future()
                    waiter._asyncio_future_blocking = True
                    return waiter
                if self._len >= limit:
                    self._send_batch()
                    return None
                aw = self._aw = agen.asend(None)
            try:
                if exc is None:
                    # PERF: PyIter_Send hands back the yielded item as a return value: no
                    # StopIteration instance, no traceback (aw.send() raised one for every
                    # event, and Cython's except recorded a frame for it).
                    out = NULL
                    if _send(aw, value, &out) == 0:
                        item = <object>out
                        Py_DECREF(item)
                        self._aw = None
                        value = None
                        if not self.done:
                            self._add_item(item)
                        continue
                    awaited = <object>out
                    Py_DECREF(awaited)
                else:
                    awaited = aw.throw(exc)
            except StopIteration as item:  # from throw(): the generator yielded an item
                self._aw = None
                value = exc = None
                if not self.done:
                    self._add_item(item.value)
                continue
            except StopAsyncIteration:
                self._aw = None
                if not self.done:
                    self._send_batch(True)
                    self._end(None)
                raise StopIteration
            except BaseException as error:
                self._aw = None
                if self.done:
                    if not isinstance(error, (CancelledError, Exception)):
                        raise
                    if not isinstance(error, CancelledError):
                        log.error("error while closing a stream handler", exc_info=error)
                    raise CancelledError()
                if not isinstance(error, Exception):
                    if isinstance(error, CancelledError):
                        self._send_batch()
                        self._end(None)
                    raise
                self._send_batch()
                self._end(error)
                raise StopIteration
            if awaited is None and self._batched and self._len < limit \
                    and monotonic() - self.last_write < BARE_YIELD_HOLD_SECONDS:
                # PERF: a bare yield (asyncio.sleep(0)): the Task steps us again next
                # turn, and the batch waits for it (_pump_py rule 7). A generator that
                # awaits sleep(0) every 100 events: one send per 100 events before,
                # 1M events 0.55 s -> 0.33 s.
                return None
            self._send_batch()
            return awaited

    cdef object _start_close(self):
        self.done = True
        self._closing = self.source.aclose()
        return self._drive_close(None, None)

    cdef object _drive_close(self, object value, object exc):
        try:
            return self._closing.send(value) if exc is None else self._closing.throw(exc)
        except (StopIteration, CancelledError):
            pass
        except Exception as error:
            log.error("error while closing a stream handler", exc_info=error)
        self._closing = None
        raise CancelledError()

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
        if self.done:
            return
        if self._is_async:
            waiter = self._waiter
            self._waiter = None
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
        elif not self._scheduled:
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
            if self._task is not None:
                self._task.cancel()
        else:
            try:
                self.source.close()
            except Exception:
                log.exception("error while closing a stream handler")

    def finish(self):
        """End the stream cleanly (server draining): close the generator, last chunk."""
        if self.done:
            return
        self._send_batch()  # what a bare yield left batched (_pump_py rule 7)
        self.cancel()
        if self.chunked:
            self.transport.write(LAST_CHUNK)


@cython.final
cdef class _TaskStep:
    """The coroutine an asyncio Task runs for an async-generator stream (see
    ``_pump_py._TaskStep``): each step is one ``Stream._advance``, in C."""

    cdef Stream stream

    def __init__(self, Stream stream):
        self.stream = stream

    def send(self, value):
        return self.stream._advance(value, None)

    def throw(self, typ, val=None, tb=None):
        if val is None:
            val = typ if isinstance(typ, BaseException) else typ()
        return self.stream._advance(None, val)

    def close(self):
        if self.stream._aw is not None:
            self.stream._aw.close()
        self.stream.done = True

    def __await__(self):
        return self

    def __iter__(self):
        return self

    def __next__(self):
        return self.stream._advance(None, None)

    def __repr__(self):
        return f"<conduit stream of {self.stream.source!r}>"
