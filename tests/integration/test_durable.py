"""Durable channels over real sockets: history that survives a graceful restart and a
``kill -9`` of ``python -m conduit run``, ids that are never reused, the epoch kept in
hub.json, and the reset event for cursors a restart made meaningless."""

from __future__ import annotations

import json
import signal
import threading

import pytest
from integration_helpers import (
    TIMEOUT,
    SSESubscriber,
    get_ok,
    id_seq,
    post_json,
    subscribe,
    wait_for,
)

from conduit import App, SSEEvent

# Data of every shape: a dict (compact JSON), text with line ends, non-ASCII, empty.
PAYLOADS = [
    ({"type": "DocumentSaved", "data": {"id": "doc1"}}, None),
    ("two\nlines", "note"),
    ("crlf\r\nand cr\rend", None),
    ("é ✓ 日本", "unicode"),
    ("", None),
]

DURABLE_APP = """
from conduit import App

app = App({data_dir})
docs = app.channel("docs", history={history}, durable=True, fsync={fsync!r})


@app.get("/events")
def events(request):
    return docs.subscribe(request)


@app.post("/publish")
def publish(request):
    body = request.json()
    return {{"id": docs.publish(body["data"], event=body.get("event"))}}


@app.get("/history")
def history(request):
    return {{"epoch": app.hub.epoch, "events": [list(e) for e in docs.events()]}}
"""


def durable_source(data_dir=None, history: int = 1000, fsync="never") -> str:
    """The app module; without ``data_dir`` it uses CONDUIT_DATA_DIR."""
    return DURABLE_APP.format(data_dir=f"data_dir={str(data_dir)!r}" if data_dir else "",
                              history=history, fsync=fsync)


def frame_of(event_id: str, data, event=None) -> bytes:
    return SSEEvent(data, event=event, id=event_id).encode()


def history_of(address) -> dict:
    return json.loads(get_ok(address, "/history").body)


def hub_epoch(data_dir) -> str:
    return json.loads((data_dir / "hub.json").read_text())["epoch"]


def start(conduit_process, app_path):
    return conduit_process(app_path, "--heartbeat-seconds", "0", "--no-access-log")


# -- python -m conduit run ------------------------------------------------------------------
def test_events_survive_a_graceful_restart(conduit_process, app_file, tmp_path):
    data_dir = tmp_path / "data"
    app_path = app_file(durable_source(data_dir, fsync="always"))
    first = start(conduit_process, app_path)
    cursor = post_json(first.address, "/publish", {"data": "before"})["id"]
    with subscribe(first.address, "/events", last_event_id=cursor) as live:
        sent = []
        for data, event in PAYLOADS * 2:
            body = {"data": data, "event": event}
            sent.append((post_json(first.address, "/publish", body)["id"], data, event))
        live_frames = [live.next_frame() for _ in sent]
    assert live_frames == [frame_of(*item) for item in sent]
    epoch = hub_epoch(data_dir)
    assert all(i.rpartition("-")[0] == epoch for i, _, _ in sent)
    first.signal(signal.SIGTERM)
    assert first.wait() == 0

    second = start(conduit_process, app_path)
    assert hub_epoch(data_dir) == epoch
    assert history_of(second.address)["epoch"] == epoch
    with subscribe(second.address, "/events", last_event_id=cursor) as sub:
        # the same frames, byte for byte, then live
        assert [sub.next_frame() for _ in sent] == live_frames
        after = post_json(second.address, "/publish", {"data": "after"})["id"]
        event = sub.next_event()
        assert (event["id"], event["data"]) == (after, "after")
    assert after.rpartition("-")[0] == epoch
    assert id_seq(after) > max(id_seq(i) for i, _, _ in sent)
    # A cursor equal to the newest id before the restart replays nothing.
    with subscribe(second.address, "/events", last_event_id=sent[-1][0]) as sub:
        assert sub.next_event()["id"] == after


def test_acknowledged_events_survive_kill_9(conduit_process, app_file, tmp_path,
                                            monkeypatch):
    data_dir = tmp_path / "data-from-env"
    monkeypatch.setenv("CONDUIT_DATA_DIR", str(data_dir))
    app_path = app_file(durable_source())
    first = start(conduit_process, app_path)
    cursor = post_json(first.address, "/publish", {"data": "before"})["id"]
    acked: list = []
    stop = threading.Event()

    def publisher(worker: int) -> None:
        i = 0
        while not stop.is_set():
            data = f"w{worker}-{i}"
            try:
                event_id = post_json(first.address, "/publish", {"data": data})["id"]
            except (OSError, AssertionError):  # the process is gone
                return
            acked.append((event_id, data))  # acknowledged by a 2xx
            i += 1

    workers = [threading.Thread(target=publisher, args=(w,), daemon=True) for w in range(3)]
    for worker in workers:
        worker.start()
    wait_for(lambda: len(acked) >= 60, what="60 acknowledged publishes")
    first.signal(signal.SIGKILL)  # while publishes are in flight
    first.wait()
    stop.set()
    for worker in workers:
        worker.join(TIMEOUT)
    assert (data_dir / "hub.json").exists()
    epoch = hub_epoch(data_dir)
    acked_before = {i: d for i, d in acked}
    assert len(acked_before) == len(acked)

    second = start(conduit_process, app_path)
    assert hub_epoch(data_dir) == epoch
    restored = history_of(second.address)["events"]
    restored_ids = [e[0] for e in restored]
    assert restored_ids[0] == cursor
    # Every acknowledged event is there (an unacknowledged one may be too), data intact.
    for event_id in acked_before:
        assert event_id in restored_ids, event_id
    by_id = {e[0]: e[2] for e in restored}
    assert all(by_id[i] == d for i, d in acked_before.items())
    with subscribe(second.address, "/events", last_event_id=cursor) as sub:
        replayed = sub.events(len(restored) - 1)
        assert [e["id"] for e in replayed] == restored_ids[1:]
        seqs = [id_seq(e["id"]) for e in replayed]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
        # ids after the restart are above every id before it: never reused
        new = post_json(second.address, "/publish", {"data": "after"})["id"]
        assert new.rpartition("-")[0] == epoch
        assert id_seq(new) > max(id_seq(i) for i in restored_ids)
        assert sub.next_event()["id"] == new


# -- restarts in process (same data directory, a new App each time) -------------------------
def durable_app(data_dir, history: int = 1000, in_memory_first: bool = False) -> App:
    app = App(data_dir=str(data_dir))
    if in_memory_first:
        app.channel("live", history=1000)  # not durable, created before the durable one
    app.channel("docs", history=history, durable=True)
    if not in_memory_first:
        app.channel("live", history=1000)

    @app.get("/events/{name}")
    def events(request, name):
        return app.hub.channels[name].subscribe(request)

    return app


def restart(serve, old, app):
    old.stop()
    return serve(app, heartbeat_seconds=0)


def reset_of(sub) -> dict:
    event = sub.next_event()
    assert event["event"] == "reset", event
    return json.loads(event["data"]) | {"id": event["id"]}


def test_ids_keep_growing_and_the_epoch_persists_over_restarts(serve, tmp_path):
    data_dir = tmp_path / "data"
    server = None
    all_ids = []
    epochs = set()
    for _ in range(3):
        app = durable_app(data_dir)
        server = serve(app, heartbeat_seconds=0) if server is None else \
            restart(serve, server, app)
        docs = app.hub.channels["docs"]
        ids = [docs.publish(i) for i in range(5)]
        assert all(id_seq(i) > max(map(id_seq, all_ids), default=0) for i in ids)
        all_ids += ids
        epochs.add(app.hub.epoch)
        # everything published so far is in the history, in order
        assert [e[0] for e in server.call(docs.events)] == all_ids
    assert len(epochs) == 1 and hub_epoch(data_dir) in epochs
    # a cursor from the first run replays everything after it, across both restarts
    with subscribe(server.address, "/events/docs", last_event_id=all_ids[2]) as sub:
        assert [e["id"] for e in sub.events(len(all_ids) - 3)] == all_ids[3:]


def test_a_cursor_older_than_the_restored_history_gets_a_reset(serve, tmp_path):
    data_dir = tmp_path / "data"
    app = durable_app(data_dir, history=5)
    server = serve(app, heartbeat_seconds=0)
    ids = [app.hub.channels["docs"].publish(i) for i in range(12)]
    app = durable_app(data_dir, history=5)
    server = restart(serve, server, app)
    docs = app.hub.channels["docs"]
    assert [e[0] for e in server.call(docs.events)] == ids[-5:]
    with subscribe(server.address, "/events/docs", last_event_id=ids[6]) as sub:
        assert [e["id"] for e in sub.events(5)] == ids[7:]
    with subscribe(server.address, "/events/docs", last_event_id=ids[5]) as sub:
        reset = reset_of(sub)
        assert reset["reason"] == "stale-cursor" and reset["channels"] == ["docs"]
        new = docs.publish("after")
        assert sub.next_event()["id"] == new


def test_in_memory_app_cursor_from_before_a_restart_gets_a_reset(serve):
    def make():
        app = App()
        app.channel("news")

        @app.get("/events")
        def events(request):
            return app.hub.channels["news"].subscribe(request)

        return app

    app = make()
    server = serve(app, heartbeat_seconds=0)
    cursor = [app.hub.channels["news"].publish(i) for i in range(3)][0]
    app = make()
    server = restart(serve, server, app)
    news = app.hub.channels["news"]
    newest = news.publish("first of the new process")
    # Ids of the new process are never taken for the old ones: a new epoch.
    assert newest.rpartition("-")[0] != cursor.rpartition("-")[0]
    with SSESubscriber(server.address, "/events", headers=[("Last-Event-ID", cursor)]) as sub:
        assert sub.response.status == 200
        sub.read_subscribed()
        reset = reset_of(sub)
        assert reset == {"reason": "unknown-epoch", "channels": ["news"],
                         "last_event_id": cursor, "id": newest}
        live = news.publish("live")
        assert sub.next_event()["id"] == live


@pytest.mark.parametrize("in_memory_first", [False, True])
def test_in_memory_channel_of_a_durable_app_resets_old_cursors(serve, tmp_path,
                                                               in_memory_first):
    """Bug (in_memory_first=True): a durable app keeps its epoch over restarts, so an
    in-memory channel's cursor from before a restart must get a reset (its events are
    gone). A channel created *after* the durable one starts complete after the restored
    sequence and does; one created *before* it gets ``complete_after`` 0 (taken before
    ``make_durable`` moved the sequence), so the old cursor is accepted and the events
    published between it and the restart are silently skipped."""
    data_dir = tmp_path / "data"
    app = durable_app(data_dir, in_memory_first=in_memory_first)
    server = serve(app, heartbeat_seconds=0)
    live = app.hub.channels["live"]
    cursor = live.publish("seen")
    for i in range(3):
        live.publish(f"missed {i}")  # gone with the process
    app = durable_app(data_dir, in_memory_first=in_memory_first)
    server = restart(serve, server, app)
    assert app.hub.epoch == cursor.rpartition("-")[0]
    with subscribe(server.address, "/events/live", last_event_id=cursor) as sub:
        new = app.hub.channels["live"].publish("after the restart")
        reset = reset_of(sub)  # (without the bug's fix, the next event is the live one)
        assert reset["reason"] == "stale-cursor" and reset["channels"] == ["live"]
        assert sub.next_event()["id"] == new
