"""Fuzzing the SSE encoder, both twins (``encode_event``, ``SSEEvent``, ``comment``).

Fields are drawn from many types: any unicode (lone surrogates included), text heavy in
line ends, NUL and the characters ``str.splitlines`` would split on; bytes, bytearray and
memoryview (valid UTF-8 or not); ints of any size (beyond 4300 digits too), bools, floats
(NaN, infinities), None; nested lists and dicts, some not JSON-serializable, one circular;
str and int subclasses. Each call must either give a frame or raise TypeError/ValueError,
and an oracle written from the framing rules (the docstring of
``conduit/http/_sse_py.py``, not its code) says which: the exception class, or the one
event a client reads back. Frames are read with ``tests/unit/sse_spec.py``, an
event-stream reader written from the WHATWG text. The twins must agree exactly (frame
bytes, attributes, exception class and message).

Further than ``tests/unit/test_sse.py``: the outcome is predicted for every input, junk
included (not only compared across twins), and comment frames are read back line by line.

Examples per test: ``CONDUIT_FUZZ_EXAMPLES`` (default 150). Long run:
``CONDUIT_FUZZ_EXAMPLES=200000 python -m pytest -x -q tests/fuzz/test_fuzz_sse.py``.
"""

from __future__ import annotations

import enum
import json

import pytest
import sse_spec
from fuzz_support import fuzz_settings
from hypothesis import given
from hypothesis import strategies as st

from conduit import _ext

TWINS = _ext.twins("conduit.http", "sse")


class Text(str):
    pass


class Number(int):
    pass


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 1000


circular: list = []
circular.append(circular)

LINE_BITS = ["\r", "\n", "\r\n", "\n\r", " ", ":", "\0", "\ufeff", "\x85", "\u2028", "\u2029",
             "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\ud800", "\udfff", "data: x", "id: 1"]
texts = st.lists(st.one_of(st.text(max_size=8), st.sampled_from(LINE_BITS)),
                 max_size=8).map("".join)
byte_data = st.one_of(
    st.binary(max_size=24),
    texts.map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.text(max_size=12).map(str.encode),
)
class Huge:
    """Stands for ``sign * 10**digits`` until the test calls the encoder: Hypothesis could
    not print a falsifying example holding an int past Python's int->str digit limit."""

    def __init__(self, sign: int, digits: int) -> None:
        self.value = sign * 10**digits
        self.text = f"{'-' if sign < 0 else ''}10**{digits}"

    def __repr__(self) -> str:
        return self.text


def real(kwargs: dict) -> dict:
    """The keyword arguments with every ``Huge`` replaced by its int."""
    return {k: v.value if isinstance(v, Huge) else v for k, v in kwargs.items()}


big_ints = st.one_of(
    st.integers(),
    st.sampled_from([2**63, -(2**63) - 1]),
    st.builds(Huge, st.sampled_from([1, -1]), st.sampled_from([4298, 4299, 4300, 5000])),
)
scalars = st.one_of(
    texts, big_ints, st.booleans(), st.none(), st.floats(),
    texts.map(Text), st.integers(-5, 5).map(Number), st.sampled_from(list(Level)),
)
json_like = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(texts, st.integers(), st.booleans()), inner, max_size=4),
    ),
    max_leaves=10,
)
junk = st.sampled_from([object(), {1, 2}, (1, "a"), {(1, 2): 3}, circular, b"\xff",
                        [[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]], float("nan"), 1j])
any_data = st.one_of(
    texts, byte_data, byte_data.map(bytearray), byte_data.map(memoryview), json_like, junk)
any_event = st.one_of(st.none(), texts, texts.map(Text), st.integers(), st.binary(max_size=4))
any_id = st.one_of(st.none(), texts, texts.map(Text), big_ints, st.booleans(), st.floats(),
                   st.binary(max_size=4), st.sampled_from(list(Level)))
any_retry = st.one_of(st.none(), big_ints, st.booleans(), st.floats(), texts,
                      st.integers(-3, 3).map(Number))
fields = st.fixed_dictionaries(
    {"data": any_data}, optional={"event": any_event, "id": any_id, "retry": any_retry})


class Refused(Exception):
    """The oracle's verdict that a field must be refused with ``cls``."""

    def __init__(self, cls):
        super().__init__(cls.__name__)
        self.cls = cls


def _utf8(text: str) -> str:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise Refused(ValueError) from None
    return text


def _data_text(data) -> str:
    if isinstance(data, str):
        return _utf8(str.__str__(data))
    if isinstance(data, (bytes, bytearray, memoryview)):
        try:
            return bytes(data).decode("utf-8")
        except UnicodeDecodeError:
            raise Refused(ValueError) from None
    try:
        text = json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        raise Refused(TypeError) from None
    return _utf8(text)


def oracle(data, event=None, id=None, retry=None):
    """(data text, event text, id text, retry) the rules accept, or raise Refused."""
    text = _data_text(data)
    if event is not None:
        if not isinstance(event, str):
            raise Refused(TypeError)
        event = _utf8(str.__str__(event))
        if "\r" in event or "\n" in event:
            raise Refused(ValueError)
    if id is not None:
        if isinstance(id, str):
            id = _utf8(str.__str__(id))
        elif isinstance(id, int) and not isinstance(id, bool):
            try:
                id = int.__repr__(id)
            except ValueError:  # more digits than int->str allows
                raise Refused(ValueError) from None
        else:
            raise Refused(TypeError)
        if "\r" in id or "\n" in id or "\0" in id:
            raise Refused(ValueError)
    if retry is not None:
        if not isinstance(retry, int) or isinstance(retry, bool) or retry < 0:
            raise Refused(ValueError)
        retry = int(retry)
        try:
            int.__repr__(retry)
        except ValueError:  # more digits than int->str allows: cannot be written
            raise Refused(ValueError) from None
    return text, event, id, retry


def client_text(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def outcome(fn, *args, **kwargs):
    try:
        result = fn(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - the exception is the outcome under test
        return ("raised", type(exc), str(exc))
    if isinstance(result, bytes):
        return ("frame", result)
    return ("event", result.encode(), result.data, result.event, result.id, result.retry)


@pytest.fixture(params=sorted(TWINS))
def sse(request):
    return TWINS[request.param]


@fuzz_settings()
@given(kwargs=fields)
def test_frames_read_back_or_refused(sse, kwargs):
    kwargs = real(kwargs)
    try:
        text, event, id_text, retry = oracle(**kwargs)
    except Refused as refused:
        for fn in (sse.encode_event, sse.SSEEvent):
            got = outcome(fn, **kwargs)
            assert got[0] == "raised" and got[1] is refused.cls, (got, refused.cls)
        return
    frame = sse.encode_event(**kwargs)
    evt = sse.SSEEvent(**kwargs)
    assert evt.encode() == frame
    assert (evt.data, evt.event, evt.id, evt.retry) == (text, event, id_text, retry)
    stream = sse_spec.parse(frame)
    assert stream.events == [sse_spec.Event(event or "message", client_text(text),
                                            id_text if id_text is not None else "")]
    assert stream.retry == retry


@fuzz_settings()
@given(text=st.one_of(texts, texts.map(Text), st.none(), st.integers(), st.binary(max_size=4)))
def test_comments_read_back_or_refused(sse, text):
    if not isinstance(text, str):
        with pytest.raises(TypeError):
            sse.comment(text)
        return
    try:
        _utf8(text)
    except Refused:
        with pytest.raises(ValueError):
            sse.comment(text)
        return
    frame = sse.comment(text)
    assert frame.endswith(b"\n\n")
    parsed = sse_spec.parse(frame)
    assert parsed.events == [] and parsed.last_event_id == ""
    lines = frame[:-2].decode("utf-8").split("\n")
    assert all(line == ":" or line.startswith(": ") for line in lines), frame
    assert "\n".join(line[2:] for line in lines) == client_text(text)


needs_both = pytest.mark.skipif(len(TWINS) < 2, reason="the compiled twin is not built")


@needs_both
@fuzz_settings()
@given(kwargs=fields, note=st.one_of(texts, st.none(), st.integers()))
def test_twins_agree(kwargs, note):
    kwargs = real(kwargs)
    compiled, pure = TWINS["compiled"], TWINS["pure"]
    assert outcome(compiled.encode_event, **kwargs) == outcome(pure.encode_event, **kwargs)
    assert outcome(compiled.SSEEvent, **kwargs) == outcome(pure.SSEEvent, **kwargs)
    assert outcome(compiled.comment, note) == outcome(pure.comment, note)
