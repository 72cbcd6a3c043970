"""Table-driven tests of the HTTP/1.1 request parser, written from the contract.

The contract is the module docstring of ``conduit/http/_parser_py.py``. Every case runs on
both twins (fixture ``http_parser``) and, through ``parser_helpers.parse``, three ways:
whole input, one byte at a time, and with the start of another request after it.

How the byte limits count (the two switches below, read from the contract's words):
- the request line's length counts its CRLF: the contract's request-line grammar ends in
  CRLF, and it asks for a 414 "as soon as that many bytes have arrived without a CRLF",
  which only matches a limit that counts the CRLF;
- the head's length (request line excluded) counts every field line with its CRLF and the
  final empty line's CRLF, and a 431 comes "likewise" once that many bytes have arrived
  without the end of the head.
"""

from __future__ import annotations

from typing import NamedTuple

import pytest
from parser_helpers import (
    ERROR_STATUSES,
    Req,
    error_offset,
    parse,
    parse_whole,
    req,
)

from conduit.errors import ProtocolError
from conduit.http import parser as public_parser


class Err(NamedTuple):
    """Expected error status, after the requests in ``before``."""

    status: int
    before: tuple[Req, ...] = ()


def case(name, data, expect, *, eof=False, **limits):
    if isinstance(expect, Req):
        expect = [expect]
    return pytest.param(data, expect, eof, limits, id=name)


def check(mod, data, expect, eof=False, limits=None):
    out = parse(mod, data, limits=limits, eof=eof)
    if isinstance(expect, Err):
        assert out.error == expect.status, f"expected {expect.status}, got {out}"
        assert out.requests == list(expect.before)
    else:
        assert out.error is None, f"expected requests, got error {out.error}"
        assert out.requests == list(expect)


# --------------------------------------------------------------------------- building blocks

HOST = b"Host: example.com\r\n"
H = (b"host", b"example.com")
CHUNKED_HEAD = b"POST /c HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n\r\n"
CH = [H, (b"transfer-encoding", b"chunked")]


def chunked(body_framing: bytes) -> bytes:
    return CHUNKED_HEAD + body_framing


def chunked_req(body: bytes, trailers=()) -> Req:
    return req("POST", "/c", CH, body, trailers=trailers)


def with_cl(value: bytes, body: bytes = b"") -> bytes:
    return b"POST /p HTTP/1.1\r\n" + HOST + b"Content-Length: " + value + b"\r\n\r\n" + body


def get_with(field_lines: bytes, target: bytes = b"/", version: bytes = b"HTTP/1.1") -> bytes:
    return b"GET " + target + b" " + version + b"\r\n" + field_lines + b"\r\n"


def request_line(line: bytes) -> bytes:
    return line + b"\r\n" + HOST + b"\r\n"


CURL = b"GET / HTTP/1.1\r\nHost: localhost:8000\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n"
CURL_REQ = req(
    "GET",
    "/",
    [(b"host", b"localhost:8000"), (b"user-agent", b"curl/8.5.0"), (b"accept", b"*/*")],
)

CHROME_FIELDS = [
    (b"Host", b"example.com"),
    (b"Connection", b"keep-alive"),
    (b"sec-ch-ua", b'"Chromium";v="124", "Google Chrome";v="124", "Not-A.Brand";v="99"'),
    (b"sec-ch-ua-mobile", b"?0"),
    (b"sec-ch-ua-platform", b'"Linux"'),
    (b"Upgrade-Insecure-Requests", b"1"),
    (
        b"User-Agent",
        b"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
        b"Chrome/124.0.0.0 Safari/537.36",
    ),
    (
        b"Accept",
        b"text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,"
        b"image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7",
    ),
    (b"Sec-Fetch-Site", b"none"),
    (b"Sec-Fetch-Mode", b"navigate"),
    (b"Sec-Fetch-User", b"?1"),
    (b"Sec-Fetch-Dest", b"document"),
    (b"Accept-Encoding", b"gzip, deflate, br, zstd"),
    (b"Accept-Language", b"en-US,en;q=0.9,fr;q=0.8"),
    (b"Cookie", b"session=4f2a9c; theme=dark"),
]
CHROME = (
    b"GET /events?channel=news HTTP/1.1\r\n"
    + b"".join(n + b": " + v + b"\r\n" for n, v in CHROME_FIELDS)
    + b"\r\n"
)
CHROME_REQ = req("GET", "/events?channel=news", [(n.lower(), v) for n, v in CHROME_FIELDS])
assert 450 < len(CHROME) < 800

SSE = (
    b"GET /stream HTTP/1.1\r\n"
    b"Host: api.example.com\r\n"
    b"Accept: text/event-stream\r\n"
    b"Cache-Control: no-cache\r\n"
    b"Last-Event-ID: 42\r\n"
    b"\r\n"
)
SSE_REQ = req(
    "GET",
    "/stream",
    [
        (b"host", b"api.example.com"),
        (b"accept", b"text/event-stream"),
        (b"cache-control", b"no-cache"),
        (b"last-event-id", b"42"),
    ],
)

JSON = b'{"name": "conduit", "fast": true}'
POST = (
    b"POST /api/items HTTP/1.1\r\n"
    b"Host: localhost\r\n"
    b"Content-Type: application/json\r\n"
    b"Content-Length: " + str(len(JSON)).encode() + b"\r\n"
    b"\r\n" + JSON
)
POST_REQ = req(
    "POST",
    "/api/items",
    [
        (b"host", b"localhost"),
        (b"content-type", b"application/json"),
        (b"content-length", str(len(JSON)).encode()),
    ],
    JSON,
)


# --------------------------------------------------------------------------- valid requests

VALID = [
    case("curl-get", CURL, CURL_REQ),
    case("chrome-get", CHROME, CHROME_REQ),
    case("sse-get", SSE, SSE_REQ),
    case("post-content-length", POST, POST_REQ),
    case(
        "body-looks-like-a-request",
        with_cl(b"26", b"GET /x HTTP/1.1\r\nHost: y\r\n"),
        req(
            "POST",
            "/p",
            [H, (b"content-length", b"26")],
            b"GET /x HTTP/1.1\r\nHost: y\r\n",
        ),
    ),
    case(
        "binary-body",
        with_cl(b"6", b"\x00\r\n\xff\n\r"),
        req("POST", "/p", [H, (b"content-length", b"6")], b"\x00\r\n\xff\n\r"),
    ),
    case("content-length-0", with_cl(b"0"), req("POST", "/p", [H, (b"content-length", b"0")])),
    case(
        "content-length-leading-zeros",
        with_cl(b"005", b"hello"),
        req("POST", "/p", [H, (b"content-length", b"005")], b"hello"),
    ),
    case(
        "content-length-ows",
        b"POST /p HTTP/1.1\r\n" + HOST + b"Content-Length: \t 5 \t\r\n\r\nhello",
        req("POST", "/p", [H, (b"content-length", b"5")], b"hello"),
    ),
    case(
        "content-length-duplicate-lines",
        b"POST /p HTTP/1.1\r\n" + HOST + b"Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
        req("POST", "/p", [H, (b"content-length", b"5"), (b"content-length", b"5")], b"hello"),
    ),
    case(
        "content-length-list-5-5",
        with_cl(b"5, 5", b"hello"),
        req("POST", "/p", [H, (b"content-length", b"5, 5")], b"hello"),
    ),
    case(
        "content-length-list-no-space",
        with_cl(b"5,5,5", b"hello"),
        req("POST", "/p", [H, (b"content-length", b"5,5,5")], b"hello"),
    ),
    case(
        "content-length-on-get",
        b"GET / HTTP/1.1\r\n" + HOST + b"Content-Length: 2\r\n\r\nok",
        req("GET", "/", [H, (b"content-length", b"2")], b"ok"),
    ),
    # chunked
    case("chunked-simple", chunked(b"5\r\nhello\r\n0\r\n\r\n"), chunked_req(b"hello")),
    case("chunked-empty", chunked(b"0\r\n\r\n"), chunked_req(b"")),
    case(
        "chunked-several",
        chunked(b"5\r\nhello\r\n1\r\n \r\n6\r\nworld!\r\n0\r\n\r\n"),
        chunked_req(b"hello world!"),
    ),
    case(
        "chunked-hex-both-cases",
        chunked(b"aA\r\n" + b"x" * 0xAA + b"\r\nF\r\n" + b"y" * 15 + b"\r\n0\r\n\r\n"),
        chunked_req(b"x" * 0xAA + b"y" * 15),
    ),
    case(
        "chunked-leading-zeros",
        chunked(b"0005\r\nhello\r\n00000000000000000000\r\n\r\n"),
        chunked_req(b"hello"),
    ),
    case(
        "chunked-20-digit-size",
        chunked(b"00000000000000000005\r\nhello\r\n0\r\n\r\n"),
        chunked_req(b"hello"),
    ),
    case(
        "chunked-data-with-crlf",
        chunked(b"4\r\n\r\n\r\n\r\n0\r\n\r\n"),
        chunked_req(b"\r\n\r\n"),
    ),
    case(
        "chunked-extensions",
        chunked(b"5;name=value\r\nhello\r\n3;a;b=c;d\r\nabc\r\n0;last=yes\r\n\r\n"),
        chunked_req(b"helloabc"),
    ),
    case(
        "chunked-extension-bws",
        chunked(b"5 ; name = value\r\nhello\r\n2\t;\tx\r\nhi\r\n0 ;end\r\n\r\n"),
        chunked_req(b"hellohi"),
    ),
    case(
        "chunked-trailers",
        chunked(b"5\r\nhello\r\n0\r\nExpires: never\r\nX-Checksum:  abc123 \r\n\r\n"),
        chunked_req(b"hello", trailers=[(b"expires", b"never"), (b"x-checksum", b"abc123")]),
    ),
    case(
        "chunked-trailers-duplicates-kept",
        chunked(b"0\r\nX-T: 1\r\nx-t: 2\r\nX-T: 1\r\n\r\n"),
        chunked_req(b"", trailers=[(b"x-t", b"1"), (b"x-t", b"2"), (b"x-t", b"1")]),
    ),
    case(
        "chunked-coding-case-insensitive",
        b"POST /c HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: ChUnKeD\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        req("POST", "/c", [H, (b"transfer-encoding", b"ChUnKeD")], b"abc"),
    ),
    case(
        "chunked-te-ows",
        b"POST /c HTTP/1.1\r\n" + HOST + b"Transfer-Encoding:   chunked \t\r\n\r\n0\r\n\r\n",
        req("POST", "/c", [H, (b"transfer-encoding", b"chunked")]),
    ),
    # HTTP/1.0 and keep-alive
    case(
        "http10-no-host",
        b"GET /old HTTP/1.0\r\n\r\n",
        req("GET", "/old", version="1.0", keep_alive=False),
    ),
    case(
        "http10-head-with-field",
        b"HEAD /foo HTTP/1.0\r\nSome: header\r\n\r\n",
        req("HEAD", "/foo", [(b"some", b"header")], version="1.0", keep_alive=False),
    ),
    case(
        "http10-keep-alive",
        b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        req("GET", "/", [(b"connection", b"keep-alive")], version="1.0", keep_alive=True),
    ),
    case(
        "http10-keep-alive-case-insensitive",
        b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n",
        req("GET", "/", [(b"connection", b"Keep-Alive")], version="1.0", keep_alive=True),
    ),
    case(
        "http10-keep-alive-and-close",
        b"GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n",
        req("GET", "/", [(b"connection", b"keep-alive, close")], version="1.0", keep_alive=False),
    ),
    case(
        "http10-content-length",
        b"POST /f HTTP/1.0\r\nContent-Length: 3\r\n\r\nabc",
        req("POST", "/f", [(b"content-length", b"3")], b"abc", version="1.0", keep_alive=False),
    ),
    case(
        "http11-connection-close",
        get_with(HOST + b"Connection: close\r\n"),
        req("GET", "/", [H, (b"connection", b"close")], keep_alive=False),
    ),
    case(
        "http11-connection-close-mixed-case",
        get_with(HOST + b"Connection: CLOSE\r\n"),
        req("GET", "/", [H, (b"connection", b"CLOSE")], keep_alive=False),
    ),
    case(
        "http11-connection-list-with-close",
        get_with(HOST + b"Connection: keep-alive,  close\r\n"),
        req("GET", "/", [H, (b"connection", b"keep-alive,  close")], keep_alive=False),
    ),
    case(
        "http11-close-on-second-connection-line",
        get_with(HOST + b"Connection: upgrade\r\nConnection: close\r\n"),
        req(
            "GET",
            "/",
            [H, (b"connection", b"upgrade"), (b"connection", b"close")],
            keep_alive=False,
        ),
    ),
    case(
        "http11-connection-closed-is-not-close",
        get_with(HOST + b"Connection: closed\r\n"),
        req("GET", "/", [H, (b"connection", b"closed")], keep_alive=True),
    ),
    # pipelining
    case(
        "pipelined-three",
        CURL + POST + chunked(b"3\r\nabc\r\n0\r\n\r\n"),
        [CURL_REQ, POST_REQ, chunked_req(b"abc")],
    ),
    case(
        "pipelined-with-empty-lines-between",
        CURL + b"\r\n" + POST + b"\r\n\r\n" + SSE,
        [CURL_REQ, POST_REQ, SSE_REQ],
    ),
    case(
        "pipelined-http10-keep-alive",
        b"GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /b HTTP/1.0\r\n\r\n",
        [
            req("GET", "/a", [(b"connection", b"keep-alive")], version="1.0"),
            req("GET", "/b", version="1.0", keep_alive=False),
        ],
    ),
    case(
        "close-then-more-requests-ignored",
        get_with(HOST + b"Connection: close\r\n") + CURL + b"garbage\x00\r\n\r\n",
        req("GET", "/", [H, (b"connection", b"close")], keep_alive=False),
    ),
    case(
        "http10-then-garbage-ignored",
        b"GET / HTTP/1.0\r\n\r\n\x00\x01 not http at all",
        req("GET", "/", version="1.0", keep_alive=False),
    ),
    case("leading-crlfs", b"\r\n\r\n\r\n" + CURL, CURL_REQ),
    # request-target forms
    case(
        "absolute-form",
        get_with(HOST, b"http://example.com/path?q=1"),
        req("GET", "http://example.com/path?q=1", [H]),
    ),
    case(
        "absolute-form-https-port",
        get_with(HOST, b"https://example.com:8443/"),
        req("GET", "https://example.com:8443/", [H]),
    ),
    case(
        "absolute-form-variants",
        get_with(HOST, b"HTTP://[::1]:80?q") + get_with(HOST, b"http://a.b:/")
        + get_with(HOST, b"https://x%41y.example"),
        [req("GET", "HTTP://[::1]:80?q", [H]), req("GET", "http://a.b:/", [H]),
         req("GET", "https://x%41y.example", [H])],
    ),
    case(
        "asterisk-form-options",
        b"OPTIONS * HTTP/1.1\r\n" + HOST + b"\r\n",
        req("OPTIONS", "*", [H]),
    ),
    case(
        "authority-form-connect",
        b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
        req("CONNECT", "example.com:443", [(b"host", b"example.com:443")]),
    ),
    case(
        "target-kept-as-sent",
        get_with(HOST, b"/a/b%20c/../d;p?x=1&y=%7E&z=a:b@c!$'()*+,=~"),
        req("GET", "/a/b%20c/../d;p?x=1&y=%7E&z=a:b@c!$'()*+,=~", [H]),
    ),
    case(
        "target-all-visible-ascii-but-hash",
        get_with(HOST, b'/"<>[\\]^`{|}'),
        req("GET", '/"<>[\\]^`{|}', [H]),
    ),
    # versions
    case("http12-is-11", request_line(b"GET / HTTP/1.2"), req("GET", "/", [H], version="1.1")),
    case("http19-is-11", request_line(b"GET / HTTP/1.9"), req("GET", "/", [H], version="1.1")),
    case(
        "http12-keeps-alive",
        get_with(HOST, version=b"HTTP/1.2") + CURL,
        [req("GET", "/", [H]), CURL_REQ],
    ),
    # methods
    case(
        "method-extension", request_line(b"M-SEARCH /upnp HTTP/1.1"), req("M-SEARCH", "/upnp", [H])
    ),
    case(
        "method-token-chars",
        request_line(b"X!#$%&'*+-.^_`|~9 / HTTP/1.1"),
        req("X!#$%&'*+-.^_`|~9", "/", [H]),
    ),
    case("method-lowercase-is-a-token", request_line(b"get / HTTP/1.1"), req("get", "/", [H])),
    case("method-patch", request_line(b"PATCH /x HTTP/1.1"), req("PATCH", "/x", [H])),
    # fields
    case(
        "field-names-lowercased-values-kept",
        get_with(HOST + b"X-MiXeD-Case: VaLuE\r\n"),
        req("GET", "/", [H, (b"x-mixed-case", b"VaLuE")]),
    ),
    case(
        "field-value-ows-stripped",
        get_with(HOST + b"A:  \t one  two\t \t\r\nB:x\r\nC:\t\r\nD:\r\nE: \t \r\n"),
        req(
            "GET",
            "/",
            [H, (b"a", b"one  two"), (b"b", b"x"), (b"c", b""), (b"d", b""), (b"e", b"")],
        ),
    ),
    case(
        "field-value-inner-tab-and-colon",
        get_with(HOST + b"X: a\tb: c:d\r\n"),
        req("GET", "/", [H, (b"x", b"a\tb: c:d")]),
    ),
    case(
        "field-duplicates-and-order-kept",
        get_with(b"Accept: a\r\n" + HOST + b"ACCEPT: b\r\nCookie: x=1\r\naccept: a\r\n"),
        req(
            "GET",
            "/",
            [(b"accept", b"a"), H, (b"accept", b"b"), (b"cookie", b"x=1"), (b"accept", b"a")],
        ),
    ),
    case(
        "field-name-token-chars",
        get_with(HOST + b"X-!#$%&'*+.^_`|~0: v\r\n"),
        req("GET", "/", [H, (b"x-!#$%&'*+.^_`|~0", b"v")]),
    ),
    case(
        "field-value-obs-text",
        get_with(HOST + b"X-Name: caf\xc3\xa9 \x80\xff\r\n"),
        req("GET", "/", [H, (b"x-name", b"caf\xc3\xa9 \x80\xff")]),
    ),
    case(
        "field-value-all-visible-ascii",
        get_with(HOST + b"X: " + bytes(range(0x21, 0x7F)) + b"\r\n"),
        req("GET", "/", [H, (b"x", bytes(range(0x21, 0x7F)))]),
    ),
    # Host
    case("host-empty", get_with(b"Host:\r\n"), req("GET", "/", [(b"host", b"")])),
    case("host-empty-ows", get_with(b"Host:  \r\n"), req("GET", "/", [(b"host", b"")])),
    case(
        "host-with-port",
        get_with(b"Host: example.com:8080\r\n"),
        req("GET", "/", [(b"host", b"example.com:8080")]),
    ),
    case(
        "host-ipv6-literal-port",
        get_with(b"Host: [::1]:8080\r\n"),
        req("GET", "/", [(b"host", b"[::1]:8080")]),
    ),
    case(
        "host-ipv6-literal",
        get_with(b"Host: [2001:db8::1]\r\n"),
        req("GET", "/", [(b"host", b"[2001:db8::1]")]),
    ),
    case(
        "host-ipv4",
        get_with(b"Host: 127.0.0.1:80\r\n"),
        req("GET", "/", [(b"host", b"127.0.0.1:80")]),
    ),
    case(
        "host-unreserved-subdelims-pct",
        get_with(b"Host: a-b.c_d~e!$&'()*+,;=%41\r\n"),
        req("GET", "/", [(b"host", b"a-b.c_d~e!$&'()*+,;=%41")]),
    ),
    # Expect
    case(
        "expect-100-continue-with-body",
        with_cl(b"5", b"hello").replace(b"\r\n\r\n", b"\r\nExpect: 100-continue\r\n\r\n"),
        req(
            "POST",
            "/p",
            [H, (b"content-length", b"5"), (b"expect", b"100-continue")],
            b"hello",
        ),
    ),
    case(
        "expect-100-continue-case-insensitive",
        get_with(HOST + b"Expect: 100-Continue\r\n"),
        req("GET", "/", [H, (b"expect", b"100-Continue")]),
    ),
    # EOF
    case("eof-at-start", b"", [], eof=True),
    case("eof-between-requests", CURL + SSE, [CURL_REQ, SSE_REQ], eof=True),
    case(
        "eof-after-close",
        get_with(HOST + b"Connection: close\r\n"),
        req("GET", "/", [H, (b"connection", b"close")], keep_alive=False),
        eof=True,
    ),
]


@pytest.mark.parametrize("data, expect, eof, limits", VALID)
def test_valid(http_parser, data, expect, eof, limits):
    check(http_parser, data, expect, eof, limits)


# --------------------------------------------------------------------------- rejections

INVALID = [
    # Content-Length / Transfer-Encoding
    case(
        "cl-and-te",
        b"POST / HTTP/1.1\r\n"
        + HOST
        + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        Err(400),
    ),
    case(
        "te-and-cl",
        b"POST / HTTP/1.1\r\n"
        + HOST
        + b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
        Err(400),
    ),
    case(
        "cl-differing-lines",
        b"POST / HTTP/1.1\r\n" + HOST + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        Err(400),
    ),
    case("cl-differing-list", with_cl(b"5, 6", b"hello!"), Err(400)),
    case("cl-plus", with_cl(b"+5", b"hello"), Err(400)),
    case("cl-minus", with_cl(b"-1"), Err(400)),
    case("cl-space-inside", with_cl(b"1 0", b"0123456789"), Err(400)),
    case("cl-5-space-5", with_cl(b"5 5", b"hello"), Err(400)),
    case("cl-tab-inside", with_cl(b"5\t5", b"hello"), Err(400)),
    case("cl-hex", with_cl(b"0x5", b"hello"), Err(400)),
    case("cl-empty", with_cl(b""), Err(400)),
    case("cl-decimal-point", with_cl(b"5.0", b"hello"), Err(400)),
    case("cl-underscore", with_cl(b"1_0", b"0123456789"), Err(400)),
    case("cl-unicode-digit", with_cl(b"\xd9\xa5", b"hello"), Err(400)),
    case("cl-word", with_cl(b"five", b"hello"), Err(400)),
    case("cl-semicolon", with_cl(b"5;", b"hello"), Err(400)),
    case(
        "te-gzip-only", b"POST / HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: gzip\r\n\r\n", Err(400)
    ),
    case(
        "te-identity",
        b"POST / HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: identity\r\n\r\n",
        Err(400),
    ),
    case(
        "te-chunked-not-last",
        b"POST / HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: chunked, gzip\r\n\r\n",
        Err(400),
    ),
    case(
        "te-chunked-not-last-over-lines",
        b"POST / HTTP/1.1\r\n"
        + HOST
        + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n",
        Err(400),
    ),
    case(
        "te-chunked-twice",
        b"POST / HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n",
        Err(400),
    ),
    case(
        "te-chunked-twice-over-lines",
        b"POST / HTTP/1.1\r\n"
        + HOST
        + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        Err(400),
    ),
    case(
        "te-gzip-chunked",
        b"POST / HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        Err(501),
    ),
    case(
        "te-deflate-chunked-over-lines",
        b"POST / HTTP/1.1\r\n"
        + HOST
        + b"Transfer-Encoding: deflate\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        Err(501),
    ),
    case(
        "te-on-http10",
        b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        Err(400),
    ),
    case("te-empty", b"POST / HTTP/1.1\r\n" + HOST + b"Transfer-Encoding:\r\n\r\n", Err(400)),
    case("te-blank", b"POST / HTTP/1.1\r\n" + HOST + b"Transfer-Encoding:  \t \r\n\r\n", Err(400)),
    case(
        "te-only-commas", b"POST / HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: ,\r\n\r\n", Err(400)
    ),
    case(
        "te-chunked-lookalike",
        b"POST / HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
        Err(400),
    ),
    # field syntax
    case("obs-fold-space", get_with(HOST + b"X: a\r\n b\r\n"), Err(400)),
    case("obs-fold-tab", get_with(HOST + b"X: a\r\n\tb\r\n"), Err(400)),
    case("first-field-line-starts-with-space", get_with(b" " + HOST), Err(400)),
    case("bare-cr-in-value", get_with(HOST + b"X: a\rb\r\n"), Err(400)),
    case("cr-cr-lf", get_with(HOST + b"X: a\r\r\n"), Err(400)),
    case("bare-cr-in-name", get_with(HOST + b"X\rY: a\r\n"), Err(400)),
    case("bare-lf-ends-field-line", get_with(HOST + b"X: a\nY: b\r\n"), Err(400), eof=True),
    case(
        "bare-lf-ends-request-line",
        b"GET / HTTP/1.1\n" + HOST + b"\r\n",
        Err(400),
        eof=True,
    ),
    case("bare-lf-everywhere", b"GET / HTTP/1.1\nHost: a\n\n", Err(400), eof=True),
    case("nul-in-value", get_with(HOST + b"X: a\x00b\r\n"), Err(400)),
    case("soh-in-value", get_with(HOST + b"X: \x01\r\n"), Err(400)),
    case("esc-in-value", get_with(HOST + b"X: a\x1bb\r\n"), Err(400)),
    case("vt-in-value", get_with(HOST + b"X: a\x0bb\r\n"), Err(400)),
    case("ff-in-value", get_with(HOST + b"X: a\x0cb\r\n"), Err(400)),
    case("del-in-value", get_with(HOST + b"X: a\x7fb\r\n"), Err(400)),
    case("space-before-colon", get_with(HOST + b"X : a\r\n"), Err(400)),
    case("tab-before-colon", get_with(HOST + b"X\t: a\r\n"), Err(400)),
    case("host-space-before-colon", get_with(b"Host : example.com\r\n"), Err(400)),
    case("empty-field-name", get_with(HOST + b": a\r\n"), Err(400)),
    case("no-colon", get_with(HOST + b"NoColonHere\r\n"), Err(400)),
    case("field-name-paren", get_with(HOST + b"X(Y): a\r\n"), Err(400)),
    case("field-name-at", get_with(HOST + b"X@Y: a\r\n"), Err(400)),
    case("field-name-slash", get_with(HOST + b"X/Y: a\r\n"), Err(400)),
    case("field-name-brace", get_with(HOST + b"X{Y: a\r\n"), Err(400)),
    case("field-name-space-inside", get_with(HOST + b"X Y: a\r\n"), Err(400)),
    case("field-name-non-ascii", get_with(HOST + b"X\xc3\xa9: a\r\n"), Err(400)),
    case("field-name-nul", get_with(HOST + b"X\x00: a\r\n"), Err(400)),
    # request line
    case("method-paren", request_line(b"GE(T / HTTP/1.1"), Err(400)),
    case("method-quote", request_line(b'GE"T / HTTP/1.1'), Err(400)),
    case("method-comma", request_line(b"G,ET / HTTP/1.1"), Err(400)),
    case("method-at", request_line(b"GE@T / HTTP/1.1"), Err(400)),
    case("method-non-ascii", request_line(b"G\xc3\x89T / HTTP/1.1"), Err(400)),
    case("method-nul", request_line(b"GET\x00 / HTTP/1.1"), Err(400)),
    case("empty-method", request_line(b" / HTTP/1.1"), Err(400)),
    case("double-space-after-method", request_line(b"GET  / HTTP/1.1"), Err(400)),
    case("double-space-after-target", request_line(b"GET /  HTTP/1.1"), Err(400)),
    case("tab-separator", request_line(b"GET\t/ HTTP/1.1"), Err(400)),
    case("trailing-space", request_line(b"GET / HTTP/1.1 "), Err(400)),
    case("extra-word", request_line(b"GET / HTTP/1.1 extra"), Err(400)),
    case("missing-version", request_line(b"GET /"), Err(400)),
    case("method-only", request_line(b"GET"), Err(400)),
    case("empty-request-line-then-junk", b"\r\n \r\n" + HOST + b"\r\n", Err(400)),
    # versions
    case("version-lowercase", request_line(b"GET / http/1.1"), Err(400)),
    case("version-mixed-case", request_line(b"GET / Http/1.1"), Err(400)),
    case("version-1-10", request_line(b"GET / HTTP/1.10"), Err(400)),
    case("version-1-01", request_line(b"GET / HTTP/1.01"), Err(400)),
    case("version-01-1", request_line(b"GET / HTTP/01.1"), Err(400)),
    case("version-11", request_line(b"GET / HTTP/11"), Err(400)),
    case("version-1", request_line(b"GET / HTTP/1"), Err(400)),
    case("version-1-dot", request_line(b"GET / HTTP/1."), Err(400)),
    case("version-dot-1", request_line(b"GET / HTTP/.1"), Err(400)),
    case("version-1-x", request_line(b"GET / HTTP/1.x"), Err(400)),
    case("version-comma", request_line(b"GET / HTTP/1,1"), Err(400)),
    case("version-https", request_line(b"GET / HTTPS/1.1"), Err(400)),
    case("version-no-slash", request_line(b"GET / HTTP1.1"), Err(400)),
    case("version-2-0", request_line(b"GET / HTTP/2.0"), Err(505)),
    case("version-0-9", request_line(b"GET / HTTP/0.9"), Err(505)),
    case("version-3-0", request_line(b"GET / HTTP/3.0"), Err(505)),
    case("version-9-9", request_line(b"GET / HTTP/9.9"), Err(505)),
    # request-target
    case("target-fragment", request_line(b"GET /a#b HTTP/1.1"), Err(400)),
    case("target-non-ascii", request_line(b"GET /caf\xc3\xa9 HTTP/1.1"), Err(400)),
    case("target-0x80", request_line(b"GET /\x80 HTTP/1.1"), Err(400)),
    case("target-space", request_line(b"GET /a b HTTP/1.1"), Err(400)),
    case("target-tab", request_line(b"GET /a\tb HTTP/1.1"), Err(400)),
    case("target-del", request_line(b"GET /a\x7f HTTP/1.1"), Err(400)),
    case("target-nul", request_line(b"GET /\x00 HTTP/1.1"), Err(400)),
    case("asterisk-with-get", request_line(b"GET * HTTP/1.1"), Err(400)),
    case("asterisk-with-post", request_line(b"POST * HTTP/1.1"), Err(400)),
    case("asterisk-with-m-search", request_line(b"M-SEARCH * HTTP/1.1"), Err(400)),
    case("asterisk-plus-junk", request_line(b"OPTIONS *x HTTP/1.1"), Err(400)),
    case("target-relative", request_line(b"GET index.html HTTP/1.1"), Err(400)),
    case("target-query-only", request_line(b"GET ?q=1 HTTP/1.1"), Err(400)),
    case("target-host-path", request_line(b"GET example.com/x HTTP/1.1"), Err(400)),
    case("authority-form-with-get", request_line(b"GET example.com:443 HTTP/1.1"), Err(400)),
    case("absolute-form-ftp", request_line(b"GET ftp://example.com/ HTTP/1.1"), Err(400)),
    # absolute-form authority (RFC 9110 4.2.1: no empty host; 4.2.4: no userinfo)
    case("absolute-form-empty-host", request_line(b"GET http:///x HTTP/1.1"), Err(400)),
    case("absolute-form-nothing-after-scheme", request_line(b"GET http:// HTTP/1.1"), Err(400)),
    case("absolute-form-port-only", request_line(b"GET http://:80/ HTTP/1.1"), Err(400)),
    case("absolute-form-userinfo", request_line(b"GET http://u:p@example.com/ HTTP/1.1"),
         Err(400)),
    case("absolute-form-at-only", request_line(b"GET https://@example.com/ HTTP/1.1"), Err(400)),
    case("absolute-form-port-not-digits", request_line(b"GET http://a.b:8a/ HTTP/1.1"), Err(400)),
    case("absolute-form-empty-ip-literal", request_line(b"GET http://[]/ HTTP/1.1"), Err(400)),
    case("absolute-form-bad-host-char", request_line(b"GET http://a<b/ HTTP/1.1"), Err(400)),
    # Host
    case("host-missing", b"GET / HTTP/1.1\r\n\r\n", Err(400)),
    case("host-missing-with-fields", get_with(b"Accept: */*\r\n"), Err(400)),
    case("host-missing-absolute-form", get_with(b"", b"http://example.com/"), Err(400)),
    case("host-missing-http12", get_with(b"", version=b"HTTP/1.2"), Err(400)),
    case("host-duplicate", get_with(HOST + b"Host: other.com\r\n"), Err(400)),
    case("host-duplicate-identical", get_with(HOST + HOST), Err(400)),
    case("host-space-inside", get_with(b"Host: exa mple.com\r\n"), Err(400)),
    case("host-slash", get_with(b"Host: example.com/x\r\n"), Err(400)),
    case("host-userinfo", get_with(b"Host: user@example.com\r\n"), Err(400)),
    case("host-question", get_with(b"Host: example.com?\r\n"), Err(400)),
    case("host-quote", get_with(b'Host: "example.com"\r\n'), Err(400)),
    case("host-backslash", get_with(b"Host: a\\b\r\n"), Err(400)),
    case("host-angle", get_with(b"Host: <a>\r\n"), Err(400)),
    case("host-non-ascii", get_with(b"Host: caf\xc3\xa9.fr\r\n"), Err(400)),
    case("host-tab-inside", get_with(b"Host: a\tb\r\n"), Err(400)),
    # chunk framing
    case("chunk-size-empty", chunked(b"\r\n5\r\nhello\r\n0\r\n\r\n"), Err(400)),
    case("chunk-size-xyz", chunked(b"xyz\r\nhello\r\n0\r\n\r\n"), Err(400)),
    case("chunk-size-negative", chunked(b"-1\r\nhello\r\n0\r\n\r\n"), Err(400)),
    case("chunk-size-plus", chunked(b"+5\r\nhello\r\n0\r\n\r\n"), Err(400)),
    case("chunk-size-0x", chunked(b"0x5\r\nhello\r\n0\r\n\r\n"), Err(400)),
    case("chunk-size-space-inside", chunked(b"5 5\r\nhello\r\n0\r\n\r\n"), Err(400)),
    case("chunk-size-nul", chunked(b"5\x00\r\nhello\r\n0\r\n\r\n"), Err(400)),
    case("chunk-extension-only", chunked(b";a=b\r\nhello\r\n0\r\n\r\n"), Err(400)),
    case("chunk-data-too-long", chunked(b"5\r\nhelloXX\r\n0\r\n\r\n"), Err(400)),
    case("chunk-data-no-crlf", chunked(b"5\r\nhello0\r\n\r\n"), Err(400)),
    case("chunk-data-short", chunked(b"5\r\nhel\r\n0\r\n\r\n"), Err(400)),
    case("chunk-data-bare-lf", chunked(b"5\r\nhello\n0\r\n\r\n"), Err(400)),
    case("chunk-data-bare-cr", chunked(b"5\r\nhello\r0\r\n\r\n"), Err(400)),
    case("chunk-data-cr-junk", chunked(b"3\r\nxxx\r_1a\r\n0\r\n\r\n"), Err(400)),
    case("chunk-data-junk-lf", chunked(b"3\r\nxxx_\n1a\r\n0\r\n\r\n"), Err(400)),
    case("chunk-size-bare-lf", chunked(b"5\nhello\r\n0\r\n\r\n"), Err(400)),
    case("chunk-size-bare-cr", chunked(b"5\rhello\r\n0\r\n\r\n"), Err(400)),
    case("chunk-extension-bare-cr", chunked(b"5;a\rb\r\nhello\r\n0\r\n\r\n"), Err(400)),
    case(
        "chunk-size-line-too-long-ext",
        chunked(b"5;" + b"a" * 5000 + b"\r\nhello\r\n0\r\n\r\n"),
        Err(400),
    ),
    case(
        "chunk-size-line-too-long-zeros",
        chunked(b"0" * 5000 + b"5\r\nhello\r\n0\r\n\r\n"),
        Err(400),
    ),
    case("trailer-obs-fold", chunked(b"0\r\nX: a\r\n b\r\n\r\n"), Err(400)),
    case("trailer-bad-name", chunked(b"0\r\nX Y: a\r\n\r\n"), Err(400)),
    case("trailer-space-before-colon", chunked(b"0\r\nX : a\r\n\r\n"), Err(400)),
    case("trailer-nul-in-value", chunked(b"0\r\nX: a\x00\r\n\r\n"), Err(400)),
    case("trailer-bare-lf", chunked(b"0\r\nX: a\n\r\n"), Err(400), eof=True),
    # sizes: 413
    case("chunk-size-2-pow-64", chunked(b"10000000000000000\r\nx"), Err(413)),
    case("chunk-size-20-f", chunked(b"ffffffffffffffffffff\r\nx"), Err(413)),
    case("chunk-size-2-pow-64-minus-1", chunked(b"ffffffffffffffff\r\n"), Err(413)),
    case("chunk-size-past-default-limit", chunked(b"100001\r\n"), Err(413)),
    case("chunk-size-at-default-limit-head-only", chunked(b"100000\r\n"), []),
    case(
        "chunks-total-past-limit-before-data",
        chunked(b"5\r\nhello\r\n6\r\n"),
        Err(413),
        max_body_bytes=10,
    ),
    case(
        "single-chunk-past-limit-before-data",
        chunked(b"b\r\n"),
        Err(413),
        max_body_bytes=10,
    ),
    case("cl-past-default-limit-head-only", with_cl(b"1048577"), Err(413)),
    case("cl-at-default-limit-head-only", with_cl(b"1048576"), []),
    case("cl-huge", with_cl(b"99999999999999999999999999"), Err(413)),
    case("cl-past-small-limit-head-only", with_cl(b"11"), Err(413), max_body_bytes=10),
    # 414 / 431
    case(
        "request-line-default-limit", request_line(b"GET /" + b"a" * 8300 + b" HTTP/1.1"), Err(414)
    ),
    case("request-line-never-ends", b"GET /" + b"a" * 200, Err(414), max_request_line_bytes=64),
    case(
        "header-block-never-ends",
        b"GET / HTTP/1.1\r\n" + HOST + b"X: " + b"a" * 1000,
        Err(431),
        max_header_bytes=128,
    ),
    case(
        "header-lines-never-end",
        b"GET / HTTP/1.1\r\n" + HOST + b"X: a\r\n" * 100,
        Err(431),
        max_header_bytes=128,
    ),
    case(
        "header-block-default-limit",
        get_with(HOST + b"X: " + b"a" * 70000 + b"\r\n"),
        Err(431),
    ),
    case(
        "header-count-default-limit",
        get_with(HOST + b"".join(b"X-%d: v\r\n" % i for i in range(2000))),
        Err(431),
    ),
    case(
        "header-count-small-limit",
        get_with(HOST + b"A: 1\r\nB: 2\r\nC: 3\r\n"),
        Err(431),
        max_header_count=3,
    ),
    case(
        "trailer-count",
        chunked(b"0\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n"),
        Err(431),
        max_header_count=3,
    ),
    # Expect
    case(
        "expect-unknown",
        with_cl(b"5", b"hello").replace(b"\r\n\r\n", b"\r\nExpect: something\r\n\r\n"),
        Err(417),
    ),
    case("expect-unknown-no-body", get_with(HOST + b"Expect: 200-ok\r\n"), Err(417)),
    case("expect-100-continued", get_with(HOST + b"Expect: 100-continued\r\n"), Err(417)),
    # EOF
    case("eof-mid-request-line", b"GET /ind", Err(400), eof=True),
    case("eof-after-request-line", b"GET / HTTP/1.1\r\n", Err(400), eof=True),
    case("eof-mid-head", b"GET / HTTP/1.1\r\n" + HOST, Err(400), eof=True),
    case("eof-mid-head-cr", b"GET / HTTP/1.1\r\n" + HOST + b"\r", Err(400), eof=True),
    case("eof-mid-body", with_cl(b"5", b"hel"), Err(400), eof=True),
    case("eof-before-body", with_cl(b"5"), Err(400), eof=True),
    case("eof-mid-chunk-size", chunked(b"5"), Err(400), eof=True),
    case("eof-mid-chunk-data", chunked(b"5\r\nhel"), Err(400), eof=True),
    case("eof-before-chunk-crlf", chunked(b"5\r\nhello"), Err(400), eof=True),
    case("eof-after-last-chunk", chunked(b"5\r\nhello\r\n0\r\n"), Err(400), eof=True),
    case("eof-mid-trailers", chunked(b"0\r\nX: a\r\n"), Err(400), eof=True),
    case("eof-second-request", CURL + b"GET /x HTTP/1.1\r\n", Err(400, (CURL_REQ,)), eof=True),
    # an error after good requests
    case(
        "good-then-bad",
        CURL + SSE + request_line(b"GET / HTTP/1.1 x"),
        Err(400, (CURL_REQ, SSE_REQ)),
    ),
    case("good-then-505", CURL + request_line(b"GET / HTTP/2.0"), Err(505, (CURL_REQ,))),
]


@pytest.mark.parametrize("data, expect, eof, limits", INVALID)
def test_invalid(http_parser, data, expect, eof, limits):
    check(http_parser, data, expect, eof, limits)


def test_case_ids_unique():
    ids = [p.id for p in VALID + INVALID]
    assert len(ids) == len(set(ids))
    for p in INVALID:
        expect = p.values[1]
        assert not isinstance(expect, Err) or expect.status in ERROR_STATUSES


# --------------------------------------------------------------------------- limits, exactly


# What the limits count (contract, rule 3 in _parser_py): the request line without its CRLF;
# the header block as its field lines with their CRLFs, without the final empty line.


def _line_of(length: int) -> bytes:
    """A request line that counts as exactly ``length`` bytes against the limit."""
    fixed = len(b"GET / HTTP/1.1")
    return b"GET /" + b"a" * (length - fixed) + b" HTTP/1.1\r\n"


@pytest.mark.parametrize("limit", [32, 100, public_parser.DEFAULT_MAX_REQUEST_LINE_BYTES])
def test_request_line_limit_boundary(http_parser, limit):
    limits = (
        {}
        if limit == public_parser.DEFAULT_MAX_REQUEST_LINE_BYTES
        else {"max_request_line_bytes": limit}
    )
    ok = _line_of(limit) + HOST + b"\r\n"
    out = parse(http_parser, ok, limits=limits)
    assert out.error is None
    assert out.requests == [req("GET", _line_of(limit)[4:-11].decode(), [H])]
    bad = _line_of(limit + 1) + HOST + b"\r\n"
    assert parse(http_parser, bad, limits=limits).error == 414


@pytest.mark.parametrize("limit", [32, 100])
def test_request_line_limit_raised_without_waiting(http_parser, limit):
    # A line that never ends: 414 as soon as `limit` bytes have arrived without a CRLF.
    data = b"GET /" + b"a" * (limit * 10)
    limits = {"max_request_line_bytes": limit}
    assert parse_whole(http_parser, data, limits=limits).error == 414
    offset = error_offset(http_parser, data, limits=limits)
    latest = limit + 1
    assert offset is not None and offset <= latest, f"414 only after {offset} bytes"
    # and the bytes before it are not an error on their own
    assert parse_whole(http_parser, data[: limit - 1], limits=limits).error is None


def _head_value(length: int) -> bytes:
    fixed = len(HOST + b"X: \r\n")
    return b"v" * (length - fixed)


def _head_of(length: int) -> bytes:
    """Field lines (Host and X) and the final CRLF, counting ``length`` bytes."""
    return HOST + b"X: " + _head_value(length) + b"\r\n\r\n"


@pytest.mark.parametrize("limit", [64, 200, public_parser.DEFAULT_MAX_HEADER_BYTES])
def test_header_bytes_limit_boundary(http_parser, limit):
    limits = {} if limit == public_parser.DEFAULT_MAX_HEADER_BYTES else {"max_header_bytes": limit}
    line = b"GET / HTTP/1.1\r\n"
    out = parse(http_parser, line + _head_of(limit), limits=limits)
    assert out.error is None
    assert out.requests == [req("GET", "/", [H, (b"x", _head_value(limit))])]
    assert parse(http_parser, line + _head_of(limit + 1), limits=limits).error == 431


def test_header_bytes_limit_raised_without_waiting(http_parser):
    limit = 128
    line = b"GET / HTTP/1.1\r\n"
    data = line + HOST + b"X: " + b"a" * 5000
    limits = {"max_header_bytes": limit}
    offset = error_offset(http_parser, data, limits=limits)
    latest = len(line) + (limit + 1)
    assert offset is not None and offset <= latest, f"431 only after {offset} bytes"
    assert parse_whole(http_parser, data, limits=limits).error == 431


@pytest.mark.parametrize("limit", [1, 5, public_parser.DEFAULT_MAX_HEADER_COUNT])
def test_header_count_limit_boundary(http_parser, limit):
    limits = {} if limit == public_parser.DEFAULT_MAX_HEADER_COUNT else {"max_header_count": limit}
    extra = [(b"x-%d" % i, b"v") for i in range(limit - 1)]
    lines = HOST + b"".join(n + b": " + v + b"\r\n" for n, v in extra)
    out = parse(http_parser, get_with(lines), limits=limits)
    assert out.error is None
    assert out.requests == [req("GET", "/", [H, *extra])]
    out = parse(http_parser, get_with(lines + b"One-More: v\r\n"), limits=limits)
    assert out.error == 431


@pytest.mark.parametrize("limit", [0, 10, 1000])
def test_body_limit_boundary_content_length(http_parser, limit):
    limits = {"max_body_bytes": limit}
    body = b"b" * limit
    out = parse(http_parser, with_cl(str(limit).encode(), body), limits=limits)
    assert out.error is None
    assert out.requests == [req("POST", "/p", [H, (b"content-length", str(limit).encode())], body)]
    # limit + 1 is refused from the head alone, before any body byte arrives
    assert parse(http_parser, with_cl(str(limit + 1).encode()), limits=limits).error == 413
    assert (
        parse(http_parser, with_cl(str(limit + 1).encode(), body + b"b"), limits=limits).error
        == 413
    )


@pytest.mark.parametrize("limit", [0, 10, 1000])
def test_body_limit_boundary_chunked(http_parser, limit):
    limits = {"max_body_bytes": limit}
    half = limit // 2
    body = b"c" * limit
    framing = b""
    if half:
        framing += b"%x\r\n" % half + body[:half] + b"\r\n"
    if limit - half:
        framing += b"%X\r\n" % (limit - half) + body[half:] + b"\r\n"
    out = parse(http_parser, chunked(framing + b"0\r\n\r\n"), limits=limits)
    assert out.error is None
    assert out.requests == [chunked_req(body)]
    # one more byte in a last chunk: refused when its size line arrives
    assert parse(http_parser, chunked(framing + b"1\r\n"), limits=limits).error == 413


def test_trailers_obey_header_limits(http_parser):
    trailers = b"".join(b"T-%d: v\r\n" % i for i in range(3))
    out = parse(http_parser, chunked(b"0\r\n" + trailers + b"\r\n"), limits={"max_header_count": 3})
    # 2 header fields and 3 trailer fields: each block within its limit of 3
    assert out.error is None
    assert out.requests[0].trailers == ((b"t-0", b"v"), (b"t-1", b"v"), (b"t-2", b"v"))
    big = b"T: " + b"v" * 300 + b"\r\n"
    out = parse(http_parser, chunked(b"0\r\n" + big + b"\r\n"), limits={"max_header_bytes": 128})
    assert out.error == 431


# --------------------------------------------------------------------------- API behaviour


def test_defaults_match_public_module():
    assert public_parser.DEFAULT_MAX_REQUEST_LINE_BYTES == 8192
    assert public_parser.DEFAULT_MAX_HEADER_BYTES == 65536
    assert public_parser.DEFAULT_MAX_HEADER_COUNT == 2000
    assert public_parser.DEFAULT_MAX_BODY_BYTES == 1048576


def test_next_request_before_any_bytes(http_parser):
    p = http_parser.RequestParser()
    assert p.next_request() is None
    assert p.needs_continue() is False
    assert p.next_request() is None


def test_returns_parsed_request_instances(http_parser):
    p = http_parser.RequestParser()
    p.feed(CURL)
    r = p.next_request()
    assert isinstance(r, http_parser.ParsedRequest)
    assert isinstance(r.headers, list) and isinstance(r.trailers, list)


@pytest.mark.parametrize(
    "attr, value",
    [
        ("method", "POST"),
        ("target", "/x"),
        ("version", "1.0"),
        ("headers", []),
        ("body", b"x"),
        ("trailers", []),
        ("keep_alive", False),
    ],
)
def test_parsed_request_is_read_only(http_parser, attr, value):
    p = http_parser.RequestParser()
    p.feed(CURL)
    r = p.next_request()
    with pytest.raises(AttributeError):
        setattr(r, attr, value)


def test_limits_are_keyword_arguments(http_parser):
    p = http_parser.RequestParser(
        max_request_line_bytes=100, max_header_bytes=200, max_header_count=5, max_body_bytes=10
    )
    p.feed(CURL)
    assert p.next_request() is not None


def test_dead_after_error(http_parser):
    p = http_parser.RequestParser()
    p.feed(request_line(b"GET / HTTP/2.0"))
    with pytest.raises(ProtocolError) as first:
        p.next_request()
    assert first.value.status == 505
    for more in (b"", CURL, b"\r\n"):
        if more:
            p.feed(more)
        with pytest.raises(ProtocolError) as again:
            p.next_request()
        assert again.value.status == 505
        assert again.value.reason == first.value.reason


def test_dead_after_limit_error(http_parser):
    p = http_parser.RequestParser(max_header_count=1)
    p.feed(get_with(HOST + b"X: 1\r\n"))
    for _ in range(3):
        with pytest.raises(ProtocolError) as err:
            p.next_request()
        assert err.value.status == 431


def test_good_request_then_bad_one(http_parser):
    # A good request already returned stays returned; the bad one after it raises.
    p = http_parser.RequestParser()
    p.feed(CURL + b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n")
    assert p.next_request() is not None
    with pytest.raises(ProtocolError) as err:
        p.next_request()
    assert err.value.status == 400


def test_none_for_good_after_connection_close(http_parser):
    p = http_parser.RequestParser()
    p.feed(get_with(HOST + b"Connection: close\r\n") + CURL)
    r = p.next_request()
    assert r is not None and r.keep_alive is False
    assert p.next_request() is None
    p.feed(CURL)
    assert p.next_request() is None
    p.feed(b"garbage \x00\r\n\r\n")
    assert p.next_request() is None
    p.feed(b"")
    assert p.next_request() is None


def test_none_for_good_after_http10(http_parser):
    p = http_parser.RequestParser()
    p.feed(b"GET / HTTP/1.0\r\n\r\n")
    assert p.next_request().keep_alive is False
    p.feed(b"GET / HTTP/1.0\r\n\r\n")
    assert p.next_request() is None


def test_eof_between_requests_is_quiet(http_parser):
    p = http_parser.RequestParser()
    p.feed(CURL)
    assert p.next_request() is not None
    assert p.next_request() is None
    p.feed(b"")
    assert p.next_request() is None
    assert p.next_request() is None


def test_eof_mid_request_is_400(http_parser):
    p = http_parser.RequestParser()
    p.feed(CURL[:-1])
    assert p.next_request() is None
    p.feed(b"")
    with pytest.raises(ProtocolError) as err:
        p.next_request()
    assert err.value.status == 400


def test_pipelined_requests_come_one_at_a_time(http_parser):
    p = http_parser.RequestParser()
    p.feed(CURL + POST + SSE)
    got = [p.next_request(), p.next_request(), p.next_request()]
    assert [r.target for r in got] == ["/", "/api/items", "/stream"]
    assert got[1].body == JSON
    assert p.next_request() is None


# --------------------------------------------------------------------------- Expect


EXPECT_HEAD = (
    b"POST /upload HTTP/1.1\r\n" + HOST + b"Content-Length: 5\r\nExpect: 100-continue\r\n\r\n"
)


def test_needs_continue_before_body(http_parser):
    p = http_parser.RequestParser()
    assert p.needs_continue() is False
    p.feed(EXPECT_HEAD)
    assert p.next_request() is None
    assert p.needs_continue() is True
    p.feed(b"hello")
    r = p.next_request()
    assert r is not None and r.body == b"hello"
    assert p.needs_continue() is False
    assert p.next_request() is None
    assert p.needs_continue() is False


def test_needs_continue_chunked(http_parser):
    p = http_parser.RequestParser()
    p.feed(CHUNKED_HEAD.replace(b"\r\n\r\n", b"\r\nExpect: 100-Continue\r\n\r\n"))
    assert p.next_request() is None
    assert p.needs_continue() is True
    p.feed(b"3\r\nabc\r\n0\r\n\r\n")
    r = p.next_request()
    assert r.body == b"abc"
    assert p.needs_continue() is False


def test_needs_continue_head_arriving_bytewise(http_parser):
    p = http_parser.RequestParser()
    for i in range(len(EXPECT_HEAD) - 1):
        p.feed(EXPECT_HEAD[i : i + 1])
        assert p.next_request() is None
        assert p.needs_continue() is False  # the head is not complete yet
    p.feed(EXPECT_HEAD[-1:])
    assert p.next_request() is None
    assert p.needs_continue() is True


def test_needs_continue_false_without_expect(http_parser):
    p = http_parser.RequestParser()
    p.feed(with_cl(b"5"))
    assert p.next_request() is None
    assert p.needs_continue() is False


def test_needs_continue_false_without_body(http_parser):
    # Expect: 100-continue but nothing to come: the request is complete at once.
    p = http_parser.RequestParser()
    p.feed(get_with(HOST + b"Expect: 100-continue\r\n"))
    r = p.next_request()
    assert r is not None and r.body == b""
    assert p.needs_continue() is False
    p = http_parser.RequestParser()
    p.feed(with_cl(b"0").replace(b"\r\n\r\n", b"\r\nExpect: 100-continue\r\n\r\n"))
    assert p.next_request() is not None
    assert p.needs_continue() is False


def test_needs_continue_false_on_http10(http_parser):
    p = http_parser.RequestParser()
    p.feed(b"POST / HTTP/1.0\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n")
    assert p.next_request() is None
    assert p.needs_continue() is False
    p.feed(b"ok")
    r = p.next_request()
    assert r.body == b"ok" and r.version == "1.0"


def test_needs_continue_for_second_pipelined_request(http_parser):
    p = http_parser.RequestParser()
    p.feed(CURL + EXPECT_HEAD)
    assert p.next_request().target == "/"
    assert p.next_request() is None
    assert p.needs_continue() is True
    p.feed(b"hello")
    assert p.next_request().body == b"hello"
    assert p.needs_continue() is False


def test_has_partial(http_parser):
    p = http_parser.RequestParser()
    assert not p.has_partial()
    p.feed(b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /b HT")
    assert p.has_partial()  # before anything is parsed: bytes are buffered
    assert p.next_request().target == "/"
    assert p.has_partial()  # the start of the next request
    p.feed(b"TP/1.1\r\nHost: a\r\n")
    assert p.next_request() is None
    assert p.has_partial()  # a head in progress
    p.feed(b"\r\n")
    assert p.next_request().target == "/b"
    assert not p.has_partial()
    p.feed(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nab")
    assert p.next_request() is None
    assert p.has_partial()  # a body in progress
    p.feed(b"cd")
    assert p.next_request().body == b"abcd"
    assert not p.has_partial()


def test_has_partial_is_false_after_an_error_or_a_closing_request(http_parser):
    p = http_parser.RequestParser()
    p.feed(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\nGET /ignored")
    assert p.next_request().keep_alive is False
    assert not p.has_partial()
    p = http_parser.RequestParser()
    p.feed(b"BAD\r\n\r\n")
    with pytest.raises(ProtocolError):
        p.next_request()
    assert not p.has_partial()


# --- head first (rules 6-10): the caller's side of the contract ------------------------

def test_head_first_streams_a_chunked_body_with_its_trailers(http_parser):
    parser = http_parser.RequestParser(head_first=True)
    parser.feed(b"POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc")
    head = parser.next_request()
    assert (head.method, head.target, head.body) == ("POST", "/up", b"")
    assert parser.body_pending()
    parser.stream_body()
    assert not parser.body_pending()
    assert parser.next_body() == b"abc"
    assert parser.next_body() is None
    parser.feed(b"\r\n2\r\nde\r\n0\r\nX-Sum: 5\r\n\r\nGET /next HTTP/1.1\r\nHost: a\r\n\r\n")
    assert parser.next_body() == b"de"
    assert parser.next_body() == b""
    assert list(head.trailers) == [(b"x-sum", b"5")]
    nxt = parser.next_request()
    assert (nxt.method, nxt.target, parser.body_pending()) == ("GET", "/next", False)


def test_head_first_calls_out_of_turn_are_runtime_errors(http_parser):
    parser = http_parser.RequestParser(head_first=True)
    with pytest.raises(RuntimeError):
        parser.next_body()
    with pytest.raises(RuntimeError):
        parser.stream_body()
    parser.feed(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nab")
    parser.next_request()
    with pytest.raises(RuntimeError):
        parser.next_request()  # the choice is due
    parser.buffer_body()
    with pytest.raises(RuntimeError):
        parser.next_body()
    assert parser.next_request() is None
    parser.feed(b"cd")
    assert parser.next_request().body == b"abcd"


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_streamed_and_whole_bodies_have_their_own_limits(http_parser, chunked):
    body = b"x" * 100
    framing = (b"Transfer-Encoding: chunked\r\n\r\n64\r\n" + body + b"\r\n0\r\n\r\n"
               if chunked else b"Content-Length: 100\r\n\r\n" + body)
    data = b"POST / HTTP/1.1\r\nHost: a\r\n" + framing
    # max_body_bytes bounds a body read whole, not a streamed one (None: unbounded) ...
    parser = http_parser.RequestParser(head_first=True, max_body_bytes=10)
    parser.feed(data)
    parser.next_request()
    parser.stream_body()
    got = []
    while (piece := parser.next_body()):
        got.append(piece)
    assert b"".join(got) == body
    parser = http_parser.RequestParser(head_first=True, max_body_bytes=10)
    parser.feed(data)
    parser.next_request()
    with pytest.raises(ProtocolError) as whole:
        parser.buffer_body()
        parser.next_request()
    assert whole.value.status == 413
    # ... and max_streamed_body_bytes a streamed one: a 413 too, and the parser is dead.
    parser = http_parser.RequestParser(head_first=True, max_streamed_body_bytes=99)
    parser.feed(data)
    parser.next_request()
    with pytest.raises(ProtocolError) as streamed:
        parser.stream_body()
        while parser.next_body():
            pass
    assert streamed.value.status == 413
    with pytest.raises(ProtocolError):
        parser.next_body()


def test_head_first_refused_limit_sends_no_100_continue(http_parser):
    parser = http_parser.RequestParser(head_first=True, max_streamed_body_bytes=5)
    parser.feed(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\nExpect: 100-continue\r\n\r\n")
    parser.next_request()
    assert not parser.needs_continue()  # not before the choice
    with pytest.raises(ProtocolError) as exc:
        parser.stream_body()
    assert exc.value.status == 413 and not parser.needs_continue()
    parser = http_parser.RequestParser(head_first=True)
    parser.feed(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\nExpect: 100-continue\r\n\r\n")
    parser.next_request()
    parser.stream_body()
    assert parser.needs_continue()
