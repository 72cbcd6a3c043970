"""The seed's example over HTTPS (conduit's own TLS, conduit.net.tls): headless Chromium
(BoringSSL, ALPN h2 and http/1.1 offered) and curl against ``python -m conduit run
examples/sse_simple_server.py --ssl-certfile ... --ssl-keyfile ...``, with a certificate
made for the test by the ``openssl`` command."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from e2e_harness import ExampleServer
from test_sse_simple_server import COUNTER_DONE, COUNTER_FRAMES, panel_events

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None,
                                reason="needs the openssl command for a test certificate")


@pytest.fixture
def https_server(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
         "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "2", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True, timeout=30)
    server = ExampleServer("examples/sse_simple_server.py", "--ssl-certfile", str(cert),
                           "--ssl-keyfile", str(key))
    try:
        yield server, cert
    finally:
        assert server.stop(timeout=20) == 0, server.log


def test_the_page_streams_over_https_in_chromium(https_server, browser):
    server, _ = https_server
    assert server.base_url.startswith("https://")
    context = browser.new_context(ignore_https_errors=True)  # the test's own certificate
    try:
        page = context.new_page()
        page.set_default_timeout(30_000)
        page.goto(f"{server.base_url}/")
        assert page.evaluate("() => location.protocol") == "https:"
        # ALPN offered h2 and http/1.1; conduit chose http/1.1
        assert page.evaluate(
            "() => performance.getEntriesByType('navigation')[0].nextHopProtocol") == "http/1.1"
        page.wait_for_function(COUNTER_DONE, timeout=30_000)
        assert panel_events(page, "counter-output") == [(i, f"#{i} {i}") for i in range(1, 11)]
        page.wait_for_function(
            "() => document.querySelectorAll('#time-output .event').length >= 2")
        assert page.text_content("#time-status") == "connected"
    finally:
        context.close()


def test_curl_reads_the_count_stream_over_https(https_server, curl):
    server, cert = https_server
    result = subprocess.run([curl, "-N", "-sS", "--cacert", str(cert), f"{server.base_url}/count"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout == COUNTER_FRAMES
