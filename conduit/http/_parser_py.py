"""Strict HTTP/1.1 request parser, pure Python twin of ``_parser_c.pyx``.

Theory of operation
-------------------
The parser is sans-IO: ``feed(data)`` appends bytes (``b""`` means the peer closed its
side), ``next_request()`` returns the next complete :class:`ParsedRequest` (head and whole
body), ``None`` when it needs more bytes, or raises a ``conduit.errors.ProtocolError``
subclass carrying the status to answer. Both twins obey these rules; the tests run every
case on both.

Invariants
1. Bytes are kept in one ``bytearray`` with a read offset; consumed bytes are dropped in
   bulk, never one request at a time from the front, so pipelined input costs O(n).
2. The search for the end of the head resumes where the last search stopped (minus 3
   bytes), so a head arriving one byte at a time costs O(n), not O(n^2) (a DoS concern).
3. Nothing is buffered past a limit: a request line longer than ``max_request_line_bytes``
   is a 414 as soon as that many bytes have arrived without a CRLF; a head (request line
   excluded) longer than ``max_header_bytes`` or with more than ``max_header_count`` fields
   is a 431; a body longer than ``max_body_bytes`` is a 413 as soon as its declared length
   (or the running total of its chunks) says so, before the bytes arrive.
4. After an error the parser is dead: every later ``next_request()`` raises the same error.
5. After a request with ``keep_alive`` false, ``next_request()`` returns ``None`` for good.

Accepted grammar (RFC 9112, strict)
- Lines end with CRLF. A bare LF or a bare CR anywhere in the head or in chunk framing is a
  400. Empty lines (CRLF) before a request line are skipped (RFC 9112 2.2).
- request-line = method SP request-target SP HTTP-version CRLF, single spaces only.
  method is a token (RFC 9110 tchar). The target is visible ASCII (0x21-0x7E) without '#';
  its form must be origin-form ("/..."), absolute-form ("http://..." or "https://..."),
  asterisk-form ("*", OPTIONS only) or authority-form (CONNECT only); anything else is 400.
  HTTP-version is "HTTP/" DIGIT "." DIGIT, case-sensitive (else 400); major 1 with minor 0
  is "1.0", minor 1-9 is "1.1" (RFC 9110 6.2); any other major is 505.
- field-line = field-name ":" OWS field-value OWS CRLF. field-name is a token (else 400),
  with nothing between it and the colon (whitespace there is a 400). field-value bytes are
  HTAB, SP, 0x21-0x7E or 0x80-0xFF; NUL and other controls (including DEL) are a 400.
  A line starting with SP or HTAB (obs-fold) is a 400. Names are lowercased; values lose
  leading and trailing OWS; order and duplicates are kept.
- Host: an HTTP/1.1 request must have exactly one (missing or duplicate: 400); its value
  may be empty or a uri-host[:port] made of unreserved / sub-delims / pct-encoded / ':' /
  '[' / ']' characters (else 400).
- Message body (RFC 9112 6):
  * Transfer-Encoding and Content-Length together: 400. Transfer-Encoding in an HTTP/1.0
    request: 400. Transfer-Encoding is a comma list of codings over all its lines; the
    only coding understood is "chunked" (case-insensitive). If "chunked" is not the last
    coding: 400; "chunked" twice: 400; an empty list: 400; any other coding: 501.
  * Content-Length is 1*DIGIT. Duplicates (separate lines or a comma list) with the same
    value are accepted; differing values, empty, signs, spaces inside or non-digits: 400.
  * Neither: no body (length 0).
  * chunked: chunk-size is 1*HEXDIG, optionally followed by chunk extensions
    (";" name["=" value], ignored; BWS around ";" and "=" allowed), then CRLF; a size line
    longer than 4096 bytes or without hex digits is a 400. Chunk data is followed by
    exactly CRLF (else 400). A chunk size that takes the body past ``max_body_bytes`` is a
    413 (this includes sizes that would overflow 64 bits). The last chunk ("0") is
    followed by trailer fields (same rules as header fields, same limits, kept apart in
    ``trailers``) and CRLF.
- Expect: "100-continue" (case-insensitive) on an HTTP/1.1 request with a body to come
  makes ``needs_continue()`` answer True once, until the body is complete; any other
  expectation is a 417.
- keep_alive: HTTP/1.1 unless "close" is among the Connection tokens; HTTP/1.0 only if
  "keep-alive" is among them and "close" is not (tokens are case-insensitive).
- EOF (``feed(b"")``) in the middle of a request is a 400 ("connection closed before the
  request was complete"); EOF between requests just makes ``next_request()`` return None.
"""
