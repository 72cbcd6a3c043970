"""Conduit's exceptions.

Protocol errors carry the HTTP status a server should answer with (``.status``) and a short
reason (``.reason``) suitable for a log line and a response body. The parser raises only
these; a server answers ``status``, logs ``reason`` and closes the connection.
"""

from __future__ import annotations


class ConduitError(Exception):
    """Base class of every exception conduit raises on purpose."""


class ProtocolError(ConduitError):
    """The peer broke HTTP/1.1; answer ``status`` and close the connection."""

    status: int = 400

    def __init__(self, reason: str, status: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        if status is not None:
            self.status = status

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.reason!r}, status={self.status})"


class BadRequest(ProtocolError):
    status = 400


class LengthRequired(ProtocolError):
    status = 411


class ContentTooLarge(ProtocolError):
    """413: the body is larger than the configured limit."""

    status = 413


class URITooLong(ProtocolError):
    """414: the request line is longer than the configured limit."""

    status = 414


class ExpectationFailed(ProtocolError):
    status = 417


class HeaderFieldsTooLarge(ProtocolError):
    """431: the header block has too many bytes or too many fields."""

    status = 431


class NotImplementedByServer(ProtocolError):
    """501: e.g. a transfer coding other than chunked."""

    status = 501


class HTTPVersionNotSupported(ProtocolError):
    status = 505


class HTTPError(ConduitError):
    """Raise in a handler to answer with ``status`` and a JSON ``{"error": detail}`` body.

    >>> raise HTTPError(400, "missing field 'id'")
    Traceback (most recent call last):
    ...
    conduit.errors.HTTPError: 400: missing field 'id'
    """

    def __init__(self, status: int, detail: str = "", headers=None) -> None:
        super().__init__(f"{status}: {detail}")
        self.status = status
        self.detail = detail
        self.headers = headers


#: Seconds a client is asked to wait before retrying a publish a broker refused.
BROKER_RETRY_AFTER_SECONDS = 1


class BrokerUnavailable(HTTPError):
    """A broker (``--workers``, ``--broker``) cannot take a publish now: answered as 503 with
    Retry-After, so the client retries; nothing is lost silently."""

    def __init__(self, detail: str = "the broker is unavailable; retry") -> None:
        super().__init__(503, detail,
                         headers=[("Retry-After", str(BROKER_RETRY_AFTER_SECONDS))])


__all__ = [
    "BrokerUnavailable",
    "HTTPError",
    "ConduitError",
    "ProtocolError",
    "BadRequest",
    "LengthRequired",
    "ContentTooLarge",
    "URITooLong",
    "ExpectationFailed",
    "HeaderFieldsTooLarge",
    "NotImplementedByServer",
    "HTTPVersionNotSupported",
]
