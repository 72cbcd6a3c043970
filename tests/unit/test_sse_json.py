"""JSON event data: the compiled twin's own encoder against the json module (rule 11).

``SSEEvent(data=<not str or bytes>)`` sends compact JSON: the pure twin asks the json module
(``JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)``), the compiled
twin writes the common values itself and hands every other value to the json module. These
tests hold the compiled twin to the json module's bytes and exceptions: for generated
JSON-like values (unicode, control characters, floats of every kind, big ints, nesting),
for the values it must hand over (subclasses, other dict keys, NaN, cycles, depth...), and
through the whole frame (``encode_event`` and ``SSEEvent`` on both twins).
"""

from __future__ import annotations

import collections
import decimal
import enum
import json
import math
import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conduit import _ext

TWINS = _ext.twins("conduit.http", "sse")
needs_both = pytest.mark.skipif(len(TWINS) < 2, reason="needs both twins (compiled not built)")


def dumps(value) -> bytes:
    """What both twins must send as an event's data for ``value``: json.dumps' UTF-8."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def outcome(fn, *args, **kwargs):
    try:
        result = fn(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - the exception is the outcome under test
        return ("raised", type(exc), str(exc))
    if hasattr(result, "encode") and not isinstance(result, bytes):
        return ("event", result.encode(), result.data, result.event, result.id, result.retry)
    return ("returned", result)


def assert_like_json(value) -> None:
    """Both twins' encoders give json.dumps' bytes or exception; their frames agree."""
    want = outcome(dumps, value)
    for twin in TWINS.values():
        assert outcome(twin._json_utf8, value) == want, twin.__name__
    # A str or bytes-like value is text, not JSON, in a frame (rule 2): twins compared only.
    is_text = isinstance(value, (str, bytes, bytearray, memoryview))
    if want[0] == "returned" and not is_text:
        frame = b"event: json\nid: 7\ndata: " + want[1] + b"\n\n"
        for twin in TWINS.values():
            assert twin.encode_event(value, event="json", id=7) == frame
            evt = twin.SSEEvent(value, event="json", id=7)
            assert evt.encode() == frame
            assert evt.data == want[1].decode() and type(evt.data) is str
    if "compiled" in TWINS:
        compiled, pure = TWINS["compiled"], TWINS["pure"]
        for kwargs in ({}, {"event": "json", "id": 7}, {"id": "x", "retry": 5}):
            assert outcome(compiled.encode_event, value, **kwargs) == outcome(
                pure.encode_event, value, **kwargs)
            assert outcome(compiled.SSEEvent, value, **kwargs) == outcome(
                pure.SSEEvent, value, **kwargs)


# --- values the compiled encoder writes itself --------------------------------------------

FLOATS = [
    0.0, -0.0, 1.0, -1.0, 0.5, 0.875, 12.5, -2.25, 0.1, 0.2, 0.30000000000000004, 19.99,
    1 / 3, 2 / 3, math.pi, math.e, 1e-4, math.nextafter(1e-4, 0), math.nextafter(1e-4, 1),
    1e-5, 1e-07, 1.5e-7, 1.2345e-10, 1e-22, 1e-23, 1e-100, 5e-324, 2.2250738585072014e-308,
    1e15, 1e16, 1e17, 1e22, 1e23, 1.7976931348623157e308, 2.0**50, 2.0**50 - 1, 2.0**53,
    2.0**53 + 2, 9007199254740993.0, 123456789012345678.0, 1234567.125, 0.1 + 0.7,
    1733345678.123456, -1e-300,
]


@pytest.mark.parametrize("value", FLOATS, ids=repr)
def test_floats_are_written_as_repr(value):
    assert dumps(value) == float.__repr__(value).encode()  # what json writes: repr
    assert_like_json(value)
    assert_like_json([value, -value])


@pytest.mark.parametrize(
    "value",
    [
        0, 1, -1, 2**30 - 1, 2**30, -(2**30), 2**31, 2**62, 2**63 - 1, -(2**63),
        2**63, -(2**63) - 1, 2**64, 10**30, -(10**40), True, False, None,
    ],
    ids=repr,
)
def test_ints_bools_none(value):
    assert_like_json(value)
    assert_like_json({"v": value, "list": [value]})


# Every character json escapes, and the neighbours it does not: DEL, C1 controls, the
# Unicode line separators (not line ends in SSE), the widest characters.
ESCAPED = "".join(chr(c) for c in range(0x20)) + '"\\'
PLAIN = "/ \x7f\x80\x85\x9f\xa0\xff\u0100\u07ff\u0800\u2028\u2029\ufeff\uffff\U00010000\U0010ffff"


@pytest.mark.parametrize(
    "text",
    [
        "", "hello", ESCAPED, PLAIN, ESCAPED + PLAIN, "café", "Привет, мир", "こんにちは",
        "emoji 🌍🚀", "line\r\nbreak\rand\nmore", "tab\there", '"quoted" \\ back',
        "\x00" * 500, "é\x01" * 700, "x" * 5000, "😀" * 3000 + "\n",
    ],
    ids=lambda t: repr(t[:20]),
)
def test_strings(text):
    assert_like_json([text])
    assert_like_json({text: text})


def test_containers():
    assert_like_json({})
    assert_like_json([])
    assert_like_json(())
    assert_like_json({"a": [], "b": {}, "c": ()})
    assert_like_json((1, (2, (3, [4, {"five": (5,)}]))))
    assert_like_json({"i": 1, "token": "hello", "done": False})
    assert_like_json({f"k{i}": [i, float(i) / 8, str(i) * i] for i in range(200)})  # > 1 KiB


def test_nesting_up_to_the_limit_and_beyond():
    # 64 levels are written by the compiled encoder, deeper ones by the json module (and
    # far deeper ones make it raise RecursionError, wrapped in TypeError, on both twins).
    for depth in (1, 63, 64, 65, 66, 200, 5000):
        value: list = []
        for _ in range(depth - 1):
            value = [value]
        assert_like_json(value)
        mapping: dict = {}
        for _ in range(depth - 1):
            mapping = {"k": mapping}
        assert_like_json(mapping)


def test_large_values_that_fall_back_after_growing():
    # The compiled encoder has taken heap memory when it meets what it must hand over.
    assert_like_json(["x" * 100] * 100 + [{1, 2}])
    assert_like_json(["y" * 3000, float("nan")])
    assert_like_json({"big": "z" * 5000, 1: "int key after a big value"})


def test_giving_up_does_not_leak():
    if "compiled" not in TWINS:
        pytest.skip("the compiled twin is not built here")
    compiled = TWINS["compiled"]
    values = [["x" * 100] * 100 + [{1}], ["y" * 4000, float("inf")], ["w" * 4000] * 3]
    for value in values:  # warm up (caches, free lists)
        outcome(compiled.encode_event, value)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(300):
            for value in values:
                outcome(compiled.encode_event, value)
                outcome(compiled._json_utf8, value)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 200_000, grown  # a leak would be >= 300 * 12 KiB


def test_event_data_is_decoded_from_the_frame_when_read():
    for twin in TWINS.values():
        evt = twin.SSEEvent({"t": "café\n🌍"}, event="json", id=1)
        assert evt.encode() == 'event: json\nid: 1\ndata: {"t":"café\\n🌍"}\n\n'.encode()
        assert evt.data == '{"t":"café\\n🌍"}'
        assert evt.data is evt.data
        assert evt == twin.SSEEvent({"t": "café\n🌍"}, event="json", id="1")
        assert hash(evt) == hash(twin.SSEEvent('{"t":"café\\n🌍"}', event="json", id=1))
        assert repr(evt) == "SSEEvent('{\"t\":\"café\\\\n🌍\"}', event='json', id='1')"


# --- values the compiled encoder hands to the json module --------------------------------


class Text(str):
    def __str__(self):
        return "overridden"


class Number(int):
    def __repr__(self):
        return "overridden"


class Real(float):
    def __repr__(self):
        return "overridden"


class Items(dict):
    def items(self):
        return [("from", "items()")]


class Row(list):
    pass


class Pair(tuple):
    pass


class Code(enum.IntEnum):
    SEVEN = 7


class Ratio(float, enum.Enum):
    HALF = 0.5


_cycle_list: list = []
_cycle_list.append(_cycle_list)
_cycle_dict: dict = {}
_cycle_dict["self"] = _cycle_dict

HANDED_OVER = [
    Text("sub\nclass"), {"k": Text("v")}, {Text("key"): 1}, Number(5), [Number(-3)],
    Real(1.5), [Real(-0.0)], Items(a=1), [Items()], Row([1, 2]), Pair((1,)), Code.SEVEN,
    {Code.SEVEN: Code.SEVEN}, Ratio.HALF, float("nan"), float("inf"), -float("inf"),
    [1.0, float("nan")], {"x": float("-inf")}, {float("nan"): 1}, {1: "a", 2: "b"},
    {True: 1, None: 2, 1.5: 3, -0.0: 4, 2**70: 5}, {"1": "a", 1: "b"}, {(1, 2): 3},
    {b"k": 1}, 10**5000, [10**5000], {1, 2}, frozenset(), object(), b"x", [b"bytes"],
    bytearray(b"x"), decimal.Decimal("1.5"), complex(1, 2), collections.OrderedDict(a=1),
    collections.Counter("aa"), range(3), iter([1]), "\ud800", ["lone \udfff"],
    {"\udc80": 1}, {"k": "é\ud83d"}, _cycle_list, _cycle_dict, [_cycle_list],
]


@pytest.mark.parametrize("value", HANDED_OVER, ids=lambda v: type(v).__name__)
def test_other_values_behave_as_the_json_module_makes_them(value):
    assert_like_json(value)


@needs_both
def test_frames_of_handed_over_values_match_the_pure_twin():
    # bytes-like data is not JSON; str subclasses are text (rule 2): the frame decides.
    compiled, pure = TWINS["compiled"], TWINS["pure"]
    for value in HANDED_OVER:
        assert outcome(compiled.encode_event, value) == outcome(pure.encode_event, value)


# --- properties ---------------------------------------------------------------------------

_SPECIAL_FLOATS = st.sampled_from(FLOATS + [float("nan"), float("inf"), -float("inf")])
_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**64), max_value=2**64)
    | st.floats()
    | _SPECIAL_FLOATS
    | st.text()
    | st.text(st.characters(max_codepoint=0x7F))                      # controls, quotes
    | st.text(st.characters(min_codepoint=0xD7F0, max_codepoint=0xE010))  # surrogates
    | st.text(st.characters(min_codepoint=0x80, max_codepoint=0x10FFFF))
    | st.sampled_from([Text("t"), Number(1), Real(2.5), Code.SEVEN, 10**400, b"b", {1}])
)
_keys = (
    st.text()
    | st.text(st.characters(max_codepoint=0x7F))
    | st.integers() | st.floats() | st.booleans() | st.none()
    | st.sampled_from([Text("k"), Code.SEVEN, (1,), "\ud800"])
)
json_like = st.recursive(
    _scalars,
    lambda children: (
        st.lists(children, max_size=6)
        | st.lists(children, max_size=4).map(tuple)
        | st.dictionaries(_keys, children, max_size=6)
        | st.dictionaries(st.text(max_size=8), children, max_size=6)
    ),
    max_leaves=40,
)


@settings(max_examples=1000, deadline=None)
@given(value=json_like)
def test_property_encoders_agree_with_the_json_module(value):
    assert_like_json(value)


@settings(max_examples=300, deadline=None)
@given(value=st.floats(allow_nan=False, allow_infinity=False))
def test_property_floats_are_repr(value):
    for twin in TWINS.values():
        assert twin._json_utf8([value]) == b"[" + float.__repr__(value).encode() + b"]"


@settings(max_examples=300, deadline=None)
@given(
    mantissa=st.integers(min_value=1, max_value=10**17),
    exponent=st.integers(min_value=-30, max_value=20),
    sign=st.sampled_from([1, -1]),
)
def test_property_short_decimal_floats_are_repr(mantissa, exponent, sign):
    # Floats read from short decimals (prices, measurements, 1e-07...): the compiled
    # encoder's own float path, around its limits (2**50, 1e-4, 1e-22).
    value = sign * float(f"{mantissa}e{exponent}")
    for twin in TWINS.values():
        assert twin._json_utf8(value) == float.__repr__(value).encode()
