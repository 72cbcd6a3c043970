"""The bridged channel for the benchmark (bench/run.py peer conduit-fastapi): a FastAPI
app mounted on a conduit App, its routes publishing to a conduit channel that conduit
serves to the subscribers (issue 15's "bridge").

GET /events                   subscribe (conduit's channel, ": subscribed" once registered)
POST /publish?n=M&size=B      FastAPI route: publish M events of B bytes to the channel
POST /pub                     FastAPI route: publish the body as one event
GET /count?n=N                FastAPI route: a JSON answer (the harness's readiness probe)
"""

from fastapi import FastAPI, Request

from conduit import App

app = App()
broadcast = app.channel("bench", history=1000)
api = FastAPI()


@app.get("/events")
def events(request):
    return broadcast.subscribe(request)


@api.post("/publish")
async def publish(n: int = 1, size: int = 64):
    broadcast.publish_many(["x" * size] * n, event="bench")
    return {"published": n}


@api.post("/pub")
async def pub(request: Request):
    return {"id": broadcast.publish((await request.body()).decode("utf-8"), event="bench")}


@api.get("/count")
async def count(n: int = 1):
    return {"ready": True}


app.mount("", api)
