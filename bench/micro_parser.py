"""Micro-benchmark: request parsing, compiled twin against pure twin (not a test).

    python bench/micro_parser.py

Prints ns per request for typical heads, and the cost of a large head fed one byte at a
time at three sizes: linear growth (x2 per doubling) is the point, quadratic would be x4.
"""

from __future__ import annotations

import sys
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout

from conduit import _ext  # noqa: E402

CHROME_GET = (
    b"GET /events?topic=orders HTTP/1.1\r\n"
    b"Host: 127.0.0.1:8000\r\n"
    b"Connection: keep-alive\r\n"
    b"Accept: text/event-stream\r\n"
    b"Cache-Control: no-cache\r\n"
    b"User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    b"Chrome/156.0.0.0 Safari/537.36\r\n"
    b"Sec-Fetch-Site: same-origin\r\n"
    b"Sec-Fetch-Mode: cors\r\n"
    b"Sec-Fetch-Dest: empty\r\n"
    b"Referer: http://127.0.0.1:8000/\r\n"
    b"Accept-Encoding: gzip, deflate, br, zstd\r\n"
    b"Accept-Language: en-US,en;q=0.9\r\n"
    b"Cookie: session=abcdef0123456789; theme=dark\r\n"
    b"\r\n"
)
CURL_GET = (
    b"GET /count HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nUser-Agent: curl/7.88.1\r\n"
    b"Accept: */*\r\n\r\n"
)
POST_JSON = (
    b"POST /command HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nContent-Type: application/json\r\n"
    b"Content-Length: 66\r\n\r\n"
    b'{"type": "SaveDocument", "data": {"id": "doc1", "content": "hi"}}\n'
)
CHUNKED = (
    b"POST /pub HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"10\r\n0123456789abcdef\r\n10\r\n0123456789abcdef\r\n0\r\n\r\n"
)


def best_ns(fn, number: int) -> float:
    return min(timeit.repeat(fn, number=number, repeat=5)) / number * 1e9


def bench_heads(mod, number: int) -> dict[str, float]:
    results = {}
    parser = mod.RequestParser()
    for name, data in (
        (f"Chrome GET head ({len(CHROME_GET)} B), keep-alive parser", CHROME_GET),
        (f"curl GET head ({len(CURL_GET)} B), keep-alive parser", CURL_GET),
        (f"POST with {66} B JSON body", POST_JSON),
        ("chunked POST, 2 chunks", CHUNKED),
    ):
        def run(parser=parser, data=data):
            parser.feed(data)
            parser.next_request()

        results[name] = best_ns(run, number)

    def fresh():
        p = mod.RequestParser()
        p.feed(CHROME_GET)
        p.next_request()

    results["Chrome GET head, new parser each time"] = best_ns(fresh, number)

    def with_headers():
        parser.feed(CHROME_GET)
        return parser.next_request().headers

    results["Chrome GET head + .headers list built"] = best_ns(with_headers, number)
    return results


def byte_by_byte(mod, size: int) -> float:
    """Seconds to parse a head of about `size` bytes fed one byte at a time."""
    line = b"X-Filler: " + b"a" * 90 + b"\r\n"
    head = b"GET / HTTP/1.1\r\nHost: x\r\n" + line * (size // len(line)) + b"\r\n"
    pieces = [head[i:i + 1] for i in range(len(head))]

    def run():
        p = mod.RequestParser(max_header_bytes=1 << 20, max_header_count=100000)
        for piece in pieces:
            p.feed(piece)
            p.next_request()

    return min(timeit.repeat(run, number=1, repeat=3))


def main() -> int:
    twins = _ext.twins("conduit.http", "parser")
    print(f"# request parsing, ns/request (best of 5), Python {sys.version.split()[0]}")
    table = {name: bench_heads(mod, 20000 if name == "compiled" else 2000)
             for name, mod in sorted(twins.items())}
    names = sorted(table)
    print("| case | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for case in table[names[0]]:
        print(f"| {case} | " + " | ".join(f"{table[n][case]:,.0f}" for n in names) + " |")
    print()
    print("# head fed one byte at a time (seconds); linear means x2 per size doubling")
    for name, mod in sorted(twins.items()):
        times = [byte_by_byte(mod, size) for size in (16384, 32768, 65536)]
        ratios = ", ".join(f"x{b / a:.2f}" for a, b in zip(times, times[1:], strict=False))
        print(f"{name}: 16 KiB {times[0]:.4f}s, 32 KiB {times[1]:.4f}s, "
              f"64 KiB {times[2]:.4f}s ({ratios})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
