"""Handlers run on asyncio: every asyncio library works inside them, over real sockets.

Each test runs on both asyncio loops conduit offers (``Config.loop``: asyncio's own, and
uvloop when it is installed). Clients are real: httpx (sync and AsyncClient), raw sockets.
Nothing sleeps and hopes: every wait is on a condition (an Event, a read) with a timeout
that only matters when something is broken.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading

import httpx
import pytest
from integration_helpers import TIMEOUT, RawClient, wait_for

import conduit
from conduit import App, SSEEvent


def sse_events(text: str) -> list:
    """(event, data) of every event in an event-stream body."""
    events = []
    for block in text.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines()
                      if ": " in line and not line.startswith(":"))
        if "data" in fields:
            events.append((fields.get("event"), fields["data"]))
    return events


def test_the_issue_handler_streams_every_event(serve, loop_kind):
    app = App()

    @app.get("/tick")
    async def tick(request):
        for i in range(3):
            yield SSEEvent(i, event="tick")
            await asyncio.sleep(0.1)

    server = serve(app, loop=loop_kind)
    body = httpx.get(server.url + "/tick", timeout=TIMEOUT).text
    assert sse_events(body) == [("tick", "0"), ("tick", "1"), ("tick", "2")]


def test_every_handler_kind_sees_the_serving_loop(serve, loop_kind):
    app = App()
    seen = {}

    def note(kind):
        seen[kind] = asyncio.get_running_loop()

    @app.get("/sync")
    def sync_handler(request):
        note("sync")
        return "ok"

    @app.get("/async")
    async def async_handler(request):
        await asyncio.sleep(0)
        note("async")
        return "ok"

    @app.get("/gen")
    def gen_handler(request):
        note("gen")
        yield "x"

    @app.get("/agen")
    async def agen_handler(request):
        await asyncio.sleep(0)
        note("agen")
        yield "x"

    server = serve(app, loop=loop_kind)
    for path in ("/sync", "/async", "/gen", "/agen"):
        assert httpx.get(server.url + path, timeout=TIMEOUT).status_code == 200
    driver = server.server.driver
    assert seen == {"sync": driver, "async": driver, "gen": driver, "agen": driver}
    expected = "uvloop" if loop_kind == "uvloop" else "asyncio"
    assert type(driver).__module__.split(".")[0] == expected


def test_queue_event_and_lock_between_handlers(serve, loop_kind):
    """POST /say puts into an asyncio.Queue that an open stream awaits; an Event ends it."""
    app = App()
    state = {}

    @app.post("/say")
    async def say(request):
        async with state["lock"]:
            await state["queue"].put(request.json()["text"])
        return {"queued": state["queue"].qsize()}

    @app.post("/end")
    def end(request):
        state["done"].set()
        return "ok"

    @app.get("/listen")
    async def listen(request):
        yield SSEEvent("ready", event="ready")
        while True:
            getter = asyncio.ensure_future(state["queue"].get())
            ender = asyncio.ensure_future(state["done"].wait())
            finished, _ = await asyncio.wait({getter, ender},
                                             return_when=asyncio.FIRST_COMPLETED)
            if ender in finished:
                getter.cancel()
                return
            ender.cancel()
            yield SSEEvent(getter.result(), event="said")

    server = serve(app, loop=loop_kind)

    def make_primitives():  # on the serving loop, as an app's startup would
        state.update(queue=asyncio.Queue(), lock=asyncio.Lock(), done=asyncio.Event())

    server.call(make_primitives)
    with httpx.Client(base_url=server.url, timeout=TIMEOUT) as client:
        with client.stream("GET", "/listen") as stream:
            lines = stream.iter_lines()
            assert next(lines) == "event: ready"
            for text in ("one", "two"):
                assert client.post("/say", json={"text": text}).status_code == 200
            client.post("/end")
            rest = "\n".join(lines)
    assert sse_events("event: ready\n" + rest)[1:] == [("said", "one"), ("said", "two")]


def test_sleep_zero_batches_but_never_holds_an_event_back(serve, loop_kind):
    """A bare yield (``await asyncio.sleep(0)``) lets the pump keep its batch for the
    next step (one send for many events), but only briefly: an event followed by a
    generator that spins on sleep(0) until the client has read that event still goes
    out (held for ever, the client would wait and the spin never end)."""
    app = App()
    seen = threading.Event()

    @app.get("/spin")
    async def spin(request):
        for i in range(200):  # a fast stream: sleep(0) every 10 events
            if i % 10 == 0:
                await asyncio.sleep(0)
            yield SSEEvent(i, event="fast")
        yield SSEEvent("last", event="held?")
        while not seen.is_set():  # spin on bare yields until the client has it
            await asyncio.sleep(0)
        yield SSEEvent("after", event="after")

    server = serve(app, loop=loop_kind)
    with httpx.Client(base_url=server.url, timeout=TIMEOUT) as client:
        with client.stream("GET", "/spin") as stream:
            text = ""
            lines = stream.iter_lines()
            for line in lines:
                text += line + "\n"
                if line == "data: last":
                    seen.set()
                    break
            text += "\n".join(lines)
    events = sse_events(text)
    assert events[:200] == [("fast", str(i)) for i in range(200)]
    assert events[200:] == [("held?", "last"), ("after", "after")]


def test_create_task_gather_and_wait_for(serve, loop_kind):
    app = App()

    async def square(n):
        await asyncio.sleep(0.01)
        return n * n

    @app.get("/squares")
    async def squares(request):
        tasks = [asyncio.create_task(square(n)) for n in range(5)]
        total = sum(await asyncio.gather(*tasks))
        try:
            await asyncio.wait_for(asyncio.sleep(60), timeout=0.05)
        except asyncio.TimeoutError:
            timed_out = True
        else:
            timed_out = False
        return {"total": total, "timed_out": timed_out}

    server = serve(app, loop=loop_kind)
    assert httpx.get(server.url + "/squares", timeout=TIMEOUT).json() == \
        {"total": 30, "timed_out": True}


@pytest.mark.skipif(sys.version_info < (3, 11), reason="asyncio.timeout and TaskGroup: 3.11+")
def test_timeout_and_task_group(serve, loop_kind):
    app = App()

    @app.get("/group")
    async def group(request):
        results = []

        async def worker(n):
            await asyncio.sleep(0.01 * n)
            results.append(n)

        async with asyncio.TaskGroup() as tg:  # type: ignore[attr-defined]
            for n in (3, 1, 2):
                tg.create_task(worker(n))
        try:
            async with asyncio.timeout(0.05):  # type: ignore[attr-defined]
                await asyncio.sleep(60)
        except TimeoutError:
            return {"order": results, "timeout": True}
        return {"order": results, "timeout": False}

    @app.get("/stream")
    async def stream(request):
        async with asyncio.timeout(0.05):  # type: ignore[attr-defined]
            yield SSEEvent("inside")
        try:
            async with asyncio.timeout(0.05):  # type: ignore[attr-defined]
                await asyncio.sleep(60)
        except TimeoutError:
            yield SSEEvent("timed out")

    server = serve(app, loop=loop_kind)
    assert httpx.get(server.url + "/group", timeout=TIMEOUT).json() == \
        {"order": [1, 2, 3], "timeout": True}
    body = httpx.get(server.url + "/stream", timeout=TIMEOUT).text
    assert sse_events(body) == [(None, "inside"), (None, "timed out")]


def test_to_thread_helpers_share_one_pool_of_thread_pool_size(serve, loop_kind):
    """conduit.to_thread, asyncio.to_thread and run_in_executor(None) run in the server's
    pool: at most thread_pool_size calls at once, in conduit-worker threads."""
    app = App()
    lock = threading.Lock()
    running = {"now": 0, "most": 0, "threads": set()}
    release = threading.Event()

    def blocking():
        with lock:
            running["now"] += 1
            running["most"] = max(running["most"], running["now"])
            running["threads"].add(threading.current_thread().name)
        release.wait(TIMEOUT)
        with lock:
            running["now"] -= 1
        return "done"

    @app.get("/conduit")
    async def via_conduit(request):
        return await conduit.to_thread(blocking)

    @app.get("/asyncio")
    async def via_asyncio(request):
        return await asyncio.to_thread(blocking)

    @app.get("/executor")
    async def via_executor(request):
        return await asyncio.get_running_loop().run_in_executor(None, blocking)

    server = serve(app, loop=loop_kind, thread_pool_size=2)
    results = []

    def get(path):
        results.append(httpx.get(server.url + path, timeout=TIMEOUT).text)

    clients = [threading.Thread(target=get, args=(p,)) for p in
               ("/conduit", "/asyncio", "/executor")]
    for client in clients:
        client.start()
    wait_for(lambda: running["now"] == 2, what="two calls running in the pool")
    release.set()
    for client in clients:
        client.join(TIMEOUT)
    assert results == ["done"] * 3
    assert running["most"] == 2  # the third waited for a thread of the pool
    assert all(name.startswith("conduit-worker") for name in running["threads"])


def test_anyio_works_in_handlers(serve, loop_kind):
    anyio = pytest.importorskip("anyio")
    app = App()

    @app.get("/anyio")
    async def with_anyio(request):
        results = []

        async def child(n):
            await anyio.sleep(0.01)
            results.append(n)

        async with anyio.create_task_group() as tg:
            for n in range(3):
                tg.start_soon(child, n)
        with anyio.move_on_after(0.05) as scope:
            await anyio.sleep(60)
        return {"results": sorted(results), "cancelled": scope.cancelled_caught,
                "backend": anyio.get_current_task().name is not None}

    server = serve(app, loop=loop_kind)
    assert httpx.get(server.url + "/anyio", timeout=TIMEOUT).json() == \
        {"results": [0, 1, 2], "cancelled": True, "backend": True}


def test_an_asyncio_client_library_inside_a_stream(serve, loop_kind):
    """httpx.AsyncClient in a handler: a stream that relays another server's stream."""
    upstream_app = App()

    @upstream_app.get("/numbers")
    async def numbers(request):
        for i in range(5):
            yield SSEEvent(i, event="n")
            await asyncio.sleep(0.01)

    upstream = serve(upstream_app, loop=loop_kind)
    app = App()

    @app.get("/relay")
    async def relay(request):
        async with httpx.AsyncClient(timeout=TIMEOUT) as client:
            async with client.stream("GET", upstream.url + "/numbers") as response:
                async for line in response.aiter_lines():
                    if line.startswith("data: "):
                        yield SSEEvent(int(line[6:]) * 10, event="relayed")

    server = serve(app, loop=loop_kind)
    body = httpx.get(server.url + "/relay", timeout=TIMEOUT).text
    assert sse_events(body) == [("relayed", str(i * 10)) for i in range(5)]


def test_no_thread_per_request(serve, loop_kind):
    """50 streams waiting in asyncio.sleep at once run on the loop thread alone."""
    app = App()
    waiting = set()
    release = {}

    @app.get("/wait/{n:int}")
    async def wait(request, n):
        waiting.add(n)
        yield SSEEvent("waiting")
        await release["event"].wait()
        yield SSEEvent("released")

    server = serve(app, loop=loop_kind)
    server.call(lambda: release.update(event=asyncio.Event()))
    before = {t.name for t in threading.enumerate()}
    clients = [RawClient(server.address) for _ in range(50)]
    try:
        for n, client in enumerate(clients):
            client.send(b"GET /wait/%d HTTP/1.1\r\nHost: t\r\n\r\n" % n)
        for client in clients:
            client.read_response(head_only=True)
            assert client.read_chunk()[1] == b"data: waiting\n\n"
        assert len(waiting) == 50
        during = {t.name for t in threading.enumerate()}
        assert during - before == set(), "a thread was started for the requests"
        server.call(lambda: release["event"].set())
        for client in clients:
            assert client.read_chunk()[1] == b"data: released\n\n"
    finally:
        for client in clients:
            client.close()


# -- cancellation: a client that goes away cancels its handler's task ----------------------
def test_disconnect_cancels_the_task_at_its_await_and_closes_everything(serve, loop_kind):
    """An httpx.AsyncClient stream is closed after the first event; the handler is inside
    an asyncio.sleep, in a nested async generator, inside ``async with``: CancelledError
    is raised there, every finally and __aexit__ runs, innermost first."""
    app = App()
    record = []
    finished = threading.Event()

    @contextlib.asynccontextmanager
    async def resource():
        record.append("enter")
        try:
            yield
        finally:
            await asyncio.sleep(0)  # cleanup may await after a cancellation
            record.append("aexit")

    async def inner():
        try:
            yield "first"
            await asyncio.sleep(3600)
            yield "never"
        except asyncio.CancelledError:
            record.append("cancelled at the await")
            raise
        finally:
            record.append("inner finally")

    @app.get("/cancel")
    async def cancel(request):
        try:
            async with resource():
                async for item in inner():
                    yield SSEEvent(item)
        finally:
            record.append("outer finally")
            finished.set()

    server = serve(app, loop=loop_kind)

    async def client():
        async with httpx.AsyncClient(timeout=TIMEOUT) as http:
            async with http.stream("GET", server.url + "/cancel") as response:
                async for line in response.aiter_lines():
                    if line == "data: first":
                        break  # leaving the block closes the connection

    # in a thread of its own: Playwright's sync API (the browser tests of the same session)
    # leaves an asyncio loop running in the main thread, where asyncio.run() refuses
    runner = threading.Thread(target=asyncio.run, args=(client(),))
    runner.start()
    runner.join(TIMEOUT)
    assert not runner.is_alive()
    assert finished.wait(TIMEOUT)
    assert record == ["enter", "cancelled at the await", "inner finally", "aexit",
                      "outer finally"]
    wait_for(lambda: server.connection_count() == 0, what="the connection released")


def test_reset_cancels_an_async_handler_awaiting_a_response(serve, loop_kind):
    """A connection reset cancels a response handler's task. (A FIN alone is a half-close:
    the client may still read, so the handler's answer is awaited, as before.)"""
    app = App()
    record = []
    entered = threading.Event()
    finished = threading.Event()

    @app.get("/slow")
    async def slow(request):
        entered.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            record.append("cancelled")
            raise
        finally:
            finished.set()
        return "never"

    server = serve(app, loop=loop_kind)
    client = RawClient(server.address)
    client.send(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n")
    assert entered.wait(TIMEOUT)
    client.reset()
    assert finished.wait(TIMEOUT)
    assert record == ["cancelled"]


def test_a_handler_error_after_an_await_ends_the_stream_and_is_logged(serve, loop_kind,
                                                                       caplog):
    app = App()

    @app.get("/boom")
    async def boom(request):
        yield SSEEvent("before")
        await asyncio.sleep(0)
        raise KeyError("gone")

    server = serve(app, loop=loop_kind)
    with caplog.at_level("ERROR", logger="conduit.server"):
        body = httpx.get(server.url + "/boom", timeout=TIMEOUT).text
    assert body == "data: before\n\n"
    assert "stream handler raised" in caplog.text
    # the connection is still good for the next request
    assert httpx.get(server.url + "/boom", timeout=TIMEOUT).status_code == 200
