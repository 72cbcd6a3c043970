"""Redis Streams broker: several conduit servers act as one hub (``--broker redis://...``).

    python -m conduit run app.py --broker redis://10.0.0.5:6379/0        # on every machine
    CONDUIT_BROKER=redis://10.0.0.5:6379/0?prefix=myapp python -m conduit run app.py
    app = App(broker="redis://127.0.0.1:6379/0")                          # programmatic

Needs redis-py (``pip install 'conduit-sse[redis]'``); nothing here is imported without a broker.
It keeps the contract of ``conduit.app.broker``; this is how.

Keys (``<prefix>`` is ``conduit`` unless the URL says ``?prefix=``)
- ``<prefix>:epoch``: the epoch every server uses (a random token, set with SET NX by the
  first server that finds it missing).
- ``<prefix>:seq``: the one sequence of all channels (INCR).
- ``<prefix>:channel:<name>``: one stream per channel. An entry's id IS its sequence
  (``<seq>-0``); its fields are ``d`` (the data text), ``e`` (the event name, absent for
  None) and ``p`` (the sequence of the entry before it in this stream, 0 for the first).
  (Not ``<prefix>:<name>``: a channel called "seq" or "epoch" would collide.)

Theory of operation
1. Publishing is one EVALSHA of ``PUBLISH_LUA`` (re-sent with SCRIPT LOAD after NOSCRIPT,
   which a restarted Redis answers): check the epoch, ``seq = INCR <prefix>:seq``,
   ``XADD <stream> MAXLEN ~ <maxlen> <seq>-0 ...``, return seq. A script runs atomically
   and scripts run one at a time, so sequences enter the streams in increasing order: the
   sequence is global (one Last-Event-ID is a cursor into several channels) and the ids
   come from the streams. ``publish`` returns once Redis has run the script: acknowledged.
   PERF: a publish costs one network round trip, which a loop of publishes pays each
   time (about 120 us on loopback in a small VM: 2-4K publishes/s); ``publish_many``
   sends up to ``PUBLISH_BATCH`` events in one script run (one round trip; atomic, so
   they get consecutive ids).
2. Because of 1, whatever one ``XREAD`` sees is *prefix-closed*: if sequence s is in its
   reply, every smaller sequence of those streams is in it or was read before. The feed (a
   thread with its own connection) runs ``XREAD BLOCK 1000 STREAMS k1 k2 .. id1 id2 ..``
   without COUNT from its last id per stream, merges the entries of all streams by
   sequence, and hands the batch to the loop thread (``Hub.deliver``): every hub gets
   every event once, in the one order. Handovers queue in order and one loop callback
   runs all that are waiting, so a busy loop takes many replies at once. The feed goes on
   reading while the loop is busy (a handler that publishes thousands of events in one
   request blocks its own loop meanwhile: its feed must not fall behind the stream's
   bound), and stops reading only when ``FEED_BACKLOG_EVENTS`` wait for the loop.
3. Gaps are exact: an entry's ``p`` names the entry before it in its stream. If the
   first entry the feed reads from a stream has ``p`` above the feed's last id there,
   the entries in between were trimmed (MAXLEN) before this process read them:
   ``Hub.gap`` (older cursors get the reset event; live subscribers of the channel are
   disconnected and come back to one). The same field gives a restored history its
   ``complete_after``.
4. ``attach`` (loop thread, server start): read the epoch (SET NX if missing), read each
   channel's newest ``history`` entries (XREVRANGE), ``Hub.reset(epoch)`` then
   ``Hub.restore``; the feed starts from the newest entry of each stream. A conduit server
   killed and restarted thus loses nothing Redis acknowledged. Redis unreachable at start
   is a startup failure (``BrokerUnavailable``, exit status 3 from the CLI): a server
   without its broker has no epoch, no history and no id source; it would answer every
   resuming client with a spurious reset and every publish with a 503. Failing keeps it out
   of rotation while the running servers keep their subscribers; a supervisor restarts it.
5. ``catch_up`` (loop thread): a non-blocking XREAD from the feed's last ids, delivered at
   once, for a client that resumes from an event it read on another server a moment ago.
   The feed may read the same entries: ``Hub.deliver`` skips what a channel has, and the
   last ids only move forward. Reading a reply (moving the last ids) and queueing its
   records for the loop happen under one hold of the lock, by the feed and by
   ``catch_up`` alike: otherwise a ``catch_up`` between the feed's read and its handover
   would deliver newer events of a channel first, and ``Hub.deliver`` would then skip the
   feed's older ones as already had (a silent gap).
9. ``sync`` (contract rule 6; ``Channel.sync``): the same non-blocking XREAD as
   ``catch_up``, but run in the loop's thread pool, so the loop serves on meanwhile;
   back on the loop, everything queued so far (the feed's backlog, then this reply) is
   delivered. Redis runs commands one at a time, so that XREAD sees every entry a script
   had written when it ran: every event acknowledged before ``sync`` was called. (Not a
   GET of ``<prefix>:seq`` and a wait for the feed to reach it: the newest sequence may
   belong to a stream this app does not read, another app version's channel, and the
   wait would never end.) Redis down: ``BrokerUnavailable``, a 503.
6. Redis down or unreachable: the feed logs one warning, marks the broker down and
   reconnects with backoff (50 ms doubling to 1 s). While down, ``publish`` raises
   ``BrokerUnavailable`` at once (503 with Retry-After; the loop is not blocked); a
   publish that fails on its own (socket errors, 1 s timeouts) also answers 503.
   Subscribers stay connected (heartbeats go on); when Redis is back the feed continues
   from its last ids, so they get what was published meanwhile, in order.
7. A 503 means "not acknowledged", never "not published": if the connection dies after
   Redis ran the script but before its reply arrived, the event is in the stream and a
   retry publishes it again. Publishers that must not duplicate put an id in the data.
8. Redis that lost acknowledged writes (restarted without its data, or from an older RDB
   snapshot) is detected, not trusted: the epoch key is gone, or the sequence is below one
   this process has seen. The publish script refuses such a state (503), and the feed,
   on reconnecting, moves everyone to a new epoch (set with a compare-and-set script, so
   every server adopts the same one): ``Hub.reset`` + restore of what Redis still has.
   Old cursors get the reset event ("unknown-epoch"): the honest answer, since the
   history they point into is gone. Ids are never reused under one epoch.

Durability is Redis's: with ``appendonly yes`` and ``appendfsync always`` an acknowledged
publish is on Redis's disk before the client gets its 200 (survives a Redis crash and a
power loss); ``appendfsync everysec`` survives a Redis crash (the write is in the OS before
the reply) but a power loss can take the last second or so; RDB snapshots alone lose what
came after the last snapshot (then rule 8 applies).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from operator import itemgetter
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from conduit.app.broker import Broker, BrokerUnavailable
from conduit.server.durable import new_epoch

log = logging.getLogger("conduit.broker")

DEFAULT_PREFIX = "conduit"
#: A stream keeps at least this many entries, whatever the channel's history: the buffer a
#: server's feed reads from (a server that falls further behind than this gets a gap, rule
#: 3). 10,000 covers a burst of ``publish_many`` (70K events/s here) for over 100 ms of a
#: feed waiting for the GIL; it costs Redis about 1 MB per channel of small events (a
#: restore reads only ``history`` entries).
MIN_STREAM_ENTRIES = 10_000
#: Connect and command timeout of the publishing connections: a publish blocks the loop at
#: most this long when Redis stops answering without closing the connection.
TIMEOUT_SECONDS = 1.0
FEED_BLOCK_MS = 1000
RECONNECT_MIN_SECONDS = 0.05
RECONNECT_MAX_SECONDS = 1.0
#: Events the feed may have read that the loop thread has not taken yet before it stops
#: reading (a loop that falls this far behind leaves the rest in Redis).
FEED_BACKLOG_EVENTS = 50_000
#: Events per script run in ``publish_many``: each lot is atomic (consecutive ids, all or
#: none) and at most half the smallest stream bound (a lot never trims itself unread).
PUBLISH_BATCH = 500

# KEYS: epoch, seq, stream. ARGV: epoch, seen (the newest sequence the caller has seen),
# maxlen, "1" if an event name follows else "0", the event name (or ""), then the data of
# each event. Refuses (writes nothing) if the epoch is not the caller's or if Redis lost
# writes the caller saw (the sequence is behind it, or behind the stream). Returns the
# first sequence; the events get consecutive ones (the script is atomic).
PUBLISH_LUA = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return redis.error_reply('CONDUIT-EPOCH the epoch changed')
end
local cur = tonumber(redis.call('GET', KEYS[2]) or '0')
local top = redis.call('XREVRANGE', KEYS[3], '+', '-', 'COUNT', 1)
local prev = 0
if top[1] then prev = tonumber(string.match(top[1][1], '^(%d+)')) end
if cur < tonumber(ARGV[2]) or cur < prev then
  return redis.error_reply('CONDUIT-REWOUND Redis lost acknowledged events')
end
local n = #ARGV - 5
local first = redis.call('INCRBY', KEYS[2], n) - n + 1
for i = 0, n - 1 do
  local id = string.format('%d-0', first + i)
  local p = string.format('%d', prev)
  if ARGV[4] == '1' then
    redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[3], id, 'p', p, 'd', ARGV[6 + i],
               'e', ARGV[5])
  else
    redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[3], id, 'p', p, 'd', ARGV[6 + i])
  end
  prev = first + i
end
return first
"""

# KEYS: epoch. ARGV: the epoch the caller wants to replace ('' = none), a new one. Sets the
# new one only if the key still holds the one to replace; returns the epoch now in force.
ADOPT_EPOCH_LUA = """
local cur = redis.call('GET', KEYS[1])
if (cur == false and ARGV[1] == '') or cur == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2])
  return ARGV[2]
end
return cur
"""


def _import_redis():
    try:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry
    except ImportError as exc:
        raise RuntimeError("the redis broker needs redis-py: pip install 'conduit-sse[redis]'") \
            from exc
    return redis, Retry(NoBackoff(), 0)


def _seq(entry_id: str) -> int:
    return int(entry_id.partition("-")[0])


class RedisBroker(Broker):
    """Channels through Redis Streams (see the module docstring).

    >>> broker = RedisBroker("redis://127.0.0.1:6379/0?prefix=myapp")
    >>> broker.name, broker.prefix
    ('redis://127.0.0.1:6379/0', 'myapp')
    """

    def __init__(self, url: str, prefix: str | None = None,
                 timeout_seconds: float = TIMEOUT_SECONDS) -> None:
        redis, no_retry = _import_redis()
        parts = urlsplit(url)
        query = parse_qsl(parts.query, keep_blank_values=True)
        given = [value for key, value in query if key == "prefix"]
        self.prefix = prefix or (given[-1] if given else DEFAULT_PREFIX)
        if not self.prefix:
            raise ValueError(f"empty prefix in broker URL {url!r}")
        rest = urlencode([(k, v) for k, v in query if k != "prefix"])
        self.url = url.partition("?")[0] + (f"?{rest}" if rest else "")
        # Shown in logs: never the password.
        where = parts.path if parts.scheme == "unix" else \
            f"{parts.hostname or 'localhost'}:{parts.port or 6379}{parts.path or '/0'}"
        self.name = f"{parts.scheme}://{where}"
        common = dict(decode_responses=True, protocol=2, retry=no_retry,
                      socket_connect_timeout=timeout_seconds)
        try:
            # Publishing connections: a pool (thread-safe; a connection Redis closed is
            # replaced when taken from the pool). No retries: a retried script may run twice.
            self._pub = redis.Redis.from_url(self.url, socket_timeout=timeout_seconds,
                                             **common)
        except ValueError as exc:
            raise ValueError(f"bad broker URL {url!r}: {exc}") from None
        self._feed_options = dict(common, single_connection_client=True,
                                  socket_timeout=FEED_BLOCK_MS / 1000 + 2 * timeout_seconds)
        self._redis = redis
        self._errors = (redis.ConnectionError, redis.TimeoutError, OSError)
        self._publish_script = self._pub.register_script(PUBLISH_LUA)
        self._adopt_script = self._pub.register_script(ADOPT_EPOCH_LUA)
        self._epoch_key = f"{self.prefix}:epoch"
        self._seq_key = f"{self.prefix}:seq"
        self._hub: Any = None  # the Hub (conduit.app.channel), from attach
        self._lock = threading.Lock()  # guards _last and _seen (feed thread and loop)
        self._last: dict = {}  # stream key -> newest sequence read from it
        self._seen = 0  # newest sequence this process has read (for rule 8)
        self._epoch = None  # the epoch of _last and _seen (the hub adopts it on its loop)
        self.up = False  # the feed is connected: publishes are tried
        self._publish_failing = False
        self._resync = threading.Event()  # a publish found the epoch or sequence wrong
        self._closing = threading.Event()
        # Handovers to the loop thread, in order: (fn, args, events) read by the feed and
        # not yet run; one drain on the loop runs them all (rule 2).
        self._queue: list = []
        self._queued_events = 0
        self._drain_scheduled = False
        self._room = threading.Condition(self._lock)  # the loop drained the queue
        self._thread: threading.Thread | None = None

    # -- keys --------------------------------------------------------------------------
    def key(self, channel: str) -> str:
        return f"{self.prefix}:channel:{channel}"

    def _maxlen(self, channel: str) -> int:
        ch = self._hub.channels.get(channel) if self._hub is not None else None
        history = ch.history if ch is not None else 0
        return max(history, MIN_STREAM_ENTRIES)

    # -- the contract ------------------------------------------------------------------
    def attach(self, hub) -> None:
        self._hub = hub
        for channel in hub.channels.values():
            if channel.log is not None:  # made before the broker was set: Redis keeps it now
                channel.log.close()
                channel.log = None
        try:
            state = self._read_state(self._pub)
        except self._errors as exc:
            raise BrokerUnavailable(f"cannot reach Redis at {self.name}: {exc}") from None
        self._apply(*state)
        restored = sum(len(records) for records, _ in state[1].values())
        log.info("broker %s (prefix %s): epoch %s, %d channels, %d events restored",
                 self.name, self.prefix, state[0], len(state[1]), restored)
        self.up = True
        self._thread = threading.Thread(target=self._feed, name="conduit-redis-feed",
                                        daemon=True)
        self._thread.start()

    def publish(self, channel: str, event: str | None, data: str) -> int:
        return self._publish(channel, event, [data])

    def publish_many(self, channel: str, event: str | None, datas: list) -> list:
        seqs: list = []
        for start in range(0, len(datas), PUBLISH_BATCH):
            lot = datas[start:start + PUBLISH_BATCH]
            first = self._publish(channel, event, lot)
            seqs.extend(range(first, first + len(lot)))
        return seqs

    def _publish(self, channel: str, event: str | None, datas: list) -> int:
        """Publish ``datas`` with one script run (rule 1); the first sequence."""
        hub = self._hub
        if hub is None or not self.up:
            raise BrokerUnavailable("the broker (Redis) is unreachable; retry")
        args = [hub.epoch, hub.seq, self._maxlen(channel), "0" if event is None else "1",
                event or "", *datas]
        try:
            seq = self._publish_script(keys=[self._epoch_key, self._seq_key,
                                             self.key(channel)], args=args)
        except self._redis.ResponseError as exc:
            if str(exc).startswith("CONDUIT-"):
                # Rule 8: the feed moves everyone to a new epoch; the client retries.
                self._resync.set()
                raise BrokerUnavailable("the broker lost its history; switching to a new "
                                        "epoch: retry") from None
            # READONLY (a replica after a failover), OOM (maxmemory), BUSY (a script):
            # Redis cannot take it now. Logged, so a misconfiguration (WRONGTYPE) shows.
            self._publish_failed(exc)
        except self._errors as exc:
            self._publish_failed(exc)
        if self._publish_failing:
            self._publish_failing = False
            log.info("broker %s: publishing again", self.name)
        return int(seq)

    def _publish_failed(self, exc):
        if not self._publish_failing:
            self._publish_failing = True
            log.warning("broker %s: publish failed (%s): answering 503 until Redis takes "
                        "publishes again", self.name, exc)
        raise BrokerUnavailable("the broker (Redis) is unavailable; retry") from None

    def catch_up(self) -> None:
        hub = self._hub
        if hub is None or not self.up:
            return
        self._drain_queue()  # what the feed has read first (the loop may have been busy)
        if self._epoch != hub.epoch:
            return  # a new epoch is on its way: nothing to add
        try:
            reply = self._pub.xread(self._cursors())
        except self._errors:
            return  # the resuming client gets a stale-cursor reset: honest
        self._queue_reply(reply)
        self._drain_queue()  # rule 5: in order, after what the feed had queued

    async def sync(self) -> None:
        """Rule 9 (loop thread)."""
        if self._hub is None or not self.up:
            raise BrokerUnavailable("the broker (Redis) is unreachable; retry")
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(None, self._read_now)
        except (self._redis.RedisError, OSError):
            raise BrokerUnavailable("the broker (Redis) is unavailable; retry") from None
        self._drain_queue()

    def _read_now(self) -> None:
        """One non-blocking XREAD from the feed's last ids, queued for the loop (a pool
        thread; rule 9)."""
        self._queue_reply(self._pub.xread(self._cursors()))

    def close(self) -> None:
        self._closing.set()
        with self._room:
            self._room.notify_all()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(0.2)  # it may be blocked in XREAD (up to 1 s): a daemon thread
        self._pub.close()

    # -- state: epoch and histories (rules 4 and 8) ------------------------------------
    def _read_state(self, client, known=None):
        """(epoch, {channel: (records, complete_after)}, {key: newest seq}) read from Redis,
        or None if ``known`` is Redis's epoch and Redis lost nothing this process saw."""
        epoch, seq = client.mget([self._epoch_key, self._seq_key])
        with self._lock:
            seen = self._seen
        if epoch is None or (epoch == known and int(seq or 0) < seen):
            replaced = "" if epoch is None else epoch
            epoch = self._adopt_script(keys=[self._epoch_key], args=[replaced, new_epoch()],
                                       client=client)
        if epoch == known:
            return None
        if known is not None:
            # Whichever server adopted the new epoch first (compare-and-set), every server
            # that knew the old one says so: each of them resets its older cursors.
            log.warning("broker %s: Redis lost acknowledged events (restarted without its "
                        "data?): new epoch %s; older cursors get the reset event",
                        self.name, epoch)
        names = list(self._hub.channels)
        histories = {name: self._hub.channels[name].history for name in names}
        pipe = client.pipeline(transaction=False)
        for name in names:
            pipe.xrevrange(self.key(name), "+", "-", count=max(histories[name], 1))
        restored = {}
        last = {}
        for name, entries in zip(names, pipe.execute(), strict=True):
            last[self.key(name)] = _seq(entries[0][0]) if entries else 0
            kept = entries[:histories[name]]
            if kept:
                complete_after = int(kept[-1][1].get("p", 0))
            else:
                complete_after = last[self.key(name)]
            records = [(_seq(entry_id), fields.get("e"), fields.get("d", ""))
                       for entry_id, fields in reversed(kept)]
            restored[name] = (records, complete_after)
        return epoch, restored, last

    def _apply(self, epoch, restored, last) -> None:
        """Adopt a state read by ``_read_state``: the feed's cursors here, the hub's epoch and
        histories (``_apply_hub``, on the loop thread)."""
        on_loop = self._hub.on_loop_thread()
        with self._lock:
            self._epoch = epoch
            self._last = last
            self._seen = max(last.values(), default=0)
            if not on_loop:  # queued with the new cursors, before any reply read from them
                self._enqueue_locked(self._apply_hub, (epoch, restored))
        if on_loop:
            self._apply_hub(epoch, restored)
        else:
            self._wait_for_room()

    def _apply_hub(self, epoch, restored) -> None:
        hub = self._hub
        hub.reset(epoch)
        for name, (records, complete_after) in restored.items():
            hub.restore(name, records, complete_after)

    # -- the feed (rules 2, 3 and 6) ---------------------------------------------------
    def _cursors(self) -> dict:
        """{stream key: last id} for every channel the hub has now."""
        names = tuple(self._hub.channels)
        with self._lock:
            return {self.key(name): f"{self._last.get(self.key(name), 0)}-0" for name in names}

    def _queue_reply(self, reply) -> int:
        """Take an XREAD reply and queue its events for the loop, under one hold of the
        lock (rule 5); how many events were queued."""
        with self._lock:
            gaps, records = self._collect_locked(reply)
            if gaps or records:
                self._enqueue_locked(self._deliver, (gaps, records), len(records))
        return len(records)

    def _collect_locked(self, reply):
        """(gaps, records) of an XREAD reply: records merged by sequence; the feed's last
        ids move forward (never back: catch_up and the feed may read the same entries).
        Called with the lock held."""
        gaps = []
        records = []
        prefix_len = len(self.prefix) + len(":channel:")
        last = self._last
        for key, entries in reply or ():
            if not entries:
                continue
            name = key[prefix_len:]
            after = last.get(key, 0)
            newest = after
            for entry_id, fields in entries:
                seq = _seq(entry_id)
                if seq <= after:
                    continue
                if newest == after and int(fields.get("p", 0)) > after:
                    gaps.append((name, int(fields["p"])))  # trimmed before we read it
                records.append((seq, name, fields.get("e"), fields.get("d", "")))
                newest = seq
            last[key] = newest
            if newest > self._seen:
                self._seen = newest
        records.sort(key=itemgetter(0))
        return gaps, records

    def _deliver(self, gaps, records) -> None:
        hub = self._hub
        for name, complete_after in gaps:
            log.warning("broker %s: channel %s: events up to %d were trimmed from Redis "
                        "before this server read them; older cursors get the reset event",
                        self.name, name, complete_after)
            hub.gap(name, complete_after)
        if records:
            hub.deliver(records)

    def _enqueue_locked(self, fn, args, events: int = 0) -> None:
        """Run ``fn(*args)`` on the loop thread after every earlier handover (the lock is
        held). The feed goes on reading while the loop is busy (a handler publishing
        thousands of events in one request must not make its own server's feed fall
        behind the stream's bound), up to ``FEED_BACKLOG_EVENTS`` waiting here
        (``_wait_for_room``); beyond that Redis holds the backlog."""
        loop = self._hub.loop
        if loop is None:
            return
        self._queue.append((fn, args))
        self._queued_events += events
        if not self._drain_scheduled:
            self._drain_scheduled = True
            loop.call_soon_threadsafe(self._drain_queue)

    def _wait_for_room(self) -> None:
        """The feed thread: wait while the loop has too many events to take (rule 2)."""
        with self._room:
            self._room.wait_for(lambda: self._queued_events <= FEED_BACKLOG_EVENTS
                                or self._closing.is_set())

    def _drain_queue(self) -> None:
        """Run what the feed handed over (loop thread)."""
        with self._room:
            queue = self._queue
            self._queue = []
            self._queued_events = 0
            self._drain_scheduled = False
            self._room.notify_all()
        for fn, args in queue:
            try:
                fn(*args)
            except Exception:
                log.exception("broker %s: error while handing events to the hub", self.name)

    def _feed(self) -> None:
        client = None
        delay = RECONNECT_MIN_SECONDS
        while not self._closing.is_set():
            try:
                if client is None:
                    client = self._redis.Redis.from_url(self.url, **self._feed_options)
                    self._sync(client)
                    if not self.up:
                        log.info("broker %s: Redis is reachable again: publishing and "
                                 "delivering", self.name)
                    self.up = True
                    delay = RECONNECT_MIN_SECONDS
                elif self._resync.is_set():
                    self._sync(client)
                reply = client.xread(self._cursors(), block=FEED_BLOCK_MS)
                if reply and self._queue_reply(reply):
                    self._wait_for_room()
            except Exception as exc:
                if self._closing.is_set():
                    break
                if self.up:
                    self.up = False
                    if isinstance(exc, self._errors):
                        log.warning("broker %s: lost Redis (%s): publishes answer 503; "
                                    "subscribers stay connected and get what they missed "
                                    "when it is back", self.name, exc)
                    else:
                        log.exception("broker %s: feed error; reconnecting", self.name)
                if client is not None:
                    with contextlib.suppress(Exception):  # a broken connection
                        client.close()
                    client = None
                self._closing.wait(delay)
                delay = min(delay * 2, RECONNECT_MAX_SECONDS)
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()

    def _sync(self, client) -> None:
        """Check the epoch and the sequence (rule 8); adopt a new state if they changed."""
        self._resync.clear()
        state = self._read_state(client, known=self._epoch)
        if state is not None:
            self._apply(*state)
