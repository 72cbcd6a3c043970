"""Shared fixtures: every sans-IO test runs on both twins (compiled and pure).

With CONDUIT_EXTENSIONS=1 a missing compiled twin is an error, never a silent skip.
"""

import pytest

from conduit import _ext

SSE_TWINS = _ext.twins("conduit.http", "sse")
PARSER_TWINS = _ext.twins("conduit.http", "parser")
LOOP_TWINS = _ext.twins("conduit.net", "loop")


@pytest.fixture(params=sorted(SSE_TWINS))
def sse(request):
    """The SSE module under test: conduit.http._sse_c or _sse_py."""
    return SSE_TWINS[request.param]


@pytest.fixture(params=sorted(PARSER_TWINS))
def http_parser(request):
    """The parser module under test: conduit.http._parser_c or _parser_py."""
    return PARSER_TWINS[request.param]


@pytest.fixture(params=sorted(LOOP_TWINS))
def net_loop(request):
    """The loop module under test: conduit.net._loop_c or _loop_py."""
    return LOOP_TWINS[request.param]


def pytest_report_header(config):
    return (
        f"conduit twins: sse={sorted(SSE_TWINS)} parser={sorted(PARSER_TWINS)} "
        f"loop={sorted(LOOP_TWINS)} "
        f"(CONDUIT_EXTENSIONS={_ext.MODE or 'unset'})"
    )
