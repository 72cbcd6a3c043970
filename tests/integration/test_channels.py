"""Channels over real sockets: fan-out, the first-bytes guarantee, replay with
Last-Event-ID, the reset event, several topics on one connection, slow consumers,
publishing from other threads, heartbeats, disconnects, drain and HTTP/1.0.

Every subscriber here is a raw socket (``SSESubscriber``): the bytes on the wire are checked,
not what a client library makes of them. Nothing sleeps and hopes: every wait is on a
condition with a timeout that only matters when something is broken.
"""

from __future__ import annotations

import json
import re
import socket
import threading

import pytest
from integration_helpers import (
    TIMEOUT,
    SSESubscriber,
    get_ok,
    id_seq,
    post_json,
    request,
    subscribe,
    wait_for,
)

from conduit import App, HTTPError, SSEEvent


def channel_app(names=("news",), **channel_settings) -> App:
    """An app with channels ``names`` and routes to subscribe and publish over HTTP."""
    app = App()
    for name in names:
        app.channel(name, **channel_settings)

    @app.get("/events")
    def events(request):  # several topics: /events?topic=a&topic=b
        return app.subscribe(request, *request.query_all("topic"))

    @app.get("/events/{name}")
    def one(request, name):
        channel = app.hub.channels.get(name)
        if channel is None:
            raise HTTPError(404, f"no channel {name}")
        return channel.subscribe(request)

    @app.post("/publish/{name}")
    def publish(request, name):  # on the loop thread
        body = request.json()
        data = body["data"]
        if body.get("as") == "bytes":
            data = data.encode()
        return {"id": app.hub.channels[name].publish(data, event=body.get("event"))}

    @app.post("/burst")
    def burst(request):  # several publishes in one loop turn
        return {"ids": [app.hub.channels[name].publish(data) for name, data in request.json()]}

    return app


@pytest.fixture
def news(serve):
    """A server with one channel "news" (history 1000); no heartbeats."""
    app = channel_app()
    server = serve(app, heartbeat_seconds=0)
    server.app = app
    server.channel = app.hub.channels["news"]
    return server


def subscriber_count(server, channel) -> int:
    return server.call(lambda: channel.subscriber_count)


def frame_of(event_id: str, data, event=None) -> bytes:
    return SSEEvent(data, event=event, id=event_id).encode()


def assert_increasing(ids) -> None:
    seqs = [id_seq(i) for i in ids]
    assert all(a < b for a, b in zip(seqs, seqs[1:], strict=False)), ids


# -- fan-out --------------------------------------------------------------------------------
def test_fan_out_to_200_raw_subscribers_same_bytes_in_order(news):
    channel = news.channel
    subs = [subscribe(news.address, "/events/news") for _ in range(200)]
    try:
        assert subscriber_count(news, channel) == 200
        items = [
            ({"type": "DocumentSaved", "data": {"id": "doc1", "n": [1, 2]}, "t": "é"}, None),
            ("plain text", None),
            ("with an event name", "update"),
            (b"bytes data \xc3\xa9", None),
            ("two\nlines\r\nthree", "multi"),
            ("", None),
        ]
        expected = []
        for data, event in items * 5:  # from this thread: across to the loop
            event_id = channel.publish(data, event=event)
            expected.append(frame_of(event_id, data, event))
        # and from the loop thread (a handler), str and bytes
        for body in ({"data": "via http", "event": "web"}, {"data": "raw é", "as": "bytes"}):
            event_id = post_json(news.address, "/publish/news", body)["id"]
            data = body["data"].encode() if body.get("as") == "bytes" else body["data"]
            expected.append(frame_of(event_id, data, body.get("event")))
        # A dict is compact JSON, sent as is.
        assert expected[0].endswith(
            b'data: {"type":"DocumentSaved","data":{"id":"doc1","n":[1,2]},"t":"\xc3\xa9"}\n\n')
        wanted = b"".join(expected)
        for sub in subs:
            received = [sub.next_frame() for _ in expected]
            assert b"".join(received) == wanted
            ids = [frame_id(frame) for frame in received]
            assert_increasing(ids)
    finally:
        for sub in subs:
            sub.close()
    wait_for(lambda: subscriber_count(news, channel) == 0, what="all subscribers gone")


def frame_id(frame: bytes) -> str:
    for line in frame.split(b"\n"):
        if line.startswith(b"id: "):
            return line[4:].decode()
    raise AssertionError(f"no id in {frame!r}")


def test_subscribed_comment_names_the_channels(serve):
    app = channel_app(names=("a", "b"))
    server = serve(app, heartbeat_seconds=0)
    with SSESubscriber(server.address, "/events?topic=a&topic=b") as sub:
        assert sub.response.header(b"Cache-Control") == b"no-cache"
        assert sub.chunked
        assert sub.next_frame() == b": subscribed to a, b\n\n"


# -- the first-bytes guarantee --------------------------------------------------------------
def test_a_client_that_saw_subscribed_gets_the_next_publish(news):
    for i in range(25):
        with subscribe(news.address, "/events/news") as sub:
            # published on another connection, right after the comment was read
            if i % 2:
                event_id = post_json(news.address, "/publish/news", {"data": f"n{i}"})["id"]
            else:
                event_id = news.channel.publish(f"n{i}")  # from another thread
            event = sub.next_event()
            assert (event["id"], event["data"]) == (event_id, f"n{i}")


# -- replay with Last-Event-ID --------------------------------------------------------------
@pytest.mark.parametrize("how", ["header", "query"])
def test_replay_after_reconnect_then_live_no_gap_no_duplicate(news, how):
    channel = news.channel
    with subscribe(news.address, "/events/news") as sub:
        first = channel.publish("before")
        assert sub.next_event()["id"] == first
    missed = [(channel.publish({"i": i}), {"i": i}) for i in range(7)]
    if how == "header":
        sub = subscribe(news.address, "/events/news", last_event_id=first)
    else:
        sub = subscribe(news.address, f"/events/news?last_event_id={first}")
    with sub:
        replayed = [sub.next_frame() for _ in missed]
        assert replayed == [frame_of(i, data) for i, data in missed]
        live = [channel.publish(f"live {i}") for i in range(3)]
        got = sub.events(3)
        assert [e["id"] for e in got] == live
        assert [e["data"] for e in got] == ["live 0", "live 1", "live 2"]
        assert_increasing([i for i, _ in missed] + live)


def test_header_wins_over_the_query_cursor(news):
    """EventSource reconnects to the same URL (with its ?last_event_id=) and sends the
    newer Last-Event-ID header: the header is the cursor."""
    channel = news.channel
    ids = [channel.publish(i) for i in range(6)]
    with subscribe(news.address, f"/events/news?last_event_id={ids[0]}",
                   last_event_id=ids[3]) as sub:
        assert [e["id"] for e in sub.events(2)] == ids[4:]
        live = channel.publish("live")
        assert sub.next_event()["id"] == live


def test_replay_from_the_middle_of_history(news):
    channel = news.channel
    ids = [channel.publish(i) for i in range(10)]
    with subscribe(news.address, "/events/news", last_event_id=ids[3]) as sub:
        assert [e["id"] for e in sub.events(6)] == ids[4:]
        newer = channel.publish("next")
        assert sub.next_event()["id"] == newer


def test_cursor_equal_to_the_newest_id_replays_nothing(news):
    channel = news.channel
    ids = [channel.publish(i) for i in range(5)]
    with subscribe(news.address, "/events/news", last_event_id=ids[-1]) as sub:
        live = channel.publish("live")
        event = sub.next_event()  # the first event after the comment is the live one
        assert (event["id"], event["data"]) == (live, "live")


# -- the reset event ------------------------------------------------------------------------
def reset_frame(newest: str, reason: str, channels, cursor: str) -> bytes:
    data = json.dumps({"reason": reason, "channels": list(channels), "last_event_id": cursor},
                      separators=(",", ":"), ensure_ascii=False)
    return f"event: reset\nid: {newest}\ndata: {data}\n\n".encode()


def check_reset_then_live(server, channel, path, cursor, reason, channels=("news",)):
    newest = server.call(lambda: channel.last_id)
    with SSESubscriber(server.address, path, headers=[("Last-Event-ID", cursor)]) as sub:
        assert sub.response.status == 200
        sub.read_subscribed()
        reset = sub.next_event()
        assert reset["raw"] == reset_frame(newest, reason, channels, cursor)
        assert reset["event"] == "reset" and reset["id"] == newest
        assert json.loads(reset["data"]) == {
            "reason": reason, "channels": list(channels), "last_event_id": cursor}
        # then the stream is live
        live = channel.publish("after the reset")
        event = sub.next_event()
        assert (event["id"], event["data"]) == (live, "after the reset")
        assert id_seq(live) > id_seq(newest)


def test_reset_for_an_unknown_epoch(news):
    news.channel.publish("x")
    check_reset_then_live(news, news.channel, "/events/news", "zzzzzzzz-1", "unknown-epoch")


@pytest.mark.parametrize("cursor", ["not-an-id", "12345", "-5", "abc-", "e-1x", "x-" + "9" * 19])
def test_reset_for_a_malformed_cursor(news, cursor):
    news.channel.publish("x")
    check_reset_then_live(news, news.channel, "/events/news", cursor, "malformed-cursor")


def test_reset_for_a_cursor_from_the_future(news):
    newest = news.channel.publish("x")
    epoch = newest.rpartition("-")[0]
    future = f"{epoch}-{id_seq(newest) + 1000}"
    check_reset_then_live(news, news.channel, "/events/news", future, "stale-cursor")


def test_reset_for_a_cursor_older_than_history(serve):
    app = channel_app(history=10)
    server = serve(app, heartbeat_seconds=0)
    channel = app.hub.channels["news"]
    old = channel.publish("old")
    for i in range(100):  # trimming is lazy (FrameLog._trim): this forces at least one trim
        channel.publish(i)
    wait_for(lambda: server.call(lambda: channel.complete_after) > id_seq(old),
             what="the history to be trimmed past the cursor")
    check_reset_then_live(server, channel, "/events/news", old, "stale-cursor")
    # A cursor still inside the history replays normally.
    events = server.call(channel.events)
    assert len(events) >= 10
    kept = events[-10][0]
    with subscribe(server.address, "/events/news", last_event_id=kept) as sub:
        assert [e["id"] for e in sub.events(9)] == [e[0] for e in events[-9:]]


def test_reset_over_several_topics_names_only_the_stale_ones(serve):
    app = App()
    a = app.channel("a", history=5)
    b = app.channel("b", history=1000)

    @app.get("/events")
    def events(request):
        return app.subscribe(request, *request.query_all("topic"))

    server = serve(app, heartbeat_seconds=0)
    cursor = b.publish("b0")
    b_missed = [b.publish(f"b{i}") for i in range(1, 4)]
    for i in range(100):
        a.publish(i)
    wait_for(lambda: server.call(lambda: a.complete_after) > id_seq(cursor),
             what="channel a trimmed past the cursor")
    newest = server.call(lambda: a.last_id)
    with subscribe(server.address, "/events?topic=a&topic=b", last_event_id=cursor) as sub:
        reset = sub.next_event()
        assert reset["raw"] == reset_frame(newest, "stale-cursor", ["a"], cursor)
        # b still has everything after the cursor: it is replayed
        assert [e["id"] for e in sub.events(3)] == b_missed


# -- several topics on one connection -------------------------------------------------------
@pytest.fixture
def topics(serve):
    app = channel_app(names=("a", "b", "c"))
    server = serve(app, heartbeat_seconds=0)
    server.a, server.b, server.c = (app.hub.channels[n] for n in "abc")
    return server


def test_two_topics_merged_in_id_order(topics):
    a, b, c = topics.a, topics.b, topics.c
    with subscribe(topics.address, "/events?topic=a&topic=b") as both, \
            subscribe(topics.address, "/events/a") as only_a:
        expected = []
        for i in range(10):  # interleaved, from this thread
            channel = (a, b)[i % 2]
            expected.append((channel.publish(f"{channel.name}{i}"), f"{channel.name}{i}"))
        c.publish("not subscribed")
        # several in one loop turn (one handler call)
        burst = [["a", "x1"], ["b", "y1"], ["b", "y2"], ["a", "x2"], ["c", "z"], ["b", "y3"]]
        ids = post_json(topics.address, "/burst", burst)["ids"]
        expected += [(i, data) for i, (name, data) in zip(ids, burst, strict=True)
                     if name != "c"]
        got = both.events(len(expected))
        assert [(e["id"], e["data"]) for e in got] == expected
        assert_increasing([e["id"] for e in got])
        a_only = [(i, d) for i, d in expected if d.startswith(("a", "x"))]
        got_a = only_a.events(len(a_only))
        assert [(e["id"], e["data"]) for e in got_a] == a_only
        # nothing else was queued for them: the next event is the next live one
        live = b.publish("last")
        assert both.next_event()["id"] == live


def test_last_event_id_across_two_topics(topics):
    a, b = topics.a, topics.b
    with subscribe(topics.address, "/events?topic=a&topic=b") as sub:
        first = a.publish("a0")
        assert sub.next_event()["id"] == first
    missed = []
    for i in range(12):
        channel = (b, a, a)[i % 3]
        missed.append(channel.publish(f"{channel.name}{i}"))
    with subscribe(topics.address, f"/events?topic=b&topic=a&last_event_id={first}") as sub:
        assert [e["id"] for e in sub.events(len(missed))] == missed
        live = [b.publish("b-live"), a.publish("a-live")]
        assert [e["id"] for e in sub.events(2)] == live


def test_unknown_topic_is_a_404(topics):
    for path in ("/events?topic=nope", "/events?topic=a&topic=nope", "/events/nope"):
        with SSESubscriber(topics.address, path, expect_status=404) as sub:
            assert b"nope" in sub.response.body
    assert subscriber_count(topics, topics.a) == 0


def test_subscribe_drains_pending_publishes_of_other_threads_first(serve):
    """Bug: a publish from another thread waits in ``Channel._pending`` until the loop
    drains it. ``Hub.subscribe`` does not drain the channels' pending frames, so a multi-topic
    subscription that starts (with a cursor) while topic a still has a pending frame and
    topic b already has a newer frame replays b's newer frame first, and a's older one
    after it: out of id order (and a browser's Last-Event-ID then points before an event it
    has, which a reconnect replays again)."""
    app = App()
    a = app.channel("a")
    b = app.channel("b")
    published = []

    @app.get("/race")
    def race(request):
        # a publish from a worker thread (a1), then one from the loop thread (b2), while
        # this handler runs: both are published before the client subscribes
        worker = threading.Thread(target=lambda: published.append(a.publish("a1")))
        worker.start()
        worker.join(TIMEOUT)
        published.append(b.publish("b2"))
        return app.subscribe(request, a, b)

    server = serve(app, heartbeat_seconds=0)
    cursor = a.publish("a0")
    wait_for(lambda: server.call(lambda: a.last_id) == cursor, what="a0 in the history")
    with subscribe(server.address, f"/race?last_event_id={cursor}") as sub:
        got = sub.events(2)
        assert [e["id"] for e in got] == published, [e["data"] for e in got]


# -- slow consumers -------------------------------------------------------------------------
class Reader(threading.Thread):
    """Reads events from a subscriber until one whose data is END."""

    def __init__(self, sub, base: int = 0) -> None:
        super().__init__(daemon=True)
        self.sub = sub
        self.base = base  # how many events were published before it started reading
        self.events: list = []
        self.error = None

    def run(self) -> None:
        try:
            while True:
                event = self.sub.next_event()
                if event["data"] == "END":
                    return
                self.events.append(event)
        except BaseException as exc:  # reported by the test
            self.error = exc


class SlowConsumerScene:
    """Three subscribers that read everything (in threads), one that reads one event and
    then stops; ``publish`` paces itself on the fast readers (the test is about the slow
    one, not about outrunning Python threads)."""

    HISTORY, BUDGET, SIZE = 150, 96 * 1024, 2000

    def __init__(self, serve) -> None:
        self.app = channel_app(history=self.HISTORY, budget_bytes=self.BUDGET)
        self.server = serve(self.app, heartbeat_seconds=0, high_water_bytes=8192,
                            low_water_bytes=2048)
        self.channel = self.app.hub.channels["news"]
        address = self.server.address
        self.fast = [subscribe(address, "/events/news") for _ in range(3)]
        # The kernel would otherwise grow the server's send buffer to megabytes for the slow
        # client; a connection accepted from now on inherits a small, fixed one (Linux).
        self.server.server.listener.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF,
                                                    16384)
        self.slow = subscribe(address, "/events/news", rcvbuf=4096)
        self.readers = [Reader(sub) for sub in self.fast]
        for reader in self.readers:
            reader.start()
        self.published: list = []
        self.publish(1)
        self.first = self.slow.next_event()  # it reads one event, then stops reading
        assert self.first["id"] == self.published[0][0]
        while self.subscriber_count() != 3:
            assert len(self.published) < self.HISTORY - 10, "the slow one was never dropped"
            self.publish(5)

    def subscriber_count(self) -> int:
        return subscriber_count(self.server, self.channel)

    def publish(self, n: int) -> None:
        for _ in range(n):
            data = f"{len(self.published):06d}" + "x" * self.SIZE
            self.published.append((self.channel.publish(data), data))
        wait_for(lambda: all(r.base + len(r.events) >= len(self.published) or r.error
                             for r in self.readers), what="the fast readers to keep up")

    def slow_last_id(self) -> str:
        """What the dropped client read until EOF; the id of its last whole event."""
        held = bytes(self.slow.text) + self.slow.client.read_to_eof()
        assert self.slow.client.eof
        self.slow.close()
        return last_complete_id(held, default=self.first["id"])

    def finish(self) -> None:
        """END for the readers; each must have had every event exactly once, in order."""
        self.channel.publish("END")
        for reader in self.readers:
            reader.join(TIMEOUT)
            assert reader.error is None, reader.error
            assert [(e["id"], e["data"]) for e in reader.events] == \
                self.published[reader.base:]

    def close(self) -> None:
        for sub in self.fast:
            sub.close()
        self.slow.close()


@pytest.fixture
def slow_scene(serve, server_log):
    scene = SlowConsumerScene(serve)
    scene.log = server_log
    yield scene
    scene.close()


def test_slow_consumer_is_dropped_the_others_get_everything(slow_scene):
    scene = slow_scene
    # The server closed it, and said so naming the client and the channel.
    port = scene.slow.client.local_port
    records = scene.log.get_records("setup") + scene.log.records  # dropped in the fixture
    lines = [r.getMessage() for r in records if "slow consumer" in r.getMessage()]
    assert any(f"127.0.0.1:{port} - slow consumer" in line and "news" in line
               for line in lines), lines
    scene.slow_last_id()  # reads to EOF
    # The buffer no longer holds its lag: over more than a history's worth of publishes
    # it stays within history + budget bytes.
    frame_size = max(len(frame_of(i, d)) for i, d in scene.published)
    channel = scene.channel
    for _ in range(scene.HISTORY // 5 + 10):
        scene.publish(5)
        length = scene.server.call(lambda: channel.frames.end - channel.frames.base)
        assert length <= scene.HISTORY * frame_size + scene.BUDGET, length
    scene.finish()


def test_dropped_slow_consumer_catches_up_from_history(slow_scene):
    """Bug: the reconnect's replay (more than ``budget_bytes`` behind, which a dropped
    client always nearly is) counts against the budget in ``Subscriber.start``: the new
    connection is dropped at once, before its response head is sent (the client sees EOF
    and nothing else), so a dropped client can never catch up."""
    scene = slow_scene
    last_seen = scene.slow_last_id()
    assert id_seq(last_seen) >= id_seq(scene.first["id"])
    missed = [i for i, _ in scene.published if id_seq(i) > id_seq(last_seen)]
    with subscribe(scene.server.address, "/events/news", last_event_id=last_seen) as again:
        assert [e["id"] for e in again.events(len(missed))] == missed
        reader = Reader(again, base=len(scene.published))
        reader.start()
        scene.readers.append(reader)
        scene.publish(10)
        scene.finish()


def test_replay_longer_than_the_budget_is_sent(serve):
    """Bug (minimal form of the one above): channel(history=100, budget_bytes=10_000),
    20 events of 1000 bytes, then a subscriber with Last-Event-ID = the first id.
    Expected: 200 and the 19 later events. Got: the connection closed without a byte
    (a "slow consumer" warning in the log)."""
    app = channel_app(history=100, budget_bytes=10_000)
    server = serve(app, heartbeat_seconds=0)
    channel = app.hub.channels["news"]
    ids = [channel.publish("x" * 1000) for _ in range(20)]
    with subscribe(server.address, "/events/news", last_event_id=ids[0]) as sub:
        assert [e["id"] for e in sub.events(19)] == ids[1:]


def last_complete_id(raw: bytes, default: str) -> str:
    """The id of the last whole event in ``raw`` (chunk framing included or not)."""
    complete = []
    for line_start in range(len(raw)):
        if raw.startswith(b"id: ", line_start) and (line_start == 0
                                                     or raw[line_start - 1:line_start] == b"\n"):
            end = raw.find(b"\n", line_start)
            if end >= 0 and raw.find(b"\n\n", end) >= 0:
                complete.append(raw[line_start + 4:end].decode())
    return complete[-1] if complete else default


# -- publishing from other threads ----------------------------------------------------------
def test_many_threads_publishing_every_subscriber_gets_every_event_once(news):
    channel = news.channel
    subs = [subscribe(news.address, "/events/news") for _ in range(4)]
    threads_count, per_thread = 8, 50
    returned: dict = {}
    start = threading.Barrier(threads_count)

    def worker(t: int) -> None:
        start.wait(TIMEOUT)
        ids = []
        for i in range(per_thread):
            event_id = channel.publish({"thread": t, "i": i})
            assert isinstance(event_id, str)
            ids.append(event_id)
        returned[t] = ids

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(threads_count)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(TIMEOUT)
        assert len(returned) == threads_count
        for ids in returned.values():
            assert_increasing(ids)  # each thread's ids grow with its publishes
        by_id = {event_id: json.dumps({"thread": t, "i": i}, separators=(",", ":"))
                 for t, ids in returned.items() for i, event_id in enumerate(ids)}
        total = threads_count * per_thread
        assert len(by_id) == total
        for sub in subs:
            got = sub.events(total)
            ids = [e["id"] for e in got]
            assert_increasing(ids)
            assert set(ids) == set(by_id)
            assert all(by_id[e["id"]] == e["data"] for e in got)
        events = news.call(channel.events)
        assert [(i, d) for i, _, d in events] == sorted(by_id.items(), key=lambda p: id_seq(p[0]))
        assert news.call(lambda: channel.last_id) == max(by_id, key=id_seq)
    finally:
        for sub in subs:
            sub.close()


# -- heartbeats, disconnects, drain, HTTP/1.0 -----------------------------------------------
def test_heartbeat_on_an_idle_subscription(serve):
    app = channel_app()
    server = serve(app, heartbeat_seconds=1)
    channel = app.hub.channels["news"]
    with subscribe(server.address, "/events/news") as sub:
        assert sub.next_frame() == b": ping\n\n"
        live = channel.publish("after a ping")
        assert sub.next_event()["id"] == live


def test_disconnect_removes_the_subscriber(topics):
    a, b = topics.a, topics.b
    subs = [subscribe(topics.address, "/events/a") for _ in range(3)]
    multi = subscribe(topics.address, "/events?topic=a&topic=b")
    assert subscriber_count(topics, a) == 4 and subscriber_count(topics, b) == 1
    a.publish("pending for everyone")  # some of them close with unread bytes
    subs[0].close()
    subs[1].client.sock.shutdown(2)  # SHUT_RDWR
    subs[1].close()
    multi.close()
    wait_for(lambda: subscriber_count(topics, a) == 1 and subscriber_count(topics, b) == 0,
             what="the subscribers to go")
    assert subs[2].next_event()["data"] == "pending for everyone"
    subs[2].close()
    wait_for(lambda: subscriber_count(topics, a) == 0, what="the last subscriber to go")
    wait_for(lambda: topics.connection_count() == 0, what="the connections to close")
    a.publish("nobody listens")  # and publishing still works


def test_graceful_shutdown_ends_subscriptions_with_the_last_chunk(topics):
    single = subscribe(topics.address, "/events/a")
    multi = subscribe(topics.address, "/events?topic=a&topic=b")
    event_id = topics.a.publish("bye")
    assert single.next_event()["id"] == event_id
    assert multi.next_event()["id"] == event_id
    topics.shutdown()
    for sub in (single, multi):
        # the drain's retry line (the reconnection delay), then the last chunk
        assert re.fullmatch(rb"retry: \d+\n", sub.rest_until_end())
        assert sub.ended
        assert sub.client.read_to_eof() == b""
        sub.close()
    topics.thread.join(TIMEOUT)
    assert not topics.thread.is_alive() and topics.exit_code == 0


def test_drain_delivers_what_was_published_before_it(news):
    """Bug (minor): a publish made just before the drain starts (same loop turn, or a
    cross-thread publish not drained yet) is never sent: ``Subscriber.finish``
    unsubscribes and writes the last chunk without delivering the log's pending frames,
    though the subscriber was registered when ``publish`` returned the id."""
    channel = news.channel
    with subscribe(news.address, "/events/news") as sub:
        event_id = news.call(lambda: (channel.publish("last words"), news.server.shutdown())[0])
        ended = sub.rest_until_end()  # the drain's retry line, then the event
        assert re.fullmatch(rb"retry: \d+\n" + re.escape(frame_of(event_id, "last words")),
                            ended), ended
    news.thread.join(TIMEOUT)


def test_http_10_subscriber_is_close_delimited(news):
    channel = news.channel
    sub = SSESubscriber(news.address, "/events/news", version="1.0")
    with sub:
        assert not sub.chunked
        assert sub.response.header(b"Transfer-Encoding") is None
        assert sub.response.header(b"Content-Length") is None
        assert sub.response.header(b"Connection") == b"close"
        sub.read_subscribed()
        ids = [channel.publish("one"), channel.publish({"two": 2}, event="e")]
        assert [e["raw"] for e in sub.events(2)] == [
            frame_of(ids[0], "one"), frame_of(ids[1], {"two": 2}, "e")]
        news.shutdown()
        # the drain's retry line; EOF ends it: no chunk framing at all
        assert re.fullmatch(rb"retry: \d+\n", sub.rest_until_end())
    news.thread.join(TIMEOUT)


def test_head_of_a_subscription_has_no_body_and_no_subscriber(news):
    resp = request(news.address, b"HEAD /events/news HTTP/1.1\r\nHost: t\r\n"
                                 b"Connection: close\r\n\r\n", head_only=True)
    assert resp.status == 200
    assert resp.header(b"Content-Type") == b"text/event-stream; charset=utf-8"
    assert subscriber_count(news, news.channel) == 0


# -- history=0 ------------------------------------------------------------------------------
NO_HISTORY_APP = """
from conduit import App

app = App()
live = app.channel("live", history=0)


@app.get("/events")
def events(request):
    return live.subscribe(request)


@app.post("/publish")
def publish(request):
    return {"id": live.publish(request.body.decode())}


@app.get("/stats")
def stats(request):
    return {"retained": len(live.frames.seqs), "subscribers": live.subscriber_count}
"""


def test_channel_without_history_delivers_live_events(conduit_process, app_file):
    """Bug: ``history=0`` is accepted by Channel, but ``FrameLog._trim`` reads
    ``starts[len(seqs) - history]``, one past the end. Pure twin: with no subscriber,
    ``publish`` raises IndexError (the POST answers 500); with one, every flush logs the
    IndexError and the buffer is never trimmed (it grows without bound). Compiled twin: an
    out-of-bounds read, then a memmove of a garbage length: the process crashes (SIGSEGV).
    (Run as a subprocess so that a crash fails this test only.)"""
    server = conduit_process(app_file(NO_HISTORY_APP), "--heartbeat-seconds", "0",
                             "--no-access-log")

    def publish(data: str):
        body = data.encode()
        try:
            return request(server.address, b"POST /publish HTTP/1.1\r\nHost: t\r\n"
                           b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(body)
                           + body)
        except (OSError, AssertionError) as exc:
            code = server.proc.poll()
            raise AssertionError(f"no answer ({exc}); the server's exit status: {code}\n"
                                 + server.stderr()) from exc

    with subscribe(server.address, "/events") as sub:
        for i in range(200):
            resp = publish(f"live {i}")
            assert resp.status == 200, resp
            assert sub.next_event()["id"] == json.loads(resp.body)["id"]
        stats = json.loads(get_ok(server.address, "/stats").body)
        assert stats["retained"] < 200, stats  # trimmed (lazily), not kept forever
    wait_for(lambda: json.loads(get_ok(server.address, "/stats").body)["subscribers"] == 0,
             what="the subscriber to go")
    resp = publish("nobody listens")
    assert resp.status == 200, resp
    assert "Traceback" not in server.stderr(), server.stderr()
