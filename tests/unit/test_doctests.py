"""The examples in public docstrings are run, on whichever twin is active."""

import doctest

import pytest

import conduit
import conduit.http._parser_py
import conduit.http._sse_py
import conduit.http.sse


@pytest.mark.parametrize(
    "module", [conduit, conduit.http.sse, conduit.http._sse_py, conduit.http._parser_py]
)
def test_docstring_examples(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
