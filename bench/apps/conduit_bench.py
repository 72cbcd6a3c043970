"""conduit's benchmark app: the endpoints every peer in bench/peers serves.

GET /count?n=N     N events (id i, event counter, data i), then the stream ends
GET /events        subscribe to the broadcast (": subscribed" once registered)
POST /publish?n=M&size=B   publish M events of B bytes
POST /pub          publish the body as one event
GET /ticks?n=N&rate=R   N events paced by an asyncio producer at R events/s; each event's
                   data is the time.monotonic_ns() it was due at (the load client's clock)
GET /shape?kind=K&n=N   N events of the shapes users write (every peer has the same four):
                   seed     data f"token {i}", event "token", str id (the seed's AI tokens)
                   fstring  data f"Current time: {time.time()}", event "time", str id
                   json     data a small dict (JSON), event "json", str id
                   async    the seed shape from an async generator that awaits
                            asyncio.sleep(0) every 100 events
"""

import asyncio
import time

from conduit import App, SSEEvent

app = App()
broadcast = app.channel("bench", history=1000)


@app.get("/count")
def count(request):
    n = int(request.query.get("n", "10000"))
    for i in range(1, n + 1):
        yield SSEEvent(i, event="counter", id=i)


@app.get("/events")
def events(request):
    return broadcast.subscribe(request)


@app.post("/publish")
def publish(request):
    n = int(request.query.get("n", "1"))
    size = int(request.query.get("size", "64"))
    payload = "x" * size
    # One call for the lot: in one process it is a loop of publish; through a broker
    # (--workers, --broker) it is one round trip instead of n.
    broadcast.publish_many([payload] * n, event="bench")
    return {"published": n}


@app.post("/pub")
def pub(request):
    return {"id": broadcast.publish(request.body.decode("utf-8"), event="bench")}


@app.get("/shape")
def shape(request):
    n = int(request.query.get("n", "10000"))
    kind = request.query.get("kind", "seed")
    if kind == "async":
        return shape_async(n)
    return SHAPES[kind](n)


def shape_seed(n):
    for i in range(1, n + 1):
        yield SSEEvent(data=f"token {i}", event="token", id=str(i))


def shape_fstring(n):
    for i in range(1, n + 1):
        yield SSEEvent(data=f"Current time: {time.time()}", event="time", id=str(i))


def shape_json(n):
    for i in range(1, n + 1):
        yield SSEEvent(data={"i": i, "token": "hello", "done": False}, event="json", id=str(i))


async def shape_async(n):
    for i in range(1, n + 1):
        if i % 100 == 0:
            await asyncio.sleep(0)
        yield SSEEvent(data=f"token {i}", event="token", id=str(i))


SHAPES = {"seed": shape_seed, "fstring": shape_fstring, "json": shape_json}


@app.get("/ticks")
async def ticks(request):
    n = int(request.query.get("n", "100"))
    period = 1.0 / float(request.query.get("rate", "100"))
    start = time.monotonic()
    for k in range(n):
        due = start + k * period
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        yield SSEEvent(str(int(due * 1e9)), event="tick")
