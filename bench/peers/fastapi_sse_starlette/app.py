"""Benchmark peer: FastAPI on uvicorn (uvloop + httptools) with sse-starlette's EventSourceResponse.

    bench/.venv-peers/bin/python bench/peers/fastapi_sse_starlette/app.py --port 8001

GET /count?n=N            N events (event counter, id i, data i), then the stream ends
GET /events               subscribe (": subscribed" once registered)
POST /publish?n=M&size=B  publish M events of B bytes ("x" * B, event bench)
POST /pub                 publish the body as one event
GET /ticks?n=N&rate=R     N events paced by an asyncio producer at R events/s (data: the
                          time.monotonic_ns() each was due at)
GET /shape?kind=K&n=N     N events of the shapes users write (bench/apps/conduit_bench.py):
                          seed, fstring, json (json.dumps of a small dict), async (seed, with
                          await asyncio.sleep(0) every 100 events)

The broadcast is the idiomatic one: a list of per-subscriber asyncio.Queue objects; a publish
puts every event on every queue, and each subscriber's generator yields what its queue gets.
Events are dicts (sse-starlette encodes each one per subscriber); sep="\n" so the bytes
match the other peers (sse-starlette's default separator is "\r\n").
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import time

import uvicorn
from fastapi import FastAPI, Request
from sse_starlette import EventSourceResponse

app = FastAPI()
subscribers: list[asyncio.Queue] = []
ids = itertools.count(1)


def publish_one(data: str) -> int:
    event_id = next(ids)
    event = {"event": "bench", "id": str(event_id), "data": data}
    for queue in subscribers:
        queue.put_nowait(event)
    return event_id


@app.get("/count")
async def count(n: int = 10000):
    async def events():
        for i in range(1, n + 1):
            yield {"event": "counter", "id": str(i), "data": str(i)}

    return EventSourceResponse(events(), sep="\n")


@app.get("/shape")
async def shape(kind: str = "seed", n: int = 10000):
    async def seed():
        for i in range(1, n + 1):
            yield {"event": "token", "id": str(i), "data": f"token {i}"}

    async def fstring():
        for i in range(1, n + 1):
            yield {"event": "time", "id": str(i), "data": f"Current time: {time.time()}"}

    async def as_json():
        for i in range(1, n + 1):
            yield {"event": "json", "id": str(i),
                   "data": json.dumps({"i": i, "token": "hello", "done": False})}

    async def with_awaits():
        for i in range(1, n + 1):
            if i % 100 == 0:
                await asyncio.sleep(0)
            yield {"event": "token", "id": str(i), "data": f"token {i}"}

    source = {"seed": seed, "fstring": fstring, "json": as_json, "async": with_awaits}[kind]
    return EventSourceResponse(source(), sep="\n")


@app.get("/ticks")
async def ticks(n: int = 100, rate: float = 100.0):
    async def stream():
        period = 1.0 / rate
        start = time.monotonic()
        for k in range(n):
            due = start + k * period
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            yield {"event": "tick", "data": str(int(due * 1e9))}

    return EventSourceResponse(stream(), sep="\n")


@app.get("/events")
async def events():
    async def stream():
        queue: asyncio.Queue = asyncio.Queue()
        subscribers.append(queue)
        try:
            yield {"comment": "subscribed"}
            while True:
                yield await queue.get()
        finally:
            subscribers.remove(queue)

    return EventSourceResponse(stream(), sep="\n")


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
    parser.add_argument("--port", type=int, default=8001)
    args = parser.parse_args()
    uvicorn.run(app, host=args.host, port=args.port, loop="uvloop", http="httptools",
                log_level="warning", access_log=False, backlog=4096,
                timeout_graceful_shutdown=2)
