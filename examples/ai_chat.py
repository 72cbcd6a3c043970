"""AI token streaming: a chat answer sent token by token over SSE, with a Stop button.

    python -m conduit run examples/ai_chat.py
    # open http://127.0.0.1:8000/ : type a prompt, watch the answer arrive, Stop cancels it

    curl -N 'http://127.0.0.1:8000/ai/chat?prompt=What+is+SSE%3F'
    curl -N 'http://127.0.0.1:8000/ai/chat?prompt=hello&source=thread&coalesce_ms=200'
    AI_CHAT_SOURCE=asyncio python -m conduit run examples/ai_chat.py   # another default

The stream: ``GET /ai/chat?prompt=...``
---------------------------------------
One ``token`` event per token, then one ``done`` event, then the stream ends
(``curl -N 'http://127.0.0.1:8000/ai/chat?prompt=write+a+haiku'``)::

    event: token
    id: 1
    data: Tokens

    event: token
    id: 2
    data:  drift           <- the token " drift": its leading space survives the framing
    ...
    event: token
    id: 6
    data:                  <- the token "\neach": a newline is two data lines
    data: each
    ...
    event: done
    data: {"chat_id":"c1","source":"offline","tokens":16,"events":16,"finish_reason":"stop",
           "resumed_after":0}

- The data of the token events, concatenated, is the answer exactly (spaces, newlines and
  any unicode included; a newline in a token goes out as two ``data:`` lines, which the
  client joins back with a newline).
- A token event's ``id`` is the number of tokens sent so far in this answer. A client that
  reconnects with ``Last-Event-ID: k`` (the browser's EventSource does that by itself after
  a dropped connection) gets the answer from token k+1, not from the start: the built-in
  model and the two fake clients are deterministic, so they can skip what was sent. (A real
  provider cannot resume an answer: keep what it generated, e.g. in a channel with history.)
- ``done``: JSON with ``tokens`` (the last id), ``events`` (token events in this response),
  ``finish_reason`` (``stop``, or ``length`` when ``max_tokens`` cut the answer), the
  ``source``, the ``chat_id`` and ``resumed_after``.
- If the model fails mid-answer, a ``failed`` event (JSON ``{"error": ..., "tokens": n}``)
  replaces ``done`` and the stream ends.
- Never name an event ``error`` or ``open``: ``EventSource`` fires its own events with those
  names (``error`` when the connection fails or drops, ``open`` when it connects), so a
  page's ``addEventListener("error", ...)`` could not tell the server's report from a
  dropped connection, and would reconnect and ask again. Failures go out as ``failed``.
- The response header ``X-Chat-Id`` names the chat; ``GET /ai/chats/{chat_id}`` shows it.
- A missing prompt or a bad option is a plain ``400 {"error": ...}`` before any stream (an
  EventSource that gets a 4xx gives up for good instead of reconnecting).

Query options (all optional):

| option | default | |
|---|---|---|
| ``source`` | ``$AI_CHAT_SOURCE``, else ``offline`` | ``offline``, ``thread``, ``asyncio`` |
| ``delay_ms`` | ``$AI_CHAT_DELAY_MS``, else 40 | pace of the model: ms per token, 0..2000 |
| ``coalesce_ms`` | 0 (off) | at most one token event per N ms (below), 0..10000 |
| ``coalesce_bytes`` | 0 (off) | batch tokens until an event holds N bytes, 0..65536 |
| ``max_tokens`` | 4096 | stop the answer there (``finish_reason: length``) |
| ``fail_after`` | off | the model fails after N tokens (try the ``failed`` event) |
| ``hold_after`` | off | thread/asyncio: the fake client blocks after N tokens until |
|   |   | ``POST /ai/chats/{chat_id}/release`` (a test hook, below) |

Token sources: where the tokens come from
------------------------------------------
conduit runs its own event loop, not asyncio's. A streaming handler is an async generator on
that loop: it may ``await conduit.sleep(s)``, ``await conduit.to_thread(fn)`` and
``async for x in conduit.iterate_in_thread(blocking_iterator)``, and nothing else may block
it. The three sources here are the three shapes a real model client comes in:

1. ``offline`` (the default): ``OfflineTokens``, a tiny deterministic canned-answer "model"
   (``answer_for(prompt)``, tokenized by ``tokenize``) paced with ``await conduit.sleep``,
   on the loop itself. No thread, no network; what you would write for a model whose
   tokens are computed cheaply, or to demo and test a UI.
2. ``thread``: a **blocking** client (``FakeBlockingClient``: its stream's ``next()``
   ``time.sleep``s per token, like a sync SDK reading a socket) iterated with
   ``conduit.iterate_in_thread(stream)``: each ``next()`` runs in a worker thread, so a
   slow token never stalls the loop. With a real sync SDK::

       stream = client.chat.completions.create(model=..., messages=..., stream=True)
       chunks = conduit.iterate_in_thread(stream)
       try:
           async for chunk in chunks:
               yield SSEEvent(chunk.choices[0].delta.content or "", event="token", ...)
       finally:
           await chunks.aclose()        # calls stream.close() in a worker thread

   ``aclose()`` may run ``close()`` while a ``next()`` is still blocked in another worker,
   so ``close()`` must be safe to call from another thread (``BlockingTokenStream.close``
   is; a plain generator's is not: it raises "generator already executing").
3. ``asyncio``: an **asyncio** client (``fake_asyncio_client``, an async generator that
   ``await asyncio.sleep``s per token, like ``AsyncOpenAI`` or ``httpx.AsyncClient``) cannot
   run on conduit's loop. ``AsyncioInThread`` runs it with ``asyncio.run`` in a thread of
   its own and hands its items over through a thread-safe queue; that queue, seen as a
   blocking iterator, is read with ``conduit.iterate_in_thread``. ``stop()`` cancels the
   asyncio task from any thread (``loop.call_soon_threadsafe(task.cancel)``). One thread and
   one asyncio loop per answer keeps it simple; a busy app would rather keep one asyncio
   loop thread for all answers (``asyncio.run_coroutine_threadsafe``).

Both thread sources hold one of conduit's worker threads while they wait for a token (the
pool has ``min(32, CPUs + 4)`` threads, shared with every ``to_thread`` of the app): more
answers than that at once from these sources take turns, at a slower pace. The loop never
waits, so the offline source and requests that need no worker thread are not affected.

The default source is ``$AI_CHAT_SOURCE`` (an unknown name stops the server at start-up);
``?source=`` picks one per request. Each fake client streams the same canned answer as the
offline model, so the three give the same text.

Token coalescing (``coalesce_ms``, ``coalesce_bytes``)
-------------------------------------------------------
A token is a few bytes; an event costs a frame, a chunk and a browser dispatch. Coalescing
sends several tokens as one ``token`` event whose data is their concatenation and whose id
is the count after the last of them, so the text and the ids mean the same as without it:

- ``coalesce_ms=N``: at most one event per N ms. A token that arrives N ms or more after the
  last event goes out at once (with any tokens held before it), so the first token and a
  slow stream are never delayed; tokens that arrive sooner are held.
- ``coalesce_bytes=N``: tokens are held until the batch has N bytes (UTF-8).
- Both: whichever comes first. The end of the answer (or a failure) sends what is held.

A limit, on purpose: conduit has no "wait for the next token or a timer, whichever comes
first" for a handler, so held tokens go out with the next token that arrives, not when the
N ms are up. With a steady model that is at most one token's gap later; keep
``coalesce_ms`` near the model's pace if it can stall.

Cancel: Stop, a closed tab, a dropped connection
------------------------------------------------
When the client goes away (``EventSource.close()``, a closed tab, ``curl`` interrupted),
conduit closes the handler's generator at once, wherever it is waiting, so the ``finally``
in ``stream_answer`` runs: the chat is marked ``cancelled``, the source is told to stop
(``stop()``, on the loop thread, right away: a blocking stream produces nothing after it,
an asyncio task is cancelled) and closed (``aclose()`` of ``iterate_in_thread`` calls the
stream's ``close()`` in a worker thread). No token is made after the client has gone.

``GET /ai/chats/{chat_id}`` shows the bookkeeping: ``state`` (running, done, failed,
cancelled), ``produced`` (tokens the source made, counted where they are made),
``sent``, ``events``, ``stop_requested``, ``source_closed`` and ``blocked`` (a fake client is
held). ``GET /ai/stats`` counts chats by state and shows the last ten, newest first.

``hold_after`` (a test hook): the thread or asyncio fake client blocks after N tokens, in
its own thread, until ``POST /ai/chats/{chat_id}/release``. The release can only be served
while that thread is blocked if the loop is not, which is how the tests prove that a slow
model does not stall the server. A held client still stops at once when the stream closes.

The page (``GET /``): examples/pages/ai_chat.html, a chat that renders tokens as they come.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import queue
import re
import threading
import time
from collections import OrderedDict
from pathlib import Path

from conduit import (
    App,
    FileResponse,
    HTTPError,
    SSEEvent,
    StreamResponse,
    iterate_in_thread,
    sleep,
)

app = App()
PAGE = Path(__file__).parent / "pages" / "ai_chat.html"
log = logging.getLogger("conduit.examples.ai_chat")

SOURCES = ("offline", "thread", "asyncio")
DEFAULT_SOURCE = os.environ.get("AI_CHAT_SOURCE", "").strip() or "offline"
if DEFAULT_SOURCE not in SOURCES:
    raise ValueError(f"AI_CHAT_SOURCE={DEFAULT_SOURCE!r}: expected one of {', '.join(SOURCES)}")
DEFAULT_DELAY_MS = int(os.environ.get("AI_CHAT_DELAY_MS", "40"))
MAX_PROMPT_CHARS = 2000
HOLD_TIMEOUT = 60.0  # a held fake client gives up waiting for its release after this
KEPT_CHATS = 200  # /ai/chats/{id} remembers the last this many chats


# -- the offline "model" ---------------------------------------------------------------------

CANNED = (
    (("hello", "hi", "hey"),
     "Hello! I'm a tiny offline model streamed by conduit, one token per event. "
     "Ask me about SSE, conduit, or for a haiku."),
    (("sse", "server-sent", "eventsource"),
     "Server-Sent Events stream text from a server to a browser over one long HTTP "
     "response. Each event has a name, an id and data; the browser's EventSource "
     "reconnects by itself and sends the last id it saw, so the server can resume."),
    (("conduit",),
     "conduit is a native-speed SSE server for Python: the parser, the framing and the "
     "loop are compiled with Cython, and handlers are plain generators."),
    (("haiku", "poem"),
     "Tokens drift like snow,\neach one a small event sent:\nthe answer arrives."),
)
FALLBACK = ("You asked: \u201c{prompt}\u201d. I am an offline stand-in for a language "
            "model, so I can only echo that back, one token at a time. Try \u201chello\u201d "
            "or \u201cwrite a haiku\u201d.")
_WORDS = re.compile(r"[\w'-]+")
# Word-ish tokens with their leading whitespace, single punctuation marks, or whitespace:
# every character falls in exactly one token, so "".join(tokenize(s)) == s.
_TOKEN = re.compile(r"\s*[\w']+|\s*[^\w\s]|\s+")


def answer_for(prompt: str) -> str:
    """The canned answer to ``prompt`` (deterministic: the first topic it mentions)."""
    words = set(_WORDS.findall(prompt.lower()))
    for keywords, answer in CANNED:
        if words.intersection(keywords):
            return answer
    shown = " ".join(prompt.split())
    if len(shown) > 200:
        shown = shown[:200] + "\u2026"
    return FALLBACK.format(prompt=shown)


def tokenize(text: str) -> list[str]:
    """Split ``text`` into tokens the way a model would emit them (``" world"``, ``"!"``)."""
    return _TOKEN.findall(text)


# -- bookkeeping: what /ai/chats/{id} shows --------------------------------------------------

class Chat:
    """One answer being streamed. ``produced`` is written where tokens are made (possibly a
    worker thread or the asyncio thread); everything else on conduit's loop."""

    def __init__(self, chat_id: str, source: str) -> None:
        self.id = chat_id
        self.source = source
        self.state = "running"  # running, done, failed, cancelled
        self.produced = 0
        self.sent = 0
        self.events = 0
        self.stop_requested = False
        self.source_closed = False
        self.blocked = False
        self.release = threading.Event()

    def as_dict(self) -> dict:
        return {
            "chat_id": self.id, "source": self.source, "state": self.state,
            "produced": self.produced, "sent": self.sent, "events": self.events,
            "stop_requested": self.stop_requested, "source_closed": self.source_closed,
            "blocked": self.blocked,
        }


chats: OrderedDict[str, Chat] = OrderedDict()
_chat_ids = itertools.count(1)


def new_chat(source: str) -> Chat:
    chat = Chat(f"c{next(_chat_ids)}", source)
    chats[chat.id] = chat
    while len(chats) > KEPT_CHATS:
        chats.popitem(last=False)
    return chat


class Plan:
    """What a source is asked to produce: the tokens (after a resume point and max_tokens),
    its pace, and the test hooks."""

    def __init__(self, chat: Chat, tokens: list[str], delay: float,
                 hold_after: int | None, fail_after: int | None) -> None:
        self.chat = chat
        self.tokens = tokens
        self.delay = delay
        self.hold_after = hold_after
        self.fail_after = fail_after

    def check(self, index: int) -> None:
        """Called before token ``index`` (0-based, in this response) is produced."""
        if self.fail_after is not None and index >= self.fail_after:
            raise RuntimeError(f"the model failed after {index} tokens (fail_after)")


# -- source 1: offline, on conduit's loop ----------------------------------------------------

class OfflineTokens:
    """The built-in model's tokens: an async iterator on conduit's loop, paced by
    ``await conduit.sleep`` (never ``time.sleep``: this loop serves every other client too).

    A class rather than an async generator, on purpose: see the NOTE in ``stream_answer``.
    """

    def __init__(self, plan: Plan) -> None:
        self._plan = plan
        self._index = 0
        self._closed = False

    def __aiter__(self):
        return self

    async def __anext__(self) -> str:
        plan = self._plan
        if self._closed or self._index >= len(plan.tokens):
            raise StopAsyncIteration
        await sleep(plan.delay)
        if self._closed:
            raise StopAsyncIteration
        plan.check(self._index)
        token = plan.tokens[self._index]
        self._index += 1
        plan.chat.produced += 1
        return token

    async def aclose(self) -> None:
        self._closed = True
        self._plan.chat.source_closed = True


# -- source 2: a blocking client, iterated in worker threads ---------------------------------

class FakeBlockingClient:
    """Stands in for a blocking SDK (a sync HTTP client reading a socket, a C library)."""

    def stream(self, plan: Plan) -> BlockingTokenStream:
        return BlockingTokenStream(plan)


class BlockingTokenStream:
    """What a blocking SDK's streaming call returns: an iterator whose ``next()`` blocks
    until the next token arrives (here ``time.sleep``), and ``close()`` to hang up.

    ``stop()`` may be called from any thread and never blocks: a ``next()`` in progress
    finishes its sleep but produces nothing, and no later one starts.
    """

    def __init__(self, plan: Plan) -> None:
        self._plan = plan
        self._index = 0
        self._stop = threading.Event()

    def __iter__(self):
        return self

    def __next__(self) -> str:
        plan, chat = self._plan, self._plan.chat
        if self._stop.is_set() or self._index >= len(plan.tokens):
            raise StopIteration
        if self._index == plan.hold_after:
            chat.blocked = True
            try:
                chat.release.wait(HOLD_TIMEOUT)
            finally:
                chat.blocked = False
        time.sleep(plan.delay)  # the network: blocks this worker thread, not the loop
        if self._stop.is_set():
            raise StopIteration  # hung up meanwhile: nothing more is produced
        plan.check(self._index)
        token = plan.tokens[self._index]
        self._index += 1
        chat.produced += 1
        return token

    def stop(self) -> None:
        self._stop.set()
        self._plan.chat.release.set()  # a held client lets go at once

    def close(self) -> None:
        self.stop()
        self._plan.chat.source_closed = True


# -- source 3: an asyncio client, run by asyncio.run in a thread of its own ------------------

async def fake_asyncio_client(plan: Plan):
    """Stands in for an asyncio SDK's stream (``AsyncOpenAI``, ``httpx.AsyncClient``): an
    async generator that needs a running asyncio loop, which conduit's loop is not."""
    chat = plan.chat
    for index, token in enumerate(plan.tokens):
        if index == plan.hold_after:
            chat.blocked = True
            try:
                deadline = time.monotonic() + HOLD_TIMEOUT
                while not chat.release.is_set() and time.monotonic() < deadline:
                    await asyncio.sleep(0.01)
            finally:
                chat.blocked = False
        await asyncio.sleep(plan.delay)
        plan.check(index)
        chat.produced += 1
        yield token


_DONE = object()


class AsyncioInThread:
    """Drives an asyncio async generator with ``asyncio.run`` in a thread of its own, and is
    a blocking iterator over what it yields (give it to ``conduit.iterate_in_thread``).

    The two loops meet at a thread-safe queue: the asyncio side ``put``s items (never
    blocks), a conduit worker thread ``get``s them in ``next()``. The thread starts at the
    first ``next()``. ``stop()`` (any thread, never blocks) cancels the asyncio task;
    ``close()`` stops it and waits for the thread to end (call it from a worker thread).
    """

    def __init__(self, make_agen, on_closed=None) -> None:
        self._make_agen = make_agen
        self._on_closed = on_closed
        self._items: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task | None = None
        self._stopped = False
        self._finished = False

    def __iter__(self):
        return self

    def __next__(self):
        with self._lock:
            if self._thread is None:
                if self._stopped:
                    raise StopIteration
                self._thread = threading.Thread(target=asyncio.run, args=(self._main(),),
                                                name="asyncio-source", daemon=True)
                self._thread.start()
        if self._finished:
            raise StopIteration
        item = self._items.get()
        if item is _DONE:
            self._finished = True
            raise StopIteration
        ok, value = item
        if not ok:
            self._finished = True
            raise value
        return value

    async def _main(self) -> None:
        with self._lock:
            if self._stopped:
                self._items.put(_DONE)
                return
            self._loop = asyncio.get_running_loop()
            self._task = asyncio.current_task()
        try:
            async for item in self._make_agen():
                self._items.put((True, item))
        except asyncio.CancelledError:
            pass  # stop(): the generator was closed where it awaited
        except Exception as exc:
            self._items.put((False, exc))
        finally:
            self._items.put(_DONE)

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            loop, task = self._loop, self._task
        if loop is not None and task is not None:
            try:
                loop.call_soon_threadsafe(task.cancel)
            except RuntimeError:
                pass  # that loop has closed: the task is over already

    def close(self) -> None:
        self.stop()
        thread = self._thread
        if thread is not None:
            thread.join(timeout=10)
        if self._on_closed is not None:
            self._on_closed()


def open_source(plan: Plan, source: str):
    """(async iterator of tokens, stop function or None) for ``source``."""
    if source == "offline":
        return OfflineTokens(plan), None
    if source == "thread":
        stream = FakeBlockingClient().stream(plan)
        return iterate_in_thread(stream), stream.stop
    if source == "asyncio":
        def closed() -> None:
            plan.chat.source_closed = True

        bridge = AsyncioInThread(lambda: fake_asyncio_client(plan), on_closed=closed)
        return iterate_in_thread(bridge), bridge.stop
    raise ValueError(f"unknown source {source!r}")


# -- coalescing -----------------------------------------------------------------------------

class Coalescer:
    """Batches tokens (see "Token coalescing" above). ``add(token)`` returns the batch to
    send now, as ``(text, token count)``, or None while it holds the token; ``flush()``
    returns what is held (or None). With no window and no size, every token is a batch."""

    def __init__(self, window: float, max_bytes: int) -> None:
        self.window = window
        self.max_bytes = max_bytes
        self._held: list[str] = []
        self._size = 0
        self._last_sent = float("-inf")

    def add(self, token: str):
        if not self.window and not self.max_bytes:
            return token, 1
        self._held.append(token)
        self._size += len(token.encode())
        now = time.monotonic()
        if ((self.max_bytes and self._size >= self.max_bytes)
                or (self.window and now - self._last_sent >= self.window)):
            self._last_sent = now
            return self.flush()
        return None

    def flush(self):
        if not self._held:
            return None
        batch = "".join(self._held), len(self._held)
        self._held, self._size = [], 0
        return batch


# -- routes ---------------------------------------------------------------------------------

def _int_option(request, name: str, default, low: int, high: int):
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise HTTPError(400, f"{name} must be an integer, got {raw[:40]!r}") from None
    if not low <= value <= high:
        raise HTTPError(400, f"{name} must be from {low} to {high}, got {value}")
    return value


def _resume_point(request) -> int:
    """Tokens the client already has (Last-Event-ID), or 0."""
    try:
        return max(0, int(request.last_event_id or 0))
    except ValueError:
        return 0


@app.get("/")
def index(request):
    return FileResponse(PAGE)


@app.get("/ai/chat")
def chat_stream(request):
    """The answer to ``?prompt=`` as ``token`` events then ``done`` (module docstring)."""
    prompt = request.query.get("prompt", "").replace("\r\n", "\n").replace("\r", "\n")
    if not prompt.strip():
        raise HTTPError(400, "missing prompt: /ai/chat?prompt=...")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise HTTPError(400, f"the prompt is over {MAX_PROMPT_CHARS} characters")
    source = request.query.get("source") or DEFAULT_SOURCE
    if source not in SOURCES:
        raise HTTPError(400, f"source must be one of {', '.join(SOURCES)}")
    delay_ms = _int_option(request, "delay_ms", DEFAULT_DELAY_MS, 0, 2000)
    coalesce_ms = _int_option(request, "coalesce_ms", 0, 0, 10_000)
    coalesce_bytes = _int_option(request, "coalesce_bytes", 0, 0, 65_536)
    max_tokens = _int_option(request, "max_tokens", 4096, 1, 100_000)
    fail_after = _int_option(request, "fail_after", None, 0, 100_000)
    hold_after = _int_option(request, "hold_after", None, 0, 100_000)

    tokens = tokenize(answer_for(prompt))
    finish_reason = "length" if len(tokens) > max_tokens else "stop"
    start = min(_resume_point(request), max_tokens, len(tokens))
    chat = new_chat(source)
    plan = Plan(chat, tokens[start:max_tokens], delay_ms / 1000, hold_after, fail_after)
    answer = stream_answer(chat, plan, start, finish_reason, coalesce_ms / 1000,
                           coalesce_bytes)
    return StreamResponse(answer, headers={"X-Chat-Id": chat.id})


async def stream_answer(chat: Chat, plan: Plan, start: int, finish_reason: str,
                        window: float, max_bytes: int):
    # NOTE: the sources and the coalescer are plain objects, not async generators. When the
    # client goes away, conduit closes this generator by throwing GeneratorExit into the
    # await in progress; were that await an inner async generator's __anext__, CPython
    # would leave the inner generator marked as running: its finally would not run then,
    # and its aclose() would raise RuntimeError. A coroutine (__anext__ of a class) closes.
    tokens, stop = open_source(plan, chat.source)
    batcher = Coalescer(window, max_bytes)
    chat.sent = start

    def token_event(batch) -> SSEEvent:
        text, count = batch
        chat.sent += count
        chat.events += 1
        return SSEEvent(text, event="token", id=chat.sent)  # id: tokens sent so far

    try:
        try:
            async for token in tokens:
                batch = batcher.add(token)
                if batch is not None:
                    yield token_event(batch)
        except Exception as exc:
            held = batcher.flush()
            if held is not None:
                yield token_event(held)  # what the model made before it failed
            chat.state = "failed"
            log.warning("chat %s (%s) failed after %d tokens: %s", chat.id, chat.source,
                        chat.sent, exc)
            yield SSEEvent({"error": str(exc), "tokens": chat.sent}, event="failed")
            return
        held = batcher.flush()
        if held is not None:
            yield token_event(held)
        chat.state = "done"
        yield SSEEvent({"chat_id": chat.id, "source": chat.source, "tokens": chat.sent,
                        "events": chat.events, "finish_reason": finish_reason,
                        "resumed_after": start}, event="done")
    finally:
        # Runs however the stream ends, including when the client goes away (conduit closes
        # this generator wherever it waits). Tell the source to stop now, on the loop
        # thread, then close it (iterate_in_thread runs the stream's close() in a worker).
        if chat.state == "running":
            chat.state = "cancelled"
        chat.stop_requested = True
        if stop is not None:
            stop()
        await tokens.aclose()


@app.get("/ai/chats/{chat_id}")
def chat_info(request, chat_id):
    chat = chats.get(chat_id)
    if chat is None:
        raise HTTPError(404, f"no chat {chat_id!r} (only the last {KEPT_CHATS} are kept)")
    return chat.as_dict()


@app.post("/ai/chats/{chat_id}/release")
def release(request, chat_id):
    """Let a fake client held by ``hold_after`` go on (a test hook, see the docstring)."""
    chat = chats.get(chat_id)
    if chat is None:
        raise HTTPError(404, f"no chat {chat_id!r}")
    answer = chat.as_dict()  # before the release: "blocked" says it was waiting
    chat.release.set()
    return answer


@app.get("/ai/stats")
def stats(request):
    by_state = {"running": 0, "done": 0, "failed": 0, "cancelled": 0}
    for chat in chats.values():
        by_state[chat.state] += 1
    recent = [chat.as_dict() for chat in reversed(chats.values())]
    return {"chats": by_state, "recent": recent[:10], "default_source": DEFAULT_SOURCE,
            "default_delay_ms": DEFAULT_DELAY_MS}
