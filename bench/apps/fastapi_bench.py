"""The ASGI benchmark's app (bench/asgi.py): one FastAPI app, served by conduit, uvicorn
and granian.

GET /json        a small JSON document (the plain request/response path)
GET /sse?n=N     sse-starlette's EventSourceResponse streaming N events (event counter,
                 id i, data i), then the end
"""

from fastapi import FastAPI
from sse_starlette import EventSourceResponse

app = FastAPI()


@app.get("/json")
async def json_hello():
    return {"message": "hello", "items": [1, 2, 3]}


@app.get("/sse")
async def sse(n: int = 10000):
    async def events():
        for i in range(1, n + 1):
            yield {"event": "counter", "id": str(i), "data": str(i)}

    return EventSourceResponse(events(), sep="\n", ping=3600)
