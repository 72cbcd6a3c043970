"""examples/dizzy_documents.py end to end: commands over HTTP, events over SSE (httpx-sse),
replay after Last-Event-ID, restarts (SIGTERM and kill -9) on a durable data directory, and
two headless Chromium pages that stay in step across a restart.

Every server gets its own CONDUIT_DATA_DIR (under tmp_path); a restart reuses it.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from e2e_harness import ExampleServer, wait_until_bindable
from httpx_sse import connect_sse

EXAMPLE = "examples/dizzy_documents.py"
TIMEOUT = httpx.Timeout(10.0)


# -- fixtures and helpers --------------------------------------------------------------------

class Dizzy:
    """Starts the example on a data directory; on teardown every server still running must
    drain and exit 0 after SIGTERM (servers killed by a test are left alone)."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.servers: list[ExampleServer] = []

    def data_dir(self, name: str = "data") -> Path:
        path = self.tmp_path / name
        path.mkdir(exist_ok=True)
        return path

    def start(self, data_dir: Path | None = None, port: int = 0) -> ExampleServer:
        data_dir = data_dir or self.data_dir()
        server = ExampleServer(EXAMPLE, "--no-access-log", port=port,
                               env={"CONDUIT_DATA_DIR": str(data_dir)})
        self.servers.append(server)
        return server

    def stop(self, server: ExampleServer) -> None:
        code = server.stop(timeout=20)
        assert code == 0, f"exited with {code} after SIGTERM\n{server.log}"
        assert "graceful timeout" not in server.log, server.log

    def close(self) -> None:
        errors = []
        for server in self.servers:
            if server.proc.poll() is None:
                try:
                    self.stop(server)
                except Exception as exc:  # stop them all, then report the first
                    errors.append(exc)
        if errors:
            raise errors[0]


@pytest.fixture
def dizzy(tmp_path):
    runner = Dizzy(tmp_path)
    yield runner
    runner.close()


def post(base: str, kind: str, data, **extra) -> httpx.Response:
    body = {"type": kind, "data": data, **extra}
    return httpx.post(f"{base}/command", json=body, timeout=TIMEOUT)


def command(base: str, kind: str, **data) -> str:
    """Post a command that must succeed; the id of the one event it produced."""
    response = post(base, kind, data)
    assert response.status_code == (201 if kind == "CreateDocument" else 200), response.text
    answer = response.json()
    assert answer["status"] == "ok" and len(answer["event_ids"]) == 1, answer
    return answer["event_ids"][0]


def seq(event_id: str) -> int:
    epoch, _, number = event_id.rpartition("-")
    assert epoch and number.isdigit(), event_id
    return int(number)


def epoch(event_id: str) -> str:
    return event_id.rpartition("-")[0]


def read(events, count: int) -> list[tuple[str, str, object]]:
    """The next ``count`` events of an httpx-sse iterator, as (id, event, parsed data)."""
    got = []
    for sse in events:
        got.append((sse.id, sse.event, json.loads(sse.data)))
        if len(got) == count:
            return got
    raise AssertionError(f"the stream ended after {got}")


def read_until(events, last_id: str, limit: int = 100) -> list[tuple[str, str, object]]:
    """Events up to and including the one with id ``last_id``."""
    got = []
    for sse in events:
        got.append((sse.id, sse.event, json.loads(sse.data)))
        if sse.id == last_id:
            return got
        assert len(got) < limit, got
    raise AssertionError(f"the stream ended before {last_id}: {got}")


def subscribe(client: httpx.Client, base: str, last_event_id: str | None = None):
    headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
    return connect_sse(client, "GET", f"{base}/events", headers=headers)


def snapshot(base: str) -> dict:
    response = httpx.get(f"{base}/documents", timeout=TIMEOUT)
    assert response.status_code == 200, response.text
    return response.json()


def created(doc_id, content):
    return {"type": "DocumentCreated", "data": {"id": doc_id, "content": content}}


def saved(doc_id, content):
    return {"type": "DocumentSaved", "data": {"id": doc_id, "content": content}}


def deleted(doc_id):
    return {"type": "DocumentDeleted", "data": {"id": doc_id}}


# -- commands and the events they publish ----------------------------------------------------

def test_commands_publish_exactly_their_events(dizzy):
    base = dizzy.start().base_url
    assert snapshot(base)["documents"] == [] and snapshot(base)["last_event_id"] is None
    with httpx.Client(timeout=TIMEOUT) as client, subscribe(client, base) as source:
        assert source.response.headers["content-type"].startswith("text/event-stream")
        # The response head is written once the subscriber is registered: from here on it
        # cannot miss a publish.
        ids = [
            command(base, "CreateDocument", id="doc1", content="Hello"),
            command(base, "SaveDocument", id="doc1", content="Hello,\n<b>world</b> é ✓"),
            command(base, "CreateDocument", id="doc2", content=""),
            command(base, "DeleteDocument", id="doc1"),
        ]
        got = read(source.iter_sse(), 4)
    assert [seq(i) for i in ids] == list(range(seq(ids[0]), seq(ids[0]) + 4)), ids
    assert len({epoch(i) for i in ids}) == 1
    assert got == [
        (ids[0], "message", created("doc1", "Hello")),
        (ids[1], "message", saved("doc1", "Hello,\n<b>world</b> é ✓")),
        (ids[2], "message", created("doc2", "")),
        (ids[3], "message", deleted("doc1")),
    ]
    state = snapshot(base)
    assert state["documents"] == [{"id": "doc2", "content": ""}]
    assert state["last_event_id"] == ids[3] and state["cursor"] == ids[3]


BAD_REQUESTS = [
    pytest.param(b'{"type": "RenameDocument", "data": {"id": "a"}}', id="unknown-type"),
    pytest.param(b'{"data": {"id": "a", "content": "x"}}', id="missing-type"),
    pytest.param(b'{"type": "CreateDocument", "data": {"id": "a", "content": "x"', id="malformed"),
    pytest.param(b"\xff\xfe", id="not-utf8"),
    pytest.param(b"", id="empty-body"),
    pytest.param(b'[{"type": "CreateDocument"}]', id="array-body"),
    pytest.param(b'"CreateDocument"', id="string-body"),
    pytest.param(b'{"type": "CreateDocument"}', id="missing-data"),
    pytest.param(b'{"type": "CreateDocument", "data": ["b", "x"]}', id="data-not-object"),
    pytest.param(b'{"type": "CreateDocument", "data": {"content": "x"}}', id="missing-id"),
    pytest.param(b'{"type": "CreateDocument", "data": {"id": "", "content": "x"}}',
                 id="empty-id"),
    pytest.param(b'{"type": "SaveDocument", "data": {"id": 7, "content": "x"}}', id="int-id"),
    pytest.param(json.dumps({"type": "CreateDocument", "data": {"id": "b" * 201,
                                                                "content": "x"}}).encode(),
                 id="id-too-long"),
    pytest.param(b'{"type": "CreateDocument", "data": {"id": "b"}}', id="missing-content"),
    pytest.param(b'{"type": "SaveDocument", "data": {"id": "a", "content": 5}}',
                 id="content-not-string"),
    pytest.param(b'{"type": "SaveDocument", "data": {"id": "a", "content": "x\\ud800"}}',
                 id="content-lone-surrogate"),
    pytest.param(b'{"type": "CreateDocument", "data": {"id": "\\udfff", "content": ""}}',
                 id="id-lone-surrogate"),
    pytest.param(b'{"type": "CreateDocument", "data": {"id": "a\\nb", "content": ""}}',
                 id="id-control-character"),
]

CONFLICTS = [
    pytest.param({"type": "CreateDocument", "data": {"id": "a", "content": "again"}},
                 id="create-existing"),
    pytest.param({"type": "SaveDocument", "data": {"id": "nope", "content": "x"}},
                 id="save-missing"),
    pytest.param({"type": "DeleteDocument", "data": {"id": "nope"}}, id="delete-missing"),
]


def test_rejected_commands_publish_nothing(dizzy):
    base = dizzy.start().base_url
    first = command(base, "CreateDocument", id="a", content="original")
    before = snapshot(base)
    for case in BAD_REQUESTS:
        body = case.values[0]
        response = httpx.post(f"{base}/command", content=body, timeout=TIMEOUT,
                              headers={"Content-Type": "application/json"})
        assert response.status_code == 400, (case.id, response.status_code, response.text)
        assert response.headers["content-type"].startswith("application/json"), case.id
        assert isinstance(response.json()["error"], str), case.id
    for case in CONFLICTS:
        response = httpx.post(f"{base}/command", json=case.values[0], timeout=TIMEOUT)
        assert response.status_code == 409, (case.id, response.status_code, response.text)
        assert isinstance(response.json()["error"], str), case.id
    assert snapshot(base) == before
    # Nothing was published: the next event is the one right after `first` (ids are one
    # sequence), and a subscriber resuming after `first` gets exactly that event.
    after = command(base, "SaveDocument", id="a", content="changed")
    assert epoch(after) == epoch(first) and seq(after) == seq(first) + 1
    with httpx.Client(timeout=TIMEOUT) as client, subscribe(client, base, first) as source:
        assert read(source.iter_sse(), 1) == [(after, "message", saved("a", "changed"))]


# -- replay after Last-Event-ID --------------------------------------------------------------

def test_reconnect_with_last_event_id_gets_exactly_the_missed_events(dizzy):
    base = dizzy.start().base_url
    with httpx.Client(timeout=TIMEOUT) as client:
        with subscribe(client, base) as source:
            seen_ids = [command(base, "CreateDocument", id="x", content="1"),
                        command(base, "CreateDocument", id="y", content="1")]
            seen = read(source.iter_sse(), 2)
        assert [event_id for event_id, _, _ in seen] == seen_ids
        missed = [
            (command(base, "SaveDocument", id="x", content="2"), "message", saved("x", "2")),
            (command(base, "DeleteDocument", id="y"), "message", deleted("y")),
            (command(base, "CreateDocument", id="z", content="3"), "message",
             created("z", "3")),
        ]
        with subscribe(client, base, seen_ids[-1]) as source:
            events = source.iter_sse()
            assert read(events, 3) == missed
            # Then live, with nothing repeated: the next event is the next command's.
            marker = command(base, "SaveDocument", id="z", content="4")
            assert read_until(events, marker) == [(marker, "message", saved("z", "4"))]
    assert seq(marker) == seq(missed[-1][0]) + 1


# -- restarts on the same data directory -----------------------------------------------------

@pytest.mark.parametrize("how", ["sigterm", "sigkill"])
def test_restart_keeps_every_acknowledged_event(dizzy, how):
    server = dizzy.start()
    base = server.base_url
    cursor = command(base, "CreateDocument", id="keep", content="v1")
    acked = [
        (command(base, "CreateDocument", id="gone", content="bye"), created("gone", "bye")),
        (command(base, "SaveDocument", id="keep", content="v2\nline two ✓"),
         saved("keep", "v2\nline two ✓")),
        (command(base, "DeleteDocument", id="gone"), deleted("gone")),
        (command(base, "CreateDocument", id="new", content="{\"json\": true}"),
         created("new", "{\"json\": true}")),
    ]
    before = snapshot(base)
    assert before["documents"] == [{"id": "keep", "content": "v2\nline two ✓"},
                                   {"id": "new", "content": "{\"json\": true}"}]
    if how == "sigterm":
        # A subscriber still reading is ended cleanly by the drain (a cut would raise).
        with httpx.Client(timeout=TIMEOUT) as client, subscribe(client, base) as source:
            dizzy.stop(server)
            assert list(source.iter_sse()) == []
    else:
        server.kill()
        assert server.proc.returncode == -9

    base = dizzy.start().base_url  # the same data directory
    assert snapshot(base) == before  # rebuilt from the durable history
    with httpx.Client(timeout=TIMEOUT) as client, subscribe(client, base, cursor) as source:
        events = source.iter_sse()
        assert read(events, len(acked)) == [(i, "message", e) for i, e in acked]
        marker = command(base, "SaveDocument", id="new", content="after")
        assert read_until(events, marker) == [(marker, "message", saved("new", "after"))]
    # Same epoch, and sequences are never reused after a restart.
    assert epoch(marker) == epoch(cursor) and seq(marker) > seq(acked[-1][0])
    state = snapshot(base)
    assert state["last_event_id"] == marker
    assert state["documents"][-1] == {"id": "new", "content": "after"}


def test_cursor_from_another_data_dir_gets_a_reset(dizzy):
    first = dizzy.start(dizzy.data_dir("one")).base_url
    other = dizzy.start(dizzy.data_dir("two")).base_url
    foreign = command(first, "CreateDocument", id="a", content="from one")
    command(other, "CreateDocument", id="b", content="from two")
    newest = command(other, "SaveDocument", id="b", content="two, saved")
    assert epoch(foreign) != epoch(newest)
    with httpx.Client(timeout=TIMEOUT) as client:
        with subscribe(client, other, foreign) as source:
            events = source.iter_sse()
            reset = next(events)
            assert reset.event == "reset"
            assert reset.id == newest  # the newest id: the next reconnect resumes from it
            assert json.loads(reset.data) == {"reason": "unknown-epoch",
                                              "channels": ["documents"],
                                              "last_event_id": foreign}
            # Then live: the page reloads /documents and carries on.
            live = command(other, "DeleteDocument", id="b")
            assert read_until(events, live) == [(live, "message", deleted("b"))]
        with subscribe(client, other, reset.id) as source:  # resuming from the reset's id
            assert read(source.iter_sse(), 1) == [(live, "message", deleted("b"))]


# -- two browser pages, across a kill -9 and a restart on the same port ----------------------

def doc_shown(page, doc_id: str, content: str) -> None:
    page.wait_for_function(
        """([id, content]) => [...document.querySelectorAll("#documents .document")].some(
             (li) => li.dataset.id === id
                     && li.querySelector(".preview").textContent === content)""",
        arg=[doc_id, content],
    )


def reconnected(page, opens: int) -> None:
    page.wait_for_function(
        """(opens) => window.dizzy.opens > opens
             && document.getElementById("connection").textContent === "connected" """,
        arg=opens,
    )


def test_two_pages_stay_in_step_across_a_restart(dizzy, browser):
    data_dir = dizzy.data_dir()
    server = dizzy.start(data_dir)
    contexts = [browser.new_context(), browser.new_context()]
    try:
        one, two = (context.new_page() for context in contexts)
        for page in (one, two):
            page.set_default_timeout(20_000)
            page.goto(f"{server.base_url}/")
            page.wait_for_function(
                "() => document.getElementById('connection').textContent === 'connected'")
        assert one.title() == "Dizzy documents"

        # Created in one, shown in both; user content is text, never markup.
        one.fill("#new-id", "alpha")
        one.click("#create")
        doc_shown(two, "alpha", "")
        two.click('#documents .document[data-id="alpha"]')
        two.fill("#content", "<img src=x onerror=alert(1)> saved in two")
        two.click("#save")
        doc_shown(one, "alpha", "<img src=x onerror=alert(1)> saved in two")
        assert one.locator("#documents img").count() == 0
        two.wait_for_function(
            "() => document.getElementById('message').textContent.startsWith('saved \"alpha\"')")

        # kill -9, then a new server on the same port and data directory: both pages
        # reconnect by themselves (Last-Event-ID replay, no reset) and carry on.
        opens = [page.evaluate("() => window.dizzy.opens") for page in (one, two)]
        port = server.port
        server.kill()
        for page in (one, two):
            page.wait_for_function(
                "() => document.getElementById('connection').textContent !== 'connected'")
        wait_until_bindable(port)
        server = dizzy.start(data_dir, port=port)
        for page, count in zip((one, two), opens, strict=True):
            reconnected(page, count)
        one.fill("#content", "saved in one after the restart")  # alpha is open in one
        one.click("#save")
        for page in (one, two):
            doc_shown(page, "alpha", "saved in one after the restart")
            assert page.evaluate("() => window.dizzy.resets") == 0
            assert page.locator("#documents .document").count() == 1

        # Another data directory on the same port: another epoch, so the pages' cursors
        # get a reset event; they reload /documents (empty) and carry on.
        opens = [page.evaluate("() => window.dizzy.opens") for page in (one, two)]
        server.kill()
        wait_until_bindable(port)
        server = dizzy.start(dizzy.data_dir("other"), port=port)
        for page, count in zip((one, two), opens, strict=True):
            reconnected(page, count)
            page.wait_for_function(
                """() => window.dizzy.resets === 1
                     && document.querySelectorAll("#documents .document").length === 0""")
        beta = command(server.base_url, "CreateDocument", id="beta", content="new epoch")
        for page in (one, two):
            doc_shown(page, "beta", "new epoch")
            assert page.text_content("#last-event-id") == beta
    finally:
        for context in contexts:
            context.close()
