"""Progress: a long job reports its progress over SSE, and a page draws it as a bar.

The seed's "Progress Updates" pattern, twice: a stateless ``/download`` stream, and jobs
that run on the server whatever the browser does (they keep their state, so a page that
reconnects, or reloads, picks the job up where it is).

    python -m conduit run examples/progress.py
    # open http://127.0.0.1:8000/ and press "Start a job"

    curl -N http://127.0.0.1:8000/download                  # 0, 10, ... 100, then complete
    curl -N 'http://127.0.0.1:8000/download?delay=0.1'       # faster
    curl -N -H 'Last-Event-ID: 40' http://127.0.0.1:8000/download   # resumes at 50
    curl -X POST http://127.0.0.1:8000/jobs -d '{"seconds": 5}'      # {"id": "...", ...}
    curl -N http://127.0.0.1:8000/jobs/<id>/progress        # watch it (from any terminal)
    curl -N -H 'Last-Event-ID: 35' http://127.0.0.1:8000/jobs/<id>/progress   # after 35 %
    curl http://127.0.0.1:8000/jobs/<id>                    # its state as JSON

Streams
- Every progress event is ``event: progress``, ``id: <n>``, data
  ``{"progress": n, "status": "starting" | "downloading" | "verifying"}``, n strictly
  increasing from 0 to 100 (steps of 10 on /download, of 5 for a job).
- Then one final event with ``id: done``: ``event: complete``, data ``{"progress": 100,
  "status": "complete", "result": {...}}``; or, for a job whose work raised,
  ``event: failed``, data ``{"progress": n, "status": "failed", "message": ...}``. Then
  the stream ends.
- ``Last-Event-ID: n`` (or ``?last_event_id=n``) resumes after n %: a browser's
  EventSource sends it by itself when it reconnects. ``Last-Event-ID: done`` answers 204,
  which tells an EventSource that reconnects after the end to stop for good. Any other
  value starts from the beginning.

Routes
- ``GET /download[?delay=seconds per step]``: the seed's stream, stateless.
- ``POST /jobs`` (body optional, ``{"seconds": 0.5..60}``, default 4): starts a job in a
  worker thread of its own; answers 201 ``{"id", "progress", "status", "url"}``. A body
  that is not a JSON object, or a bad ``seconds``: 400.
- ``GET /jobs/{id}``: ``{"id", "progress", "status", "result" (or null), "message"}``;
  404 for an unknown id.
- ``GET /jobs/{id}/progress``: the job's stream (see above); 404 for an unknown id. Every
  step is sent (a late or resuming watcher gets the steps it missed at once), then the
  final event as soon as the job ends.
- ``GET /``: the page (examples/pages/progress.html).

The jobs are kept in memory, the newest ``MAX_JOBS``; a restart forgets them.
"""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from collections import OrderedDict
from pathlib import Path

from conduit import App, FileResponse, HTTPError, Response, SSEEvent, sleep

app = App()
PAGE = Path(__file__).parent / "pages" / "progress.html"

FINAL_ID = "done"
JOB_STEP = 5            # a job reports every 5 %
DOWNLOAD_STEP = 10      # /download, as in the seed
DEFAULT_JOB_SECONDS = 4.0
MIN_JOB_SECONDS, MAX_JOB_SECONDS = 0.5, 60.0
MAX_JOBS = 100          # finished jobs beyond this many are forgotten, oldest first
POLL_SECONDS = 0.05     # how often a watcher looks for new steps
CHUNK_BYTES = 64 * 1024


def status_of(progress: int) -> str:
    if progress == 0:
        return "starting"
    return "verifying" if progress == 100 else "downloading"


def resume_after(request, step: int) -> int | str | None:
    """Where a client resumes: FINAL_ID if it saw the end, the last progress it saw,
    or None for the beginning (no Last-Event-ID, or one that is not ours)."""
    cursor = (request.last_event_id or "").strip()
    if cursor == FINAL_ID:
        return FINAL_ID
    if cursor.isdigit() and int(cursor) <= 100 and int(cursor) % step == 0:
        return int(cursor)
    return None


def progress_event(progress: int, status: str) -> SSEEvent:
    return SSEEvent({"progress": progress, "status": status}, event="progress",
                    id=progress)


# -- GET /download: the seed's pattern, stateless -------------------------------------------

@app.get("/download")
def download(request):
    try:
        delay = float(request.query.get("delay", "0.5"))
    except ValueError:
        raise HTTPError(400, "delay must be a number of seconds") from None
    if not 0 <= delay <= 5:
        raise HTTPError(400, "delay must be between 0 and 5 seconds")
    after = resume_after(request, DOWNLOAD_STEP)
    if after == FINAL_ID:
        return None  # 204: this client has seen the end; an EventSource stops retrying
    start = 0 if after is None else after + DOWNLOAD_STEP
    return _download(start, delay)


async def _download(start: int, delay: float):
    for progress in range(start, 101, DOWNLOAD_STEP):
        yield progress_event(progress, status_of(progress))
        if progress < 100:
            await sleep(delay)
    result = {"file": "conduit-demo.bin", "bytes": 10 * CHUNK_BYTES}
    yield SSEEvent({"progress": 100, "status": "complete", "result": result},
                   event="complete", id=FINAL_ID)


# -- jobs: state on the server, work in a thread --------------------------------------------

class Job:
    """A job's state. The worker thread appends steps and sets the end; watchers (on the
    loop thread) only read. ``steps`` only grows, and ``finished`` is set after the last
    step is appended, so a watcher that sees ``finished`` has every step."""

    def __init__(self, seconds: float) -> None:
        self.id = uuid.uuid4().hex[:12]
        self.seconds = seconds
        self.steps: list[tuple[int, str]] = []  # (progress, status), progress increasing
        self.final: dict | None = None          # the final event's data, once finished
        self.final_event: str | None = None     # "complete" or "failed"
        self.finished = False
        self.created = time.time()

    @property
    def progress(self) -> int:
        steps = self.steps
        return steps[-1][0] if steps else 0

    def state(self) -> dict:
        final = self.final or {}
        steps = self.steps
        status = final.get("status") or (steps[-1][1] if steps else "queued")
        return {"id": self.id, "progress": self.progress, "status": status,
                "result": final.get("result"), "message": final.get("message"),
                "seconds": self.seconds}

    def run(self) -> None:
        """The work (a worker thread): hash ``100 / JOB_STEP`` chunks of data, paced so
        the whole job takes about ``seconds``; a step after each chunk."""
        pause = self.seconds / (100 // JOB_STEP)
        digest = hashlib.sha256()
        total = 0
        try:
            self.steps.append((0, status_of(0)))
            for progress in range(JOB_STEP, 101, JOB_STEP):
                time.sleep(pause)
                chunk = hashlib.sha256(f"{self.id}:{progress}".encode()).digest() \
                    * (CHUNK_BYTES // 32)
                digest.update(chunk)
                total += len(chunk)
                self.steps.append((progress, status_of(progress)))
            result = {"file": f"job-{self.id}.bin", "bytes": total,
                      "sha256": digest.hexdigest(), "seconds": self.seconds}
            self.final = {"progress": 100, "status": "complete", "result": result}
            self.final_event = "complete"
        except Exception as exc:  # report it to the watchers rather than go silent
            self.final = {"progress": self.progress, "status": "failed", "message": str(exc)}
            self.final_event = "failed"
        finally:
            self.finished = True


jobs: OrderedDict[str, Job] = OrderedDict()
jobs_lock = threading.Lock()


def _forget_old_jobs() -> None:
    # called with jobs_lock held: drop the oldest finished jobs beyond MAX_JOBS
    for job_id in list(jobs):
        if len(jobs) <= MAX_JOBS:
            break
        if jobs[job_id].finished:
            del jobs[job_id]


def find_job(job_id: str) -> Job:
    with jobs_lock:
        job = jobs.get(job_id)
    if job is None:
        raise HTTPError(404, f"no job {job_id!r}")
    return job


@app.post("/jobs")
def start_job(request):
    seconds = DEFAULT_JOB_SECONDS
    if request.body.strip():
        body = request.json()
        if not isinstance(body, dict):
            raise HTTPError(400, 'the body must be a JSON object, e.g. {"seconds": 4}')
        if "seconds" in body:
            seconds = body["seconds"]
            if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) \
                    or not MIN_JOB_SECONDS <= seconds <= MAX_JOB_SECONDS:
                raise HTTPError(400, f"'seconds' must be a number from {MIN_JOB_SECONDS} "
                                     f"to {MAX_JOB_SECONDS}")
    job = Job(float(seconds))
    with jobs_lock:
        jobs[job.id] = job
        _forget_old_jobs()
    threading.Thread(target=job.run, name=f"job-{job.id}", daemon=True).start()
    answer = job.state()
    answer["url"] = f"/jobs/{job.id}/progress"
    return Response(answer, status=201)


@app.get("/jobs/{job_id}")
def job_state(request, job_id):
    return find_job(job_id).state()


@app.get("/jobs/{job_id}/progress")
def job_progress(request, job_id):
    job = find_job(job_id)
    after = resume_after(request, JOB_STEP)
    if after == FINAL_ID:
        return None  # 204: seen the end already
    return _watch(job, -1 if after is None else after)


async def _watch(job: Job, after: int):
    """Every step after ``after`` (a progress value), then the final event."""
    index = 0
    while True:
        finished = job.finished  # read first: if set, every step is already in the list
        steps = job.steps
        while index < len(steps):
            progress, status = steps[index]
            index += 1
            if progress > after:
                yield progress_event(progress, status)
        if finished:
            yield SSEEvent(job.final, event=job.final_event, id=FINAL_ID)
            return
        await sleep(POLL_SECONDS)


@app.get("/")
def index(request):
    return FileResponse(PAGE)

