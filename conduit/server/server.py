"""The server lifecycle: bind, serve, housekeeping sweep, signals, graceful drain.

1. ``Server(app, config).run()`` binds the listening socket (``BindError`` if it cannot),
   logs where it listens, installs SIGINT/SIGTERM handlers and runs the loop.
2. One housekeeping timer per second sweeps every connection: requests that take longer
   than ``request_timeout_seconds`` to arrive get a 408 and are closed, idle keep-alive
   connections past ``keepalive_timeout_seconds`` are closed, and streams with nothing
   written for ``heartbeat_seconds`` get a ``: ping`` comment. One sweep, not a timer per
   connection.
3. The first SIGINT/SIGTERM drains: the listener closes (no new connections), open streams
   are ended cleanly (generator closed, last chunk written), idle connections close, and
   responses in progress finish with ``Connection: close``. The loop stops when no
   connection is left, or after ``graceful_timeout_seconds``; ``run()`` then returns 0.
   A second signal cuts every connection and returns at once, with 1.
"""

from __future__ import annotations

import logging
import os
import signal
import socket

from conduit.config import Config
from conduit.net.loop import Listener, Loop, create_listen_socket
from conduit.server.connection import HTTPConnection

log = logging.getLogger("conduit.server")

SWEEP_SECONDS = 1.0


class BindError(OSError):
    """The listening socket could not be bound (port taken, bad address...)."""


class Server:
    """Serves one application callable over HTTP/1.1 on one event loop."""

    def __init__(self, app, config: Config | None = None) -> None:
        self.app = app
        self.config = config or Config()
        self.loop = Loop()
        self.connections: set = set()
        self.streams: set = set()
        self.draining = False
        self.exit_code = 0
        self.errors_by_status: dict = {}
        self.requests = 0
        self.events_sent_by_closed_streams = 0
        self.started_at = None
        self.listener: Listener | None = None
        self._sweeper = None
        self._drain_deadline = None
        self._started = False

    # -- lifecycle ---------------------------------------------------------------------
    def bind(self) -> tuple:
        """Create the listening socket; returns the (host, port) actually bound."""
        config = self.config
        try:
            sock = create_listen_socket(config.host, config.port, config.backlog)
        except OSError as exc:
            raise BindError(exc.errno, f"cannot listen on {config.host}:{config.port}: "
                                       f"{exc.strerror or exc}") from exc
        self.listener = Listener(self.loop, sock, self._new_connection,
                                 config.high_water_bytes, config.low_water_bytes)
        return self.listener.address

    @property
    def address(self) -> tuple:
        return self.listener.address if self.listener else (self.config.host, self.config.port)

    def run(self, install_signals: bool = True) -> int:
        """Serve until drained by a signal or ``shutdown()``; returns the exit status."""
        if self.listener is None:
            self.bind()
        host, port = self.address
        shown = f"[{host}]" if ":" in host else host
        log.info("Started server process [%d]", os.getpid())
        log.info("conduit running on http://%s:%d (Press CTRL+C to quit)", shown, port)
        previous = {}
        if install_signals:
            for signum in (signal.SIGINT, signal.SIGTERM):
                previous[signum] = signal.signal(signum, self._on_signal)
        self.started_at = self.loop.time()
        startup = getattr(self.app, "startup", None)
        if startup is not None:
            startup(self.loop, self)
        self._sweeper = self.loop.call_later(SWEEP_SECONDS, self._sweep)
        self._started = True
        try:
            self.loop.run_forever()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            shutdown = getattr(self.app, "shutdown", None)
            if shutdown is not None:
                try:
                    shutdown()
                except Exception:
                    log.exception("error in application shutdown")
            for conn in list(self.connections):
                conn.transport.abort()
            self.loop.close()
            log.info("Finished server process [%d]", os.getpid())
        return self.exit_code

    def _on_signal(self, signum, frame) -> None:
        # Runs in the main thread between bytecodes; hand over to the loop.
        self.loop.call_soon_threadsafe(self.shutdown, signum)

    def shutdown(self, signum=None) -> None:
        """Start a graceful drain (first call) or cut everything (second call)."""
        if self.draining:
            log.warning("forced exit: closing %d connections", len(self.connections))
            self.exit_code = 1
            for conn in list(self.connections):
                conn.transport.abort()
            self.loop.stop()
            return
        self.draining = True
        name = signal.Signals(signum).name if signum else "shutdown"
        log.info("%s: shutting down (%d connections, %d streams open)", name,
                 len(self.connections), len(self.streams))
        if self.listener is not None:
            self.listener.close()
        for conn in list(self.connections):
            conn.drain()
        self._drain_deadline = self.loop.time() + self.config.graceful_timeout_seconds
        self._maybe_stop()

    def _maybe_stop(self) -> None:
        if self.draining and not self.connections:
            self.loop.stop()

    # -- connections -------------------------------------------------------------------
    def _new_connection(self) -> HTTPConnection:
        return HTTPConnection(self)

    def connection_opened(self, conn) -> None:
        self.connections.add(conn)
        if self.draining:
            conn.transport.close()
        elif len(self.connections) > self.config.max_connections:
            # NOTE: a plain close lets EventSource retry later; a 4xx/5xx would stop it.
            log.warning("%s:%d - too many connections (%d); closing", conn.client[0],
                        conn.client[1], self.config.max_connections)
            conn.transport.abort()

    def connection_closed(self, conn) -> None:
        self.connections.discard(conn)
        self.streams.discard(conn)
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
            loop.stop()
            return
        for conn in list(self.connections):
            conn.timed_out(now)
        heartbeat = self.config.heartbeat_seconds
        if heartbeat:
            for conn in list(self.streams):
                stream = conn.stream
                if stream is not None and now - stream.last_write >= heartbeat:
                    stream.heartbeat()
        self._sweeper = loop.call_later(SWEEP_SECONDS, self._sweep)


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (for tests and examples)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]
