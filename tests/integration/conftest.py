"""Fixtures for the integration tests: conduit over real sockets.

- ``serve(app, **config)``: an in-process ``Server`` on an ephemeral port, running in a
  background thread; stopped (gracefully, then forcibly if need be) after the test.
- ``conduit_process(target, *args)``: ``python -m conduit run TARGET --port 0`` as a
  subprocess, started and its port read from the log; killed after the test if still alive.
- ``app_file(source)``: writes an application module into the test's tmp directory.
"""

from __future__ import annotations

import logging
import textwrap

import pytest
from integration_helpers import ConduitProcess, RunningServer


@pytest.fixture
def serve():
    servers = []

    def start(app, **settings) -> RunningServer:
        server = RunningServer(app, **settings)
        servers.append(server)
        return server

    yield start
    errors = []
    for server in servers:
        try:
            server.stop()
        except BaseException as exc:  # stop every server, then report
            errors.append(exc)
    if errors:
        raise errors[0]


@pytest.fixture
def conduit_process():
    processes = []

    def start(target, *args, cwd=None, stdin=False, started=True) -> ConduitProcess:
        process = ConduitProcess(target, *args, cwd=cwd, stdin=stdin)
        processes.append(process)
        if started:
            process.wait_started()
        return process

    yield start
    for process in processes:
        process.kill()


@pytest.fixture
def app_file(tmp_path):
    def write(source: str, name: str = "app.py"):
        path = tmp_path / name
        path.write_text(textwrap.dedent(source))
        return path

    return write


@pytest.fixture
def server_log(caplog):
    """caplog, capturing the conduit.server logger at INFO and above."""
    caplog.set_level(logging.INFO, logger="conduit.server")
    return caplog


# The asyncio loops a server can run on (Config.loop): asyncio's own, and uvloop when the
# optional extra is installed. ``loop_kind`` runs a test on each.
LOOPS = ["asyncio"]
try:
    import uvloop  # noqa: F401

    LOOPS.append("uvloop")
except ImportError:  # an optional extra: the asyncio runs still cover everything
    pass


@pytest.fixture(params=LOOPS)
def loop_kind(request):
    return request.param
