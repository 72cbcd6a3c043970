"""Screenshot an example's page in headless Chromium once its streams have shown events.

    python tests/e2e/screenshot.py examples/sse_simple_server.py \
        docs/screenshots/sse_simple_server.png

Starts the example through ``python -m conduit run EXAMPLE --port 0``, opens ``/`` in
Debian's Chromium (/usr/bin/chromium, through Playwright), waits until every
``.output`` panel has events (at least --min-events each; a panel whose status says
"done" counts as ready), saves a full-page PNG, then stops the server with SIGTERM and
checks it exited with 0.

An example listed in ``PREPARE`` gets some state first: its commands are POSTed before the
page opens, the page is ready when that entry's ``ready`` function says so, its ``fill``
(selector, text) is typed and its ``click`` selector clicked before the picture, which
waits for ``after_click`` if given. The server always runs on a
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
    # The seed's page shows what arrives live: type, press Save, wait for the event.
    "fastapi_documents": {
        "ready": """() => document.getElementById("connection").textContent === "live" """,
        "fill": ("#doc", "Commands go up as POSTs to FastAPI; events come back from a "
                         "conduit channel."),
        "click": "#save",
        "after_click": """() => document.getElementById("status").textContent
            .includes("Saved document doc1")""",
    },
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
    # Nothing runs until a button is pressed: the first check presses "Run" (count_to,
    # n=8) and "List tools"; the page is ready when the run is done and the tools listed.
    "mcp_server": {
        "ready": """() => {
            if (!window.screenshotStarted) {
                window.screenshotStarted = true;
                document.getElementById("delay").value = "60";
                document.getElementById("run").click();
                document.getElementById("list-tools").click();
            }
            return document.getElementById("run-status").textContent.startsWith("done")
                && document.querySelectorAll("#tools .tool").length >= 2
                && !document.getElementById("list-tools").disabled;
        }""",
    },
    # progress, notifications, monitoring: the first check drives the page once (guarded
    # by a flag), as a user would; wait_for_function calls it until it returns true.
    "progress": {
        "ready": """() => {
            if (!window.shot) {
                window.shot = true;
                document.getElementById("seconds").value = "1.5";
                document.getElementById("start").click();
                document.getElementById("download").click();
            }
            return window.progressLog.job.final !== null
                && window.progressLog.download.final !== null;
        }""",
    },
    "notifications": {
        "posts": [
            ("/notify", {"title": "Backup finished", "body": "412 GiB in 38 min",
                         "level": "success"}),
            ("/notify", {"title": "New sign-up", "body": "ada@example.com joined",
                         "level": "info"}),
        ],
        "ready": """() => {
            if (!window.notify
                || document.getElementById("connection").textContent !== "connected"
                || document.querySelectorAll("#recent li").length < 2) return false;
            if (!window.shot) {
                window.shot = true;
                const send = (body) => fetch("/notify", {method: "POST",
                    headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)});
                send({title: "Disk almost full", body: "/var is at 91 %", level: "warning"})
                    .then(() => send({title: "Deploy finished", body: "v1.4.2 is live",
                                      level: "success"}));
            }
            const toasts = [...document.querySelectorAll("#toasts .toast")];
            return toasts.length >= 2 && toasts.every((t) => t.getAnimations().length === 0);
        }""",
    },
    "monitoring": {
        "ready": """() => {
            const count = window.monitor.count || 0;
            if (count >= 3 && !window.shot) {
                window.shot = true;
                document.getElementById("burst").click();
            }
            return count >= 9;
        }""",
    },
    "ai_chat": {
        # Ask two of the page's suggested questions, one after the other; ready when both
        # answers have streamed to their done state.
        "ready": """() => {
            const buttons = document.querySelectorAll(".suggestion");
            const done = document.querySelectorAll('.message.assistant[data-state="done"]');
            if (!window.shot) {
                window.shot = true;
                document.getElementById("delay").value = "15";
                buttons[0].click();
            } else if (done.length === 1 && !window.shot2) {
                window.shot2 = true;
                buttons[1].click();
            }
            return done.length >= 2;
        }""",
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
                if "fill" in setup:
                    page.fill(*setup["fill"])
                if "click" in setup:
                    page.click(setup["click"])
                if "after_click" in setup:
                    page.wait_for_function(setup["after_click"], timeout=args.timeout * 1000)
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
