"""TLS for conduit's listening sockets: the server's context, built once, reloadable.

Theory of operation
-------------------
1. ``ServerTLS`` holds one ``ssl.SSLContext`` built from files (uvicorn's option names:
   certfile, keyfile, keyfile password, CA certificates, ciphers): server side, TLS 1.2
   and newer, ALPN ``http/1.1``. Both twins of the transport use this same context: the
   pure one through ``ssl.SSLObject`` over memory BIOs, the compiled one through OpenSSL
   directly on the context's ``SSL_CTX`` (``conduit.net._loop_c``), so the two cannot
   disagree about certificates, versions or ciphers.
2. A TLS transport handshakes before anything reaches its protocol: the protocol is told
   of the connection at accept (its request timer runs), but its ``data_received`` only
   ever sees decrypted bytes, and what it writes waits until the handshake is done.
3. A handshake that fails (a bad ClientHello, garbage, an unknown CA) or does not finish
   within ``handshake_timeout`` seconds costs one log line and the connection; nothing
   blocks the loop (all TLS work is on memory buffers and non-blocking sockets). A plain
   HTTP request sent to the TLS port gets a plain-text 400 saying so, as nginx does, then
   the close.
4. ``reload()`` (the server calls it on SIGHUP) builds a new context from the same
   files; connections accepted from then on use it, open ones keep theirs (OpenSSL keeps
   a reference to its context per connection), so no stream is dropped. A reload that
   fails (a missing file, a key that does not match) keeps the old context and says why.
"""

from __future__ import annotations

import functools
import logging
import ssl

log = logging.getLogger("conduit.net")

HANDSHAKE_TIMEOUT_SECONDS = 10.0
# What a client that spoke plain HTTP to the TLS port reads (rule 3).
PLAIN_HTTP_ANSWER = (b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\n"
                     b"Content-Length: 45\r\nConnection: close\r\n\r\n"
                     b"This port speaks HTTPS: use https:// instead\n")
ALPN_PROTOCOLS = ("http/1.1",)


def server_context(certfile: str, keyfile: str | None = None, password: str | None = None,
                   ca_certs: str | None = None, ciphers: str | None = None,
                   cert_reqs: int = ssl.CERT_NONE) -> ssl.SSLContext:
    """The ``ssl.SSLContext`` of rule 1 (raises ``ssl.SSLError``/``OSError`` for a bad
    file, a wrong password or a key that does not match its certificate)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certfile, keyfile, password)
    if ca_certs:
        context.load_verify_locations(ca_certs)
    context.verify_mode = ssl.VerifyMode(cert_reqs)
    if ciphers:
        context.set_ciphers(ciphers)
    context.set_alpn_protocols(list(ALPN_PROTOCOLS))
    # NOTE: a session ticket per connection costs a write and a few hundred bytes each,
    # for resumptions an SSE client (one long connection) rarely makes.
    context.num_tickets = 1
    return context


class ServerTLS:
    """The TLS settings of a listening socket (rule 1), and their reload (rule 4)."""

    def __init__(self, certfile: str, keyfile: str | None = None,
                 password: str | None = None, ca_certs: str | None = None,
                 ciphers: str | None = None, cert_reqs: int = ssl.CERT_NONE,
                 handshake_timeout: float = HANDSHAKE_TIMEOUT_SECONDS) -> None:
        self.certfile = certfile
        self._build = functools.partial(server_context, certfile, keyfile, password,
                                        ca_certs, ciphers, cert_reqs)
        self.handshake_timeout = handshake_timeout
        self.context = self._build()

    def reload(self) -> bool:
        """Build a new context from the same files (rule 4); False (and a log line) if
        that fails, and the old one stays."""
        try:
            context = self._build()
        except (OSError, ssl.SSLError, ValueError) as exc:
            log.error("TLS reload failed, keeping the current certificate: %s", exc)
            return False
        self.context = context
        log.info("TLS certificate reloaded from %s", self.certfile)
        return True


def looks_like_plain_http(data: bytes) -> bool:
    """True for the first bytes of a plain HTTP request (a method token, a space): what
    a client that forgot https:// sends where a ClientHello was due (rule 3)."""
    head = data[:8]
    method, space, _ = head.partition(b" ")
    return bool(space) and method.isalpha() and method.isupper()
