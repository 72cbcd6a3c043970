"""CORS: which other origins' pages may read this server's responses.

    from conduit import App, CORS

    app = App(cors=CORS(["https://app.example.com"], allow_credentials=True))
    # a page on https://app.example.com may now do:
    #   new EventSource("https://sse.example.com/events", {withCredentials: true})

Theory of operation
1. Only requests with an ``Origin`` header are cross-origin business. An origin on the
   list (exact match of scheme://host[:port]) gets, on every response (plain, SSE stream
   and error responses alike, so the page can read a 401 or a 404):
   ``Access-Control-Allow-Origin: <that origin>``, ``Access-Control-Allow-Credentials:
   true`` when credentials are allowed, ``Access-Control-Expose-Headers`` when some are
   listed. With ``"*"`` on the list (and no credentials) the answer is ``*``.
2. Every response carries ``Vary: Origin`` unless the list is ``"*"``: what a cache stores
   for one origin must not be served to another.
3. An origin not on the list gets no CORS headers: the browser then refuses the page the
   response. The server still answers (CORS protects the reader, not the server).
4. A preflight is ``OPTIONS`` with ``Origin`` and ``Access-Control-Request-Method``, on a
   path that has routes (else 404). Allowed origin, method and requested headers: 204 with
   Allow-Origin, Allow-Methods, Allow-Headers (the requested ones), Max-Age, Vary and
   Allow-Credentials when enabled. Anything not allowed: 403 with a message naming it and
   no CORS headers.
5. ``"*"`` together with ``allow_credentials=True`` is refused when the CORS object is made:
   browsers reject that combination, and reflecting every origin with credentials would
   let any site read a user's private streams.
"""

from __future__ import annotations

import re

from conduit.errors import HTTPError
from conduit.http.response import Response, StreamResponse

_ORIGIN = re.compile(r"[a-z][a-z0-9+.-]*://[^/?#\s]+")
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def _names(values, what: str) -> tuple:
    if isinstance(values, str):
        values = (values,)
    result = tuple(values)
    for value in result:
        if not isinstance(value, str) or not _TOKEN.fullmatch(value):
            raise ValueError(f"{what}: {value!r} is not a valid name")
    return result


class CORS:
    """Cross-origin access for the origins in ``allow_origins`` (see the module docstring).

    ``allow_origins``: ``["https://a.example", "http://localhost:3000"]`` (no path, no
    trailing slash), or ``["*"]`` for any origin without credentials.
    ``allow_credentials``: let pages send cookies (``withCredentials``) and read the answer.
    ``allow_methods``, ``allow_headers``: what a preflight may ask for.
    ``expose_headers``: response headers the page's script may read.
    ``max_age``: seconds a browser may cache a preflight answer.
    """

    def __init__(self, allow_origins, allow_credentials: bool = False,
                 allow_methods=("GET", "POST"),
                 allow_headers=("Content-Type", "Authorization", "Last-Event-ID"),
                 expose_headers=(), max_age: int = 600) -> None:
        if isinstance(allow_origins, str):
            allow_origins = (allow_origins,)
        origins = tuple(allow_origins)
        if not origins:
            raise ValueError("allow_origins is empty: list the origins, or use ['*']")
        for origin in origins:
            if origin == "*":
                continue
            if not isinstance(origin, str) or not _ORIGIN.fullmatch(origin):
                raise ValueError(f"allow_origins: {origin!r} is not an origin like "
                                 "'https://example.com' or 'http://localhost:3000' "
                                 "(scheme://host[:port], lowercase, no path or trailing /)")
        self.any_origin = "*" in origins
        if self.any_origin and allow_credentials:
            raise ValueError("allow_origins '*' with allow_credentials=True: browsers refuse "
                             "it, and it would let any site read what a user may read; "
                             "list the origins instead")
        if type(max_age) is not int or max_age < 0:
            raise ValueError(f"max_age must be an int >= 0, got {max_age!r}")
        self.allow_origins = frozenset(o for o in origins if o != "*")
        self.allow_credentials = bool(allow_credentials)
        self.allow_methods = tuple(m.upper() for m in _names(allow_methods, "allow_methods"))
        self.allow_headers = _names(allow_headers, "allow_headers")
        self.expose_headers = _names(expose_headers, "expose_headers")
        self.max_age = max_age
        self._allowed_headers = frozenset(h.lower() for h in self.allow_headers)
        # The headers for an allowed origin, but Allow-Origin, built once.
        common = []
        if self.allow_credentials:
            common.append(("Access-Control-Allow-Credentials", "true"))
        if self.expose_headers:
            common.append(("Access-Control-Expose-Headers", ", ".join(self.expose_headers)))
        self._common = common

    def allows(self, origin: str) -> bool:
        return self.any_origin or origin in self.allow_origins

    def _allow_origin(self, origin: str) -> list:
        if self.any_origin:  # never with credentials (rule 5)
            return [("Access-Control-Allow-Origin", "*")]
        return [("Access-Control-Allow-Origin", origin), ("Vary", "Origin")]

    # -- preflight -----------------------------------------------------------------------
    @staticmethod
    def is_preflight(request) -> bool:
        headers = request.headers
        return request.method == "OPTIONS" and "origin" in headers \
            and "access-control-request-method" in headers

    def preflight(self, request) -> Response:
        """The answer to a preflight request (rule 4); HTTPError 403 when refused."""
        headers = request.headers
        origin = headers["origin"]
        if not self.allows(origin):
            raise HTTPError(403, f"CORS: origin {_short(origin)} is not allowed")
        method = headers["access-control-request-method"].strip()
        if method.upper() not in self.allow_methods:
            raise HTTPError(403, f"CORS: method {_short(method)} is not allowed "
                                 f"(allowed: {', '.join(self.allow_methods)})")
        requested = [name.strip() for value in headers.getall("access-control-request-headers")
                     for name in value.split(",") if name.strip()]
        for name in requested:
            if name.lower() not in self._allowed_headers:
                raise HTTPError(403, f"CORS: request header {_short(name)} is not allowed "
                                     f"(allowed: {', '.join(self.allow_headers)})")
        answer = [("Access-Control-Allow-Origin", "*" if self.any_origin else origin),
                  ("Access-Control-Allow-Methods", ", ".join(self.allow_methods))]
        if requested:
            answer.append(("Access-Control-Allow-Headers", ", ".join(requested)))
        answer.append(("Access-Control-Max-Age", str(self.max_age)))
        if self.allow_credentials:
            answer.append(("Access-Control-Allow-Credentials", "true"))
        vary = "Access-Control-Request-Method, Access-Control-Request-Headers"
        answer.append(("Vary", vary if self.any_origin else "Origin, " + vary))
        return Response(b"", status=204, headers=answer)

    # -- actual requests -----------------------------------------------------------------
    def apply(self, request, response):
        """``response`` (Response or StreamResponse) with the CORS headers for ``request``
        (rules 1-3). A copy: a handler may return the same Response object every time."""
        origin = request.headers.get("origin") if request is not None else None
        if origin is not None and self.allows(origin):
            extra = self._allow_origin(origin) + self._common
        elif not self.any_origin:
            extra = [("Vary", "Origin")]
        else:
            return response
        headers = list(response.headers)
        present = {name.lower(): index for index, (name, _) in enumerate(headers)}
        for name, value in extra:
            index = present.get(name.lower())
            if index is None:
                headers.append((name, value))
            elif name == "Vary":
                old = headers[index][1]
                if "origin" not in old.lower():
                    headers[index] = (headers[index][0], f"{old}, {value}")
            # else: the handler set this CORS header itself; its value stands
        return _with_headers(response, headers)


def _with_headers(response, headers):
    kind = type(response)
    copy = object.__new__(kind)
    if kind is StreamResponse:
        copy.source = response.source
        copy.on_close = response.on_close
    else:
        copy.body = response.body
    copy.status = response.status
    copy.headers = headers
    return copy


def _short(text: str) -> str:
    return repr(text) if len(text) <= 100 else repr(text[:100] + "...")
