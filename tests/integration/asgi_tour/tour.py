"""A FastAPI "feature tour": one app using the features people rely on, served by conduit
and by uvicorn in tests/integration/test_asgi_differential.py (same requests, same
answers expected).

    python -m conduit run tests/integration/asgi_tour/tour.py:app
    python -m uvicorn tour:app --app-dir tests/integration/asgi_tour
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

from fastapi import (
    BackgroundTasks,
    Cookie,
    Depends,
    FastAPI,
    File,
    Form,
    Header,
    HTTPException,
    Query,
    Request,
    UploadFile,
)
from fastapi.middleware.cors import CORSMiddleware
from fastapi.middleware.gzip import GZipMiddleware
from fastapi.responses import JSONResponse, PlainTextResponse, RedirectResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

HERE = Path(__file__).resolve().parent
app = FastAPI(title="tour")
app.add_middleware(GZipMiddleware, minimum_size=500)
app.add_middleware(CORSMiddleware, allow_origins=["https://app.example.com"],
                   allow_credentials=True, allow_methods=["GET", "POST"],
                   allow_headers=["X-Token", "Content-Type"])
app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

JOBS: list[str] = []


class Item(BaseModel):
    name: str = Field(min_length=1)
    price: float = Field(gt=0)
    tags: list[str] = []


class TeapotError(Exception):
    pass


@app.exception_handler(TeapotError)
async def teapot(request: Request, exc: TeapotError):
    return JSONResponse({"error": "teapot", "path": request.url.path}, status_code=418)


def token(x_token: Annotated[str | None, Header()] = None) -> str:
    if x_token != "secret":
        raise HTTPException(status_code=401, detail="bad token",
                            headers={"WWW-Authenticate": "Token"})
    return x_token


@app.get("/")
async def root():
    return {"hello": "tour"}


@app.get("/items/{item_id}")
async def read_item(item_id: int, q: Annotated[str | None, Query(max_length=5)] = None):
    return {"item_id": item_id, "q": q}


@app.post("/items", status_code=201)
async def create_item(item: Item):
    return {"created": item.model_dump()}


@app.get("/private")
async def private(value: Annotated[str, Depends(token)]):
    return {"token": value}


@app.post("/form")
async def form(name: Annotated[str, Form()], age: Annotated[int, Form()]):
    return {"name": name, "age": age}


@app.post("/upload")
async def upload(file: Annotated[UploadFile, File()], note: Annotated[str, Form()] = ""):
    data = await file.read()
    return {"filename": file.filename, "size": len(data), "type": file.content_type,
            "note": note, "head": data[:8].hex()}


@app.get("/cookie/set")
async def set_cookie():
    response = JSONResponse({"set": True})
    response.set_cookie("session", "abc123", httponly=True, samesite="lax")
    return response


@app.get("/cookie/get")
async def get_cookie(session: Annotated[str | None, Cookie()] = None):
    return {"session": session}


@app.get("/redirect")
async def redirect():
    return RedirectResponse("/items/1?q=r", status_code=307)


@app.get("/big")
async def big():
    return PlainTextResponse("gzip me " * 500)


@app.get("/teapot")
async def brew():
    raise TeapotError()


@app.get("/missing")
async def missing():
    raise HTTPException(status_code=404, detail="no such thing")


@app.get("/crash")
async def crash():
    raise ValueError("boom")


@app.get("/stream")
async def stream():
    async def lines():
        for i in range(5):
            yield f"line {i}\n"
            await asyncio.sleep(0)

    return StreamingResponse(lines(), media_type="text/plain")


@app.post("/jobs")
async def add_job(name: str, background: BackgroundTasks):
    background.add_task(JOBS.append, name)
    return {"queued": name}


@app.get("/jobs")
async def list_jobs():
    return {"jobs": JOBS}


@app.head("/head")
@app.get("/head")
async def head():
    return PlainTextResponse("body for GET")


@app.get("/headers")
async def echo_headers(request: Request):
    return {"x-multi": request.headers.getlist("x-multi"), "host": request.headers["host"],
            "url": str(request.url)}
