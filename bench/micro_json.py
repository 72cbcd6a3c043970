"""Micro-benchmark of JSON event data: the json module, conduit's compiled encoder, orjson.

    python bench/micro_json.py            # timings, then where orjson's bytes differ
    python bench/micro_json.py --quick    # one run per case instead of the best of 5

Not a test. Prints ns per operation, the best of 5 runs of at least 0.2 s each (as
bench/micro_sse.py does), for three shapes of data:

1. ``small``: ``{"i": 12345, "token": "hello", "done": False}``, a token stream's event.
2. ``ten keys``: ten keys, a nested list of strs and one of floats, ints, a bool, None.
3. ``unicode``: strs of Cyrillic, CJK, emoji and accented Latin (every UTF-8 width).

and, for each, these rows:

a. Bare encoders: the json module's encoder that both twins use (``JSONEncoder(separators=
   (",", ":"), ensure_ascii=False, allow_nan=False).encode``, a str), the same followed by
   ``.encode()`` (the UTF-8 a frame needs), the compiled twin's encoder
   (``_sse_c._json_utf8``, UTF-8 bytes) and ``orjson.dumps`` (UTF-8 bytes).
b. The whole framing path, ``encode_event(d, event="json", id="12345")``, on the pure twin
   (json module), the compiled twin (its own encoder), and the compiled twin fed
   ``orjson.dumps(d)`` as bytes data (what using orjson inside conduit would cost at best:
   the bytes are still checked to be UTF-8); and ``SSEEvent(d, event="json", id="12345")``
   built on the compiled twin (it also keeps the data's text).

orjson is optional here and in conduit (``pip install orjson`` to include it); without it
its rows are left out. After the timings, the probe values in ``PROBES`` are encoded by the
json module and by orjson and every one whose bytes or outcome differ is printed.
"""

from __future__ import annotations

import enum
import json
import platform
import sys
import timeit
from pathlib import Path

# Run from a checkout without installing: make the repository root importable.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from conduit import _ext  # noqa: E402

try:
    import orjson
except ImportError:  # optional: its rows are skipped
    orjson = None

REPEAT = 5
MIN_RUN_SECONDS = 0.2

SHAPES = {
    "small": {"i": 12345, "token": "hello", "done": False},
    "ten keys": {
        "id": 1234567, "user": "ada", "score": 0.875, "latency_ms": 12.5,
        "tags": ["alpha", "beta", "gamma"], "pos": [1.5, -2.25, 1e-07],
        "active": True, "parent": None, "name": "Ada Lovelace", "bytes": 1099511627776,
    },
    "unicode": {
        "text": "Привет, мир! Как дела? こんにちは世界、今日はいい天気ですね。",
        "emoji": "🌍🚀✨ — «ça va» naïve café",
        "lang": "ru/ja",
    },
}

STDLIB_ENCODE = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False,
                                 allow_nan=False).encode


class _Kind(enum.IntEnum):
    ONE = 1


class _Text(str):
    pass


_nested: list = []
_level = _nested
for _ in range(300):
    _level.append([])
    _level = _level[0]

# Values whose encoding by orjson may differ from the json module's (label, value).
PROBES = [
    ("1e16", 1e16), ("1e22", 1e22), ("1e-07", 1e-07), ("5e-324", 5e-324),
    ("1.2345678901234568e+17", 123456789012345678.0), ("-0.0", -0.0), ("1.0", 1.0),
    ("0.1", 0.1), ("nan", float("nan")), ("inf", float("inf")),
    ("2**63", 2**63), ("2**64 - 1", 2**64 - 1), ("2**64", 2**64), ("-2**63 - 1", -(2**63) - 1),
    ("int key", {1: "a"}), ("bool key", {True: "a"}), ("None key", {None: "a"}),
    ("float key", {1.5: "a"}), ("tuple", (1, 2)), ("IntEnum", _Kind.ONE),
    ("str subclass", _Text("t")), ("U+2028", "\u2028"), ("DEL", "\x7f"), ("U+001F", "\x1f"),
    ("lone surrogate", "\ud800"), ("300 levels", _nested), ("set", {1}),
]


def ns_per_op(stmt: str, namespace: dict, quick: bool) -> float:
    timer = timeit.Timer(stmt, globals=namespace)
    number, elapsed = timer.autorange()
    if elapsed < MIN_RUN_SECONDS:
        number = max(1, int(number * MIN_RUN_SECONDS / max(elapsed, 1e-9)))
    best = min(timer.repeat(repeat=1 if quick else REPEAT, number=number))
    return best / number * 1e9


def cases(twins: dict) -> list[tuple[str, str]]:
    rows = [("json module encode (str)", "stdlib(d)"),
            ("json module encode + .encode()", "stdlib(d).encode()")]
    if "compiled" in twins:
        rows.append(("compiled _json_utf8", "c_json(d)"))
    if orjson is not None:
        rows.append(("orjson.dumps", "orjson_dumps(d)"))
    rows.append(("pure encode_event", 'pure_event(d, event="json", id="12345")'))
    if "compiled" in twins:
        rows.append(("compiled encode_event", 'c_event(d, event="json", id="12345")'))
        if orjson is not None:
            rows.append(("compiled encode_event(orjson)",
                         'c_event(orjson_dumps(d), event="json", id="12345")'))
        rows.append(("compiled SSEEvent(...)", 'c_sse(d, event="json", id="12345")'))
    return rows


def outcome(encode, value):
    try:
        return encode(value)
    except Exception as exc:  # noqa: BLE001 - the exception is the outcome compared
        return f"{type(exc).__name__}: {exc}"


def main() -> None:
    quick = "--quick" in sys.argv[1:]
    twins = _ext.twins("conduit.http", "sse")
    namespace = {"stdlib": STDLIB_ENCODE, "pure_event": twins["pure"].encode_event}
    if "compiled" in twins:
        compiled = twins["compiled"]
        namespace.update(c_json=compiled._json_utf8, c_event=compiled.encode_event,
                         c_sse=compiled.SSEEvent)
    if orjson is not None:
        namespace["orjson_dumps"] = orjson.dumps
    for d in SHAPES.values():
        # Every encoder must give the same bytes, or the timings compare nothing.
        want = STDLIB_ENCODE(d).encode()
        assert twins["pure"].encode_event(d) == b"data: " + want + b"\n\n"
        if "compiled" in twins:
            assert compiled._json_utf8(d) == want
            assert compiled.encode_event(d) == b"data: " + want + b"\n\n"
        # orjson's may differ (it writes 1e-07 as 1e-7): that is reported, not timed apart.

    rows = cases(twins)
    results = {shape: {label: ns_per_op(stmt, {**namespace, "d": d}, quick)
                       for label, stmt in rows}
               for shape, d in SHAPES.items()}

    print(
        f"JSON event data, ns/op (best of {1 if quick else REPEAT}); Python "
        f"{platform.python_version()}, {platform.machine()}; orjson "
        f"{orjson.__version__ if orjson is not None else 'not installed'}; "
        f"CONDUIT_EXTENSIONS={_ext.MODE or 'unset'}"
    )
    print(f"{'case':<34}" + "".join(f"{shape:>12}" for shape in SHAPES))
    for label, _ in rows:
        print(f"{label:<34}" + "".join(f"{results[shape][label]:>12.1f}" for shape in SHAPES))
    print("JSON sizes (bytes): " + ", ".join(
        f"{shape} {len(STDLIB_ENCODE(d).encode())}" for shape, d in SHAPES.items()))
    if orjson is not None:
        differ = [shape for shape, d in SHAPES.items()
                  if orjson.dumps(d) != STDLIB_ENCODE(d).encode()]
        print(f"orjson's bytes differ from the json module's for: {', '.join(differ) or 'none'}")

    if orjson is None:
        return
    print("\nWhere orjson.dumps differs from the json module (UTF-8 of its str):")
    for label, value in PROBES:
        ours = outcome(lambda v: STDLIB_ENCODE(v).encode(), value)
        theirs = outcome(orjson.dumps, value)
        if ours != theirs:
            print(f"  {label:<24} json: {str(ours)[:60]:<62} orjson: {str(theirs)[:60]}")


if __name__ == "__main__":
    main()
