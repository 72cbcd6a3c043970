# The layout of the compiled loop's classes, so other compiled modules (the fan-out hub)
# can write to a transport at C level. See _loop_c.pyx for what each part does.

cimport cython
from libc.stdint cimport uint32_t, uint64_t

cdef extern from "<sys/epoll.h>" nogil:
    ctypedef union epoll_data_t:
        void* ptr
        int fd
        uint32_t u32
        uint64_t u64
    cdef struct epoll_event:
        uint32_t events
        epoll_data_t data
    int epoll_create1(int flags)
    int epoll_ctl(int epfd, int op, int fd, epoll_event* event)
    int epoll_wait(int epfd, epoll_event* events, int maxevents, int timeout)
    int EPOLL_CLOEXEC, EPOLL_CTL_ADD, EPOLL_CTL_MOD, EPOLL_CTL_DEL
    uint32_t EPOLLIN, EPOLLOUT, EPOLLERR, EPOLLHUP


cdef enum:
    MAX_EVENTS = 512


@cython.final
cdef class Loop:
    cdef int _epfd
    cdef int _wake_fd
    cdef dict _readers
    cdef dict _writers
    cdef dict _masks
    cdef object _ready
    cdef list _timers
    cdef list _dirty
    cdef bint _stopping
    cdef bint _running
    cdef public object driver    # the asyncio loop running this one (attach), else None
    cdef bint _kicked            # a call_soon(_service) is pending on the driver
    cdef bint _in_service        # inside a turn run by the driver
    cdef object _timer_handle    # the driver's timer for our nearest timer
    cdef double _timer_when
    cdef epoll_event _events[MAX_EVENTS]

    cdef int _update(self, int fd) except -1
    cdef int _run_once(self) except -1
    cdef int _kick(self) except -1
    cdef int _mark_dirty_c(self, transport) except -1
    cdef int _arm(self, double when) except -1


@cython.final
cdef class Transport:
    cdef public object loop
    cdef public object protocol
    cdef public tuple peer
    cdef readonly int fd
    cdef public Py_ssize_t high_water
    cdef public Py_ssize_t low_water
    cdef Loop _loop
    cdef char* _out          # outbox bytes are _out[_start:_end]
    cdef Py_ssize_t _start
    cdef Py_ssize_t _end
    cdef Py_ssize_t _cap
    cdef bint _dirty
    cdef bint _paused
    cdef bint _closing
    cdef bint _closed
    cdef bint _reading
    cdef bint _writing
    cdef object _on_readable_cb
    cdef object _on_writable_cb
    # TLS (conduit.net.tls; "TLS" in _loop_c.pyx): NULL for plain TCP
    cdef void* _ssl          # the connection's SSL*, over two memory BIOs
    cdef public bint secure  # this connection speaks TLS
    cdef public object alpn  # the protocol ALPN chose (str), once the handshake is done
    cdef bint _handshaking
    cdef bint _seen_bytes    # any ciphertext arrived (a handshake may have begun)
    cdef object _tls_context  # the ssl.SSLContext, held until the handshake is done
    cdef object _handshake_timer

    cdef Py_ssize_t _queued(self)
    cdef int _append(self, const char* data, Py_ssize_t n) except -1
    cdef int _wrote(self) except -1
    cdef int _append_object(self, data) except -1
    cdef int _writev3(self, const char* a, Py_ssize_t na, const char* b, Py_ssize_t nb,
                      const char* c, Py_ssize_t nc) except -1
    cdef int _flush(self) except -1
    cdef int _flush_tls(self) except -1
    cdef int _send_cipher(self) except -1
    cdef object _tls_received(self, Py_ssize_t n)
    cdef int _fatal(self, exc) except -1
    cdef int _close_now(self, exc) except -1
