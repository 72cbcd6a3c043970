"""App: routes declared with decorators, and what a handler's return value becomes.

    from conduit import App, SSEEvent, sleep

    app = App()

    @app.get("/")
    def index(request):
        return "hello"                              # text/plain

    @app.get("/items/{item_id:int}")
    def item(request, item_id):                     # path params as arguments (optional)
        return {"id": item_id}                      # JSON

    @app.get("/count")
    def count(request):                             # a sync generator: an SSE stream
        for i in range(1, 11):
            yield SSEEvent(i, event="counter", id=i)

    @app.get("/time")
    async def time_stream(request):                 # an async generator: an SSE stream
        while True:
            yield SSEEvent(...)
            await sleep(1)

What a handler may return: a ``Response``; str (text/plain), bytes, dict or list (JSON),
None (204); a generator or async generator (an SSE stream of ``SSEEvent``, dict (JSON
data), str (data) or bytes (pre-formatted frames)); a ``StreamResponse``; or, from an
``async def`` handler, any of these after awaiting conduit awaitables. Raising
``HTTPError(status, detail)`` answers that status with ``{"error": detail}``.
"""

from __future__ import annotations

import inspect
import logging
import re

from conduit.app.channel import Channel, Hub
from conduit.app.request import Request
from conduit.app.static import StaticFiles
from conduit.errors import HTTPError
from conduit.http.response import Response, StreamResponse
from conduit.server.hub import DEFAULT_BUDGET_BYTES

log = logging.getLogger("conduit.app")

_PARAM = re.compile(r"{([A-Za-z_][A-Za-z0-9_]*)(?::(int|str|path))?}")
_CONVERTERS = {
    "str": (r"[^/]+", str),
    "int": (r"-?[0-9]+", int),
    "path": (r".*", str),
}


class Route:
    __slots__ = ("path", "methods", "handler", "regex", "converters", "kwargs")

    def __init__(self, path: str, methods, handler) -> None:
        if not path.startswith("/"):
            raise ValueError(f"route path must start with '/': {path!r}")
        self.path = path
        self.methods = frozenset(m.upper() for m in methods)
        self.handler = handler
        self.converters = {}
        pattern = ""
        last = 0
        for match in _PARAM.finditer(path):
            name, kind = match.group(1), match.group(2) or "str"
            if name in self.converters:
                raise ValueError(f"duplicate path parameter {name!r} in {path!r}")
            regex, convert = _CONVERTERS[kind]
            pattern += re.escape(path[last:match.start()]) + f"(?P<{name}>{regex})"
            self.converters[name] = convert
            last = match.end()
        pattern += re.escape(path[last:])
        self.regex = re.compile(pattern) if self.converters else None
        # Pass path parameters as keyword arguments when the handler names them.
        try:
            params = inspect.signature(handler).parameters
        except (TypeError, ValueError):
            params = {}
        accepts_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
        self.kwargs = accepts_any or any(name in params for name in self.converters)

    def match(self, path: str):
        """Path parameters if ``path`` matches, else None."""
        if self.regex is None:
            return {} if path == self.path else None
        match = self.regex.fullmatch(path)
        if match is None:
            return None
        try:
            return {name: self.converters[name](value)
                    for name, value in match.groupdict().items()}
        except ValueError:
            return None


class App:
    """An application: routes, static files, and (later) channels. Call it to serve."""

    def __init__(self, data_dir=None) -> None:
        """``data_dir``: where durable channels keep their logs (default: the
        ``CONDUIT_DATA_DIR`` environment variable, else ``./conduit-data``)."""
        self._exact: dict = {}  # path -> [Route]: the common case, one dict lookup
        self._patterns: list = []
        self.loop = None
        self.server = None
        self.hub = Hub(data_dir)

    # -- channels ----------------------------------------------------------------------
    def channel(self, name: str, history: int = 1000, durable: bool = False,
                fsync="never", budget_bytes: int = DEFAULT_BUDGET_BYTES) -> Channel:
        """The channel called ``name``, created on first use (see ``conduit.app.channel``).

        ``history``: events kept for replay. ``durable``: keep them in an append-only log
        under the data directory, so they survive restarts; ``fsync``: "never" (survives a
        crash of the process), "always" (survives power loss) or seconds between fsyncs.
        ``budget_bytes``: how far a subscriber may fall behind before it is disconnected.
        """
        existing = self.hub.channels.get(name)
        if existing is not None:
            return existing
        channel = Channel(self.hub, name, history=history, durable=durable, fsync=fsync,
                          budget_bytes=budget_bytes)
        self.hub.channels[name] = channel
        if self.loop is not None:
            channel.frames.loop = self.loop
        return channel

    def subscribe(self, request, *channels, headers=None):
        """One SSE stream of several channels (names or Channel objects), merged in id
        order, with one Last-Event-ID for all. An unknown name is a 404."""
        resolved = []
        for item in channels:
            channel = self.hub.channels.get(item) if isinstance(item, str) else item
            if channel is None:
                raise HTTPError(404, f"unknown channel {item!r}")
            if channel not in resolved:
                resolved.append(channel)
        if not resolved:
            raise HTTPError(400, "no channel to subscribe to")
        budget = min(channel.budget_bytes for channel in resolved)
        return self.hub.subscribe(request, resolved, budget, headers=headers)

    # -- declaring routes --------------------------------------------------------------
    def route(self, path: str, methods=("GET",)):
        """Register a handler for ``path`` and ``methods``: ``@app.route("/x", methods=[...])``."""
        if isinstance(methods, str):
            methods = (methods,)

        def decorator(handler):
            route = Route(path, methods, handler)
            if route.regex is None:
                self._exact.setdefault(path, []).append(route)
            else:
                self._patterns.append(route)
            return handler

        return decorator

    def get(self, path: str):
        return self.route(path, ("GET",))

    def post(self, path: str):
        return self.route(path, ("POST",))

    def put(self, path: str):
        return self.route(path, ("PUT",))

    def delete(self, path: str):
        return self.route(path, ("DELETE",))

    def patch(self, path: str):
        return self.route(path, ("PATCH",))

    def static(self, prefix: str, directory, index: str = "index.html") -> None:
        """Serve the files under ``directory`` at ``prefix`` (GET and HEAD)."""
        files = StaticFiles(directory, index=index)
        prefix = "/" + prefix.strip("/")
        route_path = "/{path:path}" if prefix == "/" else prefix + "/{path:path}"

        def serve_static(request, path):
            return files.response(path)

        self.route(route_path, ("GET",))(serve_static)
        if prefix != "/":
            self.route(prefix, ("GET",))(lambda request: files.response(""))

    # -- lifecycle hooks (called by the server) ----------------------------------------
    def startup(self, loop, server=None) -> None:
        self.loop = loop
        self.server = server
        self.hub.startup(loop)

    def stats(self) -> dict:
        """The serving server's live figures: connections, streams, requests, events_sent,
        errors_by_status, uptime_seconds (empty before the server starts)."""
        return self.server.stats() if self.server is not None else {}

    def shutdown(self) -> None:
        self.hub.shutdown()
        self.loop = None

    # -- dispatch (the server calls this) ----------------------------------------------
    def _find(self, method: str, path: str):
        """(route, params) or raise HTTPError 404/405."""
        allowed: set = set()
        wanted = "GET" if method == "HEAD" else method
        for route in self._exact.get(path, ()):
            if wanted in route.methods:
                return route, {}
            allowed |= route.methods
        for route in self._patterns:
            params = route.match(path)
            if params is not None:
                if wanted in route.methods:
                    return route, params
                allowed |= route.methods
        if allowed:
            if "GET" in allowed:
                allowed.add("HEAD")
            raise HTTPError(405, f"method {method} not allowed",
                            headers=[("Allow", ", ".join(sorted(allowed)))])
        raise HTTPError(404, "not found")

    def __call__(self, parsed, client):
        """Handle one parsed request: a Response, a StreamResponse or a coroutine."""
        try:
            request = Request(parsed, client, app=self)
            route, params = self._find(request.method, request.path)
            request.path_params = params
            if route.kwargs and params:
                result = route.handler(request, **params)
            else:
                result = route.handler(request)
            return self._adapt(result)
        except HTTPError as exc:
            return _error_response(exc)

    def _adapt(self, result):
        kind = type(result)
        if kind is Response or kind is StreamResponse:
            return result
        if inspect.isgenerator(result) or inspect.isasyncgen(result):
            return StreamResponse(result)
        if inspect.iscoroutine(result):
            return self._await_then_adapt(result)
        return to_response(result)

    async def _await_then_adapt(self, coro):
        try:
            value = await coro
        except HTTPError as exc:
            return _error_response(exc)
        return self._adapt(value)


def to_response(value) -> Response:
    if isinstance(value, Response):
        return value
    if value is None:
        return Response(b"", status=204)
    if isinstance(value, (str, bytes, bytearray, memoryview, dict, list)):
        return Response(value)
    raise TypeError(
        f"a handler returned {type(value).__name__}; return a Response, str, bytes, dict, "
        "list, None, or a generator for a stream"
    )


def _error_response(exc: HTTPError) -> Response:
    return Response({"error": exc.detail or "error"}, status=exc.status, headers=exc.headers)
