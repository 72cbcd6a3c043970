"""Fixtures for the scale-out tests: a real ``redis-server`` and conduit servers around it.

- ``redis_server``: a factory; ``redis_server()`` starts ``/usr/bin/redis-server`` (the
  Debian package, which ``.ci/run`` installs) on a free loopback port with its own data
  directory under the test's tmp dir, append-only with ``appendfsync always`` and no RDB
  snapshots, and waits until it answers PING. The ``RedisServer`` it returns can be
  killed (SIGKILL: a crash) or shut down, and started again on the same port with the
  same data (``start()``) or with none (``start(wipe=True)``). Every server is stopped
  after the test.
- ``conduit_cluster``: a factory; ``conduit_cluster(app_path, url, n)`` starts ``n``
  ``python -m conduit run APP --port 0 --broker URL`` processes and waits until each has
  attached to the broker. Every process is killed after the test.

A missing redis-server fails the tests (never a silent skip).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
from integration_helpers import ConduitProcess  # noqa: E402

REDIS_SERVER = "/usr/bin/redis-server"
DEADLINE = 30.0  # generous: a loaded 2-core CI machine starts processes slowly
ATTACHED = r"broker redis://\S+ \(prefix \S+\): epoch (\w+)"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def redis_command(port: int, *args: str, timeout: float = 5.0) -> bytes:
    """One command over a raw socket (RESP); the raw reply line(s). For readiness checks
    and admin commands, where the tests must not depend on the client library."""
    body = b"*%d\r\n" % len(args) + b"".join(
        b"$%d\r\n%s\r\n" % (len(a.encode()), a.encode()) for a in args)
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(body)
        reply = b""
        while not reply.endswith(b"\r\n"):
            data = sock.recv(65536)
            if not data:
                break
            reply += data
        return reply


class RedisServer:
    """One redis-server process on a fixed port and data directory (see the module doc)."""

    def __init__(self, base: Path, appendfsync: str = "always") -> None:
        if not os.access(REDIS_SERVER, os.X_OK):
            pytest.fail(f"{REDIS_SERVER} is missing: the scale-out tests need Debian's "
                        "redis-server package (.ci/run installs it: apt-get install "
                        "redis-server)", pytrace=False)
        self.base = base
        self.appendfsync = appendfsync
        self.port = free_port()
        self.generation = 0
        self.proc = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def data_dir(self) -> Path:
        return self.base / f"redis-data-{self.generation}"

    def start(self, wipe: bool = False) -> None:
        """Start (again) on the same port; ``wipe``: with an empty data directory."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        if wipe:
            self.generation += 1
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log = self.data_dir / "redis.log"
        self.proc = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1",
             "--dir", str(self.data_dir), "--save", "", "--appendonly", "yes",
             "--appendfsync", self.appendfsync, "--logfile", str(self.log),
             "--daemonize", "no"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + DEADLINE
        while True:
            try:
                if redis_command(self.port, "PING", timeout=1.0).startswith(b"+PONG"):
                    return
            except OSError:
                pass
            if self.proc.poll() is not None:
                raise AssertionError(f"redis-server exited ({self.proc.returncode}):\n"
                                     + self.log.read_text(errors="replace"))
            if time.monotonic() > deadline:
                raise AssertionError("redis-server did not answer PING in time")
            time.sleep(0.02)

    def kill(self) -> None:
        """SIGKILL: a crash (with appendfsync always, nothing acknowledged is lost)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(DEADLINE)

    def command(self, *args: str) -> bytes:
        return redis_command(self.port, *args)

    def stop(self) -> None:
        self.kill()


@pytest.fixture
def redis_server(tmp_path):
    servers = []

    def start(appendfsync: str = "always") -> RedisServer:
        server = RedisServer(tmp_path / f"redis-{len(servers)}", appendfsync=appendfsync)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
    for server in servers:
        shutil.rmtree(server.base, ignore_errors=True)


@pytest.fixture
def conduit_cluster():
    processes = []

    def start(app_path, url: str, n: int = 1, *args) -> list:
        started = []
        for _ in range(n):
            process = ConduitProcess(app_path, "--broker", url, "--no-access-log", *args)
            processes.append(process)
            started.append(process)
        for process in started:
            process.wait_started()
            process.epoch = process.wait_for_line(ATTACHED, timeout=DEADLINE).group(1)
        return started

    yield start
    for process in processes:
        process.kill()
