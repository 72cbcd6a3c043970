# The layout of the compiled SSEEvent, so other compiled modules (the stream pump) can
# read an event's frame without a method call.

cimport cython


@cython.final
cdef class SSEEvent:
    cdef readonly str data      # the text the client receives
    cdef readonly str event     # None when absent
    cdef readonly str id        # None when absent
    cdef readonly object retry  # int or None
    cdef bytes _frame           # the encoded frame, built once in __cinit__

    cpdef bytes encode(self)
