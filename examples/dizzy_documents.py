"""Dizzy documents: commands go up as HTTP POSTs, events come back over SSE.

The seed's "Dizzy" app grown up: a durable ``documents`` channel is the event log, an
in-memory dict of documents folded from it is the state, and every open page keeps a live
list of them.

    python -m conduit run examples/dizzy_documents.py
    # open http://127.0.0.1:8000/ in two tabs: what one does, the other shows at once

    curl -N http://127.0.0.1:8000/events                # the live event stream
    curl -X POST http://127.0.0.1:8000/command -H 'Content-Type: application/json' \\
         -d '{"type": "CreateDocument", "data": {"id": "doc1", "content": "Hello"}}'
    curl -X POST http://127.0.0.1:8000/command \\
         -d '{"type": "SaveDocument", "data": {"id": "doc1", "content": "Hello, world"}}'
    curl -X POST http://127.0.0.1:8000/command \\
         -d '{"type": "DeleteDocument", "data": {"id": "doc1"}}'
    curl http://127.0.0.1:8000/documents                # the state, and where it is
    curl -N -H 'Last-Event-ID: <an id>' http://127.0.0.1:8000/events   # resume after it

Routes
- ``POST /command``: ``{"type": "CreateDocument" | "SaveDocument" | "DeleteDocument",
  "data": {"id": ..., "content": ...}}``. A valid command has its event
  (``DocumentCreated``, ``DocumentSaved``, ``DocumentDeleted``) published on the channel as
  JSON ``{"type": ..., "data": {"id": ..., "content": ...}}`` (no ``content`` for a
  delete), with no ``event:`` name, so a page's ``onmessage`` gets it. The answer names
  the ids of the events it produced: ``{"status": "ok", "event_ids": ["<epoch>-<seq>"]}``
  (201 for a create, 200 otherwise). Malformed JSON, a body that is not an object, an
  unknown type or a missing or invalid field: 400 ``{"error": ...}``. Creating an id that
  exists, or saving or deleting one that does not: 409 ``{"error": ...}``. A rejected
  command publishes nothing.
- ``GET /events``: the channel as SSE (``Last-Event-ID`` or ``?last_event_id=`` resumes
  exactly after that event; a cursor the channel cannot resume from gets a ``reset`` event
  first, see ``conduit.app.channel``).
- ``GET /documents``: ``{"documents": [{"id": ..., "content": ...}, ...], "last_event_id":
  <id of the last event applied, or null>, "cursor": <where to subscribe from>}``.
  Subscribing with ``?last_event_id=<cursor>`` gets exactly the events after this state.
  Both commands and this answer 503 (``Retry-After``) while the broker is unreachable.
- ``GET /``: the page (examples/pages/dizzy_documents.html).

The state is a projection of the event stream: a background task, started at app
startup, folds ``docs.listen()`` (the channel's history, then every live event, in id
order) into a dict of documents. Nothing else writes the dict: a command publishes its
event and the projection applies it when it comes back, the same way on every server.

    python -m conduit run examples/dizzy_documents.py --broker redis://127.0.0.1:6379/0
    python -m conduit run examples/dizzy_documents.py --broker redis://127.0.0.1:6379/0 \\
        --port 8001                             # a second server: the same documents
    python -m conduit run examples/dizzy_documents.py --workers 2   # or N workers

So with ``--broker`` (or ``--workers``) every server holds the same documents: one created
through server A can be saved and deleted through server B. Before it checks a command or
answers ``GET /documents``, a server waits until its projection has every event the
broker had acknowledged (``await projection.sync()``: one round trip to the broker, the
loop serving on meanwhile), so it never answers 409 for a document another server
created a moment ago, nor lists a state older than what a client was told was done.

Commands of one server run one at a time (an ``asyncio.Lock`` around sync, check and
publish), so two commands through one server cannot both create one id. Commands on two
servers at the same instant are not serialised against each other (that needs a
compare-and-set in the broker): both may be accepted, and then every projection still
folds the same events in the same order, so all servers agree on the outcome.

Resets (never a silent gap): if the listener reports a reset (the broker lost history, or
the projection fell more than 10,000 events behind), the projection listens again from
the last event it applied, which replays from history when it is still there; if that
cursor is gone too, it rebuilds from the whole history.

Durability: the channel is durable, so its events are appended to a log under
``CONDUIT_DATA_DIR`` (default ``./conduit-data``) before a command is acknowledged (with
``--broker``, Redis keeps them); an acknowledged command survives ``kill -9``. At start-up
the projection folds the channel's history (Created / Saved / Deleted, in order) before
the first request is served, and clients resume from their ``Last-Event-ID`` as if the
server had never gone away.

The history is also this example's only store, and it keeps the last 1000 events: a
document untouched for 1000 events is forgotten at the next start. A real application
would keep a snapshot of its state next to the log; here the events carry each
document's whole content, so every event it still has is enough to rebuild it.

Auth (optional; off unless configured): with ``CONDUIT_AUTH_TOKEN`` (a token allowed
everything) and/or ``CONDUIT_JWT_SECRET`` (JWTs with ``{"conduit": {"publish":
["documents"], "subscribe": ["documents"]}}``) in the environment, the channel is private
and every route but ``/`` needs a token: ``Authorization: Bearer <token>``, the
``conduit_token`` cookie or ``?access_token=``. Open ``/?access_token=<token>`` once: it
sets the cookie (HttpOnly, SameSite=Strict) and redirects to ``/``, and the page works as
before.

    CONDUIT_AUTH_TOKEN=s3cret python -m conduit run examples/dizzy_documents.py
    curl -N -H 'Authorization: Bearer s3cret' http://127.0.0.1:8000/events
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from conduit import App, Auth, FileResponse, HTTPError, Response

log = logging.getLogger("dizzy")

AUTH = Auth.from_env()  # None unless CONDUIT_AUTH_TOKEN or CONDUIT_JWT_SECRET is set
app = App(auth=AUTH)
docs = app.channel("documents", history=1000, durable=True, private=AUTH is not None)
PAGE = Path(__file__).parent / "pages" / "dizzy_documents.html"

MAX_ID_CHARS = 200
COMMAND_EVENTS = {
    "CreateDocument": "DocumentCreated",
    "SaveDocument": "DocumentSaved",
    "DeleteDocument": "DocumentDeleted",
}


class Projection:
    """The documents, folded from the channel's events (see the module docstring).

    Only ``_run`` changes ``documents``, and it never awaits between taking an event and
    applying it: a handler that reads the projection sees it between two events, never
    in the middle of one. A replay (at start, or after a reset) is applied in one go, for
    the same reason: the listener hands out queued events without suspending.
    """

    def __init__(self, channel) -> None:
        self.channel = channel
        self.documents: dict[str, str] = {}  # id -> content, in creation order
        self.last_event_id: str | None = None  # the last event applied
        self.listener = None  # the channel's listener the task reads
        self.task: asyncio.Task | None = None
        self.commands = asyncio.Lock()  # one command at a time in this process

    def apply(self, event: dict) -> None:
        """Apply one event. Idempotent per event, and tolerant of an event whose document
        is not known (its creation may have left the history)."""
        kind = event.get("type")
        data = event.get("data") or {}
        doc_id = data.get("id")
        if kind in ("DocumentCreated", "DocumentSaved"):
            self.documents[doc_id] = data.get("content", "")
        elif kind == "DocumentDeleted":
            self.documents.pop(doc_id, None)

    def start(self) -> None:
        """Listen from the start of the history; fold in a task on the serving loop."""
        self.listener = self.channel.listen(after=None)
        self.task = asyncio.get_running_loop().create_task(self._run(),
                                                           name="dizzy-projection")
        self.task.add_done_callback(self._ended)

    async def _run(self) -> None:
        listener = self.listener
        resuming = False  # listening again from the last event applied, after a reset
        while True:
            async with listener:
                async for event in listener:
                    if event.event == "reset":
                        break
                    resuming = False
                    try:
                        self.apply(event.json())
                    except (ValueError, AttributeError):
                        pass  # not one of ours: skip it rather than stop the projection
                    self.last_event_id = event.id
                else:
                    return  # the listener was closed: the server is stopping
            if resuming or self.last_event_id is None:
                # The cursor is gone too (or there is none): rebuild from the history.
                self.documents.clear()
                self.last_event_id = None
                cursor, resuming = None, False
            else:
                cursor, resuming = self.last_event_id, True
            listener = self.listener = self.channel.listen(after=cursor)

    def _ended(self, task: asyncio.Task) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("the documents projection stopped: %r", task.exception())

    async def sync(self) -> None:
        """Return once the projection has applied every event the broker had acknowledged
        (no broker: every event published so far): what any server has done is here."""
        await self.listener.sync()

    def snapshot(self) -> dict:
        return {
            "documents": [{"id": doc_id, "content": content}
                          for doc_id, content in self.documents.items()],
            "last_event_id": self.last_event_id,
            # Every event up to the last one applied is in this state, and none after it
            # (the listener's position says the same of a newer id, if there is none).
            "cursor": self.last_event_id or self.listener.position,
        }


projection = Projection(docs)


@app.on_startup
async def start_projection() -> None:
    # Before the first request: fold the history (and, with a broker, whatever the other
    # servers published up to now).
    projection.start()
    await projection.sync()


def _validate(body) -> tuple[str, str, dict]:
    """(command type, document id, data) of a well-formed command, or HTTPError 400."""
    if not isinstance(body, dict):
        raise HTTPError(400, "the body must be a JSON object: {\"type\": ..., \"data\": {...}}")
    kind = body.get("type")
    if not isinstance(kind, str) or kind not in COMMAND_EVENTS:
        if kind is None:
            shown = "(missing)"
        elif isinstance(kind, str) and len(kind) <= 60:
            shown = repr(kind)
        else:
            shown = "(not a known name)"
        raise HTTPError(400, f"unknown command type {shown}; expected one of "
                             + ", ".join(COMMAND_EVENTS))
    data = body.get("data")
    if not isinstance(data, dict):
        raise HTTPError(400, "'data' must be a JSON object")
    doc_id = data.get("id")
    if not isinstance(doc_id, str) or not doc_id.strip():
        raise HTTPError(400, "'data.id' must be a non-empty string")
    if len(doc_id) > MAX_ID_CHARS:
        raise HTTPError(400, f"'data.id' is longer than {MAX_ID_CHARS} characters")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in doc_id):
        raise HTTPError(400, "'data.id' must not contain control characters")
    content = data.get("content")
    if kind != "DeleteDocument" and not isinstance(content, str):
        raise HTTPError(400, "'data.content' must be a string")
    for name, value in (("id", doc_id), ("content", content)):
        if isinstance(value, str) and not _is_utf8(value):
            # JSON can spell a lone surrogate ("\ud800"); no UTF-8 stream can carry it.
            raise HTTPError(400, f"'data.{name}' is not valid Unicode (a lone surrogate)")
    return kind, doc_id, data


def _require(request, action: str) -> None:
    """401/403 unless the request's token may ``action`` the documents (with auth on)."""
    if AUTH is not None:
        request.require(action, docs.name)


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@app.post("/command")
async def command(request):
    """Validate, check against the projection once it is up to date, publish."""
    _require(request, "publish")
    kind, doc_id, data = _validate(request.json())
    async with projection.commands:
        await projection.sync()  # what other servers did is in the projection now
        exists = doc_id in projection.documents
        if kind == "CreateDocument" and exists:
            raise HTTPError(409, f"document {doc_id!r} already exists")
        if kind != "CreateDocument" and not exists:
            raise HTTPError(409, f"document {doc_id!r} does not exist")
        event_data = {"id": doc_id}
        if kind != "DeleteDocument":
            event_data["content"] = data["content"]
        # Acknowledged (on disk, or in the broker) when it returns. The projection applies
        # it when it comes back from the channel; the next command's sync waits for that.
        event_id = docs.publish({"type": COMMAND_EVENTS[kind], "data": event_data})
    status = 201 if kind == "CreateDocument" else 200
    return Response({"status": "ok", "event_ids": [event_id]}, status=status)


@app.get("/documents")
async def list_documents(request):
    _require(request, "subscribe")
    await projection.sync()
    # No await from here on: the documents and the cursor are one state, so a page that
    # subscribes from the cursor misses nothing and repeats nothing.
    return projection.snapshot()


@app.get("/events")
def events(request):
    return docs.subscribe(request)


@app.get("/")
def index(request):
    token = request.query.get("access_token")
    if AUTH is not None and token:
        _require(request, "subscribe")  # a wrong token is a 401 here, not a broken page
        cookie = f"conduit_token={token}; Path=/; HttpOnly; SameSite=Strict"
        return Response(b"", status=303, headers={"Location": "/", "Set-Cookie": cookie})
    return FileResponse(PAGE)
