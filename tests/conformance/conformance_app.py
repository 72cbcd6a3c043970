"""The application every conformance case is sent to, and a server running it with a
chosen parser twin (also used by ``tests/fuzz/test_fuzz_socket.py``).

``integration_helpers`` (tests/integration) must be importable: the conftests of
``tests/conformance`` and ``tests/fuzz`` put it on ``sys.path``.
"""

from __future__ import annotations

from contextlib import contextmanager

import pytest
from integration_helpers import RunningServer

from conduit import App, Response, SSEEvent
from conduit.server import connection as _connection

STREAM_EVENTS = 3


def make_app() -> App:
    """GET /, POST /echo (answers the body's length), GET /stream (3 events), GET /where."""
    app = App()

    @app.get("/")
    def index(request):
        return "ok"

    @app.post("/echo")
    def echo(request):
        return Response(f"{len(request.body)}", content_type="text/plain")

    @app.get("/stream")
    def stream(request):
        for i in range(STREAM_EVENTS):
            yield SSEEvent(str(i), event="n", id=str(i))

    @app.get("/where")
    def where(request):
        return {"path": request.path, "query": request.query_string,
                "host": request.host}

    return app


@contextmanager
def serving_with_parser(parser_module, **settings):
    """A running server (``Config(**settings)``) whose connections parse with
    ``parser_module``.

    The connection builds its parser from ``conduit.server.connection.RequestParser``;
    that name is swapped for the twin under test while the server runs, so one test run
    sends every case through both parsers. The rest of the server (loop, pump) is
    whichever build is active.
    """
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_connection, "RequestParser", parser_module.RequestParser)
        server = RunningServer(make_app(), **settings)
        try:
            yield server
        finally:
            server.stop()
