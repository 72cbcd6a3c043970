"""Benchmark peer: aiohttp with aiohttp-sse (``sse_response``).

    bench/.venv-peers/bin/python bench/peers/aiohttp_sse/app.py --port 8003

GET /count?n=N            N events (event counter, id i, data i), then the stream ends
GET /events               subscribe (": subscribed" once registered)
POST /publish?n=M&size=B  publish M events of B bytes ("x" * B, event bench)
POST /pub                 publish the body as one event
GET /ticks?n=N&rate=R     N events paced by an asyncio producer at R events/s (data: the
                          time.monotonic_ns() each was due at)
GET /shape?kind=K&n=N     N events of the shapes users write (bench/apps/conduit_bench.py):
                          seed, fstring, json (json.dumps of a small dict), async (seed, with
                          await asyncio.sleep(0) every 100 events)

Broadcast: a list of per-subscriber asyncio.Queue objects. sep="\n" so the bytes match the
other peers (aiohttp-sse's default separator is "\r\n"). handler_cancellation=True so that a
subscriber that disconnects is removed at once (aiohttp no longer cancels handlers on
disconnect by default; without it a dead subscriber would linger until the next publish).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import time

from aiohttp import web
from aiohttp_sse import sse_response

subscribers: list[asyncio.Queue] = []
ids = itertools.count(1)


def publish_one(data: str) -> int:
    event_id = next(ids)
    event = (data, str(event_id))
    for queue in subscribers:
        queue.put_nowait(event)
    return event_id


async def count(request: web.Request) -> web.StreamResponse:
    n = int(request.query.get("n", "10000"))
    async with sse_response(request, sep="\n") as resp:
        for i in range(1, n + 1):
            await resp.send(str(i), id=str(i), event="counter")
    return resp


async def shape(request: web.Request) -> web.StreamResponse:
    n = int(request.query.get("n", "10000"))
    kind = request.query.get("kind", "seed")
    async with sse_response(request, sep="\n") as resp:
        for i in range(1, n + 1):
            if kind == "seed":
                await resp.send(f"token {i}", id=str(i), event="token")
            elif kind == "fstring":
                await resp.send(f"Current time: {time.time()}", id=str(i), event="time")
            elif kind == "json":
                await resp.send(json.dumps({"i": i, "token": "hello", "done": False}),
                                id=str(i), event="json")
            else:
                if i % 100 == 0:
                    await asyncio.sleep(0)
                await resp.send(f"token {i}", id=str(i), event="token")
    return resp


async def ticks(request: web.Request) -> web.StreamResponse:
    n = int(request.query.get("n", "100"))
    period = 1.0 / float(request.query.get("rate", "100"))
    async with sse_response(request, sep="\n") as resp:
        start = time.monotonic()
        for k in range(n):
            due = start + k * period
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            await resp.send(str(int(due * 1e9)), event="tick")
    return resp


async def events(request: web.Request) -> web.StreamResponse:
    async with sse_response(request, sep="\n") as resp:
        queue: asyncio.Queue = asyncio.Queue()
        subscribers.append(queue)
        try:
            await resp.write(b": subscribed\n\n")
            while resp.is_connected():
                data, event_id = await queue.get()
                await resp.send(data, id=event_id, event="bench")
        finally:
            subscribers.remove(queue)
    return resp


async def publish(request: web.Request) -> web.Response:
    n = int(request.query.get("n", "1"))
    payload = "x" * int(request.query.get("size", "64"))
    for _ in range(n):
        publish_one(payload)
    return web.json_response({"published": n})


async def pub(request: web.Request) -> web.Response:
    return web.json_response({"id": publish_one(await request.text())})


def make_app() -> web.Application:
    app = web.Application()
    app.router.add_get("/count", count)
    app.router.add_get("/events", events)
    app.router.add_get("/ticks", ticks)
    app.router.add_get("/shape", shape)
    app.router.add_post("/publish", publish)
    app.router.add_post("/pub", pub)
    return app


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8003)
    args = parser.parse_args()
    web.run_app(make_app(), host=args.host, port=args.port, access_log=None, print=None,
                backlog=4096, handler_cancellation=True, shutdown_timeout=2)
