"""An MCP server (Model Context Protocol) over the Streamable HTTP transport, on conduit.

    python -m conduit run examples/mcp_server.py
    # MCP endpoint: http://127.0.0.1:8000/mcp      page: http://127.0.0.1:8000/
    curl -N 'http://127.0.0.1:8000/mcp/tools/execute?tool=count_to&n=5'   # the simple form

Connect with the official SDK (``pip install mcp``, 2.x):

    import asyncio
    from mcp import Client

    async def main():
        async def on_progress(progress, total, message):
            print(f"{progress:.0f}/{total:.0f} {message}")

        # mode="auto" (the default): server/discover, then protocol 2026-07-28 (stateless)
        async with Client("http://127.0.0.1:8000/mcp") as client:
            print([tool.name for tool in (await client.list_tools()).tools])
            result = await client.call_tool("count_to", {"n": 5},
                                            progress_callback=on_progress)
            print(result.structured_content)                  # {'count': 5}

        # mode="legacy": the initialize handshake (2025-11-25) and an Mcp-Session-Id
        # session, ended with DELETE /mcp when the block exits
        async with Client("http://127.0.0.1:8000/mcp", mode="legacy") as client:
            result = await client.call_tool("slow_sum", {"n": 10, "delay_ms": 50},
                                            progress_callback=on_progress)
            print(result.content[0].text)                     # 1 + 2 + ... + 10 = 55

    asyncio.run(main())

Tools
- ``count_to``: ``{"n": 1..1000, "delay_ms": 0..2000 (default 100)}``. Counts to n, one
  step every delay_ms (``await conduit.sleep``), each step a progress notification; the
  result is ``"Counted to n."`` with ``structuredContent`` ``{"count": n}``.
- ``slow_sum``: the same arguments. Adds 1..n, each addition a blocking call (it sleeps
  delay_ms) run in a worker thread with ``await conduit.to_thread``; progress after each;
  the result is ``"1 + 2 + ... + n = S"`` with ``{"n": n, "sum": S}``.
Arguments that break the input schema (n missing, not an integer, out of range, an
unknown argument) give a tool result with ``isError: true`` and a message saying why, as
the 2025-11-25 spec asks (the model can read it and correct itself). An unknown tool, or
``params`` that are not ``{"name": str, "arguments": object}``, is a JSON-RPC error
-32602 (invalid params).

The two protocol eras the SDK's two modes speak, both at ``/mcp``
A request whose ``MCP-Protocol-Version`` header names a version that is not a handshake
version (2024-11-05 .. 2025-11-25) is served by the 2026-07-28 rules; anything else by
the handshake rules. This is how the SDK's own server routes them.

- Handshake era (``mode="legacy"``: 2025-11-25 and 2025-06-18; any other requested
  version is answered with 2025-11-25, the spec's counter-offer):
  - ``POST /mcp`` with ``initialize`` (no ``Mcp-Session-Id``): a new session; the answer
    (application/json) carries the ``Mcp-Session-Id`` header. Every later request must
    send it: missing is 400, unknown (or deleted) is 404, as the spec says.
    ``MCP-Protocol-Version`` on later requests, when present, must be the negotiated
    version (400 otherwise); when absent the session's version is assumed.
  - Notifications (``notifications/initialized``, ``notifications/cancelled``, ...) and
    client responses: 202 with no body. ``notifications/cancelled`` stops that call.
  - ``ping``, ``tools/list``: application/json. ``tools/call``: a ``text/event-stream``
    that sends ``notifications/progress`` (when the request has
    ``params._meta.progressToken``), then the JSON-RPC result. Unknown method: -32601.
    JSON-RPC errors to a well-formed request come as application/json with status 200.
  - ``GET /mcp``: the session's stream for server-initiated messages (this server has
    none to send, so it carries only the priming event and conduit's heartbeats until
    the session ends); a second one while it is open is 409. With ``Last-Event-ID``: that
    stream resumed, see below.
  - ``DELETE /mcp``: ends the session (204); its id is unknown (404) from then on.
- 2026-07-28 (``mode="auto"``, the SDK default): no handshake and no session. Every
  request is one self-contained POST whose ``params._meta`` carries the protocol version
  and client capabilities, mirrored by the ``MCP-Protocol-Version``, ``Mcp-Method`` and
  (for tools/call) ``Mcp-Name`` headers. ``server/discover`` answers the supported
  versions and capabilities; ``tools/list`` and ``tools/call`` as above, results carry
  ``resultType`` (and list results ``ttlMs`` and ``cacheScope``). Errors use the spec's
  HTTP statuses: a missing envelope -32602 (400), headers that disagree with the body
  -32020 (400), an unsupported version -32022 (400, naming the supported ones), an
  unknown method -32601 (404). GET and DELETE are 405 (``Allow: POST``).
- Either era: malformed JSON is 400 with a -32700 parse error; a batch (a JSON array)
  or a body that is not a JSON-RPC message is 400 -32600; a POST that does not accept
  both application/json and text/event-stream is 406; a body that is not
  application/json is 415.

SSE streams
Every event has an id ``<stream id>-<n>``: the stream id is random, new for each stream,
and n counts that stream's events from 1, so ids are unique within a session and name the
stream they belong to. JSON-RPC messages use the default event type (``message``), as the
spec does; nothing is ever named ``error`` or ``open``. For a 2025-11-25 session a stream
starts with a priming event (an id and empty data), so a client can resume it at once.
Resuming (handshake era): ``GET /mcp`` with ``Last-Event-ID`` replays that stream's events
after the id, and follows it if it is still running. conduit closes a stream's generator
when its client goes away, which stops the tool: a resumed call that was cut off that way
ends with a JSON-RPC error (-32603, "interrupted") for its request instead of a result
that will never come. The last 32 streams of a session are kept for this.

The simple form: ``GET /mcp/tools/execute?tool=count_to&n=5[&delay_ms=100]``
An SSE stream for ``EventSource``: ``event: tool_progress`` with JSON
``{"tool", "step", "total", "percent", "status": "running", "message"}`` per step, then
``event: tool_result`` with ``{"tool", "text", "result", "is_error"}``, then
``event: tool_complete`` with ``{"tool", "status": "complete", "steps", "elapsed_ms"}``,
and the stream ends (close the EventSource then). A bad query is 400 ``{"error": ...}``.
A reconnect (a ``Last-Event-ID``) gets 204, which tells EventSource to stop: a run is
neither resumed nor started again. ``GET /``: a page that runs it, and a small JSON-RPC
console over fetch (initialize, then tools/list or a streamed tools/call, then DELETE).

Allowed origins
Browsers send ``Origin``; a request to any ``/mcp`` route whose ``Origin`` is present and
not allowed is 403 (DNS rebinding protection, as the spec requires). Allowed: this
server's own origin on the loopback names, ``http://localhost:PORT``,
``http://127.0.0.1:PORT`` and ``http://[::1]:PORT``, PORT being the port the request was
sent to (from its Host header), plus the exact origins listed, comma-separated, in the
environment variable ``MCP_ALLOWED_ORIGINS`` (e.g. ``https://app.example.com``). Requests
without ``Origin`` (the SDK, curl) are not affected. Bind to 127.0.0.1 (conduit's
default) unless you mean to serve other machines.

Handlers run on asyncio (any asyncio code works in them): tools wait with
``await conduit.sleep(s)`` (asyncio.sleep) and run blocking work in the server's thread pool
with ``await conduit.to_thread(fn, ...)``. Everything else runs on the loop thread, so
sessions need no locks. A stream that waits on something
another request changes (the GET stream on its session's end, a resumed stream on the call
it follows) waits on its session's ``asyncio.Event``, set whenever one of the session's
streams gets an event or changes state and when the session ends. Sessions live in memory: at
most 1000, and one idle for an hour is forgotten.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import os
import secrets
import time
from collections import OrderedDict
from pathlib import Path
from typing import NamedTuple
from urllib.parse import urlsplit

import conduit
from conduit import (
    App,
    FileResponse,
    HTTPError,
    Response,
    SSEEvent,
    StreamResponse,
    sleep,
    to_thread,
)

app = App()
PAGE = Path(__file__).parent / "pages" / "mcp_server.html"
log = logging.getLogger("conduit.example.mcp")

# -- protocol constants ----------------------------------------------------------------------

HANDSHAKE_ERA = ("2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25")  # via initialize
SERVED_HANDSHAKE_VERSIONS = ("2025-06-18", "2025-11-25")
LATEST_HANDSHAKE_VERSION = "2025-11-25"
PRIMING_FROM = "2025-11-25"  # older clients cannot parse an event with empty data
MODERN_VERSIONS = ("2026-07-28",)  # the per-request envelope era: no handshake, no session

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
SESSION_NOT_FOUND = -32001
HEADER_MISMATCH = -32020
UNSUPPORTED_PROTOCOL_VERSION = -32022
# 2026-07-28: the HTTP status that goes with a JSON-RPC error code (others: 200).
MODERN_ERROR_STATUS = {
    PARSE_ERROR: 400, INVALID_REQUEST: 400, INVALID_PARAMS: 400, HEADER_MISMATCH: 400,
    UNSUPPORTED_PROTOCOL_VERSION: 400, METHOD_NOT_FOUND: 404,
}

PROTOCOL_VERSION_META = "io.modelcontextprotocol/protocolVersion"
CLIENT_CAPABILITIES_META = "io.modelcontextprotocol/clientCapabilities"
SERVER_INFO_META = "io.modelcontextprotocol/serverInfo"

SERVER_INFO = {"name": "conduit-mcp-example", "title": "conduit MCP example",
               "version": conduit.__version__}
CAPABILITIES = {"tools": {"listChanged": False}}
INSTRUCTIONS = ("Two demo tools that report progress: count_to counts to n, slow_sum adds "
                "1..n. Both take an integer n (1-1000) and an optional delay_ms per step.")

MAX_SESSIONS = 1000
SESSION_IDLE_SECONDS = 3600.0
STREAMS_KEPT_PER_SESSION = 32

EXTRA_ORIGINS = frozenset(
    origin.strip().rstrip("/")
    for origin in os.environ.get("MCP_ALLOWED_ORIGINS", "").split(",") if origin.strip()
)
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})


# -- tools -----------------------------------------------------------------------------------

class Progress(NamedTuple):
    step: int
    total: int
    message: str


class ToolResult(NamedTuple):
    text: str
    structured: dict | None = None
    is_error: bool = False


class IntArg(NamedTuple):
    minimum: int
    maximum: int
    description: str
    default: int | None = None  # None: required


class Tool(NamedTuple):
    name: str
    title: str
    description: str
    arguments: dict  # name -> IntArg
    output_schema: dict
    run: object  # async generator function: (arguments) -> Progress..., ToolResult

    def definition(self) -> dict:
        properties = {}
        for name, arg in self.arguments.items():
            prop = {"type": "integer", "minimum": arg.minimum, "maximum": arg.maximum,
                    "description": arg.description}
            if arg.default is not None:
                prop["default"] = arg.default
            properties[name] = prop
        return {
            "name": self.name,
            "title": self.title,
            "description": self.description,
            "inputSchema": {
                "type": "object",
                "properties": properties,
                "required": [n for n, a in self.arguments.items() if a.default is None],
                "additionalProperties": False,
            },
            "outputSchema": self.output_schema,
            "annotations": {"readOnlyHint": True, "openWorldHint": False},
        }

    def validate(self, arguments: dict) -> dict | str:
        """The arguments with defaults filled in, or a message saying what is wrong."""
        unknown = sorted(set(arguments) - set(self.arguments))
        if unknown:
            return f"unknown argument(s): {', '.join(unknown)}"
        checked = {}
        for name, arg in self.arguments.items():
            value = arguments.get(name, arg.default)
            if value is None:
                return f"'{name}' is required: an integer from {arg.minimum} to {arg.maximum}"
            if isinstance(value, float) and value.is_integer():
                value = int(value)  # JSON Schema: 3.0 is an integer
            if type(value) is not int or not arg.minimum <= value <= arg.maximum:
                shown = json.dumps(value)
                if len(shown) > 40:
                    shown = shown[:37] + "..."
                return (f"'{name}' must be an integer from {arg.minimum} to {arg.maximum}, "
                        f"got {shown}")
            checked[name] = value
        return checked


async def count_to(arguments):
    """One step every delay_ms, waited with conduit.sleep (never time.sleep on the loop)."""
    n, delay = arguments["n"], arguments["delay_ms"] / 1000
    for i in range(1, n + 1):
        if delay:
            await sleep(delay)
        yield Progress(i, n, f"counted {i} of {n}")
    yield ToolResult(f"Counted to {n}.", {"count": n})


def _add_slowly(total: int, i: int, seconds: float) -> int:
    """Blocking work, a stand-in for a slow library call: it runs in a worker thread."""
    if seconds:
        time.sleep(seconds)
    return total + i


async def slow_sum(arguments):
    n, delay = arguments["n"], arguments["delay_ms"] / 1000
    total = 0
    for i in range(1, n + 1):
        total = await to_thread(_add_slowly, total, i, delay)
        yield Progress(i, n, f"added {i}: running total {total}")
    yield ToolResult(f"1 + 2 + ... + {n} = {total}", {"n": n, "sum": total})


_N = IntArg(1, 1000, "How many steps (each one is a progress notification).")
_DELAY = IntArg(0, 2000, "Milliseconds each step takes.", default=100)
TOOLS = {
    tool.name: tool for tool in (
        Tool("count_to", "Count to n",
             "Counts from 1 to n, one step every delay_ms milliseconds, and reports each "
             "step as progress.",
             {"n": _N, "delay_ms": _DELAY},
             {"type": "object", "properties": {"count": {"type": "integer"}},
              "required": ["count"]},
             count_to),
        Tool("slow_sum", "Slow sum of 1..n",
             "Adds 1 + 2 + ... + n, one addition at a time in a worker thread (each takes "
             "delay_ms), and reports each as progress.",
             {"n": _N, "delay_ms": _DELAY},
             {"type": "object",
              "properties": {"n": {"type": "integer"}, "sum": {"type": "integer"}},
              "required": ["n", "sum"]},
             slow_sum),
    )
}


# -- JSON-RPC and HTTP helpers ---------------------------------------------------------------

def dumps(message) -> str:
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False)


def rpc_result(request_id, result: dict) -> dict:
    return {"jsonrpc": "2.0", "id": request_id, "result": result}


def rpc_error(request_id, code: int, message: str, data=None) -> dict:
    error = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    return {"jsonrpc": "2.0", "id": request_id, "error": error}


def json_response(message, status: int = 200, headers=None) -> Response:
    return Response(dumps(message).encode(), status=status, headers=headers,
                    content_type="application/json")


def http_error(status: int, code: int, message: str, headers=None, data=None) -> Response:
    """A transport-level rejection: JSON-RPC error with id null, with an HTTP status."""
    return json_response(rpc_error(None, code, message, data), status, headers)


def accepts(request) -> tuple[bool, bool]:
    """(accepts application/json, accepts text/event-stream), wildcards included."""
    kinds = {part.split(";")[0].strip().lower()
             for part in ",".join(request.headers.getall("accept")).split(",")}
    anything = "*/*" in kinds
    return (anything or "application/json" in kinds or "application/*" in kinds,
            anything or "text/event-stream" in kinds or "text/*" in kinds)


def check_post_headers(request) -> Response | None:
    wants_json, wants_sse = accepts(request)
    if not (wants_json and wants_sse):
        return http_error(406, INVALID_REQUEST,
                          "Not Acceptable: Accept must list application/json and "
                          "text/event-stream")
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/json":
        return http_error(415, INVALID_REQUEST,
                          "Unsupported Media Type: the body must be application/json")
    return None


def parse_body(request):
    """(message, None) or (None, error response) for a POST body."""
    try:
        message = json.loads(request.body)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        return None, http_error(400, PARSE_ERROR, f"Parse error: {exc}")
    if isinstance(message, list):
        return None, http_error(400, INVALID_REQUEST,
                                "Invalid Request: batches are not supported (JSON-RPC "
                                "batching was removed from MCP in 2025-06-18)")
    if not isinstance(message, dict) or message.get("jsonrpc") != "2.0":
        return None, http_error(400, INVALID_REQUEST,
                                "Invalid Request: not a JSON-RPC 2.0 message object")
    if "method" in message:
        if not isinstance(message["method"], str):
            return None, http_error(400, INVALID_REQUEST,
                                    "Invalid Request: 'method' must be a string")
        if "id" in message and not _valid_id(message["id"]):
            return None, http_error(400, INVALID_REQUEST,
                                    "Invalid Request: 'id' must be a string or an integer")
        if "params" in message and not isinstance(message["params"], dict):
            return None, http_error(400, INVALID_REQUEST,
                                    "Invalid Request: 'params' must be an object")
    elif not ("id" in message and ("result" in message or "error" in message)):
        return None, http_error(400, INVALID_REQUEST,
                                "Invalid Request: neither a request, a notification nor "
                                "a response")
    return message, None


def _valid_id(value) -> bool:
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


def origin_problem(request) -> str | None:
    """Why this request's Origin is refused, or None (no Origin, or an allowed one)."""
    origin = request.headers.get("origin")
    if origin is None:
        return None
    if origin.rstrip("/") in EXTRA_ORIGINS:
        return None
    refused = f"Forbidden: Origin {origin[:100]!r} is not allowed"
    try:
        parts = urlsplit(origin)
        origin_port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
        host_port = urlsplit("//" + request.headers.get("host", "")).port or 80
    except ValueError:
        return refused
    if (parts.scheme != "http" or parts.hostname not in LOOPBACK_NAMES
            or origin_port != host_port or parts.path not in ("", "/")):
        return refused
    return None


def progress_token(params: dict):
    """(token or None, error message or None) from params._meta.progressToken."""
    meta = params.get("_meta")
    if meta is None:
        return None, None
    if not isinstance(meta, dict):
        return None, "'_meta' must be an object"
    token = meta.get("progressToken")
    if token is None or _valid_id(token):
        return token, None
    return None, "'_meta.progressToken' must be a string or an integer"


def tool_call_params(params: dict):
    """(tool, arguments, progress token) or (None, error message, None)."""
    name = params.get("name")
    if not isinstance(name, str):
        return None, "Invalid params: 'name' must be the tool's name (a string)", None
    arguments = params.get("arguments", {})
    if arguments is None:
        arguments = {}
    if not isinstance(arguments, dict):
        return None, "Invalid params: 'arguments' must be an object", None
    token, problem = progress_token(params)
    if problem:
        return None, f"Invalid params: {problem}", None
    tool = TOOLS.get(name)
    if tool is None:
        shown = name if len(name) <= 60 else name[:57] + "..."
        return None, f"Unknown tool: {shown!r} (this server has {', '.join(TOOLS)})", None
    return tool, arguments, token


# -- streams: ids, logs for resuming ---------------------------------------------------------

RUNNING, DONE, INTERRUPTED, CANCELLED = "running", "done", "interrupted", "cancelled"


class StreamLog:
    """One SSE stream's events, numbered ``<stream id>-<n>`` from 1. ``keep``: hold the
    frames so the stream can be replayed after a ``Last-Event-ID`` (sessions only)."""

    __slots__ = ("id", "request_id", "frames", "count", "keep", "_state", "changed")

    def __init__(self, request_id=None, keep: bool = False,
                 changed: asyncio.Event | None = None) -> None:
        self.id = secrets.token_hex(4)
        self.request_id = request_id
        self.frames: list[SSEEvent] = []
        self.count = 0
        self.keep = keep
        self._state = RUNNING
        self.changed = changed  # its session's: set on every event and change of state

    @property
    def state(self) -> str:
        return self._state

    @state.setter
    def state(self, value: str) -> None:
        self._state = value
        if self.changed is not None:
            self.changed.set()

    def event(self, data: str, event: str | None = None) -> SSEEvent:
        self.count += 1
        frame = SSEEvent(data, event=event, id=f"{self.id}-{self.count}")
        if self.keep:
            self.frames.append(frame)
            if self.changed is not None:
                self.changed.set()
        return frame


def parse_event_id(value: str):
    """(stream id, n) from ``<stream id>-<n>``, or None."""
    stream_id, _, number = value.partition("-")
    if not stream_id or not number.isdigit() or len(number) > 9:
        return None
    return stream_id, int(number)


async def run_tool_events(tool: Tool, arguments: dict, alive):
    """Progress items, then one ToolResult; invalid arguments give an isError result."""
    checked = tool.validate(arguments)
    if isinstance(checked, str):
        yield ToolResult(f"Invalid arguments for {tool.name}: {checked}", None, is_error=True)
        return
    steps = tool.run(checked)
    try:
        async for step in steps:
            if not alive():
                return
            yield step
    finally:
        await close_nested(steps)


async def close_nested(agen) -> None:
    """``await agen.aclose()`` for an async generator iterated inside a stream handler,
    unless the stream was cancelled inside one of its awaits: conduit then throws
    GeneratorExit into the awaitable in flight, which has already run through ``agen``
    (its ``finally`` blocks included), and on CPython before 3.13 leaves it flagged as
    running, so ``aclose()`` (and ``contextlib.aclosing``) would raise RuntimeError
    "aclose(): asynchronous generator is already running"."""
    if not agen.ag_running:
        await agen.aclose()


def call_result(result: ToolResult, modern: bool) -> dict:
    payload = {"content": [{"type": "text", "text": result.text}], "isError": result.is_error}
    if result.structured is not None:
        payload["structuredContent"] = result.structured
    return modern_result(payload) if modern else payload


async def tool_call_stream(stream: StreamLog, request_id, tool: Tool, arguments: dict, token,
                           *, modern: bool = False, prime: bool = False, session=None):
    """A tools/call answered as SSE: [priming], progress notifications, the result."""

    def alive() -> bool:
        return stream.state == RUNNING and (session is None or not session.closed)

    steps = run_tool_events(tool, arguments, alive)
    try:
        if prime:
            yield stream.event("")
        async for step in steps:
            if isinstance(step, Progress):
                if token is not None:
                    yield stream.event(dumps({
                        "jsonrpc": "2.0", "method": "notifications/progress",
                        "params": {"progressToken": token, "progress": step.step,
                                   "total": step.total, "message": step.message}}))
            elif alive():
                stream.state = DONE  # before the yield: the result is in the log now
                yield stream.event(dumps(rpc_result(request_id, call_result(step, modern))))
        # Cancelled (notifications/cancelled) or the session ended: no response, per spec.
    finally:
        if stream.state == RUNNING:
            stream.state = INTERRUPTED  # the client went away (or the server is draining)
        await close_nested(steps)


# -- sessions (handshake era) ----------------------------------------------------------------

class Session:
    __slots__ = ("id", "protocol_version", "client", "last_seen", "closed", "streams",
                 "calls", "standalone", "standalone_open", "changed")

    def __init__(self, protocol_version: str, client: dict) -> None:
        self.id = secrets.token_hex(16)
        self.protocol_version = protocol_version
        self.client = client
        self.last_seen = time.monotonic()
        self.closed = False
        # Set when a stream of this session gets an event or changes state, and when the
        # session ends; a waiting stream clears it, looks, and waits on it.
        self.changed = asyncio.Event()
        self.streams: OrderedDict[str, StreamLog] = OrderedDict()  # for Last-Event-ID
        self.calls: dict[str, StreamLog] = {}  # request id (JSON) -> its stream, while running
        self.standalone = StreamLog(keep=True, changed=self.changed)  # the GET stream
        self.standalone_open = False

    @property
    def primes(self) -> bool:
        return self.protocol_version >= PRIMING_FROM

    def new_stream(self, request_id) -> StreamLog:
        stream = StreamLog(request_id, keep=True, changed=self.changed)
        while stream.id in self.streams or stream.id == self.standalone.id:
            stream.id = secrets.token_hex(4)
        self.streams[stream.id] = stream
        while len(self.streams) > STREAMS_KEPT_PER_SESSION:
            self.streams.popitem(last=False)
        self.calls = {key: s for key, s in self.calls.items() if s.state == RUNNING}
        self.calls[dumps(request_id)] = stream
        return stream


sessions: OrderedDict[str, Session] = OrderedDict()  # least recently used first


def new_session(protocol_version: str, client: dict) -> Session:
    now = time.monotonic()
    for sid in [sid for sid, s in sessions.items() if now - s.last_seen > SESSION_IDLE_SECONDS]:
        end_session(sid, "idle")
    while len(sessions) >= MAX_SESSIONS:
        end_session(next(iter(sessions)), "evicted")
    session = Session(protocol_version, client)
    sessions[session.id] = session
    log.info("mcp session %s… started: protocol %s, client %s %s", session.id[:8],
             protocol_version, client.get("name"), client.get("version"))
    return session


def end_session(session_id: str, why: str) -> None:
    session = sessions.pop(session_id, None)
    if session is not None:
        session.closed = True  # its streams end at their next step
        session.changed.set()
        log.info("mcp session %s… ended (%s)", session_id[:8], why)


def find_session(request, version_header):
    """(session, None) or (None, the 400/404 answer)."""
    session_id = request.headers.get("mcp-session-id")
    if not session_id:
        return None, http_error(400, INVALID_REQUEST,
                                "Bad Request: Mcp-Session-Id header is required (send "
                                "initialize first to start a session)")
    session = sessions.get(session_id)
    if session is None:
        return None, http_error(404, SESSION_NOT_FOUND,
                                "Not Found: unknown or terminated session; initialize again")
    if version_header is not None and version_header != session.protocol_version:
        return None, http_error(400, INVALID_REQUEST,
                                f"Bad Request: MCP-Protocol-Version {version_header!r} is not "
                                f"this session's negotiated version "
                                f"{session.protocol_version!r}")
    session.last_seen = time.monotonic()
    sessions.move_to_end(session_id)
    return session, None


# -- routes ----------------------------------------------------------------------------------

@app.get("/")
def index(request):
    return FileResponse(PAGE)


@app.route("/mcp", methods=["GET", "POST", "DELETE"])
def mcp_endpoint(request):
    refused = origin_problem(request)
    if refused:
        return http_error(403, INVALID_REQUEST, refused)
    versions = request.headers.getall("mcp-protocol-version")
    version = versions[0] if versions else None
    if version is not None and version not in HANDSHAKE_ERA:
        return modern_endpoint(request)
    if request.method == "POST":
        return handshake_post(request, version)
    if request.method == "DELETE":
        session, problem = find_session(request, version)
        if problem:
            return problem
        end_session(session.id, "DELETE")
        return Response(b"", status=204)
    return handshake_get(request, version)


def handshake_post(request, version):
    problem = check_post_headers(request)
    if problem:
        return problem
    message, problem = parse_body(request)
    if problem:
        return problem
    method = message.get("method")
    is_request = method is not None and "id" in message
    params = message.get("params") or {}

    if method == "initialize":
        if not is_request:
            return http_error(400, INVALID_REQUEST, "Invalid Request: initialize needs an id")
        if request.headers.get("mcp-session-id"):
            return http_error(400, INVALID_REQUEST,
                              "Bad Request: initialize starts a new session; send it "
                              "without Mcp-Session-Id")
        return initialize(message["id"], params)

    session, problem = find_session(request, version)
    if problem:
        return problem
    if not is_request:  # a notification, or a response to a server request (we send none)
        if method == "notifications/cancelled":
            stream = session.calls.get(dumps(params.get("requestId")))
            if stream is not None and stream.state == RUNNING:
                stream.state = CANCELLED
        return Response(b"", status=202)

    request_id = message["id"]
    if method == "ping":
        return json_response(rpc_result(request_id, {}))
    if method == "tools/list":
        return json_response(rpc_result(request_id, {"tools": tool_definitions()}))
    if method == "tools/call":
        tool, arguments, token = tool_call_params(params)
        if tool is None:
            return json_response(rpc_error(request_id, INVALID_PARAMS, arguments))
        stream = session.new_stream(request_id)
        return StreamResponse(tool_call_stream(stream, request_id, tool, arguments, token,
                                               prime=session.primes, session=session))
    return json_response(rpc_error(request_id, METHOD_NOT_FOUND,
                                   f"Method not found: {method[:80]!r}"))


def initialize(request_id, params: dict) -> Response:
    requested = params.get("protocolVersion")
    client = params.get("clientInfo")
    if (not isinstance(requested, str) or not isinstance(params.get("capabilities"), dict)
            or not isinstance(client, dict) or not isinstance(client.get("name"), str)):
        return json_response(rpc_error(
            request_id, INVALID_PARAMS,
            "Invalid params: initialize needs protocolVersion (a string), capabilities (an "
            "object) and clientInfo ({name, version})"))
    version = requested if requested in SERVED_HANDSHAKE_VERSIONS else LATEST_HANDSHAKE_VERSION
    session = new_session(version, client)
    result = {"protocolVersion": version, "capabilities": CAPABILITIES,
              "serverInfo": SERVER_INFO, "instructions": INSTRUCTIONS}
    return json_response(rpc_result(request_id, result),
                         headers=[("Mcp-Session-Id", session.id)])


def handshake_get(request, version):
    if not accepts(request)[1]:
        return http_error(406, INVALID_REQUEST, "Not Acceptable: Accept must list "
                                                "text/event-stream")
    session, problem = find_session(request, version)
    if problem:
        return problem
    last_event_id = request.headers.get("last-event-id")
    if last_event_id is None:
        if session.standalone_open:
            return http_error(409, INVALID_REQUEST,
                              "Conflict: this session's GET stream is already open")
        return StreamResponse(standalone_stream(session, 0))
    parsed = parse_event_id(last_event_id)
    if parsed is not None and parsed[0] == session.standalone.id:
        if session.standalone_open:
            return http_error(409, INVALID_REQUEST,
                              "Conflict: this session's GET stream is already open")
        return StreamResponse(standalone_stream(session, parsed[1]))
    stream = session.streams.get(parsed[0]) if parsed else None
    if stream is None or parsed[1] > stream.count:
        return http_error(400, INVALID_REQUEST,
                          f"Bad Request: Last-Event-ID {last_event_id[:80]!r} names no "
                          "stream of this session that can be resumed")
    return StreamResponse(resumed_stream(session, stream, parsed[1]))


async def standalone_stream(session: Session, after: int):
    """The GET stream: server-initiated messages (none here), until the session ends."""
    stream = session.standalone
    session.standalone_open = True
    try:
        if stream.count == 0:
            if session.primes:
                yield stream.event("")
        else:
            for frame in stream.frames[after:]:
                yield frame
        while not session.closed:
            session.changed.clear()
            if not session.closed:
                await session.changed.wait()
    finally:
        session.standalone_open = False


async def resumed_stream(session: Session, stream: StreamLog, after: int):
    """Replay ``stream`` after event ``after``, follow it while it runs, and end a call
    that was cut off with an error response (see the module docstring)."""
    sent = after
    while True:
        session.changed.clear()  # then look: a change from now on sets it again
        while sent < len(stream.frames):
            yield stream.frames[sent]
            sent += 1
        if stream.state != RUNNING or session.closed:
            break
        await session.changed.wait()
    if stream.state == INTERRUPTED and not session.closed:
        stream.state = DONE
        yield stream.event(dumps(rpc_error(
            stream.request_id, INTERNAL_ERROR,
            "interrupted: the call stopped when its stream's connection closed; call the "
            "tool again")))


def tool_definitions() -> list:
    return [tool.definition() for tool in TOOLS.values()]


# -- 2026-07-28: one self-contained POST per request -----------------------------------------

def modern_result(result: dict, cacheable: bool = False) -> dict:
    result = dict(result, resultType="complete")
    if cacheable:
        result.update(ttlMs=0, cacheScope="public")
    result["_meta"] = {SERVER_INFO_META: SERVER_INFO}
    return result


def modern_error(request_id, code: int, message: str, data=None) -> Response:
    return json_response(rpc_error(request_id, code, message, data),
                         MODERN_ERROR_STATUS.get(code, 200))


def unsupported_version(requested) -> Response | None:
    if requested in MODERN_VERSIONS:
        return None
    return http_error(400, UNSUPPORTED_PROTOCOL_VERSION, "Unsupported protocol version",
                      data={"supported": list(MODERN_VERSIONS), "requested": requested})


def decode_header_value(value):
    """The ``=?base64?...?=`` sentinel the SDK uses for values that are not plain ASCII."""
    if value is None or not (value.startswith("=?base64?") and value.endswith("?=")):
        return value
    try:
        return base64.b64decode(value[9:-2], validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None


def modern_endpoint(request):
    if request.method != "POST":
        return http_error(405, INVALID_REQUEST,
                          "Method Not Allowed: protocol 2026-07-28 is POST only",
                          headers=[("Allow", "POST")])
    problem = check_post_headers(request)
    if problem:
        return problem
    message, problem = parse_body(request)
    if problem:
        return problem
    headers = request.headers
    if "method" not in message:
        return http_error(400, INVALID_REQUEST,
                          "Invalid Request: a client sends requests or notifications only")
    if "id" not in message:  # a notification: nothing to act on in this era, acknowledged
        return unsupported_version(headers.get("mcp-protocol-version")) or Response(
            b"", status=202)
    request_id, method = message["id"], message["method"]
    params = message.get("params") or {}
    for name in ("mcp-protocol-version", "mcp-method", "mcp-name"):
        if len(headers.getall(name)) > 1:
            return modern_error(request_id, HEADER_MISMATCH, f"{name} header appears more "
                                                             "than once")
    meta = params.get("_meta")
    missing = [key for key in (PROTOCOL_VERSION_META, CLIENT_CAPABILITIES_META)
               if not isinstance(meta, dict) or key not in meta]
    if missing:
        return modern_error(request_id, INVALID_PARAMS,
                            "params._meta is missing the required envelope key(s): "
                            + ", ".join(missing))
    version = meta[PROTOCOL_VERSION_META]
    if headers.get("mcp-protocol-version") != version:
        return modern_error(request_id, HEADER_MISMATCH, "MCP-Protocol-Version header does "
                            "not match the request envelope's protocol version")
    if headers.get("mcp-method") != method:
        return modern_error(request_id, HEADER_MISMATCH,
                            "Mcp-Method header does not match the request body's method")
    if (method == "tools/call" and params.get("name") is not None
            and decode_header_value(headers.get("mcp-name")) != params.get("name")):
        return modern_error(request_id, HEADER_MISMATCH,
                            "Mcp-Name header does not match the request body's 'name'")
    rejected = unsupported_version(version)
    if rejected:
        return rejected

    if method == "server/discover":
        return json_response(rpc_result(request_id, modern_result({
            "supportedVersions": list(MODERN_VERSIONS), "capabilities": CAPABILITIES,
            "instructions": INSTRUCTIONS}, cacheable=True)))
    if method == "tools/list":
        return json_response(rpc_result(request_id, modern_result(
            {"tools": tool_definitions()}, cacheable=True)))
    if method == "tools/call":
        tool, arguments, token = tool_call_params(params)
        if tool is None:
            return modern_error(request_id, INVALID_PARAMS, arguments)
        return StreamResponse(tool_call_stream(StreamLog(request_id), request_id, tool,
                                               arguments, token, modern=True))
    return modern_error(request_id, METHOD_NOT_FOUND, f"Method not found: {method[:80]!r}")


# -- the simple form: GET /mcp/tools/execute -------------------------------------------------

@app.get("/mcp/tools/execute")
def execute(request):
    refused = origin_problem(request)
    if refused:
        raise HTTPError(403, refused)
    if request.last_event_id is not None:
        return Response(b"", status=204)  # EventSource: do not reconnect; nothing to resume
    query = request.query
    name = query.get("tool", "count_to")
    tool = TOOLS.get(name)
    if tool is None:
        raise HTTPError(400, f"unknown tool {name[:60]!r}; this server has "
                             + ", ".join(TOOLS))
    arguments = {}
    for key, value in query.items():
        if key == "tool":
            continue
        try:
            arguments[key] = int(value)
        except ValueError:
            arguments[key] = value
    checked = tool.validate(arguments)
    if isinstance(checked, str):
        raise HTTPError(400, checked)
    return execute_stream(tool, checked)


async def execute_stream(tool: Tool, arguments: dict):
    stream = StreamLog()
    started = time.monotonic()
    steps = 0
    events = tool.run(arguments)
    try:
        async for step in events:
            if isinstance(step, Progress):
                steps = step.step
                yield stream.event(dumps({
                    "tool": tool.name, "step": step.step, "total": step.total,
                    "percent": round(100 * step.step / step.total, 1),
                    "status": "running", "message": step.message}), event="tool_progress")
            else:
                yield stream.event(dumps({"tool": tool.name, "text": step.text,
                                          "result": step.structured,
                                          "is_error": step.is_error}), event="tool_result")
    finally:
        await close_nested(events)
    yield stream.event(dumps({"tool": tool.name, "status": "complete", "steps": steps,
                              "elapsed_ms": round((time.monotonic() - started) * 1000)}),
                       event="tool_complete")
