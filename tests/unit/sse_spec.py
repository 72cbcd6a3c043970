"""An event-stream reader written from the WHATWG HTML standard, to check conduit's frames.

Theory of operation
-------------------
This module is the client side of "Server-sent events" (HTML Living Standard, 9.2),
sections "Parsing an event stream" and "Interpreting an event stream", transcribed on its
own terms and deliberately sharing no code or idea with ``conduit.http`` (it must not
import conduit): a test that checks the encoder against a reader built from the encoder's
own assumptions proves nothing.

Rules, in the spec's words where possible
1. The stream is decoded with "UTF-8 decode": one leading U+FEFF BYTE ORDER MARK is
   dropped, invalid bytes become U+FFFD.
2. Lines end with CRLF, a lone LF or a lone CR. A line not yet ended when the stream ends is
   never processed (it is pending data, and pending data is discarded at end of stream).
3. An empty line dispatches the event. A line starting with ":" is a comment and ignored.
   A line with a ":" is split at the first one into field name and value, and one leading
   U+0020 SPACE is removed from the value. A line without ":" is a field name whose value
   is the empty string.
4. Fields: "event" sets the event type buffer; "data" appends the value and one LF to the
   data buffer; "id" sets the last event ID buffer unless the value contains U+0000 NULL;
   "retry" sets the reconnection time to the value read as a base-ten integer if it
   consists only of ASCII digits, and is ignored otherwise (an empty value too: "only
   ASCII digits" is read as "at least one"). Any other field is ignored.
5. Dispatch: the last event ID string becomes the last event ID buffer (even when nothing
   is dispatched). If the data buffer is empty, both buffers are reset and nothing is
   dispatched. Otherwise one trailing LF is removed from the data buffer, and an event is
   dispatched with type = the event type buffer, or "message" when it is empty, data = the
   data buffer, last_event_id = the last event ID string. Both buffers are then reset.
   The last event ID buffer is not reset: it persists across events.
"""

from __future__ import annotations

from typing import NamedTuple


class Event(NamedTuple):
    """One dispatched MessageEvent: its ``type``, ``data`` and ``lastEventId``."""

    type: str
    data: str
    last_event_id: str


class Stream(NamedTuple):
    """What a client learns from a whole stream."""

    events: list[Event]
    # The reconnection time (ms) last set by a valid "retry" field, None if never set.
    retry: int | None
    # The last event ID string after the last dispatch (what Last-Event-ID would carry).
    last_event_id: str


_BOM = "\ufeff"
_ASCII_DIGITS = frozenset("0123456789")


def _lines(text: str) -> list[str]:
    """Complete lines of ``text`` (rule 2); the unterminated tail is dropped."""
    lines = []
    start = 0
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == "\r":
            lines.append(text[start:i])
            if i + 1 < n and text[i + 1] == "\n":
                i += 1
            start = i + 1
        elif ch == "\n":
            lines.append(text[start:i])
            start = i + 1
        i += 1
    return lines


def parse(stream: bytes) -> Stream:
    """Read a complete event stream (rules 1-5) and return what a client would see."""
    text = stream.decode("utf-8", errors="replace")
    if text.startswith(_BOM):
        text = text[1:]

    events: list[Event] = []
    retry: int | None = None
    data_buffer = ""
    event_type_buffer = ""
    last_event_id_buffer = ""
    last_event_id = ""

    for line in _lines(text):
        if line == "":
            last_event_id = last_event_id_buffer
            if data_buffer == "":
                event_type_buffer = ""
                continue
            if data_buffer.endswith("\n"):
                data_buffer = data_buffer[:-1]
            events.append(Event(event_type_buffer or "message", data_buffer, last_event_id))
            data_buffer = ""
            event_type_buffer = ""
            continue
        if line.startswith(":"):
            continue
        name, colon, value = line.partition(":")
        if not colon:
            value = ""
        elif value.startswith(" "):
            value = value[1:]
        if name == "event":
            event_type_buffer = value
        elif name == "data":
            data_buffer += value + "\n"
        elif name == "id":
            if "\0" not in value:
                last_event_id_buffer = value
        elif name == "retry":
            # str.isdigit() would also accept other scripts' digits; the spec says ASCII.
            if value and all(ch in _ASCII_DIGITS for ch in value):
                retry = int(value)
        # Any other field name is ignored.

    return Stream(events, retry, last_event_id)
