"""The benchmark's conduit app: GET /count?n=N streams N events (id i, event counter, data i)."""

from conduit import App, SSEEvent

app = App()


@app.get("/count")
def count(request):
    n = int(request.query.get("n", "10000"))
    for i in range(1, n + 1):
        yield SSEEvent(i, event="counter", id=i)
