"""Event loop, transports and listening sockets: the pure-Python twin of ``_loop_c.pyx``.

Theory of operation
-------------------
This layer moves bytes over file descriptors and knows nothing of HTTP. A *protocol* object
(the server's connection) is attached to each transport and receives ``data_received``,
``eof_received``, ``pause_writing``, ``resume_writing`` and ``connection_lost``.

One loop turn (``Loop._run_once``):
1. Wait for I/O (``selectors`` here, ``epoll`` in the compiled twin). The wait does not
   block when callbacks are ready or transports have unsent bytes; otherwise it blocks
   until the nearest timer.
2. Dispatch readable/writable file descriptors to their callbacks.
3. Move expired timers (a heap) to the ready queue; run the callbacks that were ready at
   the start of this step (callbacks they schedule run next turn).
4. Flush: every transport written to during the turn sends its outbox with one system call
   (``send``; or ``sendmsg`` for a list of buffers). This is how frames that pile up in one
   turn leave in one system call per connection.

The outbox of a transport (the write path of a byte):
1. ``write(data)`` or ``writelines(buffers)`` appends to the transport's bytearray and marks
   the transport dirty (once per turn).
2. At the end of the turn ``_flush`` sends as much as the socket takes. What is left stays
   queued and the fd is watched for writability; the next writable event sends more.
3. Above ``high_water`` bytes queued the protocol's ``pause_writing()`` is called (once);
   when the queue drains to ``low_water`` or below, ``resume_writing()`` is called (once).
4. A send error or EOF-with-reset closes the transport: the fd is unregistered and closed
   and ``connection_lost(exc)`` is called exactly once (from the ready queue, never from
   inside a protocol's own call).

Thread safety: only ``call_soon_threadsafe`` may be called from another thread; it appends
to a deque (atomic in CPython) and writes to an eventfd that wakes the wait in step 1.

Run by asyncio (``attach(driver)``): the server runs this loop *inside* an asyncio event
loop (asyncio's own or uvloop), so that handlers are asyncio code and every asyncio library
works in them, while the bytes keep moving here.
1. The driver watches one file descriptor of ours: the epoll descriptor itself, which is
   readable whenever any of our descriptors (sockets, the eventfd) is ready. Its callback,
   ``_service``, runs one turn as above with a zero timeout (the driver did the waiting).
2. Timers stay in our heap; the driver holds one timer handle, for our nearest timer
   (re-armed only when an earlier one is added). Ready callbacks and dirty transports left
   after a turn, or added from outside a turn (an asyncio task writing a response), get one
   ``call_soon`` of ``_service`` on the driver, however many there are.
3. So asyncio adds one callback per loop turn, never one per connection or per event.
   ``stop()`` stops the driver. ``driver`` is the asyncio loop (None when standalone).

TLS (a transport made with ``tls``, a ``conduit.net.tls.ServerTLS``; its rules there):
1. Ciphertext goes through two memory buffers, never through a blocking call: what
   ``recv`` got is fed to the TLS engine (``ssl.SSLObject`` here, OpenSSL directly in the
   compiled twin), the handshake advances, and the decrypted bytes go to the protocol.
2. Writes go into the plaintext outbox as before. The end-of-turn flush encrypts all of it
   at once (records of up to 16 KiB, not one per write) and sends the ciphertext with one
   system call; what the socket does not take waits, and the watermarks count both.
   Nothing is encrypted before the handshake is done.
3. A channel's ``writev`` and the compiled ``_writev3`` copy into the outbox instead of
   sending straight from the shared buffer: each connection's bytes are encrypted with its
   own keys, so they are copied once anyway.
4. ``close()`` encrypts what is queued, adds a close_notify and closes once it is sent;
   the peer's close_notify (or EOF) is ``eof_received``.
"""

from __future__ import annotations

import asyncio
import errno
import heapq
import itertools
import logging
import os
import selectors
import socket
import ssl
import time
from collections import deque

from conduit.net.tls import PLAIN_HTTP_ANSWER as _PLAIN_HTTP_ANSWER
from conduit.net.tls import looks_like_plain_http as _looks_like_plain_http

log = logging.getLogger("conduit.net")

READ_CHUNK_BYTES = 65536
DEFAULT_HIGH_WATER_BYTES = 64 * 1024
DEFAULT_LOW_WATER_BYTES = 16 * 1024
ACCEPTS_PER_TURN = 128
_TRY_AGAIN = (BlockingIOError, InterruptedError)
_NO_BIO = ssl.MemoryBIO()  # stands in for the BIOs of a plain transport (never used)
_sequence = itertools.count()  # ties between timers due at the same time: FIFO


class Handle:
    """A scheduled callback; ``cancel()`` makes it a no-op."""

    __slots__ = ("callback", "args", "cancelled", "when", "seq")

    def __init__(self, callback, args, when=0.0):
        self.callback = callback
        self.args = args
        self.cancelled = False
        self.when = when
        self.seq = next(_sequence)

    def cancel(self) -> None:
        self.cancelled = True
        self.callback = None
        self.args = None

    def __lt__(self, other):
        return (self.when, self.seq) < (other.when, other.seq)


class Loop:
    """A single-threaded event loop: I/O callbacks, timers, a thread-safe wake-up."""

    def __init__(self) -> None:
        self._selector = selectors.DefaultSelector()
        self._readers: dict = {}
        self._writers: dict = {}
        self._ready: deque = deque()
        self._timers: list = []
        self._dirty: list = []
        self._stopping = False
        self._running = False
        # the asyncio loop running this one (attach), else None
        self.driver: asyncio.AbstractEventLoop | None = None
        self._kicked = False  # a call_soon(_service) is pending on the driver
        self._in_service = False
        self._timer_handle: asyncio.TimerHandle | None = None  # for our nearest timer
        self._timer_when = 0.0
        self._wake_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self.add_reader(self._wake_fd, self._drain_wakeups)

    # -- time and callbacks ------------------------------------------------------------
    def time(self) -> float:
        return time.monotonic()

    def call_soon(self, callback, *args) -> Handle:
        handle = Handle(callback, args)
        self._ready.append(handle)
        if self.driver is not None and not self._kicked and not self._in_service:
            self._kick()
        return handle

    def call_soon_threadsafe(self, callback, *args) -> Handle:
        handle = Handle(callback, args)
        self._ready.append(handle)  # deque.append is atomic
        if self._wake_fd >= 0:
            try:
                os.eventfd_write(self._wake_fd, 1)
            except OSError:  # counter full or loop closed: awake or gone anyway
                pass
        return handle

    def call_later(self, delay: float, callback, *args) -> Handle:
        return self.call_at(time.monotonic() + delay, callback, *args)

    def call_at(self, when: float, callback, *args) -> Handle:
        handle = Handle(callback, args, when)
        heapq.heappush(self._timers, handle)
        if self.driver is not None and not self._in_service:
            self._arm(when)
        return handle

    def _drain_wakeups(self) -> None:
        try:
            os.eventfd_read(self._wake_fd)
        except OSError:
            pass

    # -- file descriptors --------------------------------------------------------------
    def _update(self, fd: int) -> None:
        mask = (selectors.EVENT_READ if fd in self._readers else 0) | (
            selectors.EVENT_WRITE if fd in self._writers else 0
        )
        try:
            key = self._selector.get_key(fd)
        except KeyError:
            key = None
        if key is None:
            if mask:
                self._selector.register(fd, mask)
        elif not mask:
            self._selector.unregister(fd)
        elif key.events != mask:
            self._selector.modify(fd, mask)

    def add_reader(self, fd: int, callback) -> None:
        self._readers[fd] = callback
        self._update(fd)

    def remove_reader(self, fd: int) -> None:
        if self._readers.pop(fd, None) is not None:
            self._update(fd)

    def add_writer(self, fd: int, callback) -> None:
        self._writers[fd] = callback
        self._update(fd)

    def remove_writer(self, fd: int) -> None:
        if self._writers.pop(fd, None) is not None:
            self._update(fd)

    def _mark_dirty(self, transport) -> None:
        self._dirty.append(transport)
        if self.driver is not None and not self._kicked and not self._in_service:
            self._kick()

    # -- run by asyncio (see the theory of operation) ------------------------------------
    def attach(self, driver) -> None:
        """Let ``driver`` (an asyncio event loop, not running yet or running on this
        thread) run this loop from now on; ``stop()`` then stops the driver."""
        if self.driver is not None:
            raise RuntimeError("the loop is already attached to an asyncio loop")
        self.driver = driver
        driver.add_reader(self._selector.fileno(), self._service)
        self._kick()

    def detach(self) -> None:
        driver, self.driver = self.driver, None
        if driver is None:
            return
        if self._timer_handle is not None:
            self._timer_handle.cancel()
            self._timer_handle = None
        self._kicked = False
        if not driver.is_closed():
            driver.remove_reader(self._selector.fileno())

    def _kick(self) -> None:
        assert self.driver is not None  # called only when attached
        self._kicked = True
        self.driver.call_soon(self._service)

    def _arm(self, when: float) -> None:
        assert self.driver is not None  # called only when attached
        if self._timer_handle is not None:
            if self._timer_when <= when:
                return
            self._timer_handle.cancel()
        self._timer_when = when
        self._timer_handle = self.driver.call_later(max(0.0, when - time.monotonic()),
                                                    self._on_timer)

    def _on_timer(self) -> None:
        self._timer_handle = None
        self._service()

    def _service(self) -> None:
        self._kicked = False
        if self.driver is None:
            return
        self._in_service = True
        try:
            self._run_once()
        except Exception:
            log.exception("unhandled exception in a loop turn")
        finally:
            self._in_service = False
        if self.driver is None:
            return
        if self._ready or self._dirty:
            if not self._kicked:
                self._kick()
        elif self._timers:
            self._arm(self._timers[0].when)

    # -- running -----------------------------------------------------------------------
    def run_forever(self) -> None:
        """Run turns until ``stop()``; a stop requested before this call ends it after
        one turn (as asyncio does)."""
        if self._running:
            raise RuntimeError("the loop is already running")
        self._running = True
        try:
            while True:
                self._run_once()
                if self._stopping:
                    break
        finally:
            self._running = False
            self._stopping = False

    def stop(self) -> None:
        """Stop after the current turn (thread-safe through call_soon_threadsafe); when
        run by asyncio, stop the asyncio loop."""
        if self.driver is not None:
            self.driver.stop()
            return
        self._stopping = True

    def close(self) -> None:
        self.detach()
        self._selector.close()
        if self._wake_fd >= 0:
            fd, self._wake_fd = self._wake_fd, -1
            try:
                os.close(fd)
            except OSError:
                pass

    def _run_once(self) -> None:
        timers = self._timers
        if self._ready or self._dirty or self.driver is not None:
            timeout = 0.0
        elif timers:
            timeout = max(0.0, timers[0].when - time.monotonic())
        else:
            timeout = None
        for key, mask in self._selector.select(timeout):
            fd = key.fd
            # NOTE: an exception from one fd's callback is logged, never allowed to stop
            # the loop (one bad connection must not take the server down).
            if mask & selectors.EVENT_READ:
                callback = self._readers.get(fd)
                if callback is not None:
                    try:
                        callback()
                    except Exception:
                        log.exception("unhandled exception in reader callback %r", callback)
            if mask & selectors.EVENT_WRITE:
                callback = self._writers.get(fd)
                if callback is not None:
                    try:
                        callback()
                    except Exception:
                        log.exception("unhandled exception in writer callback %r", callback)
        if timers:
            now = time.monotonic()
            while timers and timers[0].when <= now:
                handle = heapq.heappop(timers)
                if not handle.cancelled:
                    self._ready.append(handle)
        ready = self._ready
        for _ in range(len(ready)):
            handle = ready.popleft()
            if not handle.cancelled:
                try:
                    handle.callback(*handle.args)
                except Exception:
                    log.exception("unhandled exception in callback %r", handle.callback)
        if self._dirty:
            dirty, self._dirty = self._dirty, []
            for transport in dirty:
                try:
                    transport._flush()
                except Exception:
                    log.exception("unhandled exception while flushing %r", transport)
                    transport.abort()


class Transport:
    """A connected, non-blocking stream socket with an outbox and watermarks."""

    __slots__ = (
        "loop", "sock", "fd", "protocol", "peer", "high_water", "low_water",
        "_out", "_dirty", "_paused", "_closing", "_closed", "_reading", "_writing",
        "secure", "alpn", "_tls", "_tls_in", "_tls_out", "_cipher", "_handshaking",
        "_handshake_timer", "_seen_bytes",
    )

    def __init__(self, loop: Loop, sock: socket.socket, protocol,
                 high_water: int = DEFAULT_HIGH_WATER_BYTES,
                 low_water: int = DEFAULT_LOW_WATER_BYTES, tls=None) -> None:
        self.loop = loop
        self.sock = sock
        self.fd = sock.fileno()
        self.protocol = protocol
        try:
            self.peer = sock.getpeername()[:2]
        except OSError:
            self.peer = ("", 0)
        self.high_water = high_water
        self.low_water = low_water
        self._out = bytearray()
        self._dirty = False
        self._paused = False
        self._closing = False
        self._closed = False
        self._reading = True
        self._writing = False
        # TLS (conduit.net.tls; see "TLS" in the theory of operation)
        self.secure = tls is not None
        self.alpn: str | None = None
        self._tls: ssl.SSLObject | None = None
        self._tls_in = self._tls_out = _NO_BIO  # a TLS transport's own: _start_tls
        self._cipher = bytearray()  # encrypted bytes the socket has not taken yet
        self._handshake_timer: Handle | None = None
        self._handshaking = False
        self._seen_bytes = False
        if tls is not None:
            self._start_tls(tls)
        loop.add_reader(self.fd, self._on_readable)

    # -- reading -----------------------------------------------------------------------
    def _on_readable(self) -> None:
        try:
            data = self.sock.recv(READ_CHUNK_BYTES)
        except _TRY_AGAIN:
            return
        except OSError as exc:
            self._fatal(exc)
            return
        if self._tls is not None:
            data = self._tls_received(data)
            if data is None:
                return
        try:
            if data:
                self.protocol.data_received(data)
            else:
                self.pause_reading()
                self.protocol.eof_received()
        except Exception as exc:
            log.exception("protocol error on fd %d; closing the connection", self.fd)
            self._close_now(exc)

    def pause_reading(self) -> None:
        if self._reading and not self._closed:
            self._reading = False
            self.loop.remove_reader(self.fd)

    def resume_reading(self) -> None:
        if not self._reading and not self._closed and not self._closing:
            self._reading = True
            self.loop.add_reader(self.fd, self._on_readable)

    # -- writing -----------------------------------------------------------------------
    def write(self, data) -> None:
        """Queue bytes; they are sent at the end of this loop turn."""
        if self._closing or self._closed:
            return
        self._out += data
        if not self._dirty:
            self._dirty = True
            self.loop._mark_dirty(self)
        if not self._paused and len(self._out) > self.high_water:
            self._paused = True
            self.protocol.pause_writing()

    def writelines(self, buffers) -> None:
        if self._closing or self._closed:
            return
        out = self._out
        for data in buffers:
            out += data
        if not self._dirty:
            self._dirty = True
            self.loop._mark_dirty(self)
        if not self._paused and len(out) > self.high_water:
            self._paused = True
            self.protocol.pause_writing()

    def writev(self, buffers) -> None:
        """Send now if nothing is queued (zero copy, one sendmsg); queue what is left.

        For data that is already in memory elsewhere (a channel's shared buffer): the
        common case costs no copy at all.
        """
        if self._closing or self._closed:
            return
        if self._out or self._tls is not None:
            self.writelines(buffers)
            return
        sent = self._try_send(self.sock.sendmsg, buffers)
        if sent < 0:
            return
        rest = []
        for data in buffers:
            size = len(data)
            if sent >= size:
                sent -= size
                continue
            rest.append(data[sent:] if sent else data)
            sent = 0
        if rest:
            self.writelines(rest)

    def _try_send(self, send, data) -> int:
        """``send(data)`` on the socket: the bytes it took, 0 if it would block, -1 after
        an error (the transport is closed then)."""
        try:
            return send(data)
        except _TRY_AGAIN:
            return 0
        except OSError as exc:
            self._fatal(exc)
            return -1

    def get_write_buffer_size(self) -> int:
        return len(self._out) + (len(self._cipher) if self._tls is not None else 0)

    def _flush(self) -> None:
        self._dirty = False
        if self._closed:
            return
        if self._tls is not None:
            self._flush_tls()
            return
        out = self._out
        if out:
            sent = self._try_send(self.sock.send, out)
            if sent < 0:
                return
            if sent:
                del out[:sent]  # O(1) in CPython: bytearray moves its start
        self._after_send(bool(out))

    def _after_send(self, waiting: bool) -> None:
        # Bytes still wait: watch for writability. None: stop watching, and close if
        # closing. Then resume the protocol at the low-water mark.
        if waiting:
            if not self._writing:
                self._writing = True
                self.loop.add_writer(self.fd, self._on_writable)
        else:
            if self._writing:
                self._writing = False
                self.loop.remove_writer(self.fd)
            if self._closing:
                self._close_now(None)
                return
        if self._paused and self.get_write_buffer_size() <= self.low_water:
            self._paused = False
            self.protocol.resume_writing()

    def _on_writable(self) -> None:
        if not self._dirty:
            self._flush()

    # -- closing -----------------------------------------------------------------------
    def is_closing(self) -> bool:
        return self._closing or self._closed

    def close(self) -> None:
        """Close after the queued bytes are sent."""
        if self._closing or self._closed:
            return
        self._closing = True
        self.pause_reading()
        if self._tls is not None:
            self._close_tls()
            return
        if not self._out:
            self._close_now(None)
        elif not self._dirty:
            self._dirty = True
            self.loop._mark_dirty(self)

    def abort(self) -> None:
        """Close at once, dropping queued bytes."""
        self._close_now(None)

    def _fatal(self, exc: OSError) -> None:
        if exc.errno not in (errno.EPIPE, errno.ECONNRESET, errno.ETIMEDOUT):
            log.debug("connection error on fd %d: %s", self.fd, exc)
        self._close_now(exc)

    def _close_now(self, exc) -> None:
        if self._closed:
            return
        self._closed = True
        self._closing = True
        self._out = bytearray()
        if self._tls is not None:
            self._tls = None
            self._cipher = bytearray()
            if self._handshake_timer is not None:
                self._handshake_timer.cancel()
                self._handshake_timer = None
        loop = self.loop
        if self._reading:
            self._reading = False
            loop.remove_reader(self.fd)
        if self._writing:
            self._writing = False
            loop.remove_writer(self.fd)
        try:
            self.sock.close()
        except OSError:
            pass
        loop.call_soon(self.protocol.connection_lost, exc)

    # -- TLS (conduit.net.tls) -------------------------------------------------------------
    def _start_tls(self, tls) -> None:
        self._tls_in = ssl.MemoryBIO()
        self._tls_out = ssl.MemoryBIO()
        self._tls = tls.context.wrap_bio(self._tls_in, self._tls_out, server_side=True)
        self._handshaking = True
        self._seen_bytes = False
        self._handshake_timer = self.loop.call_later(tls.handshake_timeout,
                                                     self._handshake_timed_out)

    def _handshake_timed_out(self) -> None:
        self._handshake_timer = None
        if self._handshaking and not self._closed:
            log.info("TLS handshake from %s:%s timed out", *self.peer)
            self._close_now(None)

    def _tls_received(self, data: bytes):
        """Ciphertext in, plaintext out: the bytes for the protocol, b"" at the end of the
        stream (EOF or the peer's close_notify), or None for nothing (yet)."""
        tls = self._tls
        assert tls is not None  # a TLS transport's
        if not data:
            if self._handshaking:
                if self._seen_bytes:
                    log.info("TLS handshake from %s:%s failed: the client closed", *self.peer)
                self._close_now(None)
                return None
            return b""
        if self._handshaking:
            if not self._seen_bytes and _looks_like_plain_http(data):
                log.info("plain HTTP request on the TLS port from %s:%s", *self.peer)
                try:
                    self.sock.send(_PLAIN_HTTP_ANSWER)
                except OSError:
                    pass
                self._close_now(None)
                return None
            self._seen_bytes = True
        self._tls_in.write(data)
        if self._handshaking:
            try:
                tls.do_handshake()
            except ssl.SSLWantReadError:
                self._send_cipher()
                return None
            except (ssl.SSLError, OSError) as exc:
                log.info("TLS handshake from %s:%s failed: %s", *self.peer,
                         getattr(exc, "reason", None) or exc)
                self._send_cipher()
                self._close_now(None)
                return None
            self._handshaking = False
            if self._handshake_timer is not None:
                self._handshake_timer.cancel()
                self._handshake_timer = None
            self.alpn = tls.selected_alpn_protocol()
            if self._out and not self._dirty:  # written before the handshake was done
                self._dirty = True
                self.loop._mark_dirty(self)
        chunks = []
        ended = False
        while True:
            try:
                chunk = tls.read(READ_CHUNK_BYTES)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:  # close_notify
                ended = True
                break
            except ssl.SSLError as exc:
                log.info("TLS error from %s:%s: %s", *self.peer,
                         getattr(exc, "reason", None) or exc)
                self._close_now(None)
                return None
            if not chunk:
                ended = True
                break
            chunks.append(chunk)
        if self._tls_out.pending:  # post-handshake messages (session tickets)
            self._send_cipher()
        if chunks:
            if ended:  # what came before the close_notify first; the end next turn
                self.loop.call_soon(self._tls_ended)
            return b"".join(chunks)
        return b"" if ended else None

    def _tls_ended(self) -> None:
        if not self._closed and self._reading:
            self.pause_reading()
            try:
                self.protocol.eof_received()
            except Exception as exc:
                log.exception("protocol error on fd %d; closing the connection", self.fd)
                self._close_now(exc)

    def _flush_tls(self) -> None:
        out = self._out
        tls = self._tls
        assert tls is not None  # a TLS transport's
        if out and not self._handshaking:
            # PERF: one SSLObject.write for everything the turn queued (records of up to
            # 16 KiB), not one per write() call.
            try:
                tls.write(out)
            except ssl.SSLError as exc:
                log.info("TLS error to %s:%s: %s", *self.peer, exc)
                self._close_now(None)
                return
            out.clear()
        self._send_cipher()
        if not self._closed:
            self._after_send(bool(self._cipher))

    def _send_cipher(self) -> None:
        cipher = self._cipher
        if self._tls_out.pending:
            cipher += self._tls_out.read()
        if not cipher:
            return
        sent = self._try_send(self.sock.send, cipher)
        if sent > 0:
            del cipher[:sent]

    def _close_tls(self) -> None:
        # What is queued goes out, then our close_notify, then the close (_flush_tls).
        tls = self._tls
        if tls is not None and not self._handshaking:
            try:
                if self._out:
                    tls.write(self._out)
                tls.unwrap()
            except (ssl.SSLWantReadError, ssl.SSLError):
                pass  # the close_notify is written; the peer's is not awaited
        self._out.clear()
        if not self._dirty:
            self._dirty = True
            self.loop._mark_dirty(self)


def tls_available() -> bool:
    """True when this twin can speak TLS (the pure one always can: Python's ssl)."""
    return True


def create_listen_socket(host: str, port: int, backlog: int = 2048,
                         reuse_port: bool = False) -> socket.socket:
    """A non-blocking listening TCP socket with SO_REUSEADDR (and SO_REUSEPORT if asked)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, socktype, proto, _, address = infos[0]
    sock = socket.socket(family, socktype, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(address)
        sock.listen(backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


class Listener:
    """Accepts connections on a listening socket and attaches a protocol to each."""

    def __init__(self, loop: Loop, sock: socket.socket, protocol_factory,
                 high_water: int = DEFAULT_HIGH_WATER_BYTES,
                 low_water: int = DEFAULT_LOW_WATER_BYTES, tls=None) -> None:
        self.loop = loop
        self.sock = sock
        self.protocol_factory = protocol_factory
        self.tls = tls  # a conduit.net.tls.ServerTLS: every connection speaks TLS
        self.high_water = high_water
        self.low_water = low_water
        self._accepting = False
        self._retry: Handle | None = None
        self.resume()

    @property
    def address(self):
        return self.sock.getsockname()[:2]

    def pause(self) -> None:
        if self._accepting:
            self._accepting = False
            self.loop.remove_reader(self.sock.fileno())

    def resume(self) -> None:
        if not self._accepting and self.sock.fileno() != -1:
            self._accepting = True
            self.loop.add_reader(self.sock.fileno(), self._on_readable)

    def close(self) -> None:
        self.pause()
        if self._retry is not None:
            self._retry.cancel()
        self.sock.close()

    def _on_readable(self) -> None:
        for _ in range(ACCEPTS_PER_TURN):
            try:
                conn, _ = self.sock.accept()
            except _TRY_AGAIN:
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    # Out of descriptors: stop accepting for a moment rather than spin.
                    log.error("cannot accept connections: %s; pausing for 0.1 s", exc)
                    self.pause()
                    self._retry = self.loop.call_later(0.1, self.resume)
                    return
                if exc.errno in (errno.ECONNABORTED, errno.EPROTO, errno.EPERM):
                    continue
                raise
            conn.setblocking(False)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            transport = None
            try:
                protocol = self.protocol_factory()
                transport = Transport(self.loop, conn, protocol, self.high_water,
                                      self.low_water, self.tls)
                protocol.connection_made(transport)
            except Exception:
                log.exception("error while setting up a connection; closing it")
                if transport is not None:
                    transport.abort()
                else:
                    conn.close()
