"""The seed's Dizzy backend as it was written, in FastAPI, with its ``/events`` served by a
conduit channel: one process, one command.

    pip install fastapi                       # the example's only dependency
    python -m conduit run examples/fastapi_documents.py
    # open http://127.0.0.1:8000/ , type, press Save

- ``POST /command`` is the seed's FastAPI handler (a pydantic ``Command``; ``SaveDocument``
  waits 0.5 s, as the seed simulates, then emits ``DocumentSaved``). Emitting is
  ``documents.publish(...)``: the FastAPI route publishes to a conduit channel of the same
  process (it runs on the same loop thread), so the frame is encoded once and fanned out
  by conduit's compiled hub. Unknown commands get the seed's ``{"error": "unknown
  command"}``, with status 400.
- ``GET /events`` is the conduit channel: history (1,000 events), ``Last-Event-ID`` resume,
  and the ``reset`` event for a cursor it cannot honour (a restarted server: a new epoch).
- ``GET /`` is the seed's page (examples/pages/fastapi_documents.html), which also handles
  the ``reset`` event.
- ``app.mount("", api)``: conduit's routes (``/events``, ``/``) are matched first, every
  other path goes to the FastAPI app (its ``/docs`` and ``/openapi.json`` too).

FASTAPI_DOCUMENTS_DELAY_MS overrides the seed's 0.5 s save delay.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from conduit import App, FileResponse

PAGE = Path(__file__).parent / "pages" / "fastapi_documents.html"
SAVE_DELAY_SECONDS = int(os.environ.get("FASTAPI_DOCUMENTS_DELAY_MS", "500")) / 1000

app = App()
documents = app.channel("documents", history=1000)
api = FastAPI(title="Dizzy documents")


class Command(BaseModel):
    type: str
    data: dict


class Event(BaseModel):
    type: str
    data: dict


def emit_event(event: Event) -> str:
    """The seed's emit_event: every subscriber gets it (here: through the channel)."""
    return documents.publish(event.model_dump(), event=None)


@api.post("/command")
async def handle_command(cmd: Command):
    if cmd.type == "SaveDocument":
        await asyncio.sleep(SAVE_DELAY_SECONDS)  # the seed's simulated delay
        event_id = emit_event(Event(type="DocumentSaved", data={"id": cmd.data["id"]}))
        return {"status": "ok", "event_id": event_id}
    return JSONResponse({"error": "unknown command"}, status_code=400)


@app.get("/events")
def events(request):
    return documents.subscribe(request)


@app.get("/")
def page(request):
    return FileResponse(PAGE)


app.mount("", api)
