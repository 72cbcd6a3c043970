"""One Config object: every limit, timeout and watermark, validated. The CLI maps 1:1 onto it."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

from conduit.http.parser import (
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_HEADER_BYTES,
    DEFAULT_MAX_HEADER_COUNT,
    DEFAULT_MAX_REQUEST_LINE_BYTES,
    DEFAULT_MAX_STREAMED_BODY_BYTES,
)

LOG_LEVELS = ("critical", "error", "warning", "info", "debug")
LOOPS = ("auto", "asyncio", "uvloop")


@dataclass
class Config:
    """Server settings. Durations are in seconds, sizes in bytes.

    >>> Config(port=0).port
    0
    >>> Config(high_water_bytes=10, low_water_bytes=20)
    Traceback (most recent call last):
    ...
    ValueError: low_water_bytes (20) must be <= high_water_bytes (10)
    """

    host: str = "127.0.0.1"
    port: int = 8000
    log_level: str = "info"
    access_log: bool = True
    backlog: int = 2048
    # A stream with nothing written for this long gets a ": ping" comment (0 disables).
    heartbeat_seconds: float = 15.0
    # Outbox watermarks per connection: above high, a stream's producer is paused; it
    # resumes at low (uvloop's defaults: 64 KiB and a quarter of it).
    high_water_bytes: int = 64 * 1024
    low_water_bytes: int = 16 * 1024
    # A request (head and body) must arrive within this time once its first byte has.
    request_timeout_seconds: float = 30.0
    # An idle keep-alive connection is closed after this long.
    keepalive_timeout_seconds: float = 5.0
    # A connection whose outbox stays above high_water_bytes (the client stopped reading)
    # with no byte of progress for this long is cut (0 disables). Channel subscribers also
    # have a byte budget; whichever limit is reached first ends the connection.
    write_timeout_seconds: float = 60.0
    # On SIGINT/SIGTERM, connections still open after this long are cut (CLI alias:
    # --timeout-graceful-shutdown). Streams are ended in waves over its first half.
    graceful_timeout_seconds: float = 10.0
    max_connections: int = 10000
    # Open connections per client address; 0 (the default) is no limit. Off by default
    # because behind a reverse proxy, load balancer or ingress every client has the proxy's
    # address (a cap would cap the whole service), and load tests run from one address.
    # For a server exposed directly, 256 is a good value: a browser opens at most 6
    # HTTP/1.1 connections per host, and dozens of users may share an address (NAT).
    max_connections_per_client: int = 0
    max_request_line_bytes: int = DEFAULT_MAX_REQUEST_LINE_BYTES
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES
    max_header_count: int = DEFAULT_MAX_HEADER_COUNT
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    # The body of a request to an ASGI app is streamed to it as it arrives (http.request
    # messages with more_body) and is not bounded by max_body_bytes: None (the default) is
    # no limit, as under uvicorn; a number is a 413 past that many bytes.
    max_streamed_body_bytes: int | None = DEFAULT_MAX_STREAMED_BODY_BYTES
    # Worker processes sharing the port (SO_REUSEPORT) under a supervisor that makes them
    # one hub (conduit.server.workers); 1 serves from this process, as without the option.
    workers: int = 1
    # The broker that joins this server's channels to other servers' ("redis://host:port/db",
    # conduit.app.redis_broker); "" = none (the CLI then reads CONDUIT_BROKER).
    broker: str = ""
    # The asyncio event loop handlers run on, by uvicorn's names: "asyncio", "uvloop"
    # (pip install 'conduit-sse[uvloop]'), or "auto": uvloop when it is installed.
    loop: str = "auto"
    # Threads for blocking work: conduit.to_thread, asyncio.to_thread and
    # loop.run_in_executor(None, ...) share them (asyncio's default size).
    thread_pool_size: int = min(32, (os.cpu_count() or 1) + 4)
    # The cyclic garbage collector's first threshold while serving (gc.set_threshold; the
    # other two are left as they are); 0 leaves Python's own (700 up to 3.12). Handlers on
    # asyncio allocate and free a few tracked objects per event (futures, timer handles,
    # asend awaitables) and 700 made the collector run about 130 times a second, 10% of
    # the CPU, at 1,000 streams of 100 events/s (the bench's ticks_1000).
    gc_threshold: int = 10_000
    # HTTPS (conduit.net.tls), by uvicorn's names: a certificate (PEM, with its chain) turns
    # TLS on for the port; the key may be in the same file. TLS 1.2 and newer.
    ssl_certfile: str = ""
    ssl_keyfile: str = ""
    ssl_keyfile_password: str = ""
    ssl_ca_certs: str = ""
    ssl_ciphers: str = ""
    # Client certificates (uvicorn's --ssl-cert-reqs, ssl.VerifyMode): 0 none asked, 1 asked
    # and checked against ssl_ca_certs when given, 2 required.
    ssl_cert_reqs: int = 0
    # A TLS handshake that has not finished this long after the accept costs the connection.
    ssl_handshake_timeout_seconds: float = 10.0

    def __post_init__(self) -> None:
        if not isinstance(self.host, str) or not self.host:
            raise ValueError("host must be a non-empty string")
        if type(self.port) is not int or not 0 <= self.port <= 65535:
            raise ValueError(f"port must be an int from 0 to 65535, got {self.port!r}")
        if self.log_level not in LOG_LEVELS:
            raise ValueError(f"log_level must be one of {', '.join(LOG_LEVELS)}")
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.type == "int" and field.name != "port":
                if type(value) is not int or value < 0:
                    raise ValueError(f"{field.name} must be an int >= 0, got {value!r}")
            elif field.type == "float":
                if not isinstance(value, (int, float)) or value != value or value < 0:
                    raise ValueError(f"{field.name} must be a number >= 0, got {value!r}")
        if self.max_streamed_body_bytes is not None and (
                type(self.max_streamed_body_bytes) is not int
                or self.max_streamed_body_bytes < 0):
            raise ValueError(f"max_streamed_body_bytes must be None or an int >= 0, "
                             f"got {self.max_streamed_body_bytes!r}")
        if not isinstance(self.broker, str):
            raise ValueError(f"broker must be a URL string, got {self.broker!r}")
        if self.loop not in LOOPS:
            raise ValueError(f"loop must be one of {', '.join(LOOPS)}, got {self.loop!r}")
        if self.thread_pool_size < 1:
            raise ValueError(f"thread_pool_size must be an int >= 1, "
                             f"got {self.thread_pool_size!r}")
        if self.workers < 1:
            raise ValueError(f"workers must be an int >= 1, got {self.workers!r}")
        if self.ssl_cert_reqs not in (0, 1, 2):
            raise ValueError(f"ssl_cert_reqs must be 0, 1 or 2, got {self.ssl_cert_reqs!r}")
        if self.ssl_cert_reqs and not self.ssl_ca_certs:
            raise ValueError("ssl_cert_reqs needs ssl_ca_certs (the CAs client certificates "
                             "are checked against)")
        for name in ("ssl_keyfile", "ssl_keyfile_password", "ssl_ca_certs", "ssl_ciphers"):
            if getattr(self, name) and not self.ssl_certfile:
                raise ValueError(f"{name} needs ssl_certfile (the certificate turns TLS on)")
        if self.low_water_bytes > self.high_water_bytes:
            raise ValueError(
                f"low_water_bytes ({self.low_water_bytes}) must be <= "
                f"high_water_bytes ({self.high_water_bytes})"
            )

    def parser_limits(self) -> dict:
        return {
            "max_request_line_bytes": self.max_request_line_bytes,
            "max_header_bytes": self.max_header_bytes,
            "max_header_count": self.max_header_count,
            "max_body_bytes": self.max_body_bytes,
            "max_streamed_body_bytes": self.max_streamed_body_bytes,
        }

    def server_tls(self):
        """The listening socket's TLS (a conduit.net.tls.ServerTLS), or None for plain
        HTTP. Raises OSError/ssl.SSLError for unreadable or mismatched files."""
        if not self.ssl_certfile:
            return None
        from conduit.net.tls import ServerTLS

        return ServerTLS(self.ssl_certfile, self.ssl_keyfile or None,
                         self.ssl_keyfile_password or None, self.ssl_ca_certs or None,
                         self.ssl_ciphers or None, self.ssl_cert_reqs,
                         handshake_timeout=self.ssl_handshake_timeout_seconds)
