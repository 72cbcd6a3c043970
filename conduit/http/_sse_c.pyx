# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Server-sent event framing, compiled twin of ``_sse_py.py``.

The framing rules (field order, data splitting, validation, immutability) are written once,
at the top of ``_sse_py.py``; this twin obeys them byte for byte and exception for
exception, and the tests run every case on both. User-facing docstrings are in
``_sse_c.pyi``.

How this twin is fast
1. Every field becomes a (pointer, length) pair of UTF-8 bytes without copying:
   ``PyUnicode_AsUTF8AndSize`` returns the str's own buffer for an ASCII str, and for other
   strs builds the UTF-8 once and caches it on the str (so a str sent twice is encoded once).
   Bytes data is used in place; it is only decoded (to validate it, or to keep its text on
   an ``SSEEvent``) when it holds a byte >= 0x80 or an object is being built.
2. Two ``memchr`` calls (vectorised in libc) decide whether data holds a line end at all.
   Only then does the splitting path run: one pass counts the pieces, a second copies the
   runs between line ends with ``memcpy``; both jump from line end to line end with
   ``memchr`` (``_LineEnds``) instead of testing every byte.
3. The frame is allocated once at its exact length (``PyBytes_FromStringAndSize(NULL, n)``)
   and filled with ``memcpy``; no intermediate str, list or join.
4. Integers that fit in a C ``long long`` (id, retry) are written as decimal digits by
   hand; larger ones go through ``int.__repr__``, as in the pure twin.
5. Errors stay off the hot path: the UTF-8 call is declared without an exception clause and
   its NULL is checked by hand; the cold helper rebuilds the same message as the pure twin.
6. ``SSEEvent`` is a final type with a free list and read-only C fields; it is built in
   ``__cinit__`` (so re-calling ``__init__`` cannot change it) by the same builder as
   ``encode_event``, and keeps the frame, so ``encode()`` returns it without work.
7. A simple event is validated in ``__cinit__`` but framed only when needed: one without
   ``retry`` whose data is an int that fits a ``long long`` or a str without CR or LF,
   whose event is a str and whose id an int or a str (``_simple``). It keeps pointers to
   its fields' UTF-8 (the strs it holds own those buffers) and its numbers as C integers,
   so the stream pump has it write its frame straight into the pump's batch buffer
   (``_emit``): no frame object, no text for an int data or id (``.data`` and ``.id``
   make theirs when first read), one copy. ``encode()`` builds the frame the first time
   and keeps it, so it is still one object, built once, for every later caller (a channel
   formats once and sends the same bytes to every subscriber).
8. A number held in one 30-bit digit (every id and counter below a billion) is read from the
   int object in place (``conduit_compact_long``); larger ones go through
   ``PyLong_AsLongLongAndOverflow``.
9. ``SSEEvent(data, event=..., id=...)`` (and the seed's ``SSEEvent(data=..., ...)``) is
   called through the type's ``tp_vectorcall`` (``_sse_vectorcall``, at the end of this
   file): no argument tuple, no keyword dict, no keyword parsing. A generator that
   yields one event per item spends about a quarter of its time building the event,
   and this was most of that.
10. Short copies (an event name, a short str) are two overlapping 4- or 8-byte moves, not
    a call into libc's memcpy; a number's length comes from its bit length.
11. JSON data (rule 2's "any other value") is written by this module's own encoder,
    straight as UTF-8 into a buffer on the stack (``_json_write``; the heap past 1 KiB),
    then copied into the frame: no str, no chunk list, no join, no UTF-8 pass. It gives
    the json module's bytes exactly for exact dict (str keys), list, tuple, str, int (in
    a long long), float, bool and None, 64 levels deep; for anything else (subclasses,
    other keys, NaN, big ints, lone surrogates, cycles, unknown types) it gives up and the
    json module encodes the whole value, so the text or the exception is the same as
    without it. Strings are read from the str's own storage, not through a cached UTF-8
    copy; most floats are written by ``_short_float`` (its docstring says why it is
    float.__repr__), the rest by ``PyOS_double_to_string``, as repr does. An ``SSEEvent``
    keeps the frame and decodes its data text from it when ``.data`` is first read. A
    small dict event: ~2.4 us with the json module, ~0.12 us here (bench/micro_json.py).
"""

cimport cython
from cpython.bool cimport PyBool_Check
from cpython.bytes cimport (
    PyBytes_AS_STRING,
    PyBytes_Check,
    PyBytes_FromStringAndSize,
    PyBytes_GET_SIZE,
)
from cpython.exc cimport PyErr_Clear
from cpython.object cimport PyObject, PyObject_Str, PyTypeObject
from cpython.tuple cimport PyTuple_GET_ITEM, PyTuple_GET_SIZE
from cpython.long cimport PyLong_AsLongLongAndOverflow, PyLong_Check
from cpython.unicode cimport (
    PyUnicode_Check,
    PyUnicode_CheckExact,
    PyUnicode_DecodeUTF8,
    PyUnicode_FromStringAndSize,
)
from libc.math cimport fabs, isfinite, signbit
from libc.stdint cimport uint32_t, uint64_t
from libc.string cimport memchr, memcpy, strlen

import json

cdef extern from "Python.h":
    # NOTE: declared without an exception clause on purpose (rule 5): the caller checks
    # for NULL and calls _raise_unencodable, which clears the error and raises ours.
    const char* _utf8_and_size "PyUnicode_AsUTF8AndSize"(object s, Py_ssize_t* size)
    Py_ssize_t PyVectorcall_NARGS(size_t nargsf)

cdef extern from *:
    """
    /* Rule 8: an exact int held in one digit (|v| < 2**30) read without a call. */
    static inline int conduit_compact_long(PyObject *v, long long *out) {
    #if PY_VERSION_HEX >= 0x030C0000
        if (PyUnstable_Long_IsCompact((PyLongObject *)v)) {
            *out = (long long)PyUnstable_Long_CompactValue((PyLongObject *)v);
            return 1;
        }
        return 0;
    #else
        Py_ssize_t size = Py_SIZE(v);
        if (size == 1) { *out = (long long)((PyLongObject *)v)->ob_digit[0]; return 1; }
        if (size == 0) { *out = 0; return 1; }
        if (size == -1) { *out = -(long long)((PyLongObject *)v)->ob_digit[0]; return 1; }
        return 0;
    #endif
    }
    /* Rule 9: SSEEvent(...) through vectorcall. A type's tp_vectorcall is never inherited
       (and SSEEvent is final), so this only ever sees SSEEvent itself. */
    static vectorcallfunc conduit_sse_new_vectorcall = NULL;
    static inline void conduit_set_type_vectorcall(PyTypeObject *type, void *func) {
        /* Cython's own vectorcall (when it makes one) allocates without an argument
           tuple; it is kept to make the empty object that _sse_fill fills. */
        conduit_sse_new_vectorcall = type->tp_vectorcall;
        type->tp_vectorcall = (vectorcallfunc)func;
    }
    static inline PyObject *conduit_new_empty(PyTypeObject *type, PyObject *empty) {
        if (conduit_sse_new_vectorcall != NULL)
            return conduit_sse_new_vectorcall((PyObject *)type, NULL, 0, NULL);
        return type->tp_new(type, empty, NULL);
    }
    /* Rule 10: the short copies of _emit (an event name, a str id or data) without a call
       into libc: two overlapping loads and stores cover any length from 4 to 16. */
    static inline char *conduit_put(char *w, const char *s, Py_ssize_t n) {
        if (n > 16) { memcpy(w, s, (size_t)n); return w + n; }
        if (n >= 8) {
            uint64_t a, b;
            memcpy(&a, s, 8); memcpy(&b, s + n - 8, 8);
            memcpy(w, &a, 8); memcpy(w + n - 8, &b, 8);
        } else if (n >= 4) {
            uint32_t a, b;
            memcpy(&a, s, 4); memcpy(&b, s + n - 4, 4);
            memcpy(w, &a, 4); memcpy(w + n - 4, &b, 4);
        } else if (n > 0) {
            w[0] = s[0]; w[n >> 1] = s[n >> 1]; w[n - 1] = s[n - 1];
        }
        return w + n;
    }
    /* u's decimal digits written right to left, ending just before end: two digits per
       step from a table of pairs, with 32-bit arithmetic once u fits (a cheaper divide). */
    static inline void conduit_digits(char *end, unsigned long long u, const char *pairs) {
        char *p = end;
        uint32_t v, q;
        while (u > 0xFFFFFFFFULL) {
            unsigned long long q64 = u / 100;
            p -= 2;
            memcpy(p, pairs + 2 * (unsigned int)(u - q64 * 100), 2);
            u = q64;
        }
        v = (uint32_t)u;
        while (v >= 100) {
            q = v / 100;
            p -= 2;
            memcpy(p, pairs + 2 * (v - q * 100), 2);
            v = q;
        }
        if (v >= 10) memcpy(p - 2, pairs + 2 * v, 2);
        else p[-1] = (char)('0' + v);
    }
    /* Rule 11: a str built through the legacy (wchar_t) API may not be "ready" (have its
       compact form) before 3.12; from 3.12 on every str is. -1 with an error set. */
    static inline int conduit_str_ready(PyObject *s) {
    #if PY_VERSION_HEX < 0x030C0000
        return PyUnicode_READY(s);
    #else
        (void)s;
        return 0;
    #endif
    }
    /* Decimal length of u (u <= 2**63): log10 from the bit length, one compare to fix. */
    static inline Py_ssize_t conduit_ull_len(unsigned long long u,
                                             const unsigned long long *pow10) {
        unsigned long long v = u | 1;
        unsigned int t = ((unsigned int)(64 - __builtin_clzll(v)) * 1233u) >> 12;
        return (Py_ssize_t)t - (v < pow10[t]) + 1;
    }
    """
    bint conduit_compact_long(object v, long long* out) noexcept
    void conduit_set_type_vectorcall(PyTypeObject* type, void* func) noexcept
    object conduit_new_empty(PyTypeObject* type, object empty)
    char* conduit_put(char* w, const char* s, Py_ssize_t n) noexcept nogil
    void conduit_digits(char* end, unsigned long long u, const char* pairs) noexcept nogil
    Py_ssize_t conduit_ull_len(unsigned long long u, const unsigned long long* pow10) noexcept nogil
    int conduit_str_ready(PyObject* s) noexcept
    # The same as conduit_compact_long, for the JSON encoder's borrowed references.
    bint _compact_long_ref "conduit_compact_long"(PyObject* v, long long* out) noexcept

# NOTE: json.dumps with non-default arguments builds a JSONEncoder per call; this one
# encoder gives the same output as json.dumps(value, separators=(",", ":"),
# ensure_ascii=False). Rule 11's encoder gives its bytes for the common values and hands
# it every other.
# allow_nan=False: NaN/Infinity are not JSON, and the browser's JSON.parse rejects them.
_JSON_ENCODE = json.JSONEncoder(
    separators=(",", ":"), ensure_ascii=False, allow_nan=False
).encode

cdef bytes _HEARTBEAT = b":\n\n"

cdef enum:
    # Room for the longest long long, "-9223372036854775808" (20 characters).
    _LL_DIGITS = 24


cdef int _raise_unencodable(object s, str field) except -1:
    # Cold path of rule 5: re-encode to get the codec's exception, as the pure twin does.
    PyErr_Clear()
    try:
        s.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(
            f"SSE {field} must be encodable as UTF-8 ({exc.reason} at index {exc.start})"
        ) from exc
    # The UTF-8 call failed for another reason (out of memory) that did not repeat.
    raise MemoryError()


cdef inline const char* _utf8(object s, Py_ssize_t* n, str field) except NULL:
    cdef const char* p = _utf8_and_size(s, n)
    if p == NULL:
        _raise_unencodable(s, field)
    return p


cdef inline bint _is_ascii(const char* p, Py_ssize_t n) noexcept nogil:
    cdef const unsigned char* u = <const unsigned char*>p
    cdef Py_ssize_t i = 0
    cdef uint64_t word
    # PERF: eight bytes per step; memcpy into a local is the portable unaligned load.
    while i + 8 <= n:
        memcpy(&word, u + i, 8)
        if word & 0x8080808080808080ULL:
            return False
        i += 8
    while i < n:
        if u[i] & 0x80:
            return False
        i += 1
    return True


cdef inline bint _has_line_end(const char* p, Py_ssize_t n, bint nul) noexcept nogil:
    # Fields other than data are short: one plain loop beats three memchr calls.
    cdef Py_ssize_t i
    cdef char c
    for i in range(n):
        c = p[i]
        if c == b'\n' or c == b'\r' or (nul and c == 0):
            return True
    return False


cdef inline Py_ssize_t _format_ll(long long v, char* out) noexcept nogil:
    # Decimal digits of v into out (at least _LL_DIGITS bytes); returns the length.
    cdef char tmp[_LL_DIGITS]
    cdef Py_ssize_t i = _LL_DIGITS
    cdef Py_ssize_t n = 0
    cdef unsigned long long u
    if v < 0:
        # Negate in unsigned arithmetic: -LLONG_MIN overflows a long long.
        u = <unsigned long long>0 - <unsigned long long>v
        out[0] = b'-'
        n = 1
    else:
        u = <unsigned long long>v
    while True:
        i -= 1
        tmp[i] = <char>(48 + <int>(u % 10))
        u //= 10
        if u == 0:
            break
    memcpy(out + n, tmp + i, _LL_DIGITS - i)
    return n + _LL_DIGITS - i


cdef struct _LineEnds:
    # A cursor over the line ends of data: the next LF and the next CR, each found with
    # memchr and searched again only once it is consumed, so a pass is O(n) whatever the mix.
    const char* end
    const char* next_lf
    const char* next_cr


cdef inline const char* _find(const char* p, const char* end, char c) noexcept nogil:
    cdef const char* found = <const char*>memchr(p, c, <size_t>(end - p))
    return found if found != NULL else end


cdef inline void _line_ends_init(
    _LineEnds* ends, const char* p, Py_ssize_t n, const char* lf, const char* cr
) noexcept nogil:
    ends.end = p + n
    ends.next_lf = lf if lf != NULL else ends.end
    ends.next_cr = cr if cr != NULL else ends.end


cdef inline Py_ssize_t _next_line_end(_LineEnds* ends, const char** at) noexcept nogil:
    # The next line end: its position in *at and its length (2 for CRLF, else 1) returned;
    # 0 when none is left.
    cdef const char* brk
    if ends.next_cr < ends.next_lf:
        brk = ends.next_cr
        at[0] = brk
        if brk + 1 < ends.end and brk[1] == b'\n':
            # CRLF is one line end, not two (and next_lf was brk + 1).
            ends.next_lf = _find(brk + 2, ends.end, b'\n')
            ends.next_cr = _find(brk + 2, ends.end, b'\r')
            return 2
        ends.next_cr = _find(brk + 1, ends.end, b'\r')
        return 1
    if ends.next_lf < ends.end:
        brk = ends.next_lf
        at[0] = brk
        ends.next_lf = _find(brk + 1, ends.end, b'\n')
        return 1
    return 0


cdef inline char* _put(char* w, const char* src, Py_ssize_t n) noexcept nogil:
    return conduit_put(w, src, n)


cdef unsigned long long[20] _POW10 = [
    1ULL, 10ULL, 100ULL, 1000ULL, 10000ULL, 100000ULL, 1000000ULL, 10000000ULL,
    100000000ULL, 1000000000ULL, 10000000000ULL, 100000000000ULL, 1000000000000ULL,
    10000000000000ULL, 100000000000000ULL, 1000000000000000ULL, 10000000000000000ULL,
    100000000000000000ULL, 1000000000000000000ULL, 10000000000000000000ULL,
]


cdef inline Py_ssize_t _ll_len(long long v) noexcept nogil:
    # The length of v in decimal, sign included. (PERF: from the bit length and one
    # compare against a power of ten, instead of a chain of divisions or compares.)
    if v < 0:
        return conduit_ull_len(<unsigned long long>0 - <unsigned long long>v, _POW10) + 1
    return conduit_ull_len(<unsigned long long>v, _POW10)


cdef const char* _DIGIT_PAIRS = (
    b"00010203040506070809101112131415161718192021222324252627282930313233343536373839"
    b"40414243444546474849505152535455565758596061626364656667686970717273747576777879"
    b"8081828384858687888990919293949596979899"
)


cdef inline char* _write_ll(long long v, Py_ssize_t n, char* w) noexcept nogil:
    # v's decimal digits (n = _ll_len(v) characters) written straight into w, right to
    # left, two at a time; the end returned. (PERF: no scratch buffer: copying digits just
    # stored byte by byte out of one stalls on store forwarding.)
    cdef char* end = w + n
    if v < 0:
        w[0] = b'-'
        conduit_digits(end, <unsigned long long>0 - <unsigned long long>v, _DIGIT_PAIRS)
    else:
        conduit_digits(end, <unsigned long long>v, _DIGIT_PAIRS)
    return end


cdef inline const char* _plain_utf8(object s, Py_ssize_t* n, bint nul) noexcept:
    # The UTF-8 of an exact str with no CR or LF (nor NUL when asked), else NULL with no
    # error set: the caller then takes the general path, which raises the right exception.
    cdef const char* p = _utf8_and_size(s, n)
    if p == NULL:
        PyErr_Clear()
        return NULL
    if _has_line_end(p, n[0], nul):
        return NULL
    return p


cdef inline bint _small_int(object v, long long* value, Py_ssize_t* length) noexcept:
    # An exact int that fits a long long: its value and its decimal length; else False.
    cdef int overflow = 0
    if conduit_compact_long(v, value):
        length[0] = _ll_len(value[0])
        return True
    value[0] = PyLong_AsLongLongAndOverflow(v, &overflow)
    if overflow:
        return False
    length[0] = _ll_len(value[0])
    return True


# The last event name _simple validated, and its UTF-8: a stream sends the same name again
# and again, so the same str object is checked once. (The reference keeps the str alive,
# so the same object means the same, already validated, text.)
cdef object _last_event = None
cdef const char* _last_ep = NULL
cdef Py_ssize_t _last_en = 0


cdef bint _simple(SSEEvent ev, object data, object event, object id) noexcept:
    """Rule 7 of "How this twin is fast": fill a simple event without framing it.

    False, with nothing raised, when the event is not simple or a field is invalid; the
    caller then runs _build, which fills every field again (or raises, in rule-7 order).
    """
    cdef Py_ssize_t total = 8   # "data: " + "\n\n"
    if type(data) is int:
        if not _small_int(data, &ev._dval, &ev._dn):
            return False
        ev._dnum = True
        total += ev._dn
    elif PyUnicode_CheckExact(data):
        ev._dp = _utf8_and_size(data, &ev._dn)
        if ev._dp == NULL:
            PyErr_Clear()
            return False
        if (memchr(ev._dp, b'\n', <size_t>ev._dn) != NULL
                or memchr(ev._dp, b'\r', <size_t>ev._dn) != NULL):
            return False
        ev._dnum = False
        total += ev._dn
    else:
        return False
    global _last_event, _last_ep, _last_en
    ev._en = -1
    if event is not None:
        if event is _last_event:
            ev._ep = _last_ep
            ev._en = _last_en
        else:
            if not PyUnicode_CheckExact(event):
                return False
            ev._ep = _plain_utf8(event, &ev._en, False)
            if ev._ep == NULL:
                return False
            _last_event = event
            _last_ep = ev._ep
            _last_en = ev._en
        total += 8 + ev._en
    ev._inum = False
    ev._in = -1
    if id is not None:
        if type(id) is int:
            if not _small_int(id, &ev._ival, &ev._in):
                return False
            ev._inum = True
            total += 5 + ev._in
        elif PyUnicode_CheckExact(id):
            ev._ip = _plain_utf8(id, &ev._in, True)
            if ev._ip == NULL:
                return False
            ev._id = id
            total += 5 + ev._in
        else:
            return False
    if not ev._dnum:
        ev._data = data
    ev.event = event
    ev._size = total
    return True


cdef str _data_text(object data):
    # Rule 2 for everything that is not str or bytes-like: compact JSON.
    try:
        # PERF: an exact int is its decimal text, as the JSON encoder would write it.
        if type(data) is int:
            return PyObject_Str(data)  # an exact int: str() is int.__repr__
        return _JSON_ENCODE(data)
    except (TypeError, ValueError, RecursionError) as exc:
        raise TypeError(
            f"SSE data of type {type(data).__name__} is not str, bytes or "
            f"JSON-serializable: {exc}"
        ) from exc


cdef str _decode_data(object raw):
    try:
        return PyUnicode_DecodeUTF8(PyBytes_AS_STRING(raw), PyBytes_GET_SIZE(raw), NULL)
    except UnicodeDecodeError as exc:
        raise ValueError(
            f"SSE data bytes are not valid UTF-8 ({exc.reason} at byte {exc.start})"
        ) from exc


# -- rule 11: compact JSON written straight as UTF-8 ---------------------------------------
# The same bytes as _JSON_ENCODE(value).encode("utf-8") for the values events usually carry;
# anything else, and anything that would fail, is left to the json module (_data_text), so
# the text or the exception is exactly what it is without this encoder.

cdef extern from "Python.h":
    # Borrowed references only. The encoder calls no Python code and creates no object
    # (so the collector cannot run either), hence nothing it looks at can be freed or
    # changed under it: a dict's items and a list's elements stay put while it reads them.
    PyTypeObject* _type_of "Py_TYPE"(PyObject* o) noexcept
    bint _dict_next "PyDict_Next"(
        PyObject* d, Py_ssize_t* pos, PyObject** key, PyObject** value) noexcept
    Py_ssize_t _list_size "PyList_GET_SIZE"(PyObject* o) noexcept
    PyObject* _list_item "PyList_GET_ITEM"(PyObject* o, Py_ssize_t i) noexcept
    Py_ssize_t _tuple_size "PyTuple_GET_SIZE"(PyObject* o) noexcept
    PyObject* _tuple_item "PyTuple_GET_ITEM"(PyObject* o, Py_ssize_t i) noexcept
    long long _long_as_ll "PyLong_AsLongLongAndOverflow"(PyObject* o, int* overflow) noexcept
    double _float_value "PyFloat_AS_DOUBLE"(PyObject* o) noexcept
    # float.__repr__'s own call. NULL (MemoryError set) on failure, checked by hand.
    char* _double_repr "PyOS_double_to_string"(
        double value, char code, int precision, int flags, int* kind) noexcept
    int Py_DTSF_ADD_DOT_0
    Py_ssize_t _str_length "PyUnicode_GET_LENGTH"(PyObject* s) noexcept
    int _str_kind "PyUnicode_KIND"(PyObject* s) noexcept
    void* _str_data "PyUnicode_DATA"(PyObject* s) noexcept
    bint _str_is_ascii "PyUnicode_IS_ASCII"(PyObject* s) noexcept
    uint32_t _str_read "PyUnicode_READ"(int kind, void* data, Py_ssize_t i) noexcept
    void* PyMem_Malloc(size_t n) noexcept
    void* PyMem_Realloc(void* p, size_t n) noexcept
    void PyMem_Free(void* p) noexcept
    # NOTE: <PyObject*>True would be the C constant 1, not the object.
    PyObject* _TRUE "Py_True"
    PyObject* _FALSE "Py_False"

cdef enum:
    # Room on _build's stack for the JSON of an event: a typical one needs no allocation.
    _JSON_STACK_BYTES = 1024
    # Containers nested deeper than this (a cycle, say) are left to the json module, which
    # reports a cycle or recursion its own way.
    _JSON_MAX_DEPTH = 64


cdef struct _JsonOut:
    char* p            # the bytes written: the caller's stack buffer, or the heap once grown
    Py_ssize_t n       # how many
    Py_ssize_t cap     # room at p
    bint heap          # p is from PyMem_Malloc, and the caller frees it


# How the json module writes each ASCII character inside a string with ensure_ascii=False:
# 0 as it is, else the letter after the backslash ('u': \u00xx, in lowercase hex).
cdef char _JSON_ESCAPE[128]
for _c in range(128):
    _JSON_ESCAPE[_c] = ord("u") if _c < 0x20 else 0
for _c, _letter in ((0x22, b'"'), (0x5C, b'\\'), (0x08, b'b'), (0x0C, b'f'), (0x0A, b'n'),
                    (0x0D, b'r'), (0x09, b't')):
    _JSON_ESCAPE[_c] = ord(_letter)
del _c, _letter

cdef const char* _HEX_DIGITS = b"0123456789abcdef"


cdef int _json_grow(_JsonOut* out, Py_ssize_t need) noexcept:
    # Room for `need` more bytes, at least doubling; -1 (no error set) if memory ran out.
    cdef Py_ssize_t cap = 2 * out.cap
    cdef char* p
    if cap < out.n + need:
        cap = out.n + need
    if out.heap:
        p = <char*>PyMem_Realloc(out.p, <size_t>cap)
    else:
        p = <char*>PyMem_Malloc(<size_t>cap)
        if p != NULL:
            memcpy(p, out.p, <size_t>out.n)
    if p == NULL:
        return -1
    out.p = p
    out.cap = cap
    out.heap = True
    return 0


cdef inline int _json_room(_JsonOut* out, Py_ssize_t need) noexcept:
    if out.cap - out.n >= need:
        return 0
    return _json_grow(out, need)


cdef inline int _json_put(_JsonOut* out, const char* s, Py_ssize_t n) noexcept:
    if _json_room(out, n) < 0:
        return -1
    conduit_put(out.p + out.n, s, n)
    out.n += n
    return 0


cdef inline char* _json_escape(char* w, uint32_t c) noexcept:
    # The escape of ASCII character c (one with _JSON_ESCAPE[c] != 0): 2 or 6 bytes.
    cdef char letter = _JSON_ESCAPE[c]
    w[0] = b'\\'
    w[1] = letter
    if letter != b'u':
        return w + 2
    w[2] = b'0'
    w[3] = b'0'
    w[4] = _HEX_DIGITS[c >> 4]
    w[5] = _HEX_DIGITS[c & 15]
    return w + 6


cdef int _json_str(_JsonOut* out, PyObject* s) noexcept:
    # An exact str as a JSON string, read from the str's own storage (no UTF-8 copy is
    # made and cached on it). A lone surrogate is not UTF-8: -1, the json module's text
    # then fails rule 6 as it always did.
    cdef Py_ssize_t n, i
    cdef Py_ssize_t run = 0
    cdef int kind, width
    cdef void* data
    cdef const unsigned char* ascii
    cdef uint32_t c
    cdef char* w
    if conduit_str_ready(s) < 0:
        PyErr_Clear()
        return -1
    n = _str_length(s)
    data = _str_data(s)
    if _str_is_ascii(s):
        # Runs of plain characters are copied at once. Room: one byte a character and the
        # quotes, and more at each escape for the escape and what is still to come.
        if _json_room(out, n + 2) < 0:
            return -1
        ascii = <const unsigned char*>data
        w = out.p + out.n
        w[0] = b'"'
        w += 1
        for i in range(n):
            if _JSON_ESCAPE[ascii[i]] == 0:
                continue
            w = conduit_put(w, <const char*>ascii + run, i - run)
            out.n = w - out.p
            if _json_room(out, 6 + (n - i - 1) + 1) < 0:
                return -1
            w = _json_escape(out.p + out.n, ascii[i])
            run = i + 1
        w = conduit_put(w, <const char*>ascii + run, n - run)
        w[0] = b'"'
        out.n = w + 1 - out.p
        return 0
    kind = _str_kind(s)
    # The most UTF-8 bytes one character of this kind takes (an escape takes up to 6).
    width = 2 if kind == 1 else (3 if kind == 2 else 4)
    if _json_room(out, n * width + 2) < 0:
        return -1
    w = out.p + out.n
    w[0] = b'"'
    w += 1
    for i in range(n):
        c = _str_read(kind, data, i)
        if c < 0x80:
            if _JSON_ESCAPE[c] == 0:
                w[0] = <char>c
                w += 1
            else:
                out.n = w - out.p
                if _json_room(out, 6 + (n - i - 1) * width + 1) < 0:
                    return -1
                w = _json_escape(out.p + out.n, c)
        elif c < 0x800:
            w[0] = <char>(0xC0 | (c >> 6))
            w[1] = <char>(0x80 | (c & 0x3F))
            w += 2
        elif c < 0x10000:
            if 0xD800 <= c <= 0xDFFF:
                return -1
            w[0] = <char>(0xE0 | (c >> 12))
            w[1] = <char>(0x80 | ((c >> 6) & 0x3F))
            w[2] = <char>(0x80 | (c & 0x3F))
            w += 3
        else:
            w[0] = <char>(0xF0 | (c >> 18))
            w[1] = <char>(0x80 | ((c >> 12) & 0x3F))
            w[2] = <char>(0x80 | ((c >> 6) & 0x3F))
            w[3] = <char>(0x80 | (c & 0x3F))
            w += 4
    w[0] = b'"'
    out.n = w + 1 - out.p
    return 0


cdef int _json_int(_JsonOut* out, PyObject* v) noexcept:
    # An exact int in a long long, in decimal (int.__repr__); a larger one is left to json.
    cdef long long value
    cdef int overflow = 0
    cdef Py_ssize_t n
    if not _compact_long_ref(v, &value):
        value = _long_as_ll(v, &overflow)
        if overflow:
            return -1
    n = _ll_len(value)
    if _json_room(out, n) < 0:
        return -1
    _write_ll(value, n, out.p + out.n)
    out.n += n
    return 0


# The powers of ten a double holds exactly (10**22 is the last).
cdef double[23] _EXACT_POW10 = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
    1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
]


cdef Py_ssize_t _short_float(double x, char* w) noexcept:
    """float.__repr__(x) into w (room for 32 bytes) when x has a short decimal form; its
    length, or 0 (nothing written) for the others, which go to PyOS_double_to_string.

    repr is the shortest decimal that reads back as x (the nearest such when there are
    several), in fixed notation from 1e-4 up to 1e16 and in exponent notation outside. For
    a = |x| in [1e-22, 2**50), try k = 0, 1, 2, ... fractional digits: m = a * 10**k rounded
    to an integer; m / 10**k (an IEEE division of two exact doubles, so correctly rounded,
    as reading the decimal back is) equals a exactly when the decimal m * 10**-k reads back
    as a. The first k that works gives the fewest digits. Why this m is the one to try:
    while m < 2**50 the product a * 10**k is within 2 * 2**-53 * m (< 0.25) of its exact
    value, and a decimal that reads back as a is within half an ulp of a, i.e. within
    10**k * ulp / 2 < m * 2**-53 of the exact product; so rounding the computed product
    finds it when it exists, and there cannot be two such decimals with k digits (their
    spacing, 10**-k, is more than an ulp). 0.875, 12.5, 0.1, 19.99 and 1e-07 are found at
    once; 0.30000000000000004 (17 digits) runs out of k and takes the slow path.
    """
    cdef double a = fabs(x)
    cdef double product
    cdef long long m = 0
    cdef unsigned long long whole, fraction
    cdef int k = 0
    cdef int j, digits, exponent
    cdef char* start = w
    if a == 0.0:
        if signbit(x):
            return conduit_put(w, b"-0.0", 4) - start
        return conduit_put(w, b"0.0", 3) - start
    if not (1e-22 <= a < 1125899906842624.0):   # 2**50
        return 0
    while True:
        if k > 22:
            return 0
        product = a * _EXACT_POW10[k]
        if product >= 1125899906842624.0:
            return 0
        m = <long long>(product + 0.5)
        if m != 0 and <double>m / _EXACT_POW10[k] == a:
            break
        k += 1
    if x < 0:
        w[0] = b'-'
        w += 1
    if a >= 1e-4:
        # Fixed notation: whole part, point, k digits (at least one: "12.0").
        whole = <unsigned long long>m // _POW10[k]
        fraction = <unsigned long long>m - whole * _POW10[k]
        w = _write_ll(<long long>whole, _ll_len(<long long>whole), w)
        w[0] = b'.'
        if k == 0:
            w[1] = b'0'
            return w + 2 - start
        for j in range(k, 0, -1):
            w[j] = <char>(48 + <int>(fraction % 10))
            fraction //= 10
        return w + k + 1 - start
    # Exponent notation: m's digits as d[.ddd], then e-XX (two digits at least). m has no
    # trailing zero (k - 1 digits would have worked), and a < 1e-4 makes the exponent < 0.
    digits = <int>_ll_len(m)
    exponent = digits - 1 - k
    _write_ll(m, digits, w + 1)
    w[0] = w[1]
    if digits > 1:
        w[1] = b'.'
        w += digits + 1
    else:
        w += 1
    w[0] = b'e'
    w[1] = b'-'
    exponent = -exponent
    if exponent >= 100:
        w[2] = <char>(48 + exponent // 100)
        w += 1
        exponent %= 100
    w[2] = <char>(48 + exponent // 10)
    w[3] = <char>(48 + exponent % 10)
    return w + 4 - start


cdef int _json_float(_JsonOut* out, PyObject* v) noexcept:
    # A finite exact float as float.__repr__ writes it (which is what json writes: 1e+16,
    # 5e-324, -0.0, 1.0). NaN and the infinities are left to json, which refuses them.
    cdef double value = _float_value(v)
    cdef char* text
    cdef int status
    cdef Py_ssize_t n
    if not isfinite(value):
        return -1
    if _json_room(out, 32) < 0:
        return -1
    n = _short_float(value, out.p + out.n)
    if n:
        out.n += n
        return 0
    # PERF: float.__repr__'s own call, ~150 ns (it allocates the text): the rare case.
    text = _double_repr(value, b'r', 0, Py_DTSF_ADD_DOT_0, NULL)
    if text == NULL:
        PyErr_Clear()
        return -1
    status = _json_put(out, text, <Py_ssize_t>strlen(text))
    PyMem_Free(text)
    return status


cdef int _json_dict(_JsonOut* out, PyObject* d, int depth) noexcept:
    # An exact dict whose keys are all exact strs, in its own order; other keys (which
    # json converts or refuses) are left to json.
    cdef Py_ssize_t pos = 0
    cdef PyObject* key
    cdef PyObject* value
    cdef char opener = b'{'
    if depth > _JSON_MAX_DEPTH:
        return -1
    while _dict_next(d, &pos, &key, &value):
        if _type_of(key) != <PyTypeObject*>str:
            return -1
        if _json_room(out, 1) < 0:
            return -1
        out.p[out.n] = opener   # "{" before the first key, "," before the others
        out.n += 1
        opener = b','
        if _json_str(out, key) < 0 or _json_put(out, b":", 1) < 0:
            return -1
        if _json_value(out, value, depth) < 0:
            return -1
    if opener == b'{':
        return _json_put(out, b"{}", 2)
    return _json_put(out, b"}", 1)


cdef int _json_array(_JsonOut* out, PyObject* seq, bint is_list, int depth) noexcept:
    # An exact list or tuple, as a JSON array.
    cdef Py_ssize_t i
    cdef Py_ssize_t n = _list_size(seq) if is_list else _tuple_size(seq)
    cdef PyObject* item
    if depth > _JSON_MAX_DEPTH:
        return -1
    if _json_put(out, b"[", 1) < 0:
        return -1
    for i in range(n):
        if i and _json_put(out, b",", 1) < 0:
            return -1
        # A list cannot change size here: nothing that runs Python code is called.
        item = _list_item(seq, i) if is_list else _tuple_item(seq, i)
        if _json_value(out, item, depth) < 0:
            return -1
    return _json_put(out, b"]", 1)


cdef int _json_value(_JsonOut* out, PyObject* v, int depth) noexcept:
    # 0 with v's JSON appended to out, or -1 (no error set): v is for the json module.
    # Exact types only: a subclass may override what json reads (dict.items, ...).
    cdef PyTypeObject* t = _type_of(v)
    if t == <PyTypeObject*>str:
        return _json_str(out, v)
    if t == <PyTypeObject*>int:
        return _json_int(out, v)
    if t == <PyTypeObject*>dict:
        return _json_dict(out, v, depth + 1)
    if t == <PyTypeObject*>list:
        return _json_array(out, v, True, depth + 1)
    if t == <PyTypeObject*>tuple:
        return _json_array(out, v, False, depth + 1)
    if t == <PyTypeObject*>float:
        return _json_float(out, v)
    if v == _TRUE:
        return _json_put(out, b"true", 4)
    if v == _FALSE:
        return _json_put(out, b"false", 5)
    if v == <PyObject*>None:
        return _json_put(out, b"null", 4)
    return -1


cdef bint _json_write(_JsonOut* out, object value) noexcept:
    # Rule 11: value's compact JSON into out (True), or False with out emptied and any heap
    # it took freed: the caller then asks the json module.
    if _json_value(out, <PyObject*>value, 0) == 0:
        return True
    if out.heap:
        PyMem_Free(out.p)
        out.heap = False
    out.n = 0
    return False


def _json_utf8(value):
    # _JSON_ENCODE(value).encode("utf-8"), through rule 11's encoder when it can: for the
    # benchmark and the differential tests (the pure twin has the same function).
    cdef char stack[_JSON_STACK_BYTES]
    cdef _JsonOut out
    out.p = stack
    out.n = 0
    out.cap = _JSON_STACK_BYTES
    out.heap = False
    if not _json_write(&out, value):
        return _JSON_ENCODE(value).encode("utf-8")
    try:
        return PyBytes_FromStringAndSize(out.p, out.n)
    finally:
        if out.heap:
            PyMem_Free(out.p)


cdef bytes _build(object data, object event, object id, object retry, SSEEvent keep):
    """The frame of one event; when ``keep`` is given, also fill its fields (rule 6)."""
    cdef const char* dp
    cdef Py_ssize_t dn
    cdef const char* ep = NULL
    cdef Py_ssize_t en = -1
    cdef const char* ip = NULL
    cdef Py_ssize_t idn = -1
    cdef const char* rp = NULL
    cdef Py_ssize_t rn = -1
    cdef char ibuf[_LL_DIGITS]
    cdef char rbuf[_LL_DIGITS]
    cdef long long v
    cdef int overflow
    cdef object text = None
    cdef object raw     # bytes or a bytes subclass: a typed `bytes` would refuse the latter
    cdef object id_text = None
    cdef object retry_text
    cdef const char* lf
    cdef const char* cr
    cdef _LineEnds ends
    cdef const char* brk = NULL
    cdef const char* run
    cdef Py_ssize_t brk_len, pieces, breaks, total
    cdef bytes frame
    cdef char* w
    cdef char json_stack[_JSON_STACK_BYTES]
    cdef _JsonOut json_out

    # Rule 7: data, event, id, retry, each checked completely before the next.
    if PyUnicode_CheckExact(data):
        text = data
        dp = _utf8(text, &dn, "data")
    elif PyUnicode_Check(data):
        text = str.__str__(data)
        dp = _utf8(text, &dn, "data")
    elif PyBytes_Check(data) or isinstance(data, (bytearray, memoryview)):
        raw = data if PyBytes_Check(data) else bytes(data)
        dp = PyBytes_AS_STRING(raw)
        dn = PyBytes_GET_SIZE(raw)
        # PERF: ASCII bytes are valid UTF-8 as they are; decode only to validate the rest
        # or when an SSEEvent needs the text.
        if keep is not None or not _is_ascii(dp, dn):
            text = _decode_data(raw)
    else:
        json_out.p = json_stack
        json_out.n = 0
        json_out.cap = _JSON_STACK_BYTES
        json_out.heap = False
        if _json_write(&json_out, data):
            # Rule 11: valid UTF-8 by construction, without CR or LF (json escapes them).
            if json_out.heap:
                # A large value: copied into a bytes object now, so that no exception
                # raised below can leak the heap buffer (one copy beside the encoding).
                try:
                    raw = PyBytes_FromStringAndSize(json_out.p, json_out.n)
                finally:
                    PyMem_Free(json_out.p)
                dp = PyBytes_AS_STRING(raw)
            else:
                dp = json_out.p
            dn = json_out.n
            # An SSEEvent's text (text stays None) is decoded from its frame when first
            # asked for: its data is the frame's last dn bytes before the blank line.
        else:
            text = _data_text(data)
            dp = _utf8(text, &dn, "data")

    if event is not None:
        if not PyUnicode_Check(event):
            raise TypeError(f"SSE event must be a str or None, not {type(event).__name__}")
        if not PyUnicode_CheckExact(event):
            event = str.__str__(event)
        ep = _utf8(event, &en, "event")
        if _has_line_end(ep, en, False):
            raise ValueError("SSE event must not contain CR or LF")

    if id is not None:
        if PyUnicode_Check(id):
            id_text = id if PyUnicode_CheckExact(id) else str.__str__(id)
            ip = _utf8(id_text, &idn, "id")
            if _has_line_end(ip, idn, True):
                raise ValueError("SSE id must not contain CR, LF or NUL")
        elif PyLong_Check(id) and not PyBool_Check(id):
            v = PyLong_AsLongLongAndOverflow(id, &overflow)
            if overflow == 0:
                idn = _format_ll(v, ibuf)
                ip = ibuf
                if keep is not None:
                    id_text = PyUnicode_FromStringAndSize(ibuf, idn)
            else:
                id_text = int.__repr__(id)
                ip = _utf8(id_text, &idn, "id")
        else:
            raise TypeError(f"SSE id must be a str, an int or None, not {type(id).__name__}")

    if retry is not None:
        if not PyLong_Check(retry) or PyBool_Check(retry):
            raise ValueError(
                "SSE retry must be an int >= 0 (milliseconds) or None, "
                f"not {type(retry).__name__}"
            )
        v = PyLong_AsLongLongAndOverflow(retry, &overflow)
        if overflow < 0 or (overflow == 0 and v < 0):
            raise ValueError(
                "SSE retry must be an int >= 0 (milliseconds), not a negative int"
            )
        if type(retry) is not int:
            # int.__index__ gives a plain int for an int subclass, ignoring its overrides.
            retry = int.__index__(retry)
        if overflow == 0:
            rn = _format_ll(v, rbuf)
            rp = rbuf
        else:
            retry_text = int.__repr__(retry)
            rp = _utf8(retry_text, &rn, "retry")

    # Rule 2: is there a line end in data at all? (PERF: memchr is vectorised.)
    lf = <const char*>memchr(dp, b'\n', <size_t>dn)
    cr = <const char*>memchr(dp, b'\r', <size_t>dn)
    pieces = 1
    breaks = 0
    if lf != NULL or cr != NULL:
        _line_ends_init(&ends, dp, dn, lf, cr)
        while True:
            brk_len = _next_line_end(&ends, &brk)
            if brk_len == 0:
                break
            pieces += 1
            breaks += brk_len

    # "data: " + text without its line ends + "\ndata: " per extra piece + "\n\n".
    total = 6 + dn - breaks + 7 * (pieces - 1) + 2
    if en >= 0:
        total += 8 + en     # "event: " ... "\n"
    if idn >= 0:
        total += 5 + idn    # "id: " ... "\n"
    if rn >= 0:
        total += 8 + rn     # "retry: " ... "\n"

    frame = PyBytes_FromStringAndSize(NULL, total)
    w = PyBytes_AS_STRING(frame)
    if en >= 0:
        w = _put(w, b"event: ", 7)
        w = _put(w, ep, en)
        w[0] = b'\n'
        w += 1
    if idn >= 0:
        w = _put(w, b"id: ", 4)
        w = _put(w, ip, idn)
        w[0] = b'\n'
        w += 1
    if rn >= 0:
        w = _put(w, b"retry: ", 7)
        w = _put(w, rp, rn)
        w[0] = b'\n'
        w += 1
    w = _put(w, b"data: ", 6)
    if pieces == 1:
        w = _put(w, dp, dn)
    else:
        _line_ends_init(&ends, dp, dn, lf, cr)
        run = dp
        while True:
            brk_len = _next_line_end(&ends, &brk)
            if brk_len == 0:
                break
            w = _put(w, run, brk - run)
            w = _put(w, b"\ndata: ", 7)
            run = brk + brk_len
        w = _put(w, run, dp + dn - run)
    w[0] = b'\n'
    w[1] = b'\n'

    if keep is not None:
        keep._frame = frame
        keep._size = total
        keep._data = text
        keep._dn = dn
        keep.event = event
        keep._id = id_text
        keep.retry = retry
    return frame


def encode_event(data, event=None, id=None, retry=None):
    """The frame bytes of one event, as SSEEvent(...).encode() but without the object."""
    return _build(data, event, id, retry, None)


def comment(text=""):
    """A comment frame (": text" lines and a blank line), e.g. a heartbeat."""
    cdef bytes raw
    if not PyUnicode_Check(text):
        raise TypeError(f"SSE comment text must be a str, not {type(text).__name__}")
    if not PyUnicode_CheckExact(text):
        text = str.__str__(text)
    if not text:
        return _HEARTBEAT
    try:
        raw = text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(
            f"SSE comment text must be encodable as UTF-8 ({exc.reason} at index {exc.start})"
        ) from exc
    if b"\n" not in raw and b"\r" not in raw:
        return b": " + raw + b"\n\n"
    pieces = raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
    return b"".join([(b": " + piece if piece else b":") + b"\n" for piece in pieces]) + b"\n"


@cython.final
@cython.freelist(64)
@cython.no_gc  # its fields are str, int and bytes only: it can never be part of a cycle
cdef class SSEEvent:
    """One server-sent event, validated and framed once when it is built (see _sse_c.pyi)."""

    def __cinit__(self):
        # Rule 9: SSEEvent(...) goes through _sse_vectorcall, which fills the fields; an
        # object made by SSEEvent.__new__ alone (which passes no data) is SSEEvent("").
        self._dp = ""
        self._en = -1
        self._in = -1
        self._size = 8

    cdef char* _emit(self, char* w) noexcept:
        # The frame of a simple event into w (room for _size bytes); the end returned.
        if self._en >= 0:
            w = _put(w, b"event: ", 7)
            w = _put(w, self._ep, self._en)
            w[0] = b'\n'
            w += 1
        if self._inum:
            w = _put(w, b"id: ", 4)
            w = _write_ll(self._ival, self._in, w)
            w[0] = b'\n'
            w += 1
        elif self._in >= 0:
            w = _put(w, b"id: ", 4)
            w = _put(w, self._ip, self._in)
            w[0] = b'\n'
            w += 1
        w = _put(w, b"data: ", 6)
        if self._dnum:
            w = _write_ll(self._dval, self._dn, w)
        else:
            w = _put(w, self._dp, self._dn)
        w[0] = b'\n'
        w[1] = b'\n'
        return w + 2

    cpdef bytes encode(self):
        """The frame as UTF-8 bytes (built once, the first time it is needed)."""
        if self._frame is None:
            frame = PyBytes_FromStringAndSize(NULL, self._size)
            self._emit(PyBytes_AS_STRING(frame))
            self._frame = frame
        return self._frame

    @property
    def data(self):
        if self._data is None:
            if self._dnum:
                self._data = PyObject_Str(<object>self._dval)
            elif self._frame is not None:
                # Rule 11: JSON data, one line (json escapes CR and LF), valid UTF-8.
                self._data = PyUnicode_DecodeUTF8(
                    PyBytes_AS_STRING(self._frame) + self._size - 2 - self._dn, self._dn, NULL)
            else:
                return ""  # made by SSEEvent.__new__ alone (see __cinit__)
        return self._data

    @property
    def id(self):
        if self._id is None and self._inum:
            self._id = PyObject_Str(<object>self._ival)
        return self._id

    def format(self):
        """The frame as text (the seed's API)."""
        return self.encode().decode("utf-8")

    def __eq__(self, other):
        if type(other) is not SSEEvent:
            return NotImplemented
        cdef SSEEvent o = <SSEEvent>other
        return (
            self.data == o.data
            and self.event == o.event
            and self.id == o.id
            and self.retry == o.retry
        )

    def __ne__(self, other):
        if type(other) is not SSEEvent:
            return NotImplemented
        return not self.__eq__(other)

    def __hash__(self):
        return hash((self.data, self.event, self.id, self.retry))

    def __repr__(self):
        parts = [repr(self.data)]
        if self.event is not None:
            parts.append(f"event={self.event!r}")
        if self.id is not None:
            parts.append(f"id={self.id!r}")
        if self.retry is not None:
            parts.append(f"retry={self.retry!r}")
        return f"SSEEvent({', '.join(parts)})"

    def __reduce__(self):
        return (SSEEvent, (self.data, self.event, self.id, self.retry))


# -- rule 9: SSEEvent(...) without an argument tuple or keyword dict ------------------------
# CPython calls a type through tp_new(type, args, kwargs): the call site's arguments become a
# tuple and, for event=/id=, a dict, which __cinit__ then parses back. With tp_vectorcall
# the call gets them as an array and the keyword names as a tuple of (interned) strs: the
# names are matched by identity, a new object comes from tp_new with one cached argument
# tuple that tells __cinit__ to leave it to us, and the fields are filled exactly as
# __cinit__ would. ``data`` may be positional or a keyword. Anything unusual (other
# positional counts, keyword names that are not the interned strs, a repeated keyword)
# goes the ordinary way, with the ordinary errors.
cdef tuple _EMPTY = ()
cdef str _KW_EVENT = "event"
cdef str _KW_ID = "id"
cdef str _KW_RETRY = "retry"
cdef str _KW_DATA = "data"


cdef object _sse_vectorcall(object cls, PyObject** args, size_t nargsf, PyObject* kwnames):
    # Borrowed references throughout: the caller holds the arguments for the call.
    cdef Py_ssize_t nargs = PyVectorcall_NARGS(nargsf)
    cdef Py_ssize_t nkw = 0
    cdef Py_ssize_t i
    cdef PyObject* none = <PyObject*>None
    cdef PyObject* event = none
    cdef PyObject* id = none
    cdef PyObject* retry = none
    cdef PyObject* data = NULL
    cdef PyObject* name
    cdef PyObject* value
    cdef int seen = 0
    if kwnames != NULL:
        nkw = PyTuple_GET_SIZE(<object>kwnames)
    if nargs == 1:
        data = args[0]
    elif nargs != 0:
        return _sse_call_slow(cls, args, nargs, kwnames)
    for i in range(nkw):
        name = PyTuple_GET_ITEM(<object>kwnames, i)
        value = args[nargs + i]
        if name == <PyObject*>_KW_DATA and data == NULL:
            data = value  # the seed's SSEEvent(data=..., event=..., id=...)
        elif name == <PyObject*>_KW_EVENT and not seen & 1:
            event = value
            seen |= 1
        elif name == <PyObject*>_KW_ID and not seen & 2:
            id = value
            seen |= 2
        elif name == <PyObject*>_KW_RETRY and not seen & 4:
            retry = value
            seen |= 4
        else:
            return _sse_call_slow(cls, args, nargs, kwnames)
    if data == NULL:  # no data at all: the ordinary TypeError
        return _sse_call_slow(cls, args, nargs, kwnames)
    return _sse_fill(cls, <object>data, <object>event, <object>id, <object>retry)


cdef inline object _sse_fill(object cls, object data, object event, object id, object retry):
    cdef SSEEvent ev = <SSEEvent>conduit_new_empty(<PyTypeObject*>cls, _EMPTY)
    if retry is None and _simple(ev, data, event, id):
        return ev
    ev._dnum = ev._inum = False
    _build(data, event, id, retry, ev)
    return ev


def _sse_arguments(data, event=None, id=None, retry=None):
    return data, event, id, retry


cdef object _sse_call_slow(object cls, PyObject** args, Py_ssize_t nargs, PyObject* kwnames):
    # Python's own argument binding (and its error messages, under SSEEvent's name).
    cdef Py_ssize_t i
    positional = [<object>args[i] for i in range(nargs)]
    keywords = {}
    if kwnames != NULL:
        for i in range(PyTuple_GET_SIZE(<object>kwnames)):
            keywords[<object>PyTuple_GET_ITEM(<object>kwnames, i)] = <object>args[nargs + i]
    try:
        data, event, id, retry = _sse_arguments(*positional, **keywords)
    except TypeError as exc:
        raise TypeError(str(exc).replace("_sse_arguments()", "SSEEvent()")) from None
    return _sse_fill(cls, data, event, id, retry)


conduit_set_type_vectorcall(<PyTypeObject*>SSEEvent, <void*>_sse_vectorcall)


__all__ = ["SSEEvent", "comment", "encode_event"]
