"""The benchmark's broadcast app: GET /events subscribes; POST /publish?n=M&size=B publishes
M events of B bytes; POST /pub publishes its body as one event."""

from conduit import App

app = App()
hub = app.channel("bench", history=1000)


@app.get("/events")
def events(request):
    return hub.subscribe(request)


@app.post("/publish")
def publish(request):
    n = int(request.query.get("n", "1"))
    size = int(request.query.get("size", "64"))
    payload = "x" * size
    for _ in range(n):
        hub.publish(payload, event="bench")
    return {"published": n}


@app.post("/pub")
def pub(request):
    return {"id": hub.publish(request.body.decode("utf-8"), event="bench")}
