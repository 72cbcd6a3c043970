"""Brokers: one id source and one order for the hubs of several processes.

A ``Broker`` joins the ``Hub`` of this process (``conduit.app.channel``) to the hubs of other
processes: the workers of one machine (``--workers N``, the supervisor is the broker) or
conduit servers on many machines (``--broker redis://...``, Redis Streams). Without one, a
hub is its own id source and nothing here is used.

The contract (every broker keeps it; ``tests/scale`` checks it over real processes)
1. ``attach(hub)`` runs once on the loop thread when the server starts. It sets the shared
   epoch (``hub.set_epoch``), fills every channel's history (``hub.restore``), and starts a
   feed: from then on every event published anywhere reaches ``hub.deliver_threadsafe``
   (or ``hub.deliver`` on the loop thread), in the broker's one global order (ascending
   sequence numbers), each once. A record is ``(seq, channel_name, event, data_text)``.
2. ``publish(channel, event, data)`` appends one event and returns its sequence number once
   the broker has it (acknowledged: it will reach every hub, and survives what the broker
   survives). It does not put the event into the local buffers: that happens when it comes
   back through the feed, so every process sees the same order. If the broker cannot take
   it, it raises ``BrokerUnavailable`` (the request gets a 503 with Retry-After and the
   client retries; nothing is lost silently). It may be called from any thread.
3. ``catch_up()`` (optional) delivers at once anything the broker has that the feed has not
   handed over yet; the hub calls it when a client resumes from a cursor newer than what
   this process has seen (it read that event from another process a moment ago).
4. A broker that loses its connection keeps the subscribers connected and, when it is back,
   delivers what they missed from where its feed stopped (``hub.deliver`` ignores what a
   channel already has, so replaying an overlap is harmless). If what it missed was trimmed
   from the broker's history, it says so with ``hub.gap`` so cursors older than that get
   the reset event instead of a silent gap.
5. ``close()`` stops the feed (server shutdown).
6. ``async sync()`` (optional) returns, on the loop thread, once every event the broker
   had acknowledged when it was called has been handed to ``hub.deliver`` (in order,
   like the feed; it may hand over the feed's own backlog first). It is how a process
   learns what other processes published a moment ago before it answers from its own
   state (``Channel.sync``, ``ChannelListener.sync``); called for every command of a
   projection, so it must not block the loop for long (a round trip of its own, not a
   poll). It raises ``BrokerUnavailable`` when it cannot know (a 503: the client
   retries). The default runs ``catch_up()``, which is right for a broker whose
   ``catch_up`` delivers everything at once; a broker whose ``catch_up`` does nothing
   must implement ``sync``.
"""

from __future__ import annotations

from conduit.errors import BROKER_RETRY_AFTER_SECONDS as RETRY_AFTER_SECONDS
from conduit.errors import BrokerUnavailable

__all__ = ["Broker", "BrokerUnavailable", "RETRY_AFTER_SECONDS", "broker_from_url"]


class Broker:
    """Base class of brokers (see the module docstring for the contract)."""

    #: a name for logs and ``python -m conduit`` messages ("local", "redis://host:port/0")
    name = "broker"

    def attach(self, hub) -> None:
        raise NotImplementedError

    def publish(self, channel: str, event: str | None, data: str) -> int:
        raise NotImplementedError

    def publish_many(self, channel: str, event: str | None, datas: list) -> list:
        """``publish`` for several events of one channel, in order (a broker may send them
        at once); their sequence numbers. Any thread."""
        return [self.publish(channel, event, data) for data in datas]

    def catch_up(self) -> None:
        return None

    async def sync(self) -> None:
        """Rule 6: every event acknowledged before this call is delivered when it returns."""
        self.catch_up()

    def close(self) -> None:
        return None


def broker_from_url(url: str) -> Broker:
    """The broker a ``--broker``/``CONDUIT_BROKER`` URL names (``redis://host:port/db``)."""
    scheme = url.partition("://")[0].lower()
    if scheme in ("redis", "rediss", "unix"):
        from conduit.app.redis_broker import RedisBroker

        return RedisBroker(url)
    raise ValueError(f"unknown broker URL {url!r}: expected redis://host:port/db")
