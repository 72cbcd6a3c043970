"""Request.query and query_all: the same pairs as urllib.parse.parse_qsl(keep_blank_values=True),
whichever path (the unescaped fast path or parse_qsl itself) a query string takes."""

from urllib.parse import parse_qsl

from hypothesis import given, settings
from hypothesis import strategies as st

from conduit.app.request import Request
from conduit.http.parser import RequestParser


def request_for(target: str) -> Request:
    parser = RequestParser()
    parser.feed(f"GET {target} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
    return Request(parser.next_request())


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="ab1=&%+2AF;", max_size=24))
def test_query_pairs_are_parse_qsl(query):
    request = request_for("/p?" + query)
    pairs = parse_qsl(query, keep_blank_values=True)
    assert request._pairs() == pairs
    assert request.query == dict(pairs)
    assert request.query_all("a") == [value for key, value in pairs if key == "a"]


def test_query_examples():
    assert request_for("/count?n=10000").query == {"n": "10000"}
    assert request_for("/x?a=1&b&&c=&a=2").query_all("a") == ["1", "2"]
    assert request_for("/x?a=1&b&&c=").query == {"a": "1", "b": "", "c": ""}
    assert request_for("/x?q=a+b%21").query == {"q": "a b!"}
    assert request_for("/x").query == {}
