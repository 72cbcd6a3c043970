"""Helpers for the integration tests: an in-process server, raw HTTP over sockets, and
``python -m conduit run`` as a subprocess.

Nothing here sleeps and hopes: every wait is on a condition, with a timeout that only
matters when something is broken.
"""

from __future__ import annotations

import faulthandler
import json
import os
import re
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import conduit
from conduit.config import Config
from conduit.server.server import Server

# The tree the tests import conduit from; subprocesses must run the same code.
REPO_ROOT = str(Path(conduit.__file__).resolve().parents[1])
TIMEOUT = 10.0  # an upper bound for things that should happen at once; never a speed check

SSE_HEAD_LINES = (
    b"Content-Type: text/event-stream; charset=utf-8\r\n"
    b"Cache-Control: no-cache\r\n"
    b"X-Accel-Buffering: no\r\n"
)


def wait_for(predicate, timeout: float = TIMEOUT, interval: float = 0.01, what: str = ""):
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")
        time.sleep(interval)


# -- the in-process server ---------------------------------------------------------------
class RunningServer:
    """A ``Server`` running ``run(install_signals=False)`` in a background thread."""

    def __init__(self, app, **settings) -> None:
        settings.setdefault("host", "127.0.0.1")
        settings.setdefault("port", 0)
        self.config = Config(**settings)
        self.server = Server(app, self.config)
        self.host, self.port = self.server.bind()
        self.exit_code = None
        self.error = None
        self.thread = threading.Thread(target=self._run, name="conduit-test-server",
                                       daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.exit_code = self.server.run(install_signals=False)
        except BaseException as exc:  # reported by stop()
            self.error = exc

    @property
    def address(self) -> tuple:
        return (self.host, self.port)

    @property
    def url(self) -> str:
        return f"{self.server.scheme}://{self.host}:{self.port}"

    def call(self, fn, timeout: float = TIMEOUT):
        """Run ``fn()`` on the server's loop thread and return its result."""
        done = threading.Event()
        box: dict = {}

        def run():
            try:
                box["value"] = fn()
            except BaseException as exc:
                box["error"] = exc
            finally:
                done.set()

        self.server.loop.call_soon_threadsafe(run)
        if not done.wait(timeout):
            raise AssertionError("the server loop did not run a callback in time")
        if "error" in box:
            raise box["error"]
        return box["value"]

    def connection_count(self) -> int:
        return self.call(lambda: len(self.server.connections))

    def streams(self) -> list:
        """The Stream pump objects of the open streams."""
        return self.call(lambda: [c.stream for c in self.server.streams if c.stream])

    def wait_sweeps(self, count: int) -> None:
        """Wait until the housekeeping sweep (once a second) has run ``count`` more times."""
        sweeper = lambda: self.server._sweeper  # noqa: E731 - the handle of the next sweep
        for _ in range(count):
            before = self.call(sweeper)
            wait_for(lambda before=before: self.call(sweeper) is not before, what="a sweep")

    def shutdown(self) -> None:
        """Start a graceful drain (from any thread)."""
        self.server.loop.call_soon_threadsafe(self.server.shutdown)

    def stop(self) -> None:
        if self.thread.is_alive():
            self.shutdown()
            self.thread.join(self.config.graceful_timeout_seconds + 3)
            if self.thread.is_alive():  # the drain could not finish: force it
                self.shutdown()
                self.thread.join(TIMEOUT)
        if self.thread.is_alive():  # where it is stuck, for the report
            faulthandler.dump_traceback(all_threads=True)
        assert not self.thread.is_alive(), "the server thread did not stop"
        if self.error is not None:
            raise self.error


# -- raw HTTP over a socket ---------------------------------------------------------------
class RawResponse:
    def __init__(self, raw: bytes, status_line: bytes, headers: list, body: bytes,
                 chunks: list | None) -> None:
        self.raw = raw  # every byte of the response as it arrived
        self.status_line = status_line
        match = re.fullmatch(rb"HTTP/1\.1 (\d{3}) [^\r\n]*", status_line)
        assert match, f"not a status line: {raw!r}"
        self.status = int(match.group(1))
        self.headers = headers  # [(name, value)] as sent (bytes)
        self.body = body  # de-chunked
        self.chunks = chunks  # the chunk payloads (the last, empty one excluded), or None

    def header(self, name: bytes):
        values = [v for n, v in self.headers if n.lower() == name.lower()]
        return values[0] if values else None

    def header_names(self) -> list:
        return [n.lower() for n, _ in self.headers]

    def __repr__(self) -> str:
        return f"RawResponse({self.raw!r})"


class RawClient:
    """A blocking socket with a read buffer; every read has a timeout."""

    def __init__(self, address, timeout: float = TIMEOUT, rcvbuf: int | None = None) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:  # before connect, so the window is small from the start
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect(address)
        self.buffer = bytearray()
        self.eof = False

    @property
    def local_port(self) -> int:
        return self.sock.getsockname()[1]

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self, size: int = 65536) -> bool:
        if self.eof:
            return False
        data = self.sock.recv(size)
        if not data:
            self.eof = True
            return False
        self.buffer += data
        return True

    def read_until(self, marker: bytes) -> bytes:
        """Bytes up to and including ``marker``."""
        while True:
            index = self.buffer.find(marker)
            if index >= 0:
                end = index + len(marker)
                data = bytes(self.buffer[:end])
                del self.buffer[:end]
                return data
            if not self._fill():
                raise AssertionError(f"EOF before {marker!r}; got {bytes(self.buffer)!r}")

    def read_exact(self, size: int) -> bytes:
        while len(self.buffer) < size:
            if not self._fill():
                raise AssertionError(f"EOF after {len(self.buffer)} of {size} bytes: "
                                     f"{bytes(self.buffer)!r}")
        data = bytes(self.buffer[:size])
        del self.buffer[:size]
        return data

    def read_to_eof(self) -> bytes:
        """Everything until the server closes (ECONNRESET counts as a close)."""
        try:
            while self._fill():
                pass
        except ConnectionResetError:
            self.eof = True
        data = bytes(self.buffer)
        self.buffer.clear()
        return data

    def closed_by_peer(self) -> bool:
        """True once the server has closed its side (reads EOF, no stray bytes)."""
        data = self.read_to_eof()
        assert data == b"", f"unexpected bytes before EOF: {data!r}"
        return True

    def read_chunk(self) -> tuple:
        """One chunk: (raw bytes, payload). The last chunk has payload b""."""
        size_line = self.read_until(b"\r\n")
        assert re.fullmatch(rb"[0-9a-f]+\r\n", size_line), size_line
        size = int(size_line[:-2], 16)
        data = self.read_exact(size + 2)
        assert data.endswith(b"\r\n"), data
        return size_line + data, data[:-2]

    def read_response(self, head_only: bool = False) -> RawResponse:
        """One response: Content-Length, chunked, or (neither) close-delimited."""
        head = self.read_until(b"\r\n\r\n")
        lines = head[:-4].split(b"\r\n")
        status_line, headers = lines[0], []
        for line in lines[1:]:
            name, sep, value = line.partition(b": ")
            assert sep, f"malformed header line {line!r}"
            headers.append((name, value))
        resp = RawResponse(head, status_line, headers, b"", None)
        status = resp.status
        if head_only or status in (204, 304) or 100 <= status < 200:
            return resp
        length = resp.header(b"Content-Length")
        if length is not None:
            resp.body = self.read_exact(int(length))
            resp.raw += resp.body
        elif resp.header(b"Transfer-Encoding") == b"chunked":
            resp.chunks = []
            while True:
                raw, payload = self.read_chunk()
                resp.raw += raw
                if not payload:
                    break
                resp.chunks.append(payload)
            resp.body = b"".join(resp.chunks)
        else:
            resp.body = self.read_to_eof()
            resp.raw += resp.body
        return resp

    def nothing_pending(self, wait: float = 0.0) -> bool:
        """No bytes (and no EOF) readable right now (or within ``wait`` seconds)."""
        if self.buffer:
            return False
        readable, _, _ = select.select([self.sock], [], [], wait)
        return not readable

    def close(self) -> None:
        self.sock.close()

    def reset(self) -> None:
        """Close with a TCP RST (SO_LINGER 0), as a client that crashes or is killed."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def request(address, data: bytes, head_only: bool = False) -> RawResponse:
    """Send ``data`` on a new connection and read one response."""
    with RawClient(address) as client:
        client.send(data)
        return client.read_response(head_only=head_only)


def get_ok(address, path: str = "/") -> RawResponse:
    resp = request(address, f"GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
                   .encode())
    assert resp.status == 200, resp
    return resp


# -- python -m conduit run, as a subprocess ------------------------------------------------
_RUNNING = re.compile(r"conduit running on https?://([0-9.]+):(\d+)")


def subprocess_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO_ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_cli(*args, cwd=None, timeout: float = 30) -> subprocess.CompletedProcess:
    """``python -m conduit ARGS`` to completion."""
    return subprocess.run(
        [sys.executable, "-m", "conduit", *map(str, args)], cwd=cwd, env=subprocess_env(),
        capture_output=True, text=True, timeout=timeout,
    )


class ConduitProcess:
    """``python -m conduit run TARGET --port 0 ...``; stderr is collected line by line."""

    def __init__(self, target, *args, cwd=None, stdin=False) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "conduit", "run", str(target), "--port", "0", *map(str, args)],
            cwd=cwd, env=subprocess_env(), text=True,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        self.lines: list = []
        self.stdout = ""
        self._cond = threading.Condition()
        self._eof = False
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._out_reader = threading.Thread(target=self._read_stdout, daemon=True)
        self._out_reader.start()
        self.host = self.port = None

    def _read(self) -> None:
        for line in self.proc.stderr:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    def _read_stdout(self) -> None:
        self.stdout = self.proc.stdout.read()

    def wait_for_line(self, pattern: str, timeout: float = TIMEOUT, start: int = 0):
        """The first stderr line (from index ``start``) that matches ``pattern``."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for line in self.lines[start:]:
                    match = regex.search(line)
                    if match:
                        return match
                if self._eof:
                    raise AssertionError(f"the process ended without logging {pattern!r}:\n"
                                         + self.stderr())
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no line matching {pattern!r} within {timeout} s:\n"
                                         + self.stderr())
                self._cond.wait(left)

    def wait_started(self) -> tuple:
        match = self.wait_for_line(_RUNNING.pattern)
        self.host, self.port = match.group(1), int(match.group(2))
        return self.host, self.port

    @property
    def address(self) -> tuple:
        return (self.host, self.port)

    def signal(self, signum) -> None:
        self.proc.send_signal(signum)

    def wait(self, timeout: float = TIMEOUT) -> int:
        code = self.proc.wait(timeout)
        self._reader.join(TIMEOUT)
        self._out_reader.join(TIMEOUT)
        return code

    def stderr(self) -> str:
        with self._cond:
            return "\n".join(self.lines)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(TIMEOUT)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                try:
                    stream.close()
                except OSError:
                    pass


# -- channels: raw-socket SSE subscribers ---------------------------------------------------
def parse_frame(frame: bytes) -> dict:
    """The fields of one SSE frame (as conduit writes them: ``name: value`` lines, LF):
    {"event", "id", "data" (lines joined with LF, or None), "comments" (list)}."""
    assert frame.endswith(b"\n\n"), frame
    fields: dict = {"event": None, "id": None, "data": None, "comments": []}
    data = []
    for line in frame[:-2].decode("utf-8").split("\n"):
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "":
            fields["comments"].append(value)
        elif name == "data":
            data.append(value)
        else:
            fields[name] = value
    if data:
        fields["data"] = "\n".join(data)
    return fields


def id_seq(event_id: str) -> int:
    """The sequence number of a channel id "<epoch>-<seq>"."""
    epoch, sep, seq = event_id.rpartition("-")
    assert sep and epoch and seq.isdigit(), event_id
    return int(seq)


class SSESubscriber:
    """A raw-socket subscriber: sends the GET, checks the SSE head, then hands out whole
    frames (``: comment`` frames included) whatever the chunking (or none, HTTP/1.0)."""

    def __init__(self, address, path: str, headers=(), version: str = "1.1",
                 rcvbuf: int | None = None, expect_status: int = 200) -> None:
        self.client = RawClient(address, rcvbuf=rcvbuf)
        lines = [f"GET {path} HTTP/{version}", "Host: t"]
        lines += [f"{name}: {value}" for name, value in headers]
        self.client.send(("\r\n".join(lines) + "\r\n\r\n").encode())
        if expect_status != 200:
            self.response = self.client.read_response()
            assert self.response.status == expect_status, self.response
            return
        self.response = self.client.read_response(head_only=True)
        assert self.response.status == 200, self.response
        assert self.response.header(b"Content-Type") == b"text/event-stream; charset=utf-8"
        self.chunked = self.response.header(b"Transfer-Encoding") == b"chunked"
        self.text = bytearray()  # de-chunked bytes not yet handed out as frames
        self.ended = False  # the last chunk (chunked) or EOF (close-delimited) was read

    def _more(self) -> bool:
        if self.ended:
            return False
        if self.chunked:
            _, payload = self.client.read_chunk()
            if not payload:
                self.ended = True
                return False
            self.text += payload
            return True
        if self.client.buffer:
            self.text += self.client.buffer
            self.client.buffer.clear()
            return True
        if not self.client._fill():
            self.ended = True
            return False
        return True

    def next_frame(self) -> bytes:
        """The next whole frame (ending with a blank line)."""
        while True:
            index = self.text.find(b"\n\n")
            if index >= 0:
                frame = bytes(self.text[:index + 2])
                del self.text[:index + 2]
                return frame
            if not self._more():
                raise AssertionError(f"the stream ended; partial frame {bytes(self.text)!r}")

    def next_event(self, skip_comments: bool = True) -> dict:
        """The next frame, parsed (see ``parse_frame``), with its bytes under "raw"."""
        while True:
            frame = self.next_frame()
            fields = parse_frame(frame)
            fields["raw"] = frame
            if skip_comments and fields["data"] is None and fields["comments"]:
                continue
            return fields

    def events(self, count: int) -> list:
        return [self.next_event() for _ in range(count)]

    def read_subscribed(self) -> bytes:
        """The first frame, which must be the ``: subscribed ...`` comment."""
        frame = self.next_frame()
        assert frame.startswith(b": subscribed"), frame
        return frame

    def rest_until_end(self) -> bytes:
        """Every de-chunked byte until the stream's end (the last chunk, or EOF)."""
        while self._more():
            pass
        data = bytes(self.text)
        self.text.clear()
        return data

    def close(self) -> None:
        self.client.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def subscribe(address, path: str, last_event_id: str | None = None, **kwargs) -> SSESubscriber:
    """A subscriber that has read its ``: subscribed`` comment (so it misses nothing after)."""
    headers = list(kwargs.pop("headers", ()))
    if last_event_id is not None:
        headers.append(("Last-Event-ID", last_event_id))
    sub = SSESubscriber(address, path, headers=headers, **kwargs)
    sub.read_subscribed()
    return sub


def post_json(address, path: str, value) -> dict:
    """POST ``value`` as JSON; the 2xx answer's JSON body."""
    body = json.dumps(value).encode()
    resp = request(address, f"POST {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
                   f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
                   .encode() + body)
    assert 200 <= resp.status < 300, resp
    return json.loads(resp.body)
