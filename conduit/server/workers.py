"""``--workers N``: N server processes on one port, under a supervisor.

    python -m conduit run app.py --workers 2

      supervisor (this module; the process you started)
        holds the port (bound, never listening), a private temp dir with two Unix sockets:
          control.sock  each worker says "ready" here once its socket listens
          broker.sock   the hub they share (conduit.server.local_broker), unless --broker
        |  spawns, watches, restarts, signals
      worker 1 ... worker N: python -m conduit run app.py ... --worker-of <dir> <n>
        the normal Server, its listening socket in the port's SO_REUSEPORT group: the
        kernel spreads new connections over the workers

Theory of operation
1. The supervisor binds the address itself first, with SO_REUSEPORT, and never listens on
   that socket: a bad address or a taken port is reported once, with exit status 3, before
   any worker starts; ``--port 0`` is resolved to one port every worker then binds; and
   the port stays reserved while a worker restarts. (A bound socket that does not listen
   is not in the group: the kernel gives it no connections.)
2. Workers are fresh interpreters (``sys.executable -m conduit run ... --worker-of DIR N``),
   not forks of the supervisor: a fork would inherit whatever the supervisor had imported
   or started (threads, the app's own state, its sockets), and the app is imported in the
   worker exactly as ``--workers 1`` imports it. Each worker runs in its own process group,
   so a CTRL+C in a terminal reaches the supervisor alone, which then drains every worker
   once (rather than each worker seeing the signal twice and cutting its connections).
3. A worker is *ready* when it has said so on ``control.sock`` (after binding, before
   serving; with the local broker it has attached too). When all N are ready, the
   supervisor logs ``conduit running on http://host:port``.
4. A worker that exits while the supervisor is not stopping is restarted, with a log line.
   Crash loops back off: beyond ``MAX_RESTARTS`` restarts of one worker within
   ``RESTART_WINDOW_SECONDS`` the next restart waits (doubling up to
   ``MAX_BACKOFF_SECONDS``). A worker that exits with status 3 (its app cannot be
   imported, its address cannot be bound) cannot succeed on a retry: the supervisor stops
   every worker and exits with 3.
5. SIGINT/SIGTERM to the supervisor: it stops restarting and sends SIGTERM to every worker,
   which drains as one server would (waves of ``retry:`` lines, ``graceful_timeout``); the
   broker keeps running until the last worker has exited. Exit status 0 when every worker
   exited cleanly, else 1. A second signal is forwarded too (the workers cut their
   connections: status 1). Workers still alive ``KILL_GRACE_SECONDS`` after the graceful
   timeout are killed.
6. If the supervisor dies (even by SIGKILL), its workers must not serve on alone (they
   would no longer share one hub): on Linux each worker asks the kernel for SIGTERM when
   its parent dies (``prctl(PR_SET_PDEATHSIG)``) and drains; elsewhere it watches its
   control connection and drains when it closes.
7. The broker can give up on a worker that falls too far behind (rule 4 of
   ``conduit.server.local_broker``): the supervisor then sends it SIGTERM (SIGKILL after the
   graceful timeout) and restarts it when it has exited.

``/metrics`` and ``App.stats()`` describe the worker that answers the request (each worker
has its own connections and counters); the supervisor serves no HTTP.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import deque
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from conduit.server.local_broker import LocalBrokerServer

log = logging.getLogger("conduit.server")

EXIT_STARTUP_FAILED = 3
MAX_RESTARTS = 5
RESTART_WINDOW_SECONDS = 30.0
MAX_BACKOFF_SECONDS = 30.0
KILL_GRACE_SECONDS = 5.0
TURN_SECONDS = 0.5
CONTROL_SOCKET = "control.sock"
BROKER_SOCKET = "broker.sock"
_PR_SET_PDEATHSIG = 1


class _Worker:
    __slots__ = ("index", "proc", "ready", "started_at", "starts", "restart_at", "retiring",
                 "kill_at", "pids")

    def __init__(self, index: int) -> None:
        self.index = index
        self.proc: subprocess.Popen[bytes] | None = None
        self.ready = False
        self.started_at = 0.0
        self.starts: deque = deque()  # start times within the restart window
        self.restart_at: float | None = None
        self.retiring = False
        self.kill_at: float | None = None
        self.pids: list = []  # every process this worker has been

    @property
    def pid(self):
        return self.proc.pid if self.proc is not None else None


class Supervisor:
    """Runs ``config.workers`` workers (see the module docstring).

    ``argv``: the ``python -m conduit`` arguments the workers get (the supervisor's own,
    then ``--port <the bound port> --worker-of <dir> <n>``). ``broker``: the local broker
    to run (a ``conduit.server.local_broker.LocalBrokerServer`` made with the socket path
    ``broker_path(dir)``), or None when the workers have their own (``--broker``).
    """

    def __init__(self, config, argv: list, make_broker=None) -> None:
        self.config = config
        self.argv = list(argv)
        self.make_broker = make_broker  # called with (socket path, on_slow_worker)
        self.broker: LocalBrokerServer | None = None
        self.workers = [_Worker(i + 1) for i in range(config.workers)]
        self.stopping = False
        self.forced = False
        self.exit_code = 0
        self.stop_deadline = None
        self.dir: str | None = None  # the private temp dir: set by run()
        self.port: int | None = None
        self._holder: socket.socket | None = None  # the bound socket that reserves the port
        self._selector: selectors.BaseSelector | None = None
        self._control: socket.socket | None = None
        self._signals: list = []
        self._announced = False

    # -- startup (rules 1-3) -----------------------------------------------------------
    def bind(self) -> int:
        """Reserve the address (rule 1); returns the port. Raises OSError."""
        config = self.config
        infos = socket.getaddrinfo(config.host, config.port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
        family, socktype, proto, _, address = infos[0]
        sock = socket.socket(family, socktype, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            sock.bind(address)
        except BaseException:
            sock.close()
            raise
        self._holder = sock
        self.port = sock.getsockname()[1]
        return self.port

    def run(self) -> int:
        config = self.config
        try:
            self.bind()
        except OSError as exc:
            log.error("cannot listen on %s:%d: %s", config.host, config.port,
                      exc.strerror or exc)
            return EXIT_STARTUP_FAILED
        self.dir = tempfile.mkdtemp(prefix="conduit-workers-")
        self._selector = selectors.DefaultSelector()
        try:
            return self._run()
        finally:
            for worker in self.workers:  # nothing outlives the supervisor
                if worker.proc is not None and worker.proc.poll() is None:
                    worker.proc.kill()
                    worker.proc.wait()
            if self.broker is not None:
                self.broker.close()
            self._selector.close()
            assert self._holder is not None  # bind() succeeded
            self._holder.close()
            shutil.rmtree(self.dir, ignore_errors=True)

    def _run(self) -> int:
        log.info("Started supervisor process [%d] for %d workers", os.getpid(),
                 len(self.workers))
        assert self.dir is not None and self._selector is not None  # set by run()
        control = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        control.bind(os.path.join(self.dir, CONTROL_SOCKET))
        control.listen(64)
        control.setblocking(False)
        self._control = control
        self._selector.register(control, selectors.EVENT_READ, self._accept_control)
        if self.make_broker is not None:
            self.broker = self.make_broker(os.path.join(self.dir, BROKER_SOCKET),
                                           self.retire)
            self.broker.start(self._selector)
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        os.set_blocking(wake_w, False)
        self._selector.register(wake_r, selectors.EVENT_READ, lambda mask: _drain_pipe(wake_r))
        previous_wakeup = signal.set_wakeup_fd(wake_w)
        previous = {signum: signal.signal(signum, self._on_signal)
                    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGCHLD,
                                   signal.SIGHUP)}
        try:
            for worker in self.workers:
                self._start(worker)
            while True:
                self._turn()
                # NOTE: leave only when _reap has seen every exit (it sets proc to None
                # after logging the status and counting it in exit_code). Testing
                # poll() here instead raced: a worker exiting between _reap and this
                # check was never reaped, so a failure during the drain went unreported
                # and the supervisor could exit 0.
                if self.stopping and all(w.proc is None for w in self.workers):
                    break
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            signal.set_wakeup_fd(previous_wakeup)
            os.close(wake_r)
            os.close(wake_w)
        log.info("Finished supervisor process [%d]", os.getpid())
        return self.exit_code

    def _worker_argv(self, worker: _Worker) -> list:
        return [sys.executable, "-m", "conduit", *self.argv, "--port", str(self.port),
                "--worker-of", self.dir, str(worker.index)]

    def _start(self, worker: _Worker) -> None:
        now = time.monotonic()
        if sys.version_info >= (3, 11):
            worker.proc = subprocess.Popen(self._worker_argv(worker), process_group=0)
        else:  # NOTE: process_group is 3.11+; this is what it does (setpgid(0, 0) in the child)
            worker.proc = subprocess.Popen(self._worker_argv(worker), preexec_fn=os.setpgrp)
        worker.pids.append(worker.proc.pid)
        worker.ready = False
        worker.retiring = False
        worker.kill_at = None
        worker.restart_at = None
        worker.started_at = now
        worker.starts.append(now)
        log.info("worker %d started [%d]", worker.index, worker.proc.pid)

    # -- the loop ----------------------------------------------------------------------
    def _on_signal(self, signum, frame) -> None:
        # set_wakeup_fd wakes the selector; the loop does the work
        self._signals.append(signum)

    def _turn(self) -> None:
        timeout = TURN_SECONDS
        now = time.monotonic()
        for worker in self.workers:
            if worker.restart_at is not None:
                timeout = max(0.0, min(timeout, worker.restart_at - now))
        assert self._selector is not None  # set by run()
        for key, mask in self._selector.select(timeout):
            key.data(mask)
        if self.broker is not None:
            self.broker.after_turn()
            if self.broker.fatal_error and not self.stopping:
                log.error("workers' broker: %s; stopping", self.broker.fatal_error)
                self.exit_code = EXIT_STARTUP_FAILED
                self._stop()
        while self._signals:
            signum = self._signals.pop(0)
            if signum in (signal.SIGINT, signal.SIGTERM):
                self._on_stop_signal(signum)
            elif signum == signal.SIGHUP and not self.stopping:
                # TLS certificate reload: each worker reloads its own
                # (conduit.server.server rule 5)
                log.info("SIGHUP: passed on to the workers")
                self._signal_all(signal.SIGHUP)
        self._reap()
        now = time.monotonic()
        for worker in self.workers:
            if worker.restart_at is not None and now >= worker.restart_at \
                    and not self.stopping:
                self._start(worker)
            proc = worker.proc
            if worker.kill_at is not None and now >= worker.kill_at and proc is not None \
                    and proc.poll() is None:
                log.warning("worker %d [%d] did not exit in time: killing it", worker.index,
                            proc.pid)
                proc.kill()
                worker.kill_at = None
        if self.stopping and self.stop_deadline is not None and now > self.stop_deadline:
            for worker in self.workers:
                if worker.proc is not None and worker.proc.poll() is None:
                    log.warning("worker %d [%d] still running after the graceful timeout: "
                                "killing it", worker.index, worker.proc.pid)
                    worker.proc.kill()
                    self.exit_code = self.exit_code or 1
            self.stop_deadline = None

    def _reap(self) -> None:
        for worker in self.workers:
            proc = worker.proc
            if proc is None or worker.restart_at is not None:
                continue
            code = proc.poll()
            if code is None:
                continue
            worker.proc = None  # reaped: reported once
            how = f"signal {signal.Signals(-code).name}" if code < 0 else f"status {code}"
            if self.stopping:
                clean = code == 0 or (code == -signal.SIGTERM and not worker.ready)
                if not clean:
                    self.exit_code = self.exit_code or 1
                log.info("worker %d [%d] exited (%s)", worker.index, proc.pid, how)
                continue
            if code == EXIT_STARTUP_FAILED:
                log.error("worker %d [%d] could not start (%s): stopping", worker.index,
                          proc.pid, how)
                self.exit_code = EXIT_STARTUP_FAILED
                self._stop()
                continue
            why = "after the broker gave up on it" if worker.retiring else "unexpectedly"
            delay = self._restart_delay(worker)
            log.warning("worker %d [%d] exited %s (%s); restarting it%s", worker.index,
                        proc.pid, why, how, f" in {delay:.0f} s (crash loop)" if delay else "")
            worker.restart_at = time.monotonic() + delay

    def _restart_delay(self, worker: _Worker) -> float:
        now = time.monotonic()
        starts = worker.starts
        while starts and now - starts[0] > RESTART_WINDOW_SECONDS:
            starts.popleft()
        excess = len(starts) - MAX_RESTARTS
        return 0.0 if excess < 0 else min(MAX_BACKOFF_SECONDS, 2.0 ** excess)

    # -- stopping (rule 5) -------------------------------------------------------------
    def _on_stop_signal(self, signum) -> None:
        name = signal.Signals(signum).name
        if not self.stopping:
            log.info("%s: draining %d workers", name, len(self.workers))
            self._stop()
            return
        log.warning("%s again: the workers cut their connections", name)
        self.forced = True
        self.exit_code = self.exit_code or 1
        self._signal_all(signal.SIGTERM)

    def _stop(self) -> None:
        self.stopping = True
        self.stop_deadline = (time.monotonic() + self.config.graceful_timeout_seconds
                              + KILL_GRACE_SECONDS)
        for worker in self.workers:
            worker.restart_at = None
        self._signal_all(signal.SIGTERM)

    def _signal_all(self, signum) -> None:
        for worker in self.workers:
            proc = worker.proc
            if proc is not None and proc.poll() is None:
                try:
                    proc.send_signal(signum)
                except ProcessLookupError:
                    pass

    def retire(self, pid: int) -> None:
        """Restart the worker with this pid (the broker gave up on it: rule 7)."""
        for worker in self.workers:
            proc = worker.proc
            if proc is not None and proc.pid == pid and proc.poll() is None:
                worker.retiring = True
                worker.kill_at = (time.monotonic() + self.config.graceful_timeout_seconds
                                  + KILL_GRACE_SECONDS)
                proc.send_signal(signal.SIGTERM)

    # -- control connections (rule 3) --------------------------------------------------
    def _accept_control(self, mask) -> None:
        assert self._control is not None and self._selector is not None  # registered by _run
        while True:
            try:
                conn, _ = self._control.accept()
            except (BlockingIOError, InterruptedError):
                return
            conn.setblocking(False)
            buffer = bytearray()
            self._selector.register(
                conn, selectors.EVENT_READ,
                lambda mask, conn=conn, buffer=buffer: self._on_control(conn, buffer))

    def _on_control(self, conn, buffer: bytearray) -> None:
        try:
            data = conn.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:  # the worker exited; its connection is done
            assert self._selector is not None  # registered by _accept_control
            self._selector.unregister(conn)
            conn.close()
            return
        buffer += data
        while b"\n" in buffer:
            line, _, rest = bytes(buffer).partition(b"\n")
            buffer[:] = rest
            words = line.decode("ascii", "replace").split()
            if len(words) == 3 and words[0] == "ready":
                self._on_ready(int(words[1]), int(words[2]))

    def _on_ready(self, index: int, pid: int) -> None:
        for worker in self.workers:
            if worker.index == index and worker.pid == pid:
                worker.ready = True
        if not self._announced and all(w.ready for w in self.workers):
            self._announced = True
            host = self.config.host
            shown = f"[{host}]" if ":" in host else host
            scheme = "https" if self.config.ssl_certfile else "http"
            log.info("conduit running on %s://%s:%d with %d workers (Press CTRL+C to "
                     "quit)", scheme, shown, self.port, len(self.workers))


def _drain_pipe(fd: int) -> None:
    try:
        while os.read(fd, 4096):
            pass
    except (BlockingIOError, InterruptedError):
        pass


def broker_path(directory: str) -> str:
    return os.path.join(directory, BROKER_SOCKET)


# -- the worker's side -----------------------------------------------------------------------
class WorkerLink:
    """A worker's tie to its supervisor (``--worker-of DIR N``): the death signal, the
    ready line, and (where there is no death signal) draining when the supervisor goes."""

    def __init__(self, directory: str, index: int) -> None:
        self.dir = directory
        self.index = index
        self.sock: socket.socket | None = None
        self.pdeathsig = _set_parent_death_signal(signal.SIGTERM)

    @property
    def broker_path(self):
        """The local broker's socket, or None when the workers use another broker."""
        path = broker_path(self.dir)
        return path if os.path.exists(path) else None

    def ready(self, server) -> None:
        """Tell the supervisor this worker listens (after ``server.bind()``)."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(10.0)
        try:
            sock.connect(os.path.join(self.dir, CONTROL_SOCKET))
            sock.sendall(f"ready {self.index} {os.getpid()}\n".encode())
        except OSError as exc:
            sock.close()
            raise RuntimeError(f"the supervisor is gone ({exc})") from exc
        sock.setblocking(False)
        self.sock = sock
        if not self.pdeathsig:
            def on_readable():
                try:
                    data = sock.recv(64)
                except (BlockingIOError, InterruptedError):
                    return
                except OSError:
                    data = b""
                if not data:
                    server.loop.remove_reader(sock.fileno())
                    if not server.draining:
                        log.warning("the supervisor is gone: draining")
                        server.shutdown(signal.SIGTERM)

            server.loop.add_reader(sock.fileno(), on_readable)


def _set_parent_death_signal(signum) -> bool:
    """Ask Linux for ``signum`` when the parent dies (rule 6); False where it cannot."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, int(signum), 0, 0, 0) != 0:
            return False
    except (OSError, AttributeError):
        return False
    if os.getppid() == 1:  # the parent died before we asked
        os.kill(os.getpid(), signum)
    return True
