# cython: language_level=3
"""Event loop, transports and listeners: compiled twin of ``_loop_py.py``.

The loop turn and the outbox rules are written once, in ``_loop_py``'s theory of operation;
this twin follows them. What differs is how:

1. ``epoll`` is called directly (``epoll_wait`` into a C array of events), not through
   ``selectors``; readiness goes to the callbacks in a dict keyed by fd.
2. A transport holds a file descriptor and typed fields, not a Python socket object: reads
   go through one shared 64 KiB buffer (``recv`` into it, then one ``bytes`` for the
   protocol), so an idle connection has no read buffer of its own; the outbox is a
   malloc'd byte buffer with a start offset, freed whenever it drains.
3. The end-of-turn flush calls each dirty transport's C-level ``_flush`` (one ``send`` with
   ``MSG_NOSIGNAL``); writes from a protocol are ``memcpy``s into the outbox.
4. ``call_soon_threadsafe`` wakes the loop through an ``eventfd``.
"""

cimport cython
from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.exc cimport PyErr_CheckSignals
from libc.errno cimport (
    EAGAIN, ECONNABORTED, EINTR, EMFILE, ENFILE, ENOBUFS, ENOMEM, EPERM, EPROTO, errno,
)
from libc.stdint cimport uint32_t, uint64_t
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memcpy, memmove, memset

import heapq
import logging
import os
import sys
import time
from collections import deque
from ssl import SSLContext

from conduit.net._loop_py import (
    ACCEPTS_PER_TURN,
    DEFAULT_HIGH_WATER_BYTES,
    DEFAULT_LOW_WATER_BYTES,
    Handle,
)
from conduit.net._loop_py import create_listen_socket
from conduit.net.tls import PLAIN_HTTP_ANSWER as _PLAIN_HTTP_ANSWER
from conduit.net.tls import looks_like_plain_http as _looks_like_plain_http

log = logging.getLogger("conduit.net")

__all__ = [
    "Loop", "Transport", "Listener", "create_listen_socket", "DEFAULT_HIGH_WATER_BYTES",
    "DEFAULT_LOW_WATER_BYTES",
]

cdef extern from "<sys/eventfd.h>" nogil:
    int eventfd(unsigned int initval, int flags)
    int EFD_NONBLOCK, EFD_CLOEXEC

cdef extern from "<unistd.h>" nogil:
    ssize_t read(int fd, void* buf, size_t count)
    ssize_t write(int fd, const void* buf, size_t count)
    int close(int fd)

cdef extern from "<sys/uio.h>" nogil:
    cdef struct iovec:
        void* iov_base
        size_t iov_len

cdef extern from "<sys/socket.h>" nogil:
    ctypedef unsigned int socklen_t
    cdef struct msghdr:
        void* msg_name
        socklen_t msg_namelen
        iovec* msg_iov
        size_t msg_iovlen
        void* msg_control
        size_t msg_controllen
        int msg_flags
    ssize_t sendmsg(int fd, const msghdr* msg, int flags)
    cdef struct sockaddr:
        unsigned short sa_family
    cdef struct sockaddr_storage:
        unsigned short ss_family
    ssize_t send(int fd, const void* buf, size_t n, int flags)
    ssize_t recv(int fd, void* buf, size_t n, int flags)
    int accept4(int fd, sockaddr* addr, socklen_t* addrlen, int flags)
    int setsockopt(int fd, int level, int name, const void* value, socklen_t len)
    int getpeername(int fd, sockaddr* addr, socklen_t* addrlen)
    int MSG_NOSIGNAL, SOCK_NONBLOCK, SOCK_CLOEXEC, AF_INET, AF_INET6

cdef extern from "<netinet/in.h>" nogil:
    cdef struct in_addr:
        pass
    cdef struct in6_addr:
        pass
    cdef struct sockaddr_in:
        unsigned short sin_port
        in_addr sin_addr
    cdef struct sockaddr_in6:
        unsigned short sin6_port
        in6_addr sin6_addr
    unsigned short ntohs(unsigned short)
    int IPPROTO_TCP

cdef extern from "<netinet/tcp.h>" nogil:
    int TCP_NODELAY

cdef extern from "<arpa/inet.h>" nogil:
    const char* inet_ntop(int af, const void* src, char* dst, socklen_t size)


# TLS through OpenSSL, in C: the shim below is the only code that names OpenSSL. Built
# with OpenSSL's headers (setup.py defines CONDUIT_HAVE_OPENSSL when it finds them); without
# them conduit_tls_available() is 0 and a TLS transport refuses to start.
cdef extern from *:
    """
    #ifdef CONDUIT_HAVE_OPENSSL
    #include <openssl/ssl.h>
    #include <openssl/err.h>
    /* CPython's _ssl keeps the SSL_CTX* as the first field of an ssl.SSLContext (3.6 to
       3.13); conduit_tls_new checks it against the context's options before use. */
    typedef struct { PyObject_HEAD SSL_CTX *ctx; } conduit_PySSLContext;
    static int conduit_tls_available(void) { return 1; }
    static void *conduit_tls_ctx(PyObject *context) {
        return ((conduit_PySSLContext *)context)->ctx;
    }
    static unsigned long long conduit_tls_ctx_options(void *ctx) {
        return (unsigned long long)SSL_CTX_get_options((SSL_CTX *)ctx);
    }
    static void *conduit_tls_new(void *ctx) {
        SSL *ssl = SSL_new((SSL_CTX *)ctx);
        BIO *rbio, *wbio;
        if (ssl == NULL) return NULL;
        rbio = BIO_new(BIO_s_mem());
        wbio = BIO_new(BIO_s_mem());
        if (rbio == NULL || wbio == NULL) {
            BIO_free(rbio); BIO_free(wbio); SSL_free(ssl);
            return NULL;
        }
        BIO_set_mem_eof_return(rbio, -1);
        BIO_set_mem_eof_return(wbio, -1);
        SSL_set_bio(ssl, rbio, wbio);
        SSL_set_accept_state(ssl);
        return ssl;
    }
    static void conduit_tls_free(void *ssl) { SSL_free((SSL *)ssl); }
    static void conduit_tls_why(int err, char *why, size_t size) {
        unsigned long code = ERR_peek_last_error();
        const char *reason = code ? ERR_reason_error_string(code) : NULL;
        if (reason != NULL) snprintf(why, size, "%s", reason);
        else if (err == SSL_ERROR_SYSCALL) snprintf(why, size, "unexpected end of stream");
        else snprintf(why, size, "TLS error %d", err);
        ERR_clear_error();
    }
    static int conduit_tls_feed(void *ssl, const char *data, int n) {
        return BIO_write(SSL_get_rbio((SSL *)ssl), data, n) == n ? 0 : -1;
    }
    /* 1: done; 0: wants more bytes; -1: failed (why says why) */
    static int conduit_tls_handshake(void *ssl, char *why, size_t size) {
        int r, err;
        ERR_clear_error();
        r = SSL_do_handshake((SSL *)ssl);
        if (r == 1) return 1;
        err = SSL_get_error((SSL *)ssl, r);
        if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) return 0;
        conduit_tls_why(err, why, size);
        return -1;
    }
    /* >0: plaintext bytes; 0: nothing more for now; -2: the peer's close_notify;
       -1: failed (why says why) */
    static int conduit_tls_read(void *ssl, char *buf, int n, char *why, size_t size) {
        int r, err;
        ERR_clear_error();
        r = SSL_read((SSL *)ssl, buf, n);
        if (r > 0) return r;
        err = SSL_get_error((SSL *)ssl, r);
        if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) return 0;
        if (err == SSL_ERROR_ZERO_RETURN) return -2;
        conduit_tls_why(err, why, size);
        return -1;
    }
    /* Encrypt n bytes into the write BIO (a memory BIO takes everything): 0, or -1. */
    static int conduit_tls_write(void *ssl, const char *data, size_t n, char *why,
                                 size_t size) {
        size_t written = 0;
        ERR_clear_error();
        if (n == 0) return 0;
        if (SSL_write_ex((SSL *)ssl, data, n, &written) == 1 && written == n) return 0;
        conduit_tls_why(SSL_get_error((SSL *)ssl, 0), why, size);
        return -1;
    }
    static void conduit_tls_shutdown(void *ssl) {
        ERR_clear_error();
        SSL_shutdown((SSL *)ssl);  /* writes our close_notify; the peer's is not awaited */
        ERR_clear_error();
    }
    /* The encrypted bytes waiting to be sent: their length, *data pointing at them. */
    static long conduit_tls_pending(void *ssl, char **data) {
        return BIO_get_mem_data(SSL_get_wbio((SSL *)ssl), data);
    }
    /* n of them were sent. */
    static void conduit_tls_consume(void *ssl, long n) {
        BIO *wbio = SSL_get_wbio((SSL *)ssl);
        char scratch[16384];
        char *data;
        long left = BIO_get_mem_data(wbio, &data);
        if (n >= left) { (void)BIO_reset(wbio); return; }
        while (n > 0) {  /* a partial send (a slow client): skip what went out */
            int step = n > (long)sizeof(scratch) ? (int)sizeof(scratch) : (int)n;
            int got = BIO_read(wbio, scratch, step);
            if (got <= 0) break;
            n -= got;
        }
    }
    static int conduit_tls_alpn(void *ssl, char *out, size_t size) {
        const unsigned char *proto = NULL;
        unsigned int len = 0;
        SSL_get0_alpn_selected((SSL *)ssl, &proto, &len);
        if (proto == NULL || len == 0 || len >= size) return 0;
        memcpy(out, proto, len);
        return (int)len;
    }
    #else
    static int conduit_tls_available(void) { return 0; }
    static void *conduit_tls_ctx(PyObject *context) { return NULL; }
    static unsigned long long conduit_tls_ctx_options(void *ctx) { return 0; }
    static void *conduit_tls_new(void *ctx) { return NULL; }
    static void conduit_tls_free(void *ssl) {}
    static int conduit_tls_feed(void *ssl, const char *data, int n) { return -1; }
    static int conduit_tls_handshake(void *ssl, char *why, size_t size) { return -1; }
    static int conduit_tls_read(void *ssl, char *buf, int n, char *why, size_t size) {
        return -1;
    }
    static int conduit_tls_write(void *ssl, const char *data, size_t n, char *why,
                                 size_t size) { return -1; }
    static void conduit_tls_shutdown(void *ssl) {}
    static long conduit_tls_pending(void *ssl, char **data) { return 0; }
    static void conduit_tls_consume(void *ssl, long n) {}
    static int conduit_tls_alpn(void *ssl, char *out, size_t size) { return 0; }
    #endif
    """
    int conduit_tls_available()
    void* conduit_tls_ctx(object context)
    unsigned long long conduit_tls_ctx_options(void* ctx)
    void* conduit_tls_new(void* ctx)
    void conduit_tls_free(void* ssl)
    int conduit_tls_feed(void* ssl, const char* data, int n)
    int conduit_tls_handshake(void* ssl, char* why, size_t size)
    int conduit_tls_read(void* ssl, char* buf, int n, char* why, size_t size)
    int conduit_tls_write(void* ssl, const char* data, size_t n, char* why, size_t size)
    void conduit_tls_shutdown(void* ssl)
    long conduit_tls_pending(void* ssl, char** data)
    void conduit_tls_consume(void* ssl, long n)
    int conduit_tls_alpn(void* ssl, char* out, size_t size)


# NOTE: the SSL_CTX* is read from CPython's ssl.SSLContext object (the first field of its
# PySSLContext struct in every CPython from 3.6 to 3.14). On a Python this code has not been
# checked on, the compiled loop refuses TLS (the message says to use the pure twin) rather
# than read a struct it does not know.
_CONTEXT_LAYOUT_KNOWN = (3, 6) <= sys.version_info[:2] <= (3, 14) \
    and sys.implementation.name == "cpython"


def tls_available():
    """True when this build can speak TLS (compiled with OpenSSL's headers, on a CPython
    whose ssl.SSLContext it knows)."""
    return bool(conduit_tls_available()) and _CONTEXT_LAYOUT_KNOWN


DEF MAX_IOV = 64  # writev with more buffers falls back to copying them into the outbox
DEF READ_BUFFER_BYTES = 65536

# NOTE: one read buffer for every connection (the loop is single-threaded): recv() lands
# here and only the bytes received are copied out, into the bytes given to the protocol.
cdef char _read_buffer[READ_BUFFER_BYTES]
# TLS: decrypted bytes land here the same way.
cdef char _plain_buffer[READ_BUFFER_BYTES]


cdef tuple _peer_of(sockaddr_storage* addr):
    cdef char text[64]
    cdef sockaddr_in* v4
    cdef sockaddr_in6* v6
    if addr.ss_family == AF_INET:
        v4 = <sockaddr_in*>addr
        inet_ntop(AF_INET, &v4.sin_addr, text, sizeof(text))
        return (text.decode("ascii"), ntohs(v4.sin_port))
    if addr.ss_family == AF_INET6:
        v6 = <sockaddr_in6*>addr
        inet_ntop(AF_INET6, &v6.sin6_addr, text, sizeof(text))
        return (text.decode("ascii"), ntohs(v6.sin6_port))
    return ("", 0)


cdef tuple _peer_of_fd(int fd):
    cdef sockaddr_storage addr
    cdef socklen_t size = sizeof(addr)
    if getpeername(fd, <sockaddr*>&addr, &size) != 0:
        return ("", 0)
    return _peer_of(&addr)


@cython.final
cdef class Loop:
    """A single-threaded event loop: I/O callbacks, timers, a thread-safe wake-up.

    Its fields are declared in _loop_c.pxd.
    """

    def __cinit__(self):
        self._epfd = -1
        self._wake_fd = -1

    def __init__(self):
        self._epfd = epoll_create1(EPOLL_CLOEXEC)
        if self._epfd < 0:
            raise OSError(errno, os.strerror(errno))
        self._wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)
        if self._wake_fd < 0:
            raise OSError(errno, os.strerror(errno))
        self._readers = {}
        self._writers = {}
        self._masks = {}
        self._ready = deque()
        self._timers = []
        self._dirty = []
        self.add_reader(self._wake_fd, self._drain_wakeups)

    def __dealloc__(self):
        if self._epfd >= 0:
            close(self._epfd)
        if self._wake_fd >= 0:
            close(self._wake_fd)

    # -- time and callbacks ------------------------------------------------------------
    def time(self):
        return time.monotonic()

    def call_soon(self, callback, *args):
        handle = Handle(callback, args)
        self._ready.append(handle)
        if self.driver is not None and not self._kicked and not self._in_service:
            self._kick()
        return handle

    def call_soon_threadsafe(self, callback, *args):
        cdef uint64_t one = 1
        handle = Handle(callback, args)
        self._ready.append(handle)
        if self._wake_fd >= 0:
            with nogil:
                write(self._wake_fd, &one, 8)
        return handle

    def call_later(self, delay, callback, *args):
        return self.call_at(time.monotonic() + delay, callback, *args)

    def call_at(self, when, callback, *args):
        handle = Handle(callback, args, when)
        heapq.heappush(self._timers, handle)
        if self.driver is not None and not self._in_service:
            self._arm(when)
        return handle

    def _drain_wakeups(self):
        cdef uint64_t value
        read(self._wake_fd, &value, 8)

    # -- file descriptors --------------------------------------------------------------
    cdef int _update(self, int fd) except -1:
        cdef uint32_t mask = 0
        cdef epoll_event ev
        cdef int op
        if fd in self._readers:
            mask |= EPOLLIN
        if fd in self._writers:
            mask |= EPOLLOUT
        old = self._masks.get(fd)
        if old is None:
            if not mask:
                return 0
            op = EPOLL_CTL_ADD
        elif not mask:
            del self._masks[fd]
            epoll_ctl(self._epfd, EPOLL_CTL_DEL, fd, NULL)
            return 0
        elif old == mask:
            return 0
        else:
            op = EPOLL_CTL_MOD
        ev.events = mask
        ev.data.u64 = 0
        ev.data.fd = fd
        if epoll_ctl(self._epfd, op, fd, &ev) != 0:
            raise OSError(errno, os.strerror(errno))
        self._masks[fd] = mask
        return 0

    def add_reader(self, int fd, callback):
        self._readers[fd] = callback
        self._update(fd)

    def remove_reader(self, int fd):
        if self._readers.pop(fd, None) is not None:
            self._update(fd)

    def add_writer(self, int fd, callback):
        self._writers[fd] = callback
        self._update(fd)

    def remove_writer(self, int fd):
        if self._writers.pop(fd, None) is not None:
            self._update(fd)

    def _mark_dirty(self, transport):
        self._mark_dirty_c(transport)

    cdef int _mark_dirty_c(self, transport) except -1:
        # A transport with bytes to flush at the end of the turn; written to from outside
        # a turn (an asyncio task), the driver is asked for one.
        self._dirty.append(transport)
        if self.driver is not None and not self._kicked and not self._in_service:
            self._kick()
        return 0

    # -- run by asyncio (the pure twin's theory of operation) --------------------------
    def attach(self, driver):
        """Let ``driver`` (an asyncio event loop) run this loop; ``stop()`` stops it."""
        if self.driver is not None:
            raise RuntimeError("the loop is already attached to an asyncio loop")
        self.driver = driver
        driver.add_reader(self._epfd, self._service)
        self._kick()

    def detach(self):
        driver = self.driver
        self.driver = None
        if driver is None:
            return
        if self._timer_handle is not None:
            self._timer_handle.cancel()
            self._timer_handle = None
        self._kicked = False
        if not driver.is_closed() and self._epfd >= 0:
            driver.remove_reader(self._epfd)

    cdef int _kick(self) except -1:
        self._kicked = True
        self.driver.call_soon(self._service)
        return 0

    cdef int _arm(self, double when) except -1:
        if self._timer_handle is not None:
            if self._timer_when <= when:
                return 0
            self._timer_handle.cancel()
        self._timer_when = when
        self._timer_handle = self.driver.call_later(max(0.0, when - time.monotonic()),
                                                    self._on_timer)
        return 0

    def _on_timer(self):
        self._timer_handle = None
        self._service()

    def _service(self):
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
    def run_forever(self):
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

    def stop(self):
        """Stop after the current turn (thread-safe through call_soon_threadsafe); when
        run by asyncio, stop the asyncio loop."""
        if self.driver is not None:
            self.driver.stop()
            return
        self._stopping = True

    def close(self):
        self.detach()
        if self._epfd >= 0:
            close(self._epfd)
            self._epfd = -1
        if self._wake_fd >= 0:
            close(self._wake_fd)
            self._wake_fd = -1

    cdef int _run_once(self) except -1:
        cdef int timeout_ms, n, i, fd
        cdef uint32_t events
        cdef double delay
        cdef list timers = self._timers
        if self._ready or self._dirty or self.driver is not None:
            timeout_ms = 0
        elif timers:
            delay = timers[0].when - time.monotonic()
            # round up: waking early would only spin
            timeout_ms = 0 if delay <= 0 else <int>(delay * 1000.0) + 1
        else:
            timeout_ms = -1
        with nogil:
            n = epoll_wait(self._epfd, self._events, MAX_EVENTS, timeout_ms)
        if n < 0:
            if errno != EINTR:
                raise OSError(errno, os.strerror(errno))
            # A signal interrupted the wait: run its Python handler now (it hands over to
            # the loop through call_soon_threadsafe), not at the next bytecode boundary.
            PyErr_CheckSignals()
            n = 0
        for i in range(n):
            fd = self._events[i].data.fd
            events = self._events[i].events
            # NOTE: an exception from one fd's callback is logged, never allowed to stop
            # the loop (one bad connection must not take the server down).
            if events & (EPOLLIN | EPOLLHUP | EPOLLERR):
                callback = self._readers.get(fd)
                if callback is not None:
                    try:
                        callback()
                    except Exception:
                        log.exception("unhandled exception in reader callback %r", callback)
            if events & (EPOLLOUT | EPOLLERR):
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
            dirty = self._dirty
            self._dirty = []
            for transport in dirty:
                try:
                    (<Transport>transport)._flush()
                except Exception:
                    log.exception("unhandled exception while flushing %r", transport)
                    transport.abort()
        return 0


@cython.final
cdef class Transport:
    """A connected, non-blocking stream socket (a file descriptor) with an outbox.

    Its fields are declared in _loop_c.pxd (the hub writes to it at C level).
    """

    def __cinit__(self):
        self.fd = -1
        self._out = NULL
        self._ssl = NULL

    def __init__(self, Loop loop, sock, protocol,
                 Py_ssize_t high_water=DEFAULT_HIGH_WATER_BYTES,
                 Py_ssize_t low_water=DEFAULT_LOW_WATER_BYTES, tuple peer=None, tls=None):
        # ``sock``: a socket object (its fd is detached: the transport owns it) or an fd.
        if isinstance(sock, int):
            self.fd = sock
        else:
            self.fd = sock.detach()
        self.loop = loop
        self._loop = loop
        self.protocol = protocol
        self.peer = peer if peer is not None else _peer_of_fd(self.fd)
        self.high_water = high_water
        self.low_water = low_water
        self._reading = True
        self._on_readable_cb = self._on_readable
        self._on_writable_cb = self._on_writable
        self.secure = tls is not None
        self.alpn = None
        if tls is not None:
            self._start_tls(tls)
        loop.add_reader(self.fd, self._on_readable_cb)

    def __dealloc__(self):
        free(self._out)
        if self._ssl != NULL:
            conduit_tls_free(self._ssl)
        if self.fd >= 0 and not self._closed:
            close(self.fd)

    # -- reading -----------------------------------------------------------------------
    def _on_readable(self):
        cdef ssize_t n
        with nogil:
            n = recv(self.fd, _read_buffer, READ_BUFFER_BYTES, 0)
        if self._ssl != NULL and n >= 0:
            data = self._tls_received(n)
            if data is None:
                return
            n = len(data)
        else:
            data = None
        try:
            if n > 0:
                self.protocol.data_received(
                    data if data is not None else PyBytes_FromStringAndSize(_read_buffer, n))
                return
            if n == 0:
                self.pause_reading()
                self.protocol.eof_received()
                return
        except Exception as exc:
            log.exception("protocol error on fd %d; closing the connection", self.fd)
            self._close_now(exc)
            return
        if errno != EAGAIN and errno != EINTR:
            self._fatal(OSError(errno, os.strerror(errno)))

    def pause_reading(self):
        if self._reading and not self._closed:
            self._reading = False
            self._loop.remove_reader(self.fd)

    def resume_reading(self):
        if not self._reading and not self._closed and not self._closing:
            self._reading = True
            self._loop.add_reader(self.fd, self._on_readable_cb)

    # -- writing -----------------------------------------------------------------------
    cdef int _append(self, const char* data, Py_ssize_t n) except -1:
        cdef Py_ssize_t used = self._end - self._start
        cdef Py_ssize_t cap
        cdef char* grown
        if self._end + n > self._cap:
            if self._start and used + n <= self._cap:
                memmove(self._out, self._out + self._start, used)
            else:
                cap = self._cap * 2 if self._cap else 16384
                while cap < used + n:
                    cap *= 2
                if self._start:
                    grown = <char*>malloc(cap)
                    if grown == NULL:
                        raise MemoryError()
                    memcpy(grown, self._out + self._start, used)
                    free(self._out)
                else:
                    grown = <char*>realloc(self._out, cap)
                    if grown == NULL:
                        raise MemoryError()
                self._out = grown
                self._cap = cap
            self._start = 0
            self._end = used
        memcpy(self._out + self._end, data, n)
        self._end += n
        return 0

    cdef int _wrote(self) except -1:
        if not self._dirty:
            self._dirty = True
            self._loop._mark_dirty_c(self)
        if not self._paused and self._queued() > self.high_water:
            self._paused = True
            self.protocol.pause_writing()
        return 0

    cdef Py_ssize_t _queued(self):
        """Bytes written and not sent yet (with TLS: plaintext and ciphertext)."""
        cdef char* data
        if self._ssl != NULL:
            return self._end - self._start + conduit_tls_pending(self._ssl, &data)
        return self._end - self._start

    cdef int _append_object(self, data) except -1:
        """Append any bytes-like object (bytes without the buffer protocol's overhead)."""
        cdef Py_buffer view
        if type(data) is bytes:
            return self._append(PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data))
        PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
        try:
            self._append(<const char*>view.buf, view.len)
        finally:
            PyBuffer_Release(&view)
        return 0

    def write(self, data):
        """Queue bytes; they are sent at the end of this loop turn."""
        if self._closing or self._closed:
            return
        self._append_object(data)
        self._wrote()

    def writelines(self, buffers):
        if self._closing or self._closed:
            return
        for data in buffers:
            self._append_object(data)
        self._wrote()

    cdef int _writev3(self, const char* a, Py_ssize_t na, const char* b, Py_ssize_t nb,
                      const char* c, Py_ssize_t nc) except -1:
        """``writev`` for compiled callers (the hub): three raw buffers, no Python objects."""
        cdef iovec iov[3]
        cdef const char* bases[3]
        cdef Py_ssize_t sizes[3]
        cdef msghdr msg
        cdef Py_ssize_t sent = 0, i
        if self._closing or self._closed:
            return 0
        if self._ssl != NULL:
            # TLS: into the outbox; the turn's flush encrypts it all at once (one record
            # per 16 KiB, not one per piece) and sends it with one system call.
            self._append(a, na)
            self._append(b, nb)
            self._append(c, nc)
            self._wrote()
            return 0
        bases[0] = a
        bases[1] = b
        bases[2] = c
        sizes[0] = na
        sizes[1] = nb
        sizes[2] = nc
        if self._end == self._start:
            for i in range(3):
                iov[i].iov_base = <void*>bases[i]
                iov[i].iov_len = sizes[i]
            memset(&msg, 0, sizeof(msg))
            msg.msg_iov = iov
            msg.msg_iovlen = 3
            with nogil:
                sent = sendmsg(self.fd, &msg, MSG_NOSIGNAL)
            if sent < 0:
                if errno != EAGAIN and errno != EINTR:
                    self._fatal(OSError(errno, os.strerror(errno)))
                    return 0
                sent = 0
        for i in range(3):
            if sent >= sizes[i]:
                sent -= sizes[i]
                continue
            self._append(bases[i] + sent, sizes[i] - sent)
            sent = 0
        if self._end > self._start:
            self._wrote()
        return 0

    def writev(self, buffers):
        """Send now if nothing is queued (zero copy, one sendmsg); queue what is left."""
        cdef iovec iov[MAX_IOV]
        cdef Py_buffer views[MAX_IOV]
        cdef msghdr msg
        cdef Py_ssize_t count = 0, i, sent, size
        if self._closing or self._closed:
            return
        if self._end > self._start or len(buffers) > MAX_IOV or self._ssl != NULL:
            self.writelines(buffers)
            return
        try:
            for data in buffers:
                PyObject_GetBuffer(data, &views[count], PyBUF_SIMPLE)
                iov[count].iov_base = views[count].buf
                iov[count].iov_len = views[count].len
                count += 1
            memset(&msg, 0, sizeof(msg))
            msg.msg_iov = iov
            msg.msg_iovlen = count
            with nogil:
                sent = sendmsg(self.fd, &msg, MSG_NOSIGNAL)
            if sent < 0:
                if errno != EAGAIN and errno != EINTR:
                    self._fatal(OSError(errno, os.strerror(errno)))
                    return
                sent = 0
            for i in range(count):
                size = views[i].len
                if sent >= size:
                    sent -= size
                    continue
                self._append(<const char*>views[i].buf + sent, size - sent)
                sent = 0
        finally:
            for i in range(count):
                PyBuffer_Release(&views[i])
        if self._end > self._start:
            self._wrote()

    def get_write_buffer_size(self):
        return self._queued()

    cdef int _flush(self) except -1:
        cdef ssize_t sent
        self._dirty = False
        if self._closed:
            return 0
        if self._ssl != NULL:
            return self._flush_tls()
        if self._end > self._start:
            with nogil:
                sent = send(self.fd, self._out + self._start, self._end - self._start,
                            MSG_NOSIGNAL)
            if sent < 0:
                if errno != EAGAIN and errno != EINTR:
                    self._fatal(OSError(errno, os.strerror(errno)))
                    return 0
            else:
                self._start += sent
        if self._end > self._start:
            if not self._writing:
                self._writing = True
                self._loop.add_writer(self.fd, self._on_writable_cb)
        else:
            # drained: give the memory back (an idle stream holds no outbox)
            free(self._out)
            self._out = NULL
            self._start = self._end = self._cap = 0
            if self._writing:
                self._writing = False
                self._loop.remove_writer(self.fd)
            if self._closing:
                self._close_now(None)
                return 0
        if self._paused and self._end - self._start <= self.low_water:
            self._paused = False
            self.protocol.resume_writing()
        return 0

    def _on_writable(self):
        if not self._dirty:
            self._flush()

    # -- closing -----------------------------------------------------------------------
    def is_closing(self):
        return self._closing or self._closed

    def close(self):
        """Close after the queued bytes are sent."""
        if self._closing or self._closed:
            return
        self._closing = True
        self.pause_reading()
        if self._ssl != NULL:
            self._close_tls()
            return
        if self._end == self._start:
            self._close_now(None)
        elif not self._dirty:
            self._dirty = True
            self._loop._mark_dirty_c(self)

    def abort(self):
        """Close at once, dropping queued bytes."""
        self._close_now(None)

    cdef int _fatal(self, exc) except -1:
        log.debug("connection error on fd %d: %s", self.fd, exc)
        self._close_now(exc)
        return 0

    cdef int _close_now(self, exc) except -1:
        if self._closed:
            return 0
        self._closed = True
        self._closing = True
        free(self._out)
        self._out = NULL
        self._start = self._end = self._cap = 0
        if self._ssl != NULL:
            conduit_tls_free(self._ssl)
            self._ssl = NULL
            self._tls_context = None
            if self._handshake_timer is not None:
                self._handshake_timer.cancel()
                self._handshake_timer = None
        if self._reading:
            self._reading = False
            self._loop.remove_reader(self.fd)
        if self._writing:
            self._writing = False
            self._loop.remove_writer(self.fd)
        close(self.fd)
        self._loop.call_soon(self.protocol.connection_lost, exc)
        return 0

    def _fatal_error(self, exc):
        self._fatal(exc)

    # -- TLS (conduit.net.tls; the pure twin's _start_tls and neighbours, in C) ------------
    def _start_tls(self, tls):
        context = tls.context
        if not tls_available() or type(context) is not SSLContext:
            raise RuntimeError("conduit's compiled loop cannot speak TLS here (built without "
                               "OpenSSL's headers, Debian: libssl-dev, or on a Python whose "
                               "ssl.SSLContext it does not know): run with "
                               "CONDUIT_EXTENSIONS=0")
        ctx = conduit_tls_ctx(context)
        if ctx == NULL or conduit_tls_ctx_options(ctx) != <unsigned long long>context.options:
            raise RuntimeError("this Python's ssl.SSLContext is not laid out as conduit "
                               "expects; run with CONDUIT_EXTENSIONS=0")
        self._ssl = conduit_tls_new(ctx)
        if self._ssl == NULL:
            raise MemoryError()
        self._tls_context = context  # its ALPN callback's data, until the handshake is done
        self._handshaking = True
        self._seen_bytes = False
        self._handshake_timer = self._loop.call_later(tls.handshake_timeout,
                                                      self._handshake_timed_out)

    def _handshake_timed_out(self):
        self._handshake_timer = None
        if self._handshaking and not self._closed:
            log.info("TLS handshake from %s:%s timed out", *self.peer)
            self._close_now(None)

    cdef object _tls_received(self, Py_ssize_t n):
        """``n`` bytes of ciphertext in ``_read_buffer``: the plaintext for the protocol,
        b"" at the end of the stream, or None for nothing (yet)."""
        cdef char why[256]
        cdef char proto[64]
        cdef int r, size
        cdef list chunks
        cdef bint ended = False
        if n == 0:
            if self._handshaking:
                if self._seen_bytes:
                    log.info("TLS handshake from %s:%s failed: the client closed", *self.peer)
                self._close_now(None)
                return None
            return b""
        if self._handshaking:
            if not self._seen_bytes and _looks_like_plain_http(
                    PyBytes_FromStringAndSize(_read_buffer, min(n, 8))):
                log.info("plain HTTP request on the TLS port from %s:%s", *self.peer)
                send(self.fd, PyBytes_AS_STRING(_PLAIN_HTTP_ANSWER),
                     PyBytes_GET_SIZE(_PLAIN_HTTP_ANSWER), MSG_NOSIGNAL)
                self._close_now(None)
                return None
            self._seen_bytes = True
        if conduit_tls_feed(self._ssl, _read_buffer, <int>n) != 0:
            self._close_now(MemoryError())
            return None
        if self._handshaking:
            r = conduit_tls_handshake(self._ssl, why, sizeof(why))
            if r == 0:
                self._send_cipher()
                return None
            if r < 0:
                log.info("TLS handshake from %s:%s failed: %s", *self.peer,
                         why.decode("utf-8", "replace"))
                self._send_cipher()  # the alert, if there is one
                self._close_now(None)
                return None
            self._handshaking = False
            self._tls_context = None
            if self._handshake_timer is not None:
                self._handshake_timer.cancel()
                self._handshake_timer = None
            size = conduit_tls_alpn(self._ssl, proto, sizeof(proto))
            if size:
                self.alpn = proto[:size].decode("ascii", "replace")
            if self._end > self._start and not self._dirty:  # written during the handshake
                self._dirty = True
                self._loop._mark_dirty_c(self)
        chunks = []
        while True:
            r = conduit_tls_read(self._ssl, _plain_buffer, READ_BUFFER_BYTES, why, sizeof(why))
            if r > 0:
                chunks.append(PyBytes_FromStringAndSize(_plain_buffer, r))
                continue
            if r == -2:
                ended = True
            elif r == -1:
                log.info("TLS error from %s:%s: %s", *self.peer,
                         why.decode("utf-8", "replace"))
                self._close_now(None)
                return None
            break
        if conduit_tls_pending(self._ssl, NULL) > 0:  # post-handshake messages
            self._send_cipher()
        if chunks:
            if ended:  # what came before the close_notify first; the end next turn
                self._loop.call_soon(self._tls_ended)
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)
        return b"" if ended else None

    def _tls_ended(self):
        if not self._closed and self._reading:
            self.pause_reading()
            try:
                self.protocol.eof_received()
            except Exception as exc:
                log.exception("protocol error on fd %d; closing the connection", self.fd)
                self._close_now(exc)

    cdef int _flush_tls(self) except -1:
        cdef char why[256]
        cdef bint had_plain = self._end > self._start
        if had_plain and not self._handshaking:
            # PERF: everything the turn queued, encrypted at once (records of up to 16
            # KiB), then one send.
            if conduit_tls_write(self._ssl, self._out + self._start, self._end - self._start,
                                 why, sizeof(why)) != 0:
                log.info("TLS error to %s:%s: %s", *self.peer,
                         why.decode("utf-8", "replace"))
                self._close_now(None)
                return 0
            free(self._out)
            self._out = NULL
            self._start = self._end = self._cap = 0
        self._send_cipher()
        if self._closed:
            return 0
        if conduit_tls_pending(self._ssl, NULL) > 0:
            if not self._writing:
                self._writing = True
                self._loop.add_writer(self.fd, self._on_writable_cb)
        else:
            if self._writing:
                self._writing = False
                self._loop.remove_writer(self.fd)
            if self._closing and self._end == self._start:
                self._close_now(None)
                return 0
        if self._paused and self._queued() <= self.low_water:
            self._paused = False
            self.protocol.resume_writing()
        return 0

    cdef int _send_cipher(self) except -1:
        cdef char* data = NULL
        cdef long pending = conduit_tls_pending(self._ssl, &data)
        cdef ssize_t sent
        if pending <= 0:
            return 0
        with nogil:
            sent = send(self.fd, data, pending, MSG_NOSIGNAL)
        if sent < 0:
            if errno != EAGAIN and errno != EINTR:
                self._fatal(OSError(errno, os.strerror(errno)))
            return 0
        conduit_tls_consume(self._ssl, sent)
        return 0

    def _close_tls(self):
        # What is queued is encrypted, then our close_notify; the flush sends both and
        # closes (_flush_tls).
        cdef char why[256]
        if not self._handshaking:
            if self._end > self._start:
                conduit_tls_write(self._ssl, self._out + self._start,
                                  self._end - self._start, why, sizeof(why))
            conduit_tls_shutdown(self._ssl)
        free(self._out)
        self._out = NULL
        self._start = self._end = self._cap = 0
        if not self._dirty:
            self._dirty = True
            self._loop._mark_dirty_c(self)


cdef class Listener:
    """Accepts connections on a listening socket and attaches a protocol to each."""

    cdef public object loop
    cdef public object sock
    cdef public object protocol_factory
    cdef public Py_ssize_t high_water
    cdef public Py_ssize_t low_water
    cdef public object tls  # a conduit.net.tls.ServerTLS: every connection speaks TLS
    cdef bint _accepting
    cdef object _retry
    cdef int _fd

    def __init__(self, Loop loop, sock, protocol_factory,
                 Py_ssize_t high_water=DEFAULT_HIGH_WATER_BYTES,
                 Py_ssize_t low_water=DEFAULT_LOW_WATER_BYTES, tls=None):
        self.loop = loop
        self.sock = sock
        self.tls = tls
        self._fd = sock.fileno()
        self.protocol_factory = protocol_factory
        self.high_water = high_water
        self.low_water = low_water
        self._retry = None
        self.resume()

    @property
    def address(self):
        return self.sock.getsockname()[:2]

    def pause(self):
        if self._accepting:
            self._accepting = False
            self.loop.remove_reader(self._fd)

    def resume(self):
        if not self._accepting and self.sock.fileno() != -1:
            self._accepting = True
            self.loop.add_reader(self._fd, self._on_readable)

    def close(self):
        self.pause()
        if self._retry is not None:
            self._retry.cancel()
        self.sock.close()

    def _on_readable(self):
        cdef sockaddr_storage addr
        cdef socklen_t size
        cdef int fd, one = 1, err
        for _ in range(ACCEPTS_PER_TURN):
            size = sizeof(addr)
            with nogil:
                fd = accept4(self._fd, <sockaddr*>&addr, &size, SOCK_NONBLOCK | SOCK_CLOEXEC)
            if fd < 0:
                err = errno
                if err == EAGAIN or err == EINTR:
                    return
                if err == EMFILE or err == ENFILE or err == ENOBUFS or err == ENOMEM:
                    log.error("cannot accept connections: %s; pausing for 0.1 s",
                              os.strerror(err))
                    self.pause()
                    self._retry = self.loop.call_later(0.1, self.resume)
                    return
                if err == ECONNABORTED or err == EPROTO or err == EPERM:
                    continue
                raise OSError(err, os.strerror(err))
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one))
            transport = None
            try:
                protocol = self.protocol_factory()
                transport = Transport(self.loop, fd, protocol, self.high_water,
                                      self.low_water, _peer_of(&addr), self.tls)
                protocol.connection_made(transport)
            except Exception:
                log.exception("error while setting up a connection; closing it")
                if transport is not None:
                    transport.abort()
                else:
                    close(fd)
