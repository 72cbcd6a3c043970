"""HTTPS: conduit's own TLS (conduit.net.tls) over real sockets, with real clients.

httpx and curl verify the server against a test CA made by the ``tls_files`` fixture
(the ``openssl`` command); raw sockets send what a confused or hostile client would. Both
twins of the transport run these (the suite runs again with CONDUIT_EXTENSIONS=0).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import ssl
import subprocess
import threading

import httpx
import pytest
from integration_helpers import TIMEOUT, RawClient, wait_for

from conduit import App, SSEEvent

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None,
                                reason="needs the openssl command for test certificates")


def make_cert(directory, name: str, cn: str = "localhost") -> tuple:
    """A self-signed certificate for localhost and 127.0.0.1: (cert path, key path)."""
    cert, key = directory / f"{name}.pem", directory / f"{name}.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
         "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "2", "-subj", f"/CN={cn}",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True, timeout=TIMEOUT)
    return cert, key


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory):
    return make_cert(tmp_path_factory.mktemp("tls"), "server")


def tls_settings(tls_files, **more) -> dict:
    cert, key = tls_files
    return {"ssl_certfile": str(cert), "ssl_keyfile": str(key), **more}


def client_context(cafile) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(cafile))
    context.set_alpn_protocols(["h2", "http/1.1"])
    return context


def stream_app() -> App:
    app = App()

    @app.get("/count")
    def count(request):
        n = int(request.query.get("n", "10"))
        for i in range(1, n + 1):
            yield SSEEvent(f"tick {i}", event="tick", id=str(i))

    @app.get("/scheme")
    def scheme(request):
        return {"scheme": request.scheme}

    return app


def events_of(body: str) -> list:
    return [line[6:] for line in body.splitlines() if line.startswith("data: ")]


def test_a_stream_over_https_with_httpx(serve, tls_files):
    server = serve(stream_app(), **tls_settings(tls_files))
    assert server.url.startswith("https://")
    with httpx.Client(verify=client_context(tls_files[0]), timeout=TIMEOUT) as client:
        response = client.get(server.url + "/count?n=50")
        assert response.status_code == 200
        assert events_of(response.text) == [f"tick {i}" for i in range(1, 51)]
        # the same connection again (keep-alive), and the scheme the app sees
        assert client.get(server.url + "/scheme").json() == {"scheme": "https"}


def test_curl_reads_a_long_stream_over_https(serve, tls_files):
    """20,000 events (about 700 KB): many TLS records, more than one socket buffer."""
    server = serve(stream_app(), **tls_settings(tls_files))
    result = subprocess.run(
        ["curl", "-sSN", "--cacert", str(tls_files[0]), f"{server.url}/count?n=20000"],
        capture_output=True, timeout=TIMEOUT, check=True, text=True)
    assert events_of(result.stdout) == [f"tick {i}" for i in range(1, 20001)]


def test_a_slow_reader_over_tls_gets_every_byte(serve, tls_files):
    """A client with a 4 KiB receive buffer reads 60,000 events (about 2.3 MB) in small
    reads: the server's sends fall short, ciphertext waits, the generator is paused at the
    high-water mark and resumed, and nothing is lost or reordered."""
    server = serve(stream_app(), **tls_settings(tls_files))
    raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    raw.settimeout(TIMEOUT)
    raw.connect(server.address)
    with client_context(tls_files[0]).wrap_socket(raw, server_hostname="localhost") as tls:
        tls.sendall(b"GET /count?n=60000 HTTP/1.1\r\nHost: localhost\r\n"
                    b"Connection: close\r\n\r\n")
        received = bytearray()
        while True:
            piece = tls.recv(1024)
            if not piece:
                break
            received += piece
    head, _, body = bytes(received).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    text = b"".join(dechunk(body)).decode()
    assert events_of(text) == [f"tick {i}" for i in range(1, 60001)]


def dechunk(body: bytes):
    while True:
        size_line, _, rest = body.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            return
        yield rest[:size]
        body = rest[size + 2:]


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated")
def test_alpn_chooses_http_1_1_and_tls_1_2_is_the_floor(serve, tls_files):
    server = serve(stream_app(), **tls_settings(tls_files))
    with socket.create_connection(server.address, timeout=TIMEOUT) as raw:
        with client_context(tls_files[0]).wrap_socket(raw, server_hostname="localhost") as tls:
            assert tls.selected_alpn_protocol() == "http/1.1"
            assert tls.version() in ("TLSv1.2", "TLSv1.3")
    old = client_context(tls_files[0])
    old.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    old.maximum_version = ssl.TLSVersion.TLSv1_1
    try:
        old.set_ciphers("ALL:@SECLEVEL=0")
    except ssl.SSLError:
        pass
    with socket.create_connection(server.address, timeout=TIMEOUT) as raw:
        with pytest.raises((ssl.SSLError, OSError)):
            old.wrap_socket(raw, server_hostname="localhost")


def test_channel_fan_out_over_https(serve, tls_files):
    """Three subscribers, 300 events published at once: each gets all, in order (the
    hub's compiled write path encrypts each subscriber's slice)."""
    app = App()
    news = app.channel("news", history=1000)

    @app.get("/events")
    def events(request):
        return news.subscribe(request)

    server = serve(app, **tls_settings(tls_files))
    received = [[] for _ in range(3)]
    subscribed = threading.Barrier(4, timeout=TIMEOUT)

    def subscriber(index: int) -> None:
        with httpx.Client(verify=client_context(tls_files[0]), timeout=TIMEOUT) as client:
            with client.stream("GET", server.url + "/events") as response:
                lines = response.iter_lines()
                subscribed.wait()
                for line in lines:
                    if line.startswith("data: "):
                        received[index].append(line[6:])
                        if len(received[index]) == 300:
                            return

    threads = [threading.Thread(target=subscriber, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    wait_for(lambda: server.call(lambda: news.subscriber_count) == 3,
             what="three subscribers")
    subscribed.wait()
    server.call(lambda: news.publish_many([f"item {i}" for i in range(300)]))
    for thread in threads:
        thread.join(TIMEOUT)
        assert not thread.is_alive()
    assert received == [[f"item {i}" for i in range(300)]] * 3


def test_plain_http_to_the_tls_port_gets_a_plain_400(serve, tls_files, caplog):
    caplog.set_level("INFO", logger="conduit.net")
    server = serve(stream_app(), **tls_settings(tls_files))
    client = RawClient(server.address)
    client.send(b"GET /count HTTP/1.1\r\nHost: x\r\n\r\n")
    answer = client.read_to_eof()
    assert answer.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert b"use https://" in answer
    assert "plain HTTP request on the TLS port" in caplog.text
    # and the server goes on serving HTTPS
    with httpx.Client(verify=client_context(tls_files[0]), timeout=TIMEOUT) as https:
        assert https.get(server.url + "/scheme").status_code == 200


def test_garbage_and_a_failed_handshake_cost_one_log_line_each(serve, tls_files, caplog):
    caplog.set_level("INFO", logger="conduit.net")
    server = serve(stream_app(), **tls_settings(tls_files))
    client = RawClient(server.address)
    client.send(b"\x16\x03\x01\x00\x05hello, this is no ClientHello at all" * 4)
    client.read_to_eof()  # the server closes (after its alert, if it sends one)
    wait_for(lambda: "TLS handshake from 127.0.0.1" in caplog.text, what="the log line")
    lines = [r for r in caplog.records if "TLS handshake" in r.getMessage()]
    assert len(lines) == 1, [r.getMessage() for r in lines]
    # a client that does not trust the certificate: its handshake fails, the server lives
    with socket.create_connection(server.address, timeout=TIMEOUT) as raw:
        with pytest.raises(ssl.SSLCertVerificationError):
            ssl.create_default_context().wrap_socket(raw, server_hostname="localhost")
    with httpx.Client(verify=client_context(tls_files[0]), timeout=TIMEOUT) as https:
        assert https.get(server.url + "/scheme").json() == {"scheme": "https"}
    wait_for(lambda: server.connection_count() == 0, what="every connection released")


def test_a_stalled_handshake_is_closed_at_the_timeout(serve, tls_files, caplog):
    caplog.set_level("INFO", logger="conduit.net")
    server = serve(stream_app(), **tls_settings(tls_files, ssl_handshake_timeout_seconds=0.3))
    silent = RawClient(server.address)  # connects, never says anything
    half = RawClient(server.address)
    half.send(b"\x16\x03\x01\x02\x00\x01")  # the start of a ClientHello, then nothing
    assert silent.read_to_eof() == b""
    assert half.read_to_eof() == b""
    assert caplog.text.count("timed out") == 2
    wait_for(lambda: server.connection_count() == 0, what="both connections released")


def test_required_client_certificates(serve, tls_files, tmp_path, caplog):
    """--ssl-ca-certs with --ssl-cert-reqs 2: a client with a certificate from that CA is
    served; one without is refused in the handshake (one log line)."""
    caplog.set_level("INFO", logger="conduit.net")
    client_cert, client_key = make_cert(tmp_path, "client", cn="a-client")
    server = serve(stream_app(), **tls_settings(tls_files, ssl_ca_certs=str(client_cert),
                                                ssl_cert_reqs=2))
    with_cert = client_context(tls_files[0])
    with_cert.load_cert_chain(client_cert, client_key)
    with httpx.Client(verify=with_cert, timeout=TIMEOUT) as client:
        assert client.get(server.url + "/scheme").json() == {"scheme": "https"}
    with httpx.Client(verify=client_context(tls_files[0]), timeout=TIMEOUT) as client:
        with pytest.raises(httpx.TransportError):
            client.get(server.url + "/scheme")
    wait_for(lambda: "TLS handshake from 127.0.0.1" in caplog.text, what="the log line")


def test_asgi_apps_see_the_https_scheme(serve, tls_files):
    seen = {}

    async def asgi(scope, receive, send):
        seen["scheme"] = scope["scheme"]
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"ok"})

    from conduit.server.asgi import ASGIApp

    server = serve(ASGIApp(asgi), **tls_settings(tls_files))
    with httpx.Client(verify=client_context(tls_files[0]), timeout=TIMEOUT) as client:
        assert client.get(server.url + "/").text == "ok"
    assert seen == {"scheme": "https"}


def peer_common_name(address, cafile) -> str:
    context = ssl.create_default_context(cafile=str(cafile))
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection(address, timeout=TIMEOUT) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            der = tls.getpeercert(binary_form=True)
    text = subprocess.run(["openssl", "x509", "-inform", "DER", "-noout", "-subject"],
                          input=der, capture_output=True, check=True,
                          timeout=TIMEOUT).stdout.decode()
    return text.strip().rsplit("=", 1)[-1].strip()


def test_sighup_reloads_the_certificate_without_dropping_a_stream(conduit_process, app_file,
                                                                    tmp_path):
    first_cert, first_key = make_cert(tmp_path, "first", cn="first.test")
    cert, key = tmp_path / "live.pem", tmp_path / "live.key"
    shutil.copy(first_cert, cert)
    shutil.copy(first_key, key)
    target = app_file("""
        import asyncio
        from conduit import App, SSEEvent

        app = App()

        @app.get("/ticks")
        async def ticks(request):
            for i in range(1, 1000):
                yield SSEEvent(str(i), event="tick")
                await asyncio.sleep(0.05)
    """)
    process = conduit_process(target, "--ssl-certfile", cert, "--ssl-keyfile", key)
    assert peer_common_name(process.address, cert) == "first.test"
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with httpx.Client(verify=context, timeout=TIMEOUT) as client:
        url = f"https://127.0.0.1:{process.port}/ticks"
        with client.stream("GET", url) as response:
            lines = response.iter_lines()
            assert next(line for line in lines if line.startswith("data: ")) == "data: 1"
            second_cert, second_key = make_cert(tmp_path, "second", cn="second.test")
            shutil.copy(second_cert, cert)
            shutil.copy(second_key, key)
            process.signal(signal.SIGHUP)
            process.wait_for_line("TLS certificate reloaded")
            assert peer_common_name(process.address, cert) == "second.test"
            # the stream that began with the first certificate goes on
            more = []
            for line in lines:
                if line.startswith("data: "):
                    more.append(int(line[6:]))
                    if len(more) == 3:
                        break
            assert more == [more[0], more[0] + 1, more[0] + 2] and more[0] > 1
    process.signal(signal.SIGTERM)
    assert process.wait() == 0


def test_a_bad_certificate_is_a_startup_error(conduit_process, app_file, tmp_path):
    target = app_file("""
        from conduit import App
        app = App()
    """)
    missing = conduit_process(target, "--ssl-certfile", tmp_path / "missing.pem",
                              started=False)
    assert missing.wait() == 3
    assert "cannot serve HTTPS" in missing.stderr()
    lonely = conduit_process(target, "--ssl-keyfile", tmp_path / "key.pem", started=False)
    assert lonely.wait() == 2
    assert "needs ssl_certfile" in lonely.stderr()
    no_ca = conduit_process(target, "--ssl-certfile", tmp_path / "cert.pem", "--ssl-cert-reqs",
                            "2", started=False)
    assert no_ca.wait() == 2
    assert "ssl_cert_reqs needs ssl_ca_certs" in no_ca.stderr()


def test_workers_serve_https_and_each_reloads_on_sighup(conduit_process, app_file, tls_files):
    target = app_file("""
        import os
        from conduit import App

        app = App()

        @app.get("/pid")
        def pid(request):
            return {"pid": os.getpid(), "scheme": request.scheme}
    """)
    cert, key = tls_files
    process = conduit_process(target, "--workers", "2", "--ssl-certfile", cert,
                              "--ssl-keyfile", key, started=False)
    process.wait_for_line(r"conduit running on https://[0-9.]+:\d+ with 2 workers",
                          timeout=30)
    process.wait_started()
    with httpx.Client(verify=client_context(cert), timeout=TIMEOUT) as client:
        answer = client.get(f"https://127.0.0.1:{process.port}/pid").json()
    assert answer["scheme"] == "https"
    process.signal(signal.SIGHUP)
    wait_for(lambda: process.stderr().count("TLS certificate reloaded") == 2,
             what="both workers reloaded")
    process.signal(signal.SIGTERM)
    assert process.wait() == 0


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_connections_ended_in_every_tls_state_leave_nothing_behind(serve, tls_files):
    """200 connections, each ended a different way: reset before a byte, reset mid-
    handshake, plain HTTP, garbage, a finished handshake then reset, a stream read in
    part then reset, a stream read to its end. Afterwards the server holds no connection
    and the process's file descriptors are back where they were (the in-process server
    shares this process's fd table)."""
    import struct

    server = serve(stream_app(), **tls_settings(tls_files, ssl_handshake_timeout_seconds=5))
    context = client_context(tls_files[0])
    with httpx.Client(verify=context, timeout=TIMEOUT) as warm:  # first use of each path
        warm.get(server.url + "/count?n=1")
    wait_for(lambda: server.connection_count() == 0, what="the warm-up connection released")
    baseline = open_fds()

    def rst(sock) -> None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()

    for k in range(200):
        kind = k % 7
        raw = socket.create_connection(server.address, timeout=TIMEOUT)
        if kind == 0:
            rst(raw)
        elif kind == 1:
            raw.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")  # a ClientHello's start
            rst(raw)
        elif kind == 2:
            raw.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert raw.recv(100).startswith(b"HTTP/1.1 400")
            raw.close()
        elif kind == 3:
            raw.sendall(b"\x00" * 64)
            raw.close()
        else:
            tls = context.wrap_socket(raw, server_hostname="localhost")
            if kind == 4:
                rst(tls)
                continue
            tls.sendall(b"GET /count?n=5000 HTTP/1.1\r\nHost: localhost\r\n\r\n")
            if kind == 5:
                tls.recv(1000)
                rst(tls)
            else:
                received = b""
                while not received.endswith(b"0\r\n\r\n"):
                    piece = tls.recv(65536)
                    assert piece, "the stream ended early"
                    received += piece
                tls.close()
    wait_for(lambda: server.connection_count() == 0, what="every connection released")
    wait_for(lambda: open_fds() <= baseline, what="the file descriptors back to the baseline")
