"""Channels: publish once, deliver to every subscriber, with history and resume.

    docs = app.channel("documents", history=1000, durable=True)
    event_id = docs.publish({"type": "DocumentSaved", "data": {"id": "doc1"}})

    @app.get("/events")
    def events(request):
        return docs.subscribe(request)          # honours Last-Event-ID

    @app.get("/feed")
    def feed(request):                          # several channels on one connection
        return app.subscribe(request, *request.query_all("topic"))

Ids and cursors
1. Every event gets the id ``"<epoch>-<seq>"``. The sequence is global to the app (all its
   channels share it) and strictly increasing, so one id is a cursor into every channel a
   connection reads. The epoch names the sequence: it is random per process for an app
   without durable channels, and kept in ``<data dir>/hub.json`` otherwise, where sequences
   are reserved in blocks so they are never reused after a restart.
2. A channel knows the sequence after which it holds all of its events (``complete_after``:
   its creation, or the newest event it had to drop from its history).
3. ``Last-Event-ID`` (the header, or ``?last_event_id=`` for a first connection) with this
   epoch and a sequence at or above ``complete_after`` replays exactly the events after it,
   then the stream goes live: no gap, no duplicate. Anything else (another epoch, a cursor
   older than the history, a malformed id) gets a *reset event* first:

       event: reset
       id: <the newest id>
       data: {"reason": "stale-cursor" | "unknown-epoch" | "malformed-cursor",
              "channels": [...], "last_event_id": "<what the client sent>"}

   and then the stream goes live. A page handles it by reloading its state (for example
   ``GET /documents``) and carrying on. It is never a 4xx/5xx, which would make a browser's
   EventSource give up for good. The reset carries the newest id, so the browser's next
   reconnect resumes from there.
4. The first bytes of a subscription (the comment ``: subscribed``) are written only after
   the subscriber is registered: a client that has seen them cannot miss a publish.

Private channels (``app.channel(name, private=True)``): subscribing needs a token that
grants ``subscribe`` on the channel's name (``conduit.app.auth``); a multi-channel
subscription needs it for every private channel in it. The check runs before anything is
registered: a refused subscriber gets 401/403 and never a byte of the stream.

Publishing from other threads: ``publish`` may be called from any thread. The id is
assigned and the durable record written before it returns; the frame reaches the shared
buffer on the loop thread, in id order (the loop's wake-up hands it over).

With a broker (``Hub.broker``, ``conduit.app.broker``: the workers of ``--workers N``, or
Redis with ``--broker``), the broker is the id source and the order: ``publish`` returns
the id the broker gave once the broker has the event, and the frame enters this process's
buffers when the broker's feed brings it back (``Hub.deliver``), as on every other process.
The epoch is the broker's, so a cursor from any process resumes on any other.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from typing import Any

from conduit.errors import HTTPError
from conduit.http.response import StreamResponse
from conduit.http.sse import SSEEvent, comment
from conduit.server.durable import ChannelLog, HubState, default_data_dir, new_epoch
from conduit.server.hub import DEFAULT_BUDGET_BYTES, FrameLog, Subscription

log = logging.getLogger("conduit.app")

RESET_EVENT = "reset"


class Hub:
    """The id source and the channels of one app."""

    #: True in a process whose hubs get a broker that keeps the durable logs itself (a
    #: worker of ``--workers N``: the supervisor writes them). Set before the app is
    #: imported; durable channels then open no log and reserve no sequence here.
    logs_kept_by_broker = False

    def __init__(self, data_dir: str | None = None) -> None:
        self._data_dir = data_dir
        self.state: HubState | None = None
        self.epoch = new_epoch()
        self.seq = 0
        self._reserved: int | None = None  # sequences may be issued up to this (durable hubs)
        self.lock = threading.RLock()
        self.channels: dict = {}
        self.auth: Any = None  # the app's Auth (conduit.app.auth), for private channels
        # The server's event loop (a conduit.net Loop: not importable from the app layer).
        self.loop: Any = None
        self.loop_thread: int | None = None
        self._issued = False
        self.broker = None  # a conduit.app.broker.Broker: set before the server starts
        # With a broker: the newest sequence each channel has from restore/deliver, so an
        # overlap is skipped in O(1) (FrameLog.seqs is a copy in the compiled twin).
        self._delivered: dict = {}

    @property
    def data_dir(self) -> str:
        return self._data_dir or default_data_dir()

    def make_durable(self) -> None:
        """Switch to the persistent epoch and reservation of the data directory."""
        with self.lock:
            if self.state is not None:
                return
            if self._issued:
                raise RuntimeError("create durable channels before publishing any event: "
                                   "ids already issued would not survive a restart")
            self.state = HubState(self.data_dir)
            self.epoch = self.state.epoch
            self.seq = self.state.start_seq
            self._reserved = self.state.reserve(self.seq)
            # Channels made before this one have no events (no id was issued), but their
            # history is complete only from here: a cursor from before this start is stale.
            for channel in self.channels.values():
                channel._complete_after = self.seq

    def next_seq(self) -> int:
        # called with self.lock held
        self._issued = True
        self.seq += 1
        if self._reserved is not None and self.seq > self._reserved:
            assert self.state is not None  # a reservation comes from make_durable's state
            self._reserved = self.state.reserve(self.seq)
        return self.seq

    def id_of(self, seq: int) -> str:
        return f"{self.epoch}-{seq}"

    def parse(self, event_id: str):
        """(epoch, seq) of an id, or None if it is not one of ours in form."""
        epoch, sep, seq = event_id.rpartition("-")
        if not sep or not epoch or not seq.isdigit() or len(seq) > 18:
            return None
        return epoch, int(seq)

    def startup(self, loop) -> None:
        self.loop = loop
        self.loop_thread = threading.get_ident()
        for channel in self.channels.values():
            channel.frames.loop = loop
            channel.drain()
        if self.broker is not None:
            self.broker.attach(self)

    def shutdown(self) -> None:
        if self.broker is not None:
            self.broker.close()
        for channel in self.channels.values():
            channel.close()
        self.loop = None
        self.loop_thread = None

    # -- the broker's side (conduit.app.broker) ------------------------------------------
    def set_epoch(self, epoch: str) -> None:
        """Take the broker's epoch (at attach, or when the broker lost its state)."""
        with self.lock:
            self.epoch = epoch

    def restore(self, name: str, records, complete_after: int) -> None:
        """Replace channel ``name``'s history with ``records`` ((seq, event, data), oldest
        first); its history is complete after sequence ``complete_after``. Loop thread."""
        channel = self.channels.get(name)
        if channel is None:
            return
        with self.lock:
            flog = channel.frames
            channel._complete_after = complete_after
            channel._pending.clear()
            last = self._delivered.get(name, 0)
            for seq, event, data in records:
                if seq <= last:
                    continue
                last = seq
                flog.append(seq, SSEEvent(data, event=event, id=self.id_of(seq)).encode())
                if seq > self.seq:
                    self.seq = seq
            self._delivered[name] = last
            if complete_after > self.seq:
                self.seq = complete_after

    def deliver(self, records) -> None:
        """Append events from the broker's feed ((seq, channel, event, data), ascending
        seq) to their channels; what a channel already has is skipped. Loop thread."""
        with self.lock:
            channels = self.channels
            delivered = self._delivered
            id_of = self.id_of
            for seq, name, event, data in records:
                if seq > self.seq:
                    self.seq = seq
                channel = channels.get(name)
                if channel is None:
                    continue  # a channel another app version declares: not ours to serve
                if seq <= delivered.get(name, 0):
                    continue
                delivered[name] = seq
                channel.frames.append(seq, SSEEvent(data, event=event, id=id_of(seq)).encode())
                channel.published += 1

    def deliver_threadsafe(self, records) -> None:
        """``deliver`` from the broker's own thread (through the loop's wake-up)."""
        loop = self.loop
        if loop is not None:
            loop.call_soon_threadsafe(self.deliver, records)

    def gap(self, name: str, complete_after: int) -> None:
        """Channel ``name`` misses events up to ``complete_after`` (trimmed from the broker
        before this process read them): older cursors get the reset event. Loop thread."""
        channel = self.channels.get(name)
        if channel is not None and complete_after > channel._complete_after:
            channel._complete_after = complete_after
            # Its live subscribers missed those events too: disconnected, they come back
            # with their cursor and get the reset event rather than a silent gap.
            for sub in list(channel.frames.subscribers):
                sub.transport.abort()

    def reset(self, epoch: str) -> None:
        """Start over in ``epoch`` with every channel empty and complete after 0 (the
        broker's state is new to this process: at attach, or after the broker lost its
        history). Subscribers are disconnected: they come back with their cursor and get
        the reset event ("unknown-epoch"). Loop thread."""
        with self.lock:
            self.epoch = epoch
            self.seq = 0
            self._delivered.clear()
            for channel in self.channels.values():
                old = channel.frames
                if old.end or old.subscribers:
                    channel.frames = FrameLog(channel.name, channel.history)
                    channel.frames.loop = self.loop
                    for sub in list(old.subscribers):
                        sub.transport.abort()
                channel._pending.clear()
                channel._complete_after = 0

    def on_loop_thread(self) -> bool:
        return self.loop is None or threading.get_ident() == self.loop_thread

    # -- subscribing -------------------------------------------------------------------
    def subscribe(self, request, channels, budget: int = DEFAULT_BUDGET_BYTES,
                  headers=None) -> StreamResponse:
        """A StreamResponse reading ``channels`` from the request's Last-Event-ID."""
        for channel in channels:
            if channel.private:
                if self.auth is None:  # App.channel refuses this; a hand-made Hub may not
                    raise HTTPError(403, f"channel {channel.name!r} is private")
                self.auth.require(request, "subscribe", channel.name)
        cursor = request.last_event_id or None  # an empty Last-Event-ID is no cursor
        cursors = []
        stale = []
        reason = None
        parsed = self.parse(cursor) if cursor else None
        if (self.broker is not None and parsed is not None and parsed[0] == self.epoch
                and parsed[1] > self.seq):
            # The client saw this event on another process a moment ago: fetch it first.
            self.broker.catch_up()
        with self.lock:
            for channel in channels:
                # Publishes handed over by other threads go into the buffers first, so
                # offsets and replay see every event up to now, in id order.
                channel._drain_locked()
            for channel in channels:
                flog = channel.frames
                if cursor is None:
                    cursors.append((flog, flog.end))
                    continue
                if parsed is None:
                    reason = "malformed-cursor"
                elif parsed[0] != self.epoch:
                    reason = "unknown-epoch"
                elif parsed[1] < channel.complete_after or parsed[1] > self.seq:
                    reason = "stale-cursor"
                else:
                    cursors.append((flog, flog.offset_after(parsed[1])))
                    continue
                stale.append(channel.name)
                cursors.append((flog, flog.end))
            names = ", ".join(channel.name for channel in channels)
            prelude = comment(f"subscribed to {names}")
            if stale:
                data = {"reason": reason, "channels": stale, "last_event_id": cursor}
                prelude += SSEEvent(data, event=RESET_EVENT, id=self.id_of(self.seq)).encode()
        return StreamResponse(Subscription(cursors, prelude, budget), headers=headers)


class Channel:
    """A named stream of events with history (see the module docstring)."""

    def __init__(self, hub: Hub, name: str, history: int = 1000, durable: bool = False,
                 fsync="never", budget_bytes: int = DEFAULT_BUDGET_BYTES,
                 private: bool = False) -> None:
        if type(history) is not int or history < 0:
            raise ValueError(f"history must be an int >= 0, got {history!r}")
        if type(budget_bytes) is not int or budget_bytes <= 0:
            raise ValueError(f"budget_bytes must be an int > 0, got {budget_bytes!r}")
        self.hub = hub
        self.name = name
        self.history = history
        self.budget_bytes = budget_bytes
        self.private = bool(private)
        self.frames = FrameLog(name, history)
        self._pending: deque = deque()
        self._drain_scheduled = False
        self.published = 0
        self.log: ChannelLog | None = None
        self.durable = bool(durable)
        self.fsync = fsync  # the durable log's policy (told to a broker that keeps the log)
        local_log = durable and not hub.logs_kept_by_broker
        with hub.lock:
            if local_log:
                hub.make_durable()
            self._complete_after = hub.seq
            if local_log:
                self._open_log(fsync)

    # -- durable history ---------------------------------------------------------------
    def _open_log(self, fsync) -> None:
        hub = self.hub
        self.log = ChannelLog(hub.data_dir, self.name, hub.epoch, self.history, fsync=fsync)
        self._complete_after, kept = self.log.restore(self._complete_after)
        for seq, event, data in kept:
            if seq > hub.seq:  # a log newer than hub.json (cannot happen with rule 4)
                hub.seq = seq
            self.frames.append(seq, SSEEvent(data, event=event, id=hub.id_of(seq)).encode())

    @property
    def complete_after(self) -> int:
        """Every event of this channel with a sequence above this one is in its history."""
        trimmed = self.frames.trimmed_seq
        return trimmed if trimmed is not None and trimmed > self._complete_after \
            else self._complete_after

    # -- publishing --------------------------------------------------------------------
    def publish(self, data, event: str | None = None) -> str:
        """Send ``data`` to every subscriber; returns the event's id. Any thread.

        ``data`` is what ``SSEEvent`` takes: str, bytes (UTF-8) or JSON-able (a dict is
        compact JSON). The frame is encoded once here; every subscriber gets those bytes.
        """
        hub = self.hub
        if hub.broker is not None:
            text = SSEEvent(data, event=event).data  # validated and made text here
            seq = hub.broker.publish(self.name, event, text)
            hub._issued = True
            return hub.id_of(seq)
        with hub.lock:
            seq = hub.next_seq()
            event_id = hub.id_of(seq)
            try:
                frame_event = SSEEvent(data, event=event, id=event_id)
            except Exception:
                hub.seq -= 1  # invalid data: give the sequence back (we hold the lock)
                raise
            if self.log is not None:
                self.log.append(seq, event, frame_event.data)  # rule: on disk before return
            self._pending.append((seq, frame_event.encode()))
            self.published += 1
            if hub.on_loop_thread():
                self._drain_locked()
            elif not self._drain_scheduled:
                self._drain_scheduled = True
                hub.loop.call_soon_threadsafe(self.drain)
        return event_id

    def publish_many(self, items, event: str | None = None) -> list:
        """``publish`` each of ``items`` (data values) in order, with one ``event`` name;
        returns their ids. With a broker that batches (Redis: one round trip and one
        atomic script per 500 events, so their ids are consecutive) this is far faster
        than a loop of ``publish``; without one it is that loop."""
        hub = self.hub
        if hub.broker is None:
            return [self.publish(data, event=event) for data in items]
        texts = [SSEEvent(data, event=event).data for data in items]
        seqs = hub.broker.publish_many(self.name, event, texts)
        hub._issued = True
        return [hub.id_of(seq) for seq in seqs]

    def drain(self) -> None:
        with self.hub.lock:
            self._drain_locked()

    def _drain_locked(self) -> None:
        self._drain_scheduled = False
        pending = self._pending
        append = self.frames.append
        while pending:
            seq, frame = pending.popleft()
            append(seq, frame)

    # -- reading -----------------------------------------------------------------------
    def subscribe(self, request, headers=None) -> StreamResponse:
        """An SSE stream of this channel for ``request`` (Last-Event-ID honoured)."""
        return self.hub.subscribe(request, [self], self.budget_bytes, headers=headers)

    def events(self):
        """The events in the history, oldest first, as (id, event, data) tuples.

        ``data`` is the text that was sent (a dict was sent as JSON text).
        """
        with self.hub.lock:
            self._drain_locked()
            frames = list(self.frames.frames(self.frames.base))
        result = []
        for seq, frame in frames:
            event, data = _parse_frame(frame)
            result.append((self.hub.id_of(seq), event, data))
        return result

    @property
    def position(self) -> str:
        """An id that, as a Last-Event-ID, resumes from now: the newest id issued (by any
        channel of the app). Take it together with a snapshot of your state to subscribe
        from exactly that state."""
        hub = self.hub
        with hub.lock:
            return hub.id_of(hub.seq)

    @property
    def last_id(self):
        seqs = self.frames.seqs
        return self.hub.id_of(seqs[-1]) if seqs else None

    @property
    def subscriber_count(self) -> int:
        return len(self.frames.subscribers)

    # -- metrics (read on the loop thread) ----------------------------------------------
    @property
    def dropped(self) -> int:
        """Slow subscribers disconnected so far (more than ``budget_bytes`` behind)."""
        return self.frames.dropped

    def lags(self) -> list:
        """Each subscriber's lag in bytes: what this channel published that has not reached
        its socket yet (left in the shared buffer, plus queued in its connection's outbox;
        for a subscriber of several channels the outbox counts in each)."""
        flog = self.frames
        end = flog.end
        return [end - sub.offset_in(flog) + sub.transport.get_write_buffer_size()
                for sub in flog.subscribers]

    def close(self) -> None:
        if self.log is not None:
            self.log.close()


def _parse_frame(frame: bytes):
    """(event, data) of one frame encoded by SSEEvent (our own format, not any input)."""
    event = None
    lines = []
    for line in frame.decode("utf-8").split("\n"):
        if line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: "):
            lines.append(line[6:])
    return event, "\n".join(lines)
