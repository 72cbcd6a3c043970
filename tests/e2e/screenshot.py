"""Screenshot an example's page in headless Chromium once its streams have shown events.

    python tests/e2e/screenshot.py examples/sse_simple_server.py \
        docs/screenshots/sse_simple_server.png

Starts the example through ``python -m conduit run EXAMPLE --port 0``, opens ``/`` in
Debian's Chromium (/usr/bin/chromium, through Playwright), waits until every
``.output`` panel has events (at least --min-events each; a panel whose status says
"done" counts as ready), saves a full-page PNG, then stops the server with SIGTERM and
checks it exited with 0.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from e2e_harness import REPO_ROOT, ExampleServer, launch_chromium

READY = """(minEvents) => {
  const panels = [...document.querySelectorAll(".output")];
  return panels.length > 0 && panels.every((panel) => {
    const status = panel.parentElement.querySelector(".status");
    const done = status && status.textContent.startsWith("done");
    return done || panel.querySelectorAll(".event").length >= minEvents;
  });
}"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("example", help="the example file, e.g. examples/sse_simple_server.py")
    parser.add_argument("output", help="where to write the PNG")
    parser.add_argument("--path", default="/", help="page to open (default: %(default)s)")
    parser.add_argument("--min-events", type=int, default=3,
                        help="events each live panel must show first (default: %(default)s)")
    parser.add_argument("--width", type=int, default=1100)
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for events")
    args = parser.parse_args(argv)

    from playwright.sync_api import sync_playwright

    output = Path(args.output)
    if not output.is_absolute():
        output = Path.cwd() / output
    output.parent.mkdir(parents=True, exist_ok=True)
    example = Path(args.example).resolve().relative_to(REPO_ROOT)

    server = ExampleServer(example)
    try:
        with sync_playwright() as playwright:
            browser = launch_chromium(playwright)
            try:
                page = browser.new_page(viewport={"width": args.width, "height": args.height})
                page.goto(server.base_url + args.path)
                page.wait_for_function(READY, arg=args.min_events,
                                       timeout=args.timeout * 1000)
                page.screenshot(path=str(output), full_page=True)
            finally:
                browser.close()
    finally:
        code = server.stop()
    if code != 0:
        print(f"server exited with {code}:\n{server.log}", file=sys.stderr)
        return 1
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
