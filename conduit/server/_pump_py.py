"""The stream pump: pulls items from a handler's generator and writes SSE frames.

Pure-Python twin of ``_pump_c.pyx``.

The life of an event from a streaming handler (the whole write path, in one place):
1. The handler's generator yields an item: an ``SSEEvent`` (its frame was encoded once,
   when it was built), a dict or str (encoded here by ``encode_event``), or bytes (a
   frame the handler formatted itself, written as is).
2. A sync generator is pulled in a tight loop until ``high_water`` bytes of frames are
   batched or it ends; an async generator is driven step by step (its ``asend()``
   awaitables), and the items it yields before it next awaits are batched the same way.
3. The batch goes into the connection's outbox with one write, wrapped in one HTTP/1.1
   chunk (size line, frames, CRLF); on HTTP/1.0 the stream is close-delimited and the
   frames go as they are.
4. At the end of the loop turn the transport sends the outbox with one system call.
5. If the outbox is above the high-water mark the transport calls ``pause()``: the pump
   stops pulling until ``resume()`` (the outbox drained to the low-water mark), so a slow
   client never makes the server buffer without bound. A sync generator otherwise
   continues on the next loop turn, so one fast stream cannot starve other connections.
6. The end: the generator finishes (the terminating chunk is written and the connection
   continues), raises (logged; the stream is ended the same way), or is cancelled because
   the client went away or the server drains (the generator is closed at once, so its
   ``finally`` runs).
"""

from __future__ import annotations

import logging
import time

from conduit.http.sse import SSEEvent, comment, encode_event
from conduit.server.aio import StreamCancelled, Task, foreign_awaitable

log = logging.getLogger("conduit.server")

LAST_CHUNK = b"0\r\n\r\n"
HEARTBEAT = comment("ping")


def to_frame(item) -> bytes:
    """One yielded item as SSE frame bytes."""
    if type(item) is SSEEvent:
        return item.encode()
    if type(item) is bytes:
        return item
    return encode_event(item)


class Stream:
    """Pumps one handler's generator into one transport (see the module docstring).

    ``on_end(exc)`` is called once when the generator ends by itself (``exc`` is None, or
    the exception it raised); never after ``cancel()``.
    """

    def __init__(self, loop, transport, source, chunked: bool, high_water: int, on_end):
        self.loop = loop
        self.transport = transport
        self.source = source
        self.chunked = chunked
        self.high_water = high_water
        self.on_end = on_end
        self.paused = False
        self.done = False
        self.last_write = time.monotonic()
        self.events_sent = 0
        self._scheduled = False
        self._is_async = hasattr(source, "__anext__")
        self._aw = None  # async: the asend() awaitable in flight, if the generator awaits
        self._waiting = None  # async: what the awaited marker scheduled (timer, future)
        self._token = 0  # async: invalidates stale resumptions

    # -- driving -----------------------------------------------------------------------
    def start(self) -> None:
        if self._is_async:
            self._step()
        else:
            self._pull()

    def _pull(self) -> None:
        self._scheduled = False
        if self.done or self.paused:
            return
        gen = self.source
        frames = []
        size = 0
        limit = self.high_water
        try:
            while size < limit:
                frame = to_frame(next(gen))
                frames.append(frame)
                size += len(frame)
        except StopIteration:
            self._write(frames)
            self._end(None)
            return
        except Exception as exc:
            self._write(frames)
            self._end(exc)
            return
        self._write(frames)
        if not self.paused and not self.done and not self._scheduled:
            self._scheduled = True
            self.loop.call_soon(self._pull)

    def _step(self, value=None, exc=None) -> None:
        """Advance an async generator until it awaits a marker, pauses, or ends.

        NOTE: the generator is driven directly (asend() awaitables), not through a wrapper
        coroutine: closing a wrapper would not close the generator inside an ``await``.
        """
        self._scheduled = False
        agen = self.source
        frames = []
        size = 0
        while not self.done:
            aw = self._aw
            if aw is None:
                if self.paused or size >= self.high_water:
                    break
                aw = self._aw = agen.asend(None)
            try:
                marker = aw.send(value) if exc is None else aw.throw(exc)
            except StopIteration as item:  # the generator yielded an item
                self._aw = None
                value = exc = None
                frame = to_frame(item.value)
                frames.append(frame)
                size += len(frame)
                continue
            except StopAsyncIteration:
                self._aw = None
                self._write(frames)
                self._end(None)
                return
            except Exception as error:
                self._aw = None
                self._write(frames)
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
        self._write(frames)
        if (self._aw is None and not self.paused and not self.done
                and not self._scheduled):
            self._scheduled = True  # more to pull: continue next turn (fairness)
            self.loop.call_soon(self._step)

    def _resume_for(self, token):
        def resume(value=None, exc=None):
            if token == self._token and not self.done:
                self._waiting = None
                self._step(value, exc)

        return resume

    # -- writing -----------------------------------------------------------------------
    def _write(self, frames) -> None:
        if not frames:
            return
        self.events_sent += len(frames)
        data = frames[0] if len(frames) == 1 else b"".join(frames)
        if self.chunked:
            self.transport.writelines((b"%x\r\n" % len(data), data, b"\r\n"))
        else:
            self.transport.write(data)
        self.last_write = time.monotonic()

    def heartbeat(self) -> None:
        """Write a comment frame (keeps proxies and the client from timing out)."""
        if not self.done:
            self.events_sent -= 1  # a comment is not an event
            self._write([HEARTBEAT])

    # -- flow control (called by the connection, from the transport) -------------------
    def pause(self) -> None:
        self.paused = True

    def resume(self) -> None:
        self.paused = False
        if self.done or self._scheduled:
            return
        if self._is_async:
            if self._aw is None:  # else: it is awaiting a marker, which resumes it
                self._scheduled = True
                self.loop.call_soon(self._step)
        else:
            self._scheduled = True
            self.loop.call_soon(self._pull)

    # -- ending ------------------------------------------------------------------------
    def _end(self, exc) -> None:
        if self.done:
            return
        self.done = True
        if self.chunked:
            self.transport.write(LAST_CHUNK)
        if exc is not None:
            log.error("stream handler raised; stream ended", exc_info=exc)
        self.on_end(exc)

    def cancel(self) -> None:
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
            # Inside an await: throw StreamCancelled there (see aio); else (at a yield, or
            # not yet started) aclose(). Either may await in a finally block, so what is
            # left is driven by a Task of its own rather than dropped.
            if aw is not None:
                closer = _Throw(aw, StreamCancelled())
            else:
                closer = self.source.aclose()
            Task(self.loop, closer, _log_close_error).start()
        else:
            try:
                self.source.close()
            except Exception:
                log.exception("error while closing a stream handler")

    def finish(self) -> None:
        """End the stream cleanly (server draining): close the generator, last chunk."""
        if self.done:
            return
        self.cancel()
        if self.chunked:
            self.transport.write(LAST_CHUNK)


class _Throw:
    """Coroutine-like: throws ``exc`` into an awaitable on the first send, then proxies."""

    __slots__ = ("aw", "exc")

    def __init__(self, aw, exc):
        self.aw = aw
        self.exc = exc

    def send(self, value):
        if self.exc is not None:
            exc, self.exc = self.exc, None
            return self.aw.throw(exc)
        return self.aw.send(value)

    def throw(self, exc):
        return self.aw.throw(exc)

    def close(self):
        self.aw.close()


def _log_close_error(value, exc) -> None:
    if exc is not None and not isinstance(exc, (GeneratorExit, StopAsyncIteration,
                                                StreamCancelled)):
        log.error("error while closing a stream handler", exc_info=exc)
