"""AI token streaming: a chat answer read from the ``openai`` SDK and sent on token by token
over SSE, with a Stop button. Needs the SDK: ``pip install openai``.

    python -m conduit run examples/ai_chat.py
    # open http://127.0.0.1:8000/ : type a prompt, watch the answer arrive, Stop cancels it

    curl -N 'http://127.0.0.1:8000/ai/chat?prompt=What+is+SSE%3F'
    curl -N 'http://127.0.0.1:8000/ai/chat?prompt=hello&coalesce_ms=200'

    # the same page on a real provider (any OpenAI-compatible API):
    OPENAI_BASE_URL=https://api.openai.com/v1 OPENAI_API_KEY=sk-... \\
        AI_CHAT_MODEL=gpt-4o-mini python -m conduit run examples/ai_chat.py

Two halves in one app
---------------------
1. **The chat** (``GET /ai/chat``) is a client of an OpenAI-compatible API: it streams the
   answer through the SDK's ``AsyncOpenAI`` (``chat.completions.create(..., stream=True)``)
   and sends each token on as an SSE event.
2. **The model** (``POST /v1/chat/completions``) is such an API: a tiny deterministic
   offline "model" (canned answers, ``answer_for``, split by ``tokenize``) paced with
   ``asyncio.sleep``. It is what the chat talks to unless ``OPENAI_BASE_URL`` says
   otherwise, so the example runs with no network and no key.

Handlers run on asyncio (README, "Handlers"), so the SDK runs in the handler itself: every
answer is an asyncio Task awaiting its own HTTP stream, on the loop thread, with no thread
per answer and no thread pool in the way. 500 answers at once stream as 500 answers at
once (tests/e2e/test_ai_chat_concurrency.py holds 500 after their first token).

Configuration (environment)

| variable | default | |
|---|---|---|
| ``OPENAI_BASE_URL`` | this server's own ``/v1`` | the API the chat reads from |
| ``OPENAI_API_KEY`` | ``offline`` (a dummy) | its key (the offline model takes any) |
| ``AI_CHAT_MODEL`` | ``conduit-offline`` | the ``model`` the chat asks for |
| ``AI_CHAT_DELAY_MS`` | 40 | the offline model's pace: ms per token |

"This server's own /v1" is ``http://<the address the server is bound to>/v1`` (0.0.0.0
is asked through 127.0.0.1), found at the first chat, so ``--port 0`` works. It is never
taken from the request's Host header: a client could then point the server's outgoing
requests anywhere it likes.

One ``AsyncOpenAI`` client is shared by every answer (its connection pool is the SDK's:
up to 1000 connections, keep-alive reused between answers). It is made at the first chat,
on the loop, and closed by an ``app.on_shutdown`` hook where the App has them (else the
process's exit closes its sockets).

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
    data:                  <- the token "\\neach": a newline is two data lines
    data: each
    ...
    event: done
    data: {"chat_id":"c1","model":"conduit-offline","completion_id":"chatcmpl-1",
           "tokens":16,"events":16,"finish_reason":"stop","resumed_after":0}

- The data of the token events, concatenated, is the answer exactly (spaces, newlines and
  any unicode included; a newline in a token goes out as two ``data:`` lines, which the
  client joins back with a newline). A token is the ``delta.content`` of one chunk the
  SDK yields (chunks with no content, such as the first one, which carries the role, are
  not sent).
- A token event's ``id`` is the number of tokens sent so far in this answer. A client that
  reconnects with ``Last-Event-ID: k`` (the browser's EventSource does that by itself after
  a dropped connection) gets the answer from token k+1: the chat asks the model again and
  skips the first k tokens. That is exact with the offline model, which is deterministic;
  a real model writes a new answer each time, so a real app keeps what it generated (e.g.
  in a channel with history) to resume from.
- ``done``: JSON with ``tokens`` (the last id), ``events`` (token events in this response),
  ``finish_reason`` (the model's: ``stop``, or ``length`` when ``max_tokens`` cut the
  answer), the ``model``, the ``chat_id``, the ``completion_id`` (the chunks' ``id``) and
  ``resumed_after``.
- If the model fails (mid-answer, or before: a 4xx/5xx, a refused connection), a
  ``failed`` event (JSON ``{"error": ..., "tokens": n}``) replaces ``done`` and the stream
  ends.
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
| ``coalesce_ms`` | 0 (off) | at most one token event per N ms (below), 0..10000 |
| ``coalesce_bytes`` | 0 (off) | batch tokens until an event holds N bytes, 0..65536 |
| ``max_tokens`` | the model's | passed to the model (``finish_reason: length``) |
| ``delay_ms`` | ``$AI_CHAT_DELAY_MS`` | the offline model's pace, 0..2000 |
| ``fail_after`` | off | the offline model fails after N tokens (the ``failed`` event) |
| ``hold_after`` | off | the offline model holds after N tokens until released (below) |

The last three are passed to the model as query parameters of its URL (the SDK's
``extra_query``), only when given: a real provider ignores them.

Token coalescing (``coalesce_ms``, ``coalesce_bytes``)
-------------------------------------------------------
A token is a few bytes; an event costs a frame, a chunk and a browser dispatch. Coalescing
sends several tokens as one ``token`` event whose data is their concatenation and whose id
is the count after the last of them, so the text and the ids mean the same as without it:

- ``coalesce_ms=N``: at most one event per N ms. A token that arrives N ms or more after the
  last event goes out at once (with any tokens held before it), so the first token is never
  delayed; tokens that arrive sooner are held until the N ms are up (a timer: while the
  model stalls, what is held still goes out on time).
- ``coalesce_bytes=N``: tokens are held until the batch has N bytes (UTF-8).
- Both: whichever comes first. The end of the answer (or a failure) sends what is held.

Cancel: Stop, a closed tab, a dropped connection
------------------------------------------------
When the client goes away (``EventSource.close()``, a closed tab, ``curl`` interrupted),
conduit cancels the stream's task: ``CancelledError`` comes out of the ``await`` the answer
is waiting in (the SDK reading its socket), and the ``finally`` in ``stream_answer`` closes
the SDK's stream (``await stream.close()``), which closes its HTTP response and so its
connection to the model: the model sees its client go and stops (the offline model's
stream is cancelled the same way; ``GET /ai/completions/{id}`` then says ``cancelled``).
No token is asked for after the client has gone.

``GET /ai/chats/{chat_id}`` shows the chat's side: ``state`` (running, done, failed,
cancelled), ``received`` (tokens the SDK yielded), ``sent``, ``events``,
``completion_id``, ``finish_reason`` and ``upstream_closed`` (the SDK stream was closed).
``GET /ai/stats`` counts chats and completions by state, shows the last ten chats, the
model and the base URL.

The model: ``POST /v1/chat/completions``
-----------------------------------------
OpenAI's chat completions API, as much of it as the SDK's chat needs: a JSON body with
``model`` (any name), ``messages`` (the last ``user`` message is the prompt; its content a
string or text parts), ``stream``, ``max_tokens`` or ``max_completion_tokens``,
``stream_options.include_usage``; any key is accepted. ``stream: true`` answers
``text/event-stream``: a ``data: {chat.completion.chunk}`` line per chunk (the role, then
one token each, then an empty delta with the ``finish_reason``, then the usage if asked),
then ``data: [DONE]``. Otherwise one ``chat.completion`` JSON, after the same pacing. A
bad body is a 400 ``{"error": {"message", "type", "param", "code"}}`` as OpenAI's, and
``fail_after`` mid-stream sends ``data: {"error": {...}}`` (the SDK raises ``APIError``).
``GET /v1/models`` lists the one model.

``hold_after=N`` (a test hook): the model's stream holds after N tokens, awaiting an
``asyncio.Event``, until ``POST /ai/completions/{id}/release`` (or 60 s). It holds a
task, not a thread: the loop goes on serving, including the release itself.
``GET /ai/completions/{id}`` shows the model's side: ``state`` (running, done, failed,
cancelled), ``produced``, ``held``.

The page (``GET /``): examples/pages/ai_chat.html, a chat that renders tokens as they come.
With ``--workers N`` each worker keeps its own bookkeeping (the chat and its completion may
be served by different workers).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import re
import time
from collections import OrderedDict
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from conduit import App, FileResponse, HTTPError, Response, SSEEvent, StreamResponse

try:
    import openai
except ImportError as exc:  # conduit itself needs no dependency; this example does
    raise ImportError("examples/ai_chat.py needs the openai SDK: pip install openai") from exc

app = App()
PAGE = Path(__file__).parent / "pages" / "ai_chat.html"
log = logging.getLogger("conduit.examples.ai_chat")

MODEL = os.environ.get("AI_CHAT_MODEL", "").strip() or "conduit-offline"
DEFAULT_DELAY_MS = int(os.environ.get("AI_CHAT_DELAY_MS", "40"))
DUMMY_API_KEY = "offline"  # the offline model takes any key; the SDK insists on one
MAX_PROMPT_CHARS = 2000
HOLD_SECONDS = 60.0  # a held answer goes on by itself after this
KEPT = 200  # /ai/chats/{id} and /ai/completions/{id} remember the last this many


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


def _remember(kept: OrderedDict, key: str, value) -> None:
    kept[key] = value
    while len(kept) > KEPT:
        kept.popitem(last=False)


# -- the model's side: an OpenAI-compatible /v1/chat/completions -----------------------------

class Completion:
    """One answer the offline model is giving (what ``/ai/completions/{id}`` shows)."""

    def __init__(self, completion_id: str, model: str, stream: bool) -> None:
        self.id = completion_id
        self.model = model
        self.stream = stream
        self.created = int(time.time())
        self.state = "running"  # running, done, failed, cancelled
        self.produced = 0
        self.held = False
        self.release = asyncio.Event()

    def as_dict(self) -> dict:
        return {"completion_id": self.id, "model": self.model, "stream": self.stream,
                "state": self.state, "produced": self.produced, "held": self.held}


completions: OrderedDict[str, Completion] = OrderedDict()
_completion_ids = itertools.count(1)


class InvalidRequest(Exception):
    """A request the API refuses, answered the way OpenAI's is (the SDK reads ``message``)."""

    def __init__(self, message: str, param: str | None = None, status: int = 400) -> None:
        super().__init__(message)
        self.param = param
        self.status = status

    def response(self) -> Response:
        return Response(_api_error(str(self), "invalid_request_error", self.param),
                        status=self.status)


def _api_error(message: str, kind: str, param: str | None = None) -> dict:
    return {"error": {"message": message, "type": kind, "param": param, "code": None}}


def _prompt_of(messages) -> str:
    """The text of the last ``user`` message (a string, or a list of text parts)."""
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("messages must be a non-empty list", "messages")
    for message in reversed(messages):
        if not isinstance(message, dict):
            raise InvalidRequest("each message must be an object", "messages")
        if message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, list):
            content = "".join(part.get("text", "") for part in content
                              if isinstance(part, dict) and part.get("type") == "text")
        if isinstance(content, str) and content.strip():
            return content
        raise InvalidRequest("the last user message has no text", "messages")
    raise InvalidRequest("messages has no user message", "messages")


def _token_limit(body: dict):
    for name in ("max_completion_tokens", "max_tokens"):
        value = body.get(name)
        if value is None:
            continue
        if type(value) is not int or value < 1:
            raise InvalidRequest(f"{name} must be an integer >= 1", name)
        return value
    return None


@app.post("/v1/chat/completions")
def chat_completions(request):
    """OpenAI's chat completions, answered by the offline model (module docstring)."""
    try:
        try:
            body = request.json()
        except HTTPError as exc:
            raise InvalidRequest(str(exc.detail)) from None
        if not isinstance(body, dict):
            raise InvalidRequest("the body must be a JSON object")
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise InvalidRequest("model must be a non-empty string", "model")
        prompt = _prompt_of(body.get("messages"))
        limit = _token_limit(body)
        try:  # the test hooks come in the URL's query (the SDK's extra_query)
            delay_ms = _int_option(request, "delay_ms", DEFAULT_DELAY_MS, 0, 2000)
            fail_after = _int_option(request, "fail_after", None, 0, 100_000)
            hold_after = _int_option(request, "hold_after", None, 0, 100_000)
        except HTTPError as exc:
            raise InvalidRequest(str(exc.detail)) from None
    except InvalidRequest as exc:
        return exc.response()

    tokens = tokenize(answer_for(prompt))
    finish_reason = "length" if limit is not None and len(tokens) > limit else "stop"
    tokens = tokens[:limit]
    stream = body.get("stream") is True
    completion = Completion(f"chatcmpl-{next(_completion_ids)}", model, stream)
    _remember(completions, completion.id, completion)
    usage = {"prompt_tokens": len(tokenize(prompt)), "completion_tokens": len(tokens),
             "total_tokens": len(tokenize(prompt)) + len(tokens)}
    model_run = generate(completion, tokens, delay_ms / 1000, fail_after, hold_after)
    if stream:
        options = body.get("stream_options")
        include_usage = isinstance(options, dict) and options.get("include_usage") is True
        return StreamResponse(stream_completion(completion, model_run, finish_reason,
                                                usage if include_usage else None))
    return whole_completion(completion, model_run, finish_reason, usage)  # a coroutine


class ModelFailure(Exception):
    """The offline model's ``fail_after`` hook."""


async def generate(completion: Completion, tokens: list[str], delay: float,
                   fail_after: int | None, hold_after: int | None):
    """The model at work: its tokens, one per ``delay`` seconds, on the loop."""
    for index, token in enumerate(tokens):
        if index == hold_after:
            completion.held = True
            try:
                await asyncio.wait_for(completion.release.wait(), HOLD_SECONDS)
            except asyncio.TimeoutError:
                pass  # nobody released it: go on, rather than hold a task for ever
            finally:
                completion.held = False
        await asyncio.sleep(delay)
        if fail_after is not None and index >= fail_after:
            raise ModelFailure(f"the model failed after {index} tokens (fail_after)")
        completion.produced += 1
        yield token


async def stream_completion(completion: Completion, model_run, finish_reason: str,
                            usage: dict | None):
    """``stream: true``: chat.completion.chunk objects as ``data:`` lines, then [DONE]."""

    def chunk(delta: dict, finish=None) -> dict:  # a dict is sent as compact JSON data
        return {"id": completion.id, "object": "chat.completion.chunk",
                "created": completion.created, "model": completion.model,
                "system_fingerprint": None,
                "choices": [{"index": 0, "delta": delta, "logprobs": None,
                             "finish_reason": finish}]}

    try:
        yield chunk({"role": "assistant", "content": ""})
        try:
            async for token in model_run:
                yield chunk({"content": token})
        except ModelFailure as exc:
            # What OpenAI sends when a stream fails after it started: the SDK raises it.
            completion.state = "failed"
            yield _api_error(str(exc), "server_error")
            return
        yield chunk({}, finish_reason)
        if usage is not None:
            yield {**chunk({}), "choices": [], "usage": usage}
        completion.state = "done"
        yield "[DONE]"
    finally:
        # A client that goes away (the chat's Stop) cancels this task at its await: the
        # model stops there, and says so.
        if completion.state == "running":
            completion.state = "cancelled"
        await model_run.aclose()


async def whole_completion(completion: Completion, model_run, finish_reason: str,
                           usage: dict):
    """``stream: false``: the same pacing, then one chat.completion object."""
    try:
        try:
            text = "".join([token async for token in model_run])
        except ModelFailure as exc:
            completion.state = "failed"
            return Response(_api_error(str(exc), "server_error"), status=500)
        completion.state = "done"
        return {"id": completion.id, "object": "chat.completion",
                "created": completion.created, "model": completion.model,
                "system_fingerprint": None,
                "choices": [{"index": 0, "logprobs": None, "finish_reason": finish_reason,
                             "message": {"role": "assistant", "content": text,
                                         "refusal": None}}],
                "usage": usage}
    finally:
        if completion.state == "running":
            completion.state = "cancelled"


@app.get("/v1/models")
def models(request):
    return {"object": "list", "data": [{"id": MODEL, "object": "model", "created": 0,
                                        "owned_by": "conduit-examples"}]}


@app.get("/ai/completions/{completion_id}")
def completion_info(request, completion_id):
    completion = completions.get(completion_id)
    if completion is None:
        raise HTTPError(404, f"no completion {completion_id!r} (only the last {KEPT} are kept)")
    return completion.as_dict()


@app.post("/ai/completions/{completion_id}/release")
def release(request, completion_id):
    """Let an answer held by ``hold_after`` go on (a test hook, see the docstring)."""
    completion = completions.get(completion_id)
    if completion is None:
        raise HTTPError(404, f"no completion {completion_id!r}")
    answer = completion.as_dict()  # before the release: "held" says it was waiting
    completion.release.set()
    return answer


# -- the chat's side: a client of the API, through the openai SDK ----------------------------

class Chat:
    """One answer being streamed to a client (what ``/ai/chats/{id}`` shows)."""

    def __init__(self, chat_id: str, model: str) -> None:
        self.id = chat_id
        self.model = model
        self.state = "running"  # running, done, failed, cancelled
        self.received = 0  # tokens the SDK yielded (skipped ones included)
        self.sent = 0  # the id of the last token event
        self.events = 0
        self.completion_id: str | None = None
        self.finish_reason: str | None = None
        self.upstream_closed = False

    def as_dict(self) -> dict:
        return {"chat_id": self.id, "model": self.model, "state": self.state,
                "received": self.received, "sent": self.sent, "events": self.events,
                "completion_id": self.completion_id, "finish_reason": self.finish_reason,
                "upstream_closed": self.upstream_closed}


chats: OrderedDict[str, Chat] = OrderedDict()
_chat_ids = itertools.count(1)
_client: openai.AsyncOpenAI | None = None


def base_url() -> str:
    """``$OPENAI_BASE_URL``, else this server's own /v1 (see the module docstring)."""
    configured = os.environ.get("OPENAI_BASE_URL", "").strip()
    if configured:
        return configured
    server = app.server
    if server is None:
        raise RuntimeError("the server's address is known once it serves")
    host, port = server.address[:2]
    # A wildcard address is not one to connect to: ask through the loopback instead.
    host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/v1"


def client() -> openai.AsyncOpenAI:
    """The app's one AsyncOpenAI client, made at the first chat (on the loop)."""
    global _client
    if _client is None:
        _client = openai.AsyncOpenAI(
            base_url=base_url(),
            api_key=os.environ.get("OPENAI_API_KEY", "").strip() or DUMMY_API_KEY)
        log.info("ai_chat: model %s at %s", MODEL, _client.base_url)
    return _client


async def close_client() -> None:
    """Hang up the shared client's idle connections at exit."""
    global _client
    if _client is not None:
        await _client.close()
        _client = None


# An App with shutdown hooks closes the client there; without them the process's exit does.
if hasattr(app, "on_shutdown"):
    app.on_shutdown(close_client)


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
    coalesce_ms = _int_option(request, "coalesce_ms", 0, 0, 10_000)
    coalesce_bytes = _int_option(request, "coalesce_bytes", 0, 0, 65_536)
    options: dict = {}
    max_tokens = _int_option(request, "max_tokens", None, 1, 100_000)
    if max_tokens is not None:
        options["max_tokens"] = max_tokens
    hooks = {name: value for name, value in (
        ("delay_ms", _int_option(request, "delay_ms", None, 0, 2000)),
        ("fail_after", _int_option(request, "fail_after", None, 0, 100_000)),
        ("hold_after", _int_option(request, "hold_after", None, 0, 100_000)),
    ) if value is not None}
    if hooks:
        options["extra_query"] = hooks
    try:
        start = max(0, int(request.last_event_id or 0))  # tokens the client already has
    except ValueError:
        start = 0

    chat = Chat(f"c{next(_chat_ids)}", MODEL)
    _remember(chats, chat.id, chat)
    answer = stream_answer(chat, prompt, options, start, coalesce_ms / 1000, coalesce_bytes)
    return StreamResponse(answer, headers={"X-Chat-Id": chat.id})


class IncompleteAnswer(Exception):
    """The model's stream ended without a finish_reason (cut off, or a drain)."""


async def stream_answer(chat: Chat, prompt: str, options: dict, start: int,
                        window: float, max_bytes: int):
    chat.sent = start
    stream = tokens = batches = None
    try:
        try:
            stream = await client().chat.completions.create(
                model=chat.model, messages=[{"role": "user", "content": prompt}],
                stream=True, **options)
            tokens = contents(chat, stream, start)
            batches = coalesce(tokens, window, max_bytes)
            async for text, count in batches:
                chat.sent += count
                chat.events += 1
                yield SSEEvent(text, event="token", id=chat.sent)  # id: tokens sent so far
            if chat.finish_reason is None:  # the stream ended with no finish_reason
                raise IncompleteAnswer("the model's stream ended before the answer did")
        except (openai.OpenAIError, IncompleteAnswer) as exc:
            chat.state = "failed"
            log.warning("chat %s failed after %d tokens: %s", chat.id, chat.sent, exc)
            message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
            yield SSEEvent({"error": message, "tokens": chat.sent}, event="failed")
            return
        chat.state = "done"
        yield SSEEvent({"chat_id": chat.id, "model": chat.model,
                        "completion_id": chat.completion_id, "tokens": chat.received,
                        "events": chat.events, "finish_reason": chat.finish_reason,
                        "resumed_after": min(start, chat.received)}, event="done")
    finally:
        # However the stream ends, the client's going included (CancelledError at the
        # await in progress, or GeneratorExit at a yield), close the SDK's stream: that
        # closes its HTTP response, so the model sees the connection go and stops.
        if chat.state == "running":
            chat.state = "cancelled"
        if batches is not None:
            await batches.aclose()
        if tokens is not None:
            await tokens.aclose()
        if stream is not None:
            await stream.close()
            chat.upstream_closed = True


async def contents(chat: Chat, stream, skip: int):
    """The answer's tokens: each chunk's ``delta.content``, after the first ``skip``."""
    async for chunk in stream:
        chat.completion_id = chunk.id
        for choice in chunk.choices:
            if choice.index != 0:
                continue
            if choice.delta is not None and choice.delta.content:
                chat.received += 1
                if chat.received > skip:
                    yield choice.delta.content
            if choice.finish_reason:
                chat.finish_reason = choice.finish_reason


_END = object()


async def _next_or_end(iterator):
    try:
        return await anext(iterator)
    except StopAsyncIteration:
        return _END


async def coalesce(tokens, window: float, max_bytes: int):
    """Batches of ``(text, token count)`` (see "Token coalescing" above)."""
    if not window and not max_bytes:
        async for token in tokens:
            yield token, 1
        return
    loop = asyncio.get_running_loop()
    held: list[str] = []
    size = 0
    last_sent = float("-inf")
    pending: asyncio.Task | None = None  # the read of the next token, kept across a flush
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(_next_or_end(tokens))
            timeout = None
            if held and window:
                timeout = max(0.0, last_sent + window - loop.time())
            # NOTE: asyncio.wait, not wait_for: a timeout must leave the read in progress
            # (cancelling it would cancel the SDK's read of its socket mid-chunk).
            done, _ = await asyncio.wait((pending,), timeout=timeout)
            if not done:  # the window is up with tokens held: they go out now
                last_sent = loop.time()
                yield "".join(held), len(held)
                held, size = [], 0
                continue
            try:
                token = pending.result()
            except Exception:  # the model failed: what it made before goes out first
                pending = None
                if held:
                    yield "".join(held), len(held)
                raise
            pending = None
            if token is _END:
                break
            held.append(token)
            size += len(token.encode())
            now = loop.time()
            if (max_bytes and size >= max_bytes) or (window and now - last_sent >= window):
                last_sent = now
                yield "".join(held), len(held)
                held, size = [], 0
        if held:
            yield "".join(held), len(held)
    finally:
        if pending is not None:  # the client went away while a read was in progress
            pending.cancel()
            await asyncio.wait((pending,))
            if not pending.cancelled():
                pending.exception()  # retrieved: asyncio would log it as never retrieved


@app.get("/ai/chats/{chat_id}")
def chat_info(request, chat_id):
    chat = chats.get(chat_id)
    if chat is None:
        raise HTTPError(404, f"no chat {chat_id!r} (only the last {KEPT} are kept)")
    return chat.as_dict()


@app.get("/ai/stats")
def stats(request):
    by_state = {"running": 0, "done": 0, "failed": 0, "cancelled": 0}
    chat_states, completion_states = dict(by_state), dict(by_state)
    for chat in chats.values():
        chat_states[chat.state] += 1
    for completion in completions.values():
        completion_states[completion.state] += 1
    recent = [chat.as_dict() for chat in reversed(chats.values())]
    return {"chats": chat_states, "recent": recent[:10], "completions": completion_states,
            "model": MODEL, "base_url": _shown(base_url()), "default_delay_ms": DEFAULT_DELAY_MS}


def _shown(url: str) -> str:
    """``url`` without a user:password@ or a query, which may hold credentials."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))
