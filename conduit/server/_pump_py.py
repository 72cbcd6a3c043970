"""The stream pump: pulls items from a handler's generator and writes SSE frames.

Pure-Python twin of ``_pump_c.pyx``.

The life of an event from a streaming handler (the whole write path, in one place):
1. The handler's generator yields an item: an ``SSEEvent`` (its frame was encoded once,
   when it was built), a dict or str (encoded here by ``encode_event``), or bytes (a
   frame the handler formatted itself, written as is).
2. A sync generator is pulled in a tight loop until ``high_water`` bytes of frames are
   batched or it ends; an async generator is driven step by step (its ``asend()``
   awaitables) by an asyncio Task (rules 7-9), and the items it yields before it next
   awaits are batched the same way.
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

An async generator runs on asyncio (``conduit.server.aio``):
7. ``start()`` makes one asyncio Task for the stream. Its coroutine is not a Python
   coroutine but ``_TaskStep``, an object with ``send``/``throw``/``close``/``__await__``
   whose every step is one ``Stream._advance``: the generator's ``asend()`` awaitables
   are driven from here, so the Task runs the generator's code in its own context
   (``asyncio.current_task()``, ``asyncio.timeout``, contextvars all work) while the items
   are batched as in rule 2. A step ends (a) when the generator really suspends: the
   batch is written and the future it awaits is handed to the Task, which resumes us when
   it is done; at a bare yield (``asyncio.sleep(0)``), which resumes us next turn, the
   batch waits for the next step instead, when the stream last wrote less than
   ``BARE_YIELD_HOLD_SECONDS`` ago (so a stream that was quiet still sends at once, and
   no event waits more than that after the previous write); (b) after ``high_water``
   bytes: the batch is written and a bare yield gives the loop a turn (fairness); (c)
   when paused by backpressure: the Task waits on a future that ``resume()`` completes.
   So asyncio costs one Task step per batch or per real suspension, never one per event.
8. The end: ``StopAsyncIteration`` writes the last chunk and calls ``on_end``; an error
   is logged and ends the stream the same way.
9. ``cancel()`` (the client went away, the server drains) cancels the Task. Inside an
   ``await``, ``CancelledError`` is raised there and unwinds the generator (``finally``,
   ``async with``, nested async generators; their cleanup may await, still driven by the
   Task). At a ``yield`` (or before the first step, or paused), ``aclose()`` raises
   ``GeneratorExit`` there. Nothing is written after a cancel, and the Task ends
   cancelled.
"""

from __future__ import annotations

import asyncio
import logging
import time

from conduit.http.sse import SSEEvent, comment, encode_event

log = logging.getLogger("conduit.server")

LAST_CHUNK = b"0\r\n\r\n"
# A bare yield (``await asyncio.sleep(0)``) keeps the batch for the Task's next step when
# the stream last wrote less than this long ago (rule 7): a generator that yields a few
# events between sleep(0)s sends one batch, not one system call per few events.
BARE_YIELD_HOLD_SECONDS = 0.0005
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
        self._waiter = None  # async: the future the Task waits on while paused
        self._closing = None  # async: the aclose() awaitable being driven after a cancel
        self._task = None  # async: the asyncio Task that drives this stream
        self._held: list = []  # async: frames batched across a bare yield (rule 7)
        self._held_size = 0

    # -- driving -----------------------------------------------------------------------
    def start(self) -> None:
        if self._is_async:
            driver = self.loop.driver
            if driver is None:
                raise RuntimeError("an async generator stream needs the loop run by "
                                   "asyncio (conduit.net Loop.attach)")
            self._task = driver.create_task(_TaskStep(self))
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

    def _advance(self, value, exc):
        """One step of the asyncio Task of an async-generator stream (rules 7-9 of the
        theory of operation): returns what the Task waits on next (the generator's own
        future, our resume future, or None for "next turn"); raises StopIteration when
        the stream is over and CancelledError when it was cancelled."""
        if self._closing is not None:
            return self._drive_close(value, exc)
        if self._aw is None and (exc is not None or self.done):
            # cancelled at a yield, before the first step, or while paused
            return self._start_close(exc)
        agen = self.source
        frames, self._held = self._held, []  # what a bare yield left batched (rule 7)
        size = self._held_size
        self._held_size = 0
        while True:
            aw = self._aw
            if aw is None:
                if self.done:  # cancelled, and the generator just yielded: drop it, close
                    return self._start_close(None)
                if self.paused:
                    self._write(frames)
                    waiter = self._waiter = self.loop.driver.create_future()
                    waiter._asyncio_future_blocking = True
                    return waiter
                if size >= self.high_water:
                    self._write(frames)
                    return None  # a bare yield: the Task steps us again next turn
                aw = self._aw = agen.asend(None)
            try:
                awaited = aw.send(value) if exc is None else aw.throw(exc)
            except StopIteration as item:  # the generator yielded an item
                self._aw = None
                value = exc = None
                if not self.done:
                    frame = to_frame(item.value)
                    frames.append(frame)
                    size += len(frame)
                continue
            except StopAsyncIteration:
                self._aw = None
                if not self.done:
                    self._write(frames)
                    self._end(None)
                raise StopIteration from None
            except BaseException as error:
                self._aw = None
                if self.done:  # unwound by the cancellation: the Task ends cancelled
                    if not isinstance(error, (asyncio.CancelledError, Exception)):
                        raise
                    if not isinstance(error, asyncio.CancelledError):
                        log.error("error while closing a stream handler", exc_info=error)
                    raise asyncio.CancelledError() from None
                if not isinstance(error, Exception):  # CancelledError from elsewhere
                    if isinstance(error, asyncio.CancelledError):
                        self._write(frames)
                        self._end(None)
                    raise
                self._write(frames)
                self._end(error)
                raise StopIteration from None
            value = exc = None
            if awaited is None and frames and size < self.high_water \
                    and time.monotonic() - self.last_write < BARE_YIELD_HOLD_SECONDS:
                # A bare yield (asyncio.sleep(0)): the Task steps us again next turn;
                # the batch waits for it (rule 7).
                self._held, self._held_size = frames, size
                return None
            self._write(frames)
            return awaited  # the generator awaits: the Task waits on what it awaits

    def _start_close(self, exc):
        # The generator is at a yield (or never started): aclose() it, driven by this
        # Task (its finally may await), then end cancelled.
        self.done = True
        self._closing = self.source.aclose()
        return self._drive_close(None, None)

    def _drive_close(self, value, exc):
        try:
            return self._closing.send(value) if exc is None else self._closing.throw(exc)
        except StopIteration:
            pass
        except asyncio.CancelledError:
            pass
        except Exception as error:
            log.error("error while closing a stream handler", exc_info=error)
        self._closing = None
        raise asyncio.CancelledError()

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
        if self.done:
            return
        if self._is_async:
            waiter, self._waiter = self._waiter, None
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
        elif not self._scheduled:
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
        """Stop now and close the generator (its ``finally`` runs). No on_end call.

        An async generator's Task is cancelled: ``CancelledError`` at the await the
        generator is suspended in, or ``aclose()`` if it is at a yield (rule 9)."""
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

    def finish(self) -> None:
        """End the stream cleanly (server draining): close the generator, last chunk."""
        if self.done:
            return
        held, self._held = self._held, []
        self._write(held)
        self.cancel()
        if self.chunked:
            self.transport.write(LAST_CHUNK)


class _TaskStep:
    """The coroutine an asyncio Task runs for an async-generator stream: each step of the
    Task is one ``Stream._advance`` (a batch of events, or up to the generator's next
    real suspension). asyncio takes it for a coroutine (it has ``send``, ``throw``,
    ``close`` and ``__await__``)."""

    __slots__ = ("stream",)

    def __init__(self, stream: Stream) -> None:
        self.stream = stream

    def send(self, value):
        return self.stream._advance(value, None)

    def throw(self, typ, val=None, tb=None):
        if val is None:
            val = typ if isinstance(typ, BaseException) else typ()
        return self.stream._advance(None, val)

    def close(self) -> None:
        stream = self.stream
        if stream._aw is not None:
            stream._aw.close()
        stream.done = True

    def __await__(self):
        return self

    def __iter__(self):
        return self

    def __next__(self):
        return self.send(None)

    def __repr__(self) -> str:
        return f"<conduit stream of {self.stream.source!r}>"
