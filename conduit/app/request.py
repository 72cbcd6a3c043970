"""The Request a handler receives, and its case-insensitive Headers."""

from __future__ import annotations

import json
from urllib.parse import parse_qsl, unquote

from conduit.errors import HTTPError


class Headers:
    """Case-insensitive, read-only view of request headers (str names and values).

    >>> h = Headers([(b"content-type", b"text/plain"), (b"x-a", b"1"), (b"x-a", b"2")])
    >>> h["Content-Type"], h.get("X-A"), h.getall("x-a"), "X-MISSING" in h
    ('text/plain', '1', ['1', '2'], False)
    """

    __slots__ = ("_items", "_index")

    def __init__(self, raw) -> None:
        # Values are latin-1 on the wire (RFC 9110 5.5): decoding is lossless.
        self._items = [(name.decode("latin-1"), value.decode("latin-1")) for name, value in raw]
        self._index: dict | None = None

    def _lookup(self) -> dict:
        if self._index is None:
            index: dict = {}
            for name, value in self._items:
                index.setdefault(name, []).append(value)
            self._index = index
        return self._index

    def __getitem__(self, name: str) -> str:
        return self._lookup()[name.lower()][0]

    def get(self, name: str, default=None):
        values = self._lookup().get(name.lower())
        return values[0] if values else default

    def getall(self, name: str) -> list:
        return list(self._lookup().get(name.lower(), ()))

    def __contains__(self, name) -> bool:
        return isinstance(name, str) and name.lower() in self._lookup()

    def __iter__(self):
        return iter(self._lookup())

    def __len__(self) -> int:
        return len(self._lookup())

    def keys(self):
        return self._lookup().keys()

    def items(self) -> list:
        """All (name, value) pairs in arrival order, names lowercased."""
        return list(self._items)

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"


class Request:
    """An HTTP request as a handler sees it.

    Attributes: ``method``, ``path`` (percent-decoded), ``raw_path``, ``query_string``,
    ``query`` (str to str; the last value wins, see ``query_all``), ``headers``
    (case-insensitive), ``body`` (bytes), ``path_params``, ``client`` ((host, port)),
    ``last_event_id`` (the ``Last-Event-ID`` header, else the ``last_event_id`` query
    parameter, else None), ``http_version``, ``host`` (the absolute-form target's authority,
    else the Host header), ``scheme`` ("https" when the server serves TLS, else "http"),
    ``cookies`` (name to value, from the
    ``Cookie`` header). ``require(action, topic)`` checks the request's token against the
    app's ``Auth``.
    """

    __slots__ = ("_parsed", "method", "raw_path", "path", "query_string", "path_params",
                 "client", "app", "_query", "_query_list", "_headers", "_cookies", "_grants")

    def __init__(self, parsed, client=("", 0), path_params=None, app=None) -> None:
        self._parsed = parsed
        self.method = parsed.method
        target = parsed.target
        if not target.startswith("/"):
            target = _origin_form(target)
        raw_path, _, self.query_string = target.partition("?")
        self.raw_path = raw_path
        self.path = unquote(raw_path) if "%" in raw_path else raw_path
        self.path_params = path_params if path_params is not None else {}
        self.client = client
        self.app = app
        self._query: dict | None = None
        self._query_list: list | None = None
        self._headers: Headers | None = None
        self._cookies: dict | None = None
        self._grants = None  # set by Auth once the token is checked

    @property
    def http_version(self) -> str:
        return self._parsed.version

    @property
    def scheme(self) -> str:
        server = self.app.server if self.app is not None else None
        return server.scheme if server is not None else "http"

    @property
    def host(self):
        """The host the client asked for: the authority of an absolute-form target (RFC
        9112 3.2.2: it wins over the Host header), else the Host header, else None."""
        authority = _authority(self._parsed.target)
        return authority if authority is not None else self.headers.get("host")

    @property
    def headers(self) -> Headers:
        if self._headers is None:
            self._headers = Headers(self._parsed.headers)
        return self._headers

    @property
    def body(self) -> bytes:
        return self._parsed.body

    def _pairs(self) -> list:
        if self._query_list is None:
            query = self.query_string
            if "%" in query or "+" in query:
                self._query_list = parse_qsl(query, keep_blank_values=True)
            else:
                # PERF: what parse_qsl(keep_blank_values=True) gives when nothing is
                # escaped, at a fifth of its cost: "a=1&b&&c=" -> a=1, b="", c="".
                self._query_list = [part.partition("=")[::2]
                                    for part in query.split("&") if part]
        return self._query_list

    @property
    def query(self) -> dict:
        if self._query is None:
            self._query = dict(self._pairs())
        return self._query

    def query_all(self, name: str) -> list:
        """Every value of a repeated query parameter, e.g. ``?topic=a&topic=b``."""
        return [value for key, value in self._pairs() if key == name]

    @property
    def cookies(self) -> dict:
        """The cookies the client sent: ``{name: value}`` (RFC 6265 ``name=value`` pairs;
        a value in double quotes loses them; the first of two same-named cookies wins,
        which is the one with the most specific path)."""
        if self._cookies is None:
            self._cookies = parse_cookies(self.headers.getall("cookie"))
        return self._cookies

    def require(self, action: str | None = None, topic: str | None = None):
        """Check this request's token with the app's ``Auth``: its grants, or HTTPError 401
        (no valid token) or 403 (not granted ``action`` on ``topic``). See
        ``conduit.app.auth``."""
        auth = getattr(self.app, "auth", None)
        if auth is None:
            raise RuntimeError("request.require() needs an app made with App(auth=Auth(...))")
        return auth.require(self, action, topic)

    def json(self):
        """The body parsed as JSON; a malformed body is an ``HTTPError(400)``."""
        try:
            return json.loads(self._parsed.body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise HTTPError(400, f"malformed JSON body: {exc}") from None

    @property
    def last_event_id(self):
        value = self.headers.get("last-event-id")
        if value is None:
            value = self.query.get("last_event_id")
        return value

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.path}>"


def parse_cookies(values) -> dict:
    """``{name: value}`` from Cookie header values ("a=1; b=2"). Pairs without ``=`` or
    with an empty name are skipped; no percent-decoding (RFC 6265 defines none)."""
    cookies: dict = {}
    for header in values:
        for pair in header.split(";"):
            name, sep, value = pair.partition("=")
            name = name.strip()
            if not sep or not name:
                continue
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1]
            cookies.setdefault(name, value)
    return cookies


def _origin_form(target: str) -> str:
    """The path and query of an absolute-form target ("http://host/p?q" -> "/p?q",
    "http://host?q" -> "/?q")."""
    if target == "*":
        return "*"
    scheme_end = target.find("://")
    if scheme_end < 0:
        return "/"
    rest = target[scheme_end + 3:]
    cut = len(rest)
    for mark in "/?":
        at = rest.find(mark)
        if 0 <= at < cut:
            cut = at
    tail = rest[cut:]
    return tail if tail.startswith("/") else "/" + tail


def _authority(target: str):
    """The authority of an absolute-form target ("http://h:1/p" -> "h:1"), else None."""
    scheme_end = target.find("://")
    if target.startswith("/") or scheme_end < 0:
        return None
    rest = target[scheme_end + 3:]
    for mark in "/?":
        at = rest.find(mark)
        if at >= 0:
            rest = rest[:at]
    return rest
