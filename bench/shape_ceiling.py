"""The ceiling of the shape scenarios: the user's own generator, with no server at all.

    python bench/shape_ceiling.py [--events 1000000] [--repeat 3]

For each shape of bench/run.py's shape scenarios (the generators of
bench/apps/conduit_bench.py), in this process: the generator alone (each event built,
nothing sent), and the generator with each event framed (``SSEEvent.encode()``; for the
async shape, drained by ``async for`` on asyncio's loop). No server can stream a shape faster
than its generator runs in one Python thread, so this is the most a Python server could reach
on one core; a server's figure over this one is the share of the core its own work leaves
to the handler. Prints one line per shape and a JSON object (events/s, best of --repeat).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "apps"))
import conduit_bench  # noqa: E402

from conduit import _ext  # noqa: E402


def rate_sync(make, n: int, encode: bool) -> float:
    started = time.perf_counter()
    if encode:
        for event in make(n):
            event.encode()
    else:
        for _ in make(n):
            pass
    return n / (time.perf_counter() - started)


def rate_async(n: int, encode: bool) -> float:
    async def drain():
        if encode:
            async for event in conduit_bench.shape_async(n):
                event.encode()
        else:
            async for _ in conduit_bench.shape_async(n):
                pass

    started = time.perf_counter()
    asyncio.run(drain())
    return n / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    n = args.events
    results = {}
    for kind in ("seed", "fstring", "json", "async"):
        row = {}
        for encode in (False, True):
            if kind == "async":
                best = max(rate_async(n, encode) for _ in range(args.repeat))
            else:
                make = conduit_bench.SHAPES[kind]
                best = max(rate_sync(make, n, encode) for _ in range(args.repeat))
            row["framed" if encode else "built"] = round(best)
        results[kind] = row
        print(f"{kind:8s} generator alone {row['built'] / 1e6:5.2f} M events/s "
              f"({1e9 / row['built']:5.0f} ns); framed too {row['framed'] / 1e6:5.2f} M "
              f"({1e9 / row['framed']:5.0f} ns)", file=sys.stderr)
    print(json.dumps({"events": n, "extensions": _ext.MODE or "auto",
                      "python": sys.version.split()[0], "shapes": results}))


if __name__ == "__main__":
    main()
