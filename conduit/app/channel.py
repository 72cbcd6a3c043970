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

Listening in the process (``channel.listen``, ``App.listen``, ``sync``)

    async for event in docs.listen(after=None):     # history, then live, in id order
        apply(event.json())                          # a ChannelEvent: id, seq, channel,
                                                     # event, data (text); json()

1. A listener is an async iterator on the loop thread (an asyncio consumer: a task started
   by a startup hook, or a handler). It yields every event that enters its channels in this
   process, in id order, whichever way it came: a local publish (``_drain_locked``) or the
   broker's feed (``Hub.deliver``); so with ``--workers`` or ``--broker`` every process
   yields the same events in the same order. The frames and the listeners are fed at the
   same place, under the hub's lock: a channel without listeners pays one falsy check.
   While any listener exists, local publishes of all channels are drained together in id
   order (another thread's publish may wait in one channel's queue while the loop's own
   publish to another goes in at once). An item already queued is handed out without
   suspending, so a consumer that applies events without awaiting folds a whole replay in
   one loop turn, and no other task sees it half applied.
2. Where it starts is an SSE cursor, with the same rules (rule 3 above): ``after=None``
   is the whole history, then live; ``after=<an id>`` the events after it, then live;
   ``after=channel.position`` live only. A cursor conduit cannot honour is a reset event
   first (``ChannelEvent`` with event ``"reset"`` and the SSE reset event's JSON as data),
   then live. The history is copied into the listener when it registers (the history can
   be trimmed while it is read; replay does not count against ``max_pending``).
3. Never a silent gap. While listening, a reset is queued behind what the listener has,
   then it goes on live: when the hub starts over (``Hub.reset``, reason
   ``"unknown-epoch"``), when a channel misses events (``Hub.gap``, ``"stale-cursor"``),
   or when the listener's consumer falls ``max_pending`` events behind (its queue is
   dropped, a warning is logged, ``"slow-consumer"``): the same reasons a reconnecting
   SSE client would get. A reset queued while listening gets its id when it is yielded:
   just before the first event queued after it (or the newest id, if none), so
   ``listen(after=reset.id)`` would go on exactly after it. The usual answer to a reset
   is to rebuild: listen again from the last event applied (resumes from history if it is
   still there) or from ``None``.
4. ``Hub.restore`` (a broker's history, at attach and after ``Hub.reset``) is history,
   not news: it reaches listeners that register afterwards, as replay. A listener that
   was there already has the reset that comes with it.
5. Breaking out of ``async for`` drops the iterator, which unregisters it (CPython frees
   it at once); ``aclose()`` or ``async with channel.listen() as events:`` do it
   explicitly. ``listener_count`` says how many are registered.
6. Consistency across processes: ``await channel.sync()`` returns once this process has
   received every event the broker had acknowledged when it was called (no broker: at
   once), with the sequence it reached; ``await listener.sync()`` also waits until the
   listener's consumer has had every event up to it (it came back for the next one). A
   projection folded from a listener answers "does document X exist?" after
   ``listener.sync()`` exactly as the process that created X would. The broker side is
   ``Broker.sync`` (``conduit.app.broker``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections import deque
from typing import Any, NamedTuple

from conduit.errors import HTTPError
from conduit.http.response import StreamResponse
from conduit.http.sse import SSEEvent, comment
from conduit.server.durable import ChannelLog, HubState, default_data_dir, new_epoch
from conduit.server.hub import DEFAULT_BUDGET_BYTES, FrameLog, Subscription

log = logging.getLogger("conduit.app")

RESET_EVENT = "reset"
#: Live events a listener may hold for its consumer before it is given a reset (rule 3).
DEFAULT_MAX_PENDING = 10_000


class ChannelEvent(NamedTuple):
    """One event as a listener yields it (``Channel.listen``): an immutable value.

    ``id`` is the SSE id (``"<epoch>-<seq>"``), ``seq`` its sequence, ``channel`` the
    channel's name, ``event`` the event name (None for a plain message, ``"reset"`` for a
    reset: then ``channel`` is the first of the channels it names), ``data`` the text that
    was sent (a dict was sent as JSON text; line ends read as LF, as an SSE client reads
    them).

    >>> ChannelEvent("e1-7", 7, "documents", None, '{"type": "DocumentSaved"}').json()
    {'type': 'DocumentSaved'}
    """

    id: str
    seq: int
    channel: str
    event: str | None
    data: str

    def json(self) -> Any:
        """``data`` parsed as JSON."""
        return json.loads(self.data)


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
        # Open listeners (Channel.listen): while there is one, local publishes of every
        # channel are drained together, in id order (see _drain_all_locked).
        self.listeners = 0

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
        for inbox in self._inboxes():
            inbox.close()  # their consumers' async for ends
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
                if channel._inboxes:
                    self._dispatch(channel, seq, event, data)

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
            for inbox in channel._inboxes:
                inbox.reset("stale-cursor", [name])
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
            for inbox in self._inboxes():
                inbox.reset("unknown-epoch", inbox.names)
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

    def cursor_trouble(self, parsed, channel) -> str | None:
        """Why ``parsed`` (``parse()`` of a Last-Event-ID or listen cursor) cannot resume
        ``channel`` (the reason of the reset event), or None when it can. Hub lock held."""
        if parsed is None:
            return "malformed-cursor"
        if parsed[0] != self.epoch:
            return "unknown-epoch"
        if parsed[1] < channel.complete_after or parsed[1] > self.seq:
            return "stale-cursor"
        return None

    def on_loop_thread(self) -> bool:
        return self.loop is None or threading.get_ident() == self.loop_thread

    # -- listening in the process (module docstring, "Listening") -----------------------
    def _inboxes(self) -> list:
        seen: dict = {}
        for channel in self.channels.values():
            for inbox in channel._inboxes:
                seen[id(inbox)] = inbox
        return list(seen.values())

    def _dispatch(self, channel: Channel, seq: int, event, text: str) -> None:
        """Hand one event to the listeners of ``channel`` (hub lock held, loop thread)."""
        if "\r" in text:  # as a client reads the frame (and as replay parses it)
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        item = ChannelEvent(self.id_of(seq), seq, channel.name, event, text)
        for inbox in channel._inboxes:
            inbox.push(item)

    def _drain_all_locked(self) -> None:
        """Every channel's local publishes into its buffer, merged in id order, so that a
        listener of several channels yields them in id order (a publish on the loop thread
        drains at once, while another thread's lower id may still wait in another
        channel's queue). Used while listeners exist; called with the lock held."""
        waiting = [channel for channel in self.channels.values() if channel._pending]
        if not waiting:
            return
        if len(waiting) == 1:
            items = [(entry, waiting[0]) for entry in waiting[0]._pending]
        else:
            items = sorted(((entry, channel) for channel in waiting
                            for entry in channel._pending), key=_first_of_first)
        for channel in waiting:
            channel._pending.clear()
        for (seq, frame, event, text), channel in items:
            channel.frames.append(seq, frame)
            if channel._inboxes:
                self._dispatch(channel, seq, event, text)

    def listen(self, channels, after: str | None = None,
               max_pending: int = DEFAULT_MAX_PENDING) -> ChannelListener:
        """A ``ChannelListener`` of ``channels`` from ``after`` (see ``Channel.listen``)."""
        if type(max_pending) is not int or max_pending <= 0:
            raise ValueError(f"max_pending must be an int > 0, got {max_pending!r}")
        if after is not None and not isinstance(after, str):
            raise TypeError(f"after must be an event id (str) or None, got "
                            f"{type(after).__name__}")
        if self.loop is None or not self.on_loop_thread():
            raise RuntimeError("listen() needs the running server, on its loop thread: call "
                               "it from a handler, a task or an App.on_startup hook")
        parsed = self.parse(after) if after else None
        if (self.broker is not None and parsed is not None and parsed[0] == self.epoch
                and parsed[1] > self.seq):
            self.broker.catch_up()  # as in subscribe: an id read on another process
        with self.lock:
            for channel in channels:
                channel._drain_locked()
            stale = []
            reason = "malformed-cursor"
            sources = []
            for channel in channels:
                flog = channel.frames
                if after is None:
                    sources.append((channel, flog.frames(flog.base)))
                    continue
                trouble = self.cursor_trouble(parsed, channel)
                if trouble is None:
                    assert parsed is not None  # (no trouble: a well-formed cursor)
                    sources.append((channel, flog.frames(flog.offset_after(parsed[1]))))
                    continue
                reason = trouble
                stale.append(channel.name)
            replay = [(seq, channel.name, frame) for channel, frames in sources
                      for seq, frame in frames]
            if len(sources) > 1:
                replay.sort(key=_first)
            inbox = _Inbox(self, channels, max_pending)
            if stale:
                inbox.items.append(_Reset(reason, stale, after, self.seq))
            id_of = self.id_of
            for seq, name, frame in replay:
                event, data = _parse_frame(frame)
                inbox.items.append(ChannelEvent(id_of(seq), seq, name, event, data))
            inbox.replay = len(inbox.items)
            inbox.cursor = after
            inbox.had = inbox.done = (self.epoch, parsed[1] if parsed and not stale else 0)
            for channel in channels:
                channel._inboxes = (*channel._inboxes, inbox)
            self.listeners += 1
        return ChannelListener(inbox)

    async def sync(self) -> int:
        """Return once this process has received every event the broker had acknowledged
        when ``sync`` was called (no broker: at once); the newest sequence received."""
        if self.loop is not None and not self.on_loop_thread():
            raise RuntimeError("sync() runs on the server's loop thread")
        broker = self.broker
        if broker is not None:
            sync = getattr(broker, "sync", None)  # a broker by shape may lack it
            if sync is not None:
                await sync()
            else:
                broker.catch_up()
        with self.lock:
            for channel in self.channels.values():
                channel._drain_locked()  # what other threads published, into the buffers
            return self.seq

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
                trouble = self.cursor_trouble(parsed, channel)
                if trouble is None:
                    assert parsed is not None  # (no trouble: a well-formed cursor)
                    cursors.append((flog, flog.offset_after(parsed[1])))
                    continue
                reason = trouble
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
        self._pending: deque = deque()  # (seq, frame, event, data text) from publish
        self._drain_scheduled = False
        self._inboxes: tuple = ()  # its listeners' inboxes (copied on change: see _Inbox)
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
            self._pending.append((seq, frame_event.encode(), event, frame_event.data))
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
        if self.hub.listeners:
            self.hub._drain_all_locked()  # listeners get every channel's in id order
            return
        pending = self._pending
        append = self.frames.append
        while pending:
            entry = pending.popleft()
            append(entry[0], entry[1])

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

    def listen(self, after: str | None = None,
               max_pending: int = DEFAULT_MAX_PENDING) -> ChannelListener:
        """The events of this channel in this process, as an async iterator of
        ``ChannelEvent``: from the history after ``after`` (None: all of it;
        ``channel.position``: none), then live, in id order. Loop thread (a handler, a
        task, an ``App.on_startup`` hook).

        >>> async def project():                      # doctest: +SKIP
        ...     async for event in docs.listen():
        ...         if event.event == "reset":        # a gap: rebuild (module docstring)
        ...             ...
        ...         else:
        ...             apply(event.json())

        A cursor conduit cannot honour, a gap while listening, or a consumer more than
        ``max_pending`` live events behind yields a reset event (event ``"reset"``, data
        the SSE reset event's JSON), then goes on live: never a silent gap. Breaking out
        of the loop, ``aclose()`` or ``async with`` unregister it.
        """
        return self.hub.listen([self], after, max_pending)

    async def sync(self) -> int:
        """Return once this process has received every event the broker had acknowledged
        when ``sync`` was called (at once without a broker); the newest sequence this
        process has. Then ``await listener.sync()`` is the way to wait for a consumer.

        >>> async def handler(request):               # doctest: +SKIP
        ...     await docs.sync()                     # what any server acknowledged is here
        """
        return await self.hub.sync()

    @property
    def listener_count(self) -> int:
        """Listeners registered on this channel (``listen``)."""
        return len(self._inboxes)

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


def _first(item):
    return item[0]


def _first_of_first(item):
    return item[0][0]


class _Reset:
    """A reset queued for a listener; ``seq`` None until it is yielded (rule 3)."""

    __slots__ = ("reason", "names", "last_event_id", "seq")

    def __init__(self, reason: str, names: list, last_event_id, seq: int | None = None) -> None:
        self.reason = reason
        self.names = list(names)
        self.last_event_id = last_event_id
        self.seq = seq


class _Inbox:
    """What the channels hold of a listener: its queue and its consumer's waiters.

    The user holds the ``ChannelListener``, which owns this; the channels hold only
    this, so a listener dropped by its consumer (``break``) is freed and its ``__del__``
    closes the inbox. Everything runs on the loop thread with the hub's lock held, except ``close``
    from a finaliser, which takes the lock itself.
    """

    __slots__ = ("hub", "channels", "names", "items", "replay", "max_pending", "waiter",
                 "cursor", "had", "done", "idle", "closed", "reach")

    def __init__(self, hub: Hub, channels, max_pending: int) -> None:
        self.hub = hub
        self.channels = list(channels)
        self.names = [channel.name for channel in self.channels]
        self.items: deque = deque()  # ChannelEvent and _Reset, in the order to yield
        self.replay = 0  # the first ``replay`` items are history (not counted as pending)
        self.max_pending = max_pending
        self.waiter: asyncio.Future | None = None  # the consumer, waiting for an item
        self.cursor: str | None = None  # the id of the last item yielded (or ``after``)
        # Positions are (epoch, seq): a hub reset starts the sequence over in a new epoch.
        self.had: tuple = ("", 0)  # the last item yielded
        self.done: tuple = ("", 0)  # the consumer has had every event up to this one
        self.idle = False  # the consumer is in __anext__ (done with what it was given)
        self.closed = False
        self.reach: list = []  # (epoch, seq, future) of sync() calls waiting

    # -- the producers' side (hub lock held, loop thread) --------------------------------
    def push(self, item: ChannelEvent) -> None:
        items = self.items
        if len(items) - self.replay >= self.max_pending:
            self._overflow()
        items.append(item)
        if self.waiter is not None:
            self._wake()

    def _overflow(self) -> None:
        items = self.items
        pending_reset = bool(items) and type(items[0]) is _Reset \
            and items[0].reason == "slow-consumer"
        if not pending_reset:
            log.warning("listener of %s: its consumer is more than %d events behind; "
                        "dropping them: it gets the reset event, then goes on live",
                        ", ".join(self.names), self.max_pending)
        items.clear()
        self.replay = 0
        items.append(_Reset("slow-consumer", self.names, self.cursor))

    def reset(self, reason: str, names: list) -> None:
        items = self.items
        last = items[-1] if items else None
        if type(last) is _Reset and last.seq is None:  # one reset covers both
            last.reason = reason
            last.names += [name for name in names if name not in last.names]
        else:
            items.append(_Reset(reason, names, self.cursor))
        if self.waiter is not None:
            self._wake()

    def _wake(self) -> None:
        waiter = self.waiter
        self.waiter = None
        if waiter is not None and not waiter.done():
            _resolve(waiter, None)

    # -- the consumer's side (loop thread) -----------------------------------------------
    def position(self) -> tuple:
        """(epoch, seq): the consumer has had every event up to it (module rule 6)."""
        if not self.idle:
            return self.done  # it is busy with the item after it
        items = self.items
        if not items:
            hub = self.hub
            with hub.lock:
                hub._drain_all_locked()  # another thread's publish may be on its way
            if not items:
                return (hub.epoch, hub.seq)
        front = items[0]
        if type(front) is _Reset:
            return self.had  # not past the reset: still where it was (maybe an old epoch)
        return (front.id.rpartition("-")[0], front.seq - 1)

    def back(self) -> None:
        """The consumer asks for the next item: it is done with what it had."""
        self.idle = True
        self.done = self.position()
        if self.reach:
            self._settle()

    def _settle(self) -> None:
        done_epoch, done = self.done
        epoch = self.hub.epoch
        waiting = []
        for entry in self.reach:
            # Reached; or asked in an epoch the hub has left (the answer is moot: the
            # consumer is about to handle the reset that came with the new one).
            if (entry[0] == done_epoch and entry[1] <= done) or entry[0] != epoch:
                if not entry[2].done():
                    entry[2].set_result(None)
            else:
                waiting.append(entry)
        self.reach = waiting

    def take(self):
        """The next item for the consumer (there is one)."""
        item = self.items.popleft()
        if self.replay:
            self.replay -= 1
        self.idle = False
        if type(item) is _Reset:
            hub = self.hub
            if item.seq is None:
                # Resets are coalesced, so the item after it (if any) is an event.
                following = self.items[0].seq if self.items else None
                item.seq = hub.seq if following is None else min(hub.seq, following - 1)
            data = {"reason": item.reason, "channels": item.names,
                    "last_event_id": item.last_event_id}
            event = ChannelEvent(hub.id_of(item.seq), item.seq, item.names[0], RESET_EVENT,
                                 json.dumps(data, separators=(",", ":"), ensure_ascii=False))
        else:
            event = item
        self.cursor = event.id
        self.had = (event.id.rpartition("-")[0], event.seq)
        return event

    async def wait(self) -> None:
        loop = asyncio.get_running_loop()
        self.waiter = waiter = loop.create_future()
        try:
            await waiter
        finally:
            if self.waiter is waiter:
                self.waiter = None

    async def reached(self, seq: int) -> None:
        """Return once the consumer has had every event up to ``seq`` of this epoch."""
        epoch, done = self.position()
        if self.closed or (epoch == self.hub.epoch and done >= seq):
            return
        future = asyncio.get_running_loop().create_future()
        self.reach.append((self.hub.epoch, seq, future))
        await future

    def close(self) -> None:
        if self.closed:
            return
        hub = self.hub
        with hub.lock:
            if self.closed:
                return
            self.closed = True
            for channel in self.channels:
                channel._inboxes = tuple(inbox for inbox in channel._inboxes
                                         if inbox is not self)
            hub.listeners -= 1
            self.items.clear()
            self.replay = 0
        self._wake()
        for entry in self.reach:
            if not entry[2].done():
                _resolve(entry[2], None)
        self.reach = []


def _resolve(future: asyncio.Future, value) -> None:
    """``future.set_result(value)`` from any thread (a finaliser may run on another)."""
    loop = future.get_loop()
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        if not future.done():
            future.set_result(value)
        return
    def settle():
        if not future.done():
            future.set_result(value)
    try:
        loop.call_soon_threadsafe(settle)
    except RuntimeError:
        pass  # its loop is closed: nobody waits any more


class ChannelListener:
    """An async iterator of ``ChannelEvent`` (``Channel.listen``, ``App.listen``).

    >>> async def project():                          # doctest: +SKIP
    ...     async with docs.listen(after=None) as events:
    ...         async for event in events:
    ...             ...

    ``channels``: the names it reads. ``pending``: items waiting for the consumer.
    ``position``: an id such that the consumer has had every event up to it (and none
    after it): a cursor for ``listen(after=...)`` or an SSE ``Last-Event-ID`` that goes
    on exactly from the consumer's state. ``await sync()``: returns once the consumer has
    had every event the broker had acknowledged when it was called.
    """

    __slots__ = ("_inbox",)

    def __init__(self, inbox: _Inbox) -> None:
        self._inbox = inbox

    @property
    def channels(self) -> list:
        return list(self._inbox.names)

    @property
    def pending(self) -> int:
        return len(self._inbox.items)

    @property
    def closed(self) -> bool:
        return self._inbox.closed

    @property
    def position(self) -> str:
        epoch, seq = self._inbox.position()
        return f"{epoch}-{seq}"

    async def sync(self) -> int:
        """``Channel.sync``, then wait until the consumer has had every event up to the
        sequence it returns (it asked for the next one); that sequence. The consumer must
        be running (a task in ``async for``), or this waits until the listener closes."""
        inbox = self._inbox
        seq = await inbox.hub.sync()
        await inbox.reached(seq)
        return seq

    def __aiter__(self) -> ChannelListener:
        return self

    async def __anext__(self) -> ChannelEvent:
        inbox = self._inbox
        while True:
            if inbox.closed:
                raise StopAsyncIteration
            inbox.back()
            if inbox.items:
                return inbox.take()
            await inbox.wait()

    async def aclose(self) -> None:
        """Unregister (idempotent): the ``async for`` over it ends."""
        self._inbox.close()

    async def __aenter__(self) -> ChannelListener:
        return self

    async def __aexit__(self, *exc) -> None:
        self._inbox.close()

    def __del__(self) -> None:
        inbox = getattr(self, "_inbox", None)
        if inbox is not None and not inbox.closed:
            inbox.close()

    def __repr__(self) -> str:
        inbox = self._inbox
        state = "closed" if inbox.closed else f"{len(inbox.items)} pending"
        return f"<ChannelListener of {', '.join(inbox.names)}: {state}>"
