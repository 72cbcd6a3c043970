"""A tiny run of the benchmark harness against conduit alone (what CI can afford).

The full comparison with the other servers is `python bench/run.py` (about half an hour);
this checks that the harness, the load client and conduit's benchmark app work together
and that the report is written. No speed is asserted: speed lives in the harness's output.
"""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCENARIOS = ["stream_10k", "stream_1m", "fanout_100", "fanout_1000", "latency",
             "idle_memory", "slow_subscriber", "ticks_1000",
             *(f"shape_{kind}_{size}" for kind in ("seed", "fstring", "json", "async")
               for size in ("10k", "1m")),
             "streams_1000", "hold_10000"]


def test_smoke_run_writes_results_table_and_chart(tmp_path):
    out = tmp_path / "smoke.json"
    run = subprocess.run([sys.executable, "bench/run.py", "--smoke", "--out", str(out)],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    data = json.loads(out.read_text())
    assert data["mode"] == "smoke"
    assert list(data["results"]) == SCENARIOS
    for key in SCENARIOS:
        for peer in ("conduit", "conduit-pure"):
            entry = data["results"][key]["peers"][peer]
            assert not entry.get("failures"), (key, peer, entry.get("failures"))
            assert entry["runs"] and entry["median"] > 0, (key, peer)
    assert data["results"]["hold_10000"]["peers"]["conduit"]["median"] == 100  # all delivered
    table = out.with_suffix(".md").read_text()
    assert "| conduit (compiled) |" in table and "## 10,000-event stream" in table
    chart = out.with_suffix(".png")
    assert chart.exists() and chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # the report re-renders from the stored JSON alone
    chart.unlink()
    again = subprocess.run([sys.executable, "bench/run.py", "--report", str(out)], cwd=ROOT,
                           capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr[-2000:]
    assert chart.exists()
