"""The fuzzers reuse helpers of the other tiers: ``parser_helpers`` and ``sse_spec`` (the
independent event-stream reader) from ``tests/unit``, ``integration_helpers`` (raw
sockets) from ``tests/integration`` and ``conformance_app`` (a live server with a chosen
parser twin) from ``tests/conformance``. Their directories go on ``sys.path`` here so
``python -m pytest tests/fuzz`` also works on its own."""

from __future__ import annotations

import sys
from pathlib import Path

_TESTS = Path(__file__).resolve().parents[1]
for _tier in ("unit", "integration", "conformance"):
    if str(_TESTS / _tier) not in sys.path:
        sys.path.insert(0, str(_TESTS / _tier))
