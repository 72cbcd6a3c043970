"""The server lifecycle: bind, serve, housekeeping sweep, connection limits, signals,
graceful drain.

1. ``Server(app, config).run()`` binds the listening socket (``BindError`` if it cannot),
   logs where it listens, installs SIGINT/SIGTERM handlers and runs conduit's loop inside
   an asyncio loop (``Config.loop``: asyncio's or uvloop; ``conduit.net`` Loop.attach),
   whose default executor is a pool of ``thread_pool_size`` threads. Handlers are asyncio
   code (``conduit.server.aio``). At the end, the handlers' tasks are cancelled and given
   ``WIND_DOWN_SECONDS`` to run their ``finally`` blocks.
2. One housekeeping timer per second sweeps every connection: a connection whose client
   stopped reading (outbox above the high-water mark, not shrinking for
   ``write_timeout_seconds``) is aborted; requests that take longer than
   ``request_timeout_seconds`` to arrive get a 408 and are closed, idle keep-alive
   connections past ``keepalive_timeout_seconds`` are closed, and streams with nothing
   written for ``heartbeat_seconds`` get a ``: ping`` comment. One sweep, not a timer per
   connection, and nothing per event.
3. Connection limits: beyond ``max_connections`` open connections, or
   ``max_connections_per_client`` from one client address, a new connection is closed
   right after ``accept``, before anything is read or written. That is the cheapest
   refusal, and the right one for SSE: a browser's EventSource treats a connection closed
   before a response as a network error and reconnects after its retry delay, whereas any
   response other than ``200 text/event-stream`` (a 429 or 503 included) makes it fail
   for good (readyState CLOSED; the HTML spec's "fail the connection"). A refusal is
   logged, at most one warning a second: the others are counted in the next warning, or
   in a summary line from the sweep.
4. The first SIGINT/SIGTERM drains:
   a. the listener closes (no new connections);
   b. every open stream (generator stream or channel subscription) is given its own
      reconnection delay, spread over ``DRAIN_RETRY_SECONDS`` (stratified jitter: the
      values differ), so that reconnects spread out;
   c. the streams are ended in up to ``DRAIN_WAVES`` waves, the first at once and the
      others spread over the first half of ``graceful_timeout_seconds``, rather than all at
      once. Ending one writes ``retry: <its delay>`` (see ``HTTPConnection.send_retry``),
      then ends the stream cleanly (generator closed, last chunk written);
   d. responses in progress finish with ``Connection: close``; a request that arrives on an
      open connection during the drain is answered normally, with ``Connection: close``
      (never a 5xx); idle connections are closed after the last wave; a stream that starts
      during the drain is ended the same way at the next sweep;
   e. the loop stops when no connection is left, or at ``graceful_timeout_seconds`` (what
      is left is cut); the application's ``shutdown`` then closes (and fsyncs) the durable
      channel logs, and ``run()`` returns 0.
   A second signal cuts every connection and returns at once, with 1.
5. HTTPS: with ``ssl_certfile`` set, ``bind()`` builds the TLS context (a bad file, a wrong
   password or a key that does not match is a ``BindError``: exit status 3) and every
   connection speaks TLS (``conduit.net.tls``); the rest of the server is unchanged.
   SIGHUP reloads the certificate and key (``reload_tls``) without dropping a connection;
   under ``--workers`` the supervisor passes SIGHUP on to every worker.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import logging
import os
import random
import signal
import socket
import ssl
from collections import deque
from typing import TYPE_CHECKING

from conduit.config import Config
from conduit.net.loop import Listener, Loop, create_listen_socket, tls_available
from conduit.server.aio import new_thread_pool
from conduit.server.connection import HTTPConnection

if TYPE_CHECKING:
    from conduit.net._loop_py import Handle  # both twins' (the compiled one imports it)

log = logging.getLogger("conduit.server")

SWEEP_SECONDS = 1.0
# Drain (rule 4): at most this many waves, spread over the first half of the graceful
# timeout, and the window of the reconnection delays sent as ``retry:`` lines.
DRAIN_WAVES = 5
DRAIN_RETRY_SECONDS = (1.0, 5.0)
REFUSAL_LOG_SECONDS = 1.0
# Shutdown: how long the handlers' tasks get to finish their cancellation (finally blocks).
WIND_DOWN_SECONDS = 1.0


class BindError(OSError):
    """The listening socket could not be bound (port taken, bad address...)."""


class StartupError(RuntimeError):
    """The server could not start: no uvloop for ``--loop uvloop``, and the like."""


def new_event_loop(kind: str = "auto") -> asyncio.AbstractEventLoop:
    """The asyncio loop for ``Config.loop``: "uvloop", "asyncio", or "auto" (uvloop when
    it is installed)."""
    if kind in ("auto", "uvloop"):
        try:
            import uvloop
        except ImportError:
            if kind == "uvloop":
                raise StartupError("--loop uvloop needs uvloop: "
                                   "pip install 'conduit-sse[uvloop]'") from None
        else:
            return uvloop.new_event_loop()
    return asyncio.new_event_loop()


class Server:
    """Serves one application callable over HTTP/1.1 on one event loop."""

    def __init__(self, app, config: Config | None = None, worker: int | None = None) -> None:
        self.app = app
        self.config = config or Config()
        # The worker number when this server is one of the workers of ``--workers N``
        # (conduit.server.workers): its listening socket joins the port's SO_REUSEPORT group.
        self.worker = worker
        self.loop = Loop()
        self.driver: asyncio.AbstractEventLoop | None = None  # the asyncio loop, in run()
        self.connections: set = set()
        self.streams: set = set()
        self.draining = False
        self.exit_code = 0
        self.errors_by_status: dict = {}
        self.requests = 0
        self.events_sent_by_closed_streams = 0
        self.write_timeouts = 0
        self.refused = {"max_connections": 0, "max_connections_per_client": 0,
                        "draining": 0}
        self.per_client: dict = {}  # client address -> open connections
        self._refusal_logged_at = -REFUSAL_LOG_SECONDS
        self._refusals_unlogged = 0
        self._waves: deque = deque()
        self._wave_interval = 0.0
        self._wave_count = 0
        self._retry_ms: dict = {}  # drain: stream connection -> its reconnection delay
        self.started_at: float | None = None
        self.listener: Listener | None = None
        self.tls = None  # a conduit.net.tls.ServerTLS when serving HTTPS (bind)
        self._bound: tuple | None = None  # the address bind() got
        self._sweeper: Handle | None = None
        self._drain_deadline: float | None = None
        self._started = False
        self._loop_stopped = False
        self._previous_handlers: dict = {}  # signum -> the handler before ours

    # -- lifecycle ---------------------------------------------------------------------
    def bind(self) -> tuple:
        """Create the listening socket; returns the (host, port) actually bound."""
        config = self.config
        try:
            sock = create_listen_socket(config.host, config.port, config.backlog,
                                        reuse_port=self.worker is not None)
        except OSError as exc:
            raise BindError(exc.errno, f"cannot listen on {config.host}:{config.port}: "
                                       f"{exc.strerror or exc}") from exc
        try:
            if config.ssl_certfile and not tls_available():
                raise ValueError("conduit's compiled loop was built without OpenSSL's "
                                 "headers: install them (Debian: libssl-dev) and reinstall "
                                 "conduit, or run with CONDUIT_EXTENSIONS=0")
            self.tls = config.server_tls()
        except (OSError, ValueError, ssl.SSLError) as exc:
            sock.close()
            raise BindError(getattr(exc, "errno", None) or 0,
                            f"cannot serve HTTPS with {config.ssl_certfile}: {exc}") from exc
        self.listener = Listener(self.loop, sock, self._new_connection,
                                 config.high_water_bytes, config.low_water_bytes, self.tls)
        self._bound = self.listener.address
        return self._bound

    @property
    def scheme(self) -> str:
        return "https" if self.tls is not None else "http"

    @property
    def address(self) -> tuple:
        """(host, port) listened on; read once at bind (an ASGI scope's "server" asks for
        it on every request: getsockname() each time was 2.7% of a FastAPI JSON request)."""
        return self._bound if self._bound is not None else (self.config.host, self.config.port)

    def run(self, install_signals: bool = True) -> int:
        """Serve until drained by a signal or ``shutdown()``; returns the exit status.

        Raises ``StartupError`` when the asyncio loop cannot be made (``--loop uvloop``
        without uvloop) or the application's startup fails."""
        if self.listener is None:
            self.bind()
        driver = new_event_loop(self.config.loop)
        driver.set_default_executor(new_thread_pool(self.config.thread_pool_size))
        asyncio.set_event_loop(driver)
        self.driver = driver
        self.loop.attach(driver)  # rule 1: conduit's loop runs inside the asyncio loop
        host, port = self.address
        shown = f"[{host}]" if ":" in host else host
        log.info("Started server process [%d]", os.getpid())
        if self.worker is None:
            log.info("conduit running on %s://%s:%d (Press CTRL+C to quit)", self.scheme,
                     shown, port)
        else:  # the supervisor says "conduit running on" once every worker is up
            log.info("worker %d listening on %s://%s:%d", self.worker, self.scheme, shown,
                     port)
        if install_signals:
            self.catch_signals()
        self.started_at = self.loop.time()
        thresholds = gc.get_threshold()
        try:
            startup = getattr(self.app, "startup", None)
            if startup is not None:
                result = startup(self.loop, self)
                if inspect.isawaitable(result):  # the app's async startup hooks
                    driver.run_until_complete(result)
            self._sweeper = self.loop.call_later(SWEEP_SECONDS, self._sweep)
            self._started = True
            # PERF: what exists now (modules, the app, its routes and channels) lives as
            # long as the process: moved out of the collector's generations, a full
            # collection no longer walks it. 500 asyncio-fed streams at 100 events/s
            # (loadclient ticks): p99 latency 10-12 ms -> 3.4-4.7 ms, CPU -5%.
            gc.freeze()
            if self.config.gc_threshold:
                # PERF: Config.gc_threshold: a first threshold of 700 collected about 130
                # times a second at 1,000 asyncio-fed streams of 100 events/s, 10% of the
                # CPU (the allocations are short-lived: futures, timer handles); 10,000:
                # a few times a minute. p99 latency 26 -> 17 ms there.
                gc.set_threshold(self.config.gc_threshold, *thresholds[1:])
            driver.run_forever()
        finally:
            gc.unfreeze()  # (a process that serves again, as the tests do, collects it all)
            gc.set_threshold(*thresholds)
            for signum, handler in self._previous_handlers.items():
                signal.signal(signum, handler)
            self._previous_handlers.clear()
            self._loop_stopped = True
            for conn in list(self.connections):
                conn.transport.abort()
            # The application's shutdown (its hooks may await: an ASGI lifespan), while the
            # aborted connections cancel their handlers' tasks; then what is left of them
            # gets its last chance to finish.
            shutdown = getattr(self.app, "shutdown", None)
            if shutdown is not None:
                try:
                    result = shutdown()
                    if inspect.isawaitable(result):
                        driver.run_until_complete(result)
                except Exception:
                    log.exception("error in application shutdown")
            self._wind_down(driver)
            self.loop.close()
            try:
                # bounded: an async generator whose cleanup awaits forever must not keep
                # the process from exiting
                driver.run_until_complete(asyncio.wait_for(driver.shutdown_asyncgens(),
                                                           WIND_DOWN_SECONDS))
            except (asyncio.TimeoutError, RuntimeError) as exc:
                log.warning("async generators not closed at exit: %s", exc or "timed out")
            finally:
                driver.close()
                asyncio.set_event_loop(None)
            log.info("Finished server process [%d]", os.getpid())
        return self.exit_code

    def _wind_down(self, driver) -> None:
        """After the last connection was aborted: let their handlers' tasks see the
        cancellation (their ``finally`` blocks run), for at most WIND_DOWN_SECONDS."""

        async def settle():
            await asyncio.sleep(0)  # connection_lost runs: each stream cancels its task
            await asyncio.sleep(0)
            current = asyncio.current_task()
            tasks = [t for t in asyncio.all_tasks() if t is not current]
            for task in tasks:
                task.cancel()
            if tasks:
                await asyncio.wait(tasks, timeout=WIND_DOWN_SECONDS)

        try:
            driver.run_until_complete(settle())
        except Exception:
            log.exception("error while cancelling the handlers' tasks")

    def _stop_loop(self) -> None:
        # Once: the wind-down after the loop stopped runs the loop again, and the
        # connections it closes must not stop it a second time.
        if not self._loop_stopped:
            self._loop_stopped = True
            self.loop.stop()

    def catch_signals(self) -> None:
        """SIGINT and SIGTERM drain this server from now on (``run()`` restores the handlers
        it replaced when it returns). A worker calls this before it tells the supervisor it
        is ready: a SIGTERM that comes after "ready" but before ``run()`` has started must
        drain the worker, not kill it (signal.SIG_DFL). A signal caught before the loop runs
        is handled on its first turn."""
        if not self._previous_handlers:
            for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                self._previous_handlers[signum] = signal.signal(signum, self._on_signal)

    def _on_signal(self, signum, frame) -> None:
        # Runs in the main thread between bytecodes; hand over to the loop.
        if signum == signal.SIGHUP:
            self.loop.call_soon_threadsafe(self.reload_tls)
        else:
            self.loop.call_soon_threadsafe(self.shutdown, signum)

    def reload_tls(self) -> bool:
        """SIGHUP: read the TLS certificate and key again (rule 5); open connections keep
        the ones they started with. Without TLS, a SIGHUP is logged and ignored."""
        if self.tls is None:
            log.info("SIGHUP: no TLS certificate to reload; ignored")
            return False
        return self.tls.reload()

    def shutdown(self, signum=None) -> None:
        """Start a graceful drain (first call) or cut everything (second call)."""
        if self.draining:
            log.warning("forced exit: closing %d connections", len(self.connections))
            self.exit_code = 1
            for conn in list(self.connections):
                conn.transport.abort()
            self._stop_loop()
            return
        self.draining = True
        name = signal.Signals(signum).name if signum else "shutdown"
        log.info("%s: shutting down (%d connections, %d streams open)", name,
                 len(self.connections), len(self.streams))
        if self.listener is not None:
            self.listener.close()
        graceful = self.config.graceful_timeout_seconds
        self._drain_deadline = self.loop.time() + graceful
        streams = [conn for conn in self.streams if conn.stream is not None]
        random.shuffle(streams)
        self._retry_ms = dict(zip(streams, retry_delays_ms(len(streams)), strict=True))
        count = min(DRAIN_WAVES, len(streams))
        if count:
            size = -(-len(streams) // count)  # ceiling division
            self._waves = deque(streams[i:i + size] for i in range(0, len(streams), size))
            self._wave_count = len(self._waves)
            self._wave_interval = graceful / 2 / DRAIN_WAVES
            self._next_wave()
        else:
            self._after_waves()
        self._maybe_stop()

    def _next_wave(self) -> None:
        """End the next wave of streams (rule 4c); the last wave closes idle connections."""
        if not self._waves or not self.draining:
            return
        group = self._waves.popleft()
        ended = 0
        for conn in group:
            if conn.stream is not None and not conn.closed:
                self._end_stream(conn)
                ended += 1
        log.info("drain: wave %d of %d ended %d streams", self._wave_count - len(self._waves),
                 self._wave_count, ended)
        if self._waves:
            self.loop.call_later(self._wave_interval, self._next_wave)
        else:
            self._after_waves()

    def _after_waves(self) -> None:
        for conn in list(self.connections):
            if conn.stream is not None:
                self._end_stream(conn)
            elif not conn.busy:
                conn.drain()  # idle: close it

    def _end_stream(self, conn) -> None:
        # Its reconnection delay (a stream started during the drain gets a new one), then
        # a clean end.
        delay_ms = self._retry_ms.pop(conn, None)
        conn.send_retry(delay_ms if delay_ms is not None else retry_delays_ms(1)[0])
        conn.drain()

    def _maybe_stop(self) -> None:
        if self.draining and not self.connections:
            self._stop_loop()

    # -- connections -------------------------------------------------------------------
    def _new_connection(self) -> HTTPConnection:
        return HTTPConnection(self)

    def connection_opened(self, conn) -> None:
        self.connections.add(conn)
        host = conn.client[0]
        per_client = self.per_client
        count = per_client[host] = per_client.get(host, 0) + 1
        config = self.config
        # NOTE: refusing is closing right after accept (rule 3): EventSource retries after
        # a network error, and gives up for good after any 4xx/5xx.
        if self.draining:
            self.refused["draining"] += 1
            conn.transport.abort()
        elif len(self.connections) > config.max_connections:
            self._refuse(conn, "max_connections", "too many connections",
                         config.max_connections)
        elif config.max_connections_per_client and count > config.max_connections_per_client:
            self._refuse(conn, "max_connections_per_client",
                         "too many connections from this client",
                         config.max_connections_per_client)

    def _refuse(self, conn, reason: str, what: str, limit: int) -> None:
        self.refused[reason] += 1
        now = self.loop.time()
        if now - self._refusal_logged_at >= REFUSAL_LOG_SECONDS:
            more = self._refusals_unlogged
            log.warning("%s:%d - %s (limit %d); closing%s", conn.client[0], conn.client[1],
                        what, limit, f" ({more} more refused since the last warning)"
                        if more else "")
            self._refusal_logged_at = now
            self._refusals_unlogged = 0
        else:
            self._refusals_unlogged += 1
        conn.transport.abort()

    def connection_closed(self, conn) -> None:
        self.connections.discard(conn)
        self.streams.discard(conn)
        host = conn.client[0]
        count = self.per_client.get(host, 0) - 1
        if count > 0:
            self.per_client[host] = count
        else:
            self.per_client.pop(host, None)
        if self.draining:
            self._maybe_stop()

    def stats(self) -> dict:
        """Live figures of this server (for dashboards and metrics).

        ``errors_by_status`` counts every response with a status of 400 or more: those a
        handler answered (404, 405, HTTPError, 500) and those conduit answered itself
        (malformed requests, 408 timeouts).
        """
        open_events = sum(conn.stream.events_sent for conn in self.streams
                          if conn.stream is not None)
        return {
            "connections": len(self.connections),
            "streams": len(self.streams),
            "requests": self.requests,
            "events_sent": self.events_sent_by_closed_streams + open_events,
            "errors_by_status": dict(self.errors_by_status),
            "uptime_seconds": self.loop.time() - self.started_at if self.started_at else 0.0,
        }

    def outbox_bytes(self) -> int:
        """Bytes queued in every connection's outbox, not yet taken by the kernel."""
        return sum(conn.transport.get_write_buffer_size() for conn in self.connections
                   if conn.transport is not None)

    def count_error(self, status: int) -> None:
        self.errors_by_status[status] = self.errors_by_status.get(status, 0) + 1

    # -- housekeeping ------------------------------------------------------------------
    def _sweep(self) -> None:
        loop = self.loop
        now = loop.time()
        if self.draining and self._drain_deadline is not None and now > self._drain_deadline:
            log.warning("graceful timeout: cutting %d connections", len(self.connections))
            for conn in list(self.connections):
                conn.transport.abort()
            self._stop_loop()
            return
        for conn in list(self.connections):
            conn.timed_out(now)
        if self.draining:
            for conn in list(self.streams):
                if conn not in self._retry_ms or not self._waves:  # started during the drain
                    self._end_stream(conn)
        if self._refusals_unlogged and now - self._refusal_logged_at >= REFUSAL_LOG_SECONDS:
            log.warning("%d more connections refused over the connection limits",
                        self._refusals_unlogged)
            self._refusal_logged_at = now
            self._refusals_unlogged = 0
        heartbeat = self.config.heartbeat_seconds
        if heartbeat:
            for conn in list(self.streams):
                stream = conn.stream
                if stream is not None and now - stream.last_write >= heartbeat:
                    stream.heartbeat()
        self._sweeper = loop.call_later(SWEEP_SECONDS, self._sweep)


def retry_delays_ms(count: int, low: float = DRAIN_RETRY_SECONDS[0],
                    high: float = DRAIN_RETRY_SECONDS[1]) -> list:
    """``count`` reconnection delays in milliseconds within [low, high) seconds, in
    increasing order: one random value in each of ``count`` equal slices of the window
    (stratified jitter), so they are spread evenly and differ while slices are >= 1 ms."""
    span = (high - low) / count if count else 0.0
    return [int(1000 * (low + (i + random.random()) * span)) for i in range(count)]


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (for tests and examples)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]
