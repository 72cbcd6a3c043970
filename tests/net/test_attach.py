"""The loop run by asyncio (``Loop.attach``), on every twin and on both asyncio loops.

The contract is the "Run by asyncio" part of the theory of operation in
``conduit/net/_loop_py.py``: the driver watches our epoll descriptor and holds one timer
for our nearest timer; whatever is queued from outside one of our turns (a callback, a
timer, a transport write from an asyncio task) gets a turn without any other event to
wake it. A missing wake-up shows here as a condition that never comes true (the deadline
fails the test), never as a slow test.
"""

from __future__ import annotations

import asyncio
import socket
import threading

import pytest
import test_loop
from test_loop import MIB, Recorder, loop_transport, tcp_pair

loop = test_loop.loop  # the fixtures: a fresh loop of each twin; sockets closed at teardown
peers = test_loop.peers

DEADLINE_S = 5.0

DRIVERS = ["asyncio"]
try:
    import uvloop

    DRIVERS.append("uvloop")
except ImportError:  # optional: the asyncio runs cover the contract
    uvloop = None


@pytest.fixture(params=DRIVERS)
def driver(request):
    drv = uvloop.new_event_loop() if request.param == "uvloop" else asyncio.new_event_loop()
    yield drv
    if not drv.is_closed():
        drv.close()


@pytest.fixture
def attached(loop, driver):
    loop.attach(driver)
    yield loop, driver
    loop.detach()


def on_thread(fn, *args):
    """``fn(*args)`` in a thread of its own, its result or exception brought back.

    NOTE: an asyncio loop cannot run in a thread where another one runs, and Playwright's
    sync API (the browser tests, earlier in the same session) leaves one running in the
    main thread."""
    box: dict = {}

    def run():
        try:
            box["value"] = fn(*args)
        except BaseException as exc:  # re-raised in the test's thread
            box["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(DEADLINE_S * 4)
    assert not thread.is_alive(), "the driver did not return"
    if "error" in box:
        raise box["error"]
    return box.get("value")


def run_driver_until(driver, condition, what: str) -> None:
    """Run the asyncio loop until ``condition()``; fail after DEADLINE_S."""

    async def wait():
        while not condition():
            await asyncio.sleep(0.001)

    try:
        on_thread(driver.run_until_complete, asyncio.wait_for(wait(), DEADLINE_S))
    except asyncio.TimeoutError:
        raise AssertionError(f"not within {DEADLINE_S} s: {what}") from None


def test_call_soon_from_an_asyncio_callback_runs(attached):
    loop, driver = attached
    ran = []
    driver.call_soon(lambda: loop.call_soon(ran.append, "ours"))
    run_driver_until(driver, lambda: ran, "a conduit callback queued from asyncio")
    assert ran == ["ours"]


def test_timers_fire_and_an_earlier_one_rearms_the_driver(attached):
    loop, driver = attached
    fired = []
    loop.call_later(0.2, fired.append, "late")
    # added later, due earlier: the driver's one timer must move forward for it
    driver.call_soon(lambda: loop.call_later(0.01, fired.append, "early"))
    run_driver_until(driver, lambda: len(fired) == 2, "both timers")
    assert fired == ["early", "late"]


def test_a_write_from_an_asyncio_task_is_flushed(attached, peers):
    """The case a missing kick would lose: bytes written outside our turn, with no timer
    and no I/O to give us another one."""
    loop, driver = attached
    side, peer = tcp_pair(peers)
    transport = loop_transport(loop, side, Recorder())
    peer.setblocking(False)
    received = bytearray()

    async def writer():
        await asyncio.sleep(0)
        transport.write(b"from a task")  # queued in the outbox: flushed by a turn

    def read():
        try:
            received.extend(peer.recv(MIB))
        except BlockingIOError:
            pass
        return bytes(received) == b"from a task"

    on_thread(driver.run_until_complete, writer())
    run_driver_until(driver, read, "the task's bytes at the peer")


def test_call_soon_threadsafe_wakes_the_driver(attached):
    loop, driver = attached
    ran = threading.Event()
    thread = threading.Thread(target=lambda: loop.call_soon_threadsafe(ran.set))

    async def start():
        thread.start()

    on_thread(driver.run_until_complete, start())
    run_driver_until(driver, ran.is_set, "a callback from another thread")
    thread.join()


def test_io_callbacks_run_when_the_driver_sees_our_descriptor(attached, peers):
    loop, driver = attached
    a, b = socket.socketpair()
    peers.extend([a, b])
    a.setblocking(False)
    got = []

    def on_readable():
        got.append(a.recv(100))
        loop.remove_reader(a.fileno())

    loop.add_reader(a.fileno(), on_readable)
    b.send(b"ping")
    run_driver_until(driver, lambda: got, "the reader callback")
    assert got == [b"ping"]


def test_stop_stops_the_driver_and_detach_lets_go(loop, driver):
    loop.attach(driver)
    with pytest.raises(RuntimeError, match="already attached"):
        loop.attach(driver)
    loop.call_later(0.01, loop.stop)
    on_thread(driver.run_forever)  # returns: our stop() stopped it
    loop.detach()
    assert loop.driver is None
    fired = []
    loop.call_later(0.0, fired.append, 1)  # standalone again: run by its own run_forever
    loop.call_later(0.01, loop.stop)
    loop.run_forever()
    assert fired == [1]
