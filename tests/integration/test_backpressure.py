"""A slow reader: the server stops pulling from the handler instead of buffering without
bound, and the stream continues once the client reads again."""

from __future__ import annotations

import re

import pytest
from integration_helpers import RawClient, wait_for

import conduit
from conduit import App, SSEEvent

HIGH_WATER = 16 * 1024
LOW_WATER = 4 * 1024
ITEM = "y" * 1000  # about 1 KiB per frame


@pytest.fixture
def server(serve):
    app = App()
    produced = {"n": 0}

    @app.get("/sync")
    def endless_sync(request):
        while True:
            produced["n"] += 1
            yield SSEEvent(ITEM, id=produced["n"])

    @app.get("/async")
    async def endless_async(request):
        while True:
            produced["n"] += 1
            yield SSEEvent(ITEM, id=produced["n"])
            if produced["n"] % 8 == 0:
                await conduit.sleep(0)

    running = serve(app, high_water_bytes=HIGH_WATER, low_water_bytes=LOW_WATER,
                    heartbeat_seconds=0)
    running.produced = produced
    return running


def outbox_bytes(server) -> int:
    return server.call(lambda: sum(c.transport.get_write_buffer_size()
                                   for c in server.server.connections))


def wait_paused_for_good(server) -> None:
    """Paused, with unsent bytes above low water, in two loop turns in a row (the socket
    refused more in between): not the pause of a moment before the kernel takes it all."""
    previous = None

    def state():
        conns = server.server.connections
        return server.call(lambda: (
            any(c.stream is not None and c.stream.paused for c in conns),
            server.produced["n"],
            sum(c.transport.get_write_buffer_size() for c in conns)))

    def steady():
        nonlocal previous
        current = state()
        ok = (previous is not None and previous[0] and current[0]
              and previous[1] == current[1] and current[2] > LOW_WATER)
        previous = current
        return ok

    wait_for(steady, what="the pump to stay paused")


@pytest.mark.parametrize("path", ["/sync", "/async"])
def test_slow_reader_pauses_the_generator_then_resumes(server, path):
    with RawClient(server.address, rcvbuf=8192) as client:
        client.send(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        assert client.read_response(head_only=True).status == 200
        # The client reads nothing more. The pump must pause...
        wait_paused_for_good(server)
        paused_at = server.produced["n"]
        outbox = outbox_bytes(server)
        # ...and stay paused: nothing more is produced over a couple of sweeps.
        server.wait_sweeps(2)
        assert server.produced["n"] == paused_at
        assert outbox_bytes(server) == outbox
        # What was produced fits in the socket buffers plus about the high-water mark
        # (an unbounded server would have produced millions of events by now).
        assert paused_at * len(ITEM) < 8 * 1024 * 1024, paused_at
        # The server's memory for this connection is bounded by the watermark: one batch
        # past high water at most.
        assert outbox <= 2 * HIGH_WATER + 2 * len(ITEM), outbox

        # Now the client reads: the stream continues well past the pause point.
        target = paused_at + 200
        last_id = 0
        while last_id < target:
            _, payload = client.read_chunk()
            assert payload, "the stream ended"
            ids = re.findall(rb"^id: (\d+)$", payload, re.M)
            assert ids
            last_id = int(ids[-1])
        assert server.produced["n"] >= target
