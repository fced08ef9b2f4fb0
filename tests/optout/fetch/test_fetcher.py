import gzip
import io
import ipaddress
import logging
import shutil
import socket
import ssl
import subprocess
import time
import zlib

import pytest
from PIL import Image

from optout.fetch import (
    USER_AGENT,
    FetchRefused,
    FetchUnreachable,
    NotAnImage,
    fetch_image,
)
from tests.optout.fetch.helpers import (
    FakeResolver,
    fetch_error,
    no_lookup,
)
from tests.servers import ImageServer, sample_image


def to_format(photo: str, fmt: str) -> bytes:
    out = io.BytesIO()
    Image.open(io.BytesIO(sample_image(photo))).convert("RGB").save(out, fmt)
    return out.getvalue()


# --- Images that are fetched ------------------------------------------------------


@pytest.mark.parametrize(("photo", "content_type"), [("astronaut.png", "image/png"), ("rocket.jpg", "image/jpeg")])
def test_fetches_a_real_image_from_loopback_when_allowed(image_server, fetch_connections, photo, content_type):
    body = image_server.add_image("/photo", photo)
    result = fetch_image(image_server.url("/photo?size=large"), allow_loopback=True)
    assert result.data == body
    assert result.content_type == content_type
    assert result.final_url == image_server.url("/photo?size=large")
    assert image_server.hits["/photo"] == 1
    headers = image_server.request_headers["/photo"]
    assert headers["User-Agent"] == USER_AGENT
    assert headers["Accept-Encoding"] == "identity"
    assert fetch_connections == [(ipaddress.ip_address("127.0.0.1"), image_server.port)]


@pytest.mark.parametrize(("fmt", "content_type"), [("GIF", "image/gif"), ("WEBP", "image/webp")])
def test_fetches_gif_and_webp(image_server, fmt, content_type):
    body = to_format("chelsea.png", fmt)
    image_server.add("/cat", body, content_type="application/octet-stream")
    result = fetch_image(image_server.url("/cat"), allow_loopback=True)
    assert (result.data, result.content_type) == (body, content_type)


def test_loopback_is_refused_unless_allowed(image_server, fetch_connections):
    image_server.add_image("/a.png", "astronaut.png")
    error = fetch_error(image_server.url("/a.png"))
    assert isinstance(error, FetchRefused) and error.code == "refused"
    assert image_server.hits["/a.png"] == 0
    assert fetch_connections == []


@pytest.mark.parametrize("host", ["2130706433", "0x7f000001", "017700000001", "0x7f.1", "127.1", "0177.0.0.01"])
def test_loopback_in_numeric_forms_is_loopback(image_server, host):
    body = image_server.add_image("/a.png", "astronaut.png")
    url = image_server.url("/a.png", host=host)
    assert fetch_error(url).code == "refused"
    assert fetch_image(url, allow_loopback=True, resolver=no_lookup).data == body


def test_a_name_is_resolved_once_and_the_checked_address_is_the_one_connected(image_server, fetch_connections):
    # A rebinding resolver: the first answer passes, any later one would not.
    resolver = FakeResolver(images_test=["127.0.0.1", "10.0.0.1"])
    body = image_server.add_image("/a.png", "astronaut.png")
    result = fetch_image(image_server.url("/a.png", host="images.test"), allow_loopback=True, resolver=resolver)
    assert result.data == body
    assert resolver.calls == ["images.test"]
    assert fetch_connections == [(ipaddress.ip_address("127.0.0.1"), image_server.port)]
    assert image_server.request_headers["/a.png"]["Host"] == f"images.test:{image_server.port}"


def test_every_hop_is_resolved_and_checked_again(image_server, fetch_connections):
    resolver = FakeResolver(images_test=["127.0.0.1", "10.0.0.1"])
    image_server.add_redirect("/r", "/a.png")
    image_server.add_image("/a.png", "astronaut.png")
    error = fetch_error(image_server.url("/r", host="images.test"), allow_loopback=True, resolver=resolver)
    assert error.code == "refused"
    assert resolver.calls == ["images.test", "images.test"]
    assert image_server.hits == {"/r": 1}
    assert {address for address, _port in fetch_connections} == {ipaddress.ip_address("127.0.0.1")}


# --- Redirects -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "location",
    [
        "http://10.0.0.1/a.png",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::ffff:192.168.0.1]/",
        "http://internal.test/a.png",
        "file:///etc/passwd",
        "http://user:pw@127.0.0.1/a.png",
    ],
)
def test_refuses_a_redirect_to_a_blocked_target(image_server, fetch_connections, location):
    image_server.add_redirect("/r", location)
    resolver = FakeResolver(internal_test=["10.1.2.3"])
    error = fetch_error(image_server.url("/r"), allow_loopback=True, resolver=resolver)
    assert error.code == "refused"
    assert image_server.hits == {"/r": 1}
    assert fetch_connections == [(ipaddress.ip_address("127.0.0.1"), image_server.port)]


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_follows_redirects_and_reports_the_final_url(image_server, status):
    body = image_server.add_image("/images/a.png", "astronaut.png")
    image_server.add_redirect("/old", "/images/a.png", status=status)
    result = fetch_image(image_server.url("/old"), allow_loopback=True)
    assert result.data == body
    assert result.final_url == image_server.url("/images/a.png")


def test_a_redirect_loop_is_unreachable(image_server):
    image_server.add_redirect("/a", "/b")
    image_server.add_redirect("/b", "/a")
    error = fetch_error(image_server.url("/a"), allow_loopback=True)
    assert isinstance(error, FetchUnreachable)
    assert image_server.hits == {"/a": 2, "/b": 2}  # four requests for three redirects


def test_at_most_max_redirects_are_followed(image_server):
    body = image_server.add_image("/a.png", "astronaut.png")
    for hop in range(1, 4):
        image_server.add_redirect(f"/r{hop}", f"/r{hop + 1}")
    image_server.add_redirect("/r4", "/a.png")
    assert fetch_error(image_server.url("/r1"), allow_loopback=True, max_redirects=3).code == "unreachable"
    assert image_server.hits["/a.png"] == 0
    assert fetch_image(image_server.url("/r1"), allow_loopback=True, max_redirects=4).data == body


def test_a_redirect_without_location_is_unreachable(image_server):
    image_server.add("/r", b"", status=302)
    assert fetch_error(image_server.url("/r"), allow_loopback=True).code == "unreachable"


# --- Size, time and content -----------------------------------------------------------


def test_an_endless_body_is_cut_at_the_cap(image_server):
    image_server.add_endless("/endless")
    error = fetch_error(image_server.url("/endless"), allow_loopback=True, max_bytes=100_000)
    assert error.code == "unreachable"
    assert image_server.wait_idle()
    # What the server got out before noticing: the cap plus socket buffers, not "endless".
    assert 100_000 < image_server.bytes_sent["/endless"] < 16 * 1024 * 1024


def test_a_declared_length_over_the_cap_is_refused_before_reading(image_server):
    image_server.add("/big", b"\x89PNG\r\n\x1a\n" + b"\0" * 200_000, content_type="image/png")
    assert fetch_error(image_server.url("/big"), allow_loopback=True, max_bytes=100_000).code == "unreachable"


@pytest.mark.parametrize("during", ["body", "headers"])
def test_a_slow_drip_stops_at_the_deadline(image_server, during):
    image_server.add_stall("/slow", during=during, interval=0.02)
    started = time.monotonic()
    error = fetch_error(image_server.url("/slow"), allow_loopback=True, timeout=0.5)
    elapsed = time.monotonic() - started
    assert error.code == "unreachable"
    assert 0.45 < elapsed < 1.5
    assert image_server.bytes_sent["/slow"] > 5  # it really was dripping


def test_a_slow_name_lookup_counts_against_the_deadline():
    def slow_resolver(*args, **kwargs):
        time.sleep(1.5)
        return []

    started = time.monotonic()
    assert fetch_error("http://slow.test/", timeout=0.3, resolver=slow_resolver).code == "unreachable"
    assert time.monotonic() - started < 1.0


def test_an_unknown_name_is_unreachable():
    assert fetch_error("http://nowhere.test/", resolver=FakeResolver()).code == "unreachable"


def test_a_closed_port_is_unreachable():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert fetch_error(f"http://127.0.0.1:{port}/", allow_loopback=True).code == "unreachable"


@pytest.mark.parametrize("status", [204, 304, 403, 404, 500, 503])
def test_an_error_status_is_unreachable(image_server, status):
    image_server.add("/x", b"" if status in (204, 304) else b"\x89PNG\r\n\x1a\n", status=status)
    error = fetch_error(image_server.url("/x"), allow_loopback=True)
    assert error.code == "unreachable"
    assert str(status) in error.message


@pytest.mark.parametrize(
    "body",
    [
        b"<!doctype html><html><body>Not found</body></html>",
        b"",
        b"\xff\xd8",  # too short to be a JPEG
        b"%PDF-1.7\n" + b"\0" * 100,
        b'<svg xmlns="http://www.w3.org/2000/svg"></svg>',
    ],
)
def test_content_that_claims_to_be_an_image_but_is_not(image_server, body):
    image_server.add("/photo.jpg", body, content_type="image/jpeg")
    error = fetch_error(image_server.url("/photo.jpg"), allow_loopback=True)
    assert isinstance(error, NotAnImage) and error.code == "not_an_image"


def test_an_image_served_with_a_wrong_type_is_still_an_image(image_server):
    body = image_server.add_image("/page.html", "rocket.jpg", content_type="text/html")
    result = fetch_image(image_server.url("/page.html"), allow_loopback=True)
    assert (result.data, result.content_type) == (body, "image/jpeg")


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_an_unasked_for_compressed_body_is_decoded(image_server, encoding):
    body = sample_image("astronaut.png")
    compressed = gzip.compress(body) if encoding == "gzip" else zlib.compress(body)
    image_server.add("/a.png", compressed, content_type="image/png", headers={"Content-Encoding": encoding})
    assert fetch_image(image_server.url("/a.png"), allow_loopback=True).data == body


def test_a_compression_bomb_stops_at_the_cap(image_server):
    bomb = gzip.compress(b"\x89PNG\r\n\x1a\n" + b"\0" * 8_000_000, compresslevel=9)
    assert len(bomb) < 100_000
    image_server.add("/bomb.png", bomb, content_type="image/png", headers={"Content-Encoding": "gzip"})
    error = fetch_error(image_server.url("/bomb.png"), allow_loopback=True, max_bytes=1_000_000)
    assert error.code == "unreachable"


def test_another_encoding_is_unreachable(image_server):
    image_server.add("/a.png", b"\x89PNG\r\n\x1a\n", content_type="image/png", headers={"Content-Encoding": "br"})
    assert fetch_error(image_server.url("/a.png"), allow_loopback=True).code == "unreachable"


# --- Environment and logs --------------------------------------------------------------


def test_proxy_variables_are_ignored(image_server, monkeypatch):
    with ImageServer() as proxy:
        proxy_url = proxy.url("")
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
            monkeypatch.setenv(name, proxy_url)
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        body = image_server.add_image("/a.png", "astronaut.png")
        assert fetch_image(image_server.url("/a.png"), allow_loopback=True).data == body
        assert sum(proxy.hits.values()) == 0
        assert image_server.hits["/a.png"] == 1


def test_logs_never_carry_the_query_string(image_server, caplog):
    caplog.set_level(logging.DEBUG, logger="optout.fetch")
    image_server.add_image("/a.png", "astronaut.png")
    fetch_image(image_server.url("/a.png?token=sekrit-123"), allow_loopback=True)
    fetch_error("http://10.0.0.1/a.png?token=sekrit-456")
    assert caplog.records
    assert "sekrit" not in caplog.text


# --- HTTPS: the name is verified while the checked address is dialled -------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    if not shutil.which("openssl"):
        pytest.skip("needs the openssl command to make a test certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        + ["-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=images.test"]
        + ["-addext", "subjectAltName=DNS:images.test"],
        check=True,
        capture_output=True,
    )
    return cert, key


@pytest.fixture
def tls_server(certificate):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    with ImageServer(ssl_context=context) as server:
        yield server


def test_https_verifies_the_host_name_on_the_checked_address(tls_server, certificate, fetch_connections):
    body = tls_server.add_image("/a.png", "astronaut.png")
    trusting = ssl.create_default_context(cafile=str(certificate[0]))
    resolver = FakeResolver(images_test=["127.0.0.1"], other_test=["127.0.0.1"])
    result = fetch_image(
        tls_server.url("/a.png", host="images.test"), allow_loopback=True, resolver=resolver, ssl_context=trusting
    )
    assert result.data == body
    assert tls_server.request_headers["/a.png"]["Host"] == f"images.test:{tls_server.port}"
    # The same address under a name the certificate does not carry: refused by TLS.
    error = fetch_error(
        tls_server.url("/a.png", host="other.test"), allow_loopback=True, resolver=resolver, ssl_context=trusting
    )
    assert error.code == "unreachable"
    assert {address for address, _port in fetch_connections} == {ipaddress.ip_address("127.0.0.1")}


def test_https_rejects_an_untrusted_certificate(tls_server):
    tls_server.add_image("/a.png", "astronaut.png")
    resolver = FakeResolver(images_test=["127.0.0.1"])
    error = fetch_error(tls_server.url("/a.png", host="images.test"), allow_loopback=True, resolver=resolver)
    assert error.code == "unreachable"
    assert tls_server.hits["/a.png"] == 0
