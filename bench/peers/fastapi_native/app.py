"""Benchmark peer: FastAPI on uvicorn (uvloop + httptools) with FastAPI's own SSE support,
``fastapi.sse.EventSourceResponse`` (added in FastAPI 0.135.0): a path operation that
``yield``s ``fastapi.sse.ServerSentEvent`` objects, declared with
``response_class=EventSourceResponse``. FastAPI's routing layer encodes each event (and
inserts a ``: ping`` comment after 15 s of silence).

    bench/.venv-peers/bin/python bench/peers/fastapi_native/app.py --port 8002

GET /count?n=N            N events (event counter, id i, data i), then the stream ends
GET /events               subscribe (": subscribed" once registered)
POST /publish?n=M&size=B  publish M events of B bytes ("x" * B, event bench)
POST /pub                 publish the body as one event
GET /shape?kind=K&n=N     N events of the shapes users write (bench/apps/conduit_bench.py):
                          seed, fstring, json (ServerSentEvent(data=dict): FastAPI encodes
                          it), async (seed, with await asyncio.sleep(0) every 100 events)

Broadcast: a list of per-subscriber asyncio.Queue objects, as in fastapi_sse_starlette.
``raw_data`` is used rather than ``data`` because ``data`` is always JSON-encoded
(``data="xx"`` goes out as ``data: "xx"``, quotes included); ``raw_data`` sends the text as is.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import time
from collections.abc import AsyncIterable

import uvicorn
from fastapi import FastAPI, Request
from fastapi.sse import EventSourceResponse, ServerSentEvent

app = FastAPI()
subscribers: list[asyncio.Queue] = []
ids = itertools.count(1)


def publish_one(data: str) -> int:
    event_id = next(ids)
    event = ServerSentEvent(raw_data=data, event="bench", id=str(event_id))
    for queue in subscribers:
        queue.put_nowait(event)
    return event_id


@app.get("/count", response_class=EventSourceResponse)
async def count(n: int = 10000) -> AsyncIterable[ServerSentEvent]:
    for i in range(1, n + 1):
        yield ServerSentEvent(raw_data=str(i), event="counter", id=str(i))


@app.get("/shape", response_class=EventSourceResponse)
async def shape(kind: str = "seed", n: int = 10000) -> AsyncIterable[ServerSentEvent]:
    for i in range(1, n + 1):
        if kind == "seed":
            yield ServerSentEvent(raw_data=f"token {i}", event="token", id=str(i))
        elif kind == "fstring":
            yield ServerSentEvent(raw_data=f"Current time: {time.time()}", event="time",
                                  id=str(i))
        elif kind == "json":
            yield ServerSentEvent(data={"i": i, "token": "hello", "done": False},
                                  event="json", id=str(i))
        else:
            if i % 100 == 0:
                await asyncio.sleep(0)
            yield ServerSentEvent(raw_data=f"token {i}", event="token", id=str(i))


@app.get("/events", response_class=EventSourceResponse)
async def events() -> AsyncIterable[ServerSentEvent]:
    queue: asyncio.Queue = asyncio.Queue()
    subscribers.append(queue)
    try:
        yield ServerSentEvent(comment="subscribed")
        while True:
            yield await queue.get()
    finally:
        subscribers.remove(queue)


@app.post("/publish")
async def publish(n: int = 1, size: int = 64):
    payload = "x" * size
    for _ in range(n):
        publish_one(payload)
    return {"published": n}


@app.post("/pub")
async def pub(request: Request):
    return {"id": publish_one((await request.body()).decode("utf-8"))}


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8002)
    args = parser.parse_args()
    uvicorn.run(app, host=args.host, port=args.port, loop="uvloop", http="httptools",
                log_level="warning", access_log=False, backlog=4096,
                timeout_graceful_shutdown=2)
