"""examples/ai_chat.py against a fake OpenAI-compatible upstream: 500 answers at once.

Two real CLI processes: the fake model (tests/e2e/fake_openai_upstream.py) and ai_chat with
OPENAI_BASE_URL pointing at it, so every answer goes through the openai SDK's AsyncOpenAI
over a real socket. The fake sends every answer's first token at once, then holds them all
on one asyncio.Event until the test POSTs /release. The test opens 500 chat streams and
waits until each has its first token: that can only happen if ai_chat has all 500 SDK
streams open at once (a pool of N threads would hand out N first tokens, then hang until
the wait's generous timeout fails the test). No timing assertion: every wait is on a
condition, with a timeout that only matters when something is broken.
"""

from __future__ import annotations

import asyncio
import json
import resource
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from e2e_harness import ExampleServer
from fake_openai_upstream import answer_tokens
from httpx_sse import aconnect_sse, connect_sse

EXAMPLE = "examples/ai_chat.py"
FAKE = "tests/e2e/fake_openai_upstream.py"
ANSWERS = 500
API_KEY = "test-key-for-the-fake"
MODEL = "fake-model"
WAIT_SECONDS = 120.0  # for 500 streams on a 2-core machine shared with other tests
# Per answer: the test's client socket; ai_chat's accepted socket and its SDK socket; the
# fake's accepted socket. Plus headroom for the interpreters, pipes and Chromium's tests.
FDS_NEEDED = 2 * ANSWERS + 1000


@pytest.fixture(scope="module", autouse=True)
def enough_file_descriptors():
    """Raise the soft RLIMIT_NOFILE if needed; the servers started after it inherit it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < FDS_NEEDED:
        if hard != resource.RLIM_INFINITY and hard < FDS_NEEDED:
            pytest.skip(f"RLIMIT_NOFILE hard limit {hard} < {FDS_NEEDED} (ulimit -Hn)")
        resource.setrlimit(resource.RLIMIT_NOFILE, (FDS_NEEDED, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def stop_and_check(server: ExampleServer) -> None:
    code = server.stop(timeout=20.0)
    assert code == 0, f"{server.example} exited with {code} after SIGTERM\n{server.log}"
    assert "graceful timeout" not in server.log, server.log
    errors = [line for line in server.log_lines if line.startswith("ERROR")]
    assert not errors, server.log


@pytest.fixture(params=["asyncio", "uvloop"])
def servers(request):
    """(fake upstream, ai_chat pointed at it), both through ``python -m conduit run``;
    ai_chat on each asyncio loop (``--loop``)."""
    if request.param == "uvloop":
        pytest.importorskip("uvloop")
    with ExampleServer(FAKE, "--no-access-log") as fake:
        env = {"OPENAI_BASE_URL": f"{fake.base_url}/v1", "OPENAI_API_KEY": API_KEY,
               "AI_CHAT_MODEL": MODEL}
        with ExampleServer(EXAMPLE, "--no-access-log", "--loop", request.param,
                           env=env) as chat:
            yield fake, chat
            stop_and_check(chat)
        stop_and_check(fake)


def fake_stats(fake: ExampleServer) -> dict:
    response = httpx.get(f"{fake.base_url}/stats", timeout=10.0)
    assert response.status_code == 200, response.text
    return response.json()


def wait_for(predicate, what: str, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


async def five_hundred_answers(chat_url: str, fake_url: str) -> tuple[dict, list]:
    """Open ANSWERS chat streams; once every one has its first token, read the fake's
    stats (still holding), release it, and read every stream to its end."""
    firsts = 0
    all_have_first = asyncio.Event()
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=0)
    timeout = httpx.Timeout(WAIT_SECONDS)
    async with httpx.AsyncClient(limits=limits, timeout=timeout) as client:

        async def one(number: int) -> tuple[str, list]:
            nonlocal firsts
            prompt = f"question {number}"
            async with aconnect_sse(client, "GET", f"{chat_url}/ai/chat",
                                    params={"prompt": prompt}) as source:
                assert source.response.status_code == 200
                events = source.aiter_sse()
                first = await anext(events)
                assert (first.event, first.id) == ("token", "1"), first
                firsts += 1  # one thread: the asyncio loop of this test
                if firsts == ANSWERS:
                    all_have_first.set()
                rest = [(e.event, e.id, e.data) async for e in events]
            return prompt, [(first.event, first.id, first.data), *rest]

        tasks = [asyncio.create_task(one(n)) for n in range(ANSWERS)]
        waiter = asyncio.create_task(all_have_first.wait())
        try:
            # If a stream fails before its first token, stop waiting and report it.
            done, _ = await asyncio.wait([waiter, *tasks], timeout=WAIT_SECONDS,
                                         return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task is not waiter:
                    task.result()  # raises what went wrong
                    raise AssertionError("a stream ended before every answer had a token")
            assert waiter in done, f"only {firsts} of {ANSWERS} answers had their first token"
            held = (await client.get(f"{fake_url}/stats")).json()
            released = await client.post(f"{fake_url}/release")
            assert released.status_code == 200, released.text
            results = await asyncio.wait_for(asyncio.gather(*tasks), WAIT_SECONDS)
        finally:  # after a failure: close the other streams before the client goes
            for task in (waiter, *tasks):
                task.cancel()
            await asyncio.gather(waiter, *tasks, return_exceptions=True)
    return held, results


def test_500_answers_all_have_their_first_token_before_any_is_released(servers):
    fake, chat = servers
    # In a thread of its own: Playwright's sync API (the browser tests of this session)
    # leaves an asyncio loop running in the main thread, where asyncio.run() refuses.
    with ThreadPoolExecutor(1, thread_name_prefix="500-answers") as pool:
        held, results = pool.submit(
            asyncio.run, five_hundred_answers(chat.base_url, fake.base_url)).result()

    # Every client had its first token while the fake held all of them.
    assert held["released"] is False, held
    assert held["started"] == held["open"] == held["first_tokens_sent"] == ANSWERS, held
    assert held["peak_open"] == ANSWERS and held["completed"] == 0, held
    assert held["models"] == [MODEL], held  # ai_chat asked for $AI_CHAT_MODEL
    assert held["authorization"] == [f"Bearer {API_KEY}"], held  # with $OPENAI_API_KEY

    # Then each answer finished, with its own text, ids counting tokens, and done.
    assert len(results) == ANSWERS
    for prompt, events in results:
        tokens = answer_tokens(prompt)
        assert [name for name, _, _ in events] == ["token"] * len(tokens) + ["done"], events
        assert [data for _, _, data in events[:-1]] == tokens
        assert [event_id for _, event_id, _ in events[:-1]] == [
            str(i) for i in range(1, len(tokens) + 1)]
        done = json.loads(events[-1][2])
        assert done["tokens"] == len(tokens) and done["finish_reason"] == "stop", done
        assert done["model"] == MODEL and done["completion_id"].startswith("chatcmpl-fake-")

    after = wait_for(lambda: (s := fake_stats(fake))["open"] == 0 and s, "streams to end")
    assert after["completed"] == ANSWERS and after["cancelled"] == 0, after
    stats = httpx.get(f"{chat.base_url}/ai/stats", timeout=10.0).json()
    assert stats["chats"]["done"] == min(ANSWERS, 200) and stats["chats"]["running"] == 0
    assert stats["base_url"] == f"{fake.base_url}/v1" and stats["model"] == MODEL


def test_a_client_that_goes_away_closes_the_upstream_stream(servers):
    """The fake holds the answer after its first token; the client leaves; ai_chat must
    close its SDK stream, which the fake sees as its own client going (its stream's task
    cancelled) and as its connection closing."""
    fake, chat = servers
    with httpx.Client(timeout=10.0) as client:
        with connect_sse(client, "GET", f"{chat.base_url}/ai/chat",
                         params={"prompt": "then I leave"}) as source:
            chat_id = source.response.headers["x-chat-id"]
            events = source.iter_sse()  # kept: a dropped iterator closes the response
            first = next(events)
            assert first.data == "answer to then I leave:"
            held = fake_stats(fake)
            assert held["open"] == 1 and held["released"] is False, held
            # The fake's connections now: the SDK's, and the /stats request's own.
            assert held["connections"] == 2, held
    after = wait_for(lambda: (s := fake_stats(fake))["cancelled"] == 1 and s,
                     "the fake to see its stream closed")
    assert after["open"] == 0 and after["completed"] == 0, after
    # Only the /stats request's own connection is left: the SDK's was closed, not kept.
    wait_for(lambda: fake_stats(fake)["connections"] == 1, "the SDK's connection to close")
    info = httpx.get(f"{chat.base_url}/ai/chats/{chat_id}", timeout=10.0).json()
    assert info["state"] == "cancelled" and info["upstream_closed"] is True, info
    assert info["received"] == info["sent"] == 1, info


def test_an_unreachable_upstream_is_a_failed_event():
    """Nothing listens at OPENAI_BASE_URL: the SDK gives up (after its retries) and the
    client gets a ``failed`` event, not a hung or broken stream."""
    with ExampleServer(FAKE, "--no-access-log") as placeholder:
        port = placeholder.port
        stop_and_check(placeholder)  # now nothing listens on that port
    env = {"OPENAI_BASE_URL": f"http://127.0.0.1:{port}/v1", "OPENAI_API_KEY": API_KEY}
    with ExampleServer(EXAMPLE, "--no-access-log", env=env) as chat:
        with httpx.Client(timeout=60.0) as client:
            with connect_sse(client, "GET", f"{chat.base_url}/ai/chat",
                             params={"prompt": "anyone there?"}) as source:
                events = [(e.event, e.data) for e in source.iter_sse()]
        assert [name for name, _ in events] == ["failed"], events
        assert json.loads(events[0][1]) == {"error": "Connection error.", "tokens": 0}
        stop_and_check(chat)
