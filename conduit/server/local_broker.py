"""The local broker: the workers of ``--workers N`` on one machine form one hub.

    supervisor (python -m conduit run app.py --workers 2)
      LocalBrokerServer on <private temp dir>/broker.sock
        epoch, the global sequence, each channel's history, the durable logs
            |  Unix socket per worker: publishes in, the ordered feed out
      +-----+------+
      |            |
    worker 1     worker 2     (each: the normal Server, listening with SO_REUSEPORT)
    LocalBroker  LocalBroker  (conduit.app.broker.Broker: the hub's id source and order)

Why a broker in the supervisor (and not shared memory or a ring in a file): the supervisor
already outlives every worker, so it is the one place that can own the epoch and the
sequence without a lock shared between processes, keep the history a restarted worker
needs, and be the only writer of the durable logs. One Unix socket per worker keeps the
failure modes simple: a worker that dies closes its socket; a supervisor that dies closes
them all. The cost is one round trip through the supervisor per publish (see PERF below).

The wire: length-prefixed JSON. A frame is a 4-byte big-endian length and one JSON value,
a list whose first item says what it is:

    worker -> supervisor
      ["hello", {"pid": P, "data_dir": D, "channels": {name: {"history": H,
                 "durable": bool, "fsync": F}}}]              once, first
      ["d", {name: {...}}]                                    a channel made after hello
      ["p", rid, channel, event, data]                        publish
      ["m", rid, channel, event, [data, ...]]                 publish_many (one answer:
                                                              the first of consecutive seqs)
      ["s", rid]                                              sync (catch_up, sync)
    supervisor -> worker
      ["welcome", {"epoch": E, "seq": S, "channels": {name: [complete_after, records]}}]
      ["r", [[seq, channel, event, data], ...]]               the feed, ascending seq
      ["a", [[rid, seq], ...]]                                answers to p (seq -1: refused)
                                                              and s (the newest seq)

Rules (the broker contract of ``conduit.app.broker``, for this broker)
1. The supervisor handles its sockets on one thread. A publish gets the next sequence,
   goes into its channel's history (and, for a durable channel, into the log with one
   ``write()``) before it is acknowledged. After each turn of its loop, the records of
   that turn are encoded once, as one frame, and queued to every attached worker; the
   answers to a worker are queued after that frame. So every worker reads every event in
   the same order, each once, and a publisher's answer never overtakes its own event.
2. ``attach`` (the worker's loop thread, at startup) sends the hello and waits for the
   welcome: the epoch, the newest sequence, and each channel's history with the sequence
   after which it is complete. The supervisor flushes its pending records first, and
   attaches the worker to the feed in the same turn, so the history and the feed join
   without a gap (an overlap would be skipped by ``Hub.deliver``). A restarted worker gets
   the history again: ``Last-Event-ID`` resumes on it as on any other.
3. The worker reads its socket on its own loop (``loop.add_reader``), not on a reader
   thread: with the GIL a thread would parse no faster, and every hand-over to the loop
   would cost a wake-up and a GIL switch. One wake-up takes what the socket holds (up to
   ``READS_PER_TURN`` reads) and gives all its records to ``Hub.deliver`` in one call;
   per event it only parses JSON. (This module is in ``conduit.server``, where sockets
   and the loop's fds belong: the app layer only sees the broker contract. It imports
   nothing from ``conduit.app``, so ``LocalBroker`` keeps that contract by shape rather
   than by subclassing ``conduit.app.broker.Broker``.)
4. Back-pressure: a worker whose loop falls behind reads less; its socket fills and the
   supervisor queues for it. Past ``MAX_BEHIND_BYTES`` queued the supervisor drops the
   worker's connection and has it restarted (``on_slow_worker``), with a log line: one
   stuck worker never slows the others, and its clients reconnect elsewhere with
   ``Last-Event-ID``.
5. ``publish`` may be called from any thread: the frame is sent under a lock, and the
   caller waits for its answer. On the loop thread it reads the socket itself until the
   answer comes (delivering the records before it); another thread waits for the loop to
   read it. No answer (the supervisor is gone, or stuck for ``PUBLISH_TIMEOUT_SECONDS``)
   raises ``BrokerUnavailable``: a 503 with Retry-After.
6. ``catch_up`` (a client resumes from an id this worker has not read yet: it read it on
   another worker a moment ago) is a sync round trip: the supervisor answers after
   queueing every record so far, so when the answer is read, the event has been
   delivered. ``sync`` (the broker contract's rule 6, ``Channel.sync``) is the same
   message, but the loop does not wait in it: the answer resolves an asyncio future when
   the loop's reader reads it (after the records before it), so the loop serves on
   during the round trip.
7. The supervisor's death closes the sockets: publishes answer 503, subscribers stay
   connected, and the worker drains (the supervisor's death signal, see
   ``conduit.server.workers``). There is no reconnect: a worker lives and dies with its
   supervisor.

Durable channels: the supervisor is the only writer of ``hub.json`` and the channel logs
(``conduit.server.durable``), with the data directory, history sizes and fsync policies the
workers' hello names; workers open no log (``Hub.logs_kept_by_broker``). The supervisor
restores a durable channel's history from its log, as a single process would, and hands
it to every worker in the welcome.

PERF: a publish costs a round trip through the supervisor, on the thread that publishes:
about 80 us here with one worker, 150-250 us with two on 2 cores (every worker wakes up
for every event; the round trip is mostly process wake-ups and Python on each side, the
bytes are nothing). A handler that publishes in a loop is bound by it; delivery to
subscribers is not (the feed is batched: one frame per supervisor turn, one ``deliver``
per worker wake-up).
"""

from __future__ import annotations

import json
import logging
import os
import select
import socket
import struct
import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from conduit.errors import BrokerUnavailable
from conduit.server.durable import ChannelLog, HubState, new_epoch

if TYPE_CHECKING:
    import selectors

log = logging.getLogger("conduit.app")

#: Frames longer than this are a protocol error (a welcome with a big history is the largest).
MAX_FRAME_BYTES = 1 << 30
#: Reads of the broker socket per wake-up of the worker's loop (then other sockets' turn).
READS_PER_TURN = 8
#: Bytes the supervisor queues for one worker before it gives up on it (rule 4).
MAX_BEHIND_BYTES = 64 * 1024 * 1024
#: How long a publish (or attach) waits for the supervisor before answering 503.
PUBLISH_TIMEOUT_SECONDS = 10.0
ATTACH_TIMEOUT_SECONDS = 30.0
READ_BYTES = 256 * 1024

_LENGTH = struct.Struct(">I")
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def pack(message) -> bytes:
    """One frame: the length, then ``message`` as JSON (UTF-8)."""
    payload = _dumps(message).encode("utf-8")
    return _LENGTH.pack(len(payload)) + payload


class FrameReader:
    """Frames out of a byte stream that arrives in pieces of any size."""

    def __init__(self) -> None:
        self.buffer = bytearray()

    def feed(self, data: bytes) -> list:
        """The messages completed by ``data`` (decoded), oldest first."""
        buffer = self.buffer
        buffer += data
        messages = []
        start = 0
        end = len(buffer)
        while end - start >= 4:
            (size,) = _LENGTH.unpack_from(buffer, start)
            if size > MAX_FRAME_BYTES:
                raise ValueError(f"frame of {size} bytes")
            if end - start - 4 < size:
                break
            messages.append(json.loads(buffer[start + 4:start + 4 + size]))
            start += 4 + size
        if start:
            del buffer[:start]
        return messages


class _Waiter:
    __slots__ = ("seq", "future")

    def __init__(self, future=None) -> None:
        self.seq = None
        self.future = future  # an asyncio future to resolve with seq (sync), or None


def _describe(channel) -> dict:
    return {"history": channel.history, "durable": bool(getattr(channel, "durable", False)),
            "fsync": getattr(channel, "fsync", "never")}


# -- the worker's side ------------------------------------------------------------------------
class LocalBroker:
    """A worker's connection to its supervisor's ``LocalBrokerServer`` (module docstring):
    a broker in the sense of ``conduit.app.broker`` (attach, publish, publish_many,
    catch_up, sync, close)."""

    name = "local"

    def __init__(self, path: str, publish_timeout: float = PUBLISH_TIMEOUT_SECONDS) -> None:
        self.path = path
        self.publish_timeout = publish_timeout
        # The app's Hub (conduit.app.channel.Hub: the server layer cannot import it).
        self.hub: Any = None
        self.sock: socket.socket | None = None
        self._fd = -1
        self._frames = FrameReader()
        self._send_lock = threading.Lock()
        self._cond = threading.Condition(threading.Lock())  # answers for other threads
        self._waiters: dict = {}
        self._next_rid = 0
        self._declared: set = set()
        self._dead = False
        self._closing = False

    # -- attach (rule 2) ----------------------------------------------------------------
    def attach(self, hub) -> None:
        self.hub = hub
        if hub._issued:
            log.warning("events published before the server started stay in worker [%d] "
                        "(publish from handlers or startup code, not at import)", os.getpid())
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(ATTACH_TIMEOUT_SECONDS)
        try:
            sock.connect(self.path)
            channels = {name: _describe(ch) for name, ch in list(hub.channels.items())}
            self._declared = set(channels)
            sock.sendall(pack(["hello", {"pid": os.getpid(), "data_dir":
                                         os.path.abspath(hub.data_dir),
                                         "channels": channels}]))
            messages: list = []
            while not messages:
                data = sock.recv(READ_BYTES)
                if not data:
                    raise ConnectionError("the supervisor closed the broker connection")
                messages = self._frames.feed(data)
        except (OSError, ValueError) as exc:
            sock.close()
            raise RuntimeError(f"cannot attach to the workers' broker at {self.path}: "
                               f"{exc}") from exc
        welcome = messages.pop(0)
        if welcome[0] != "welcome":
            sock.close()
            raise RuntimeError(f"the workers' broker answered {welcome[0]!r}: {welcome[1:]}")
        state = welcome[1]
        hub.set_epoch(state["epoch"])
        for name, (complete_after, records) in state["channels"].items():
            hub.restore(name, records, complete_after)
        with hub.lock:
            if state["seq"] > hub.seq:
                hub.seq = state["seq"]
        for message in messages:  # the feed, if it came in the same read
            if message[0] == "r":
                hub.deliver(message[1])
        sock.setblocking(False)
        self.sock = sock
        self._fd = sock.fileno()
        hub.loop.add_reader(self._fd, self._read)
        log.info("worker [%d] attached to the workers' broker (epoch %s, seq %d)",
                 os.getpid(), state["epoch"], state["seq"])

    # -- the feed (rules 3, 4; loop thread) ---------------------------------------------
    def _read(self) -> None:
        """Take what the socket holds now: records to the hub, answers to publishers."""
        sock = self.sock
        if sock is None:
            return
        feed = self._frames.feed
        records: list = []
        try:
            for _ in range(READS_PER_TURN):
                try:
                    data = sock.recv(READ_BYTES)
                except (BlockingIOError, InterruptedError):
                    break
                if not data:
                    self._lost("the supervisor closed the connection")
                    break
                for message in feed(data):
                    tag = message[0]
                    if tag == "r":
                        records += message[1]
                    elif tag == "a":
                        if records:  # an answer never overtakes the events before it
                            self.hub.deliver(records)
                            records = []
                        self._answer(message[1])
                if len(data) < READ_BYTES:
                    break
        except (OSError, ValueError) as exc:
            self._lost(str(exc))
        if records:
            self.hub.deliver(records)

    def _answer(self, answers: list) -> None:
        with self._cond:
            waiters = self._waiters
            for rid, seq in answers:
                waiter = waiters.pop(rid, None)
                if waiter is not None:
                    waiter.seq = seq
                    if waiter.future is not None and not waiter.future.done():
                        waiter.future.set_result(seq)  # _read runs on the loop thread
            self._cond.notify_all()

    def _lost(self, why: str) -> None:
        if self._dead:
            return
        with self._cond:
            self._dead = True
            self._cond.notify_all()
            futures = [w.future for w in self._waiters.values() if w.future is not None]
        for future in futures:  # sync() callers: BrokerUnavailable (from any thread)
            future.get_loop().call_soon_threadsafe(_settle, future, None)
        loop = self.hub.loop
        if loop is not None and self._fd >= 0:
            if self.hub.on_loop_thread():
                loop.remove_reader(self._fd)
            else:
                loop.call_soon_threadsafe(loop.remove_reader, self._fd)
        if not self._closing:
            log.warning("worker [%d] lost the workers' broker (%s): publishing answers 503",
                        os.getpid(), why)

    # -- publishing (rule 5) ------------------------------------------------------------
    def _send(self, frame: bytes, deadline: float) -> None:
        # called with the send lock held; the socket is non-blocking (the loop reads it)
        assert self.sock is not None  # the callers checked, under the send lock
        view = memoryview(frame)
        while view:
            try:
                view = view[self.sock.send(view):]
            except (BlockingIOError, InterruptedError):
                left = deadline - time.monotonic()
                if left <= 0 or not _wait_for(self._fd, select.POLLOUT, left):
                    self._lost("the supervisor does not read")
                    raise BrokerUnavailable("the workers' broker is stuck; retry") from None
            except OSError as exc:
                self._lost(str(exc))
                raise BrokerUnavailable("the workers' broker is gone; retry") from None

    def _request(self, message_of) -> int:
        waiter = _Waiter()
        deadline = time.monotonic() + self.publish_timeout
        with self._send_lock:
            if self._dead or self.sock is None:
                raise BrokerUnavailable("the workers' broker is gone; retry")
            rid = self._next_rid = self._next_rid + 1
            with self._cond:
                self._waiters[rid] = waiter
            self._send(message_of(rid), deadline)
        if self.hub.on_loop_thread():
            # The loop thread reads the answer itself (and the records before it).
            while waiter.seq is None and not self._dead:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                if _wait_for(self._fd, select.POLLIN, left):
                    self._read()
        else:
            with self._cond:
                while waiter.seq is None and not self._dead:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
        with self._cond:
            self._waiters.pop(rid, None)
        seq = waiter.seq
        if seq is None:
            raise BrokerUnavailable("the workers' broker did not answer; retry")
        if seq < 0:
            raise BrokerUnavailable("the workers' broker could not store the event; retry")
        return seq

    def publish(self, channel: str, event: str | None, data: str) -> int:
        if channel not in self._declared:
            self._declare(channel)
        return self._request(lambda rid: pack(["p", rid, channel, event, data]))

    def publish_many(self, channel: str, event: str | None, datas: list) -> list:
        """One round trip for the whole list: the supervisor stores them in one turn, so
        their sequences are consecutive (a refusal, such as a failed write to a durable
        log, is a 503 for the whole list)."""
        datas = list(datas)
        if not datas:
            return []
        if channel not in self._declared:
            self._declare(channel)
        first = self._request(lambda rid: pack(["m", rid, channel, event, datas]))
        return list(range(first, first + len(datas)))

    def _declare(self, name: str) -> None:
        channel = self.hub.channels.get(name) if self.hub is not None else None
        if channel is None or self.sock is None:
            return
        with self._send_lock:
            self._send(pack(["d", {name: _describe(channel)}]),
                       time.monotonic() + self.publish_timeout)
            self._declared.add(name)

    def catch_up(self) -> None:
        """Rule 6 (loop thread)."""
        try:
            self._request(lambda rid: pack(["s", rid]))
        except BrokerUnavailable:
            pass

    async def sync(self) -> None:
        """Rule 6, without holding the loop (loop thread): returns once every record the
        supervisor had when it read the request has been delivered to the hub."""
        import asyncio

        future = asyncio.get_running_loop().create_future()
        waiter = _Waiter(future)
        rid = None
        try:
            with self._send_lock:
                if self._dead or self.sock is None:
                    raise BrokerUnavailable("the workers' broker is gone; retry")
                rid = self._next_rid = self._next_rid + 1
                with self._cond:
                    self._waiters[rid] = waiter
                self._send(pack(["s", rid]), time.monotonic() + self.publish_timeout)
            seq = await asyncio.wait_for(future, self.publish_timeout)
        except asyncio.TimeoutError:
            seq = None
        finally:
            with self._cond:
                self._waiters.pop(rid, None)
        if seq is None:
            raise BrokerUnavailable("the workers' broker did not answer; retry")

    def close(self) -> None:
        self._closing = True
        sock = self.sock
        if sock is None:
            return
        self._lost("closed")
        self.sock = None
        sock.close()


def _settle(future, value) -> None:
    if not future.done():
        future.set_result(value)


def _wait_for(fd: int, events: int, timeout: float) -> bool:
    """Whether ``fd`` is ready for ``events`` within ``timeout`` seconds."""
    poller = select.poll()
    poller.register(fd, events)
    return bool(poller.poll(max(1, int(timeout * 1000))))


# -- the supervisor's side ----------------------------------------------------------------------
class _History:
    """One channel in the supervisor: its recent records and, if durable, its log."""

    __slots__ = ("records", "complete_after", "log", "history")

    def __init__(self, history: int, complete_after: int) -> None:
        self.history = history
        self.records: deque = deque(maxlen=history)
        self.complete_after = complete_after
        self.log: ChannelLog | None = None

    def append(self, record: list) -> None:
        records = self.records
        if self.history == 0:
            self.complete_after = record[0]
            return
        if len(records) == self.history:
            self.complete_after = records[0][0]
        records.append(record)


class _Peer:
    __slots__ = ("sock", "frames", "out", "pid", "answers", "attached", "writing")

    def __init__(self, sock) -> None:
        self.sock = sock
        self.frames = FrameReader()
        self.out = bytearray()
        self.pid = None
        self.answers: list = []
        self.attached = False
        self.writing = False


class LocalBrokerServer:
    """The supervisor's broker (module docstring, rules 1, 2 and 4).

    The supervisor runs it on its own loop: ``start(selector)`` registers its sockets with
    a ``selectors`` selector whose key data is a callable taking the event mask, and the
    loop calls ``after_turn()`` after each round of events.
    """

    def __init__(self, path: str, on_slow_worker=None,
                 max_behind_bytes: int = MAX_BEHIND_BYTES) -> None:
        self.path = path
        self.on_slow_worker = on_slow_worker  # called with the pid of a worker given up on
        self.max_behind_bytes = max_behind_bytes
        self.epoch = new_epoch()
        self.seq = 0
        self.state: HubState | None = None
        self._reserved: int | None = None
        self.channels: dict = {}
        self.peers: set = set()
        self.fatal_error: str | None = None  # set when the durable state cannot be opened
        self._batch: list = []
        self._answering: list = []
        self._selector: selectors.BaseSelector | None = None  # both set by start()
        self._listener: socket.socket | None = None
        self._configured = False

    def start(self, selector) -> None:
        import selectors

        self._events = selectors
        self._selector = selector
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(self.path)
        sock.listen(64)
        sock.setblocking(False)
        self._listener = sock
        selector.register(sock, selectors.EVENT_READ, self._accept)

    # -- connections -------------------------------------------------------------------
    def _accept(self, mask) -> None:
        assert self._listener is not None and self._selector is not None  # registered by start
        while True:
            try:
                sock, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            sock.setblocking(False)
            peer = _Peer(sock)
            self._selector.register(sock, self._events.EVENT_READ,
                                    lambda mask, peer=peer: self._on_event(peer, mask))

    def _on_event(self, peer: _Peer, mask) -> None:
        if mask & self._events.EVENT_WRITE:
            self._send(peer)
        if mask & self._events.EVENT_READ and peer.sock is not None:
            self._on_readable(peer)

    def _on_readable(self, peer: _Peer) -> None:
        try:
            data = peer.sock.recv(READ_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._drop(peer)
            return
        try:
            messages = peer.frames.feed(data)
        except ValueError as exc:
            log.error("workers' broker: bad frame from worker [%s]: %s", peer.pid, exc)
            self._drop(peer)
            return
        for message in messages:
            tag = message[0]
            if tag == "p":
                _, rid, channel, event, data = message
                peer.answers.append([rid, self._publish(channel, event, data)])
                if len(peer.answers) == 1:
                    self._answering.append(peer)
            elif tag == "m":
                _, rid, channel, event, datas = message
                peer.answers.append([rid, self._publish_many(channel, event, datas)])
                if len(peer.answers) == 1:
                    self._answering.append(peer)
            elif tag == "s":
                peer.answers.append([message[1], self.seq])
                if len(peer.answers) == 1:
                    self._answering.append(peer)
            elif tag == "d":
                for name, spec in message[1].items():
                    self._channel(name, spec)
            elif tag == "hello":
                self._hello(peer, message[1])
                if peer.sock is None:
                    return

    def _drop(self, peer: _Peer) -> None:
        if peer.sock is None:
            return
        self.peers.discard(peer)
        assert self._selector is not None  # a peer comes from _accept, after start
        try:
            self._selector.unregister(peer.sock)
        except (KeyError, ValueError):
            pass
        peer.sock.close()
        peer.sock = None
        peer.out = bytearray()

    # -- hello and welcome (rule 2) ----------------------------------------------------
    def _hello(self, peer: _Peer, hello: dict) -> None:
        peer.pid = hello.get("pid")
        try:
            if not self._configured:
                self._configure(hello)
            for name, spec in hello.get("channels", {}).items():
                self._channel(name, spec)
        except Exception as exc:
            log.exception("workers' broker: cannot set up the channels")
            self.fatal_error = f"cannot set up the channels: {exc}"
            self._queue(peer, pack(["error", str(exc)]))
            return
        self.flush()  # the pending records go to the attached workers first
        channels = {name: [self.channels[name].complete_after,
                           list(self.channels[name].records)]
                    for name in hello.get("channels", {})}
        self._queue(peer, pack(["welcome", {"epoch": self.epoch, "seq": self.seq,
                                            "channels": channels}]))
        peer.attached = True
        self.peers.add(peer)

    def _configure(self, hello: dict) -> None:
        """First hello: take the durable state (epoch, reservation) if any channel is."""
        self._configured = True
        if any(spec.get("durable") for spec in hello.get("channels", {}).values()):
            self._make_durable(hello["data_dir"])

    def _make_durable(self, data_dir: str) -> None:
        # As Hub.make_durable: the epoch and the reservation of the data directory.
        self.state = HubState(data_dir)
        self.epoch = self.state.epoch
        self.seq = self.state.start_seq
        self._reserved = self.state.reserve(self.seq)
        for history in self.channels.values():
            history.complete_after = self.seq

    def _channel(self, name: str, spec: dict) -> _History:
        history = self.channels.get(name)
        if history is not None:
            return history
        history = _History(int(spec.get("history", 1000)), self.seq)
        if spec.get("durable"):
            if self.state is None:
                log.error("channel %s is durable but was made after events were published: "
                          "its events are not logged (declare durable channels at import)",
                          name)
            else:
                self._open_log(name, history, spec.get("fsync", "never"))
        self.channels[name] = history
        return history

    def _open_log(self, name: str, history: _History, fsync) -> None:
        # As Channel._open_log, keeping (seq, event, data) records instead of frames.
        assert self.state is not None  # _channel opens a log only for a durable hub
        channel_log = ChannelLog(self.state.data_dir, name, self.epoch, history.history,
                                 fsync=fsync)
        history.complete_after, kept = channel_log.restore(history.complete_after)
        for seq, event, data in kept:
            self.seq = max(self.seq, seq)
            history.records.append([seq, event, data])
        history.log = channel_log

    # -- publishing (rule 1) -----------------------------------------------------------
    def _publish(self, name: str, event, data: str) -> int:
        return self._publish_many(name, event, [data])

    def _publish_many(self, name: str, event, datas: list) -> int:
        """The first of len(datas) consecutive sequences, or -1 with nothing stored."""
        if not datas:
            return self.seq + 1
        history = self.channels.get(name)
        if history is None:
            history = self._channel(name, {})
        first = self.seq + 1
        last = self.seq + len(datas)
        if self._reserved is not None and last > self._reserved:
            assert self.state is not None  # a reservation comes from _make_durable's state
            try:
                self._reserved = self.state.reserve(last)
            except OSError:
                log.exception("workers' broker: cannot reserve sequences")
                return -1
        if history.log is not None:
            try:
                for offset, data in enumerate(datas):
                    history.log.append(first + offset, event, data)
            except OSError:
                # NOTE: records before the failure may be in the log; the sequence still
                # moves past them so their ids are never issued again.
                log.exception("channel %s: cannot append to its log", name)
                self.seq = last
                return -1
        self.seq = last
        batch = self._batch
        for offset, data in enumerate(datas):
            record = [first + offset, event, data]
            history.append(record)
            batch.append([first + offset, name, event, data])
        return first

    # -- writing (rules 1, 4) ----------------------------------------------------------
    def flush(self) -> None:
        """Queue this turn's records to every attached worker (one frame, encoded once),
        then each publisher's answers; then one ``send`` per worker."""
        # PERF: waking a worker costs far more than the bytes (about 40 us a send here):
        # everything of one turn goes to a worker in one send.
        touched = set()
        if self._batch:
            frame = pack(["r", self._batch])
            self._batch = []
            for peer in self.peers:
                peer.out += frame
            touched.update(self.peers)
        if self._answering:
            for peer in self._answering:
                if peer.sock is not None and peer.answers:
                    peer.out += pack(["a", peer.answers])
                    touched.add(peer)
                peer.answers = []
            self._answering = []
        for peer in touched:
            if not peer.writing:
                self._send(peer)
            elif len(peer.out) > self.max_behind_bytes:
                self._give_up(peer)

    def after_turn(self) -> None:
        self.flush()

    def _queue(self, peer: _Peer, frame: bytes) -> None:
        if peer.sock is None:
            return
        peer.out += frame
        if not peer.writing:
            self._send(peer)

    def _send(self, peer: _Peer) -> None:
        sock = peer.sock
        if sock is None:
            return
        out = peer.out
        try:
            while out:
                sent = sock.send(out)
                del out[:sent]
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            self._drop(peer)
            return
        want_write = bool(out)
        if want_write != peer.writing:
            peer.writing = want_write
            events = self._events.EVENT_READ | (self._events.EVENT_WRITE if want_write else 0)
            assert self._selector is not None  # a peer comes from _accept, after start
            self._selector.modify(sock, events, self._selector.get_key(sock).data)
        if len(out) > self.max_behind_bytes:
            self._give_up(peer)

    def _give_up(self, peer: _Peer) -> None:
        log.warning("worker [%s] is %d bytes behind the workers' broker: dropping it "
                    "(it is restarted; its clients resume elsewhere)", peer.pid, len(peer.out))
        pid = peer.pid
        self._drop(peer)
        if self.on_slow_worker is not None and pid is not None:
            self.on_slow_worker(pid)

    def close(self) -> None:
        for peer in list(self.peers):
            self._drop(peer)
        if self._listener is not None:
            assert self._selector is not None  # start() set both
            try:
                self._selector.unregister(self._listener)
            except (KeyError, ValueError):
                pass
            self._listener.close()
            self._listener = None
        for history in self.channels.values():
            if history.log is not None:
                history.log.close()
                history.log = None
