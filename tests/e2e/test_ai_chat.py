"""examples/ai_chat.py end to end: the real CLI, curl, httpx-sse, the openai SDK, and the
page in headless Chromium.

The example with its defaults: the chat reads its tokens through the openai SDK's
AsyncOpenAI from the example's own POST /v1/chat/completions (the offline model), over a
real socket. Token streams, coalescing (with its timer), resume, failures, the model's API
as the SDK and curl see it, and cancel: a client that goes away closes the SDK's stream,
and the model sees its own stream cancelled. The 500-answer test and a fake upstream are in
test_ai_chat_concurrency.py.
"""

from __future__ import annotations

import json
import subprocess
import time

import httpx
import openai
import pytest
from e2e_harness import ExampleServer
from httpx_sse import connect_sse

EXAMPLE = "examples/ai_chat.py"
MODEL = "conduit-offline"
TIMEOUT = httpx.Timeout(10.0)
DRAIN_SECONDS = 20.0
# The server under test talks to its own /v1 and reads no provider settings from here.
CLEAN_ENV = {"OPENAI_BASE_URL": None, "OPENAI_API_KEY": None, "AI_CHAT_MODEL": None,
             "AI_CHAT_DELAY_MS": None}

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
    with ExampleServer(EXAMPLE, "--no-access-log", env=CLEAN_ENV) as running:
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


def get_json(base: str, path: str) -> dict:
    response = httpx.get(f"{base}{path}", timeout=TIMEOUT)
    assert response.status_code == 200, response.text
    return response.json()


def chat_info(base: str, chat_id: str) -> dict:
    return get_json(base, f"/ai/chats/{chat_id}")


def completion_info(base: str, completion_id: str) -> dict:
    return get_json(base, f"/ai/completions/{completion_id}")


def wait_for(predicate, what: str, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


# -- the stream ------------------------------------------------------------------------------

def test_tokens_then_done_with_exact_text(base):
    chat_id, tokens, done = read_chat(base, prompt=HAIKU_PROMPT)
    assert [data for _, _, data in tokens] == HAIKU_TOKENS  # one event per token
    assert [event_id for _, event_id, _ in tokens] == [str(i) for i in range(1, 17)]
    assert text_of(tokens) == HAIKU
    completion_id = done.pop("completion_id")
    assert done == {"chat_id": chat_id, "model": MODEL, "tokens": 16, "events": 16,
                    "finish_reason": "stop", "resumed_after": 0}
    info = chat_info(base, chat_id)
    assert info["state"] == "done" and info["received"] == info["sent"] == 16, info
    assert info["completion_id"] == completion_id and info["upstream_closed"], info
    # The other end of the SDK's stream: the example's own model, which made the tokens.
    model_side = completion_info(base, completion_id)
    assert model_side["state"] == "done" and model_side["produced"] == 16, model_side
    assert model_side["model"] == MODEL and model_side["stream"] is True, model_side


def test_curl_shows_the_frames(base, curl):
    result = subprocess.run(
        [curl, "-N", "-sS", f"{base}/ai/chat?prompt=write+a+haiku&delay_ms=1"],
        capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    frames = result.stdout.split("\n\n")
    assert frames[0] == "event: token\nid: 1\ndata: Tokens"
    assert frames[1] == "event: token\nid: 2\ndata:  drift"  # the leading space survives
    assert frames[5] == "event: token\nid: 6\ndata: \ndata: each"  # a newline: two lines
    assert frames[16].startswith('event: done\ndata: {"chat_id":')
    assert frames[17:] == [""]


def test_unicode_answer_and_spacing_survive(base):
    _, tokens, done = read_chat(base, prompt=UNICODE_PROMPT)
    assert text_of(tokens) == UNICODE_ANSWER
    assert done["tokens"] == len(tokens) == 48


def test_resume_after_last_event_id(base):
    _, tokens, done = read_chat(base, headers={"Last-Event-ID": "5"}, prompt=HAIKU_PROMPT)
    assert [event_id for _, event_id, _ in tokens] == [str(i) for i in range(6, 17)]
    assert text_of(tokens) == "".join(HAIKU_TOKENS[5:])
    assert done["resumed_after"] == 5 and done["tokens"] == 16 and done["events"] == 11
    _, tokens, done = read_chat(base, prompt=HAIKU_PROMPT, last_event_id=14)
    assert text_of(tokens) == "".join(HAIKU_TOKENS[14:]) and done["tokens"] == 16


def test_max_tokens_cuts_with_finish_reason_length(base):
    _, tokens, done = read_chat(base, prompt=HAIKU_PROMPT, max_tokens=4)
    assert text_of(tokens) == "Tokens drift like snow"
    assert done["finish_reason"] == "length" and done["tokens"] == 4


def test_model_failure_is_a_failed_event(base):
    chat_id, tokens, failed = read_chat(base, prompt=HAIKU_PROMPT, fail_after=3)
    assert text_of(tokens) == "Tokens drift like"
    assert failed == {"error": "the model failed after 3 tokens (fail_after)", "tokens": 3}
    info = chat_info(base, chat_id)
    assert info["state"] == "failed" and info["upstream_closed"], info
    assert completion_info(base, info["completion_id"])["state"] == "failed"


def test_bad_requests_are_plain_400s(base):
    for query in ("", "?prompt=%20", "?prompt=hi&delay_ms=fast", "?prompt=hi&max_tokens=0",
                  "?prompt=hi&coalesce_ms=-1", "?prompt=" + "x" * 2001):
        response = httpx.get(f"{base}/ai/chat{query}", timeout=TIMEOUT)
        assert response.status_code == 400, (query, response.text)
        assert "error" in response.json()
    assert httpx.get(f"{base}/ai/chats/nope", timeout=TIMEOUT).status_code == 404
    assert httpx.get(f"{base}/ai/completions/nope", timeout=TIMEOUT).status_code == 404


# -- coalescing ------------------------------------------------------------------------------

def test_coalesce_ms_sends_fewer_events_same_text(base):
    """A window longer than the whole answer: the first token goes out at once (nothing
    was sent in the last N ms), every later one is held until the end."""
    _, tokens, done = read_chat(base, prompt=HAIKU_PROMPT, coalesce_ms=5000)
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


def test_coalesce_ms_sends_held_tokens_when_the_window_is_up(base):
    """The model stalls (holds) after 3 tokens: the tokens held after the first still go
    out once the window is up, while the model is still holding, by the timer. (Without
    the timer they would wait for the release, which only comes after they arrived.)"""
    with httpx.Client(timeout=TIMEOUT) as client:
        with connect_sse(client, "GET", f"{base}/ai/chat", params={
                "prompt": HAIKU_PROMPT, "delay_ms": 1, "coalesce_ms": 200,
                "hold_after": 3}) as stream:
            chat_id = stream.response.headers["x-chat-id"]
            events = stream.iter_sse()
            before = [next(events)]
            while before[-1].id != "3":
                before.append(next(events))
            assert before[0].data == "Tokens"  # the first token is never held
            assert "".join(e.data for e in before) == "Tokens drift like"
            completion_id = chat_info(base, chat_id)["completion_id"]
            assert completion_info(base, completion_id)["held"] is True  # still holding
            httpx.post(f"{base}/ai/completions/{completion_id}/release", timeout=TIMEOUT)
            rest = [(e.event, e.data) for e in events]
    assert "".join(data for name, data in rest if name == "token") == "".join(HAIKU_TOKENS[3:])
    assert rest[-1][0] == "done"


def test_coalesce_bytes_batches_by_size(base):
    _, plain, _ = read_chat(base, prompt=SSE_PROMPT)
    reference = [data for _, _, data in plain]
    assert len(reference) == SSE_TOKEN_COUNT
    _, tokens, done = read_chat(base, prompt=SSE_PROMPT, coalesce_bytes=20)
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


# -- the model's API, as the openai SDK and curl see it --------------------------------------

def test_the_sdk_streams_from_v1_chat_completions(base):
    with openai.OpenAI(base_url=f"{base}/v1", api_key="any", max_retries=0) as client:
        chunks = list(client.chat.completions.create(
            model="whatever", messages=[{"role": "user", "content": HAIKU_PROMPT}],
            stream=True, stream_options={"include_usage": True}, extra_query={"delay_ms": 0}))
        assert chunks[0].choices[0].delta.role == "assistant"
        assert {chunk.id for chunk in chunks} == {chunks[0].id}
        assert {chunk.object for chunk in chunks} == {"chat.completion.chunk"}
        assert {chunk.model for chunk in chunks} == {"whatever"}
        contents = [c.choices[0].delta.content for c in chunks[1:-2]]
        assert contents == HAIKU_TOKENS
        assert chunks[-2].choices[0].finish_reason == "stop"
        assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 16

        whole = client.chat.completions.create(
            model=MODEL, messages=[{"role": "system", "content": "be brief"},
                                   {"role": "user", "content": [
                                       {"type": "text", "text": "Write a "},
                                       {"type": "text", "text": "haiku"}]}],
            max_tokens=4, extra_query={"delay_ms": 0})
        assert whole.object == "chat.completion"
        assert whole.choices[0].message.content == "Tokens drift like snow"
        assert whole.choices[0].finish_reason == "length"
        assert whole.usage.completion_tokens == 4

        with pytest.raises(openai.BadRequestError, match="messages has no user message"):
            client.chat.completions.create(
                model=MODEL, messages=[{"role": "system", "content": "hi"}], stream=True)
        with pytest.raises(openai.APIError, match=r"failed after 2 tokens \(fail_after\)"):
            for _ in client.chat.completions.create(
                    model=MODEL, messages=[{"role": "user", "content": "hello"}],
                    stream=True, extra_query={"delay_ms": 0, "fail_after": 2}):
                pass
        assert [m.id for m in client.models.list()] == [MODEL]


def test_curl_shows_the_completion_chunks_and_done(base, curl):
    body = json.dumps({"model": MODEL, "stream": True,
                       "messages": [{"role": "user", "content": "hello"}]})
    result = subprocess.run(
        [curl, "-N", "-sS", "-H", "Content-Type: application/json", "-d", body,
         f"{base}/v1/chat/completions?delay_ms=0&max_tokens=3"],
        capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    frames = result.stdout.split("\n\n")
    assert frames[-2:] == ["data: [DONE]", ""]
    assert all(frame.startswith("data: {") for frame in frames[:-2]), frames
    chunks = [json.loads(frame[len("data: "):]) for frame in frames[:-2]]
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks).startswith(
        "Hello! I'm a tiny offline model")
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


# -- the loop keeps serving; cancel closes the upstream ---------------------------------------

def test_loop_serves_requests_while_the_model_holds(base):
    """The model holds after 2 tokens (an awaited asyncio.Event) until another HTTP request
    releases it: that request, and the page, are served meanwhile."""
    with httpx.Client(timeout=TIMEOUT) as client:
        with connect_sse(client, "GET", f"{base}/ai/chat", params={
                "prompt": HAIKU_PROMPT, "delay_ms": 1, "hold_after": 2}) as stream:
            chat_id = stream.response.headers["x-chat-id"]
            events = stream.iter_sse()
            assert [next(events).data for _ in range(2)] == HAIKU_TOKENS[:2]
            completion_id = chat_info(base, chat_id)["completion_id"]
            info = wait_for(lambda: (i := completion_info(base, completion_id))["held"] and i,
                            "the model to hold")
            assert info["produced"] == 2 and info["state"] == "running", info
            page = httpx.get(f"{base}/", timeout=TIMEOUT)
            assert page.status_code == 200 and "<title>" in page.text
            released = httpx.post(f"{base}/ai/completions/{completion_id}/release",
                                  timeout=TIMEOUT)
            assert released.json()["held"] is True, released.text
            rest = [(e.event, e.data) for e in events]
    assert [data for _, data in rest[:-1]] == HAIKU_TOKENS[2:]
    assert rest[-1][0] == "done" and json.loads(rest[-1][1])["tokens"] == 16


@pytest.mark.parametrize("coalesce_ms", [0, 30])
def test_closing_the_stream_closes_the_model_stream(base, coalesce_ms):
    """With coalescing the answer waits in asyncio.wait on a read task, without it in the
    SDK's read itself: either way the client's going cancels it and closes the upstream."""
    with httpx.Client(timeout=TIMEOUT) as client:
        with connect_sse(client, "GET", f"{base}/ai/chat", params={
                "prompt": SSE_PROMPT, "delay_ms": 50, "coalesce_ms": coalesce_ms}) as stream:
            chat_id = stream.response.headers["x-chat-id"]
            events = stream.iter_sse()
            assert next(events).data == "Server"
        # leaving the block closed the connection mid-answer
    info = wait_for(lambda: (i := chat_info(base, chat_id))["upstream_closed"] and i,
                    "the SDK stream to be closed")
    assert info["state"] == "cancelled", info
    # The model saw its client go: its stream's task was cancelled, so it makes no more.
    model_side = wait_for(
        lambda: (c := completion_info(base, info["completion_id"]))["state"] != "running" and c,
        "the model to see its stream closed")
    assert model_side["state"] == "cancelled", model_side
    assert 1 <= info["received"] <= model_side["produced"] <= info["received"] + 1
    assert model_side["produced"] < SSE_TOKEN_COUNT, model_side


def test_closing_the_stream_while_the_model_holds(base):
    with httpx.Client(timeout=TIMEOUT) as client:
        with connect_sse(client, "GET", f"{base}/ai/chat", params={
                "prompt": SSE_PROMPT, "delay_ms": 1, "hold_after": 1}) as stream:
            chat_id = stream.response.headers["x-chat-id"]
            events = stream.iter_sse()  # (kept: a dropped iterator closes the response)
            assert next(events).data == "Server"
            completion_id = chat_info(base, chat_id)["completion_id"]
            wait_for(lambda: completion_info(base, completion_id)["held"], "the model to hold")
    model_side = wait_for(
        lambda: (c := completion_info(base, completion_id))["state"] != "running" and c,
        "the held model to see its stream closed")
    assert model_side == {"completion_id": completion_id, "model": MODEL, "stream": True,
                          "state": "cancelled", "produced": 1, "held": False}
    assert chat_info(base, chat_id)["state"] == "cancelled"


def test_settings_from_the_environment():
    env = {**CLEAN_ENV, "AI_CHAT_MODEL": "tiny-model", "AI_CHAT_DELAY_MS": "1"}
    with ExampleServer(EXAMPLE, "--no-access-log", env=env) as other:
        _, tokens, done = read_chat(other.base_url, prompt=HAIKU_PROMPT, delay_ms="")
        assert text_of(tokens) == HAIKU and done["model"] == "tiny-model"
        stats = get_json(other.base_url, "/ai/stats")
        assert stats["model"] == "tiny-model" and stats["default_delay_ms"] == 1
        # Not set: the chat talks to this server's own /v1, at the port it is bound to.
        assert stats["base_url"] == f"{other.base_url}/v1"
        assert stats["completions"]["done"] == 1 and stats["chats"]["done"] == 1
        stop_and_check(other)


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
    page.wait_for_function("() => document.getElementById('upstream').textContent"
                           ".startsWith('model ')")
    assert page.text_content("#upstream") == f"model {MODEL} at {base}/v1"
    page.evaluate(WATCH_ANSWER)
    page.fill("#delay", "25")
    page.fill("#prompt", HAIKU_PROMPT)
    page.click("#send")
    page.wait_for_function(
        "() => document.getElementById('status').textContent.startsWith('done')")
    answer = last_answer(page)
    assert answer == {"text": HAIKU, "meta": f"16 tokens in 16 events, {MODEL}",
                      "tokens": "16", "state": "done"}
    assert page.text_content("#status") == f"done: 16 tokens in 16 events, {MODEL}"
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
    # The server saw the stream close: its newest chat is cancelled, its SDK stream closed,
    # and the model's stream on the other end of it cancelled.
    chat_id = get_json(base, "/ai/stats")["recent"][0]["chat_id"]
    info = wait_for(lambda: (i := chat_info(base, chat_id))["upstream_closed"] and i,
                    "the SDK stream to be closed")
    assert info["state"] == "cancelled", info
    model_side = wait_for(
        lambda: (c := completion_info(base, info["completion_id"]))["state"] != "running" and c,
        "the model to see its stream closed")
    assert model_side["state"] == "cancelled", model_side
    assert page.is_enabled("#send") and not page.is_enabled("#stop")
    # A closed EventSource never reconnects: the next answer is the page's second request,
    # and the stopped answer stayed as it was.
    page.fill("#delay", "1")
    page.fill("#prompt", HAIKU_PROMPT)
    page.press("#prompt", "Enter")
    page.wait_for_function(
        "() => document.getElementById('status').textContent.startsWith('done')")
    assert len(chat_requests) == 2, chat_requests
    answers = page.evaluate("""() => [...document.querySelectorAll('.message.assistant')]
        .map((m) => [m.querySelector('.text').textContent, m.dataset.state])""")
    assert answers == [[stopped["text"], "stopped"], [HAIKU, "done"]]
    assert chat_info(base, chat_id)["received"] == info["received"]
