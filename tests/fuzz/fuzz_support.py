"""What the fuzzers share: how many examples to run, and mutated HTTP requests.

The number of examples per fuzz test comes from ``CONDUIT_FUZZ_EXAMPLES`` (default 150:
the whole ``tests/fuzz`` directory then runs in seconds, as a smoke pass in CI). A long
run, for a release or after a parser change:

    CONDUIT_FUZZ_EXAMPLES=200000 python -m pytest -x -q tests/fuzz
    CONDUIT_FUZZ_EXAMPLES=200000 CONDUIT_EXTENSIONS=0 python -m pytest -x -q tests/fuzz

Hypothesis prints the failing input and a ``@reproduce_failure`` line; a crash or a
disagreement found that way is fixed and kept as an explicit case in the test module.

Mutations start from valid requests (``SEEDS``) and apply one to six operations: replace a
byte (with a random one or one that matters to HTTP: CR, LF, NUL, SP, HTAB, ':', ',',
';', '=', '"', a digit, a hex letter...), insert such bytes, delete a byte or a range,
truncate, duplicate a slice or a whole line (a second Host or Content-Length, a repeated
chunk), splice in a slice of another seed, change a byte's case, replace a run of
digits with another number (0, -1, huge, hex, a list), insert a field line that matters
to framing (``FIELD_LINES``: Content-Length, Transfer-Encoding, Host, Connection, Expect
in valid and broken forms, obs-fold), or replace a field's value (``VALUES``).
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

EXAMPLES = int(os.environ.get("CONDUIT_FUZZ_EXAMPLES", "150"))


def fuzz_settings(examples: int = EXAMPLES) -> settings:
    return settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.function_scoped_fixture,
        ],
    )


H = b"Host: example.com\r\n"

SEEDS = [
    b"GET / HTTP/1.1\r\n" + H + b"\r\n",
    b"GET /where?a=1&b=%20 HTTP/1.1\r\nHost: localhost:8000\r\nUser-Agent: curl/8.5.0\r\n"
    b"Accept: */*\r\n\r\n",
    b"GET /where HTTP/1.1\r\nHost: example.com\r\nConnection: keep-alive\r\n"
    b"Accept: text/html,application/xhtml+xml;q=0.9,*/*;q=0.8\r\n"
    b"Accept-Encoding: gzip, deflate, br\r\nAccept-Language: en-US,en;q=0.9\r\n"
    b"Cookie: session=4f2a9c; theme=dark\r\nLast-Event-ID: 12\r\n\r\n",
    b"POST /echo HTTP/1.1\r\n" + H + b"Content-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello",
    b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
    b"3\r\nabc\r\n4;ext=1\r\ndefg\r\n0\r\n\r\n",
    b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n"
    b'A ; a = "q\\"x"\r\n0123456789\r\n0\r\nX-Sum: 10\r\n\r\n',
    b"POST /echo HTTP/1.1\r\n" + H + b"Expect: 100-continue\r\nContent-Length: 3\r\n\r\nabc",
    b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET / HTTP/1.0\r\n\r\n",
    b"GET / HTTP/1.1\r\n" + H + b"\r\nPOST /echo HTTP/1.1\r\n" + H
    + b"Content-Length: 2\r\n\r\nhiGET /nope HTTP/1.1\r\n" + H + b"Connection: close\r\n\r\n",
    b"GET http://example.com:8080/where?x HTTP/1.1\r\n" + H + b"\r\n",
    b"OPTIONS * HTTP/1.1\r\n" + H + b"\r\n",
    b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
    b"HEAD / HTTP/1.1\r\n" + H + b"\r\n",
    b"DELETE /where HTTP/1.1\r\nHost: [::1]:80\r\nContent-Length: 0\r\n\r\n",
    b"\r\nGET / HTTP/1.1\r\nHost:\r\nX-Tab:\ta\tb\t\r\nX-Obs: caf\xc3\xa9\r\n\r\n",
]

INTERESTING = list(b"\r\n\x00 \t:,;=\"0123456789aAfFgxX-+/?#*@[]\x7f\x80\xff")
INSERTS = [bytes([b]) for b in INTERESTING] + [
    b"\r\n", b"\r\n\r\n", b"\n", b"\r", b" \r\n", b"\r\n ", b": ", b"chunked", b"0\r\n\r\n",
    b"Content-Length: 3\r\n", b"Transfer-Encoding: chunked\r\n", b"Host: x\r\n",
    b"GET / HTTP/1.1\r\n", b"HTTP/1.0", b"HTTP/2.0",
]
# A dictionary of field lines and values that matter to framing (as AFL's dictionaries).
FIELD_LINES = [
    b"Content-Length: 0", b"Content-Length: 3", b"Content-Length: +3", b"Content-Length: 3, 3",
    b"Content-Length: 3,4", b"Content-Length:03", b"Transfer-Encoding: chunked",
    b"Transfer-Encoding: Chunked", b"Transfer-Encoding: gzip, chunked",
    b"Transfer-Encoding: chunked, identity", b"Transfer-Encoding: ,chunked,",
    b"Transfer-Encoding:\tchunked", b"Host: a", b"Host: a@b", b"Host: [::1]:80", b"Host:",
    b"Connection: close", b"Connection: keep-alive", b"Connection: Keep-Alive, close",
    b"Expect: 100-continue", b"Expect: 100-Continue", b"Expect: nothing", b"X: \x00",
    b" folded", b"\tfolded", b"Trailer: X", b"X : y", b"X:y", b":", b"X-Empty:",
]
VALUES = [b"0", b"3", b"-3", b"+3", b"0x3", b"3 3", b"3,3", b"", b" ", b"chunked", b"identity",
          b"chunked;q=1", b"close", b"keep-alive", b"100-continue", b"a b", b"\x7f", b"\xff",
          b"18446744073709551616"]
NUMBERS = [b"0", b"1", b"-1", b"+1", b"00", b"7", b"18446744073709551616", b"0x10", b"ff",
           b"1, 1", b"1,2", b"1 2", b"", b"99999999999999999999999"]

byte_values = st.one_of(st.sampled_from(INTERESTING), st.integers(0, 255))


@st.composite
def mutated_requests(draw, seeds=SEEDS) -> bytes:
    """A seed (or two seeds pipelined) with one to six mutations applied."""
    data = bytearray(draw(st.sampled_from(seeds)))
    if draw(st.integers(0, 4)) == 0:
        data += draw(st.sampled_from(seeds))
    for _ in range(draw(st.sampled_from([1, 1, 1, 2, 2, 3, 4, 6]))):  # mostly few
        size = len(data)
        pos = draw(st.integers(0, size))
        op = draw(st.sampled_from(
            ["flip", "insert", "delete", "cut", "truncate", "dup", "dupline", "splice",
             "case", "number", "field", "field", "value", "value"]))
        if op == "flip" and size:
            data[min(pos, size - 1)] = draw(byte_values)
        elif op == "insert":
            data[pos:pos] = draw(st.sampled_from(INSERTS))
        elif op == "delete" and size:
            del data[min(pos, size - 1)]
        elif op == "cut":
            end = draw(st.integers(pos, min(size, pos + 16)))
            del data[pos:end]
        elif op == "truncate":
            del data[pos:]
        elif op == "dup":
            end = draw(st.integers(pos, min(size, pos + 40)))
            at = draw(st.integers(0, size))
            data[at:at] = data[pos:end]
        elif op == "dupline":
            lines = bytes(data).split(b"\r\n")
            i = draw(st.integers(0, len(lines) - 1))
            lines.insert(i, lines[i])
            data = bytearray(b"\r\n".join(lines))
        elif op == "splice":
            other = draw(st.sampled_from(seeds))
            start = draw(st.integers(0, len(other)))
            end = draw(st.integers(start, min(len(other), start + 60)))
            data[pos:pos] = other[start:end]
        elif op == "case" and size:
            i = min(pos, size - 1)
            data[i:i + 1] = bytes(data[i:i + 1]).swapcase()
        elif op in ("field", "value"):
            lines = bytes(data).split(b"\r\n")
            i = draw(st.integers(1, max(len(lines) - 1, 1)))
            if op == "field":
                lines.insert(i, draw(st.sampled_from(FIELD_LINES)))
            elif i < len(lines) and b":" in lines[i]:
                name = lines[i].split(b":", 1)[0]
                lines[i] = name + b":" + draw(st.sampled_from([b"", b" "])) + draw(
                    st.sampled_from(VALUES))
            data = bytearray(b"\r\n".join(lines))
        elif op == "number":
            digits = [i for i in range(size) if 48 <= data[i] <= 57]
            if digits:
                start = draw(st.sampled_from(digits))
                end = start
                while end < size and 48 <= data[end] <= 57:
                    end += 1
                data[start:end] = draw(st.sampled_from(NUMBERS))
    return bytes(data)


def split_points(data: bytes):
    """Strategy: sorted cut positions inside ``data``."""
    return st.lists(st.integers(0, len(data)), max_size=10).map(sorted)


def cut(data: bytes, points) -> list:
    pieces, last = [], 0
    for point in points:
        pieces.append(data[last:point])
        last = point
    pieces.append(data[last:])
    return pieces
