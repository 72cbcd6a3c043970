"""The floor of the ticks scenario: the least server an asyncio producer can stream through.

Not a server anyone would deploy: uvloop and a bare ``asyncio.Protocol``, no HTTP parsing
beyond the request line and the blank line, no routing, no limits, no flow control. Each
stream is the same async generator as the other peers' /ticks (awaiting asyncio.sleep until
each event is due) and each event is one ``transport.write`` of one chunk, which uvloop
sends at once. The collector is tuned as conduit tunes it (gc.freeze after start, first
threshold 10,000). What it costs per event is what asyncio and the kernel cost, so it shows
how much of any peer's ticks figure is the server and how much is the shape.

    GET /ticks?n=N&rate=R   N events at R events/s, then the last chunk
    GET /count?n=N          N events at once (the harness's readiness probe)
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import time
from urllib.parse import parse_qsl, urlsplit

import uvloop

HEAD = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n")


async def ticks(n: int, rate: float):
    period = 1.0 / rate
    start = time.monotonic()
    for k in range(n):
        due = start + k * period
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        yield f"event: tick\ndata: {int(due * 1e9)}\n\n".encode()


async def count(n: int):
    for i in range(1, n + 1):
        yield f"id: {i}\nevent: counter\ndata: {i}\n\n".encode()


class Stream(asyncio.Protocol):
    def connection_made(self, transport) -> None:
        self.transport = transport
        self.head = b""
        self.task = None

    def data_received(self, data: bytes) -> None:
        if self.task is not None:
            return
        self.head += data
        if b"\r\n\r\n" not in self.head:
            return
        target = self.head.split(b"\r\n", 1)[0].split(b" ")[1].decode()
        url = urlsplit(target)
        query = dict(parse_qsl(url.query))
        if url.path == "/ticks":
            source = ticks(int(query.get("n", "100")), float(query.get("rate", "100")))
        elif url.path == "/count":
            source = count(int(query.get("n", "1")))
        else:
            self.transport.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n"
                                 b"Connection: close\r\n\r\n")
            self.transport.close()
            return
        self.transport.write(HEAD)
        self.task = asyncio.get_running_loop().create_task(self.run(source))

    async def run(self, source) -> None:
        write = self.transport.write
        async for frame in source:
            write(b"%x\r\n%s\r\n" % (len(frame), frame))
        write(b"0\r\n\r\n")

    def connection_lost(self, exc) -> None:
        if self.task is not None:
            self.task.cancel()


async def main(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Stream, "127.0.0.1", port, backlog=4096)
    gc.freeze()
    gc.set_threshold(10_000, *gc.get_threshold()[1:])
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    uvloop.run(main(parser.parse_args().port))
