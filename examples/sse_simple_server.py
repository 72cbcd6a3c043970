"""The seed's simple SSE server: a page, a clock stream and a counter stream.

    python -m conduit run examples/sse_simple_server.py
    curl -N http://127.0.0.1:8000/count   # event: counter, ids and data 1..10, then the end
    curl -N http://127.0.0.1:8000/time    # event: time, one a second, with ids

Open http://127.0.0.1:8000/ for a page that shows both streams live.
Both streams honour Last-Event-ID: a reconnecting browser continues after the last id
it saw instead of starting over.
"""

import time
from pathlib import Path

from conduit import App, FileResponse, SSEEvent, sleep

app = App()
PAGE = Path(__file__).parent / "pages" / "sse_simple_server.html"


def resume_after(request) -> int:
    """The id the client saw last (Last-Event-ID), or 0 for a new client."""
    try:
        return max(0, int(request.last_event_id or 0))
    except ValueError:
        return 0


@app.get("/")
def index(request):
    return FileResponse(PAGE)


@app.get("/count")
def count(request):
    """Ten events, ``event: counter``, ids and data 1..10, then the stream ends."""
    for i in range(resume_after(request) + 1, 11):
        yield SSEEvent(i, event="counter", id=i)


@app.get("/time")
async def time_stream(request):
    """The server's clock once a second, forever, ``event: time`` with increasing ids."""
    i = resume_after(request)
    while True:
        i += 1
        now = time.time()
        stamp = time.strftime("%H:%M:%S", time.localtime(now)) + f".{int(now % 1 * 1000):03d}"
        yield SSEEvent(f"Current time: {stamp}", event="time", id=i)
        await sleep(1.0)
