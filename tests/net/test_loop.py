"""The loop layer over real sockets, on every twin (fixture ``net_loop``).

The contract is the theory-of-operation docstring of ``conduit/net/_loop_py.py``: one loop
turn waits for I/O, dispatches it, runs expired timers and the callbacks that were ready,
then flushes every transport written to during the turn with one system call.

Every test drives the loop in the test thread with ``run_until`` (run turns until a
condition holds; a timer stops the loop at a generous deadline and the test fails) or
``run_turns`` (exactly N turns, for "nothing happens" checks). Nothing sleeps and hopes;
no assertion is about speed.
"""

from __future__ import annotations

import errno
import faulthandler
import fcntl
import gc
import logging
import os
import random
import socket
import struct
import sys
import threading
import time

import pytest

DEADLINE_S = 5.0
HANG_GUARD_S = 120.0
MIB = 1 << 20


# -- driving the loop -------------------------------------------------------------------


def run_until(loop, condition, timeout: float = DEADLINE_S, what: str = "") -> None:
    """Run loop turns until ``condition()`` is true; fail if ``timeout`` passes first."""
    if condition():
        return
    state = {"timed_out": False}

    def on_deadline():
        state["timed_out"] = True
        loop.stop()

    def check():
        if condition():
            loop.stop()
        elif not state["timed_out"]:
            loop.call_later(0.001, check)

    guard = loop.call_later(timeout, on_deadline)
    loop.call_soon(check)
    loop.run_forever()
    guard.cancel()
    assert not state["timed_out"], f"condition not met within {timeout} s: {what or condition}"


def run_turns(loop, turns: int) -> None:
    """Run exactly ``turns`` loop turns (each polls I/O without blocking)."""
    left = [turns]

    def tick():
        left[0] -= 1
        if left[0] <= 0:
            loop.stop()
        else:
            loop.call_soon(tick)

    guard = loop.call_later(DEADLINE_S, loop.stop)
    loop.call_soon(tick)
    loop.run_forever()
    guard.cancel()
    assert left[0] == 0, "the loop stopped before running the requested turns"


# -- sockets and protocols --------------------------------------------------------------


class Recorder:
    """A protocol that records every call, with hooks for the interesting ones."""

    def __init__(self, transport=None):
        self.transport = transport
        self.calls: list[str] = []
        self.data = bytearray()
        self.lost: list = []
        self.paused_at: list[int] = []
        self.resumed_at: list[int] = []
        self.on_data = None
        self.on_eof = None
        self.on_made = None

    def count(self, name: str) -> int:
        return self.calls.count(name)

    def connection_made(self, transport):
        self.calls.append("connection_made")
        self.transport = transport
        if self.on_made is not None:
            self.on_made(transport)

    def data_received(self, data):
        self.calls.append("data_received")
        self.data += data
        if self.on_data is not None:
            self.on_data(data)

    def eof_received(self):
        self.calls.append("eof_received")
        if self.on_eof is not None:
            self.on_eof()

    def pause_writing(self):
        self.calls.append("pause_writing")
        self.paused_at.append(self.transport.get_write_buffer_size())

    def resume_writing(self):
        self.calls.append("resume_writing")
        self.resumed_at.append(self.transport.get_write_buffer_size())

    def connection_lost(self, exc):
        self.calls.append("connection_lost")
        self.lost.append(exc)


class PeerReader:
    """Reads a peer socket from the loop (non-blocking) until EOF or an error."""

    def __init__(self, loop, sock):
        self.loop = loop
        self.sock = sock
        self.data = bytearray()
        self.eof = False
        self.error = None
        sock.setblocking(False)

    def start(self):
        self.loop.add_reader(self.sock.fileno(), self._on_readable)

    def stop(self):
        self.loop.remove_reader(self.sock.fileno())

    def _on_readable(self):
        while True:
            try:
                chunk = self.sock.recv(MIB)
            except BlockingIOError:
                return
            except OSError as exc:
                self.error = exc
                self.stop()
                return
            if not chunk:
                self.eof = True
                self.stop()
                return
            self.data += chunk


_transports: list = []


@pytest.fixture(autouse=True)
def _hang_guard():
    """If a broken stop() or wake-up ever hangs the loop, end the run with tracebacks."""
    faulthandler.dump_traceback_later(HANG_GUARD_S, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


@pytest.fixture
def loop(net_loop):
    """A fresh loop; at teardown every transport the test made is aborted, then it closes."""
    lp = net_loop.Loop()
    yield lp
    while _transports:
        _transports.pop().abort()
    lp.close()


@pytest.fixture
def peers():
    """Sockets the test made (peers, clients, transport sides); closed at teardown.

    Closing a socket the transport already closed is a no-op (its fileno is -1).
    """
    owned: list[socket.socket] = []
    yield owned
    while _transports:  # first, so no transport is left on a socket closed under it
        _transports.pop().abort()
    for sock in owned:
        if sock.fileno() != -1:
            sock.close()


def tcp_pair(peers, peer_rcvbuf: int | None = None, sndbuf: int | None = None):
    """(transport side, peer side) of a real TCP connection on 127.0.0.1.

    The transport side is non-blocking and belongs to the transport once one is made on it;
    the peer side is registered in ``peers`` to be closed at teardown.
    """
    with socket.create_server(("127.0.0.1", 0)) as server:
        peer = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        peers.append(peer)
        if peer_rcvbuf is not None:  # before connect, so the window is small from the start
            peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, peer_rcvbuf)
        peer.connect(server.getsockname())
        side, _ = server.accept()
    peers.append(side)
    if sndbuf is not None:
        side.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
    side.setblocking(False)
    return side, peer


def seqpacket_pair(peers):
    """(transport side, peer side) of a SOCK_SEQPACKET pair: one send() is one recv()."""
    side, peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    peers.extend([side, peer])
    side.setblocking(False)
    peer.setblocking(False)
    return side, peer


def unix_pair(peers):
    side, peer = socket.socketpair()
    peers.extend([side, peer])
    side.setblocking(False)
    return side, peer


def nothing_readable(sock) -> bool:
    """True when a non-blocking recv on ``sock`` finds no bytes and no EOF."""
    try:
        sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except BlockingIOError:
        return True
    return False


def fd_is_closed(fd: int, inode: int) -> bool:
    """True when ``fd`` no longer refers to the socket with ``inode``."""
    try:
        return os.fstat(fd).st_ino != inode
    except OSError as exc:
        return exc.errno == errno.EBADF


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def epoll_registrations() -> dict[str, int]:
    """For every epoll instance of the process: how many fds it watches (from fdinfo)."""
    counts = {}
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}") != "anon_inode:[eventpoll]":
                continue
            with open(f"/proc/self/fdinfo/{fd}") as info:
                counts[fd] = sum(1 for line in info if line.startswith("tfd:"))
        except OSError:
            continue
    return counts


EPOLLIN, EPOLLOUT = 0x1, 0x4


def epoll_events_for(fd: int) -> int | None:
    """The event mask an epoll instance of this process watches ``fd`` for (None: none)."""
    for epfd in epoll_registrations():
        with open(f"/proc/self/fdinfo/{epfd}") as info:
            for line in info:
                fields = line.split()
                if fields[:1] == ["tfd:"] and int(fields[1]) == fd:
                    return int(fields[3], 16)
    return None


def payload(size: int, seed: int = 1) -> bytes:
    return random.Random(seed).randbytes(size)


# -- timers and callbacks ---------------------------------------------------------------


def test_call_later_fires_in_time_order(loop):
    fired = []
    delays = {"d": 0.04, "a": 0.0, "c": 0.02, "e": 0.05, "b": 0.01, "c2": 0.03}
    deadlines = {}
    for name, delay in delays.items():
        loop.call_later(delay, lambda n=name: fired.append((n, loop.time())))
        deadlines[name] = loop.time() + delay
    run_until(loop, lambda: len(fired) == len(delays))
    assert [name for name, _ in fired] == sorted(delays, key=delays.get)
    for name, at in fired:  # never early
        assert at >= deadlines[name] - 1e-3


def test_call_later_passes_arguments(loop):
    got = []
    loop.call_later(0, lambda *args: got.append(args), 1, "two", None)
    loop.call_soon(lambda *args: got.append(args), "soon")
    run_until(loop, lambda: len(got) == 2)
    assert sorted(got, key=len) == [("soon",), (1, "two", None)]


def test_cancelled_timer_does_not_fire(loop, caplog):
    fired = []
    doomed = loop.call_later(0.01, fired.append, "doomed")
    loop.call_later(0.005, fired.append, "kept-early")
    loop.call_later(0.03, fired.append, "kept-late")
    soon = loop.call_soon(fired.append, "soon-doomed")
    doomed.cancel()
    soon.cancel()
    with caplog.at_level(logging.ERROR):
        run_until(loop, lambda: "kept-late" in fired)
        run_turns(loop, 3)
    assert fired == ["kept-early", "kept-late"]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    doomed.cancel()  # cancelling twice, or after the loop skipped it, is harmless


def test_timer_cancelled_by_an_earlier_callback_does_not_fire(loop):
    fired = []
    late = loop.call_later(0.02, fired.append, "late")
    loop.call_later(0.01, late.cancel)
    loop.call_later(0.04, fired.append, "end")
    run_until(loop, lambda: "end" in fired)
    assert fired == ["end"]


def test_call_at_uses_loop_time_and_orders_with_call_later(loop):
    fired = []
    now = loop.time()
    loop.call_at(now + 0.03, fired.append, "at+30ms")
    loop.call_later(0.015, fired.append, "later+15ms")
    loop.call_at(now - 1.0, fired.append, "at-past")  # already due: next turn
    loop.call_at(now + 0.005, fired.append, "at+5ms")
    run_until(loop, lambda: len(fired) == 4)
    assert fired == ["at-past", "at+5ms", "later+15ms", "at+30ms"]


def test_call_at_does_not_fire_early(loop):
    fired = []
    when = loop.time() + 0.03
    loop.call_at(when, lambda: fired.append(loop.time()))
    run_until(loop, lambda: fired)
    assert fired[0] >= when - 1e-3


def test_call_soon_is_fifo_and_new_callbacks_run_next_turn(loop, peers):
    side, peer = unix_pair(peers)
    peer.setblocking(False)
    transport = loop_transport(loop, side, Recorder())
    order = []
    seen_by_d = []

    def a():
        order.append("a")
        transport.write(b"flushed at the end of a's turn")
        loop.call_soon(d)

    def d():
        order.append("d")
        # d runs on a later turn: the end-of-turn flush has happened in between.
        seen_by_d.append(not nothing_readable(peer))

    loop.call_soon(a)
    loop.call_soon(order.append, "b")
    loop.call_soon(order.append, "c")
    run_until(loop, lambda: "d" in order)
    assert order == ["a", "b", "c", "d"]
    assert seen_by_d == [True]


def test_self_rescheduling_callback_does_not_starve_timers_or_io(loop, peers):
    side, peer = unix_pair(peers)
    recorder = Recorder()
    loop_transport(loop, side, recorder)
    peer.sendall(b"ping")
    spins = [0]
    timer_fired_at = []
    cap = 200_000

    def spin():
        spins[0] += 1
        if timer_fired_at and recorder.data == b"ping":
            loop.stop()
        elif spins[0] < cap:
            loop.call_soon(spin)
        else:
            loop.stop()

    loop.call_later(0.01, lambda: timer_fired_at.append(spins[0]))
    loop.call_soon(spin)
    loop.run_forever()
    assert timer_fired_at and timer_fired_at[0] < cap, "a call_soon chain starved the timers"
    assert recorder.data == b"ping", "a call_soon chain starved I/O"


def test_raising_callback_is_logged_and_the_loop_goes_on(loop, caplog):
    ran = []

    class Boom(Exception):
        pass

    def boom(label):
        raise Boom(label)

    loop.call_soon(boom, "soon")
    loop.call_soon(ran.append, "after-soon")
    loop.call_later(0.005, boom, "timer")
    loop.call_later(0.01, ran.append, "after-timer")
    with caplog.at_level(logging.ERROR):
        run_until(loop, lambda: "after-timer" in ran)
    assert ran == ["after-soon", "after-timer"]
    logged = [
        r.exc_info[1]
        for r in caplog.records
        if r.levelno >= logging.ERROR and r.exc_info and isinstance(r.exc_info[1], Boom)
    ]
    assert sorted(str(e) for e in logged) == ["soon", "timer"]


# -- thread-safe wake-up, stop ----------------------------------------------------------

# x86_64 / aarch64 numbers of the system calls a loop may block in.
_WAIT_SYSCALLS = {
    "x86_64": {7, 23, 232, 270, 271, 281, 441},  # poll select epoll_wait pselect6 ppoll
    "aarch64": {22, 72, 73, 441},  # epoll_pwait pselect6 ppoll epoll_pwait2
}


def blocked_in_wait(native_tid: int) -> bool:
    """True when the thread sits in a poll/select/epoll wait (per /proc/.../syscall)."""
    waits = _WAIT_SYSCALLS.get(os.uname().machine)
    try:
        with open(f"/proc/self/task/{native_tid}/syscall") as f:
            first = f.read().split()[0]
    except (OSError, IndexError):
        return False
    return waits is not None and first.isdigit() and int(first) in waits


@pytest.mark.skipif(os.uname().machine not in _WAIT_SYSCALLS, reason="needs /proc syscall map")
def test_call_soon_threadsafe_wakes_a_loop_blocked_in_its_wait(loop, peers):
    ran = threading.Event()
    started = threading.Event()
    observed_blocked = []
    rescued = []
    rescue_r, rescue_w = socket.socketpair()
    peers.extend([rescue_r, rescue_w])
    loop_tid = threading.get_native_id()

    def on_rescue():  # only if the wake-up failed: end the test instead of hanging
        rescued.append(True)
        loop.stop()

    def callback():
        ran.set()
        loop.stop()

    def helper():
        started.wait(DEADLINE_S)
        deadline = time.monotonic() + DEADLINE_S
        while time.monotonic() < deadline:
            if blocked_in_wait(loop_tid):
                observed_blocked.append(True)
                break
            time.sleep(0.001)
        loop.call_soon_threadsafe(callback)
        if not ran.wait(DEADLINE_S):
            rescue_w.send(b"x")

    # No timers and nothing ready: after `started` the loop blocks in its wait.
    loop.add_reader(rescue_r.fileno(), on_rescue)
    loop.call_soon(started.set)
    thread = threading.Thread(target=helper, daemon=True)
    thread.start()
    loop.run_forever()
    thread.join(2 * DEADLINE_S)
    loop.remove_reader(rescue_r.fileno())
    assert observed_blocked, "the loop never blocked in its wait"
    assert ran.is_set() and not rescued, "call_soon_threadsafe did not wake the blocked loop"


def test_call_soon_threadsafe_from_many_threads(loop):
    got = []
    per_thread, n_threads = 200, 4
    barrier = threading.Barrier(n_threads)

    def producer(k):
        barrier.wait(DEADLINE_S)
        for i in range(per_thread):
            loop.call_soon_threadsafe(got.append, (k, i))

    threads = [threading.Thread(target=producer, args=(k,)) for k in range(n_threads)]
    for t in threads:
        t.start()
    run_until(loop, lambda: len(got) == per_thread * n_threads)
    for t in threads:
        t.join(DEADLINE_S)
    assert sorted(got) == [(k, i) for k in range(n_threads) for i in range(per_thread)]
    for k in range(n_threads):  # FIFO per producer
        assert [i for kk, i in got if kk == k] == list(range(per_thread))


def test_stop_ends_run_forever_and_it_can_run_again(loop):
    ran = []
    rescued = []

    def rescue():  # only if stop() failed
        rescued.append(True)
        loop.stop()

    guard = loop.call_later(DEADLINE_S, rescue)
    loop.call_soon(loop.stop)
    loop.run_forever()  # returns: stop() ended it
    assert not rescued
    loop.call_later(0.005, lambda: (ran.append("second"), loop.stop()))
    loop.run_forever()
    guard.cancel()
    assert not rescued
    assert ran == ["second"]
    loop.call_soon(ran.append, "third")
    run_until(loop, lambda: "third" in ran)
    assert ran == ["second", "third"]


def test_stop_from_a_callback_finishes_the_turn_then_returns(loop):
    ran = []
    loop.call_soon(loop.stop)
    loop.call_soon(ran.append, "same turn")
    loop.run_forever()
    assert ran == ["same turn"]


def test_run_forever_refuses_to_nest(loop):
    outcome = []

    def nested():
        try:
            loop.run_forever()
        except RuntimeError:
            outcome.append("refused")
        else:
            outcome.append("ran")
        loop.stop()

    loop.call_soon(nested)
    guard = loop.call_later(DEADLINE_S, loop.stop)
    loop.run_forever()
    guard.cancel()
    assert outcome == ["refused"]


# -- transport writes -------------------------------------------------------------------


def loop_transport(loop, sock, protocol, **watermarks):
    transport = _module_of(loop).Transport(loop, sock, protocol, **watermarks)
    protocol.transport = transport
    _transports.append(transport)
    return transport


def _module_of(loop):
    return sys.modules[type(loop).__module__]


def test_writes_in_one_turn_leave_in_one_send_at_the_end_of_the_turn(loop, peers):
    side, peer = seqpacket_pair(peers)
    transport = loop_transport(loop, side, Recorder())
    before_turn_end = []
    pieces = [b"one ", bytearray(b"two "), memoryview(b"three ")] + [b"%d," % i for i in range(100)]

    def write_all():
        for piece in pieces:
            transport.write(piece)
        before_turn_end.append(nothing_readable(peer))
        before_turn_end.append(transport.get_write_buffer_size())

    loop.call_soon(write_all)
    run_until(loop, lambda: not nothing_readable(peer))
    expected = b"".join(bytes(p) for p in pieces)
    assert before_turn_end == [True, len(expected)], "write() sent before the turn ended"
    assert peer.recv(MIB) == expected  # one record: one send
    assert nothing_readable(peer), "more than one send for one turn's writes"
    assert transport.get_write_buffer_size() == 0


def test_writes_in_separate_turns_leave_in_separate_sends(loop, peers):
    side, peer = seqpacket_pair(peers)
    transport = loop_transport(loop, side, Recorder())
    loop.call_soon(transport.write, b"first")
    run_until(loop, lambda: not nothing_readable(peer))
    loop.call_soon(transport.write, b"second")
    loop.call_soon(transport.write, b"+more")
    run_turns(loop, 2)
    assert peer.recv(MIB) == b"first"
    assert peer.recv(MIB) == b"second+more"
    assert nothing_readable(peer)


def test_writelines_sends_the_concatenation(loop, peers):
    side, peer = seqpacket_pair(peers)
    transport = loop_transport(loop, side, Recorder())

    def write_some():
        transport.write(b"head|")
        transport.writelines([b"a", bytearray(b"bc"), memoryview(b"def"), b""])
        transport.writelines(iter([b"|", b"tail"]))
        transport.writelines([])

    loop.call_soon(write_some)
    run_until(loop, lambda: not nothing_readable(peer))
    assert peer.recv(MIB) == b"head|abcdef|tail"
    assert nothing_readable(peer)


def test_many_small_writes_over_tcp_all_arrive_in_order(loop, peers):
    side, peer = tcp_pair(peers)
    transport = loop_transport(loop, side, Recorder())
    reader = PeerReader(loop, peer)
    reader.start()
    chunks = [b"event %d\n" % i for i in range(2000)]

    def write_in_turns(start=0):
        for chunk in chunks[start : start + 500]:
            transport.write(chunk)
        if start + 500 < len(chunks):
            loop.call_soon(write_in_turns, start + 500)

    loop.call_soon(write_in_turns)
    expected = b"".join(chunks)
    run_until(loop, lambda: len(reader.data) >= len(expected))
    assert reader.data == expected


@pytest.mark.parametrize(
    "watermarks",
    [{}, {"high_water": 200_000, "low_water": 50_000}],
    ids=["default-watermarks", "custom-watermarks"],
)
def test_partial_writes_pause_once_then_resume_once_and_deliver_everything(
    net_loop, loop, peers, watermarks
):
    high = watermarks.get("high_water", net_loop.DEFAULT_HIGH_WATER_BYTES)
    low = watermarks.get("low_water", net_loop.DEFAULT_LOW_WATER_BYTES)
    side, peer = tcp_pair(peers, peer_rcvbuf=4096, sndbuf=4096)
    recorder = Recorder()
    transport = loop_transport(loop, side, recorder, **watermarks)
    data = payload(MIB)
    sizes_after_write = []

    def write_all():
        for i in range(0, len(data), 64 * 1024):
            transport.write(data[i : i + 64 * 1024])
            sizes_after_write.append(transport.get_write_buffer_size())

    loop.call_soon(write_all)
    run_until(loop, lambda: 0 < transport.get_write_buffer_size() < len(data), what="a first send")
    assert sizes_after_write[-1] == len(data)
    assert recorder.count("pause_writing") == 1
    assert recorder.paused_at[0] > high
    # The peer does not read: the queue stays above the watermarks, nothing resumes.
    run_turns(loop, 50)
    stalled = transport.get_write_buffer_size()
    assert low < stalled < len(data)
    assert recorder.count("pause_writing") == 1
    assert recorder.count("resume_writing") == 0
    assert not transport.is_closing()
    assert epoll_events_for(transport.fd) & EPOLLOUT, "a stalled outbox must watch writability"

    reader = PeerReader(loop, peer)
    reader.start()
    run_until(
        loop,
        lambda: len(reader.data) >= len(data) and transport.get_write_buffer_size() == 0,
        timeout=15.0,
        what="the peer reads everything",
    )
    assert reader.data == data
    assert recorder.count("pause_writing") == 1
    assert recorder.count("resume_writing") == 1
    assert recorder.resumed_at[0] <= low
    assert recorder.calls == ["pause_writing", "resume_writing"]
    assert reader.error is None and not reader.eof
    # Drained: the fd is watched for reading only (else every turn would spin on it).
    assert epoll_events_for(transport.fd) & (EPOLLIN | EPOLLOUT) == EPOLLIN


def test_watermark_boundaries_with_custom_values(loop, peers):
    side, peer = tcp_pair(peers)
    recorder = Recorder()
    transport = loop_transport(loop, side, recorder, high_water=1000, low_water=100)
    assert (transport.high_water, transport.low_water) == (1000, 100)
    reader = PeerReader(loop, peer)
    reader.start()
    checks = []

    def write_to_the_mark():
        transport.write(b"x" * 999)
        transport.write(b"x")  # exactly high_water queued: not above it
        checks.append(recorder.count("pause_writing"))
        transport.write(b"y")  # one byte above: pause, synchronously
        checks.append(recorder.count("pause_writing"))
        transport.writelines([b"z" * 5000])  # still paused: no second call
        checks.append(recorder.count("pause_writing"))

    loop.call_soon(write_to_the_mark)
    run_until(loop, lambda: recorder.count("resume_writing") == 1)
    assert checks == [0, 1, 1]
    assert recorder.paused_at == [1001]
    assert recorder.resumed_at[0] <= 100
    run_until(loop, lambda: len(reader.data) == 6001)
    assert reader.data == b"x" * 1000 + b"y" + b"z" * 5000

    # A second round, through writelines, pauses and resumes again, once each.
    def writelines_to_the_mark():
        transport.writelines([b"w" * 600, b"w" * 400])  # exactly high_water
        checks.append(recorder.count("pause_writing"))
        transport.writelines([b"", b"w"])
        checks.append(recorder.count("pause_writing"))

    loop.call_soon(writelines_to_the_mark)
    run_until(loop, lambda: recorder.count("resume_writing") == 2)
    run_until(loop, lambda: len(reader.data) == 7002)
    assert checks == [0, 1, 1, 1, 2]
    assert recorder.calls == ["pause_writing", "resume_writing"] * 2
    assert recorder.paused_at == [1001, 1001]


def test_writes_under_the_high_water_mark_never_pause(loop, peers):
    side, peer = tcp_pair(peers)
    recorder = Recorder()
    transport = loop_transport(loop, side, recorder, high_water=4096, low_water=1024)
    reader = PeerReader(loop, peer)
    reader.start()
    for _ in range(50):
        loop.call_soon(transport.write, b"q" * 4000)
        run_turns(loop, 1)
    run_until(loop, lambda: len(reader.data) == 200_000)
    assert recorder.calls == []


# -- closing ----------------------------------------------------------------------------


def test_close_after_writes_delivers_everything_then_eof(loop, peers):
    side, peer = tcp_pair(peers, peer_rcvbuf=4096, sndbuf=4096)
    recorder = Recorder()
    transport = loop_transport(loop, side, recorder)
    data = payload(300_000, seed=7)
    inside_close = []

    def write_then_close():
        transport.write(data[:100_000])
        transport.writelines([data[100_000:200_000], data[200_000:]])
        transport.close()
        inside_close.append((list(recorder.lost), transport.is_closing()))
        transport.write(b"ignored after close")

    loop.call_soon(write_then_close)
    run_turns(loop, 5)
    reader = PeerReader(loop, peer)
    reader.start()
    run_until(loop, lambda: reader.eof and recorder.lost, what="all bytes, EOF, lost")
    assert inside_close == [([], True)]
    assert reader.data == data
    assert reader.error is None
    run_turns(loop, 3)
    assert recorder.lost == [None]
    assert recorder.count("connection_lost") == 1


def test_close_while_the_outbox_is_stalled_still_delivers_everything(loop, peers):
    side, peer = tcp_pair(peers, peer_rcvbuf=4096, sndbuf=4096)
    recorder = Recorder()
    transport = loop_transport(loop, side, recorder)
    data = payload(MIB, seed=9)
    loop.call_soon(transport.write, data)
    run_until(loop, lambda: 0 < transport.get_write_buffer_size() < len(data))
    run_turns(loop, 5)
    transport.close()  # between turns, nothing else written this turn
    assert transport.is_closing() and recorder.lost == []
    reader = PeerReader(loop, peer)
    reader.start()
    run_until(loop, lambda: reader.eof and recorder.lost, timeout=15.0)
    assert reader.data == data
    assert recorder.lost == [None]


def test_close_with_an_empty_outbox_calls_connection_lost_on_the_next_turn(loop, peers):
    side, peer = tcp_pair(peers)
    recorder = Recorder()
    transport = loop_transport(loop, side, recorder)
    fd, inode = transport.fd, os.fstat(transport.fd).st_ino
    observed = []

    def close_twice():
        transport.close()
        observed.append(("sync", list(recorder.lost)))
        transport.close()
        transport.abort()
        loop.call_soon(lambda: observed.append(("next turn", list(recorder.lost))))

    loop.call_soon(close_twice)
    reader = PeerReader(loop, peer)
    reader.start()
    run_until(loop, lambda: reader.eof and len(observed) == 2)
    run_turns(loop, 3)
    assert observed == [("sync", []), ("next turn", [None])]
    assert recorder.lost == [None]
    assert reader.data == b""
    assert fd_is_closed(fd, inode)
    assert epoll_events_for(fd) is None
    assert transport.is_closing()


def test_abort_drops_queued_bytes(loop, peers):
    side, peer = tcp_pair(peers)
    recorder = Recorder()
    transport = loop_transport(loop, side, recorder)
    inside_abort = []

    def write_then_abort():
        transport.write(b"never sent" * 100)
        transport.abort()
        inside_abort.append(list(recorder.lost))
        transport.write(b"ignored")
        transport.close()

    loop.call_soon(write_then_abort)
    reader = PeerReader(loop, peer)
    reader.start()
    run_until(loop, lambda: (reader.eof or reader.error) and recorder.lost)
    run_turns(loop, 3)
    assert inside_abort == [[]]
    assert reader.data == b""
    assert recorder.count("connection_lost") == 1
    assert transport.get_write_buffer_size() == 0


def test_abort_with_a_stalled_outbox_drops_the_rest(loop, peers):
    side, peer = tcp_pair(peers, peer_rcvbuf=4096, sndbuf=4096)
    recorder = Recorder()
    transport = loop_transport(loop, side, recorder)
    data = payload(MIB, seed=3)
    loop.call_soon(transport.write, data)
    run_until(loop, lambda: 0 < transport.get_write_buffer_size() < len(data))
    transport.abort()
    reader = PeerReader(loop, peer)
    reader.start()
    run_until(loop, lambda: (reader.eof or reader.error) and recorder.lost)
    run_turns(loop, 3)
    assert recorder.count("connection_lost") == 1
    assert 0 < len(reader.data) < len(data)
    assert reader.data == data[: len(reader.data)]


@pytest.mark.parametrize("mode", ["writing", "writing-not-reading", "idle"])
def test_peer_reset_closes_the_transport_once(loop, peers, caplog, mode):
    side, peer = tcp_pair(peers, peer_rcvbuf=4096, sndbuf=4096)
    recorder = Recorder()
    transport = loop_transport(loop, side, recorder)
    fd, inode = transport.fd, os.fstat(transport.fd).st_ino
    while_writing = mode != "idle"
    if mode == "writing-not-reading":  # only a failed send can reveal the reset
        transport.pause_reading()
    if while_writing:
        data = payload(MIB, seed=5)
        loop.call_soon(transport.write, data)
        run_until(loop, lambda: 0 < transport.get_write_buffer_size() < len(data))
        run_turns(loop, 5)
        assert transport.get_write_buffer_size() > 0
    else:
        loop.call_soon(transport.write, b"hello")
        run_until(loop, lambda: transport.get_write_buffer_size() == 0)
        run_turns(loop, 2)
    # SO_LINGER 0: close() sends RST instead of FIN.
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    peer.close()

    if while_writing:  # keep writing while the reset arrives

        def keep_writing():
            if not transport.is_closing():
                transport.write(b"more" * 1000)
                loop.call_soon(keep_writing)

        loop.call_soon(keep_writing)
    with caplog.at_level(logging.ERROR):
        run_until(loop, lambda: recorder.lost, what="connection_lost after RST")
        run_turns(loop, 5)
        transport.write(b"after the reset")
        transport.close()
        transport.abort()
        run_turns(loop, 3)
    assert recorder.count("connection_lost") == 1
    assert isinstance(recorder.lost[0], OSError)
    assert recorder.lost[0].errno in (errno.ECONNRESET, errno.EPIPE)
    assert transport.is_closing()
    assert fd_is_closed(fd, inode)
    assert epoll_events_for(fd) is None
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


# -- reading ----------------------------------------------------------------------------


def test_eof_from_the_peer_calls_eof_received_once_and_reading_stops(loop, peers):
    side, peer = tcp_pair(peers)
    recorder = Recorder()
    loop_transport(loop, side, recorder)
    peer.sendall(b"last words")
    peer.shutdown(socket.SHUT_WR)
    run_until(loop, lambda: recorder.count("eof_received") == 1)
    # EOF stays readable: a reader still registered would report it again every turn.
    run_turns(loop, 50)
    assert recorder.data == b"last words"
    assert recorder.count("eof_received") == 1
    assert recorder.calls[-1] == "eof_received"
    assert "connection_lost" not in recorder.calls


def test_eof_received_can_close_the_transport(loop, peers):
    side, peer = tcp_pair(peers)
    recorder = Recorder()
    transport = loop_transport(loop, side, recorder)
    recorder.on_eof = lambda: (transport.write(b"bye"), transport.close())
    reader = PeerReader(loop, peer)
    peer.shutdown(socket.SHUT_WR)
    reader.start()
    run_until(loop, lambda: recorder.lost and reader.eof)
    run_turns(loop, 3)
    assert reader.data == b"bye"
    assert recorder.calls == ["eof_received", "connection_lost"]
    assert recorder.lost == [None]


def test_pause_reading_holds_data_until_resume(loop, peers):
    side, peer = tcp_pair(peers)
    recorder = Recorder()
    transport = loop_transport(loop, side, recorder)
    peer.sendall(b"first")
    run_until(loop, lambda: recorder.data == b"first")

    transport.pause_reading()
    peer.sendall(b"held back")
    peer.shutdown(socket.SHUT_WR)
    run_turns(loop, 50)
    assert recorder.data == b"first"
    assert recorder.calls == ["data_received"]
    assert not (epoll_events_for(transport.fd) or 0) & EPOLLIN

    transport.resume_reading()
    run_until(loop, lambda: recorder.count("eof_received") == 1)
    assert recorder.data == b"firstheld back"


def test_pause_reading_from_inside_data_received(loop, peers):
    side, peer = tcp_pair(peers)
    recorder = Recorder()
    transport = loop_transport(loop, side, recorder)
    recorder.on_data = lambda data: transport.pause_reading()
    peer.sendall(b"one")
    run_until(loop, lambda: recorder.data == b"one")
    peer.sendall(b"two")
    run_turns(loop, 30)
    assert recorder.data == b"one"
    recorder.on_data = None
    transport.resume_reading()
    run_until(loop, lambda: recorder.data == b"onetwo")
    assert recorder.count("data_received") == 2


def test_large_inbound_stream_arrives_whole(loop, peers):
    side, peer = tcp_pair(peers)
    recorder = Recorder()
    loop_transport(loop, side, recorder)
    data = payload(MIB, seed=11)
    sender = threading.Thread(target=peer.sendall, args=(data,))
    sender.start()
    run_until(loop, lambda: len(recorder.data) >= len(data))
    sender.join(DEADLINE_S)
    assert recorder.data == data


# -- listening sockets ------------------------------------------------------------------


def test_create_listen_socket(net_loop):
    sock = net_loop.create_listen_socket("127.0.0.1", 0)
    try:
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR) != 0
        assert sock.getblocking() is False
        assert sock.type == socket.SOCK_STREAM
        host, port = sock.getsockname()[:2]
        assert host == "127.0.0.1" and port > 0
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1
    finally:
        sock.close()


def test_create_listen_socket_reuse_port(net_loop):
    first = net_loop.create_listen_socket("127.0.0.1", 0, reuse_port=True)
    try:
        port = first.getsockname()[1]
        assert first.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) != 0
        second = net_loop.create_listen_socket("127.0.0.1", port, reuse_port=True)
        second.close()
    finally:
        first.close()


class Accepted:
    """A protocol factory that keeps every protocol it made."""

    def __init__(self):
        self.protocols: list[Recorder] = []

    def __call__(self):
        protocol = Recorder()
        protocol.on_made = _transports.append
        self.protocols.append(protocol)
        return protocol

    def made(self) -> int:
        return sum(p.count("connection_made") for p in self.protocols)


def connect(peers, address) -> socket.socket:
    client = socket.create_connection(address, timeout=DEADLINE_S)
    peers.append(client)
    return client


def test_listener_accepts_with_nodelay_nonblocking_and_the_peer_address(net_loop, loop, peers):
    sock = net_loop.create_listen_socket("127.0.0.1", 0)
    accepted = Accepted()
    listener = net_loop.Listener(loop, sock, accepted, high_water=5000, low_water=500)
    try:
        assert listener.address == sock.getsockname()[:2]
        client = connect(peers, listener.address)
        run_until(loop, lambda: accepted.made() == 1)
        (protocol,) = accepted.protocols
        transport = protocol.transport
        assert protocol.calls == ["connection_made"]
        assert transport.peer == client.getsockname()
        assert (transport.high_water, transport.low_water) == (5000, 500)
        assert fcntl.fcntl(transport.fd, fcntl.F_GETFL) & os.O_NONBLOCK
        dup = socket.socket(fileno=os.dup(transport.fd))
        try:
            assert dup.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
            assert dup.getpeername() == client.getsockname()
        finally:
            dup.close()
        # The accepted transport is live both ways.
        client.sendall(b"hello server")
        run_until(loop, lambda: protocol.data == b"hello server")
        transport.write(b"hello client")
        run_turns(loop, 2)
        assert client.recv(100) == b"hello client"
    finally:
        listener.close()


def test_listener_accepts_many_connections_in_one_burst(net_loop, loop, peers):
    sock = net_loop.create_listen_socket("127.0.0.1", 0)
    accepted = Accepted()
    listener = net_loop.Listener(loop, sock, accepted)
    try:
        clients = [connect(peers, listener.address) for _ in range(200)]
        run_until(loop, lambda: accepted.made() == 200)
        assert {p.transport.peer for p in accepted.protocols} == {c.getsockname() for c in clients}
    finally:
        listener.close()


def test_listener_pause_and_resume_accepting(net_loop, loop, peers):
    sock = net_loop.create_listen_socket("127.0.0.1", 0)
    accepted = Accepted()
    listener = net_loop.Listener(loop, sock, accepted)
    try:
        listener.pause()
        listener.pause()
        connect(peers, listener.address)  # completes in the kernel's backlog
        run_turns(loop, 50)
        assert accepted.made() == 0
        listener.resume()
        listener.resume()
        run_until(loop, lambda: accepted.made() == 1)
        connect(peers, listener.address)
        run_until(loop, lambda: accepted.made() == 2)
        run_turns(loop, 5)
        assert len(accepted.protocols) == 2
    finally:
        listener.close()


def test_listener_close(net_loop, loop, peers):
    gc.collect()
    registered_before = sum(epoll_registrations().values())
    sock = net_loop.create_listen_socket("127.0.0.1", 0)
    address = sock.getsockname()[:2]
    accepted = Accepted()
    listener = net_loop.Listener(loop, sock, accepted)
    assert sum(epoll_registrations().values()) == registered_before + 1
    connect(peers, address)
    run_until(loop, lambda: accepted.made() == 1)
    listener.close()
    assert sock.fileno() == -1
    assert sum(epoll_registrations().values()) == registered_before + 1  # the accepted one
    with pytest.raises(ConnectionRefusedError):
        connect(peers, address)
    run_turns(loop, 10)
    assert accepted.made() == 1
    listener.close()  # twice is harmless
    listener.resume()  # and resuming a closed listener does nothing
    run_turns(loop, 3)
    accepted.protocols[0].transport.abort()
    run_turns(loop, 3)


# -- nothing leaks ----------------------------------------------------------------------


def test_many_connections_opened_and_closed_leave_no_fds_or_registrations(net_loop, peers):
    gc.collect()  # sockets and transports other tests left to the collector close now
    fds_before_loop = open_fds()
    loop = net_loop.Loop()
    try:
        endings: list = []
        sock = net_loop.create_listen_socket("127.0.0.1", 0)
        listener = net_loop.Listener(loop, sock, lambda: Echo(endings))
        fds_baseline = open_fds()
        epoll_baseline = epoll_registrations()
        assert epoll_baseline, "no epoll instance found for the loop"

        for round_ in range(3):
            clients = [socket.create_connection(listener.address) for _ in range(40)]
            for i, client in enumerate(clients):
                client.setblocking(False)
                client.sendall(b"ping %d" % i)
            expected_lost = len(endings) + len(clients)
            # Wait for every echo, then end each connection one of four ways.
            run_until(loop, lambda cs=clients: all(_has_echo(c) for c in cs))
            for i, client in enumerate(clients):
                assert client.recv(100) == b"ping %d" % i
                how = i % 4
                if how == 0:  # client closes cleanly: the server sees EOF and closes
                    client.close()
                elif how == 1:  # client resets
                    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    client.close()
                else:  # the server closes (2) or aborts (3) when asked
                    client.sendall(b"close" if how == 2 else b"abort")
            run_until(loop, lambda n=expected_lost: len(endings) == n, what=f"round {round_}")
            for client in clients:
                client.close()
            run_turns(loop, 3)
            assert len(endings) == expected_lost
            assert open_fds() == fds_baseline, f"fds leaked in round {round_}"
            assert epoll_registrations() == epoll_baseline, "registrations leaked"
        listener.close()
    finally:
        loop.close()
    assert open_fds() == fds_before_loop


def _has_echo(client) -> bool:
    try:
        return client.recv(1, socket.MSG_PEEK) != b""
    except BlockingIOError:
        return False


class Echo(Recorder):
    """Echoes, closes on EOF or on request, records how each connection ended."""

    def __init__(self, endings):
        super().__init__()
        self.endings = endings

    def data_received(self, data):
        super().data_received(data)
        if data.endswith(b"close"):
            self.transport.write(b"bye")
            self.transport.close()
        elif data.endswith(b"abort"):
            self.transport.abort()
        else:
            self.transport.write(data)

    def eof_received(self):
        super().eof_received()
        self.transport.close()

    def connection_lost(self, exc):
        super().connection_lost(exc)
        self.endings.append(exc)


def test_loop_close_releases_its_fds(net_loop):
    gc.collect()
    before = open_fds()
    loops = [net_loop.Loop() for _ in range(20)]
    assert len(open_fds()) > len(before)
    for lp in loops:
        lp.call_soon(lp.stop)
        lp.run_forever()
        lp.close()
    assert open_fds() == before


# -- regressions: bugs found by these tests, fixed in both twins ---------------------------


def test_protocol_error_closes_that_connection_and_the_loop_goes_on(loop, peers, caplog):
    side, peer = tcp_pair(peers)
    other_side, other_peer = tcp_pair(peers)
    bad = Recorder()

    def explode(data):
        raise ValueError("protocol bug")

    bad.on_data = explode
    loop_transport(loop, side, bad)
    good = Recorder()
    loop_transport(loop, other_side, good)
    peer.sendall(b"x")
    run_until(loop, lambda: bad.count("connection_lost") == 1, what="bad connection closed")
    assert isinstance(bad.lost[0], ValueError)
    assert "protocol error" in caplog.text
    other_peer.sendall(b"still served")
    run_until(loop, lambda: bytes(good.data) == b"still served", what="the loop went on")
    assert good.count("connection_lost") == 0


def test_timers_due_at_the_same_time_fire_in_scheduling_order(loop):
    order = []
    when = loop.time() + 0.01
    for i in range(20):
        loop.call_at(when, order.append, i)
    run_until(loop, lambda: len(order) == 20)
    assert order == list(range(20))


def test_stop_before_run_forever_ends_it_after_one_turn(loop):
    ran = []
    loop.call_soon(ran.append, 1)
    later = loop.call_later(0.2, ran.append, 2)  # runs only if the loop forgot the stop
    loop.stop()
    guard = loop.call_later(5.0, loop.stop)
    loop.run_forever()
    guard.cancel()
    later.cancel()
    assert ran == [1]


def test_call_soon_threadsafe_after_close_writes_nowhere(net_loop):
    closed = net_loop.Loop()
    closed.close()
    r, w = os.pipe()
    try:
        closed.call_soon_threadsafe(print)
        os.set_blocking(r, False)
        with pytest.raises(BlockingIOError):
            os.read(r, 100)
    finally:
        os.close(r)
        os.close(w)
