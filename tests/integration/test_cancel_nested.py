"""A client leaving while its stream handler awaits: nested async generators close cleanly."""

from __future__ import annotations

import socket
import threading
from contextlib import aclosing

from integration_helpers import TIMEOUT

from conduit import App, sleep


def test_disconnect_during_await_closes_nested_async_generators(serve, caplog):
    closed = []
    both_closed = threading.Event()
    app = App()

    async def inner():
        try:
            while True:
                await sleep(0.01)
                yield "tick"
        finally:
            closed.append("inner")

    @app.get("/s")
    async def stream(request):
        try:
            async with aclosing(inner()) as ticks:
                async for tick in ticks:
                    yield tick
        finally:
            closed.append("outer")
            both_closed.set()

    server = serve(app)
    with caplog.at_level("ERROR", logger="conduit.server"):
        client = socket.create_connection(server.address, timeout=TIMEOUT)
        client.sendall(b"GET /s HTTP/1.1\r\nHost: t\r\n\r\n")
        assert b"data: tick" in client.recv(4096) or b"data: tick" in client.recv(4096)
        client.close()  # the handler is suspended in `await sleep(...)` most of the time
        assert both_closed.wait(TIMEOUT)
    assert closed == ["inner", "outer"]
    assert "already running" not in caplog.text
    assert "error while closing" not in caplog.text


def test_iterate_in_thread_aclose_waits_for_the_next_in_flight(serve):
    import time as _time

    from conduit import iterate_in_thread

    started = threading.Event()
    finalised = threading.Event()
    handler_done = threading.Event()
    errors = []

    def blocking_tokens():
        try:
            yield "first"
            started.set()
            _time.sleep(0.3)  # a slow next() still running when the client leaves
            yield "second"
        finally:
            finalised.set()

    app = App()

    @app.get("/t")
    async def tokens(request):
        source = iterate_in_thread(blocking_tokens())
        try:
            async for token in source:
                yield token
        finally:
            try:
                await source.aclose()
            except Exception as exc:  # what used to be "generator already executing"
                errors.append(exc)
            handler_done.set()

    server = serve(app)
    client = socket.create_connection(server.address, timeout=TIMEOUT)
    client.sendall(b"GET /t HTTP/1.1\r\nHost: t\r\n\r\n")
    assert started.wait(TIMEOUT)
    client.close()
    assert handler_done.wait(TIMEOUT) and finalised.wait(TIMEOUT)
    assert errors == []
