"""examples/mcp_server.py end to end, served by ``python -m conduit run``.

- The official MCP SDK client (``mcp`` 2.x) in both of its modes: ``mode="auto"`` (the
  default: ``server/discover``, then protocol 2026-07-28, no session) and
  ``mode="legacy"`` (the initialize handshake at 2025-11-25, an ``Mcp-Session-Id``
  session, DELETE on exit): list tools, call the n-step tools with a progress callback,
  bad arguments, an unknown tool.
- Raw httpx: the session rules (Mcp-Session-Id, 400/404), Origin (403), GET and DELETE,
  content types, SSE event ids (unique, ``<stream>-<n>``, one prefix per stream),
  resuming with Last-Event-ID, notifications/cancelled, and the 2026-07-28 rules.
- The simple form, ``GET /mcp/tools/execute``: its exact event sequence (curl and
  httpx-sse).
- The page in headless Chromium: progress, then the result; the JSON-RPC console.

One server serves the whole module; on teardown it must drain and exit 0 after SIGTERM.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import threading
import time

import httpx
import pytest
from e2e_harness import ExampleServer
from httpx_sse import EventSource, connect_sse

try:
    from mcp import Client, MCPError
except ImportError:  # reported by the sdk fixture (fails with CONDUIT_EXTENSIONS=1 or CI)
    Client = MCPError = None

EXAMPLE = "examples/mcp_server.py"
TIMEOUT = httpx.Timeout(10.0)
ACCEPT = "application/json, text/event-stream"
HANDSHAKE = "2025-11-25"
MODERN = "2026-07-28"
EVENT_ID = re.compile(r"^([0-9a-f]+)-([0-9]+)$")


# -- fixtures and helpers --------------------------------------------------------------------

@pytest.fixture(scope="module")
def server():
    example = ExampleServer(EXAMPLE)
    try:
        yield example
    finally:
        code = example.stop(timeout=20)
        assert code == 0, f"exited with {code} after SIGTERM\n{example.log}"
        assert "graceful timeout" not in example.log, example.log


@pytest.fixture(scope="module")
def base(server) -> str:
    return server.base_url


@pytest.fixture(scope="module")
def mcp_url(base) -> str:
    return base + "/mcp"


@pytest.fixture
def http():
    with httpx.Client(timeout=TIMEOUT) as client:
        yield client


@pytest.fixture
def sdk():
    """The mcp SDK: its absence fails the test in CI or with CONDUIT_EXTENSIONS=1 (as
    conftest.require does for the other prerequisites), and skips it otherwise."""
    if Client is not None:
        return
    ci = os.environ.get("CI", "").strip().lower()
    message = ("end-to-end prerequisite missing: the Python package mcp is not installed "
               "(pip install '.[test]')")
    if os.environ.get("CONDUIT_EXTENSIONS") == "1" or ci not in ("", "0", "false", "no"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def run_in_own_thread(scenario) -> None:
    """asyncio.run(scenario()) in a thread of its own.

    Playwright's sync API (the browser tests in this session) leaves an asyncio loop running
    in the main thread, where asyncio.run() refuses to start another.
    """
    outcome = {}

    def target():
        try:
            asyncio.run(scenario())
        except BaseException as exc:  # re-raised in the test's thread
            outcome["error"] = exc

    thread = threading.Thread(target=target, name="mcp-sdk-client")
    thread.start()
    thread.join(120)
    assert not thread.is_alive(), "the MCP client scenario did not finish"
    if "error" in outcome:
        raise outcome["error"]


def post(http, url, message, session=None, version=None, headers=None, raw=None):
    sent = {"Accept": ACCEPT, "Content-Type": "application/json"}
    if session:
        sent["Mcp-Session-Id"] = session
    if version:
        sent["MCP-Protocol-Version"] = version
    sent.update(headers or {})
    body = raw if raw is not None else json.dumps(message)
    return http.post(url, content=body, headers=sent)


def open_session(http, url, version=HANDSHAKE) -> str:
    response = post(http, url, {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": version, "capabilities": {},
        "clientInfo": {"name": "e2e", "version": "1"}}})
    assert response.status_code == 200, response.text
    session = response.headers["mcp-session-id"]
    ack = post(http, url, {"jsonrpc": "2.0", "method": "notifications/initialized"},
               session, response.json()["result"]["protocolVersion"])
    assert ack.status_code == 202 and ack.content == b"", ack.text
    return session


def call(tool, arguments, request_id=1, token=None) -> dict:
    params = {"name": tool, "arguments": arguments}
    if token is not None:
        params["_meta"] = {"progressToken": token}
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params}


def stream_events(http, url, message, session=None, version=HANDSHAKE):
    """POST a request answered with SSE; (response, [ServerSentEvent...])."""
    headers = {"Accept": ACCEPT, "Content-Type": "application/json"}
    if session:
        headers["Mcp-Session-Id"] = session
    if version:
        headers["MCP-Protocol-Version"] = version
    with http.stream("POST", url, content=json.dumps(message), headers=headers) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        return response, list(EventSource(response).iter_sse())


def check_ids(events) -> str:
    """Every event has an id ``<stream>-<n>``, n = 1, 2, ...; the stream's prefix."""
    prefixes = set()
    for number, event in enumerate(events, start=1):
        match = EVENT_ID.match(event.id or "")
        assert match, f"event without a <stream>-<n> id: {event!r}"
        prefixes.add(match.group(1))
        assert int(match.group(2)) == number, [e.id for e in events]
        assert event.event == "message" or not event.event  # the default type
    assert len(prefixes) == 1, [e.id for e in events]
    return prefixes.pop()


def rpc_error(response, status: int, code: int) -> dict:
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["jsonrpc"] == "2.0" and body["error"]["code"] == code, body
    return body


def new_log_lines(server, since: int, until: str | None = None, timeout: float = 5.0) -> str:
    """The server's log lines from index ``since``; with ``until``, first wait (a while) for
    a line containing it: stderr is read by another thread, so a line can lag the reply."""
    deadline = time.monotonic() + timeout
    while True:
        log = "\n".join(server.log_lines[since:])
        if until is None or until in log or time.monotonic() > deadline:
            return log
        time.sleep(0.05)


# -- the official SDK client, both modes ------------------------------------------------------

@pytest.mark.parametrize("mode", ["auto", "legacy"])
def test_sdk_client_lists_tools_and_calls_them_with_progress(sdk, server, mcp_url, mode):
    log_start = len(server.log_lines)

    async def scenario():
        seen = []

        async def on_progress(progress, total, message):
            seen.append(("progress", progress, total, message))

        async with Client(mcp_url, mode=mode) as client:
            assert client.protocol_version == (MODERN if mode == "auto" else HANDSHAKE)
            assert client.server_info.name == "conduit-mcp-example"

            tools = {tool.name: tool for tool in (await client.list_tools()).tools}
            assert set(tools) == {"count_to", "slow_sum"}
            schema = tools["count_to"].input_schema
            assert schema["properties"]["n"]["type"] == "integer"
            assert schema["required"] == ["n"]

            result = await client.call_tool("count_to", {"n": 5, "delay_ms": 20},
                                            progress_callback=on_progress)
            seen.append(("result", result))
            assert [item[0] for item in seen] == ["progress"] * 5 + ["result"], seen
            progress = [item[1] for item in seen[:5]]
            assert progress == sorted(set(progress)) == [1, 2, 3, 4, 5]
            assert all(item[2] == 5 for item in seen[:5])
            assert seen[0][3] == "counted 1 of 5"
            assert not result.is_error
            assert result.content[0].text == "Counted to 5."
            assert result.structured_content == {"count": 5}

            seen.clear()
            result = await client.call_tool("slow_sum", {"n": 4, "delay_ms": 5},
                                            progress_callback=on_progress)
            assert [item[1] for item in seen] == [1, 2, 3, 4]
            assert result.structured_content == {"n": 4, "sum": 10}
            assert result.content[0].text == "1 + 2 + ... + 4 = 10"

            # Bad arguments: a tool result with isError, saying what is wrong.
            for bad in ({"n": "five"}, {"n": 0}, {"n": 1001}, {}, {"n": 2, "speed": 1},
                        {"n": 2.5}, {"n": True}):
                seen.clear()
                result = await client.call_tool("count_to", bad, progress_callback=on_progress)
                assert result.is_error, (bad, result)
                assert "Invalid arguments for count_to" in result.content[0].text
                assert seen == []
            assert "'n' must be an integer from 1 to 1000" in result.content[0].text

            # An unknown tool is a protocol error: -32602 (invalid params).
            with pytest.raises(MCPError) as caught:
                await client.call_tool("no_such_tool", {"n": 1})
            assert caught.value.code == -32602
            assert "no_such_tool" in caught.value.message

            if mode == "legacy":
                await client.session.send_ping()

    run_in_own_thread(scenario)

    if mode == "legacy":
        log = new_log_lines(server, log_start, until='"DELETE /mcp HTTP/1.1" 204')
        started = re.findall(r"mcp session ([0-9a-f]{8})… started: protocol 2025-11-25", log)
        assert len(started) == 1, log
        assert f"mcp session {started[0]}… ended (DELETE)" in log  # closed on exit
        assert '"DELETE /mcp HTTP/1.1" 204' in log
        assert '"GET /mcp HTTP/1.1" 200' in log  # the client's stream for server messages
    else:  # a request of our own marks where the scenario's lines end
        httpx.get(server.base_url + "/?end-of-scenario", timeout=TIMEOUT)
        log = new_log_lines(server, log_start, until="GET /?end-of-scenario")
        assert "end-of-scenario" in log
        assert "mcp session" not in log and "DELETE" not in log and "GET /mcp" not in log


def test_sdk_legacy_session_is_gone_after_the_client_closes(sdk, http, server, mcp_url):
    """The SDK sends DELETE on exit; the session id answers 404 from then on."""
    ids = []

    async def remember(response):  # an httpx2 AsyncClient hook
        if response.headers.get("mcp-session-id"):
            ids.append(response.headers["mcp-session-id"])

    async def scenario():
        import httpx2
        from mcp.client.streamable_http import streamable_http_client

        async with httpx2.AsyncClient(event_hooks={"response": [remember]}) as client:
            transport = streamable_http_client(mcp_url, http_client=client)
            async with Client(transport, mode="legacy") as mcp_client:
                await mcp_client.list_tools()

    run_in_own_thread(scenario)
    assert len(set(ids)) == 1, ids
    response = post(http, mcp_url, {"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
                    ids[0], HANDSHAKE)
    rpc_error(response, 404, -32001)


# -- handshake era, raw ----------------------------------------------------------------------

def test_initialize_answers_with_a_session_id(http, mcp_url):
    response = post(http, mcp_url, {"jsonrpc": "2.0", "id": "init-1", "method": "initialize",
                                    "params": {"protocolVersion": HANDSHAKE, "capabilities": {},
                                               "clientInfo": {"name": "e2e", "version": "1"}}})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    session = response.headers["mcp-session-id"]
    assert re.fullmatch(r"[\x21-\x7e]{16,}", session)
    body = response.json()
    assert body["id"] == "init-1"
    result = body["result"]
    assert result["protocolVersion"] == HANDSHAKE
    assert result["capabilities"] == {"tools": {"listChanged": False}}
    assert result["serverInfo"]["name"] == "conduit-mcp-example"

    # Version negotiation: a served version is echoed; any other gets the latest.
    for requested, answered in (("2025-06-18", "2025-06-18"), ("2024-11-05", HANDSHAKE),
                                ("1999-01-01", HANDSHAKE)):
        response = post(http, mcp_url, {"jsonrpc": "2.0", "id": 1, "method": "initialize",
                                        "params": {"protocolVersion": requested,
                                                   "capabilities": {},
                                                   "clientInfo": {"name": "e2e"}}})
        assert response.json()["result"]["protocolVersion"] == answered
        assert response.headers["mcp-session-id"] != session

    # initialize with bad params is -32602; initialize inside a session is refused.
    response = post(http, mcp_url, {"jsonrpc": "2.0", "id": 2, "method": "initialize",
                                    "params": {"capabilities": {}}})
    assert response.json()["error"]["code"] == -32602
    assert "mcp-session-id" not in response.headers
    response = post(http, mcp_url, {"jsonrpc": "2.0", "id": 3, "method": "initialize",
                                    "params": {"protocolVersion": HANDSHAKE, "capabilities": {},
                                               "clientInfo": {"name": "e2e"}}}, session)
    rpc_error(response, 400, -32600)


def test_session_header_rules(http, mcp_url):
    listing = {"jsonrpc": "2.0", "id": 7, "method": "tools/list"}
    rpc_error(post(http, mcp_url, listing), 400, -32600)  # missing: 400
    rpc_error(post(http, mcp_url, listing, "0123456789abcdef0123456789abcdef"), 404, -32001)
    session = open_session(http, mcp_url)

    response = post(http, mcp_url, listing, session, HANDSHAKE)
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["id"] == 7 and [t["name"] for t in body["result"]["tools"]] == [
        "count_to", "slow_sum"]
    assert post(http, mcp_url, listing, session).status_code == 200  # header optional

    # MCP-Protocol-Version: another handshake version than the negotiated one, or an
    # invalid one, is 400.
    rpc_error(post(http, mcp_url, listing, session, "2025-06-18"), 400, -32600)
    assert post(http, mcp_url, listing, session, "bogus").status_code == 400

    ping = post(http, mcp_url, {"jsonrpc": "2.0", "id": 8, "method": "ping"}, session, HANDSHAKE)
    assert ping.json() == {"jsonrpc": "2.0", "id": 8, "result": {}}

    unknown = post(http, mcp_url, {"jsonrpc": "2.0", "id": 9, "method": "resources/list"},
                   session, HANDSHAKE)
    assert unknown.status_code == 200
    assert unknown.json()["error"]["code"] == -32601 and unknown.json()["id"] == 9

    notification = post(http, mcp_url, {"jsonrpc": "2.0", "method": "notifications/whatever"},
                        session, HANDSHAKE)
    assert notification.status_code == 202 and notification.content == b""

    # Malformed bodies, with or without a session.
    for sid in (None, session):
        body = rpc_error(post(http, mcp_url, None, sid, raw='{"jsonrpc": "2.0", '), 400, -32700)
        assert body["id"] is None
        rpc_error(post(http, mcp_url, None, sid, raw="[" + json.dumps(listing) + "]"),
                  400, -32600)
        rpc_error(post(http, mcp_url, {"jsonrpc": "1.0", "id": 1, "method": "ping"}, sid),
                  400, -32600)
        rpc_error(post(http, mcp_url, {"jsonrpc": "2.0", "id": None, "method": "ping"}, sid),
                  400, -32600)

    # Accept must list both types; the body must be JSON.
    assert post(http, mcp_url, listing, session, headers={"Accept": "application/json"}
                ).status_code == 406
    assert post(http, mcp_url, listing, session, headers={"Content-Type": "text/plain"}
                ).status_code == 415

    # tools/call: params that are not a call, and an unknown tool, are -32602 (JSON).
    for params in ({"arguments": {}}, {"name": "count_to", "arguments": [1]},
                   {"name": "count_to", "arguments": {"n": 1}, "_meta": {"progressToken": True}},
                   {"name": "nope", "arguments": {}}):
        response = post(http, mcp_url, {"jsonrpc": "2.0", "id": 10, "method": "tools/call",
                                        "params": params}, session, HANDSHAKE)
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/json"
        assert response.json()["error"]["code"] == -32602, params


def test_foreign_origins_are_refused(http, base, mcp_url, server):
    session = open_session(http, mcp_url)
    listing = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    port = server.port
    for origin in ("http://evil.example", f"http://evil.example:{port}",
                   "http://localhost:1", f"https://localhost:{port}", "null",
                   f"http://127.0.0.1.evil.example:{port}", "not a url"):
        headers = {"Origin": origin}
        body = rpc_error(post(http, mcp_url, listing, session, HANDSHAKE, headers), 403, -32600)
        assert "Origin" in body["error"]["message"]
        assert http.get(mcp_url, headers={**headers, "Accept": "text/event-stream",
                                          "Mcp-Session-Id": session}).status_code == 403
        assert http.delete(mcp_url, headers={**headers, "Mcp-Session-Id": session}
                           ).status_code == 403
        assert http.get(base + "/mcp/tools/execute?n=1",
                        headers=headers).status_code == 403
    for origin in (f"http://127.0.0.1:{port}", f"http://localhost:{port}",
                   f"http://[::1]:{port}"):
        response = post(http, mcp_url, listing, session, HANDSHAKE, {"Origin": origin})
        assert response.status_code == 200, (origin, response.text)
    # The session survived all of that.
    assert post(http, mcp_url, listing, session, HANDSHAKE).status_code == 200


def test_get_stream_and_delete(http, mcp_url):
    sse = {"Accept": "text/event-stream", "MCP-Protocol-Version": HANDSHAKE}
    rpc_error(http.get(mcp_url, headers=sse), 400, -32600)
    rpc_error(http.get(mcp_url, headers={**sse, "Mcp-Session-Id": "unknown"}), 404, -32001)
    session = open_session(http, mcp_url)
    headers = {**sse, "Mcp-Session-Id": session}
    assert http.get(mcp_url, headers={**headers, "Accept": "application/json"}
                    ).status_code == 406

    first_events = []
    ended = threading.Event()
    with httpx.Client(timeout=TIMEOUT) as other:
        with other.stream("GET", mcp_url, headers=headers) as stream:
            assert stream.status_code == 200
            assert stream.headers["content-type"].startswith("text/event-stream")
            events = EventSource(stream).iter_sse()
            first_events.append(next(events))  # the priming event: an id, empty data
            assert first_events[0].data == ""
            assert EVENT_ID.match(first_events[0].id)

            # One GET stream per session at a time.
            rpc_error(http.get(mcp_url, headers=headers), 409, -32600)

            def drain():
                for _ in events:
                    pass
                ended.set()

            reader = threading.Thread(target=drain, daemon=True)
            reader.start()
            deleted = http.delete(mcp_url, headers={"Mcp-Session-Id": session,
                                                    "MCP-Protocol-Version": HANDSHAKE})
            assert deleted.status_code == 204 and deleted.content == b""
            assert ended.wait(5), "the GET stream did not end when its session was deleted"

    listing = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    rpc_error(post(http, mcp_url, listing, session, HANDSHAKE), 404, -32001)
    rpc_error(http.get(mcp_url, headers=headers), 404, -32001)
    rpc_error(http.delete(mcp_url, headers={"Mcp-Session-Id": session}), 404, -32001)
    assert http.delete(mcp_url).status_code == 400
    assert http.put(mcp_url).status_code == 405


def test_tools_call_streams_progress_then_the_result(http, mcp_url):
    session = open_session(http, mcp_url)
    n = 4
    response, events = stream_events(http, mcp_url, call("count_to", {"n": n, "delay_ms": 10},
                                                         request_id=41, token="tok"), session)
    assert response.headers["cache-control"] == "no-cache"
    prefix = check_ids(events)
    assert events[0].data == ""  # priming (2025-11-25)
    messages = [json.loads(event.data) for event in events[1:]]
    assert len(messages) == n + 1
    for step, message in enumerate(messages[:n], start=1):
        assert message == {"jsonrpc": "2.0", "method": "notifications/progress", "params": {
            "progressToken": "tok", "progress": step, "total": n,
            "message": f"counted {step} of {n}"}}
    assert messages[-1] == {"jsonrpc": "2.0", "id": 41, "result": {
        "content": [{"type": "text", "text": "Counted to 4."}], "isError": False,
        "structuredContent": {"count": 4}}}

    # Without a progress token: no notifications. Every stream has its own id prefix.
    _, quiet = stream_events(http, mcp_url, call("slow_sum", {"n": 3, "delay_ms": 0}, 42),
                             session)
    assert [e.data != "" for e in quiet] == [False, True]
    assert json.loads(quiet[1].data)["result"]["structuredContent"] == {"n": 3, "sum": 6}
    # Bad arguments: an isError result on the stream.
    _, bad = stream_events(http, mcp_url, call("count_to", {"n": -1}, 43, token=7), session)
    result = json.loads(bad[-1].data)["result"]
    assert result["isError"] is True and "'n' must be an integer" in result["content"][0]["text"]

    prefixes = [prefix, check_ids(quiet), check_ids(bad)]
    assert len(set(prefixes)) == 3
    ids = [e.id for e in events + quiet + bad]
    assert len(ids) == len(set(ids))

    # A 2025-06-18 session gets no priming event (its clients cannot parse empty data).
    old = open_session(http, mcp_url, "2025-06-18")
    _, events = stream_events(http, mcp_url, call("count_to", {"n": 2, "delay_ms": 0}, 1, 1),
                              old, "2025-06-18")
    check_ids(events)
    assert all(event.data for event in events) and len(events) == 3


def test_resuming_a_stream_with_last_event_id(http, mcp_url):
    session = open_session(http, mcp_url)
    get_headers = {"Accept": "text/event-stream", "Mcp-Session-Id": session,
                   "MCP-Protocol-Version": HANDSHAKE}

    # A finished stream: replayed after the given id, the same events with the same ids.
    _, events = stream_events(http, mcp_url, call("count_to", {"n": 3, "delay_ms": 0}, 5, "t"),
                              session)
    with http.stream("GET", mcp_url, headers={**get_headers, "Last-Event-ID": events[1].id}
                     ) as replay:
        assert replay.status_code == 200
        replayed = list(EventSource(replay).iter_sse())
    assert [(e.id, e.data) for e in replayed] == [(e.id, e.data) for e in events[2:]]

    # A stream cut off mid-call: the call stops with it, and the resumed stream ends with
    # an error response for the request instead of a result that will never come.
    message = call("count_to", {"n": 50, "delay_ms": 40}, request_id="cut", token="t")
    headers = {"Accept": ACCEPT, "Content-Type": "application/json",
               "Mcp-Session-Id": session, "MCP-Protocol-Version": HANDSHAKE}
    with httpx.Client(timeout=TIMEOUT) as doomed:
        with doomed.stream("POST", mcp_url, content=json.dumps(message), headers=headers) as cut:
            iterator = EventSource(cut).iter_sse()
            seen = [next(iterator) for _ in range(3)]  # priming, progress 1, progress 2
    with http.stream("GET", mcp_url, headers={**get_headers, "Last-Event-ID": seen[-1].id}
                     ) as resumed:
        rest = list(EventSource(resumed).iter_sse())
    prefix = check_ids(seen + rest)
    assert prefix == EVENT_ID.match(seen[0].id).group(1)
    last = json.loads(rest[-1].data)
    assert last["id"] == "cut" and last["error"]["code"] == -32603
    assert "interrupted" in last["error"]["message"]
    progress = [json.loads(e.data)["params"]["progress"] for e in seen[1:] + rest[:-1]]
    assert progress == list(range(1, len(progress) + 1)) and len(progress) < 50

    # Ids that name nothing resumable are 400.
    for bad in ("nonsense", "ffffffff-1", f"{prefix}-999"):
        rpc_error(http.get(mcp_url, headers={**get_headers, "Last-Event-ID": bad}), 400, -32600)


def test_notifications_cancelled_stops_a_call(http, mcp_url):
    session = open_session(http, mcp_url)
    headers = {"Accept": ACCEPT, "Content-Type": "application/json",
               "Mcp-Session-Id": session, "MCP-Protocol-Version": HANDSHAKE}
    message = call("count_to", {"n": 100, "delay_ms": 30}, request_id=99, token="c")
    started = time.monotonic()
    with httpx.Client(timeout=TIMEOUT) as streaming:
        with streaming.stream("POST", mcp_url, content=json.dumps(message),
                              headers=headers) as response:
            iterator = EventSource(response).iter_sse()
            events = [next(iterator), next(iterator)]
            cancel = post(http, mcp_url, {"jsonrpc": "2.0", "method": "notifications/cancelled",
                                          "params": {"requestId": 99, "reason": "test"}},
                          session, HANDSHAKE)
            assert cancel.status_code == 202
            events += list(iterator)  # the stream ends, with no response
    assert time.monotonic() - started < 2.5
    check_ids(events)
    messages = [json.loads(e.data) for e in events[1:]]
    assert messages and all(m.get("method") == "notifications/progress" for m in messages)


# -- 2026-07-28, raw -------------------------------------------------------------------------

def envelope(method: str, params=None, request_id=1, version=MODERN) -> dict:
    params = dict(params or {})
    params["_meta"] = {**params.get("_meta", {}),
                       "io.modelcontextprotocol/protocolVersion": version,
                       "io.modelcontextprotocol/clientCapabilities": {}}
    return {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}


def modern_headers(method: str, version=MODERN, name=None) -> dict:
    headers = {"MCP-Protocol-Version": version, "Mcp-Method": method}
    if name is not None:
        headers["Mcp-Name"] = name
    return headers


def test_protocol_2026_07_28_requests(http, mcp_url):
    response = post(http, mcp_url, envelope("server/discover"),
                    headers=modern_headers("server/discover"))
    assert response.status_code == 200 and "mcp-session-id" not in response.headers
    result = response.json()["result"]
    assert result["supportedVersions"] == [MODERN]
    assert result["resultType"] == "complete" and result["cacheScope"] == "public"
    assert result["capabilities"] == {"tools": {"listChanged": False}}

    listing = post(http, mcp_url, envelope("tools/list"), headers=modern_headers("tools/list"))
    assert [t["name"] for t in listing.json()["result"]["tools"]] == ["count_to", "slow_sum"]

    message = envelope("tools/call", {"name": "count_to", "arguments": {"n": 3, "delay_ms": 0},
                                      "_meta": {"progressToken": 5}}, request_id=3)
    headers = {"Accept": ACCEPT, "Content-Type": "application/json",
               **modern_headers("tools/call", name="count_to")}
    with http.stream("POST", mcp_url, content=json.dumps(message), headers=headers) as stream:
        assert stream.status_code == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        events = list(EventSource(stream).iter_sse())
    check_ids(events)  # no priming in this era: the first event is progress 1
    messages = [json.loads(e.data) for e in events]
    assert [m["params"]["progress"] for m in messages[:3]] == [1, 2, 3]
    assert messages[3]["id"] == 3 and messages[3]["result"]["resultType"] == "complete"
    assert messages[3]["result"]["structuredContent"] == {"count": 3}

    # The envelope, the routing headers and the version are checked, with HTTP statuses.
    bare = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    rpc_error(post(http, mcp_url, bare, headers=modern_headers("tools/list")), 400, -32602)
    rpc_error(post(http, mcp_url, envelope("tools/list"), headers=modern_headers("tools/call")),
              400, -32020)
    rpc_error(post(http, mcp_url, message, headers=modern_headers("tools/call", name="slow_sum")),
              400, -32020)
    future = "2099-01-01"
    body = rpc_error(post(http, mcp_url, envelope("tools/list", version=future),
                          headers=modern_headers("tools/list", version=future)), 400, -32022)
    assert body["error"]["data"] == {"supported": [MODERN], "requested": future}
    rpc_error(post(http, mcp_url, envelope("ping"), headers=modern_headers("ping")), 404, -32601)
    unknown_tool = envelope("tools/call", {"name": "nope", "arguments": {}})
    rpc_error(post(http, mcp_url, unknown_tool, headers=modern_headers("tools/call", name="nope")),
              400, -32602)
    rpc_error(post(http, mcp_url, None, raw="{oops", headers=modern_headers("tools/list")),
              400, -32700)
    notification = post(http, mcp_url, {"jsonrpc": "2.0", "method": "notifications/cancelled",
                                        "params": {"requestId": 1}},
                        headers=modern_headers("notifications/cancelled"))
    assert notification.status_code == 202

    for method in ("GET", "DELETE"):
        response = http.request(method, mcp_url, headers={"MCP-Protocol-Version": MODERN,
                                                          "Accept": "text/event-stream"})
        assert response.status_code == 405 and response.headers["allow"] == "POST"


# -- the simple form: GET /mcp/tools/execute -------------------------------------------------

def test_simple_form_exact_event_sequence_with_curl(curl, base):
    url = base + "/mcp/tools/execute?tool=count_to&n=3&delay_ms=0"
    done = subprocess.run([curl, "-sS", "-N", "-D", "-", "--max-time", "10", url],
                          capture_output=True, text=True, timeout=20)
    assert done.returncode == 0, done.stderr
    head, _, body = done.stdout.replace("\r\n", "\n").partition("\n\n")
    assert head.startswith("HTTP/1.1 200")
    assert "content-type: text/event-stream" in head.lower()
    blocks = [block for block in body.split("\n\n") if block.strip()]
    assert len(blocks) == 5, body
    parsed = []
    for block in blocks:
        fields = dict(line.split(": ", 1) for line in block.split("\n"))
        assert set(fields) == {"event", "id", "data"}, block
        parsed.append((fields["event"], fields["id"], json.loads(fields["data"])))
    assert [event for event, _, _ in parsed] == ["tool_progress"] * 3 + [
        "tool_result", "tool_complete"]
    prefix = parsed[0][1].split("-")[0]
    assert [event_id for _, event_id, _ in parsed] == [f"{prefix}-{i}" for i in range(1, 6)]
    for step in (1, 2, 3):
        assert parsed[step - 1][2] == {"tool": "count_to", "step": step, "total": 3,
                                       "percent": round(100 * step / 3, 1),
                                       "status": "running", "message": f"counted {step} of 3"}
    assert parsed[3][2] == {"tool": "count_to", "text": "Counted to 3.", "result": {"count": 3},
                            "is_error": False}
    complete = parsed[4][2]
    assert complete["tool"] == "count_to" and complete["status"] == "complete"
    assert complete["steps"] == 3 and isinstance(complete["elapsed_ms"], int)


def test_simple_form_with_httpx_sse(http, base):
    url = base + "/mcp/tools/execute"
    with connect_sse(http, "GET", url, params={"tool": "slow_sum", "n": 4, "delay_ms": 5}
                     ) as source:
        events = list(source.iter_sse())
    assert [e.event for e in events] == ["tool_progress"] * 4 + ["tool_result", "tool_complete"]
    assert json.loads(events[4].data)["result"] == {"n": 4, "sum": 10}
    assert len({e.id for e in events}) == 6

    for query, why in (({"n": 0}, "'n' must be an integer from 1 to 1000"),
                       ({"n": "abc"}, "'n' must be an integer"),
                       ({}, "'n' is required"),
                       ({"n": 2, "delay_ms": 99999}, "'delay_ms' must be"),
                       ({"n": 2, "x": 1}, "unknown argument"),
                       ({"tool": "nope", "n": 1}, "unknown tool")):
        response = http.get(url, params=query)
        assert response.status_code == 400, (query, response.text)
        assert why in response.json()["error"], (query, response.text)

    # A reconnecting EventSource (Last-Event-ID) gets 204: stop, nothing is rerun.
    response = http.get(url, params={"n": 3}, headers={"Last-Event-ID": events[2].id})
    assert response.status_code == 204


# -- the page, in headless Chromium ------------------------------------------------------------

def test_page_runs_a_tool_and_shows_progress_then_the_result(page, base):
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(base + "/")
    assert page.text_content("#run-status") == "idle"
    page.fill("#n", "4")
    page.fill("#delay", "300")
    page.click("#run")
    # Progress shows while it runs, before any result.
    page.wait_for_function("document.querySelectorAll('#events .event').length >= 1")
    assert page.text_content("#run-status").startswith(("running", "connected"))
    assert "Counted" not in page.text_content("#result")
    page.wait_for_function(
        "document.getElementById('run-status').textContent.startsWith('done')")
    kinds = page.eval_on_selector_all("#events .event .kind",
                                      "nodes => nodes.map(n => n.textContent.trim())")
    assert kinds == ["tool_progress"] * 4 + ["tool_result", "tool_complete"]
    assert page.text_content("#result").startswith("Counted to 4.")
    assert page.eval_on_selector("#progress", "p => [p.value, p.max]") == [4, 4]

    # A bad n: the server's reason is shown.
    page.fill("#n", "0")
    page.click("#run")
    page.wait_for_function(
        "document.getElementById('run-status').textContent.startsWith('failed')")
    assert "'n' must be an integer from 1 to 1000" in page.text_content("#run-status")

    # The JSON-RPC console: initialize, tools/list, DELETE; then tools/call over fetch.
    page.click("#list-tools")
    page.wait_for_function("document.querySelectorAll('#tools .tool').length === 2")
    page.wait_for_function("!document.getElementById('list-tools').disabled")
    log = page.text_content("#rpc-log")
    assert "POST initialize" in log and "Mcp-Session-Id" in log and "204 session ended" in log
    page.fill("#n", "3")
    page.fill("#delay", "10")
    page.click("#call-tool")
    page.wait_for_function(
        "document.getElementById('rpc-status').textContent.startsWith('tools/call')")
    assert page.text_content("#rpc-status") == "tools/call: Counted to 3."
    log = page.text_content("#rpc-log")
    assert "priming" in log and "progress 3/3 counted 3 of 3" in log
    assert errors == []
