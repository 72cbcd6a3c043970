"""examples/fastapi_documents.py end to end: the seed's FastAPI Dizzy backend with its
/events served by a conduit channel, through ``python -m conduit run``: POST /command to
the FastAPI route publishes to the channel, subscribers (httpx-sse, curl) get it, history
and Last-Event-ID resume, the reset event after a restart, FastAPI's own routes (/docs,
validation errors) still answered, and the seed's page in headless Chromium."""

from __future__ import annotations

import json
import shutil
import subprocess

import httpx
import pytest
from e2e_harness import ExampleServer, wait_until_bindable
from httpx_sse import connect_sse

EXAMPLE = "examples/fastapi_documents.py"
TIMEOUT = httpx.Timeout(10.0)
FAST = {"FASTAPI_DOCUMENTS_DELAY_MS": "0"}

pytest.importorskip("fastapi")


def save(base: str, doc_id: str = "doc1") -> str:
    response = httpx.post(f"{base}/command", timeout=TIMEOUT,
                          json={"type": "SaveDocument", "data": {"id": doc_id, "content": "x"}})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["status"] == "ok"
    return answer["event_id"]


def stop(server: ExampleServer) -> None:
    code = server.stop(timeout=20)
    assert code == 0, f"exited with {code} after SIGTERM\n{server.log}"


@pytest.fixture(scope="module")
def base_url():
    server = ExampleServer(EXAMPLE, "--no-access-log", env=FAST)
    try:
        yield server.base_url
    finally:
        stop(server)


def test_commands_publish_to_the_channel(base_url):
    with httpx.Client(timeout=TIMEOUT) as client:
        with connect_sse(client, "GET", f"{base_url}/events") as source:
            events = source.iter_sse()
            first = save(base_url, "doc1")
            second = save(base_url, "doc2")
            got = [next(events), next(events)]
    assert [(e.id, json.loads(e.data)) for e in got] == [
        (first, {"type": "DocumentSaved", "data": {"id": "doc1"}}),
        (second, {"type": "DocumentSaved", "data": {"id": "doc2"}}),
    ]


def test_last_event_id_resumes_from_history(base_url):
    first = save(base_url, "a")
    second = save(base_url, "b")
    third = save(base_url, "c")
    with httpx.Client(timeout=TIMEOUT) as client:
        with connect_sse(client, "GET", f"{base_url}/events",
                         headers={"Last-Event-ID": first}) as source:
            events = source.iter_sse()
            got = [next(events).id, next(events).id]
    assert got == [second, third]


def test_curl_sees_the_frames(base_url):
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    event_id = save(base_url, "curl")
    prior = int(event_id.rpartition("-")[2]) - 1
    epoch = event_id.rpartition("-")[0]
    out = subprocess.run(["curl", "-sN", "--max-time", "2", "-H",
                          f"Last-Event-ID: {epoch}-{prior}", f"{base_url}/events"],
                         capture_output=True, text=True)
    assert f"id: {event_id}\n" in out.stdout
    assert 'data: {"type":"DocumentSaved","data":{"id":"curl"}}\n' in out.stdout


def test_fastapi_routes_and_errors_still_answer(base_url):
    with httpx.Client(base_url=base_url, timeout=TIMEOUT) as client:
        unknown = client.post("/command", json={"type": "Nope", "data": {}})
        assert unknown.status_code == 400 and unknown.json() == {"error": "unknown command"}
        invalid = client.post("/command", json={"type": "SaveDocument"})
        assert invalid.status_code == 422 and invalid.json()["detail"][0]["loc"] == \
            ["body", "data"]
        assert "/command" in client.get("/openapi.json").json()["paths"]
        assert client.get("/docs").status_code == 200
        assert client.get("/nowhere").status_code == 404  # FastAPI's 404 for the rest


def test_the_seed_page_in_chromium_and_a_reset_after_a_restart(browser):
    server = ExampleServer(EXAMPLE, "--no-access-log", env=FAST)
    context = None
    try:
        context = browser.new_context()
        page = context.new_page()
        page.set_default_timeout(15_000)
        page.goto(f"{server.base_url}/")
        page.wait_for_function("() => document.getElementById('connection').textContent"
                               " === 'live'")
        page.fill("#doc", "hello from the browser")
        page.click("#save")
        page.wait_for_function("() => document.getElementById('status').textContent"
                               ".includes('Saved document doc1')")
        assert page.locator("#log li").count() == 1
        port = server.base_url.rsplit(":", 1)[1]
        stop(server)
        # Same port, new process: an in-memory channel has a new epoch, so the page's
        # cursor cannot be honoured: it gets the reset event, then live events again.
        wait_until_bindable(int(port))
        server = ExampleServer(EXAMPLE, "--no-access-log", env=FAST, port=int(port))
        page.wait_for_function("() => document.querySelector('#log li.reset') !== null")
        page.wait_for_function("() => document.getElementById('connection').textContent"
                               " === 'live'")
        save(server.base_url, "after-restart")
        page.wait_for_function("() => document.getElementById('status').textContent"
                               ".includes('after-restart')")
    finally:
        if context is not None:
            context.close()
        stop(server)
