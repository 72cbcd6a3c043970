"""asyncio in handlers: conduit's awaitables, as thin layers over asyncio.

Handlers run on an asyncio event loop: the server runs conduit's own loop (the sockets, the
parser, the pump, the fan-out) *inside* an asyncio loop, asyncio's own or uvloop
(``--loop``; see the theory of operation of ``conduit.net._loop_py``). So inside any
handler ``asyncio.get_running_loop()`` is the loop conduit serves on, and asyncio.sleep,
Queue, Event, Lock, create_task, timeout, TaskGroup, to_thread, anyio and asyncio client
libraries (httpx.AsyncClient, the openai SDK, redis.asyncio...) all work, with no thread
per request.

1. An ``async def`` handler that returns a response runs as an asyncio Task.
2. An async-generator handler runs as an asyncio Task whose coroutine is the compiled pump
   (``conduit.server._pump_c``): the Task steps it once per batch of events or per real
   suspension of the generator, never once per event.
3. A client that goes away cancels its handler's Task: ``CancelledError`` is raised at the
   ``await`` the handler is suspended in (or ``GeneratorExit`` at its ``yield``), so its
   ``finally`` blocks and ``async with`` exits run, nested async generators included.
4. Blocking work goes to one thread pool of ``Config.thread_pool_size`` threads
   (``--thread-pool-size``), which is also the asyncio loop's default executor, so
   ``conduit.to_thread``, ``asyncio.to_thread`` and ``loop.run_in_executor(None, ...)``
   share it.

The helpers kept from before the asyncio loop:

    await conduit.sleep(1.0)                      # asyncio.sleep, with its argument checked
    result = await conduit.to_thread(fn, *args)   # blocking work in the pool
    async for item in conduit.iterate_in_thread(blocking_iterator): ...
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor

log = logging.getLogger("conduit.server")

_count_lock = threading.Lock()
_busy_workers = 0  # to_thread calls running in a thread right now


def default_thread_pool_size() -> int:
    """asyncio's own default: min(32, CPUs + 4)."""
    return min(32, (os.cpu_count() or 1) + 4)


def busy_workers() -> int:
    """How many to_thread calls are running in a thread (a process exit would wait)."""
    return _busy_workers


def new_thread_pool(size: int) -> ThreadPoolExecutor:
    """The pool a server sets as its asyncio loop's default executor (rule 4)."""
    return ThreadPoolExecutor(max_workers=size, thread_name_prefix="conduit-worker")


def sleep(seconds: float, result=None):
    """``asyncio.sleep(seconds, result)``, refusing a negative or NaN delay.

    >>> async def ticker():
    ...     for i in range(3):
    ...         yield i
    ...         await sleep(1.0)
    """
    if not isinstance(seconds, (int, float)) or seconds != seconds or seconds < 0:
        raise ValueError(f"sleep() needs a number of seconds >= 0, got {seconds!r}")
    return asyncio.sleep(seconds, result)


def _run_counted(call):
    global _busy_workers
    with _count_lock:
        _busy_workers += 1
    try:
        return call()
    finally:
        with _count_lock:
            _busy_workers -= 1


async def to_thread(fn, /, *args, **kwargs):
    """Run blocking ``fn(*args, **kwargs)`` in the server's thread pool, with the caller's
    contextvars (as ``asyncio.to_thread``, which uses the same pool); await its result.

    >>> import time
    >>> async def handler(request):
    ...     await to_thread(time.sleep, 0.1)    # the loop keeps serving meanwhile
    """
    call = functools.partial(contextvars.copy_context().run, fn, *args, **kwargs)
    return await asyncio.get_running_loop().run_in_executor(None, _run_counted, call)


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
