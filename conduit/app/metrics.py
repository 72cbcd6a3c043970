"""Prometheus metrics: ``app.metrics("/metrics")`` serves the server's figures as text.

    app = App()
    app.metrics("/metrics")      # opt-in: a GET route; nothing is served without it

The answer is the Prometheus text exposition format 0.0.4 (content type
``text/plain; version=0.0.4; charset=utf-8``): for each metric a ``# HELP`` and a
``# TYPE`` line, then ``name{label="value"} number`` samples.

How the figures are made
1. Everything is computed at scrape time, on the loop thread, from state the server and
   the channels keep anyway: the sets of connections and streams, the per-status error
   counts, each stream's ``events_sent`` (counted per batch or per delivery, never per
   event per subscriber), the channels' publish counts, the hub's count of slow
   subscribers dropped, and the subscribers' offsets. A scrape costs O(connections +
   subscribers); the event path does no extra work for it.
2. Per-subscriber lag is summarised per channel (the largest and the sum), never one
   series per connection.
3. Counters only grow while the process lives (``_total``); gauges are values now.
"""

from __future__ import annotations

from conduit.http.response import Response

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def escape_label(value: str) -> str:
    """A label value as the format wants it: backslash, double quote and newline escaped."""
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


class _Exposition:
    def __init__(self) -> None:
        self.lines: list = []

    def metric(self, name: str, kind: str, help_text: str, samples) -> None:
        """``samples``: a number, or an iterable of (labels dict, number)."""
        lines = self.lines
        lines.append(f"# HELP {name} {_escape_help(help_text)}")
        lines.append(f"# TYPE {name} {kind}")
        if isinstance(samples, (int, float)):
            samples = [({}, samples)]
        for labels, value in samples:
            if labels:
                text = ",".join(f'{key}="{escape_label(str(val))}"'
                                for key, val in labels.items())
                lines.append(f"{name}{{{text}}} {_number(value)}")
            else:
                lines.append(f"{name} {_number(value)}")

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def _number(value) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    return repr(float(value))


def render(app) -> str:
    """The exposition text for ``app`` (its server and channels); call on the loop thread."""
    out = _Exposition()
    server = app.server
    if server is not None:
        stats = server.stats()
        out.metric("conduit_connections", "gauge", "Open client connections.",
                   stats["connections"])
        out.metric("conduit_streams", "gauge",
                   "Open SSE streams (generator streams and channel subscriptions).",
                   stats["streams"])
        out.metric("conduit_requests_total", "counter", "Requests dispatched.",
                   stats["requests"])
        out.metric("conduit_events_delivered_total", "counter",
                   "Events written to clients: stream events and channel frames delivered "
                   "to subscribers.", stats["events_sent"])
        out.metric("conduit_outbox_bytes", "gauge",
                   "Bytes queued in the connections' outboxes (not yet taken by the "
                   "kernel).", server.outbox_bytes())
        out.metric("conduit_error_responses_total", "counter",
                   "Responses with a status of 400 or more, by status: those conduit "
                   "answered itself (malformed requests, 408) and those handlers answered.",
                   [({"status": status}, count)
                    for status, count in sorted(stats["errors_by_status"].items())])
        out.metric("conduit_connections_refused_total", "counter",
                   "Connections closed right after accept, by reason.",
                   [({"reason": reason}, count)
                    for reason, count in sorted(server.refused.items())])
        out.metric("conduit_write_timeouts_total", "counter",
                   "Connections cut because their client stopped reading.",
                   server.write_timeouts)
        out.metric("conduit_draining", "gauge", "1 while the server drains for shutdown.",
                   server.draining)
        out.metric("conduit_uptime_seconds", "gauge", "Seconds since the server started.",
                   stats["uptime_seconds"])
    channels = sorted(app.hub.channels.items())
    subscribers, published, dropped, lag_max, lag_sum = [], [], [], [], []
    for name, channel in channels:
        labels = {"channel": name}
        lags = channel.lags()
        subscribers.append((labels, len(lags)))
        published.append((labels, channel.published))
        dropped.append((labels, channel.dropped))
        lag_max.append((labels, max(lags, default=0)))
        lag_sum.append((labels, sum(lags)))
    out.metric("conduit_channel_subscribers", "gauge", "Subscribers of each channel.",
               subscribers)
    out.metric("conduit_channel_events_published_total", "counter",
               "Events published on each channel by this process.", published)
    out.metric("conduit_channel_slow_subscribers_dropped_total", "counter",
               "Subscribers disconnected for falling more than their byte budget behind.",
               dropped)
    out.metric("conduit_channel_subscriber_lag_max_bytes", "gauge",
               "The largest subscriber lag of each channel: bytes published that have not "
               "reached the subscriber's socket.", lag_max)
    out.metric("conduit_channel_subscriber_lag_bytes", "gauge",
               "The sum of the subscribers' lags of each channel, in bytes.", lag_sum)
    return out.text()


def metrics_response(app) -> Response:
    return Response(render(app), content_type=CONTENT_TYPE)
