"""Fixtures for the conformance suite: one live conduit server per parser twin.

The suite reuses the socket helpers of ``tests/integration`` (``integration_helpers``:
``RunningServer``, ``RawClient``); that directory is put on ``sys.path`` here so the suite
also runs on its own (``python -m pytest tests/conformance``).

``conformance_server`` is module-scoped and parametrised over the parser twins that are
available (compiled and pure, or pure only with ``CONDUIT_EXTENSIONS=0``); see
``conformance_app.serving_with_parser``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

for _path in (Path(__file__).resolve().parents[1] / "integration", Path(__file__).parent):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from conformance_app import serving_with_parser  # noqa: E402

from conduit import _ext  # noqa: E402

PARSER_TWINS = _ext.twins("conduit.http", "parser")


# Longer than any client read timeout (integration_helpers.TIMEOUT): a connection the
# server should have closed, but did not, fails the case instead of being closed later
# by the idle timeout.
KEEPALIVE_TIMEOUT_SECONDS = 600


@pytest.fixture(scope="module", params=sorted(PARSER_TWINS))
def conformance_server(request):
    """A running server (default limits) whose connections use one parser twin."""
    with serving_with_parser(PARSER_TWINS[request.param],
                             keepalive_timeout_seconds=KEEPALIVE_TIMEOUT_SECONDS) as server:
        yield server
