"""A fake OpenAI-compatible model for tests/e2e/test_ai_chat_concurrency.py, served by
``python -m conduit run tests/e2e/fake_openai_upstream.py --port 0``.

``POST /v1/chat/completions`` (stream=True) sends, for every answer at once, the role chunk
and the first token, then awaits one ``asyncio.Event`` shared by all answers; only
``POST /release`` sets it, and then every answer sends the rest and ``[DONE]``. So while
the test has not released it, no answer can have more than its first token, and an answer
that has its first token proves its stream was open at the same time as the others.

``GET /stats`` counts the streams (started, open, the most open at once, first tokens
sent, completed, cancelled by their client going away), shows the models and
Authorization headers seen, whether it was released, and the server's open connections
(the /stats request's own included).
"""

from __future__ import annotations

import asyncio
import time

from conduit import App, HTTPError, StreamResponse

app = App()
released = asyncio.Event()  # bound to the server's loop at its first wait
REST = [" is", " held", " until", " the", " test", " lets", " go", "."]
counts = {"started": 0, "open": 0, "peak_open": 0, "first_tokens_sent": 0,
          "completed": 0, "cancelled": 0}
seen = {"models": set(), "authorization": set()}


def answer_tokens(prompt: str) -> list[str]:
    """What the fake answers to ``prompt`` (the test computes the same)."""
    return [f"answer to {prompt}:", *REST]


@app.post("/v1/chat/completions")
def completions(request):
    body = request.json()
    if body.get("stream") is not True:
        raise HTTPError(400, "this fake only streams")
    seen["models"].add(body["model"])
    seen["authorization"].add(request.headers.get("authorization", ""))
    prompt = body["messages"][-1]["content"]
    number = counts["started"] = counts["started"] + 1
    return StreamResponse(answer(f"chatcmpl-fake-{number}", prompt))


async def answer(completion_id: str, prompt: str):
    created = int(time.time())

    def chunk(delta: dict, finish=None) -> dict:
        return {"id": completion_id, "object": "chat.completion.chunk", "created": created,
                "model": "fake", "choices": [{"index": 0, "delta": delta,
                                              "finish_reason": finish}]}

    first, *rest = answer_tokens(prompt)
    counts["open"] += 1
    counts["peak_open"] = max(counts["peak_open"], counts["open"])
    finished = False
    try:
        yield chunk({"role": "assistant", "content": ""})
        yield chunk({"content": first})
        counts["first_tokens_sent"] += 1
        await released.wait()
        for token in rest:
            yield chunk({"content": token})
        yield chunk({}, "stop")
        yield "[DONE]"
        finished = True
        counts["completed"] += 1
    finally:
        counts["open"] -= 1
        if not finished:  # the client went away: conduit cancelled this task
            counts["cancelled"] += 1


@app.post("/release")
def release(request):
    released.set()
    return {"released": True}


@app.get("/stats")
def stats(request):
    return {**counts, "released": released.is_set(), "models": sorted(seen["models"]),
            "authorization": sorted(seen["authorization"]),
            "connections": app.stats()["connections"]}
