"""Notifications: POST one, and every open page shows it as a toast at once.

The seed's "Live Notifications" pattern on a channel: ``POST /notify`` publishes once,
conduit delivers the same bytes to every subscriber, and a page that reconnects gets what
it missed (``Last-Event-ID``) from the channel's history.

    python -m conduit run examples/notifications.py
    # open http://127.0.0.1:8000/ in two tabs, then:

    curl -N http://127.0.0.1:8000/events                    # the live stream
    curl -X POST http://127.0.0.1:8000/notify -H 'Content-Type: application/json' \\
         -d '{"title": "Deploy finished", "body": "v1.4.2 is live", "level": "success"}'
    curl -X POST http://127.0.0.1:8000/notify -d '{"title": "Disk at 91%", "level": "warning"}'
    curl -X POST http://127.0.0.1:8000/notify -d '{"level": "info"}'    # 400: no title
    curl http://127.0.0.1:8000/notifications                # the recent ones, and a cursor
    curl -N -H 'Last-Event-ID: <an id>' http://127.0.0.1:8000/events   # resume after it

Routes
- ``POST /notify``: a JSON object ``{"title": str (1..120 characters, one line),
  "body": str (optional, up to 1000 characters), "level": "info" | "success" | "warning" |
  "error" (optional, default "info")}``. It is published on the ``notifications``
  channel as ``event: notification`` with data ``{"title", "body", "level", "time"}``
  (``time``: Unix seconds) and answered 201 ``{"status": "ok", "id": "<event id>"}``.
  Malformed JSON, a body that is not an object, a missing or bad field: 400
  ``{"error": ...}``, and nothing is published.
- ``GET /events``: the channel as SSE; ``Last-Event-ID`` (or ``?last_event_id=``)
  replays exactly the notifications after it, then goes live. A cursor the channel
  cannot resume from (the server restarted: this channel lives in memory; or the
  cursor is older than the history) gets ``event: reset`` first (see
  ``conduit.app.channel``); the page then reloads ``GET /notifications``.
- ``GET /notifications``: ``{"notifications": [{"id", "title", "body", "level",
  "time"}, ...] (oldest first, the last HISTORY), "cursor": "<id>"}``. Subscribing
  with ``?last_event_id=<cursor>`` gets exactly the notifications after this list.
- ``GET /``: the page (examples/pages/notifications.html).

Everything runs on the loop thread, so a snapshot and its cursor always agree.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from conduit import App, FileResponse, HTTPError, Response

app = App()
HISTORY = 100
notes = app.channel("notifications", history=HISTORY)
PAGE = Path(__file__).parent / "pages" / "notifications.html"

LEVELS = ("info", "success", "warning", "error")
MAX_TITLE, MAX_BODY = 120, 1000


def _text(body: dict, name: str, limit: int, required: bool, one_line: bool) -> str:
    value = body.get(name)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value.strip()):
        raise HTTPError(400, f"'{name}' must be a non-empty string" if required
                        else f"'{name}' must be a string")
    if len(value) > limit:
        raise HTTPError(400, f"'{name}' is longer than {limit} characters")
    bad = (lambda ch: ord(ch) < 32 or ord(ch) == 127) if one_line \
        else (lambda ch: (ord(ch) < 32 and ch not in "\n\t") or ord(ch) == 127)
    if any(bad(ch) for ch in value):
        raise HTTPError(400, f"'{name}' must not contain control characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # JSON can spell a lone surrogate; UTF-8 cannot carry it
        raise HTTPError(400, f"'{name}' is not valid Unicode (a lone surrogate)") from None
    return value


def validate(body) -> dict:
    """The notification to publish, or HTTPError 400."""
    if not isinstance(body, dict):
        raise HTTPError(400, 'the body must be a JSON object: {"title": ..., "body": ..., '
                             '"level": ...}')
    title = _text(body, "title", MAX_TITLE, required=True, one_line=True).strip()
    text = _text(body, "body", MAX_BODY, required=False, one_line=False)
    level = body.get("level", "info")
    if not isinstance(level, str) or level not in LEVELS:
        raise HTTPError(400, "'level' must be one of " + ", ".join(LEVELS))
    return {"title": title, "body": text, "level": level, "time": round(time.time(), 3)}


@app.post("/notify")
def notify(request):
    notification = validate(request.json())
    event_id = notes.publish(notification, event="notification")
    return Response({"status": "ok", "id": event_id}, status=201)


@app.get("/events")
def events(request):
    return notes.subscribe(request)


@app.get("/notifications")
def recent(request):
    items = []
    for event_id, _event, data in notes.events():
        items.append({"id": event_id, **json.loads(data)})
    return {"notifications": items, "cursor": notes.position}


@app.get("/")
def index(request):
    return FileResponse(PAGE)
