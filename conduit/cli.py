"""Command line: ``python -m conduit run TARGET [options]`` and ``python -m conduit --version``.

TARGET is a file (``examples/app.py``, ``examples/app.py:app``) or a module
(``package.module:app``); without ``:attr`` the object named ``app`` is served. Every
option maps to one ``Config`` field (``--heartbeat-seconds`` -> ``heartbeat_seconds``).
Exit status: 0 after a graceful shutdown, 1 after a forced one, 2 for bad options, 3 when
the target cannot be imported, the address cannot be bound or the broker (``--broker``)
cannot be reached.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import importlib.util
import logging
import os
import sys
from collections.abc import Callable
from typing import Any, cast

from conduit.config import LOG_LEVELS, LOOPS, Config

EXIT_STARTUP_FAILED = 3

# Extra option names for some Config fields (uvicorn's name for the graceful timeout).
_ALIASES = {"graceful_timeout_seconds": ("--timeout-graceful-shutdown",)}

_HELP = {
    "host": "address to listen on (default: %(default)s)",
    "port": "port to listen on; 0 picks a free one and the log says which (default: %(default)s)",
    "log_level": "log level (default: %(default)s)",
    "access_log": "log one line per request (default: on)",
    "backlog": "listen backlog (default: %(default)s)",
    "heartbeat_seconds": "send ': ping' on streams idle this long; 0 disables "
                         "(default: %(default)s)",
    "high_water_bytes": "pause a stream's producer above this many queued bytes "
                        "(default: %(default)s)",
    "low_water_bytes": "resume it at or below this many (default: %(default)s)",
    "request_timeout_seconds": "close a connection whose request takes longer to arrive, with "
                               "a 408 (default: %(default)s)",
    "keepalive_timeout_seconds": "close idle keep-alive connections after this long "
                                 "(default: %(default)s)",
    "write_timeout_seconds": "cut a connection whose client stopped reading (outbox above "
                             "the high-water mark, no progress) after this long; 0 disables "
                             "(default: %(default)s)",
    "graceful_timeout_seconds": "on SIGINT/SIGTERM, end streams in waves over the first half "
                                "of this, and cut connections still open after it "
                                "(default: %(default)s)",
    "max_connections": "close new connections beyond this many (default: %(default)s)",
    "max_connections_per_client": "close new connections from one client address beyond this "
                                  "many; 0 = no limit (behind a proxy all clients share its "
                                  "address; 256 suits a server exposed directly) "
                                  "(default: %(default)s)",
    "max_request_line_bytes": "longest request line, else 414 (default: %(default)s)",
    "max_header_bytes": "largest header block, else 431 (default: %(default)s)",
    "max_header_count": "most header fields, else 431 (default: %(default)s)",
    "max_body_bytes": "largest request body, else 413 (default: %(default)s)",
    "max_streamed_body_bytes": "largest request body streamed to an ASGI app, else 413 "
                               "(default: no limit)",
    "workers": "worker processes sharing the port (SO_REUSEPORT) under a supervisor that "
               "restarts them and makes them one hub; 1 serves from this process "
               "(default: %(default)s)",
    "broker": "join the channels of every server using this broker: redis://host:port/db "
              "(?prefix=name for the Redis keys; needs pip install 'conduit-sse[redis]'); "
              "default: the CONDUIT_BROKER environment variable, else none",
    "loop": "the asyncio event loop handlers run on: uvloop (pip install "
            "'conduit-sse[uvloop]'), asyncio, or auto = uvloop when installed "
            "(default: %(default)s)",
    "gc_threshold": "the cyclic garbage collector's first threshold while serving; "
                    "0 = Python's own (default: %(default)s)",
    "thread_pool_size": "threads for blocking work (conduit.to_thread, asyncio.to_thread, "
                        "run_in_executor(None)) (default: %(default)s)",
    "ssl_certfile": "serve HTTPS with this certificate (PEM, with its chain); "
                    "SIGHUP reloads it and the key without dropping connections",
    "ssl_keyfile": "its private key (PEM; default: in the certificate file)",
    "ssl_keyfile_password": "the password of an encrypted key",
    "ssl_ca_certs": "CA certificates (PEM) for client certificates",
    "ssl_ciphers": "OpenSSL cipher list for TLS 1.2 (default: OpenSSL's)",
    "ssl_cert_reqs": "client certificates: 0 not asked, 1 optional, 2 required; checked "
                     "against --ssl-ca-certs (default: %(default)s)",
    "ssl_handshake_timeout_seconds": "close a connection whose TLS handshake takes longer "
                                     "(default: %(default)s)",
}


class _Formatter(logging.Formatter):
    """uvicorn-style lines: 'INFO:     message'."""

    def format(self, record: logging.LogRecord) -> str:
        message = super().format(record)
        return f"{record.levelname + ':':<10}{message}"


def setup_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter("%(message)s"))
    root = logging.getLogger("conduit")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False


def version_line() -> str:
    from conduit import __version__, _ext

    state = "on" if _ext.compiled_active() else "off"
    return f"conduit {__version__} (compiled extensions: {state})"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m conduit",
        description="conduit: a native-speed Server-Sent Events server.",
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    commands = parser.add_subparsers(dest="command")
    run = commands.add_parser(
        "run", help="serve an application",
        description="Serve an application. " + (__doc__ or "").split("\n\n")[1],
    )
    run.add_argument("target", help="a file (app.py, app.py:attr) or module (pkg.mod:attr)")
    # Internal: what the supervisor of --workers N passes to its workers.
    run.add_argument("--worker-of", nargs=2, metavar=("DIR", "N"), help=argparse.SUPPRESS)
    defaults = Config()
    for field in dataclasses.fields(Config):
        flag = "--" + field.name.replace("_", "-")
        default = getattr(defaults, field.name)
        if field.type == "bool":
            run.add_argument(flag, dest=field.name, action=argparse.BooleanOptionalAction,
                             default=default, help=_HELP.get(field.name))
        elif field.name in ("log_level", "loop"):
            run.add_argument(flag, dest=field.name, default=default, help=_HELP.get(field.name),
                             choices=LOG_LEVELS if field.name == "log_level" else LOOPS)
        else:
            # Config's annotations are strings (it has `from __future__ import annotations`)
            kinds: dict[str, Callable[[str], Any]] = {
                "int": int, "float": float, "int | None": _limit}
            kind = kinds.get(cast(str, field.type), str)
            run.add_argument(flag, *_ALIASES.get(field.name, ()), dest=field.name, type=kind,
                             default=default, help=_HELP.get(field.name))
    return parser


def _limit(text: str) -> int | None:
    """An optional limit on the command line: a number, or "none" for no limit."""
    if text.lower() == "none":
        return None
    return int(text)


class TargetError(Exception):
    pass


def load_target(target: str):
    """Import TARGET and return the application object it names."""
    spec, _, attr = target.partition(":")
    if not spec:
        raise TargetError(f"empty target {target!r}")
    attr = attr or "app"
    if spec.endswith(".py") or os.sep in spec or os.path.isfile(spec):
        path = os.path.abspath(spec)
        if not os.path.isfile(path):
            raise TargetError(f"no such file: {spec}")
        directory = os.path.dirname(path)
        if directory not in sys.path:
            sys.path.insert(0, directory)
        name = os.path.splitext(os.path.basename(path))[0]
        module_spec = importlib.util.spec_from_file_location(name, path)
        if module_spec is None or module_spec.loader is None:  # not a .py file: no loader
            raise TargetError(f"cannot import {spec}: not a Python source file")
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module
        try:
            module_spec.loader.exec_module(module)
        except Exception as exc:
            raise TargetError(f"error while importing {spec}: {type(exc).__name__}: {exc}") from exc
    else:
        if os.getcwd() not in sys.path:
            sys.path.insert(0, os.getcwd())
        try:
            module = importlib.import_module(spec)
        except Exception as exc:
            raise TargetError(f"cannot import {spec}: {type(exc).__name__}: {exc}") from exc
    try:
        app = getattr(module, attr)
    except AttributeError:
        raise TargetError(f"{spec} has no attribute {attr!r}") from None
    if not callable(app):
        raise TargetError(f"{spec}:{attr} is not an application (got {type(app).__name__})")
    return app


def run_command(args) -> int:
    from conduit.server.asgi import LifespanFailed
    from conduit.server.server import BindError, Server, StartupError

    setup_logging(args.log_level)
    log = logging.getLogger("conduit.server")
    settings = {f.name: getattr(args, f.name) for f in dataclasses.fields(Config)}
    try:
        config = Config(**settings)
    except ValueError as exc:
        print(f"conduit: {exc}", file=sys.stderr)
        return 2
    link = None
    if args.worker_of is not None:  # a worker of --workers N (conduit.server.workers)
        from conduit.server.workers import WorkerLink

        link = WorkerLink(args.worker_of[0], int(args.worker_of[1]))
        if link.broker_path is not None:
            from conduit.app.channel import Hub

            Hub.logs_kept_by_broker = True  # the supervisor writes the durable logs
    elif config.workers > 1:
        return _supervise(args, config)
    broker = None
    broker_url = config.broker or os.environ.get("CONDUIT_BROKER", "")
    if broker_url and (link is None or link.broker_path is None):
        from conduit.app.broker import broker_from_url
        from conduit.app.channel import Hub

        try:
            broker = broker_from_url(broker_url)
        except ValueError as exc:
            print(f"conduit: --broker: {exc}", file=sys.stderr)
            return 2
        except RuntimeError as exc:  # redis-py missing
            log.error("%s", exc)
            return EXIT_STARTUP_FAILED
        Hub.logs_kept_by_broker = True  # the broker keeps the history: no local durable log
    try:
        app = load_target(args.target)
    except TargetError as exc:
        log.error("%s", exc)
        return EXIT_STARTUP_FAILED
    if not hasattr(app, "hub"):
        from conduit.server.asgi import ASGIApp, is_asgi_app

        if is_asgi_app(app):  # FastAPI, Starlette...: served through conduit.server.asgi
            app = ASGIApp(app)
    if broker is not None:
        if not hasattr(app, "hub"):
            log.error("--broker needs a conduit App; %s is a %s", args.target,
                      type(app).__name__)
            return EXIT_STARTUP_FAILED
        app.hub.broker = broker
    if link is not None and link.broker_path is not None and hasattr(app, "hub"):
        from conduit.server.local_broker import LocalBroker

        app.hub.broker = LocalBroker(link.broker_path)
    server = Server(app, config, worker=link.index if link is not None else None)
    try:
        server.bind()
    except BindError as exc:
        log.error("%s", exc.strerror)
        return EXIT_STARTUP_FAILED
    if link is not None:
        # From "ready" on the supervisor may send SIGTERM (a stop, a rolling restart): it
        # must drain this worker even before run() has started, not kill it.
        server.catch_signals()
        link.ready(server)
    from conduit.app.broker import BrokerUnavailable

    try:
        code = server.run()
    except BrokerUnavailable as exc:  # the broker cannot be reached at startup
        log.error("%s", exc.detail)
        return EXIT_STARTUP_FAILED
    except (StartupError, LifespanFailed) as exc:  # no uvloop; the app refused to start
        log.error("%s", exc)
        return EXIT_STARTUP_FAILED
    from conduit.server.aio import busy_workers

    if code != 0 or busy_workers():
        # NOTE: worker threads still blocked in to_thread() would make the interpreter wait
        # for them at exit; a forced exit (or a drain cut short) must not wait.
        if busy_workers():
            log.warning("exiting with %d worker threads still busy", busy_workers())
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def _supervise(args, config) -> int:
    """``--workers N``: the supervisor (conduit.server.workers), with the local broker
    unless the workers have a broker of their own (``--broker``/``CONDUIT_BROKER``)."""
    from conduit.server.local_broker import LocalBrokerServer
    from conduit.server.workers import Supervisor

    own_broker = getattr(config, "broker", None) or os.environ.get("CONDUIT_BROKER")
    make_broker = None if own_broker else (
        lambda path, on_slow: LocalBrokerServer(path, on_slow_worker=on_slow))
    return Supervisor(config, args.argv, make_broker).run()


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # what workers are started with
    if args.version:
        print(version_line())
        return 0
    if args.command == "run":
        try:
            return run_command(args)
        except KeyboardInterrupt:
            return 1
    parser.print_help(sys.stderr)
    return 2
