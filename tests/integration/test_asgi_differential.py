"""Differential test: one FastAPI app (asgi_tour/tour.py) on conduit and on uvicorn, the
same raw requests sent to both; status, headers (less Date and Server) and body must agree
byte for byte, except for the differences listed in ``DIFFERENCES`` with their reasons.

Each request goes on a fresh connection with ``Connection: close`` and the whole response
is read to EOF, so framing (Content-Length, chunking) is compared as the client sees it:
headers as a multiset of (lowercased name, value), the body de-chunked.
"""

from __future__ import annotations

import gzip
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from integration_helpers import TIMEOUT, ConduitProcess, subprocess_env, wait_for

pytest.importorskip("fastapi")
pytest.importorskip("multipart")  # python-multipart: FastAPI's forms and uploads
pytest.importorskip("uvicorn")

TOUR = Path(__file__).resolve().parent / "asgi_tour"
IGNORED_HEADERS = {b"date", b"server"}

# The differences between conduit and uvicorn on this corpus, and why each is right.
DIFFERENCES = {
    # GZipMiddleware writes the compression time into the gzip header (mtime): two runs
    # of one server differ there too. The decompressed bodies must agree.
    "gzip": "the gzip header's mtime is the time of compression",
}


def request(method: str, target: str, headers: dict | None = None, body: bytes = b"") -> bytes:
    lines = [f"{method} {target} HTTP/1.1", "Host: tour.test", "Connection: close"]
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}")
    if body or method in ("POST", "PUT"):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def multipart(fields: dict, files: dict) -> tuple[str, bytes]:
    boundary = "tourboundary1234"
    parts = []
    for name, value in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
                     f"{value}\r\n".encode())
    for name, (filename, content, kind) in files.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; '
                     f'filename="{filename}"\r\nContent-Type: {kind}\r\n\r\n'.encode()
                     + content + b"\r\n")
    return f"multipart/form-data; boundary={boundary}", b"".join(parts) + \
        f"--{boundary}--\r\n".encode()


FORM_TYPE, UPLOAD = multipart({"note": "a note"},
                              {"file": ("data.bin", bytes(range(256)) * 40,
                                        "application/octet-stream")})

CORPUS = {
    "root": request("GET", "/"),
    "path-and-query": request("GET", "/items/42?q=abc"),
    "path-validation": request("GET", "/items/forty-two"),
    "query-validation": request("GET", "/items/1?q=toolongvalue"),
    "body": request("POST", "/items", {"Content-Type": "application/json"},
                    b'{"name": "pen", "price": 1.5, "tags": ["a"]}'),
    "body-validation": request("POST", "/items", {"Content-Type": "application/json"},
                               b'{"name": "", "price": -1}'),
    "body-malformed": request("POST", "/items", {"Content-Type": "application/json"},
                              b'{"name": '),
    "dependency-refused": request("GET", "/private"),
    "dependency-ok": request("GET", "/private", {"X-Token": "secret"}),
    "form": request("POST", "/form", {"Content-Type": "application/x-www-form-urlencoded"},
                    b"name=Ada&age=36"),
    "form-missing-field": request("POST", "/form",
                                  {"Content-Type": "application/x-www-form-urlencoded"},
                                  b"name=Ada"),
    "upload": request("POST", "/upload", {"Content-Type": FORM_TYPE}, UPLOAD),
    "cookie-set": request("GET", "/cookie/set"),
    "cookie-get": request("GET", "/cookie/get", {"Cookie": "session=xyz; other=1"}),
    "redirect": request("GET", "/redirect"),
    "static": request("GET", "/static/hello.txt"),
    "static-missing": request("GET", "/static/nope.txt"),
    "static-escape": request("GET", "/static/../tour.py"),
    "cors-preflight": request("OPTIONS", "/items", {
        "Origin": "https://app.example.com", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "X-Token"}),
    "cors-simple": request("GET", "/", {"Origin": "https://app.example.com"}),
    "cors-refused-origin": request("GET", "/", {"Origin": "https://evil.example"}),
    "gzip": request("GET", "/big", {"Accept-Encoding": "gzip"}),
    "no-gzip": request("GET", "/big"),
    "exception-handler": request("GET", "/teapot"),
    "http-exception": request("GET", "/missing"),
    "unhandled-error": request("GET", "/crash"),
    "streaming": request("GET", "/stream"),
    "background-task": request("POST", "/jobs?name=first"),
    "head": request("HEAD", "/head"),
    "not-found": request("GET", "/nowhere"),
    "method-not-allowed": request("DELETE", "/items/1"),
    "repeated-headers": request("GET", "/headers", {"X-Multi": "one"}).replace(
        b"X-Multi: one\r\n", b"X-Multi: one\r\nX-Multi: two\r\n"),
    "openapi": request("GET", "/openapi.json"),
}


def exchange(port: int, raw: bytes) -> tuple[int, list, bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        sock.sendall(raw)
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.split(b"\r\n")
    status = int(status_line.split()[1])
    headers = []
    for line in lines:
        name, _, value = line.partition(b":")
        headers.append((name.strip().lower(), value.strip()))
    if (b"transfer-encoding", b"chunked") in headers:
        body = dechunk(body)
    return status, headers, body


def dechunk(data: bytes) -> bytes:
    out = b""
    while True:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            return out
        out += data[:size]
        data = data[size + 2:]


def start_uvicorn() -> tuple[subprocess.Popen, int]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "tour:app", "--app-dir", str(TOUR), "--port",
         str(port), "--log-level", "warning", "--no-access-log", "--http", "h11"],
        env=subprocess_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, port
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(proc.stderr.read().decode()) from None
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("uvicorn did not start")


@pytest.fixture(scope="module")
def servers():
    conduit = ConduitProcess(f"{TOUR / 'tour.py'}:app", "--no-access-log")
    uvicorn, uvicorn_port = start_uvicorn()
    try:
        _, conduit_port = conduit.wait_started()
        yield {"conduit": conduit_port, "uvicorn": uvicorn_port}
    finally:
        conduit.kill()
        uvicorn.kill()
        uvicorn.wait()


def comparable(headers: list) -> list:
    return sorted(h for h in headers if h[0] not in IGNORED_HEADERS)


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_conduit_answers_as_uvicorn(servers, name):
    raw = CORPUS[name]
    got = exchange(servers["conduit"], raw)
    expected = exchange(servers["uvicorn"], raw)
    assert got[0] == expected[0], f"{name}: status {got[0]} != uvicorn's {expected[0]}"
    if name == "gzip":  # DIFFERENCES["gzip"]
        assert gzip.decompress(got[2]) == gzip.decompress(expected[2])
        assert comparable(got[1]) == comparable(expected[1])
        return
    assert comparable(got[1]) == comparable(expected[1]), name
    assert got[2] == expected[2], f"{name}: bodies differ"


def test_background_task_ran_on_both(servers):
    for port in servers.values():
        exchange(port, request("POST", "/jobs?name=second"))
    for name, port in servers.items():
        # a background task runs after its response went out: wait for it, on each server
        wait_for(lambda port=port: b'"second"' in exchange(port, request("GET", "/jobs"))[2],
                 what=f"the background task on {name}")
