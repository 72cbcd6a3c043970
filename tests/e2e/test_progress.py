"""examples/progress.py end to end: the real CLI, its streams read with httpx-sse (order,
JSON shapes, Last-Event-ID resume, 204 after the end), and the page in headless Chromium
(the bar fills to 100 % with a final status; a reload mid-job resumes the job)."""

from __future__ import annotations

import json

import httpx
import pytest
from e2e_harness import ExampleServer
from httpx_sse import connect_sse

TIMEOUT = httpx.Timeout(10.0)
JOB_STEPS = list(range(0, 101, 5))
DOWNLOAD_STEPS = list(range(0, 101, 10))


@pytest.fixture(scope="module")
def base_url():
    """One server for the module (every test uses its own jobs); drained on teardown."""
    server = ExampleServer("examples/progress.py", "--no-access-log")
    try:
        yield server.base_url
    finally:
        code = server.stop(timeout=20)
    assert code == 0, f"exited with {code} after SIGTERM\n{server.log}"
    assert "graceful timeout" not in server.log, server.log


def read_stream(client, url, headers=None) -> list[tuple[str, str, dict]]:
    """Every event of a finite stream, as (event, id, data)."""
    with connect_sse(client, "GET", url, headers=headers or {}) as source:
        assert source.response.status_code == 200
        assert source.response.headers["content-type"].startswith("text/event-stream")
        return [(sse.event, sse.id, json.loads(sse.data)) for sse in source.iter_sse()]


def check_progress_then_final(events, steps) -> dict:
    """Progress events with exactly ``steps`` (strictly increasing, to 100), then one
    ``complete`` event, last; returns its data."""
    *progress, final = events
    assert [e for e, _, _ in progress] == ["progress"] * len(progress), events
    values = [data["progress"] for _, _, data in progress]
    assert values == steps, values
    assert [i for _, i, _ in progress] == [str(v) for v in values]
    for _, _, data in progress:
        assert set(data) == {"progress", "status"}, data
        assert data["status"] in ("starting", "downloading", "verifying"), data
    if steps[0] == 0:
        assert progress[0][2]["status"] == "starting", progress[0]
    assert progress[-1][2]["status"] == "verifying", progress[-1]
    event, event_id, data = final
    assert (event, event_id) == ("complete", "done"), final
    assert data["progress"] == 100 and data["status"] == "complete"
    assert isinstance(data["result"], dict) and data["result"]["bytes"] > 0
    return data


def start_job(base_url, seconds=1.0) -> dict:
    response = httpx.post(f"{base_url}/jobs", json={"seconds": seconds}, timeout=TIMEOUT)
    assert response.status_code == 201, response.text
    job = response.json()
    assert job["url"] == f"/jobs/{job['id']}/progress"
    return job


# -- GET /download --------------------------------------------------------------------------

def test_download_streams_0_to_100_then_complete(base_url):
    with httpx.Client(timeout=TIMEOUT) as client:
        events = read_stream(client, f"{base_url}/download?delay=0.02")
    check_progress_then_final(events, DOWNLOAD_STEPS)


def test_download_resumes_after_last_event_id(base_url):
    with httpx.Client(timeout=TIMEOUT) as client:
        events = read_stream(client, f"{base_url}/download?delay=0.02",
                             headers={"Last-Event-ID": "60"})
        check_progress_then_final(events, [70, 80, 90, 100])
        # After the final event there is nothing left: 204 stops an EventSource for good.
        done = client.get(f"{base_url}/download", headers={"Last-Event-ID": "done"})
        assert done.status_code == 204
        # A cursor that is not ours starts over.
        events = read_stream(client, f"{base_url}/download?delay=0&last_event_id=banana")
        check_progress_then_final(events, DOWNLOAD_STEPS)


def test_download_rejects_a_bad_delay(base_url):
    for delay in ("x", "-1", "99"):
        response = httpx.get(f"{base_url}/download?delay={delay}", timeout=TIMEOUT)
        assert response.status_code == 400, (delay, response.text)
        assert "delay" in response.json()["error"]


# -- jobs -------------------------------------------------------------------------------------

def test_job_streams_every_step_then_complete(base_url):
    job = start_job(base_url, seconds=1.0)
    with httpx.Client(timeout=TIMEOUT) as client:
        events = read_stream(client, base_url + job["url"])
        final = check_progress_then_final(events, JOB_STEPS)
        state = client.get(f"{base_url}/jobs/{job['id']}").json()
        # A second watcher after the end gets the whole story again, from the job's state.
        again = read_stream(client, base_url + job["url"])
    assert final["result"]["file"] == f"job-{job['id']}.bin"
    assert len(final["result"]["sha256"]) == 64
    assert state["status"] == "complete" and state["progress"] == 100
    assert state["result"] == final["result"]
    assert again == events


def test_job_resumes_after_last_event_id(base_url):
    job = start_job(base_url, seconds=2.0)
    url = base_url + job["url"]
    with httpx.Client(timeout=TIMEOUT) as client:
        first = []
        with connect_sse(client, "GET", url) as source:
            for sse in source.iter_sse():
                first.append(json.loads(sse.data)["progress"])
                if first[-1] >= 30:
                    last_id = sse.id
                    break  # the connection drops mid-job
        assert first == list(range(0, first[-1] + 1, 5)) and last_id == str(first[-1])
        rest = read_stream(client, url, headers={"Last-Event-ID": last_id})
        check_progress_then_final(rest, list(range(first[-1] + 5, 101, 5)))
        assert client.get(url, headers={"Last-Event-ID": "done"}).status_code == 204


@pytest.mark.parametrize("body", [b"[1]", b'"x"', b"{", b'{"seconds": "4"}',
                                  b'{"seconds": true}', b'{"seconds": 0}',
                                  b'{"seconds": 1000}'])
def test_bad_job_requests_are_400(base_url, body):
    response = httpx.post(f"{base_url}/jobs", content=body, timeout=TIMEOUT)
    assert response.status_code == 400, response.text
    assert "error" in response.json()


def test_unknown_job_is_404(base_url):
    assert httpx.get(f"{base_url}/jobs/nope", timeout=TIMEOUT).status_code == 404
    assert httpx.get(f"{base_url}/jobs/nope/progress", timeout=TIMEOUT).status_code == 404


# -- the page in headless Chromium ------------------------------------------------------------

JOB_DONE = """() => {
  const log = window.progressLog.job;
  return log.final !== null && log.final.event === "complete";
}"""


def bar(page, name: str) -> tuple[str, str, str]:
    return (page.get_attribute(f"#{name}-bar", "aria-valuenow"),
            page.eval_on_selector(f"#{name}-fill", "el => el.style.width"),
            page.text_content(f"#{name}-status"))


def test_page_bar_fills_to_100_and_shows_the_result(base_url, page):
    page.goto(f"{base_url}/")
    assert page.title() == "conduit: progress over SSE"
    page.fill("#seconds", "1")
    page.click("#start")
    page.wait_for_function(JOB_DONE, timeout=20_000)
    log = page.evaluate("() => window.progressLog.job")
    assert log["values"] == JOB_STEPS, log
    assert bar(page, "job") == ("100", "100%", "complete")
    assert "sha256" in page.text_content("#job-result")
    assert page.text_content("#job-connection") == "done"
    assert page.url.endswith(f"#job={log['id']}")

    page.click("#download")
    page.wait_for_function("() => window.progressLog.download.final !== null", timeout=20_000)
    log = page.evaluate("() => window.progressLog.download")
    assert log["values"] == DOWNLOAD_STEPS and log["final"]["event"] == "complete", log
    assert bar(page, "download") == ("100", "100%", "complete")


def test_page_reload_mid_job_resumes_where_it_was(base_url, page):
    page.goto(f"{base_url}/")
    page.fill("#seconds", "3")
    page.click("#start")
    page.wait_for_function(
        "() => window.progressLog.job.values.some((v) => v >= 25)", timeout=20_000)
    job_id = page.evaluate("() => window.progressLog.job.id")
    page.reload()  # the address keeps #job=<id>: the page asks the job where it is
    page.wait_for_function(JOB_DONE, timeout=20_000)
    log = page.evaluate("() => window.progressLog.job")
    assert log["id"] == job_id
    resumed = log["resumedAt"]
    assert resumed >= 25, log
    # Only the steps after the job's state at reload came down the new stream.
    assert log["values"] == list(range(resumed + 5, 101, 5)), log
    assert log["urls"] == [f"/jobs/{job_id}/progress?last_event_id={resumed}"], log
    assert bar(page, "job") == ("100", "100%", "complete")


def test_page_reports_a_job_lost_in_a_restart(page):
    """Jobs live in memory: after a restart the browser's reconnect gets 404, the
    EventSource gives up, and the page says so (rather than wait forever)."""
    server = ExampleServer("examples/progress.py", "--no-access-log")
    try:
        page.goto(f"{server.base_url}/")
        page.fill("#seconds", "30")
        page.click("#start")
        page.wait_for_function("() => window.progressLog.job.values.length >= 2")
        port = server.port
        assert server.stop(timeout=20) == 0, server.log  # drains: the stream ends cleanly
        server = ExampleServer("examples/progress.py", "--no-access-log", port=port)
        page.wait_for_function(
            "() => document.getElementById('job-status').textContent.startsWith('lost')")
        assert page.get_attribute("#job-bar", "class") == "bar failed"
        assert page.text_content("#job-connection") == "closed"
        assert page.is_enabled("#start")
    finally:
        assert server.stop(timeout=20) == 0, server.log
