"""Start nginx + nchan as the benchmark's nchan peer: one process, on 127.0.0.1:PORT.

    python3 bench/peers/nginx_nchan/run.py --port 8005

Renders nginx.conf.template into a fresh temp dir (conf, pid, temp paths; errors go to
stderr), then *execs* nginx (daemon off, master_process off, one worker), so the pid that
started is the pid that serves. Temp dirs of earlier runs whose nginx is gone are removed.
Endpoints: GET /ready (200 "ok"), GET /events (nchan EventSource subscriber), POST /pub
(nchan publisher: the body is one message; 201 when a subscriber got it, 202 when none).

Known quirk: in this single-process mode nchan frees a structure twice when nginx exits, so
nginx ends with SIGABRT (status 134, "free(): double free detected") after SIGTERM/SIGQUIT.
It is harmless (serving is unaffected); core dumps are switched off so it leaves no core.
--master runs the production layout instead (a master and one worker process, which exits
cleanly): the serving process is then the master's only child, not the pid started.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
MODULE_CANDIDATES = ("/usr/lib/nginx/modules/ngx_nchan_module.so",
                     "/usr/share/nginx/modules/ngx_nchan_module.so")
PREFIX = "conduit-bench-nchan-"


def find_nginx() -> str:
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx")
                                      else None)
    if not found:
        sys.exit("nginx is not installed (bash bench/install-peers.sh)")
    return found


def find_module() -> str:
    for path in MODULE_CANDIDATES:
        if os.path.exists(path):
            return path
    sys.exit("the nchan module is not installed (apt-get install libnginx-mod-nchan)")


def clean_stale(root: Path) -> None:
    for old in root.glob(PREFIX + "*"):
        try:
            pid = int((old / "owner.pid").read_text())
            os.kill(pid, 0)
            continue  # still running
        except (OSError, ValueError):
            shutil.rmtree(old, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--master", action="store_true",
                        help="a master and one worker (the worker serves) instead of one process")
    args = parser.parse_args()
    nginx, module = find_nginx(), find_module()
    root = Path(tempfile.gettempdir())
    clean_stale(root)
    tmp = Path(tempfile.mkdtemp(prefix=PREFIX, dir=root))
    (tmp / "owner.pid").write_text(str(os.getpid()))  # exec keeps the pid
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    limit = soft if soft != resource.RLIM_INFINITY else 65536
    resource.setrlimit(resource.RLIMIT_CORE, (0, resource.getrlimit(resource.RLIMIT_CORE)[1]))
    conf = (HERE / "nginx.conf.template").read_text().format(
        port=args.port, tmp=tmp, module=module,
        master_process="on" if args.master else "off",
        worker_connections=max(1024, min(65536, limit - 32)))
    (tmp / "nginx.conf").write_text(conf)
    os.chdir(tmp)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(nginx, [nginx, "-p", str(tmp), "-e", "stderr", "-c", str(tmp / "nginx.conf")])


if __name__ == "__main__":
    main()
