"""Start conduit's benchmark app for the quick conduit-only scripts (stream.py, fanout.py)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TICKS = os.sysconf("SC_CLK_TCK")


def start_server(pure: bool):
    """``python -m conduit run bench/apps/conduit_bench.py`` on a free port: (process, port).

    Compiled twins (``CONDUIT_EXTENSIONS=1``) unless ``pure``; with
    ``BENCH_EXTENSIONS_UNSET`` set, whatever is built (the fallback mode).
    """
    env = dict(os.environ, CONDUIT_EXTENSIONS="0" if pure else "1")
    if os.environ.get("BENCH_EXTENSIONS_UNSET"):
        env.pop("CONDUIT_EXTENSIONS")
    proc = subprocess.Popen(
        [sys.executable, "-m", "conduit", "run", "bench/apps/conduit_bench.py", "--port", "0",
         "--no-access-log", "--max-connections", "20000"],
        cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True,
    )
    for line in proc.stderr:
        match = re.search(r"running on http://[^:]+:(\d+)", line)
        if match:
            return proc, int(match.group(1))
    raise RuntimeError("server did not start")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc (clock-tick resolution)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS
