"""Dizzy documents: commands go up as HTTP POSTs, events come back over SSE.

The seed's "Dizzy" app grown up: a durable ``documents`` channel is the event log, an
in-memory dict of documents is the state, and every open page keeps a live list of them.

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
  "data": {"id": ..., "content": ...}}``. A valid command is applied and its event
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
- ``GET /``: the page (examples/pages/dizzy_documents.html).

Durability: the channel is durable, so its events are appended to a log under
``CONDUIT_DATA_DIR`` (default ``./conduit-data``) before a command is acknowledged; an
acknowledged command survives ``kill -9``. At start-up the documents are rebuilt by
replaying the channel's history (Created / Saved / Deleted, in order), and clients resume
from their ``Last-Event-ID`` as if the server had never gone away.

The history is also this example's only store, and it keeps the last 1000 events: a
document untouched for 1000 events is forgotten at the next start. A real application
would keep a snapshot of its state next to the log; here the events carry each
document's whole content, so every event it still has is enough to rebuild it.

Commands are applied and published on the loop thread, synchronously (the handler never
awaits), so they are atomic with respect to each other: the order of the events is the
order in which the state changed.

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

import json
from pathlib import Path

from conduit import App, Auth, FileResponse, HTTPError, Response

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

# The state: id -> content, in creation order; and the id of the last event applied.
documents: dict[str, str] = {}
last_event_id: str | None = None


def apply(event: dict) -> None:
    """Apply one event to ``documents``. Idempotent per event, and tolerant of an event
    whose document is not known (its creation may have left the history)."""
    kind = event.get("type")
    data = event.get("data") or {}
    doc_id = data.get("id")
    if kind in ("DocumentCreated", "DocumentSaved"):
        documents[doc_id] = data.get("content", "")
    elif kind == "DocumentDeleted":
        documents.pop(doc_id, None)


def _rebuild() -> None:
    """Replay the channel's history (restored from disk) into ``documents``."""
    global last_event_id
    for event_id, _event, data in docs.events():
        try:
            apply(json.loads(data))
        except (ValueError, AttributeError):
            continue  # not one of ours: skip it rather than refuse to start
        last_event_id = event_id


_rebuild()


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
def command(request):
    """Validate, check against the state, publish, apply: all on the loop thread."""
    global last_event_id
    _require(request, "publish")
    kind, doc_id, data = _validate(request.json())
    exists = doc_id in documents
    if kind == "CreateDocument" and exists:
        raise HTTPError(409, f"document {doc_id!r} already exists")
    if kind != "CreateDocument" and not exists:
        raise HTTPError(409, f"document {doc_id!r} does not exist")
    event_data = {"id": doc_id}
    if kind != "DeleteDocument":
        event_data["content"] = data["content"]
    event = {"type": COMMAND_EVENTS[kind], "data": event_data}
    event_id = docs.publish(event)  # on disk before it returns; apply only once it is
    apply(event)
    last_event_id = event_id
    status = 201 if kind == "CreateDocument" else 200
    return Response({"status": "ok", "event_ids": [event_id]}, status=status)


@app.get("/documents")
def list_documents(request):
    # Commands are applied on the loop thread as they are published, so this state and
    # the channel's position agree: a page subscribing from the cursor misses nothing.
    _require(request, "subscribe")
    cursor = last_event_id or docs.position
    return {
        "documents": [{"id": doc_id, "content": content}
                      for doc_id, content in documents.items()],
        "last_event_id": last_event_id,
        "cursor": cursor,
    }


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
