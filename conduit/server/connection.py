"""One client connection: where the parser (conduit.http) meets the transport (conduit.net).

Theory of operation
-------------------
1. Bytes from the transport go into the connection's ``RequestParser``. While no request is
   in progress, complete requests are taken from it one at a time and dispatched to the
   application callable, which returns a ``Response``, a ``StreamResponse`` or a coroutine
   that resolves to one of them (run as an asyncio Task on the loop's driver).
2. Responses go out in request order: the next pipelined request is taken only when the
   previous response is complete. While a request is in progress the parser keeps
   buffering; past ``max_buffered_bytes`` reading is paused.
3. A ``StreamResponse`` is handed to a ``Stream`` pump (``_pump``). Its producer is paused
   and resumed by the transport's watermarks, through ``pause_writing``/``resume_writing``.
4. A protocol error is answered with its status and ``Connection: close``, logged with the
   client address, and the connection closes; other connections are not affected.
5. EOF from the client while a stream is open means the client went away: the stream is
   cancelled at once (the handler's ``finally`` runs) and everything is released. EOF
   between requests closes after pending responses; a half-closed client still gets the
   responses to requests it completed.
6. ``connection_lost`` (reset, write error, close) cancels whatever is in progress and
   removes the connection from the server's registry. Nothing outlives it.
7. Write timeout: ``pause_writing`` (the outbox went above the high-water mark) notes the
   time and the outbox size; ``resume_writing`` clears it. The server's once-a-second sweep
   (``timed_out``) aborts a connection whose outbox has not shrunk for
   ``write_timeout_seconds``: its client stopped reading. Nothing is done per event.
8. Drain (server shutdown): ``send_retry`` writes a ``retry:`` field line into an open
   stream (between whole chunks) just before ``drain`` ends it cleanly; the server decides
   when (in waves, see ``conduit.server.server``).
9. Streamed request bodies (an ASGI app's; conduit.server.asgi rule 3). When the app says
   some requests may go to an ASGI app (``may_stream_bodies``), the parser runs head first
   (``conduit.http._parser_py`` rules 6-10): a request with a body comes out at the end of
   its head, and ``app.streams_body(head)`` decides. False (conduit's own routes): the
   body is read whole, as always. True: ``stream_body()`` (413 at once if the declared
   length is over ``max_streamed_body_bytes``), the request is dispatched at once, and
   every piece the parser yields goes to the ASGI cycle (``_pump_body``), as it arrives.
   a. Flow control: while more than ``BODY_HIGH_WATER_BYTES`` of body wait for the app's
      ``receive()``, reading is paused; the app taking them resumes it. So an upload
      costs at most about that much memory (plus one read), whatever its size.
   b. A bad piece of framing (or the limit, or EOF) mid-body: the app gets
      ``http.disconnect``; the client gets the 400/413 and the close if the app's
      response has not started, else just the close.
   c. The request timeout still runs from the request's first byte until its body is
      complete (a 408 as in rule 4 when nothing was answered yet), except while reading
      is paused for the app: that time is the app's, not the client's.
   d. The response is complete before the body (the app did not read it all): the rest
      is read and dropped, up to ``max_body_bytes`` more, then the next request is
      served; past that, or without keep-alive, the connection is closed.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING
from urllib.parse import unquote_plus

from conduit.errors import ProtocolError
from conduit.http.parser import ParsedRequest, RequestParser
from conduit.http.response import Response, StreamResponse, build_head
from conduit.server import hub as _hub
from conduit.server import pump as _pump
from conduit.server.asgi import ASGICall, ASGICycle

if TYPE_CHECKING:
    from conduit.net.loop import Transport

log = logging.getLogger("conduit.server")
access_log = logging.getLogger("conduit.access")

CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
MAX_BUFFERED_BYTES = 1024 * 1024
# A streamed request body waiting for the app's receive() beyond this: reading pauses
# (rule 9a; uvicorn's HIGH_WATER_LIMIT for the same thing).
BODY_HIGH_WATER_BYTES = 64 * 1024
_NO_BODY_STATUSES = frozenset({204, 304})
# Query parameters whose values never reach a log line (an app may name more, see
# ``redact_target``): RFC 6750's name for a bearer token in a URL.
SECRET_QUERY_PARAMS = frozenset({"access_token"})


def redact_target(target: str, names=SECRET_QUERY_PARAMS) -> str:
    """``target`` with the values of the query parameters in ``names`` replaced by
    ``[redacted]``; names are compared percent-decoded, as the app reads them.

    >>> redact_target("/events?topic=a&access_token=s3cret")
    '/events?topic=a&access_token=[redacted]'
    """
    path, sep, query = target.partition("?")
    if not sep or not names:
        return target
    parts = query.split("&")
    changed = False
    for index, part in enumerate(parts):
        name, _, value = part.partition("=")
        if "%" in name or "+" in name:
            name = unquote_plus(name)
        if name in names and value:
            parts[index] = part[:part.index("=")] + "=[redacted]"
            changed = True
    return f"{path}?{'&'.join(parts)}" if changed else target


class HTTPConnection:
    """The protocol object attached to one transport."""

    __slots__ = (
        "server", "loop", "transport", "parser", "client", "busy", "closed", "eof",
        "request", "stream", "task", "keep_alive", "request_started", "last_active",
        "buffered", "_processing", "paused_since", "paused_size", "asgi",
        "head_first", "streaming", "body_clock", "read_paused_at", "drain_left",
    )

    def __init__(self, server) -> None:
        self.server = server
        self.loop = server.loop
        # NOTE: None only until connection_made, which the transport calls before any other
        # callback (the protocol contract): typed as what every method sees, as uvicorn does.
        self.transport: Transport = None  # type: ignore[assignment]
        # rule 9: read heads first when some request's body may be streamed to an ASGI app
        self.head_first = bool(getattr(server.app, "may_stream_bodies", False))
        self.parser = RequestParser(**server.config.parser_limits(), head_first=self.head_first)
        self.client = ("", 0)
        self.busy = False
        self.closed = False
        self.eof = False
        self.request: ParsedRequest | None = None  # the request being answered
        self.stream: _pump.Stream | _hub.Subscriber | None = None
        self.task: asyncio.Task | None = None
        self.keep_alive = True
        self.request_started = 0.0  # first byte of the request being read, else 0
        self.last_active = 0.0
        self.buffered = 0
        self._processing = False
        self.paused_since = 0.0  # when the outbox went above high water (0: it is not)
        self.paused_size = 0  # the smallest outbox size seen since (progress resets the clock)
        self.asgi: ASGICycle | None = None  # the ASGI exchange in progress (conduit.server.asgi)
        self.streaming = False  # a streamed request body is still arriving (rule 9)
        self.body_clock = 0.0  # its request's first byte (the request timeout, rule 9c)
        self.read_paused_at = 0.0  # when reading was paused for the app (rule 9a), else 0
        self.drain_left = -1  # >= 0: the response is done; drop at most this much more (9d)

    # -- transport callbacks -----------------------------------------------------------
    def connection_made(self, transport) -> None:
        self.transport = transport
        self.client = transport.peer
        self.last_active = self.loop.time()
        self.server.connection_opened(self)

    def data_received(self, data: bytes) -> None:
        now = self.loop.time()
        self.last_active = now
        if self.streaming:  # the body of the request in progress (rule 9)
            self.parser.feed(data)
            self._pump_body()
            return
        if self.busy:
            self.buffered += len(data)
            if self.buffered > MAX_BUFFERED_BYTES:
                self.transport.pause_reading()
        elif not self.request_started:
            self.request_started = now  # the first byte of a request: its timeout starts
        self.parser.feed(data)
        if not self.busy:
            self._process()

    def eof_received(self) -> None:
        self.eof = True
        self.parser.feed(b"")
        if self.streaming:
            self._pump_body()  # the body is cut short: a 400 and http.disconnect (rule 9b)
            return
        if self.asgi is not None:
            # The client went away (uvicorn's reading of EOF too): the app gets
            # http.disconnect, and what it still sends is dropped.
            self.asgi.disconnected()
            self.transport.close()
        elif self.stream is not None:
            # The client went away: cancel the stream now (its finally runs).
            self._cancel_work()
            self.transport.abort()
        elif not self.busy:
            self._process()

    def pause_writing(self) -> None:
        # The write timeout's clock (checked by the server's sweep, rule 7): no per-event work.
        self.paused_since = self.loop.time()
        self.paused_size = self.transport.get_write_buffer_size()
        if self.stream is not None:
            self.stream.pause()
        elif self.asgi is not None:
            self.asgi.pause()

    def resume_writing(self) -> None:
        self.paused_since = 0.0
        if self.stream is not None:
            self.stream.resume()
        elif self.asgi is not None:
            self.asgi.resume()

    def connection_lost(self, exc) -> None:
        if self.closed:
            return
        self.closed = True
        self._cancel_work()
        self.server.connection_closed(self)

    # -- requests ----------------------------------------------------------------------
    def _process(self) -> None:
        """Take and dispatch complete requests until one is in progress."""
        if self._processing:
            return
        self._processing = True
        try:
            while not self.busy and not self.closed and not self.transport.is_closing():
                try:
                    request = self.parser.next_request()
                    if (request is not None and self.head_first
                            and self.parser.body_pending()):  # rule 9: stream or read whole
                        if self.server.app.streams_body(request):
                            self.parser.stream_body()
                            self._dispatch_streamed(request)
                            continue
                        self.parser.buffer_body()
                        continue
                except ProtocolError as exc:
                    self._reject(exc)
                    return
                if request is None:
                    if self.parser.needs_continue():
                        self.transport.write(CONTINUE)
                    if self.eof:
                        self.transport.close()
                    elif self.parser.has_partial():
                        # part of a next request is here (pipelined, or it came while
                        # busy): the request timeout runs from now
                        if not self.request_started:
                            self.request_started = self.loop.time()
                    else:
                        self.request_started = 0.0
                    return
                self._dispatch(request)
        finally:
            self._processing = False

    def _dispatch(self, request) -> None:
        self.server.requests += 1
        self.busy = True
        self.request = request
        self.request_started = 0.0
        self.buffered = 0
        self.keep_alive = request.keep_alive and not self.server.draining
        try:
            result = self.server.app(request, self.client)
        except Exception:
            log.exception("application error for %s %s", request.method,
                          self._logged_target(request))
            result = Response({"error": "internal server error"}, status=500)
        self._handle_result(result)

    def _dispatch_streamed(self, request) -> None:
        """Dispatch a request whose body is still to come, then feed it what is here."""
        self.streaming = True
        self.body_clock = self.request_started or self.loop.time()
        self.drain_left = -1
        expect_continue = self.parser.needs_continue()  # the cycle sends it (asgi rule 3)
        self._dispatch(request)
        cycle = self.asgi
        if cycle is not None and cycle.streamed:
            cycle.expect_continue = expect_continue
        if self.streaming and not self.closed:
            self._pump_body()

    def _pump_body(self) -> None:
        """Hand the streamed body's pieces that have arrived to the app (rule 9)."""
        parser = self.parser
        while True:
            try:
                piece = parser.next_body()
            except ProtocolError as exc:
                self._body_failed(exc)
                return
            if piece is None:
                break
            if not piece:
                self._body_complete()
                return
            cycle = self.asgi
            if self.drain_left >= 0 or cycle is None:
                # rule 9d: the response is done (or there is no cycle): dropped, within limits
                self.drain_left -= len(piece)
                if self.drain_left < 0:
                    self._close_after_response("the rest of an unread request body is larger "
                                               "than max_body_bytes")
                    return
                continue
            cycle.body_piece(piece)
        cycle = self.asgi
        if (cycle is not None and not self.read_paused_at
                and cycle.body_buffered > BODY_HIGH_WATER_BYTES):
            self.read_paused_at = self.loop.time()  # rule 9a (and 9c: the clock stops)
            self.transport.pause_reading()

    def body_taken(self) -> None:
        """The ASGI app took the body buffered for it: read on (rule 9a)."""
        if self.read_paused_at:
            self.body_clock += self.loop.time() - self.read_paused_at
            self.read_paused_at = 0.0
            if not self.eof:
                self.transport.resume_reading()

    def send_continue(self) -> None:
        """The ASGI app wants its body and the client waits for ``100 Continue``."""
        self.transport.write(CONTINUE)

    def _body_complete(self) -> None:
        self.streaming = False
        self.body_clock = 0.0
        self.body_taken()  # what comes next is the next request's (bounded as in rule 2)
        if self.drain_left >= 0:  # rule 9d: the response was done first: on to the next
            self.drain_left = -1
            self._request_done()
            return
        if self.asgi is not None:
            self.asgi.body_end()

    def _body_failed(self, exc: ProtocolError) -> None:
        """Rule 9b: the streamed body is refused (bad framing, a limit, EOF, the timeout)."""
        self.streaming = False
        cycle = self.asgi
        if cycle is not None:
            cycle.disconnected()
        if (cycle is not None and cycle.head_sent) or self.drain_left >= 0:
            # a response is on the wire: no other can follow; the close says it
            self.drain_left = -1
            self._close_after_response(f"{exc.reason} (would answer {exc.status})")
            return
        if exc.status == 408:
            log.info("%s:%d - %s; closing", self.client[0], self.client[1], exc.reason)
            self.server.count_error(408)
            body = b"request timeout\n"
            self.transport.writelines((build_head(
                408, [("Content-Type", "text/plain; charset=utf-8")], "1.1",
                (("Content-Length", str(len(body))), ("Connection", "close"))), body))
            self.transport.close()
            return
        self._reject(exc)

    def _close_after_response(self, why: str) -> None:
        log.info("%s:%d - %s; closing the connection", self.client[0], self.client[1], why)
        self.streaming = False
        self.keep_alive = False
        self.transport.close()

    def _handle_result(self, result) -> None:
        if type(result) is Response:
            self._send_response(result)
        elif type(result) is StreamResponse:
            self._start_stream(result)
        elif type(result) is ASGICall:
            self._start_asgi(result)
        elif hasattr(result, "send") and hasattr(result, "throw"):  # a coroutine
            task = self.task = self.loop.driver.create_task(result)
            task.add_done_callback(self._task_done)
        else:
            log.error("application returned %r, not a Response", result)
            self._send_response(Response({"error": "internal server error"}, status=500))

    def _task_done(self, task: asyncio.Task) -> None:
        if task is not self.task:  # cancelled: the connection went away (_cancel_work)
            return
        self.task = None
        # (cancelled here means the handler's own code raised CancelledError: a bug)
        exc = asyncio.CancelledError() if task.cancelled() else task.exception()
        value = task.result() if exc is None else None
        if self.closed:
            return
        if exc is not None:
            request = self.request
            assert request is not None  # the task answers the request in progress
            log.error("application error for %s %s", request.method,
                      self._logged_target(request), exc_info=exc)
            value = Response({"error": "internal server error"}, status=500)
        self._handle_result(value)

    def _framing(self, extra) -> tuple:
        assert self.request is not None  # called while answering it
        version = self.request.version
        if self.server.draining:
            self.keep_alive = False  # a drain began while this request was in progress
        if not self.keep_alive:
            return extra + (("Connection", "close"),)
        if version == "1.0":
            return extra + (("Connection", "keep-alive"),)
        return extra

    def _send_response(self, response: Response) -> None:
        request = self.request
        assert request is not None  # a response answers the request in progress
        status = response.status
        body = response.body
        if status in _NO_BODY_STATUSES or status < 200:
            framing = self._framing(())
            body = b""
        else:
            framing = self._framing((("Content-Length", str(len(body))),))
        head = build_head(status, response.headers, "1.1", framing)
        if request.method == "HEAD" or not body:
            self.transport.write(head)
        else:
            self.transport.writelines((head, body))
        self._log_access(status)
        self._request_done()

    # -- ASGI (conduit.server.asgi) -------------------------------------------------------
    def _start_asgi(self, call: ASGICall) -> None:
        assert self.request is not None
        cycle = self.asgi = ASGICycle(self, call, self.request.method == "HEAD",
                                      streamed=self.streaming)
        cycle.start(self.loop.driver)

    def asgi_started(self, status: int) -> None:
        """The ASGI app's response head is going out: the access log line."""
        self._log_access(status)

    def asgi_done(self, keep_alive: bool) -> None:
        """The ASGI response is complete (or was cut): on to the next request."""
        self.asgi = None
        if self.closed:
            return
        if not keep_alive:
            self.keep_alive = False
        self._request_done()

    def logged_target(self) -> str:
        return self._logged_target(self.request) if self.request is not None else "-"

    def _start_stream(self, response: StreamResponse) -> None:
        request = self.request
        assert request is not None  # a response answers the request in progress
        chunked = request.version == "1.1"
        if not chunked:
            self.keep_alive = False  # HTTP/1.0: the stream ends when the connection does
            framing = (("Connection", "close"),)
        else:
            framing = self._framing((("Transfer-Encoding", "chunked"),))
        self.transport.write(build_head(response.status, response.headers, "1.1", framing))
        self._log_access(response.status)
        source = response.source
        # NOTE: a stream may live for hours; keep nothing of its request (its head and
        # headers are ~1 KiB per connection) beyond what was logged.
        self.request = None
        if type(source) is _hub.Subscription:
            self._start_subscription(source, chunked, request.method == "HEAD")
            return
        stream = _pump.Stream(
            self.loop, self.transport, response.source, chunked,
            self.server.config.high_water_bytes, self._stream_ended,
        )
        stream.on_close = response.on_close
        if request.method == "HEAD":
            stream.cancel()  # a HEAD response has no body, not even the last chunk
            self._close_stream(stream)
            self._request_done()
            return
        self.stream = stream
        self.server.streams.add(self)
        stream.start()

    def _start_subscription(self, source, chunked: bool, head_only: bool) -> None:
        if head_only:
            self._request_done()
            return
        subscriber = _hub.Subscriber(self.loop, self.transport, chunked, source.cursors,
                                     source.budget)
        self.stream = subscriber
        self.server.streams.add(self)
        subscriber.start(source.prelude)  # registered first, then the comment: no gap

    def _stream_ended(self, exc) -> None:
        stream = self.stream
        self.stream = None
        self.server.streams.discard(self)
        self._close_stream(stream)
        if exc is not None:
            self.keep_alive = False
        self._request_done()

    def _close_stream(self, stream) -> None:
        self.server.events_sent_by_closed_streams += stream.events_sent
        on_close = getattr(stream, "on_close", None)
        if on_close is not None:
            stream.on_close = None
            try:
                on_close()
            except Exception:
                log.exception("error in a stream's on_close callback")

    def _request_done(self) -> None:
        if self.streaming:
            # Rule 9d: the response is complete before its request's body was.
            if not self.keep_alive or self.server.draining:
                self._close_after_response("response complete before its request body")
                return
            if self.drain_left < 0:
                self.drain_left = self.parser.max_body_bytes
                self.body_taken()
                self._pump_body()  # what is here already; the rest as it comes
            return
        self.busy = False
        self.request = None
        self.transport.resume_reading()
        if not self.keep_alive or self.server.draining:
            self.transport.close()
            return
        self.last_active = self.loop.time()
        self._process()

    def _reject(self, exc: ProtocolError) -> None:
        peer = f"{self.client[0]}:{self.client[1]}"
        log.warning("%s - bad request: %s (answered %d)", peer, exc.reason, exc.status)
        self.server.count_error(exc.status)
        body = f"{exc.reason}\n".encode("utf-8", "replace")
        head = build_head(
            exc.status,
            [("Content-Type", "text/plain; charset=utf-8")],
            "1.1",
            (("Content-Length", str(len(body))), ("Connection", "close")),
        )
        self.transport.writelines((head, body))
        self.transport.close()

    def _log_access(self, status: int) -> None:
        if status >= 400:
            self.server.count_error(status)  # every 4xx/5xx a handler answers, too
        if self.server.config.access_log:
            request = self.request
            assert request is not None  # logged before a stream lets go of it
            access_log.info('%s:%d - "%s %s HTTP/%s" %d', self.client[0], self.client[1],
                            request.method, self._logged_target(request), request.version,
                            status)

    def _logged_target(self, request) -> str:
        # Tokens travel in query parameters (EventSource cannot send headers): never log them.
        names = getattr(self.server.app, "secret_query_params", SECRET_QUERY_PARAMS)
        return redact_target(request.target, names)

    # -- server housekeeping -----------------------------------------------------------
    def _cancel_work(self) -> None:
        if self.asgi is not None:
            # Not cancelled: an ASGI app learns of the disconnect from receive() and
            # ends by itself, as the spec expects (its sends are dropped meanwhile).
            self.asgi.disconnected()
        if self.task is not None:
            self.task.cancel()
            self.task = None
        stream = self.stream
        if stream is not None:
            self.stream = None
            self.server.streams.discard(self)
            stream.cancel()
            self._close_stream(stream)

    def timed_out(self, now: float) -> bool:
        """Close if the client stopped reading, a request is too slow to arrive or the
        connection idles too long."""
        config = self.server.config
        if self.closed:
            return False
        if self.paused_since and config.write_timeout_seconds:
            size = self.transport.get_write_buffer_size()
            if size < self.paused_size:  # the client read something: progress
                self.paused_since = now
                self.paused_size = size
            elif now - self.paused_since > config.write_timeout_seconds:
                log.warning("%s:%d - client stopped reading: %d bytes unsent for %.0f s; "
                            "closing", self.client[0], self.client[1], size,
                            now - self.paused_since)
                self.server.write_timeouts += 1
                self.transport.abort()
                return True
        if self.streaming and self.body_clock and not self.read_paused_at:
            if now - self.body_clock > config.request_timeout_seconds:  # rule 9c
                self._body_failed(ProtocolError(
                    f"request body not received within {config.request_timeout_seconds:.0f} s",
                    status=408))
                return True
        if self.busy:
            return False
        if self.request_started:
            if now - self.request_started > config.request_timeout_seconds:
                log.info("%s:%d - request not received within %.0f s; closing",
                         self.client[0], self.client[1], config.request_timeout_seconds)
                self.server.count_error(408)
                body = b"request timeout\n"
                self.transport.writelines((build_head(
                    408, [("Content-Type", "text/plain; charset=utf-8")], "1.1",
                    (("Content-Length", str(len(body))), ("Connection", "close"))), body))
                self.transport.close()
                return True
        elif now - self.last_active > config.keepalive_timeout_seconds:
            self.transport.close()
            return True
        return False

    def send_retry(self, retry_ms: int) -> bool:
        """Write the line ``retry: <retry_ms>`` into the open stream, right before the
        server drain ends it; False if there is no stream.

        NOTE: a line, not a frame: no blank line follows it. A client sets its reconnection
        time when it reads the field, and at the end of the stream it discards the
        unfinished event, so nothing is dispatched. A whole frame (``retry: N`` and a blank
        line) dispatches nothing in a browser either, but some clients (httpx-sse and the
        libraries built on it) report it as an empty ``message`` event. Frames the stream
        still writes after it (a channel's pending events) carry the field along: harmless.
        """
        stream = self.stream
        if stream is None or stream.done or self.transport.is_closing():
            return False
        frame = b"retry: %d\n" % retry_ms
        if stream.chunked:
            self.transport.writelines((b"%x\r\n" % len(frame), frame, b"\r\n"))
        else:
            self.transport.write(frame)
        return True

    def drain(self) -> None:
        """Server shutdown: end a stream cleanly, close an idle connection."""
        if self.stream is not None:
            stream = self.stream
            self.stream = None
            self.server.streams.discard(self)
            stream.finish()
            self._close_stream(stream)
            self.busy = False
            self.transport.close()
        elif not self.busy:
            self.transport.close()
        # else: a response is in progress; _request_done closes after it (draining).
