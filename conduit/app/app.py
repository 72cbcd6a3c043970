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

Startup and shutdown: ``@app.on_startup`` / ``@app.on_shutdown`` register functions (sync
or ``async def``, no arguments) run in order on the loop when the server starts / stops
serving; an async one is awaited. A startup hook that raises stops the server
(exit status 3 from the CLI, one log line): start background tasks there, such as a
projection folded from ``channel.listen()``.

Tokens and cross-origin pages: ``App(auth=Auth(...), cors=CORS([...]))``, private channels
(``app.channel(name, private=True)``) and ``@app.post(path, auth="publish")``; see
``conduit.app.auth`` and ``conduit.app.cors``.
"""

from __future__ import annotations

import inspect
import logging
import re
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import unquote

from conduit.app.auth import Auth
from conduit.app.channel import DEFAULT_MAX_PENDING, Channel, ChannelListener, Hub
from conduit.app.cors import CORS
from conduit.app.request import Request, _origin_form
from conduit.app.static import StaticFiles
from conduit.errors import HTTPError
from conduit.http.response import Response, StreamResponse
from conduit.server.connection import redact_target
from conduit.server.hub import DEFAULT_BUDGET_BYTES

log = logging.getLogger("conduit.app")

_PARAM = re.compile(r"{([A-Za-z_][A-Za-z0-9_]*)(?::(int|str|path))?}")
_CONVERTERS = {
    "str": (r"[^/]+", str),
    "int": (r"-?[0-9]+", int),
    "path": (r".*", str),
}


class Route:
    __slots__ = ("path", "methods", "handler", "regex", "converters", "kwargs", "auth")

    def __init__(self, path: str, methods, handler, auth=None) -> None:
        if not path.startswith("/"):
            raise ValueError(f"route path must start with '/': {path!r}")
        self.path = path
        self.auth = auth  # None, or the action the token must grant ("" = any valid token)
        self.methods = frozenset(m.upper() for m in methods)
        self.handler = handler
        self.converters: dict[str, Callable[[str], Any]] = {}
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
        params: Mapping[str, inspect.Parameter]
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

    def __init__(self, data_dir=None, auth=None, cors=None, broker=None) -> None:
        """``data_dir``: where durable channels keep their logs (default: the
        ``CONDUIT_DATA_DIR`` environment variable, else ``./conduit-data``).
        ``auth``: an ``Auth`` (tokens for publishers and private channels, see
        ``conduit.app.auth``). ``cors``: a ``CORS`` (which other origins' pages may read
        the responses, see ``conduit.app.cors``). ``broker``: a URL
        (``"redis://host:port/db"``) or a ``conduit.app.broker.Broker`` that joins this
        app's channels to other servers' (``conduit.app.redis_broker``); the broker then
        keeps the history, and durable channels open no local log."""
        if auth is not None and not isinstance(auth, Auth):
            raise TypeError(f"auth must be an Auth, got {type(auth).__name__}")
        if cors is not None and not isinstance(cors, CORS):
            raise TypeError(f"cors must be a CORS, got {type(cors).__name__}")
        self._exact: dict = {}  # path -> [Route]: the common case, one dict lookup
        self._patterns: list = []
        # The methods this app implements: the common ones (a path that lacks one answers
        # 405 with Allow) and any other some route declares. Any other method (CONNECT,
        # TRACE, an unknown token, "get") is 501 (RFC 9110 9.1, 15.6.2). OPTIONS answers
        # the path's Allow (or the server's, for "OPTIONS *").
        self._methods: set = {"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"}
        self.loop = None
        self.server = None
        self.hub = Hub(data_dir)
        if broker is not None:
            from conduit.app.broker import Broker, broker_from_url

            if isinstance(broker, str):
                broker = broker_from_url(broker)
            elif not isinstance(broker, Broker):
                raise TypeError(f"broker must be a URL or a Broker, got {type(broker).__name__}")
            self.hub.broker = broker
            self.hub.logs_kept_by_broker = True
        self.auth = auth
        self.hub.auth = auth
        self.cors = cors
        # Query parameters the server's log lines show as [redacted] (they carry tokens).
        names = {"access_token"}
        if auth is not None:
            names.add(auth.query_param)
        self.secret_query_params = frozenset(names)
        self._startup_hooks: list = []
        self._shutdown_hooks: list = []
        self._hooks_started = False
        self._mounts: list = []  # (prefix, ASGIApp), the longest prefix first

    # -- channels ----------------------------------------------------------------------
    def channel(self, name: str, history: int = 1000, durable: bool = False,
                fsync="never", budget_bytes: int = DEFAULT_BUDGET_BYTES,
                private: bool = False) -> Channel:
        """The channel called ``name``, created on first use (see ``conduit.app.channel``).

        ``history``: events kept for replay. ``durable``: keep them in an append-only log
        under the data directory, so they survive restarts; ``fsync``: "never" (survives a
        crash of the process), "always" (survives power loss) or seconds between fsyncs.
        ``budget_bytes``: how far a subscriber may fall behind before it is disconnected.
        ``private``: subscribing needs a token with a ``subscribe`` grant for ``name``
        (needs ``App(auth=...)``).
        """
        if private and self.auth is None:
            raise ValueError(f"channel {name!r} is private, but the app has no auth: "
                             "make it with App(auth=Auth(...))")
        existing = self.hub.channels.get(name)
        if existing is not None:
            if private:
                existing.private = True  # only ever tightened
            return existing
        channel = Channel(self.hub, name, history=history, durable=durable, fsync=fsync,
                          budget_bytes=budget_bytes, private=private)
        self.hub.channels[name] = channel
        if self.loop is not None:
            channel.frames.loop = self.loop
        return channel

    def subscribe(self, request, *channels, headers=None):
        """One SSE stream of several channels (names or Channel objects), merged in id
        order, with one Last-Event-ID for all. An unknown name is a 404. Every private
        channel among them needs a ``subscribe`` grant (401/403 otherwise)."""
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

    def listen(self, *channels, after: str | None = None,
               max_pending: int = DEFAULT_MAX_PENDING) -> ChannelListener:
        """The events of several channels (names or Channel objects) in this process,
        merged in id order, as one async iterator of ``ChannelEvent`` (``Channel.listen``:
        ids are global to the app, so one cursor ``after`` covers them all). An unknown
        name is a ValueError.

        >>> async def audit():                        # doctest: +SKIP
        ...     async for event in app.listen("documents", "alerts"):
        ...         print(event.channel, event.id, event.data)
        """
        resolved = []
        for item in channels:
            channel = self.hub.channels.get(item) if isinstance(item, str) else item
            if channel is None:
                raise ValueError(f"unknown channel {item!r}")
            if channel not in resolved:
                resolved.append(channel)
        if not resolved:
            raise ValueError("listen() needs at least one channel")
        return self.hub.listen(resolved, after, max_pending)

    async def sync(self) -> int:
        """``Channel.sync`` for the app: returns once this process has received every event
        the broker had acknowledged when it was called; the newest sequence it has."""
        return await self.hub.sync()

    # -- declaring routes --------------------------------------------------------------
    def route(self, path: str, methods=("GET",), auth=None):
        """Register a handler for ``path`` and ``methods``: ``@app.route("/x", methods=[...])``.

        ``auth``: ``True`` (a valid token is needed), ``"publish"`` or ``"subscribe"`` (the
        token must grant that on some topic), else 401/403 before the handler runs. The
        handler checks a given topic with ``request.require(action, topic)``.
        """
        if isinstance(methods, str):
            methods = (methods,)
        if auth is not None and auth is not False:
            if auth is not True and auth not in ("publish", "subscribe"):
                raise ValueError(f"auth must be True, 'publish' or 'subscribe', got {auth!r}")
            if self.auth is None:
                raise ValueError(f"route {path!r} needs auth, but the app has none: make it "
                                 "with App(auth=Auth(...))")
            auth = "" if auth is True else auth
        else:
            auth = None

        def decorator(handler):
            route = Route(path, methods, handler, auth)
            self._methods |= route.methods
            if route.regex is None:
                self._exact.setdefault(path, []).append(route)
            else:
                self._patterns.append(route)
            return handler

        return decorator

    def get(self, path: str, auth=None):
        return self.route(path, ("GET",), auth=auth)

    def post(self, path: str, auth=None):
        return self.route(path, ("POST",), auth=auth)

    def put(self, path: str, auth=None):
        return self.route(path, ("PUT",), auth=auth)

    def delete(self, path: str, auth=None):
        return self.route(path, ("DELETE",), auth=auth)

    def patch(self, path: str, auth=None):
        return self.route(path, ("PATCH",), auth=auth)

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

    def mount(self, prefix: str, asgi_app) -> None:
        """Serve, by the ASGI 3 application ``asgi_app`` (FastAPI, Starlette...), every
        request under ``prefix`` that no route of this App matches: this App's routes and
        channels first, the ASGI app for the rest (``""`` or ``"/"``: every other path).
        The app's ``lifespan`` runs with the server's startup and shutdown; its scope's
        ``root_path`` is ``prefix`` and ``path`` the full path (as Starlette's Mount). It
        handles its own CORS: this App's ``cors`` applies to this App's routes.

        >>> from fastapi import FastAPI                 # doctest: +SKIP
        >>> app = App()
        >>> api = FastAPI()                             # doctest: +SKIP
        >>> app.mount("/api", api)                      # doctest: +SKIP
        """
        from conduit.server.asgi import ASGIApp

        prefix = prefix.rstrip("/")
        if prefix and not prefix.startswith("/"):
            raise ValueError(f"a mount prefix starts with '/', got {prefix!r}")
        if any(existing == prefix for existing, _ in self._mounts):
            raise ValueError(f"an app is already mounted at {prefix or '/'!r}")
        adapter = ASGIApp(asgi_app, root_path=prefix)
        self._mounts.append((prefix, adapter))
        self._mounts.sort(key=lambda mount: -len(mount[0]))  # the longest prefix first

        async def lifespan_startup():
            await adapter.startup(self.loop, self.server)

        async def lifespan_shutdown():
            stopping = adapter.shutdown()
            if stopping is not None:
                await stopping

        lifespan_startup.__qualname__ = f"lifespan of the app mounted at {prefix or '/'!r}"
        self._startup_hooks.append(lifespan_startup)
        self._shutdown_hooks.append(lifespan_shutdown)

    def _mounted(self, path: str):
        for prefix, adapter in self._mounts:
            if not prefix or path == prefix or path.startswith(prefix + "/"):
                return adapter
        return None

    def metrics(self, path: str = "/metrics") -> None:
        """Serve Prometheus metrics at ``path`` (GET; see ``conduit.app.metrics``).

        >>> App().metrics("/metrics")
        """
        from conduit.app.metrics import metrics_response

        self.route(path, ("GET",))(lambda request: metrics_response(self))

    # -- lifecycle hooks ---------------------------------------------------------------
    def on_startup(self, fn):
        """Run ``fn()`` (sync, or ``async def``: awaited) when the server starts, on its
        loop, after the channels are up and before the first request is served. Hooks run
        in the order they were registered; one that raises stops the server (exit status 3).

        >>> app = App()
        >>> @app.on_startup
        ... async def start_projection():
        ...     ...
        """
        self._startup_hooks.append(fn)
        return fn

    def on_shutdown(self, fn):
        """Run ``fn()`` (sync or async) when the server stops serving, on its loop, before
        the channels close (and their durable logs with them). Hooks run in the order they
        were registered, only if every startup hook succeeded; an exception is logged and
        the next hook runs."""
        self._shutdown_hooks.append(fn)
        return fn

    # called by the server (conduit.server.server): an awaitable result is awaited on the loop
    def startup(self, loop, server=None):
        self.loop = loop
        self.server = server
        self.hub.startup(loop)
        if self._startup_hooks:
            # The server's loop runs while async hooks do (they are asyncio code), and
            # with it the listening socket: accepting waits until the hooks are done, so
            # no request sees the app half started (connections wait in the backlog).
            listener = getattr(server, "listener", None)
            if listener is not None:
                listener.pause()
            return self._run_startup_hooks(listener)
        self._hooks_started = True
        return None

    async def _run_startup_hooks(self, listener) -> None:
        from conduit.server.server import StartupError

        for fn in self._startup_hooks:
            try:
                result = fn()
                if inspect.isawaitable(result):
                    await result
            except Exception as exc:
                name = getattr(fn, "__qualname__", repr(fn))
                raise StartupError(f"startup hook {name} failed: "
                                   f"{type(exc).__name__}: {exc}") from exc
        if listener is not None:  # (after a failure the server stops: it stays paused)
            listener.resume()
        self._hooks_started = True

    def stats(self) -> dict:
        """The serving server's live figures: connections, streams, requests, events_sent,
        errors_by_status, uptime_seconds (empty before the server starts)."""
        return self.server.stats() if self.server is not None else {}

    def shutdown(self):
        if self._shutdown_hooks and self._hooks_started:
            return self._run_shutdown_hooks()
        self.hub.shutdown()
        self.loop = None
        return None

    async def _run_shutdown_hooks(self) -> None:
        try:
            for fn in self._shutdown_hooks:
                try:
                    result = fn()
                    if inspect.isawaitable(result):
                        await result
                except Exception:
                    log.exception("error in shutdown hook %s",
                                  getattr(fn, "__qualname__", repr(fn)))
        finally:
            self.hub.shutdown()  # the durable logs close whatever the hooks did
            self.loop = None

    # -- dispatch (the server calls this) ----------------------------------------------
    def _find(self, method: str, path: str):
        """(route, params) or raise HTTPError 404/405/501."""
        if method not in self._methods:
            raise HTTPError(501, f"method {method} not implemented")
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
            allowed.add("OPTIONS")
            if "GET" in allowed:
                allowed.add("HEAD")
            if method == "OPTIONS":
                # RFC 9110 9.3.7: what this path allows, no body
                return _OPTIONS_ROUTE, {"allow": ", ".join(sorted(allowed))}
            raise HTTPError(405, f"method {method} not allowed",
                            headers=[("Allow", ", ".join(sorted(allowed)))])
        if method == "OPTIONS" and path == "*":
            every: set = {"OPTIONS"}
            for routes in self._exact.values():
                for route in routes:
                    every |= route.methods
            for route in self._patterns:
                every |= route.methods
            if "GET" in every:
                every.add("HEAD")
            return _OPTIONS_ROUTE, {"allow": ", ".join(sorted(every))}
        raise HTTPError(404, "not found")

    def _has_path(self, path: str) -> bool:
        return path in self._exact or any(r.match(path) is not None for r in self._patterns)

    def _asgi_route(self, parsed):
        """The mounted ASGI app that answers ``parsed`` (no route of ours matches), or None."""
        target = parsed.target
        if not target.startswith("/"):
            target = _origin_form(target)
        path = target.partition("?")[0]
        if "%" in path:
            path = unquote(path)
        if self._has_path(path):
            return None
        return self._mounted(path)

    @property
    def may_stream_bodies(self) -> bool:
        """For the server: whether some request may go to a mounted ASGI app, whose body is
        then streamed to it (the connection reads each request's head first)."""
        return bool(self._mounts)

    def streams_body(self, parsed) -> bool:
        """For the server: whether the body of the request whose head is ``parsed`` goes to
        a mounted ASGI app as it arrives; conduit's own routes get it whole."""
        return bool(self._mounts) and self._asgi_route(parsed) is not None

    def __call__(self, parsed, client):
        """Handle one parsed request: a Response, a StreamResponse or a coroutine."""
        request = None
        if self._mounts:
            adapter = self._asgi_route(parsed)
            if adapter is not None:  # no route of ours: the mounted ASGI app's
                return adapter(parsed, client)
        try:
            request = Request(parsed, client, app=self)
            cors = self.cors
            if cors is not None and cors.is_preflight(request):
                return self._preflight(cors, request)
            route, params = self._find(request.method, request.path)
            request.path_params = params
            if route.auth is not None:
                self.auth.require(request, route.auth or None)
            if route.kwargs and params:
                result = route.handler(request, **params)
            else:
                result = route.handler(request)
            result = self._adapt(result, parsed)
        except HTTPError as exc:
            result = _error_response(exc)
        except Exception:
            # Answered here rather than by the server so the 500 gets CORS headers too.
            log.exception("application error for %s %s", parsed.method,
                          redact_target(parsed.target, self.secret_query_params))
            result = Response({"error": "internal server error"}, status=500)
        if self.cors is not None:
            result = self._with_cors(request, result)
        return result

    def _preflight(self, cors: CORS, request) -> Response:
        # A refused preflight gets no CORS headers at all (conduit.app.cors rule 4).
        try:
            if not self._has_path(request.path):
                raise HTTPError(404, "not found")
            return cors.preflight(request)
        except HTTPError as exc:
            return _error_response(exc)

    def _with_cors(self, request, result):
        if inspect.iscoroutine(result):
            return self._cors_after(request, result)
        if type(result) is Response or type(result) is StreamResponse:
            return self.cors.apply(request, result)
        return result  # not a response: the server answers 500

    async def _cors_after(self, request, coro):
        return self._with_cors(request, await coro)

    def _adapt(self, result, parsed=None):
        kind = type(result)
        if kind is Response or kind is StreamResponse:
            return result
        if inspect.isgenerator(result) or inspect.isasyncgen(result):
            return StreamResponse(result)
        if inspect.iscoroutine(result):
            return self._await_then_adapt(result, parsed)
        return to_response(result)

    async def _await_then_adapt(self, coro, parsed=None):
        try:
            value = await coro
        except HTTPError as exc:
            return _error_response(exc)
        except Exception:
            if parsed is None:
                raise  # the server logs it and answers 500
            log.exception("application error for %s %s", parsed.method,
                          redact_target(parsed.target, self.secret_query_params))
            return Response({"error": "internal server error"}, status=500)
        return self._adapt(value)


def _answer_options(request, allow):
    return Response(b"", status=204, headers=[("Allow", allow)])


_OPTIONS_ROUTE = Route("/", ("OPTIONS",), _answer_options)
_OPTIONS_ROUTE.kwargs = True  # "allow" comes in as a path parameter


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
