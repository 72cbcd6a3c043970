"""examples/ai_chat.py end to end: the real CLI, httpx-sse, and the page in headless Chromium.

Token streams from the three sources (offline model, blocking client in worker threads,
asyncio client in a thread), coalescing, resume, failures, cancel (generation stops and
the source is closed), and proof by ordering that a blocked client does not stall the loop.
"""

from __future__ import annotations

import json
import time

import httpx
import pytest
from e2e_harness import ExampleServer
from httpx_sse import connect_sse

EXAMPLE = "examples/ai_chat.py"
SOURCES = ("offline", "thread", "asyncio")
TIMEOUT = httpx.Timeout(10.0)
DRAIN_SECONDS = 20.0

HAIKU_PROMPT = "Write a haiku"
HAIKU_TOKENS = ["Tokens", " drift", " like", " snow", ",", "\neach", " one", " a", " small",
                " event", " sent", ":", "\nthe", " answer", " arrives", "."]
HAIKU = "Tokens drift like snow,\neach one a small event sent:\nthe answer arrives."
SSE_PROMPT = "What is SSE?"
SSE_ANSWER = ("Server-Sent Events stream text from a server to a browser over one long HTTP "
              "response. Each event has a name, an id and data; the browser's EventSource "
              "reconnects by itself and sends the last id it saw, so the server can resume.")
SSE_TOKEN_COUNT = 49
UNICODE_PROMPT = "  ünïcode 🚀\ttabs and\nlines  "
UNICODE_ANSWER = ("You asked: “ünïcode 🚀 tabs and lines”. I am an offline stand-in for a "
                  "language model, so I can only echo that back, one token at a time. Try "
                  "“hello” or “write a haiku”.")


# -- fixtures and helpers --------------------------------------------------------------------

def stop_and_check(server: ExampleServer) -> None:
    code = server.stop(timeout=DRAIN_SECONDS)
    assert code == 0, f"exited with {code} after SIGTERM\n{server.log}"
    assert "graceful timeout" not in server.log, server.log
    errors = [line for line in server.log_lines if line.startswith("ERROR")]
    assert not errors, server.log  # e.g. "error while closing a stream handler"


@pytest.fixture(scope="module")
def server():
    """One server for the module; at the end it must drain and exit 0, no ERROR logged."""
    with ExampleServer(EXAMPLE, "--no-access-log") as running:
        yield running
        stop_and_check(running)


@pytest.fixture(scope="module")
def base(server) -> str:
    return server.base_url


def read_chat(base: str, headers=None, **params):
    """(chat id, [(event, id, data)], done-or-failed JSON) of one whole stream."""
    params.setdefault("delay_ms", 1)
    with httpx.Client(timeout=TIMEOUT) as client:
        with connect_sse(client, "GET", f"{base}/ai/chat", params=params,
                         headers=dict(headers or {})) as source:
            assert source.response.status_code == 200
            assert source.response.headers["content-type"].startswith("text/event-stream")
            chat_id = source.response.headers["x-chat-id"]
            events = [(e.event, e.id, e.data) for e in source.iter_sse()]
    assert events, "no events"
    assert not any(name in ("error", "open", "message") for name, _, _ in events), events
    last = events[-1]
    assert last[0] in ("done", "failed"), events
    assert all(name == "token" for name, _, _ in events[:-1]), events
    return chat_id, events[:-1], json.loads(last[2])


def text_of(tokens) -> str:
    return "".join(data for _, _, data in tokens)


def chat_info(base: str, chat_id: str) -> dict:
    response = httpx.get(f"{base}/ai/chats/{chat_id}", timeout=TIMEOUT)
    assert response.status_code == 200, response.text
    return response.json()


def wait_for(predicate, what: str, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


# -- the stream ------------------------------------------------------------------------------

@pytest.mark.parametrize("source", SOURCES)
def test_tokens_then_done_with_exact_text(base, source):
    chat_id, tokens, done = read_chat(base, prompt=HAIKU_PROMPT, source=source)
    assert [data for _, _, data in tokens] == HAIKU_TOKENS  # one event per token
    assert [event_id for _, event_id, _ in tokens] == [str(i) for i in range(1, 17)]
    assert text_of(tokens) == HAIKU
    assert done == {"chat_id": chat_id, "source": source, "tokens": 16, "events": 16,
                    "finish_reason": "stop", "resumed_after": 0}
    info = chat_info(base, chat_id)
    assert info["state"] == "done" and info["produced"] == info["sent"] == 16, info


def test_unicode_answer_and_spacing_survive(base):
    _, tokens, done = read_chat(base, prompt=UNICODE_PROMPT)
    assert text_of(tokens) == UNICODE_ANSWER
    assert done["tokens"] == len(tokens) == 48


def test_resume_after_last_event_id(base):
    _, tokens, done = read_chat(base, headers={"Last-Event-ID": "5"}, prompt=HAIKU_PROMPT)
    assert [event_id for _, event_id, _ in tokens] == [str(i) for i in range(6, 17)]
    assert text_of(tokens) == "".join(HAIKU_TOKENS[5:])
    assert done["resumed_after"] == 5 and done["tokens"] == 16 and done["events"] == 11
    _, tokens, done = read_chat(base, prompt=HAIKU_PROMPT, source="thread", last_event_id=14)
    assert text_of(tokens) == "".join(HAIKU_TOKENS[14:]) and done["tokens"] == 16


def test_max_tokens_cuts_with_finish_reason_length(base):
    _, tokens, done = read_chat(base, prompt=HAIKU_PROMPT, max_tokens=4)
    assert text_of(tokens) == "Tokens drift like snow"
    assert done["finish_reason"] == "length" and done["tokens"] == 4


@pytest.mark.parametrize("source", SOURCES)
def test_model_failure_is_a_failed_event(base, source):
    chat_id, tokens, failed = read_chat(base, prompt=HAIKU_PROMPT, source=source, fail_after=3)
    assert text_of(tokens) == "Tokens drift like"
    assert failed == {"error": "the model failed after 3 tokens (fail_after)", "tokens": 3}
    assert chat_info(base, chat_id)["state"] == "failed"


def test_bad_requests_are_plain_400s(base):
    for query in ("", "?prompt=%20", "?prompt=hi&source=gpu", "?prompt=hi&delay_ms=fast",
                  "?prompt=hi&coalesce_ms=-1", "?prompt=" + "x" * 2001):
        response = httpx.get(f"{base}/ai/chat{query}", timeout=TIMEOUT)
        assert response.status_code == 400, (query, response.text)
        assert "error" in response.json()
    assert httpx.get(f"{base}/ai/chats/nope", timeout=TIMEOUT).status_code == 404


# -- coalescing ------------------------------------------------------------------------------

@pytest.mark.parametrize("source", SOURCES)
def test_coalesce_ms_sends_fewer_events_same_text(base, source):
    """A window longer than the whole answer: the first token goes out at once (nothing
    was sent in the last N ms), every later one is held until the end."""
    _, tokens, done = read_chat(base, prompt=HAIKU_PROMPT, source=source, coalesce_ms=5000)
    assert [(event_id, data) for _, event_id, data in tokens] == [
        ("1", "Tokens"), ("16", "".join(HAIKU_TOKENS[1:]))]
    assert text_of(tokens) == HAIKU
    assert done["tokens"] == 16 and done["events"] == 2


def test_coalesce_ms_batches_a_paced_stream(base):
    _, tokens, done = read_chat(base, prompt=SSE_PROMPT, delay_ms=10, coalesce_ms=60)
    assert text_of(tokens) == SSE_ANSWER
    ids = [int(event_id) for _, event_id, _ in tokens]
    assert ids == sorted(set(ids)) and ids[-1] == SSE_TOKEN_COUNT == done["tokens"]
    assert 2 <= len(tokens) < SSE_TOKEN_COUNT / 2, ids


def test_coalesce_bytes_batches_by_size(base):
    _, plain, _ = read_chat(base, prompt=SSE_PROMPT)
    reference = [data for _, _, data in plain]
    assert len(reference) == SSE_TOKEN_COUNT
    _, tokens, done = read_chat(base, prompt=SSE_PROMPT, source="thread", coalesce_bytes=20)
    # Expected: tokens held until a batch has 20 bytes or more; the rest at the end.
    expected, held, count = [], "", 0
    for token in reference:
        held += token
        count += 1
        if len(held.encode()) >= 20:
            expected.append((str(count), held))
            held = ""
    if held:
        expected.append((str(count), held))
    assert [(event_id, data) for _, event_id, data in tokens] == expected
    assert text_of(tokens) == SSE_ANSWER and done["events"] == len(expected) < 15


# -- threads: the loop keeps serving; cancel stops generation ---------------------------------

@pytest.mark.parametrize("source", ["thread", "asyncio"])
def test_loop_serves_requests_while_the_client_blocks(base, source):
    """The fake client blocks in its own thread after 2 tokens until it is released by
    another HTTP request: the stream can only finish if the loop serves that request while
    the client is blocked (a stalled loop would time these requests out)."""
    with httpx.Client(timeout=TIMEOUT) as client:
        with connect_sse(client, "GET", f"{base}/ai/chat", params={
                "prompt": HAIKU_PROMPT, "source": source, "delay_ms": 1,
                "hold_after": 2}) as stream:
            chat_id = stream.response.headers["x-chat-id"]
            events = stream.iter_sse()
            first = [next(events).data for _ in range(2)]
            assert first == HAIKU_TOKENS[:2]
            # Served while the client is blocked inside next() (or its asyncio await):
            info = wait_for(lambda: (i := chat_info(base, chat_id))["blocked"] and i,
                            "the client to block")
            assert info["produced"] == 2 and info["state"] == "running", info
            page = httpx.get(f"{base}/", timeout=TIMEOUT)
            assert page.status_code == 200 and "<title>" in page.text
            released = httpx.post(f"{base}/ai/chats/{chat_id}/release", timeout=TIMEOUT)
            assert released.json()["blocked"] is True, released.text
            rest = [(e.event, e.data) for e in events]
    assert [data for _, data in rest[:-1]] == HAIKU_TOKENS[2:]
    assert rest[-1][0] == "done" and json.loads(rest[-1][1])["tokens"] == 16


@pytest.mark.parametrize("source", SOURCES)
def test_closing_the_stream_stops_generation(base, source):
    with httpx.Client(timeout=TIMEOUT) as client:
        with connect_sse(client, "GET", f"{base}/ai/chat", params={
                "prompt": SSE_PROMPT, "source": source, "delay_ms": 50}) as stream:
            chat_id = stream.response.headers["x-chat-id"]
            events = stream.iter_sse()
            assert [next(events).data for _ in range(3)] == ["Server", "-", "Sent"]
        # leaving the block closed the connection mid-answer
    info = wait_for(lambda: (i := chat_info(base, chat_id))["source_closed"] and i,
                    "the source to be closed")
    assert info["state"] == "cancelled" and info["stop_requested"], info
    produced = info["produced"]
    assert 3 <= produced <= info["sent"] + 1 < SSE_TOKEN_COUNT, info
    time.sleep(0.4)  # eight tokens' worth of pacing: nothing more may be produced
    after = chat_info(base, chat_id)
    assert after["produced"] == produced and after["blocked"] is False, after


def test_cancel_releases_a_held_blocking_client(base):
    """A client blocked inside next() when the stream closes is told to stop at once."""
    with httpx.Client(timeout=TIMEOUT) as client:
        with connect_sse(client, "GET", f"{base}/ai/chat", params={
                "prompt": SSE_PROMPT, "source": "thread", "delay_ms": 1,
                "hold_after": 1}) as stream:
            chat_id = stream.response.headers["x-chat-id"]
            events = stream.iter_sse()  # (kept: a dropped iterator closes the response)
            assert next(events).data == "Server"
            wait_for(lambda: chat_info(base, chat_id)["blocked"], "the client to block")
    info = wait_for(lambda: (i := chat_info(base, chat_id))["source_closed"] and i,
                    "the source to be closed")
    assert info["state"] == "cancelled" and info["produced"] == 1, info
    wait_for(lambda: not chat_info(base, chat_id)["blocked"], "the client to let go", 5)


@pytest.mark.parametrize("source", ["thread", "asyncio"])
def test_default_source_from_environment(source):
    with ExampleServer(EXAMPLE, "--no-access-log",
                       env={"AI_CHAT_SOURCE": source, "AI_CHAT_DELAY_MS": "1"}) as other:
        _, tokens, done = read_chat(other.base_url, prompt=HAIKU_PROMPT, delay_ms="")
        assert text_of(tokens) == HAIKU and done["source"] == source
        stats = httpx.get(f"{other.base_url}/ai/stats", timeout=TIMEOUT).json()
        assert stats["default_source"] == source and stats["default_delay_ms"] == 1
        stop_and_check(other)


def test_unknown_default_source_stops_start_up():
    with pytest.raises(RuntimeError, match="exited with 3") as failure:
        ExampleServer(EXAMPLE, env={"AI_CHAT_SOURCE": "gpu"})
    assert "AI_CHAT_SOURCE='gpu'" in str(failure.value)


# -- the page in headless Chromium -----------------------------------------------------------

WATCH_ANSWER = """() => {
  window.snapshots = [];
  new MutationObserver(() => {
    const last = [...document.querySelectorAll(".message.assistant .text")].pop();
    if (last && last.textContent !== window.snapshots.at(-1)) {
      window.snapshots.push(last.textContent);
    }
  }).observe(document.getElementById("transcript"),
             {childList: true, subtree: true, characterData: true});
}"""


def last_answer(page) -> dict:
    return page.evaluate("""() => {
      const m = [...document.querySelectorAll(".message.assistant")].pop();
      return {text: m.querySelector(".text").textContent,
              meta: m.querySelector(".meta").textContent,
              tokens: m.dataset.tokens, state: m.dataset.state || null};
    }""")


def test_page_streams_an_answer_token_by_token(base, page):
    page.goto(f"{base}/")
    assert page.title() == "conduit: AI chat, token by token"
    page.evaluate(WATCH_ANSWER)
    page.fill("#delay", "25")
    page.fill("#prompt", HAIKU_PROMPT)
    page.click("#send")
    page.wait_for_function(
        "() => document.getElementById('status').textContent.startsWith('done')")
    answer = last_answer(page)
    assert answer == {"text": HAIKU, "meta": "16 tokens in 16 events, offline",
                      "tokens": "16", "state": "done"}
    assert page.text_content("#status") == "done: 16 tokens in 16 events, offline"
    assert page.text_content(".message.user") == HAIKU_PROMPT
    # The transcript grew one token at a time: every snapshot is a longer prefix.
    snapshots = page.evaluate("() => window.snapshots")
    prefixes = {"".join(HAIKU_TOKENS[:n]) for n in range(0, 17)}
    assert all(s in prefixes for s in snapshots), snapshots
    assert snapshots == sorted(snapshots, key=len) and snapshots[-1] == HAIKU
    assert len(snapshots) >= 8, snapshots
    assert page.is_enabled("#send") and not page.is_enabled("#stop")


def test_page_stop_cancels_and_does_not_reconnect(base, page):
    chat_requests = []
    page.on("request", lambda r: chat_requests.append(r.url) if "/ai/chat?" in r.url else None)
    page.goto(f"{base}/")
    page.select_option("#source", "thread")
    page.fill("#delay", "80")
    page.fill("#prompt", SSE_PROMPT)
    page.press("#prompt", "Enter")
    page.wait_for_function(
        "() => Number(document.querySelector('.message.assistant').dataset.tokens) >= 3")
    page.click("#stop")
    assert page.text_content("#status") == "stopped"
    stopped = last_answer(page)
    assert stopped["state"] == "stopped" and stopped["meta"].startswith("stopped after ")
    assert SSE_ANSWER.startswith(stopped["text"]) and stopped["text"] != SSE_ANSWER
    # The server saw the stream close: its newest chat is cancelled and its client closed.
    stats = httpx.get(f"{base}/ai/stats", timeout=TIMEOUT).json()
    chat_id = stats["recent"][0]["chat_id"]
    info = wait_for(lambda: (i := chat_info(base, chat_id))["source_closed"] and i,
                    "the thread source to be closed")
    assert info["state"] == "cancelled" and info["source"] == "thread", info
    page.wait_for_timeout(600)  # several tokens' worth: nothing arrives, nothing reconnects
    assert last_answer(page) == stopped
    assert page.text_content("#status") == "stopped"
    assert len(chat_requests) == 1, chat_requests
    assert chat_info(base, chat_id)["produced"] == info["produced"]
    assert page.is_enabled("#send") and not page.is_enabled("#stop")
