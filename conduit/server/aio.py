"""Awaitables for handlers, and the task that drives coroutines on conduit's loop.

conduit runs its own loop, not asyncio's. A handler that is an ``async def`` (or an async
generator) may await conduit's awaitables:

    await conduit.sleep(1.0)                      # a timer on the loop
    result = await conduit.to_thread(fn, *args)   # blocking work in a worker thread
    async for item in conduit.iterate_in_thread(blocking_iterator): ...

How it works (the protocol between an awaitable and the loop):
1. An awaitable's ``__await__`` yields a *marker*: an object with a method
   ``_conduit_schedule(loop, resume)``.
2. The ``Task`` driving the coroutine receives the marker from ``coro.send()`` and calls
   ``_conduit_schedule``, which arranges for ``resume(value)`` or ``resume(exc=error)``
   to be called on the loop thread later (a timer, a worker thread's completion...).
3. ``resume`` sends the value (or throws the error) back into the coroutine, which runs to
   its next marker or to its end.
4. Cancelling a task (the client went away) closes the coroutine at once, so its
   ``finally`` blocks run; a late ``resume`` for a cancelled task is ignored.

Awaiting anything else (an asyncio future, say) raises ``TypeError`` in the coroutine with a
message that names the conduit helper to use instead.
"""

from __future__ import annotations

import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor

log = logging.getLogger("conduit.server")

_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()
_busy_workers = 0  # functions submitted by to_thread and not finished yet


def busy_workers() -> int:
    """How many to_thread calls are still running (a process exit would wait for them)."""
    return _busy_workers


def _get_executor() -> ThreadPoolExecutor:
    global _executor
    if _executor is None:
        with _executor_lock:
            if _executor is None:  # (the lock also guards _busy_workers)
                _executor = ThreadPoolExecutor(
                    max_workers=min(32, (os.cpu_count() or 1) + 4),
                    thread_name_prefix="conduit-worker",
                )
    return _executor


class sleep:  # noqa: N801 - used like a function: ``await conduit.sleep(1)``
    """Pause the current handler for ``seconds`` without blocking the loop.

    >>> async def ticker():
    ...     for i in range(3):
    ...         yield i
    ...         await sleep(1.0)
    """

    __slots__ = ("seconds", "result")

    def __init__(self, seconds: float, result=None) -> None:
        if not isinstance(seconds, (int, float)) or seconds != seconds or seconds < 0:
            raise ValueError(f"sleep() needs a number of seconds >= 0, got {seconds!r}")
        self.seconds = seconds
        self.result = result

    def __await__(self):
        yield self
        return self.result

    def _conduit_schedule(self, loop, resume):
        return loop.call_later(self.seconds, resume, self.result)


class to_thread:  # noqa: N801 - used like a function
    """Run blocking ``fn(*args, **kwargs)`` in a worker thread; await its result.

    >>> import time
    >>> async def handler(request):
    ...     await to_thread(time.sleep, 0.1)    # the loop keeps serving meanwhile
    """

    __slots__ = ("fn", "args", "kwargs")

    def __init__(self, fn, /, *args, **kwargs) -> None:
        self.fn = fn
        self.args = args
        self.kwargs = kwargs

    def __await__(self):
        return (yield self)

    def _conduit_schedule(self, loop, resume):
        global _busy_workers
        with _executor_lock:
            _busy_workers += 1
        future = _get_executor().submit(self.fn, *self.args, **self.kwargs)

        def done(fut):  # runs in the worker thread (or here, if cancelled)
            global _busy_workers
            with _executor_lock:
                _busy_workers -= 1
            if fut.cancelled():  # the handler went away before a worker took it
                return
            exc = fut.exception()
            if exc is None:
                loop.call_soon_threadsafe(resume, fut.result())
            else:
                loop.call_soon_threadsafe(resume, None, exc)

        future.add_done_callback(done)
        return future


_END = object()


def _next_or_end(iterator):
    try:
        return next(iterator)
    except StopIteration:
        return _END


class iterate_in_thread:  # noqa: N801 - used like a function
    """Iterate a blocking iterator in worker threads, from an async handler.

    >>> async def tokens(request):
    ...     async for token in iterate_in_thread(blocking_llm_stream()):  # doctest: +SKIP
    ...         yield token

    Each item is fetched by one call to ``next()`` in a worker thread, so the loop never
    waits on the iterator. When the consumer stops early, the iterator's ``close()`` (if
    any) is called in a worker thread.
    """

    __slots__ = ("_iterator", "_done", "_lock")

    def __init__(self, iterable) -> None:
        self._iterator = iter(iterable)
        self._done = False
        # next() and close() run in worker threads; a generator refuses close() while a
        # next() is executing, so close waits for it (in its worker, not on the loop).
        self._lock = threading.Lock()

    def _next(self):
        with self._lock:
            return _next_or_end(self._iterator)

    def _close(self, close) -> None:
        with self._lock:
            close()

    def __aiter__(self):
        return self

    async def __anext__(self):
        if self._done:
            raise StopAsyncIteration
        item = await to_thread(self._next)
        if item is _END:
            self._done = True
            raise StopAsyncIteration
        return item

    async def aclose(self) -> None:
        if not self._done:
            self._done = True
            close = getattr(self._iterator, "close", None)
            if close is not None:
                await to_thread(self._close, close)


class StreamCancelled(BaseException):
    """Thrown into a stream handler suspended in an ``await`` when its client goes away.

    NOTE: not GeneratorExit: on Python 3.10-3.12, throwing GeneratorExit into an async
    generator's in-flight ``asend()`` leaves async generators it iterates flagged as
    running, so their cleanup (``contextlib.aclosing``) fails. A BaseException of our own
    unwinds them normally; ``finally`` blocks run, ``except Exception`` does not catch it.
    """


def foreign_awaitable(marker) -> TypeError:
    """The error thrown into a handler that awaited something conduit cannot drive."""
    return TypeError(
        f"a conduit handler awaited {marker!r}; on conduit's loop await conduit.sleep(), "
        "conduit.to_thread() or conduit.iterate_in_thread() "
        "(run asyncio code with conduit.to_thread(asyncio.run, coro))"
    )


class Task:
    """Drives one coroutine on the loop (see the module docstring).

    ``on_done(value, exc)`` is called once, when the coroutine returns or raises; not when
    it is cancelled.
    """

    __slots__ = ("loop", "coro", "on_done", "_waiting", "_token", "_finished")

    def __init__(self, loop, coro, on_done) -> None:
        self.loop = loop
        self.coro = coro
        self.on_done = on_done
        self._waiting = None
        self._token = 0
        self._finished = False

    def start(self) -> None:
        self._step(None, None)

    def _resume_for(self, token):
        def resume(value=None, exc=None):
            if token == self._token and not self._finished:
                self._waiting = None
                self._step(value, exc)

        return resume

    def _step(self, value, exc) -> None:
        coro = self.coro
        while True:
            try:
                marker = coro.send(value) if exc is None else coro.throw(exc)
            except StopIteration as stop:
                self._finish(stop.value, None)
                return
            except (Exception, GeneratorExit, StreamCancelled) as error:
                self._finish(None, error)
                return
            schedule = getattr(marker, "_conduit_schedule", None)
            if schedule is None:
                value, exc = None, foreign_awaitable(marker)
                continue
            self._token += 1
            self._waiting = schedule(self.loop, self._resume_for(self._token))
            return

    def _finish(self, value, exc) -> None:
        if self._finished:
            return
        self._finished = True
        self.on_done(value, exc)

    def cancel(self) -> None:
        """Close the coroutine now (its ``finally`` blocks run); on_done is not called."""
        if self._finished:
            return
        self._finished = True
        self._token += 1
        waiting = self._waiting
        if waiting is not None and hasattr(waiting, "cancel"):
            waiting.cancel()
        self._waiting = None
        try:
            self.coro.close()
        except Exception:
            log.exception("error while closing a cancelled handler")
