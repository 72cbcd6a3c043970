"""``--broker redis://...`` over real processes: conduit servers on one machine as a cluster
around a real redis-server (``conduit.app.redis_broker``).

What the README's "Scaling" section promises, checked end to end: a publish to any server
reaches the subscribers of every server once each, in one order, with the same ids;
Last-Event-ID resumes on any server (one channel or several); Redis down means 503 with
Retry-After for publishes while subscribers stay connected and then get everything
acknowledged; a conduit server killed with SIGKILL restarts with its history from Redis;
streams stay bounded and too-old cursors get the reset event; entries trimmed before a
server read them are a reset, never a silent gap; Redis that lost its data (or went back
to an older snapshot) means a new epoch and the reset event for old cursors. And an app
without a broker never imports redis.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from integration_helpers import (
    REPO_ROOT,
    ConduitProcess,
    id_seq,
    request,
    run_cli,
    subprocess_env,
    subscribe,
)

DEADLINE = 30.0  # generous: a loaded 2-core CI machine starts processes slowly
ATTACHED = r"broker redis://\S+ \(prefix \S+\): epoch (\w+)"

APP = '''
from conduit import App

app = App(data_dir={data_dir!r}{broker})
docs = app.channel("docs", history={history}, durable=True)
alerts = app.channel("alerts", history={history})


@app.get("/events/{{name}}")
def events(request, name):
    return app.subscribe(request, name)


@app.get("/feed")
def feed(request):
    return app.subscribe(request, *request.query_all("topic"))


@app.post("/publish/{{name}}")
def publish(request, name):
    body = request.json()
    return {{"id": app.hub.channels[name].publish(body["data"], event=body.get("event"))}}


@app.post("/bulk/{{name}}")
def bulk(request, name):
    channel = app.hub.channels[name]
    return {{"ids": [channel.publish({{"i": i}}) for i in range(int(request.query["n"]))]}}


@app.post("/many/{{name}}")
def many(request, name):
    channel = app.hub.channels[name]
    n = int(request.query["n"])
    return {{"ids": channel.publish_many([{{"i": i}} for i in range(n)], event="many")}}
'''


def write_app(tmp_path, history: int = 1000, broker: str | None = None):
    path = tmp_path / "scale_app.py"
    path.write_text(APP.format(data_dir=str(tmp_path / "data"), history=history,
                               broker=f", broker={broker!r}" if broker else ""))
    return path


@pytest.fixture
def app_path(tmp_path):
    return write_app(tmp_path)


# -- HTTP helpers ---------------------------------------------------------------------------
def post(address, path: str, value=None):
    body = json.dumps(value).encode() if value is not None else b""
    return request(address, f"POST {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
                   f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
                   .encode() + body)


def publish(address, name: str, data, event=None) -> str:
    resp = post(address, f"/publish/{name}", {"data": data, "event": event})
    assert resp.status == 200, resp
    return json.loads(resp.body)["id"]


def publish_retrying(address, name: str, data) -> str:
    """Publish until acknowledged (a client retrying after 503), within the deadline."""
    deadline = time.monotonic() + DEADLINE
    while True:
        resp = post(address, f"/publish/{name}", {"data": data})
        if resp.status == 200:
            return json.loads(resp.body)["id"]
        assert resp.status == 503, resp
        assert resp.header(b"Retry-After") == b"1", resp
        assert time.monotonic() < deadline, "publishing never succeeded again"
        time.sleep(0.05)


def bulk(address, name: str, n: int, route: str = "/bulk") -> list:
    resp = post(address, f"{route}/{name}?n={n}")
    assert resp.status == 200, resp
    return json.loads(resp.body)["ids"]


def epoch_of(event_id: str) -> str:
    return event_id.rpartition("-")[0]


def triples(events) -> list:
    return [(e["id"], e["event"], e["data"]) for e in events]


def until_closed(sub) -> list:
    """The events a subscriber gets until the server ends its connection."""
    events = []
    try:
        while True:
            events.append(sub.next_event())
    except (AssertionError, ConnectionResetError):
        return events


# -- one hub across servers -----------------------------------------------------------------
def test_publishes_on_any_server_reach_every_subscriber_once_in_one_order(
        redis_server, conduit_cluster, app_path):
    redis = redis_server()
    servers = conduit_cluster(app_path, redis.url, 3)
    assert len({server.epoch for server in servers}) == 1
    docs_subs = [subscribe(s.address, "/events/docs") for s in servers]
    feed_subs = [subscribe(s.address, "/feed?topic=docs&topic=alerts") for s in servers]
    acked: dict = {}
    errors: list = []

    def publisher(index, server):
        try:
            for k in range(20):
                name = ("docs", "alerts")[k % 2]
                data = {"server": index, "k": k}
                acked[publish(server.address, name, data, event=name)] = (name, data)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=publisher, args=(i, s)) for i, s in enumerate(servers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(DEADLINE)
    assert not errors, errors
    assert len(acked) == 60
    feeds = [triples(sub.events(60)) for sub in feed_subs]
    docs = [triples(sub.events(30)) for sub in docs_subs]
    # One order everywhere, the same ids, every acknowledged event once.
    assert feeds[0] == feeds[1] == feeds[2]
    assert docs[0] == docs[1] == docs[2]
    seqs = [id_seq(event_id) for event_id, _, _ in feeds[0]]
    assert seqs == sorted(seqs) and len(set(seqs)) == 60
    assert {event_id for event_id, _, _ in feeds[0]} == set(acked)
    for event_id, event, data in feeds[0]:
        assert (event, json.loads(data)) == acked[event_id]
    assert docs[0] == [t for t in feeds[0] if t[1] == "docs"]
    # Nothing more (no duplicate): the next event on every stream is this one.
    marker = publish(servers[1].address, "docs", "marker")
    for sub in docs_subs + feed_subs:
        assert sub.next_event()["id"] == marker


def test_last_event_id_resumes_on_another_server(redis_server, conduit_cluster, app_path):
    redis = redis_server()
    a, b = conduit_cluster(app_path, redis.url, 2)
    sub = subscribe(a.address, "/events/docs")
    feed = subscribe(a.address, "/feed?topic=docs&topic=alerts")
    ids = [publish((a, b)[i % 2].address, ("docs", "alerts")[i % 3 == 0], {"i": i})
           for i in range(12)]
    docs_ids = [event_id for i, event_id in enumerate(ids) if i % 3 != 0]
    seen = sub.events(3)
    sub.close()
    resumed = subscribe(b.address, "/events/docs", last_event_id=seen[-1]["id"])
    assert [e["id"] for e in resumed.events(len(docs_ids) - 3)] == docs_ids[3:]
    seen = feed.events(5)
    feed.close()
    resumed_feed = subscribe(b.address, "/feed?topic=alerts&topic=docs",
                             last_event_id=seen[-1]["id"])
    assert [e["id"] for e in resumed_feed.events(7)] == ids[5:]
    marker = publish(a.address, "alerts", "marker")
    assert resumed_feed.next_event()["id"] == marker  # no gap, no duplicate
    # A cursor read on another server a moment ago (maybe before this one's feed has it):
    # catch-up, never a reset.
    for i in range(5):
        fresh = publish(a.address, "docs", {"fresh": i})
        follow = subscribe(b.address, "/events/docs", last_event_id=fresh)
        after = publish(a.address, "docs", {"after": i})
        event = follow.next_event()
        assert (event["event"], event["id"]) == (None, after), event
        follow.close()


def test_publish_many_one_round_trip_per_lot_consecutive_ids(
        redis_server, conduit_cluster, app_path):
    redis = redis_server()
    a, b = conduit_cluster(app_path, redis.url, 2)
    subs = [subscribe(s.address, "/events/docs") for s in (a, b)]
    before = publish(b.address, "docs", "before")
    resp = post(a.address, "/many/docs?n=1200")  # three lots (PUBLISH_BATCH = 500)
    assert resp.status == 200, resp
    ids = json.loads(resp.body)["ids"]
    after = publish(b.address, "docs", "after")
    assert [id_seq(i) for i in ids] == list(range(id_seq(before) + 1, id_seq(before) + 1201))
    for sub in subs:
        events = sub.events(1202)
        assert [e["id"] for e in events] == [before, *ids, after]
        assert [json.loads(e["data"])["i"] for e in events[1:-1]] == list(range(1200))
        assert {e["event"] for e in events[1:-1]} == {"many"}


# -- faults -----------------------------------------------------------------------------------
def test_redis_down_publishes_get_503_subscribers_stay_and_catch_up(
        redis_server, conduit_cluster, app_path):
    redis = redis_server()
    servers = conduit_cluster(app_path, redis.url, 2, "--heartbeat-seconds", "1")
    subs = [subscribe(s.address, "/events/docs") for s in servers]
    acked = [publish(servers[i % 2].address, "docs", {"n": i}) for i in range(6)]
    redis.kill()
    for server in servers:
        resp = post(server.address, "/publish/docs", {"data": "lost?"})
        assert resp.status == 503, resp
        assert resp.header(b"Retry-After") == b"1"
        assert b"retry" in resp.body
    received = [[] for _ in subs]
    for sub, events in zip(subs, received, strict=True):
        while True:  # still connected: heartbeats arrive while Redis is down
            event = sub.next_event(skip_comments=False)
            if event["data"] is None and "ping" in event["comments"]:
                break
            events.append(event)
    redis.start()  # same data directory: appendonly with appendfsync always
    acked += [publish_retrying(servers[i % 2].address, "docs", {"n": 6 + i})
              for i in range(6)]
    assert len({epoch_of(event_id) for event_id in acked}) == 1
    for sub, events in zip(subs, received, strict=True):
        events += sub.events(len(acked) - len(events))
        assert [e["id"] for e in events] == acked
        assert [json.loads(e["data"])["n"] for e in events] == list(range(12))
    for server in servers:
        assert "lost Redis" in server.stderr()


def test_killed_conduit_server_restarts_with_everything_acknowledged(
        redis_server, conduit_cluster, app_path, tmp_path):
    redis = redis_server()
    [first] = conduit_cluster(app_path, redis.url, 1)
    ids = [publish(first.address, "docs", {"n": i}, event="saved") for i in range(10)]
    first.kill()  # SIGKILL
    [second] = conduit_cluster(app_path, redis.url, 1)
    assert second.epoch == first.epoch
    sub = subscribe(second.address, "/events/docs", last_event_id=ids[0])
    assert [(e["id"], e["event"], json.loads(e["data"])["n"]) for e in sub.events(9)] == \
        [(event_id, "saved", n) for n, event_id in enumerate(ids) if n]
    sub.close()
    # Redis crashes too (appendfsync always): still nothing acknowledged is lost.
    second.kill()
    redis.kill()
    redis.start()
    [third] = conduit_cluster(app_path, redis.url, 1)
    assert third.epoch == first.epoch
    sub = subscribe(third.address, "/events/docs", last_event_id=ids[0])
    assert [e["id"] for e in sub.events(9)] == ids[1:]
    # With a broker, a durable channel keeps no local log: Redis is its history.
    data_dir = tmp_path / "data"
    assert not data_dir.exists() or not any(data_dir.iterdir())


def test_streams_stay_bounded_and_too_old_cursors_get_the_reset_event(
        redis_server, conduit_cluster, tmp_path):
    from conduit.app.redis_broker import MIN_STREAM_ENTRIES

    app_path = write_app(tmp_path, history=20)
    redis = redis_server()
    [a] = conduit_cluster(app_path, redis.url, 1)
    live = subscribe(a.address, "/events/alerts")
    n = MIN_STREAM_ENTRIES + 2000
    ids = bulk(a.address, "alerts", n, "/many")  # one request: a's loop is busy all along ...
    assert [e["id"] for e in live.events(n)] == ids  # ... and its feed kept up: no gap
    live.close()
    xlen = int(redis.command("XLEN", "conduit:channel:alerts")[1:])
    # MAXLEN ~ trims whole nodes (100 entries by default): a little above the bound.
    assert MIN_STREAM_ENTRIES <= xlen <= MIN_STREAM_ENTRIES + 200, xlen
    [b] = conduit_cluster(app_path, redis.url, 1)  # restores exactly the last 20
    sub = subscribe(b.address, "/events/alerts", last_event_id=ids[-21])
    assert [e["id"] for e in sub.events(20)] == ids[-20:]
    # a has them all too (its feed may still be delivering: a newer cursor catches up)
    assert subscribe(a.address, "/events/alerts", last_event_id=ids[-2]).next_event()["id"] \
        == ids[-1]
    for server in (a, b):
        stale = subscribe(server.address, "/events/alerts", last_event_id=ids[-22 - 500])
        reset = stale.next_event()
        assert (reset["event"], reset["id"]) == ("reset", ids[-1])
        assert json.loads(reset["data"])["reason"] == "stale-cursor"


def test_entries_trimmed_before_a_server_read_them_are_a_reset(
        redis_server, conduit_cluster, app_path):
    from conduit.app.redis_broker import MIN_STREAM_ENTRIES

    redis = redis_server()
    a, b = conduit_cluster(app_path, redis.url, 2)
    sub = subscribe(b.address, "/events/alerts")
    first = publish(a.address, "alerts", "first")
    assert sub.next_event()["id"] == first
    b.proc.send_signal(signal.SIGSTOP)  # b's feed cannot read while more than a stream's
    try:                                # bound goes by
        ids = bulk(a.address, "alerts", MIN_STREAM_ENTRIES + 2000, "/many")
    finally:
        b.proc.send_signal(signal.SIGCONT)
    # b got what it could read in order, then its subscriber was disconnected: it missed
    # events, and a silent gap is never an option.
    events = until_closed(sub)
    got = [e["id"] for e in events]
    assert got == ids[:len(got)]
    assert len(got) < len(ids)
    b.wait_for_line(r"channel alerts: events up to \d+ were trimmed", timeout=DEADLINE)
    again = subscribe(b.address, "/events/alerts", last_event_id=got[-1] if got else first)
    reset = again.next_event()
    assert reset["event"] == "reset"
    assert json.loads(reset["data"])["reason"] == "stale-cursor"


def test_redis_restarted_without_its_data_means_a_new_epoch(
        redis_server, conduit_cluster, app_path):
    redis = redis_server()
    a, b = conduit_cluster(app_path, redis.url, 2)
    old = publish(a.address, "docs", "before")
    live = subscribe(a.address, "/events/docs", last_event_id=old)
    redis.kill()
    redis.start(wipe=True)
    new_b = publish_retrying(b.address, "docs", "after on b")
    new_a = publish_retrying(a.address, "docs", "after on a")
    assert epoch_of(new_a) == epoch_of(new_b) != epoch_of(old)
    assert id_seq(new_b) == 1  # the new epoch starts over
    until_closed(live)  # subscribers of the old epoch were disconnected ...
    tails = []
    for server in (a, b):  # ... and get the reset event when they come back
        sub = subscribe(server.address, "/events/docs", last_event_id=old)
        reset = sub.next_event()
        assert (reset["event"], epoch_of(reset["id"])) == ("reset", epoch_of(new_a))
        assert json.loads(reset["data"])["reason"] == "unknown-epoch"
        tails.append(publish(b.address, "docs", "tail"))
        # After the reset: every event newer than its id (this server's feed may still
        # have been delivering new_b and new_a when it answered).
        expected = [i for i in [new_b, new_a, *tails] if id_seq(i) > id_seq(reset["id"])]
        assert [e["id"] for e in sub.events(len(expected))] == expected
        resumed = subscribe(server.address, "/events/docs", last_event_id=new_b)
        assert [e["id"] for e in resumed.events(1 + len(tails))] == [new_a, *tails]


def test_redis_back_from_an_older_snapshot_means_a_new_epoch(
        redis_server, conduit_cluster, app_path):
    redis = redis_server()
    [a] = conduit_cluster(app_path, redis.url, 1)
    ids = [publish(a.address, "docs", {"n": i}) for i in range(3)]
    redis.kill()
    snapshot = redis.data_dir.parent / "snapshot"
    shutil.copytree(redis.data_dir, snapshot)
    redis.start()
    ids += [publish_retrying(a.address, "docs", {"n": 3 + i}) for i in range(3)]
    redis.kill()
    shutil.rmtree(redis.data_dir)
    shutil.copytree(snapshot, redis.data_dir)  # Redis forgets the last 3 acknowledged
    redis.start()
    again = publish_retrying(a.address, "docs", {"n": 6})
    # Its sequence went back to 3: reusing ids 4.. under the old epoch would make clients
    # that saw them skip these events. A new epoch instead.
    assert epoch_of(again) != epoch_of(ids[0])
    assert id_seq(again) == 4
    a.wait_for_line("Redis lost acknowledged events", timeout=DEADLINE)


# -- configuration ------------------------------------------------------------------------------
def test_broker_from_the_environment_and_from_the_app(redis_server, tmp_path, monkeypatch):
    redis = redis_server()
    monkeypatch.setenv("CONDUIT_BROKER", redis.url + "?prefix=envapp")
    env_app = write_app(tmp_path)
    process = ConduitProcess(env_app, "--no-access-log")
    try:
        process.wait_started()
        process.wait_for_line(ATTACHED, timeout=DEADLINE)
        publish(process.address, "docs", "via env")
    finally:
        process.kill()
    monkeypatch.delenv("CONDUIT_BROKER")
    assert int(redis.command("XLEN", "envapp:channel:docs")[1:]) == 1
    (tmp_path / "own").mkdir()
    own_app = write_app(tmp_path / "own", broker=redis.url + "?prefix=ownapp")
    process = ConduitProcess(own_app, "--no-access-log")
    try:
        process.wait_started()
        process.wait_for_line(ATTACHED, timeout=DEADLINE)
        publish(process.address, "alerts", "via App(broker=...)")
    finally:
        process.kill()
    assert int(redis.command("XLEN", "ownapp:channel:alerts")[1:]) == 1


def test_startup_errors(redis_server, app_path, tmp_path):
    result = run_cli("run", app_path, "--port", "0", "--broker", "kafka://nowhere")
    assert result.returncode == 2
    assert "unknown broker URL" in result.stderr
    # Nothing listens there: a startup failure, loudly.
    redis = redis_server()
    redis.kill()
    result = run_cli("run", app_path, "--port", "0", "--broker", redis.url, timeout=DEADLINE)
    assert result.returncode == 3, result.stderr
    assert "cannot reach Redis at redis://127.0.0.1:" in result.stderr
    # Without redis-py: what to install.
    code = ("import sys; sys.modules['redis'] = None\n"
            "from conduit.cli import main\n"
            f"sys.exit(main(['run', {str(app_path)!r}, '--port', '0', "
            "'--broker', 'redis://127.0.0.1:1/0']))")
    result = subprocess.run([sys.executable, "-c", code], env=subprocess_env(),
                            capture_output=True, text=True, timeout=DEADLINE, cwd=tmp_path)
    assert result.returncode == 3, result.stderr
    assert "the redis broker needs redis-py: pip install 'conduit-sse[redis]'" in result.stderr


def test_an_app_without_a_broker_never_imports_redis(tmp_path):
    code = textwrap.dedent(f"""
        import sys
        import conduit
        from conduit import App
        from conduit.app import broker  # the contract module itself is dependency-free
        app = App(data_dir={str(tmp_path)!r})
        app.channel("a")
        app.channel("b", durable=True).publish({{"x": 1}})
        from conduit.cli import build_parser
        build_parser().parse_args(["run", "x.py", "--broker", "redis://h:1/0"])
        assert "redis" not in sys.modules, "redis was imported"
        print("ok")
    """)
    result = subprocess.run([sys.executable, "-c", code], env=subprocess_env(),
                            capture_output=True, text=True, timeout=DEADLINE, cwd=REPO_ROOT)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr
