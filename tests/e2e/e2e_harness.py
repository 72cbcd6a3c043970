"""Shared by the end-to-end tests and tests/e2e/screenshot.py: run an example through the
real CLI, and launch Debian's Chromium for Playwright.

An example runs as ``python -m conduit run examples/NAME.py --port 0`` from the repository
root; its port comes from the log line ``conduit running on http://127.0.0.1:PORT``.
Stopping it sends SIGTERM, which must drain gracefully and exit with status 0.

Chromium is the Debian package at /usr/bin/chromium; Playwright is told to use it
(``executable_path``) and never downloads a browser of its own.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
# As root Chromium needs --no-sandbox; without the background-networking flags it keeps
# trying to reach Google's hosts through this machine's closed network. Playwright adds
# --headless for headless=True and gives every launch a new, empty --user-data-dir.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
RUNNING_LINE = re.compile(r"conduit running on (https?://127\.0\.0\.1:(\d+))")


class ExampleServer:
    """One ``python -m conduit run`` subprocess; its stderr log is kept in ``log_lines``.

    ``env``: variables added to (or, with None values, removed from) this process's
    environment for the server, e.g. ``{"CONDUIT_DATA_DIR": str(tmp_path)}``. ``port``:
    the port to listen on (0, the default, picks a free one).
    """

    def __init__(self, example: str | os.PathLike, *extra_args: str,
                 start_timeout: float = 30.0, env: dict[str, str | None] | None = None,
                 port: int = 0) -> None:
        self.example = str(example)
        self.log_lines: list[str] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        child_env = None
        if env:
            child_env = dict(os.environ)
            for name, value in env.items():
                if value is None:
                    child_env.pop(name, None)
                else:
                    child_env[name] = value
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "conduit", "run", self.example, "--port", str(port),
             *extra_args],
            cwd=REPO_ROOT,
            env=child_env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        # Keep draining stderr for the whole run: an access log that fills the pipe would
        # block the server.
        self._reader = threading.Thread(target=self._read_log, daemon=True)
        self._reader.start()
        self.base_url = self._wait_for_port(start_timeout)
        self.port = int(self.base_url.rsplit(":", 1)[1])

    def _read_log(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.log_lines.append(line.rstrip("\n"))
            self._lines.put(line)
        self._lines.put(None)

    def _wait_for_port(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.kill()
                raise RuntimeError(
                    f"{self.example}: no 'conduit running on' line within {timeout:.0f}s\n"
                    + self.log
                )
            try:
                line = self._lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                code = self.proc.wait()
                raise RuntimeError(
                    f"{self.example}: server exited with {code} before it listened\n" + self.log
                )
            match = RUNNING_LINE.search(line)
            if match:
                return match.group(1)

    @property
    def log(self) -> str:
        return "\n".join(self.log_lines)

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM (a graceful drain), then wait; returns the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise
        self._reader.join(timeout=5)
        return code

    def kill(self) -> None:
        """SIGKILL (``kill -9``: no drain, no cleanup), then wait."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(timeout=5)

    def __enter__(self) -> ExampleServer:
        return self

    def __exit__(self, *exc_info) -> None:
        if self.proc.poll() is None:
            self.stop()


def launch_chromium(playwright, **kwargs):
    """Debian's Chromium through Playwright, headless, with the flags this machine needs."""
    return playwright.chromium.launch(
        executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS, **kwargs
    )


def wait_until_bindable(port: int, timeout: float = 10.0) -> None:
    """Wait until a killed server's port can be bound again (to restart on the same port)."""
    deadline = time.monotonic() + timeout
    while True:
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", port))
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
        time.sleep(0.05)
