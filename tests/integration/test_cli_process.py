"""``python -m conduit run`` as a subprocess: signals (graceful drain, forced exit), exit
statuses, options, logging."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
from integration_helpers import TIMEOUT, RawClient, get_ok, run_cli

from conduit.config import Config

APP = '''
import sys
import time

import conduit
from conduit import App, SSEEvent

app = App()
MARKER = {marker!r}


def note(text):
    with open(MARKER, "a") as f:
        f.write(text + "\\n")
    print(text.upper(), file=sys.stderr, flush=True)


@app.get("/")
def index(request):
    return "ok"


@app.get("/stream")
async def stream(request):
    try:
        yield SSEEvent("first", id=1)
        while True:
            await conduit.sleep(60)
    finally:
        note("async stream finally")


@app.get("/sync-stream")
def sync_stream(request):
    try:
        yield SSEEvent("first", id=1)
        while True:
            yield b": filler\\n\\n" * 100
    finally:
        note("sync stream finally")


@app.get("/stuck")
async def stuck(request):
    print("STUCK-ENTERED", file=sys.stderr, flush=True)
    await conduit.sleep(30)
    return "late"


@app.get("/blocked")
async def blocked(request):
    print("BLOCKED-ENTERED", file=sys.stderr, flush=True)
    await conduit.to_thread(time.sleep, 30)
    return "late"
'''

ACCESS_LINE = re.compile(r'INFO: +127\.0\.0\.1:\d+ - "GET / HTTP/1\.1" 200$')


@pytest.fixture
def marker(tmp_path):
    return tmp_path / "marker.txt"


@pytest.fixture
def example(app_file, marker):
    return app_file(APP.format(marker=str(marker)))


def open_stream(address, path="/stream", rcvbuf=None) -> RawClient:
    client = RawClient(address, rcvbuf=rcvbuf)
    client.send(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
    assert client.read_response(head_only=True).status == 200
    assert client.read_chunk()[1].startswith(b"id: 1\ndata: first\n\n")
    return client


# -- signals ------------------------------------------------------------------------------
@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_sigterm_drains_open_streams_and_exits_0(conduit_process, example, marker):
    proc = conduit_process(example)
    raw = open_stream(proc.address)
    sync_raw = open_stream(proc.address, "/sync-stream", rcvbuf=4096)
    curl = subprocess.Popen(
        ["curl", "-sS", "-N", "--max-time", str(int(TIMEOUT)),
         f"http://127.0.0.1:{proc.port}/stream"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    # Both raw clients keep reading (a client that stops reading holds the drain up, by
    # design, until --graceful-timeout-seconds).
    received = {}
    readers = [threading.Thread(target=lambda n=n, c=c: received.__setitem__(n, c.read_to_eof()))
               for n, c in (("async", raw), ("sync", sync_raw))]
    for reader in readers:
        reader.start()
    try:
        assert curl.stdout.read(len(b"id: 1\ndata: first\n\n")) == b"id: 1\ndata: first\n\n"
        proc.signal(signal.SIGTERM)
        assert proc.wait() == 0, proc.stderr()
        for reader in readers:
            reader.join(TIMEOUT)
        # The raw clients see the rest of the streams end with the terminating chunk
        # (after the drain's retry line).
        assert re.fullmatch(rb"c\r\nretry: \d{4}\n\r\n0\r\n\r\n", received["async"])
        assert received["sync"].endswith(b"\r\n0\r\n\r\n")
        # curl saw a well-formed end of the chunked body (exit status 0).
        rest, err = curl.communicate(timeout=TIMEOUT)
        assert curl.returncode == 0, err
        assert re.fullmatch(rb"retry: \d+\n", rest), rest
    finally:
        if curl.poll() is None:
            curl.kill()
            curl.wait()
        raw.close()
        sync_raw.close()
    # Every handler's finally ran before the process exited.
    assert sorted(marker.read_text().splitlines()) == [
        "async stream finally", "async stream finally", "sync stream finally"]
    log = proc.stderr()
    assert "SIGTERM: shutting down (3 connections, 3 streams open)" in log
    assert "Finished server process" in log


def test_sigint_with_an_idle_keep_alive_connection_exits_0(conduit_process, example):
    proc = conduit_process(example)
    with RawClient(proc.address) as c:
        c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        assert c.read_response().body == b"ok"
        proc.signal(signal.SIGINT)
        assert c.closed_by_peer()
    assert proc.wait() == 0, proc.stderr()
    assert "SIGINT: shutting down" in proc.stderr()


@pytest.mark.parametrize("path", ["/stuck", "/blocked"])
def test_second_sigint_during_a_stuck_drain_forces_exit_1(conduit_process, example, path):
    """The drain cannot finish: a handler awaits conduit.sleep(30) (/stuck) or is blocked
    in to_thread(time.sleep, 30) (/blocked). A second SIGINT exits at once with 1."""
    proc = conduit_process(example)
    with RawClient(proc.address) as c:
        c.send(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        proc.wait_for_line(path[1:].upper() + "-ENTERED")
        proc.signal(signal.SIGINT)
        proc.wait_for_line(r"SIGINT: shutting down \(1 connections")
        assert c.nothing_pending()  # the drain waits for the response in progress
        proc.signal(signal.SIGINT)
        try:
            code = proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            code = "still running 5 s after the second SIGINT"
        assert code == 1, proc.stderr()
        assert c.read_to_eof() == b""  # cut: no response
    assert "forced exit" in proc.stderr()


def test_two_sigints_in_quick_succession_force_exit_1(conduit_process, example):
    """Ctrl+C twice, 0.1 s apart, while a response is in progress: the second one forces
    the exit. (Each signal must be handled when it arrives, not merged with the next.)"""
    proc = conduit_process(example, "--graceful-timeout-seconds", "5")
    with RawClient(proc.address) as c:
        c.send(b"GET /stuck HTTP/1.1\r\nHost: t\r\n\r\n")
        proc.wait_for_line("STUCK-ENTERED")
        proc.signal(signal.SIGINT)
        time.sleep(0.1)  # the scenario itself (a user pressing Ctrl+C twice), not a wait
        proc.signal(signal.SIGINT)
        assert proc.wait(timeout=TIMEOUT) == 1, proc.stderr()


# -- exit statuses and options --------------------------------------------------------------
def test_help_lists_every_config_field():
    result = run_cli("run", "--help")
    assert result.returncode == 0, result.stderr
    for field in dataclasses.fields(Config):
        flag = "--" + field.name.replace("_", "-")
        assert re.search(rf"(^|\s|,){re.escape(flag)}\b", result.stdout), flag
        if field.type == "bool":
            assert "--no-" + field.name.replace("_", "-") in result.stdout
    top = run_cli("--help")
    assert top.returncode == 0 and "run" in top.stdout


def test_version():
    result = run_cli("--version")
    assert result.returncode == 0
    assert re.fullmatch(r"conduit \S+ \(compiled extensions: (on|off)\)\n", result.stdout)


def one_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, text
    return lines[0]


def test_port_in_use_exits_3(example):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("run", example, "--port", port)
    assert result.returncode == 3, result.stderr
    line = one_line(result.stderr)
    assert f"127.0.0.1:{port}" in line and "in use" in line.lower(), line


@pytest.mark.parametrize("kind", ["missing-file", "syntax-error", "missing-attribute",
                                  "no-app", "import-error", "missing-module", "not-callable"])
def test_target_that_does_not_import_exits_3(app_file, tmp_path, kind):
    cwd = tmp_path
    if kind == "missing-file":
        target, expect = "nope.py", "no such file: nope.py"
    elif kind == "syntax-error":
        target, expect = app_file("def broken(:\n    pass\n", "broken.py"), "SyntaxError"
    elif kind == "missing-attribute":
        target = str(app_file("from conduit import App\napp = App()\n", "good.py")) + ":other"
        expect = "has no attribute 'other'"
    elif kind == "no-app":
        target, expect = app_file("x = 1\n", "noapp.py"), "has no attribute 'app'"
    elif kind == "import-error":
        target = app_file("import no_such_module_xyz\n", "imports.py")
        expect = "ModuleNotFoundError"
    elif kind == "missing-module":
        target, expect = "no_such_module_xyz:app", "cannot import no_such_module_xyz"
    else:
        target, expect = app_file("app = 42\n", "number.py"), "is not an application"
    result = run_cli("run", target, "--port", "0", cwd=cwd)
    assert result.returncode == 3, result.stderr
    assert expect in one_line(result.stderr)


@pytest.mark.parametrize("args", [["--port", "abc"], ["--port", "70000"],
                                  ["--high-water-bytes", "10", "--low-water-bytes", "20"],
                                  ["--log-level", "loud"], ["--heartbeat-seconds", "-1"]])
def test_bad_option_exits_2(example, args):
    result = run_cli("run", example, *args)
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert result.stderr.strip()


def test_port_0_logs_the_actual_port_and_access_lines(conduit_process, example):
    proc = conduit_process(example)
    assert proc.port and proc.port != 0
    get_ok(proc.address)
    proc.signal(signal.SIGTERM)
    assert proc.wait() == 0
    assert any(ACCESS_LINE.search(line) for line in proc.lines), proc.stderr()


def test_no_access_log(conduit_process, example):
    proc = conduit_process(example, "--no-access-log")
    get_ok(proc.address)
    proc.signal(signal.SIGTERM)
    assert proc.wait() == 0
    assert not any('"GET ' in line for line in proc.lines), proc.stderr()
    assert any("conduit running on" in line for line in proc.lines)


def test_options_reach_the_server(conduit_process, example):
    """--heartbeat-seconds 1: an idle stream gets a ping (the option made it to Config)."""
    proc = conduit_process(example, "--heartbeat-seconds", "1")
    with open_stream(proc.address) as c:
        assert c.read_chunk()[1] == b": ping\n\n"
    proc.signal(signal.SIGTERM)
    assert proc.wait() == 0


GC_APP = '''
import gc

from conduit import App

app = App()


@app.get("/gc")
def thresholds(request):
    return {"thresholds": list(gc.get_threshold()), "frozen": gc.get_freeze_count() > 0}
'''


@pytest.mark.parametrize(("args", "first"), [((), 10_000), (("--gc-threshold", "2500"), 2500),
                                             (("--gc-threshold", "0"), None)])
def test_gc_threshold_is_set_while_serving(conduit_process, app_file, args, first):
    # Python's own thresholds (700 first up to 3.12; 2000 from 3.13), from a fresh
    # interpreter like the server's: --gc-threshold 0 must leave them as they are.
    own = json.loads(subprocess.run(
        [sys.executable, "-c", "import gc, json; print(json.dumps(gc.get_threshold()))"],
        capture_output=True, text=True, check=True).stdout)
    expected = own if first is None else [first, *own[1:]]
    proc = conduit_process(app_file(GC_APP), "--no-access-log", *args)
    body = json.loads(get_ok(proc.address, "/gc").body)
    assert body == {"thresholds": expected, "frozen": True}
