"""Micro-benchmark of SSE framing, for each twin that imports here (not a test).

    python bench/micro_sse.py

Prints ns per operation, the best of 5 runs, for the compiled and the pure twin side by
side. Each run lasts at least 0.2 s (timeit's autorange picks the loop count), so a run is
long enough for the clock and short enough that the best of 5 filters out the noise of a
shared machine. CONDUIT_EXTENSIONS=0 leaves only the pure twin.

Cases
1. ``encode_event`` of a small event with a type and an id (the streaming hot path).
2. ``SSEEvent(...)`` built and encoded (what a handler that yields events pays).
3. ``encode()`` of an event built beforehand (the cached frame: "format once").
4. ``encode_event`` of 1 KiB of data without line ends (memchr scan and one copy).
5. ``encode_event`` of a 10-line event mixing LF and CRLF (the splitting path).
6. ``encode_event`` of a small dict (compact JSON; mostly the json module's cost).
7. ``SSEEvent(i, event="counter", id=i)`` built and dropped, without ``encode()``: what
   a streaming handler pays per event, since the stream pump has a simple event write
   its frame into the pump's own buffer.
"""

from __future__ import annotations

import platform
import sys
import timeit
from pathlib import Path

# Run from a checkout without installing: make the repository root importable.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from conduit import _ext  # noqa: E402

REPEAT = 5
MIN_RUN_SECONDS = 0.2

KIB_DATA = ("0123456789abcdef" * 64)[:1024]
MULTILINE_DATA = (
    "\n".join(f"line {i}: some text" for i in range(5))
    + "\r\n"
    + ("\r\n".join(f"line {i}: more text" for i in range(5, 10)))
)
DICT_DATA = {"user": "ada", "n": 42, "tags": ["a", "b"]}

CASES = [
    ("encode_event small", 'encode_event("hello", event="message", id="1")'),
    ("SSEEvent(...).encode()", 'SSEEvent("hello", event="message", id="1").encode()'),
    ("prebuilt .encode()", "prebuilt.encode()"),
    ("encode_event 1 KiB", "encode_event(KIB_DATA)"),
    ("encode_event 10 lines", 'encode_event(MULTILINE_DATA, event="log")'),
    ("encode_event dict", "encode_event(DICT_DATA)"),
    ("SSEEvent(i, ...) only", 'SSEEvent(123456, event="counter", id=123456)'),
]


def ns_per_op(stmt: str, namespace: dict) -> float:
    timer = timeit.Timer(stmt, globals=namespace)
    number, elapsed = timer.autorange()
    if elapsed < MIN_RUN_SECONDS:
        number = max(1, int(number * MIN_RUN_SECONDS / max(elapsed, 1e-9)))
    best = min(timer.repeat(repeat=REPEAT, number=number))
    return best / number * 1e9


def main() -> None:
    twins = _ext.twins("conduit.http", "sse")
    names = sorted(twins)  # "compiled" before "pure"
    results: dict[str, dict[str, float]] = {}
    for name in names:
        module = twins[name]
        namespace = {
            "encode_event": module.encode_event,
            "SSEEvent": module.SSEEvent,
            "prebuilt": module.SSEEvent("hello", event="message", id="1"),
            "KIB_DATA": KIB_DATA,
            "MULTILINE_DATA": MULTILINE_DATA,
            "DICT_DATA": DICT_DATA,
        }
        # Both twins must frame the cases identically, or the timings compare nothing.
        assert namespace["encode_event"](MULTILINE_DATA, event="log").count(b"data: ") == 10
        results[name] = {label: ns_per_op(stmt, namespace) for label, stmt in CASES}

    print(
        f"SSE framing, ns/op (best of {REPEAT}); Python {platform.python_version()}, "
        f"{platform.machine()}; CONDUIT_EXTENSIONS={_ext.MODE or 'unset'}"
    )
    header = f"{'case':<26}" + "".join(f"{name:>12}" for name in names)
    if len(names) == 2:
        header += f"{'speedup':>10}"
    print(header)
    for label, _ in CASES:
        row = f"{label:<26}" + "".join(f"{results[name][label]:>12.1f}" for name in names)
        if len(names) == 2:
            row += f"{results['pure'][label] / results['compiled'][label]:>9.1f}x"
        print(row)


if __name__ == "__main__":
    main()
