"""``channel.listen()`` / ``app.listen()`` / ``sync()`` over real sockets, on both asyncio loops.

A listener is driven by a handler (an async generator that streams what it yields, as SSE
events the test reads from a raw socket) or by a task an ``on_startup`` hook starts, as an
application would. Publishes come from the test's thread (the cross-thread path) or from
the loop (``server.call``). Every wait is on a condition (a read, a count reached), with a
timeout that only matters when something is broken. The scale tests
(``tests/scale/test_projection.py``) run the same API through the workers' broker and
Redis.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import threading

import pytest
from integration_helpers import (
    TIMEOUT,
    RawClient,
    SSESubscriber,
    get_ok,
    id_seq,
    post_json,
    subscribe,
    wait_for,
)

from conduit import App, ChannelEvent, SSEEvent


def listen_app(history: int = 1000):
    """An app with two channels and ``GET /listen?ch=..&after=..&n=..``: the listener's
    items as SSE events ("item", data: the ChannelEvent's fields as JSON), after one
    "listening" event sent once the listener is registered."""
    app = App()
    docs = app.channel("docs", history=history)
    alerts = app.channel("alerts", history=history)

    @app.get("/listen")
    async def listen(request):
        names = request.query_all("ch") or ["docs"]
        n = int(request.query.get("n", "0"))
        async with app.listen(*names, after=request.query.get("after")) as listener:
            yield SSEEvent("", event="listening")
            count = 0
            async for event in listener:
                yield SSEEvent(event._asdict(), event="item")
                count += 1
                if count == n:
                    break

    @app.get("/events")
    def events(request):
        return app.subscribe(request, *(request.query_all("ch") or ["docs"]))

    @app.get("/position")
    def position(request):
        return {"position": docs.position}

    return app, docs, alerts


class Listening:
    """A raw-socket client of ``GET /listen``, ready once the listener is registered."""

    def __init__(self, server, query: str = "") -> None:
        self.sub = SSESubscriber(server.address, "/listen" + (f"?{query}" if query else ""))
        first = self.sub.next_event()
        assert first["event"] == "listening", first

    def items(self, count: int) -> list:
        got = []
        for _ in range(count):
            event = self.sub.next_event()
            assert event["event"] == "item", event
            got.append(json.loads(event["data"]))
        return got

    def close(self) -> None:
        self.sub.close()


def datas(items) -> list:
    return [item["data"] for item in items]


def no_listeners(server, *channels) -> None:
    """Every listener has unregistered (no leak)."""
    wait_for(lambda: server.call(lambda: all(ch.listener_count == 0 for ch in channels)),
             what="the listeners to unregister")


# -- where a listener starts -----------------------------------------------------------------
def test_listen_replays_the_history_then_goes_live(serve, loop_kind):
    app, docs, alerts = listen_app()
    server = serve(app, loop=loop_kind)
    first = [docs.publish(f"old {i}") for i in range(3)]  # from this thread
    first.append(server.call(lambda: docs.publish({"on": "the loop"})))
    client = Listening(server)
    replay = client.items(4)
    assert [item["id"] for item in replay] == first
    assert [item["seq"] for item in replay] == [id_seq(i) for i in first]
    assert datas(replay) == ["old 0", "old 1", "old 2", '{"on":"the loop"}']
    assert {(item["channel"], item["event"]) for item in replay} == {("docs", None)}
    live = [docs.publish("live", event="note"), server.call(lambda: docs.publish("x\r\ny\rz"))]
    got = client.items(2)
    assert [item["id"] for item in got] == live
    assert [(item["event"], item["data"]) for item in got] == [("note", "live"),
                                                               (None, "x\ny\nz")]
    client.close()
    # The same text again from history: a replay reads what a live listener read.
    again = Listening(server)
    assert datas(again.items(6))[-1] == "x\ny\nz"
    again.close()
    no_listeners(server, docs, alerts)


def test_listen_after_an_id_and_after_the_position(serve, loop_kind):
    app, docs, alerts = listen_app()
    server = serve(app, loop=loop_kind)
    ids = [docs.publish(f"e{i}") for i in range(4)]
    after_one = Listening(server, f"after={ids[1]}")
    assert [item["id"] for item in after_one.items(2)] == ids[2:]
    position = json.loads(get_ok(server.address, "/position").body)["position"]
    assert position == ids[-1]
    live_only = Listening(server, f"after={position}")
    newest = docs.publish("after the position")
    for client in (after_one, live_only):  # nothing replayed: the next item is the live one
        assert [(item["id"], item["data"]) for item in client.items(1)] == [
            (newest, "after the position")]
        client.close()
    no_listeners(server, docs, alerts)


def test_several_channels_merge_in_id_order_with_one_cursor(serve, loop_kind):
    app, docs, alerts = listen_app()
    server = serve(app, loop=loop_kind)
    first = docs.publish("d1")
    ids = [alerts.publish("a1"), docs.publish("d2"), alerts.publish("a2")]
    client = Listening(server, f"ch=docs&ch=alerts&after={first}")
    got = client.items(3)
    assert [(item["id"], item["channel"], item["data"]) for item in got] == [
        (ids[0], "alerts", "a1"), (ids[1], "docs", "d2"), (ids[2], "alerts", "a2")]
    # Live, from two threads at once and the loop: every event once, in id order, each
    # publisher's own order kept.
    per_thread = 150
    go = threading.Barrier(2)

    def publisher(channel, tag):
        go.wait()
        for i in range(per_thread):
            channel.publish(f"{tag} {i}")

    threads = [threading.Thread(target=publisher, args=(docs, "d")),
               threading.Thread(target=publisher, args=(alerts, "a"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT)
    got = client.items(2 * per_thread)
    seqs = [item["seq"] for item in got]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    for tag, name in (("d", "docs"), ("a", "alerts")):
        mine = [item for item in got if item["channel"] == name]
        assert datas(mine) == [f"{tag} {i}" for i in range(per_thread)]
    client.close()
    no_listeners(server, docs, alerts)


def test_a_cursor_that_cannot_be_honoured_is_a_reset_then_live(serve, loop_kind):
    app, docs, alerts = listen_app(history=2)
    server = serve(app, loop=loop_kind)
    ids = [docs.publish(f"e{i}") for i in range(100)]  # the history keeps the last few
    epoch = ids[0].rpartition("-")[0]
    cases = {
        "stale-cursor": ids[0],
        "unknown-epoch": "0123456789abcdef-5",
        "malformed-cursor": "not_a_cursor",
    }
    future = f"{epoch}-{id_seq(ids[-1]) + 1000}"  # newer than anything: stale too
    clients = []
    for reason, cursor in [*cases.items(), ("stale-cursor", future)]:
        client = Listening(server, f"after={cursor}")
        (reset,) = client.items(1)
        assert reset["event"] == "reset" and reset["channel"] == "docs"
        assert json.loads(reset["data"]) == {"reason": reason, "channels": ["docs"],
                                             "last_event_id": cursor}
        assert reset["id"] == ids[-1]  # the newest id, as for an SSE subscriber
        # Exactly what an SSE subscription with that Last-Event-ID starts with.
        with subscribe(server.address, "/events", last_event_id=cursor) as sub:
            sse = sub.next_event()
        assert (sse["event"], sse["id"], sse["data"]) == ("reset", reset["id"], reset["data"])
        clients.append(client)
    live = docs.publish("after the resets")
    for client in clients:
        assert datas(client.items(1)) == ["after the resets"]
        client.close()
    assert live
    no_listeners(server, docs, alerts)


# -- bounded, and unregistered -------------------------------------------------------------------
def test_a_consumer_past_max_pending_gets_a_reset_and_a_warning(serve, loop_kind, caplog):
    caplog.set_level(logging.WARNING, logger="conduit.app")
    app = App()
    docs = app.channel("docs")
    state: dict = {}

    @app.post("/open")
    def open_listener(request):
        state["listener"] = docs.listen(after=docs.position, max_pending=5)
        return {"position": docs.position}

    @app.get("/take")
    async def take(request):
        await docs.sync()  # every publish so far is in the listener's queue
        listener = state["listener"]
        items = [(await listener.__anext__())._asdict() for _ in range(listener.pending)]
        return {"items": items, "pending": listener.pending}

    server = serve(app, loop=loop_kind)
    opened = post_json(server.address, "/open", {})["position"]
    ids = [docs.publish(i) for i in range(12)]
    taken = json.loads(get_ok(server.address, "/take").body)
    items = taken["items"]
    reset, events = items[0], items[1:]
    assert reset["event"] == "reset"
    assert json.loads(reset["data"]) == {"reason": "slow-consumer", "channels": ["docs"],
                                         "last_event_id": opened}  # its cursor
    # What it kept is the newest events, in order, no more than max_pending of them; the
    # reset's id is just before them (listen(after=reset.id) would go on from there).
    assert 1 <= len(events) <= 5 and [e["id"] for e in events] == ids[-len(events):]
    assert reset["seq"] == events[0]["seq"] - 1
    assert taken["pending"] == 0
    warnings = [r for r in caplog.records if "more than 5 events behind" in r.getMessage()]
    assert len(warnings) == 1, [r.getMessage() for r in caplog.records]
    # Then live, as before.
    newest = docs.publish("live again")
    again = json.loads(get_ok(server.address, "/take").body)["items"]
    assert [(e["id"], e["data"]) for e in again] == [(newest, "live again")]
    server.call(lambda: state.pop("listener"))  # dropped: unregistered
    no_listeners(server, docs)


def test_breaking_out_closing_and_disconnecting_unregister(serve, loop_kind):
    app = App()
    docs = app.channel("docs")
    holding = threading.Event()

    @app.get("/break")
    async def break_out(request):
        async for event in docs.listen(after=None):
            yield SSEEvent(event.data, event="item")
            break
        yield SSEEvent(docs.listener_count, event="count")  # at once: nothing to wait for

    @app.get("/close")
    async def close(request):
        listener = docs.listen(after=None)
        yield SSEEvent((await listener.__anext__()).data, event="item")
        await listener.aclose()
        await listener.aclose()  # idempotent
        yield SSEEvent(f"{docs.listener_count} {listener.closed}", event="count")
        async for _ in listener:  # a closed listener ends at once
            raise AssertionError("a closed listener yielded")

    @app.get("/hold")
    async def hold(request):
        async with docs.listen() as listener:
            yield SSEEvent(docs.listener_count, event="listening")
            holding.set()
            async for event in listener:
                yield SSEEvent(event.data, event="item")

    server = serve(app, loop=loop_kind)
    docs.publish("one")
    for path, expected in (("/break", "0"), ("/close", "0 True")):
        sub = SSESubscriber(server.address, path)
        assert sub.next_event()["data"] == "one"
        assert sub.next_event()["data"] == expected
        sub.close()
    sub = SSESubscriber(server.address, "/hold")
    assert sub.next_event()["data"] == "1" and holding.wait(TIMEOUT)
    assert sub.next_event()["data"] == "one"
    sub.client.reset()  # the client goes away: the handler is cancelled, async with exits
    no_listeners(server, docs)


# -- sync, and listeners run by startup hooks -------------------------------------------------
def test_a_listener_started_by_a_startup_hook_and_sync(serve, loop_kind):
    app = App()
    docs = app.channel("docs")
    state: dict = {"count": 0, "hooks": []}
    release = threading.Event()

    @app.on_startup
    def first_hook():
        state["hooks"].append("sync hook")

    @app.on_startup
    async def start_counting():
        await asyncio.to_thread(release.wait, TIMEOUT)  # the loop runs meanwhile
        state["hooks"].append("async hook")
        state["listener"] = listener = docs.listen(after=None)

        async def count():
            async for event in listener:
                await asyncio.sleep(0)  # a consumer that awaits between events
                state["count"] += 1
                state["last"] = event.id

        state["task"] = asyncio.get_running_loop().create_task(count())

    @app.on_shutdown
    async def stop_counting():
        state["hooks"].append("shutdown")

    @app.get("/count")
    async def count_route(request):
        seq = await state["listener"].sync()  # the consumer has had everything up to seq
        return {"count": state["count"], "last": state.get("last"), "seq": seq,
                "position": state["listener"].position, "hub": await app.sync(),
                "channel": await docs.sync()}

    server = serve(app, loop=loop_kind)
    # A request that arrives while the hooks run waits for them (the server does not
    # accept meanwhile): served earlier, it would find no listener and answer 500.
    with RawClient(server.address) as early:
        early.send(b"GET /count HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        assert early.nothing_pending(0.05)
        release.set()
        assert early.read_response().status == 200
    assert state["hooks"] == ["sync hook", "async hook"]
    ids = [docs.publish(i) for i in range(200)]  # from this thread: handed over to the loop
    answer = json.loads(get_ok(server.address, "/count").body)
    assert answer == {"count": 200, "last": ids[-1], "seq": id_seq(ids[-1]),
                      "position": ids[-1], "hub": id_seq(ids[-1]),
                      "channel": id_seq(ids[-1])}
    server.stop()
    assert state["hooks"] == ["sync hook", "async hook", "shutdown"]


def test_channel_event_is_an_immutable_value():
    event = ChannelEvent("e-1", 1, "docs", None, '{"a": [1, 2]}')
    assert event.json() == {"a": [1, 2]}
    with pytest.raises(AttributeError):
        event.data = "x"  # type: ignore[misc]
    assert event == ChannelEvent("e-1", 1, "docs", None, '{"a": [1, 2]}')


def test_listen_refuses_what_it_cannot_do(serve):
    app = App()
    docs = app.channel("docs")
    with pytest.raises(RuntimeError, match="running server"):
        docs.listen()  # no server yet
    server = serve(app)
    with pytest.raises(RuntimeError, match="loop thread"):
        docs.listen()  # not on the loop thread
    for call, error in ((lambda: docs.listen(max_pending=0), ValueError),
                        (lambda: docs.listen(after=5), TypeError),
                        (lambda: app.listen("nope"), ValueError),
                        (lambda: app.listen(), ValueError)):
        with pytest.raises(error):
            server.call(call)
    no_listeners(server, docs)


# -- startup and shutdown hooks in a real process ------------------------------------------------
def test_a_failing_startup_hook_exits_3_with_one_line(conduit_process, app_file):
    path = app_file("""
        from conduit import App

        app = App()

        @app.on_startup
        async def boom():
            raise RuntimeError("no database")
    """)
    process = conduit_process(path, started=False)
    assert process.wait() == 3
    errors = [line for line in process.stderr().splitlines() if "startup hook" in line]
    assert len(errors) == 1 and "boom failed: RuntimeError: no database" in errors[0], \
        process.stderr()
    assert "Traceback" not in process.stderr()


def test_shutdown_hooks_run_at_sigterm(conduit_process, app_file):
    path = app_file("""
        import logging
        from conduit import App

        app = App()
        log = logging.getLogger("conduit.server")

        @app.on_shutdown
        def first():
            log.info("shutdown hook one")
            raise RuntimeError("logged, and the next hook runs")

        @app.on_shutdown
        async def second():
            log.info("shutdown hook two")
    """)
    process = conduit_process(path)
    process.signal(signal.SIGTERM)
    assert process.wait() == 0, process.stderr()
    log = process.stderr()
    assert log.index("shutdown hook one") < log.index("shutdown hook two"), log
    assert "error in shutdown hook" in log
