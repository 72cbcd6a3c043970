"""ASGI 3 applications (FastAPI, Starlette...) served by conduit's own HTTP/1.1 server.

    python -m conduit run main:app        # an ASGI app is recognised by its signature

Theory of operation
-------------------
1. ``is_asgi_app(obj)``: an ASGI 3 application is an async callable of three parameters
   ``(scope, receive, send)`` (a coroutine function, or an object whose ``__call__`` is
   one). ``ASGIApp(obj)`` adapts it to what the server calls: ``app(request, client)``
   returns an ``ASGICall`` for each request, and ``startup``/``shutdown`` run the
   ``lifespan`` protocol.
2. A request goes through conduit's strict parser and limits first (a malformed or
   oversized request never reaches the app). The connection then runs one ``ASGICycle``:
   the app as an asyncio Task with the ``http`` scope (asgiref's spec 2.4: method, path
   percent-decoded, raw_path, query_string, root_path, raw header pairs with lowercased
   names, client, server, scheme, http_version, and a shallow copy of the lifespan
   ``state``).
3. ``receive()``: first the request body, streamed as it arrives (as uvicorn does): the
   connection hands the cycle each piece the parser de-chunks (``body_piece``, then
   ``body_end``; conduit.server.connection rule 9), and ``receive()`` returns what has
   arrived since the last call as one ``http.request`` (``more_body`` true), waiting when
   nothing has; the last one has ``more_body`` false. A body that came with its head is
   one message, as before; a request without a body gets ``b""``, ``more_body`` false.
   - The body is bounded by ``max_streamed_body_bytes`` (default: none), not by
     ``max_body_bytes``; past it, a 413 (conduit's own routes keep their whole bodies and
     ``max_body_bytes``).
   - Flow control: above ``BODY_HIGH_WATER_BYTES`` (64 KiB) waiting for the app, the
     connection stops reading the socket; ``receive()`` taking them resumes it.
   - ``Expect: 100-continue``: the ``100 Continue`` goes out when the app first calls
     ``receive()`` with nothing of the body there yet (uvicorn's rule), so an app that
     answers without reading (a 401, a 413 of its own) never invites the body; such a
     response carries ``Connection: close``, since the client may then send the body or
     not.
   - The client goes away before the body is complete, or sends bad framing (a 400; the
     app's response is dropped): ``http.disconnect``. A body that was complete is
     delivered first.
   - An app that answers without reading its body is served as usual: the connection
     drops the rest (up to ``max_body_bytes`` more, else it closes) before the next
     request.
   After the body it waits, and returns ``http.disconnect`` once the response is complete
   or the client has gone away (EOF, reset): promptly, it is woken by the connection.
4. ``send()``: ``http.response.start`` is held until the first body message, so a
   response whose body comes in one message gets a ``Content-Length`` and goes out in one
   write. A response with the app's own ``Content-Length`` is sent as is; any other is
   chunked on HTTP/1.1 and close-delimited on HTTP/1.0. A HEAD response carries the head
   only. While the connection's outbox is above the high-water mark, ``send()`` waits
   until it drains to the low-water mark (backpressure, as for conduit's own streams).
   After the client has gone, ``send()`` returns at once and writes nothing (uvicorn does
   the same).
5. The app returns: a response not finished is cut (the connection is closed, since its
   framing cannot be completed); no response at all is a 500. The app raises: a 500 if
   nothing was sent, else the connection is cut; the error is logged either way.
6. Lifespan: at startup the app gets ``lifespan.startup`` in a Task that lives as long as
   the server; ``lifespan.startup.failed`` (or an error after the startup message) stops
   the server from starting (exit status 3). An app that raises before taking the startup
   message does not support lifespan: logged at info, and the server starts. At shutdown
   it gets ``lifespan.shutdown`` and has ``SHUTDOWN_SECONDS`` to answer.
7. conduit does not speak WebSocket: a ``websocket`` scope is never created. An upgrade
   request is served as plain HTTP (the app sees an ``http`` scope and typically answers
   404 or 400), never switched.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import re
from urllib.parse import unquote

from conduit.http.response import reason_phrase

log = logging.getLogger("conduit.server")

ASGI_VERSION = {"version": "3.0", "spec_version": "2.4"}
SHUTDOWN_SECONDS = 10.0
_NO_BODY_STATUSES = frozenset({204, 304})
# A response header from the app: a token for a name (RFC 9110 5.1), and no CR, LF or NUL
# in a value (what would let a value split the head: response splitting).
_field_name = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+").fullmatch
_bad_in_value = re.compile(rb"[\r\n\x00]").search
# PERF: the names an app sends are few; each is checked once (bounded, so an app that
# makes up names cannot grow it), and its lowercase kept for the framing checks.
_checked_names: dict = {}
_CHECKED_NAMES_MAX = 1024
_status_lines: dict = {}  # status -> b"HTTP/1.1 200 OK\r\n"


def _status_line(status: int) -> bytes:
    line = _status_lines.get(status)
    if line is None:
        line = b"HTTP/1.1 %d %s\r\n" % (status, reason_phrase(status).encode("latin-1"))
        _status_lines[status] = line
    return line


def _lower_checked(name: bytes) -> bytes:
    """The lowercase of a response header name, refusing a name that is not a token."""
    lower = _checked_names.get(name)
    if lower is None:
        if _field_name(name) is None:
            raise RuntimeError(f"invalid response header name {name!r}")
        lower = name.lower()
        if len(_checked_names) < _CHECKED_NAMES_MAX:
            _checked_names[name] = lower
    return lower


def is_asgi_app(obj) -> bool:
    """True for an ASGI 3 application: an async callable of (scope, receive, send)."""
    if inspect.isclass(obj) or not callable(obj):
        return False
    call = obj if inspect.isfunction(obj) or inspect.ismethod(obj) else obj.__call__
    while hasattr(call, "__wrapped__") and not inspect.iscoroutinefunction(call):
        call = call.__wrapped__
    if not inspect.iscoroutinefunction(call):
        return False
    try:
        params = [p for p in inspect.signature(call).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        return False
    return len(params) == 3


class ASGICall:
    """What ``ASGIApp`` answers for one request: the connection runs it (rule 2)."""

    __slots__ = ("app", "scope", "body")

    def __init__(self, app, scope: dict, body: bytes) -> None:
        self.app = app
        self.scope = scope
        self.body = body


def http_scope(request, client, server_address, root_path: str, state: dict,
               scheme: str = "http") -> dict:
    """The ``http`` scope of a parsed request (rule 2)."""
    target = request.target
    if not target.startswith("/"):  # absolute-form (a proxy's request) or "*"
        scheme_end = target.find("://")
        slash = target.find("/", scheme_end + 3) if scheme_end >= 0 else -1
        target = target[slash:] if slash >= 0 else "/"
    raw_path, _, query = target.partition("?")
    return {
        "type": "http",
        "asgi": ASGI_VERSION,
        "http_version": request.version,
        "method": request.method,
        "scheme": scheme,
        "path": unquote(raw_path),
        "raw_path": raw_path.encode("latin-1"),
        "query_string": query.encode("latin-1"),
        "root_path": root_path,
        "headers": list(request.headers),
        "client": tuple(client),
        "server": tuple(server_address),
        "state": dict(state),
    }


class ASGIApp:
    """An ASGI 3 application as a conduit server application (rule 1).

    ``root_path``: the prefix the app is mounted at (``scope["root_path"]``).
    """

    def __init__(self, app, root_path: str = "") -> None:
        if not is_asgi_app(app):
            raise TypeError(f"{app!r} is not an ASGI 3 application "
                            "(an async callable of scope, receive, send)")
        self.app = app
        self.root_path = root_path
        self.state: dict = {}
        self.server = None
        self._lifespan: _Lifespan | None = None

    # For the server (conduit.server.connection rule 9): every request's body is streamed.
    may_stream_bodies = True

    def streams_body(self, request) -> bool:
        return True

    def __call__(self, request, client) -> ASGICall:
        server = self.server
        if server is None:
            address, scheme = ("", 0), "http"
        else:
            address, scheme = server.address, server.scheme
        return ASGICall(self.app, http_scope(request, client, address, self.root_path,
                                             self.state, scheme), request.body)

    # -- lifespan (rule 6) -------------------------------------------------------------
    def startup(self, loop, server=None):
        self.server = server
        self._lifespan = _Lifespan(self.app, self.state)
        return self._lifespan.startup()

    def shutdown(self):
        lifespan, self._lifespan = self._lifespan, None
        return lifespan.shutdown() if lifespan is not None else None


class LifespanFailed(RuntimeError):
    """The app refused to start (``lifespan.startup.failed``, or an error in startup)."""


class _Lifespan:
    def __init__(self, app, state: dict) -> None:
        self.app = app
        self.state = state
        self.task: asyncio.Task | None = None
        self.inbox: asyncio.Queue | None = None
        self.supported = True
        self.started: asyncio.Future | None = None
        self.stopped: asyncio.Future | None = None
        self.startup_taken = False

    async def startup(self) -> None:
        loop = asyncio.get_running_loop()
        self.inbox = asyncio.Queue()
        self.started = loop.create_future()
        self.stopped = loop.create_future()
        self.inbox.put_nowait({"type": "lifespan.startup"})
        scope = {"type": "lifespan", "asgi": ASGI_VERSION, "state": self.state}
        self.task = loop.create_task(self._run(scope))
        await self.started  # raises LifespanFailed

    async def _run(self, scope) -> None:
        try:
            await self.app(scope, self._receive, self._send)
        except BaseException as exc:
            if not self.startup_taken or (self.started is not None
                                          and not self.started.done() and
                                          isinstance(exc, asyncio.CancelledError)):
                self.supported = False
                log.info("ASGI 'lifespan' protocol appears unsupported (%s: %s)",
                         type(exc).__name__, exc)
                self._resolve(self.started, None)
            elif self.started is not None and not self.started.done():
                self._fail(self.started, f"the application's startup raised "
                           f"{type(exc).__name__}: {exc}")
            else:
                log.error("ASGI lifespan raised", exc_info=exc)
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
        finally:
            self._resolve(self.started, None)
            self._resolve(self.stopped, None)

    async def _receive(self) -> dict:
        assert self.inbox is not None
        message = await self.inbox.get()
        if message["type"] == "lifespan.startup":
            self.startup_taken = True
        return message

    async def _send(self, message: dict) -> None:
        kind = message.get("type")
        if kind == "lifespan.startup.complete":
            self._resolve(self.started, None)
        elif kind == "lifespan.startup.failed":
            self._fail(self.started, message.get("message") or "lifespan.startup.failed")
        elif kind == "lifespan.shutdown.complete":
            self._resolve(self.stopped, None)
        elif kind == "lifespan.shutdown.failed":
            log.error("application shutdown failed: %s", message.get("message", ""))
            self._resolve(self.stopped, None)
        else:
            raise RuntimeError(f"unexpected ASGI lifespan message {kind!r}")

    @staticmethod
    def _resolve(future, value) -> None:
        if future is not None and not future.done():
            future.set_result(value)

    @staticmethod
    def _fail(future, why: str) -> None:
        if future is not None and not future.done():
            future.set_exception(LifespanFailed(why))

    async def shutdown(self) -> None:
        if not self.supported or self.task is None or self.task.done():
            return
        assert self.inbox is not None and self.stopped is not None
        self.inbox.put_nowait({"type": "lifespan.shutdown"})
        try:
            await asyncio.wait_for(asyncio.shield(self.stopped), SHUTDOWN_SECONDS)
        except asyncio.TimeoutError:
            log.warning("the application's shutdown did not finish in %.0f s",
                        SHUTDOWN_SECONDS)
        if not self.task.done():
            self.task.cancel()


class _Ready:
    """An awaitable that completes at once, with None (``await _READY``)."""

    __slots__ = ()

    def __await__(self):
        return iter(())


_READY = _Ready()


class ASGICycle:
    """One request/response exchange with an ASGI app, on one connection (rules 3-5).

    The connection calls ``start()``, then ``pause()``/``resume()`` from the transport's
    watermarks and ``disconnected()`` when the client goes away; the cycle calls the
    connection's ``asgi_done(keep_alive)`` once the response is complete (or cut).
    """

    __slots__ = ("conn", "call", "transport", "head_only", "version", "task",
                 "_body_sent", "_start", "_head_sent", "_chunked", "_length", "_sent",
                 "_finished", "_gone", "_paused", "_drained", "_done_waiter",
                 "_close_after", "streamed", "_pieces", "body_buffered", "_body_complete",
                 "expect_continue", "_streaming")

    def __init__(self, conn, call: ASGICall, head_only: bool, streamed: bool = False) -> None:
        self.conn = conn
        self.call = call
        self.transport = conn.transport
        self.head_only = head_only
        self.version = call.scope["http_version"]
        self.task: asyncio.Task | None = None
        self._body_sent = False  # the request body went to the app
        self._start: dict | None = None  # http.response.start, held until the body
        self._head_sent = False
        self._chunked = False
        self._length: int | None = None  # the app's Content-Length, when it gave one
        self._sent = 0  # body bytes sent
        self._finished = False  # the response is complete (or cut)
        self._gone = False  # the client went away
        self._paused = False
        self._drained: asyncio.Future | None = None
        self._done_waiter: asyncio.Future | None = None
        self._close_after = False
        # a chunked body in progress to a client still there: send()'s fast path
        self._streaming = False
        # A streamed body (rule 3): the pieces not yet received, their size, whether the
        # last has come, and whether the client waits for 100 Continue.
        self.streamed = streamed
        self._pieces: list = []
        self.body_buffered = 0
        self._body_complete = not streamed
        self.expect_continue = False

    def start(self, driver) -> None:
        call = self.call
        self.task = driver.create_task(call.app(call.scope, self.receive, self.send))
        self.task.add_done_callback(self._app_returned)

    # -- from the connection -----------------------------------------------------------
    def pause(self) -> None:
        self._paused = True

    def resume(self) -> None:
        self._paused = False
        waiter, self._drained = self._drained, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def disconnected(self) -> None:
        if self._gone:
            return
        self._gone = True
        self._streaming = False
        self.resume()  # a send() waiting on backpressure returns (and writes nothing)
        self._wake_receive()

    def body_piece(self, piece: bytes) -> None:
        self._pieces.append(piece)
        self.body_buffered += len(piece)
        self.expect_continue = False  # the client is sending: no 100 needed
        self._wake_receive()

    def body_end(self) -> None:
        self._body_complete = True
        self.expect_continue = False
        self._wake_receive()

    @property
    def head_sent(self) -> bool:
        return self._head_sent

    # -- the app's side (rules 3-4) ------------------------------------------------------
    async def receive(self) -> dict:
        if not self._body_sent:
            if self.streamed:
                return await self._receive_body()
            self._body_sent = True
            return {"type": "http.request", "body": self.call.body, "more_body": False}
        if not (self._finished or self._gone):
            waiter = self._done_waiter = asyncio.get_running_loop().create_future()
            try:
                await waiter
            finally:
                self._done_waiter = None
        return {"type": "http.disconnect"}

    async def _receive_body(self) -> dict:
        while True:
            if self._finished or (self._gone and not self._body_complete):
                self._body_sent = True  # the rest of the body will never be received
                return {"type": "http.disconnect"}
            if self._pieces:
                pieces = self._pieces
                body = pieces[0] if len(pieces) == 1 else b"".join(pieces)
                pieces.clear()
                self.body_buffered = 0
                more = not self._body_complete
                self._body_sent = not more
                self.conn.body_taken()
                return {"type": "http.request", "body": body, "more_body": more}
            if self._body_complete:
                self._body_sent = True
                return {"type": "http.request", "body": b"", "more_body": False}
            if self.expect_continue:
                self.expect_continue = False
                self.conn.send_continue()
            waiter = self._done_waiter = asyncio.get_running_loop().create_future()
            try:
                await waiter
            finally:
                self._done_waiter = None

    def _wake_receive(self) -> None:
        waiter = self._done_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def send(self, message: dict):
        """The ASGI ``send``. PERF: a plain method returning an awaitable: with no
        backpressure to wait for, that is ``_READY``, which completes at once, so a body
        message costs no coroutine object (an EventSourceResponse sends one per event)."""
        if self._streaming and message.get("more_body") is True \
                and message.get("type") == "http.response.body":
            # PERF: the common message of a streamed response (an event), checked as the
            # general path below would, in fewer steps: a chunk of a chunked body.
            body = message.get("body", b"")
            if type(body) is bytes:
                if body:
                    self.transport.writelines((b"%x\r\n" % len(body), body, b"\r\n"))
                if self._paused:
                    waiter = self._drained = asyncio.get_running_loop().create_future()
                    return waiter
                return _READY
        kind = message.get("type")
        if kind == "http.response.start":
            if self._start is not None or self._finished:
                raise RuntimeError("http.response.start sent twice")
            status = message.get("status")
            if type(status) is not int or not 100 <= status <= 999:
                raise RuntimeError(f"http.response.start with a bad status {status!r}")
            self._start = message
            return _READY
        if kind != "http.response.body":
            raise RuntimeError(f"unexpected ASGI message {kind!r} on an http scope")
        if self._start is None:
            raise RuntimeError("http.response.body before http.response.start")
        if self._finished:
            if self._gone:
                return _READY
            raise RuntimeError("http.response.body after the response was complete")
        body = message.get("body", b"")
        if not isinstance(body, (bytes, bytearray, memoryview)):
            raise RuntimeError(f"http.response.body with a non-bytes body: {type(body)!r}")
        more = bool(message.get("more_body", False))
        if self._gone:
            return _READY
        if self._length is not None or not self._head_sent:
            self._sent += len(body)
        if not self._head_sent:
            self._write_head(body, more)
        else:
            self._write_body(body)
        if self._length is not None and self._sent > self._length:
            self._close_after = True
            raise RuntimeError(f"response body longer than its Content-Length "
                               f"({self._sent} > {self._length})")
        if not more:
            self._finish_response()
            return _READY
        if self._paused and not self._gone:
            waiter = self._drained = asyncio.get_running_loop().create_future()
            return waiter  # a future is awaitable: send() returns once the outbox drained
        return _READY

    # -- writing -------------------------------------------------------------------------
    def _write_head(self, body, more: bool) -> None:
        start = self._start
        assert start is not None
        status = start["status"]
        lines = [_status_line(status)]
        length = None
        transfer = False
        keep_alive = self.conn.keep_alive and not self.conn.server.draining
        if self.expect_continue:
            # rule 3: the client waits for 100 Continue and gets this instead: it may send
            # the body now or never, so nothing after this response can be framed safely.
            self.expect_continue = False
            keep_alive = False
        for name, value in start.get("headers", ()):
            if type(name) is not bytes:
                name = bytes(name)
            if type(value) is not bytes:
                value = bytes(value)
            lower = _lower_checked(name)
            if _bad_in_value(value) is not None:
                raise RuntimeError(f"invalid response header {name!r}: {value!r}")
            if lower == b"content-length":
                if not value.isdigit():
                    raise RuntimeError(f"invalid Content-Length {value!r}")
                length = int(value)
            elif lower == b"transfer-encoding":
                transfer = True
            elif lower == b"connection":
                if value.lower() == b"close":
                    keep_alive = False
                continue  # the server's to set (below)
            lines += (name, b": ", value, b"\r\n")  # one copy, in the join below
        no_body = status in _NO_BODY_STATUSES or status < 200
        if no_body:
            pass
        elif length is not None:
            self._length = length
        elif transfer:
            # the app frames its body itself: nothing else can delimit it but the close
            keep_alive = False
        elif not more:
            lines.append(b"Content-Length: %d\r\n" % len(body))
        elif self.version == "1.1":
            lines.append(b"Transfer-Encoding: chunked\r\n")
            self._chunked = True
            self._streaming = not self.head_only
        else:
            keep_alive = False  # HTTP/1.0 without a length: the close ends the body
        if not keep_alive:
            lines.append(b"Connection: close\r\n")
            self._close_after = True
        elif self.version == "1.0":
            lines.append(b"Connection: keep-alive\r\n")
        lines.append(b"\r\n")
        self._head_sent = True
        self.conn.asgi_started(status)
        head = b"".join(lines)
        if self.head_only or no_body or not body:
            self.transport.write(head)
            return
        if self._chunked:
            self.transport.writelines((head, b"%x\r\n" % len(body), body, b"\r\n"))
        else:
            self.transport.writelines((head, body))

    def _write_body(self, body) -> None:
        if self.head_only or not body:
            return
        if self._chunked:
            self.transport.writelines((b"%x\r\n" % len(body), body, b"\r\n"))
        else:
            self.transport.write(body)

    def _finish_response(self) -> None:
        if self._chunked and not self.head_only:
            self.transport.write(b"0\r\n\r\n")
        if self._length is not None and self._sent < self._length and not self.head_only:
            log.error("ASGI response shorter than its Content-Length (%d < %d) for %s %s: "
                      "closing the connection", self._sent, self._length,
                      self.call.scope["method"], self.conn.logged_target())
            self._close_after = True
        self._finished = True
        self._streaming = False
        self._wake_receive()
        self.conn.asgi_done(not self._close_after)

    # -- the app returned or raised (rule 5) ---------------------------------------------
    def _app_returned(self, task: asyncio.Task) -> None:
        if task.cancelled():
            error: BaseException | None = None
            if not self._finished:
                log.error("ASGI application was cancelled before its response was complete")
        else:
            error = task.exception()
        if error is not None:
            scope = self.call.scope
            log.error("ASGI application error for %s %s", scope["method"],
                      self.conn.logged_target(), exc_info=error)
        if self._finished:
            return
        if self._gone:
            self._finished = True
            self._streaming = False
            self.conn.asgi_done(False)
            return
        if not self._head_sent:
            # nothing on the wire yet: a 500 (whatever start the app may have held)
            if error is None:
                log.error("ASGI application returned without a complete response for "
                          "%s %s", self.call.scope["method"], self.conn.logged_target())
            body = b"Internal Server Error"
            self._start = {"type": "http.response.start", "status": 500, "headers": [
                (b"content-type", b"text/plain; charset=utf-8")]}
            self._write_head(body, False)
            self._finish_response()
            return
        # A response in progress cannot be completed: what was sent goes out, then the
        # connection closes without the end of the body (the client sees it cut short).
        self._finished = True
        self._streaming = False
        self.conn.asgi_done(False)
