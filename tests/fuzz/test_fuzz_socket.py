"""Fuzzing a live server over loopback: mutated requests, each on its own connection.

One server per parser twin (the conformance suite's application, its connections' parser
swapped for the twin under test: ``conformance_app.serving_with_parser``) receives a
bounded number of mutated requests (see ``fuzz_support``). Each goes out in one write,
then the client shuts down its sending side and reads until the server closes. What comes
back must be a sequence of well-formed HTTP/1.1 responses (status line, ``Name: value``
fields, a body framed by Content-Length or chunked) and nothing else, possibly none at all
(a clean close); and it must be exactly what the sans-IO parser predicts for the same
bytes: one response per request it parses, then one more with the error's status if it
refuses the rest. A response more would mean bytes were read as a request the parser did
not see (smuggling); one less, a request dropped. No handler error (5xx other than 501 for
a method nothing implements) is allowed, and after every example a fresh connection is
served.

Examples: ``CONDUIT_FUZZ_EXAMPLES`` (default 150). Long run:
``CONDUIT_FUZZ_EXAMPLES=20000 python -m pytest -x -q tests/fuzz/test_fuzz_socket.py``
(a few ms per example).
"""

from __future__ import annotations

import re
import socket

import pytest
from conformance_app import serving_with_parser
from fuzz_support import fuzz_settings, mutated_requests
from hypothesis import given
from integration_helpers import RawClient, get_ok

from conduit import _ext
from conduit.errors import ProtocolError

TWINS = _ext.twins("conduit.http", "parser")
_STATUS_LINE = re.compile(rb"HTTP/1\.1 ([1-5][0-9][0-9]) [\x20-\x7e]*")
_FIELD_LINE = re.compile(rb"([!#$%&'*+\-.^_`|~0-9A-Za-z]+): ([\x20-\x7e\x80-\xff]*)")


@pytest.fixture(scope="module", params=sorted(TWINS))
def fuzz_server(request):
    with serving_with_parser(TWINS[request.param]) as server:
        yield server, TWINS[request.param]


def predict(twin, raw: bytes) -> tuple:
    """(methods of the requests the parser returns, error status or None), input then EOF."""
    parser = twin.RequestParser()
    methods = []
    try:
        parser.feed(raw)
        while (request := parser.next_request()) is not None:
            methods.append(request.method)
        parser.feed(b"")
        while (request := parser.next_request()) is not None:
            methods.append(request.method)
    except ProtocolError as exc:
        return methods, exc.status
    return methods, None


def read_responses(raw: bytes, methods: list) -> list:
    """Split ``raw`` into well-formed responses; their statuses (1xx interims skipped)."""
    statuses = []
    pos = 0
    while pos < len(raw):
        end = raw.find(b"\r\n\r\n", pos)
        assert end >= 0, f"incomplete head at {pos}: {raw[pos:]!r}"
        lines = raw[pos:end].split(b"\r\n")
        pos = end + 4
        match = _STATUS_LINE.fullmatch(lines[0])
        assert match, f"bad status line {lines[0]!r}"
        status = int(match.group(1))
        fields: dict = {}
        for line in lines[1:]:
            field = _FIELD_LINE.fullmatch(line)
            assert field, f"bad field line {line!r}"
            fields.setdefault(field.group(1).lower(), []).append(field.group(2))
        if status < 200:
            assert status == 100 and not fields, lines
            continue
        head_only = len(statuses) < len(methods) and methods[len(statuses)] == "HEAD"
        if head_only or status in (204, 304):
            pass
        elif b"content-length" in fields:
            (length,) = fields[b"content-length"]
            assert b"transfer-encoding" not in fields
            pos += int(length)
            assert pos <= len(raw), f"body shorter than {int(length)}"
        else:
            assert fields.get(b"transfer-encoding") == [b"chunked"], lines
            while True:
                line_end = raw.find(b"\r\n", pos)
                assert line_end >= 0 and re.fullmatch(rb"[0-9a-f]+", raw[pos:line_end])
                size = int(raw[pos:line_end], 16)
                pos = line_end + 2 + size
                assert raw[pos:pos + 2] == b"\r\n", "chunk not followed by CRLF"
                pos += 2
                if not size:
                    break
        statuses.append(status)
    return statuses


def exchange(address, raw: bytes) -> bytes:
    with RawClient(address) as client:
        try:
            client.send(raw)
            client.sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused and closed before the last bytes went out: read the answer
        return client.read_to_eof()


@fuzz_settings()
@given(raw=mutated_requests())
def test_mutated_requests_get_what_the_parser_predicts(fuzz_server, raw):
    server, twin = fuzz_server
    methods, error = predict(twin, raw)
    statuses = read_responses(exchange(server.address, raw), methods)
    expected = len(methods) + (error is not None)
    assert len(statuses) == expected, (statuses, methods, error)
    if error is not None:
        assert statuses[-1] == error
    # No handler error: the only 5xx an application may give is 501 for a method no route
    # implements (a mutated method name).
    assert all(status < 500 or status == 501 for status in statuses[:len(methods)]), statuses
    get_ok(server.address)
