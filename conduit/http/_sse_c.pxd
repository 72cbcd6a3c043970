# The layout of the compiled SSEEvent, so other compiled modules (the stream pump) can
# read an event's frame, or have a simple event write itself into their buffer, without a
# method call or an intermediate bytes object.

cimport cython


@cython.final
cdef class SSEEvent:
    cdef str _data              # the text sent; None until asked for when data is a number
    cdef readonly str event     # None when absent
    cdef str _id                # None when absent, or until asked for when id is a number
    cdef readonly object retry  # int or None
    cdef bytes _frame           # the frame; None until first needed for a simple event
    cdef Py_ssize_t _size       # the frame's length in bytes, known once built
    # A simple event (rule 10 of _sse_c.pyx) is written from these by _emit:
    cdef bint _dnum             # data is the number _dval of _dn characters (else _dp, _dn)
    cdef bint _inum             # id is the number _ival of _in characters (else _ip, _in)
    cdef long long _dval
    cdef long long _ival
    cdef const char* _dp
    cdef Py_ssize_t _dn
    cdef const char* _ep        # event's UTF-8 (_en < 0: no event line)
    cdef Py_ssize_t _en
    cdef const char* _ip
    cdef Py_ssize_t _in         # < 0 with _inum false: no id line

    cpdef bytes encode(self)
    cdef char* _emit(self, char* w) noexcept
