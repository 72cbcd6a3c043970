"""conduit's benchmark app: the endpoints every peer in bench/peers serves.

GET /count?n=N     N events (id i, event counter, data i), then the stream ends
GET /events        subscribe to the broadcast (": subscribed" once registered)
POST /publish?n=M&size=B   publish M events of B bytes
POST /pub          publish the body as one event
"""

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
