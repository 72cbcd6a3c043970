"""Tests of SSE framing, on both twins, checked against an independent spec reader.

The contract is the module docstring of ``conduit/http/_sse_py.py``. Every case runs on the
compiled and the pure twin (fixture ``sse``); frames are read back with ``sse_spec``, a
client written from the WHATWG text that shares nothing with conduit, so a round trip
checks what a browser would see rather than what the encoder believes it wrote.
"""

from __future__ import annotations

import enum
import pickle

import pytest
import sse_spec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sse_spec import Event

from conduit import _ext
from conduit.http import _sse_py
from conduit.http import sse as public_sse

TWINS = _ext.twins("conduit.http", "sse")


def frame_of(sse, *args, **kwargs) -> bytes:
    """The frame from ``encode_event``, after checking SSEEvent gives the same one."""
    frame = sse.encode_event(*args, **kwargs)
    evt = sse.SSEEvent(*args, **kwargs)
    assert evt.encode() == frame
    assert evt.format() == frame.decode("utf-8")
    return frame


def client_text(text: str) -> str:
    """What a client reads back for ``text``: every line end arrives as LF."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


def only_event(frame: bytes) -> Event:
    events = sse_spec.parse(frame).events
    assert len(events) == 1, events
    return events[0]


# --- the seed and the public module -------------------------------------------------------


def test_seed_example(sse):
    evt = sse.SSEEvent("Hello", event="message", id="123", retry=3000)
    assert evt.format() == "event: message\nid: 123\nretry: 3000\ndata: Hello\n\n"
    assert evt.encode() == b"event: message\nid: 123\nretry: 3000\ndata: Hello\n\n"
    parsed = sse_spec.parse(evt.encode())
    assert parsed.events == [Event("message", "Hello", "123")]
    assert parsed.retry == 3000


def test_twin_exports(sse):
    assert sorted(sse.__all__) == ["SSEEvent", "comment", "encode_event"]


def test_public_module_uses_a_twin():
    assert public_sse.SSEEvent in {twin.SSEEvent for twin in TWINS.values()}
    assert public_sse.encode_event in {twin.encode_event for twin in TWINS.values()}
    assert public_sse.comment in {twin.comment for twin in TWINS.values()}


def test_sse_stream():
    stream = public_sse.SSEStream()
    headers = stream.get_headers()
    assert headers.startswith("HTTP/1.1 200 OK\r\n")
    assert "Content-Type: text/event-stream; charset=utf-8\r\n" in headers
    assert "Cache-Control: no-cache\r\n" in headers
    assert headers.endswith("\r\n\r\n")

    sent = [
        stream.send_event("Current time: 12:30:45", event="time", id="1"),
        stream.send_event({"n": 2}, id=2, retry=500),
        stream.send_event("bye\n", event="done"),
    ]
    assert sent[0] == "event: time\nid: 1\ndata: Current time: 12:30:45\n\n"
    assert [type(evt) for evt in stream.events] == [public_sse.SSEEvent] * 3
    assert [evt.format() for evt in stream.events] == sent

    parsed = sse_spec.parse("".join(sent).encode())
    assert parsed.events == [
        Event("time", "Current time: 12:30:45", "1"),
        Event("message", '{"n":2}', "2"),
        Event("done", "bye\n", "2"),
    ]
    assert parsed.retry == 500


# --- field order, omission, exact bytes ---------------------------------------------------

FRAMES = [
    pytest.param(("hi",), {}, b"data: hi\n\n", id="data-only"),
    pytest.param(("hi",), {"event": "tick"}, b"event: tick\ndata: hi\n\n", id="event"),
    pytest.param(("hi",), {"id": "7"}, b"id: 7\ndata: hi\n\n", id="id"),
    pytest.param(("hi",), {"retry": 10}, b"retry: 10\ndata: hi\n\n", id="retry"),
    pytest.param(
        ("hi",),
        {"retry": 1, "id": "x", "event": "e"},
        b"event: e\nid: x\nretry: 1\ndata: hi\n\n",
        id="order-independent-of-keywords",
    ),
    pytest.param(("hi",), {"event": ""}, b"event: \ndata: hi\n\n", id="empty-event"),
    pytest.param(("hi",), {"id": ""}, b"id: \ndata: hi\n\n", id="empty-id-is-written"),
    pytest.param(("hi",), {"id": 0}, b"id: 0\ndata: hi\n\n", id="int-id-0"),
    pytest.param(("hi",), {"id": -42}, b"id: -42\ndata: hi\n\n", id="negative-int-id"),
    pytest.param(
        ("hi",), {"id": 2**64}, b"id: 18446744073709551616\ndata: hi\n\n", id="big-int-id"
    ),
    pytest.param(
        ("hi",),
        {"id": -(2**63)},
        b"id: -9223372036854775808\ndata: hi\n\n",
        id="int-id-llong-min",
    ),
    pytest.param(("hi",), {"retry": 0}, b"retry: 0\ndata: hi\n\n", id="retry-0-is-written"),
    pytest.param(
        ("hi",),
        {"retry": 2**70},
        b"retry: 1180591620717411303424\ndata: hi\n\n",
        id="big-retry",
    ),
    pytest.param(("",), {}, b"data: \n\n", id="empty-data"),
    pytest.param(("a\nb",), {}, b"data: a\ndata: b\n\n", id="lf"),
    pytest.param(("a\r\nb",), {}, b"data: a\ndata: b\n\n", id="crlf"),
    pytest.param(("a\rb",), {}, b"data: a\ndata: b\n\n", id="cr"),
    pytest.param(("a\n",), {}, b"data: a\ndata: \n\n", id="trailing-lf"),
    pytest.param(("\n",), {}, b"data: \ndata: \n\n", id="lf-only"),
    pytest.param(("\r\n",), {}, b"data: \ndata: \n\n", id="crlf-is-one-line-end"),
    pytest.param(("\n\r",), {}, b"data: \ndata: \ndata: \n\n", id="lf-cr-is-two"),
    pytest.param(
        ("a\r\n\rb\n\nc\r",),
        {},
        b"data: a\ndata: \ndata: b\ndata: \ndata: c\ndata: \n\n",
        id="mixed",
    ),
    pytest.param((" lead",), {}, b"data:  lead\n\n", id="leading-space"),
    pytest.param(("caf\u00e9",), {}, "data: caf\u00e9\n\n".encode(), id="latin1-text"),
]


@pytest.mark.parametrize(("args", "kwargs", "expected"), FRAMES)
def test_frame_bytes(sse, args, kwargs, expected):
    assert frame_of(sse, *args, **kwargs) == expected


# --- data splitting, read back by the spec reader ------------------------------------------

SPLITLINES_TRAPS = "\v\f\x1c\x1d\x1e\x85\u2028\u2029"

ROUND_TRIP_DATA = [
    "plain",
    "",
    " ",
    " leading space",
    "  two leading spaces",
    "trailing space ",
    "a\nb\nc",
    "a\r\nb\r\nc",
    "a\rb\rc",
    "mixed\r\nline\rends\nhere",
    "trailing newline\n",
    "trailing crlf\r\n",
    "trailing cr\r",
    "\nleading newline",
    "\n\n\n",
    "\r\r",
    "\r\n\r\n",
    "data: looks like a field",
    ": looks like a comment",
    "id: 9\n\nevent: injected",
    "emoji \U0001f600 and CJK \u4e2d\u6587",
    "\u00e9\u00e8\r\n\U0001f680",
    f"traps{SPLITLINES_TRAPS}stay",
    "nul \0 in data",
    "\ufeffbom inside data",
    "x" * 5000 + "\n" + "y" * 5000,
    "\r\n\r\r\n\n" * 500,
    "a\rb\nc\r\nd" * 300 + "\r",
    "\r" * 700 + "\n" * 700,
]


@pytest.mark.parametrize("data", ROUND_TRIP_DATA)
def test_data_round_trip(sse, data):
    frame = frame_of(sse, data)
    assert only_event(frame) == Event("message", client_text(data), "")
    assert sse.SSEEvent(data).data == data


def test_splitlines_trap_characters_do_not_split(sse):
    for ch in SPLITLINES_TRAPS:
        frame = frame_of(sse, f"a{ch}b")
        assert frame == f"data: a{ch}b\n\n".encode()
        assert frame.count(b"data:") == 1


def test_unicode_is_utf8(sse):
    text = "\U0001f600 \u4e2d\u6587 \u00e9"
    frame = frame_of(sse, text, event="\u4e8b\u4ef6", id="\u00e9")
    assert frame == f"event: \u4e8b\u4ef6\nid: \u00e9\ndata: {text}\n\n".encode()
    assert only_event(frame) == Event("\u4e8b\u4ef6", text, "\u00e9")


def test_many_lines_large_data(sse):
    data = "\r\n".join(f"line {i}" for i in range(10_000)) + "\n"
    frame = frame_of(sse, data)
    assert frame.count(b"data: ") == 10_001
    assert only_event(frame).data == data.replace("\r\n", "\n")


# --- data types ---------------------------------------------------------------------------


def test_bytes_data(sse):
    raw = "caf\u00e9 \U0001f600\nnext".encode()
    for data in (raw, bytearray(raw), memoryview(raw)):
        evt = sse.SSEEvent(data)
        assert evt.data == "caf\u00e9 \U0001f600\nnext"
        assert type(evt.data) is str
        assert evt.encode() == b"data: " + raw.replace(b"\n", b"\ndata: ") + b"\n\n"
        assert sse.encode_event(data) == evt.encode()
    assert frame_of(sse, b"ascii\r\nonly") == b"data: ascii\ndata: only\n\n"
    assert frame_of(sse, b"") == b"data: \n\n"


@pytest.mark.parametrize(
    ("data", "text"),
    [
        ({"a": 1, "b": [1, 2, None]}, '{"a":1,"b":[1,2,null]}'),
        ([1, "two", 3.5], '[1,"two",3.5]'),
        ({"t": "caf\u00e9 \U0001f600"}, '{"t":"caf\u00e9 \U0001f600"}'),
        ({"multi": "line\nstring"}, '{"multi":"line\\nstring"}'),
        (42, "42"),
        (True, "true"),
        (None, "null"),
        ({}, "{}"),
    ],
)
def test_json_data(sse, data, text):
    evt = sse.SSEEvent(data, event="json")
    assert evt.data == text
    assert evt.encode() == f"event: json\ndata: {text}\n\n".encode()
    assert sse.encode_event(data, event="json") == evt.encode()
    assert only_event(evt.encode()).data == text


@pytest.mark.parametrize("value", [float("nan"), float("inf"), {"x": float("-inf")}])
def test_json_data_refuses_non_json_floats(sse, value):
    # json.dumps would write a bare NaN/Infinity, which the browser's JSON.parse rejects.
    with pytest.raises(TypeError, match="data"):
        sse.SSEEvent(value)
    with pytest.raises(TypeError, match="data"):
        sse.encode_event(value)


def test_str_bytes_and_int_subclasses(sse):
    class Text(str):
        def __str__(self):
            return "overridden"

    class Raw(bytes):
        def __bytes__(self):
            return b"overridden"

    class Code(enum.IntEnum):
        SEVEN = 7

    evt = sse.SSEEvent(Text("body"), event=Text("kind"), id=Code.SEVEN, retry=Code.SEVEN)
    assert evt.encode() == b"event: kind\nid: 7\nretry: 7\ndata: body\n\n"
    assert type(evt.data) is str and type(evt.event) is str and type(evt.id) is str
    assert type(evt.retry) is int and evt.retry == 7
    assert sse.encode_event(Text("body"), id=Code.SEVEN) == b"id: 7\ndata: body\n\n"
    assert sse.encode_event(Raw(b"a\nb")) == b"data: a\ndata: b\n\n"
    assert sse.SSEEvent(Raw(b"raw")).data == "raw"


# --- validation ---------------------------------------------------------------------------

_circular: list = []
_circular.append(_circular)

INVALID = [
    # data
    pytest.param({"data": "lone \ud800 surrogate"}, ValueError, "data", id="data-surrogate"),
    pytest.param({"data": "\udfff"}, ValueError, "data", id="data-low-surrogate"),
    pytest.param({"data": b"\xff\xfe"}, ValueError, "data", id="data-bytes-not-utf8"),
    pytest.param({"data": b"ok \xc3"}, ValueError, "data", id="data-bytes-truncated"),
    pytest.param({"data": b"\xed\xa0\x80"}, ValueError, "data", id="data-bytes-surrogate"),
    pytest.param({"data": bytearray(b"\x80")}, ValueError, "data", id="data-bytearray-bad"),
    pytest.param({"data": object()}, TypeError, "data", id="data-object"),
    pytest.param({"data": {1, 2}}, TypeError, "data", id="data-set"),
    pytest.param({"data": {(1, 2): 3}}, TypeError, "data", id="data-tuple-key"),
    pytest.param({"data": _circular}, TypeError, "data", id="data-circular"),
    pytest.param({"data": {"k": "\ud800"}}, ValueError, "data", id="data-json-surrogate"),
    # event
    pytest.param({"data": "x", "event": 1}, TypeError, "event", id="event-int"),
    pytest.param({"data": "x", "event": b"e"}, TypeError, "event", id="event-bytes"),
    pytest.param({"data": "x", "event": "a\nb"}, ValueError, "event", id="event-lf"),
    pytest.param({"data": "x", "event": "a\rb"}, ValueError, "event", id="event-cr"),
    pytest.param({"data": "x", "event": "a\r\n"}, ValueError, "event", id="event-crlf"),
    pytest.param({"data": "x", "event": "\ud800"}, ValueError, "event", id="event-surrogate"),
    # id
    pytest.param({"data": "x", "id": True}, TypeError, "id", id="id-bool"),
    pytest.param({"data": "x", "id": False}, TypeError, "id", id="id-false"),
    pytest.param({"data": "x", "id": 1.5}, TypeError, "id", id="id-float"),
    pytest.param({"data": "x", "id": b"1"}, TypeError, "id", id="id-bytes"),
    pytest.param({"data": "x", "id": "a\nb"}, ValueError, "id", id="id-lf"),
    pytest.param({"data": "x", "id": "a\rb"}, ValueError, "id", id="id-cr"),
    pytest.param({"data": "x", "id": "a\0b"}, ValueError, "id", id="id-nul"),
    pytest.param({"data": "x", "id": "\udc00"}, ValueError, "id", id="id-surrogate"),
    # retry
    pytest.param({"data": "x", "retry": -1}, ValueError, "retry", id="retry-negative"),
    pytest.param({"data": "x", "retry": -(2**70)}, ValueError, "retry", id="retry-big-neg"),
    pytest.param({"data": "x", "retry": True}, ValueError, "retry", id="retry-bool"),
    pytest.param({"data": "x", "retry": 1.0}, ValueError, "retry", id="retry-float"),
    pytest.param({"data": "x", "retry": "100"}, ValueError, "retry", id="retry-str"),
    pytest.param({"data": "x", "retry": b"1"}, ValueError, "retry", id="retry-bytes"),
    pytest.param({"data": "x", "retry": [1]}, ValueError, "retry", id="retry-list"),
]


@pytest.mark.parametrize(("kwargs", "exc_type", "field"), INVALID)
def test_invalid_fields_name_the_field(sse, kwargs, exc_type, field):
    match = rf"\b{field}\b"
    with pytest.raises(exc_type, match=match):
        sse.encode_event(**kwargs)
    with pytest.raises(exc_type, match=match):
        sse.SSEEvent(**kwargs)


def test_first_invalid_field_in_order_wins(sse):
    # Rule 7: data, event, id, retry.
    with pytest.raises(TypeError, match=r"\bdata\b"):
        sse.encode_event(object(), event=1, id=True, retry=-1)
    with pytest.raises(ValueError, match=r"\bdata\b"):
        sse.encode_event("\ud800", event=1, id=True, retry=-1)
    with pytest.raises(TypeError, match=r"\bevent\b"):
        sse.encode_event("x", event=1, id=True, retry=-1)
    with pytest.raises(ValueError, match=r"\bevent\b"):
        sse.encode_event("x", event="\n", id=True, retry=-1)
    with pytest.raises(TypeError, match=r"\bid\b"):
        sse.encode_event("x", event="e", id=True, retry=-1)
    with pytest.raises(ValueError, match=r"\bretry\b"):
        sse.encode_event("x", event="e", id=1, retry=-1)


def test_missing_data_is_a_type_error(sse):
    with pytest.raises(TypeError):
        sse.SSEEvent()
    with pytest.raises(TypeError):
        sse.encode_event()


# --- SSEEvent as a value ------------------------------------------------------------------


def test_attributes(sse):
    evt = sse.SSEEvent(b"bytes", event="e", id=5, retry=0)
    assert (evt.data, evt.event, evt.id, evt.retry) == ("bytes", "e", "5", 0)
    bare = sse.SSEEvent("x")
    assert (bare.event, bare.id, bare.retry) == (None, None, None)


@pytest.mark.parametrize("name", ["data", "event", "id", "retry"])
def test_attributes_are_read_only(sse, name):
    evt = sse.SSEEvent("x", event="e", id="1", retry=1)
    with pytest.raises(AttributeError):
        setattr(evt, name, "changed")
    with pytest.raises(AttributeError):
        delattr(evt, name)
    assert evt.encode() == b"event: e\nid: 1\nretry: 1\ndata: x\n\n"


def test_event_is_immutable_otherwise(sse):
    evt = sse.SSEEvent("x", id="1")
    with pytest.raises(AttributeError):
        evt.extra = 1
    evt.__init__("other", id="2")  # re-running __init__ must not change a value
    assert (evt.data, evt.id) == ("x", "1")
    with pytest.raises(TypeError):
        type("Sub", (sse.SSEEvent,), {})


def test_encode_is_cached(sse):
    evt = sse.SSEEvent("x" * 100, event="e")
    assert evt.encode() is evt.encode()


def test_equality_and_hash(sse):
    SSEEvent = sse.SSEEvent
    a = SSEEvent("x", event="e", id="1", retry=5)
    same = [
        SSEEvent("x", event="e", id="1", retry=5),
        SSEEvent(b"x", event="e", id=1, retry=5),
    ]
    for other in same:
        assert a == other and not (a != other)
        assert hash(a) == hash(other)
    different = [
        SSEEvent("y", event="e", id="1", retry=5),
        SSEEvent("x", event="f", id="1", retry=5),
        SSEEvent("x", id="1", retry=5),
        SSEEvent("x", event="e", id="2", retry=5),
        SSEEvent("x", event="e", id="1", retry=6),
        SSEEvent("x", event="e", id="1"),
        SSEEvent("x", event="e", id="", retry=5),
    ]
    for other in different:
        assert a != other and not (a == other)
    assert a != "x" and a != a.encode()
    assert len({a, *same, *different}) == 1 + len(different)


def test_repr(sse):
    assert repr(sse.SSEEvent("hi")) == "SSEEvent('hi')"
    assert (
        repr(sse.SSEEvent("a\nb", event="e", id=3, retry=0))
        == "SSEEvent('a\\nb', event='e', id='3', retry=0)"
    )


def test_pickle_round_trip(sse):
    evt = sse.SSEEvent({"k": [1]}, event="e", id=9, retry=100)
    back = pickle.loads(pickle.dumps(evt))
    assert back == evt and back.encode() == evt.encode()


def test_format_is_encode_decoded(sse):
    for data in ROUND_TRIP_DATA:
        evt = sse.SSEEvent(data, event="t", id="\u00e9")
        assert evt.format() == evt.encode().decode("utf-8")
        assert sse.encode_event(data, event="t", id="\u00e9") == evt.encode()


# --- what a client sees: id reset, retry ----------------------------------------------------


def test_empty_id_resets_last_event_id(sse):
    stream = (
        sse.encode_event("first", id="5")
        + sse.encode_event("second")
        + sse.encode_event("third", id="")
        + sse.encode_event("fourth")
    )
    parsed = sse_spec.parse(stream)
    assert [evt.last_event_id for evt in parsed.events] == ["5", "5", "", ""]
    assert parsed.last_event_id == ""


def test_retry_zero_is_observed(sse):
    assert sse_spec.parse(sse.encode_event("x", retry=0)).retry == 0
    stream = sse.encode_event("x", retry=3000) + sse.SSEEvent("y", retry=0).encode()
    assert sse_spec.parse(stream).retry == 0


def test_event_type_defaults_to_message(sse):
    stream = sse.encode_event("a") + sse.encode_event("b", event="") + sse.encode_event("c")
    assert [evt.type for evt in sse_spec.parse(stream).events] == ["message"] * 3


# --- comments -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ping", b": ping\n\n"),
        ("", b":\n\n"),
        (" spaced", b":  spaced\n\n"),
        ("a\nb", b": a\n: b\n\n"),
        ("a\r\n\r\nb", b": a\n:\n: b\n\n"),
        ("a\rb\n", b": a\n: b\n:\n\n"),
        ("\u00e9\U0001f600", ": \u00e9\U0001f600\n\n".encode()),
        (f"t{SPLITLINES_TRAPS}", f": t{SPLITLINES_TRAPS}\n\n".encode()),
    ],
)
def test_comment(sse, text, expected):
    frame = sse.comment(text)
    assert frame == expected
    assert sse_spec.parse(frame).events == []
    stream = frame + sse.encode_event("x", id="1") + frame
    assert sse_spec.parse(stream).events == [Event("message", "x", "1")]


def test_comment_default_and_errors(sse):
    assert sse.comment() == b":\n\n"
    with pytest.raises(TypeError, match=r"\bcomment\b"):
        sse.comment(b"ping")
    with pytest.raises(ValueError, match=r"\bcomment\b"):
        sse.comment("\ud800")


# --- the spec reader itself (it is the oracle, so it gets checked too) -----------------------


def test_spec_reader_examples_from_the_standard():
    stream = b"data: first event\nid: 1\n\ndata:second event\nid\n\ndata:  third event\n"
    parsed = sse_spec.parse(stream)
    # The third event has no blank line after it, so it is never dispatched.
    assert parsed.events == [
        Event("message", "first event", "1"),
        Event("message", "second event", ""),
    ]

    assert sse_spec.parse(b"data\n\ndata\ndata\n\ndata:").events == [
        Event("message", "", ""),
        Event("message", "\n", ""),
    ]
    assert sse_spec.parse(b"data:test\n\ndata: test\n\n").events == [
        Event("message", "test", ""),
        Event("message", "test", ""),
    ]


def test_spec_reader_details():
    parse = sse_spec.parse
    assert parse(b"\xef\xbb\xbfdata: x\n\n").events == [Event("message", "x", "")]
    # Only one BOM is stripped; a second one makes the field name unknown.
    assert parse(b"\xef\xbb\xbf\xef\xbb\xbfdata: x\n\n").events == []
    assert parse(b"data: a\r\ndata: b\rdata: c\n\r\n").events == [Event("message", "a\nb\nc", "")]
    assert parse(b"id: 1\ndata: x\n\nid: 2\0\ndata: y\n\n").events == [
        Event("message", "x", "1"),
        Event("message", "y", "1"),
    ]
    assert parse(b"retry: 12a\n\nretry: \n\nretry: 7\n\nretry: -1\n\n").retry == 7
    assert parse(b"retry: \xd9\xa3\n\n").retry is None  # ARABIC-INDIC DIGIT THREE
    assert parse(b"event: e\n\ndata: x\n\n").events == [Event("message", "x", "")]
    assert parse(b"id: 4\n\n").last_event_id == "4"
    assert parse(b"data: x\n\ndata: unterminated").events == [Event("message", "x", "")]
    assert parse(b"data: x\r").events == []
    assert parse(b"data: x\r\r").events == [Event("message", "x", "")]


# --- properties ---------------------------------------------------------------------------

_NO_SURROGATES = st.characters(blacklist_categories=("Cs",))
_LINE_BITS = st.sampled_from(["\r", "\n", "\r\n", " ", ":", "\0", *SPLITLINES_TRAPS])

data_text = st.lists(st.one_of(st.text(_NO_SURROGATES), _LINE_BITS), max_size=12).map("".join)
event_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"))
id_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n\0"))
valid_fields = st.fixed_dictionaries(
    {"data": data_text},
    optional={
        "event": st.none() | event_text,
        "id": st.none() | id_text | st.integers(),
        "retry": st.none() | st.integers(min_value=0),
    },
)


# The ``sse`` fixture is a module and holds no state, so sharing it across examples is fine.
fixture_ok = settings(suppress_health_check=[HealthCheck.function_scoped_fixture])


def _expected(fields: dict, last_id: str) -> Event:
    event = fields.get("event")
    id_ = fields.get("id")
    data = client_text(fields["data"])
    return Event(event or "message", data, last_id if id_ is None else str(id_))


@fixture_ok
@given(fields=valid_fields)
def test_property_one_frame_one_event(sse, fields):
    frame = frame_of(sse, **fields)
    parsed = sse_spec.parse(frame)
    assert parsed.events == [_expected(fields, "")]
    assert parsed.retry == fields.get("retry")


@fixture_ok
@given(batch=st.lists(st.tuples(valid_fields, st.none() | st.text(_NO_SURROGATES)), max_size=8))
def test_property_stream_of_frames(sse, batch):
    stream = b""
    expected = []
    last_id = ""
    retry = None
    for fields, note in batch:
        if note is not None:
            stream += sse.comment(note)
        stream += frame_of(sse, **fields)
        evt = _expected(fields, last_id)
        last_id = evt.last_event_id
        expected.append(evt)
        if fields.get("retry") is not None:
            retry = fields["retry"]
    parsed = sse_spec.parse(stream)
    assert parsed.events == expected
    assert parsed.retry == retry
    assert parsed.last_event_id == last_id


@fixture_ok
@given(text=data_text)
def test_property_comment_dispatches_nothing(sse, text):
    assert sse_spec.parse(sse.comment(text)).events == []


# Anything at all, valid or not, for the twin comparison.
_any_text = st.text(max_size=12) | _LINE_BITS


class _Bytes(bytes):
    pass


_junk = st.sampled_from(
    [
        object(),
        1.5,
        float("nan"),
        b"\xff",
        [1, "\ud800"],
        {"k": {1}},
        bytearray(b"a\rb"),
        memoryview(b"\xc3\xa9\n"),
        _Bytes(b"sub\r\n"),
    ]
)
_any_data = (
    _any_text
    | st.binary(max_size=8)
    | st.integers()
    | st.none()
    | st.booleans()
    | st.dictionaries(st.text(max_size=3), st.integers(), max_size=3)
    | _junk
)
_any_id = (
    st.none() | _any_text | st.integers() | st.booleans() | st.floats() | st.binary(max_size=3)
)
any_fields = st.fixed_dictionaries(
    {"data": _any_data},
    optional={
        "event": st.none() | _any_text | st.integers() | st.binary(max_size=3),
        "id": _any_id,
        "retry": st.none() | st.integers() | st.booleans() | st.floats() | _any_text,
    },
)


def _outcome(fn, *args, **kwargs):
    try:
        result = fn(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - the exception is the outcome under test
        return ("raised", type(exc), str(exc))
    if hasattr(result, "encode") and not isinstance(result, bytes):
        return ("event", result.encode(), result.data, result.event, result.id, result.retry)
    return ("returned", result)


@pytest.mark.skipif(len(TWINS) < 2, reason="needs both twins (compiled module not built)")
@settings(max_examples=300)
@given(fields=any_fields)
def test_property_twins_agree(fields):
    compiled, pure = TWINS["compiled"], TWINS["pure"]
    assert _outcome(compiled.encode_event, **fields) == _outcome(pure.encode_event, **fields)
    assert _outcome(compiled.SSEEvent, **fields) == _outcome(pure.SSEEvent, **fields)


@pytest.mark.skipif(len(TWINS) < 2, reason="needs both twins (compiled module not built)")
@given(text=_any_text | st.binary(max_size=4) | st.none())
def test_property_twins_agree_on_comments(text):
    compiled, pure = TWINS["compiled"], TWINS["pure"]
    assert _outcome(compiled.comment, text) == _outcome(pure.comment, text)


# -- simple events: validated when built, framed when first needed (compiled twin) --------

SIMPLE_SHAPES = [
    ((0,), {}),
    ((-1,), {"event": "e", "id": -5}),
    ((2**63 - 1,), {"id": -(2**63)}),
    ((2**63,), {"id": 2**63}),                   # beyond a long long: the general path
    ((7,), {"event": "", "id": ""}),
    (("café ✓",), {"event": "naïve", "id": "ид"}),
    (("tab\tand NUL\0 stay",), {"event": "counter", "id": 10**18}),
    ((True,), {"id": 1}),                        # bool data is JSON "true"
    (("a\nb",), {"event": "counter"}),           # a line end: the general path
    ((5,), {"id": 3, "retry": 0}),               # retry: the general path
]


@pytest.mark.parametrize("args,kwargs", SIMPLE_SHAPES)
def test_simple_event_fields_and_frame_match_the_pure_twin(sse, args, kwargs):
    pure = TWINS["pure"]
    evt = sse.SSEEvent(*args, **kwargs)
    want = pure.SSEEvent(*args, **kwargs)
    assert (evt.data, evt.event, evt.id, evt.retry) == (
        want.data, want.event, want.id, want.retry)
    assert type(evt.data) is str and (evt.id is None or type(evt.id) is str)
    frame = evt.encode()
    assert frame == want.encode()
    assert evt.encode() is frame  # framed once, the same bytes object afterwards
    again = sse.SSEEvent(*args, **kwargs)
    assert evt == again and hash(evt) == hash(again) == hash(want)
    assert pickle.loads(pickle.dumps(evt)) == evt


def test_event_name_check_is_not_skipped_by_a_name_seen_before(sse):
    name = "counter"
    assert sse.SSEEvent(1, event=name).encode() == b"event: counter\ndata: 1\n\n"
    with pytest.raises(ValueError, match="SSE event must not contain CR or LF"):
        sse.SSEEvent(2, event="counter\n")
    with pytest.raises(ValueError, match="SSE event must not contain CR or LF"):
        sse.SSEEvent(2, event=name + "\r")
    frames = [sse.SSEEvent(i, event=e).encode() for i, e in enumerate(["a", "b", "a", "ü"])]
    assert frames == [b"event: a\ndata: 0\n\n", b"event: b\ndata: 1\n\n",
                      b"event: a\ndata: 2\n\n", "event: ü\ndata: 3\n\n".encode()]


def test_simple_event_refuses_what_the_general_path_refuses(sse):
    with pytest.raises(ValueError, match="SSE id must not contain CR, LF or NUL"):
        sse.SSEEvent(1, id="a\0b")
    with pytest.raises(ValueError, match="SSE data must be encodable as UTF-8"):
        sse.SSEEvent("\ud800", event="e")
    with pytest.raises(ValueError, match="SSE event must be encodable as UTF-8"):
        sse.SSEEvent(1, event="\udfff")
    with pytest.raises(TypeError, match="SSE id must be a str, an int or None"):
        sse.SSEEvent(1, id=1.5)


# --- how SSEEvent is called (the compiled twin's vectorcall, rule 9 of _sse_c) ------------

_NUMBER_EDGES = sorted({
    sign * (base + delta)
    for base in [0, 2**30, 2**31, 2**32, 2**62, *(10**k for k in range(19))]
    for delta in (-1, 0, 1)
    for sign in (1, -1)
    if -(2**63) <= sign * (base + delta) < 2**63
} | {2**63 - 1, -(2**63), 2**63, -(2**63) - 1, 10**30})


@pytest.mark.parametrize("number", _NUMBER_EDGES)
def test_numbers_at_digit_and_word_boundaries(sse, number):
    """One-digit ints (read in place), 32-bit and 64-bit digit loops, and ints past a long
    long all give the decimal text, as data and as id, exactly as the pure twin does."""
    text = str(number)
    evt = sse.SSEEvent(number, event="n", id=number)
    assert evt.encode() == f"event: n\nid: {text}\ndata: {text}\n\n".encode()
    assert (evt.data, evt.id) == (text, text)
    assert sse.SSEEvent(number).encode() == f"data: {text}\n\n".encode()


@pytest.mark.parametrize("args, kwargs", [
    (("x",), {}),
    (("x", "e"), {}),
    (("x", "e", "7"), {}),
    (("x", "e", 7, 5), {}),
    (("x",), {"id": 7, "event": "e"}),
    (("x",), {"retry": 5, "id": "a"}),
    ((), {"data": "x", "event": "e"}),
    ((), {"data": "Current time: 1.5", "event": "time", "id": "1"}),  # the seed's shape
    ((), {"event": "time", "id": 2, "data": {"t": 1}}),
    ((), {"data": 3}),
    ((), {"id": "9", "retry": 100, "data": "x", "event": "e"}),
    (("x", "e"), {"retry": 3}),
])
def test_every_call_shape_builds_the_same_event(sse, args, kwargs):
    expected = _sse_py.encode_event(*args, **kwargs)
    assert sse.SSEEvent(*args, **kwargs).encode() == expected
    assert sse.SSEEvent(*args, **dict(kwargs)).encode() == expected  # keys not interned


@pytest.mark.parametrize("args, kwargs", [
    ((), {}),
    ((), {"event": "e"}),
    (("x",), {"evnt": "e"}),
    (("x", "e"), {"event": "f"}),
    (("x", "e", 1, 2, 3), {}),
    (("x",), {"data": "y"}),
    ((), {"id": "1", "event": "e"}),
    ((), {"data": "x", "evnt": "e"}),
])
def test_bad_call_shapes_are_type_errors_naming_sseevent(sse, args, kwargs):
    with pytest.raises(TypeError) as info:
        sse.SSEEvent(*args, **kwargs)
    assert "_sse_arguments" not in str(info.value)


def test_new_alone_is_refused_or_an_empty_event(sse):
    """SSEEvent.__new__ without data either refuses (the pure twin) or gives the empty
    event (the compiled twin, whose fields are filled after allocation): never an object
    whose frame would be written from unset fields."""
    try:
        evt = sse.SSEEvent.__new__(sse.SSEEvent)
    except TypeError:
        return
    assert evt.encode() == b"data: \n\n" and evt == sse.SSEEvent("")
    assert (evt.data, evt.event, evt.id, evt.retry) == ("", None, None, None)
