"""Screenshot an example's page in headless Chromium once its streams have shown events.

    python tests/e2e/screenshot.py examples/sse_simple_server.py \
        docs/screenshots/sse_simple_server.png

Starts the example through ``python -m conduit run EXAMPLE --port 0``, opens ``/`` in
Debian's Chromium (/usr/bin/chromium, through Playwright), waits until every
``.output`` panel has events (at least --min-events each; a panel whose status says
"done" counts as ready), saves a full-page PNG, then stops the server with SIGTERM and
checks it exited with 0.

An example listed in ``PREPARE`` gets some state first: its commands are POSTed before the
page opens, the page is ready when that entry's ``ready`` function says so, and its
``click`` selector (if any) is clicked before the picture. The server always runs on a
new, temporary CONDUIT_DATA_DIR, so durable examples start empty and leave nothing behind.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import httpx
from e2e_harness import REPO_ROOT, ExampleServer, launch_chromium

READY = """(minEvents) => {
  const panels = [...document.querySelectorAll(".output")];
  return panels.length > 0 && panels.every((panel) => {
    const status = panel.parentElement.querySelector(".status");
    const done = status && status.textContent.startsWith("done");
    return done || panel.querySelectorAll(".event").length >= minEvents;
  });
}"""

# Per example (by file stem): requests to make before the page opens, and what "ready" is.
PREPARE = {
    "dizzy_documents": {
        "posts": [
            ("/command", {"type": "CreateDocument", "data": {
                "id": "meeting-notes", "content": "Agenda\n- ship the SSE edition\n- demo"}}),
            ("/command", {"type": "CreateDocument", "data": {
                "id": "shopping-list", "content": "coffee, oat milk, bread"}}),
            ("/command", {"type": "CreateDocument", "data": {
                "id": "ideas", "content": "draft"}}),
            ("/command", {"type": "SaveDocument", "data": {
                "id": "ideas", "content": "Commands go up as POSTs; events come back over SSE."}}),
            ("/command", {"type": "SaveDocument", "data": {
                "id": "meeting-notes",
                "content": "Agenda\n- ship the SSE edition\n- demo in two tabs\n- kill -9 it"}}),
        ],
        "ready": """() => document.querySelectorAll("#documents .document").length >= 3
            && document.getElementById("connection").textContent === "connected" """,
        "click": '#documents .document[data-id="meeting-notes"]',
    },
}


def prepare(base_url: str, posts) -> None:
    for path, body in posts:
        response = httpx.post(base_url + path, json=body, timeout=10)
        response.raise_for_status()


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

    setup = PREPARE.get(example.stem, {})
    data_dir = tempfile.TemporaryDirectory(prefix="conduit-screenshot-")
    server = ExampleServer(example, env={"CONDUIT_DATA_DIR": data_dir.name})
    try:
        prepare(server.base_url, setup.get("posts", ()))
        with sync_playwright() as playwright:
            browser = launch_chromium(playwright)
            try:
                page = browser.new_page(viewport={"width": args.width, "height": args.height})
                page.goto(server.base_url + args.path)
                if "ready" in setup:
                    page.wait_for_function(setup["ready"], timeout=args.timeout * 1000)
                else:
                    page.wait_for_function(READY, arg=args.min_events,
                                           timeout=args.timeout * 1000)
                if "click" in setup:
                    page.click(setup["click"])
                page.screenshot(path=str(output), full_page=True)
            finally:
                browser.close()
    finally:
        code = server.stop()
        data_dir.cleanup()
    if code != 0:
        print(f"server exited with {code}:\n{server.log}", file=sys.stderr)
        return 1
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
