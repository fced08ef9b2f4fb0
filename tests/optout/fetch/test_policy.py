"""Addresses the fetcher refuses before any connection, in every spelling, and the ports it dials."""

import ipaddress

import pytest

from optout.fetch import FetchRefused, fetch_image, is_loopback_address, is_public_address
from tests.optout.fetch.helpers import (
    BLOCKED_ADDRESSES,
    LOOPBACK_ADDRESSES,
    PUBLIC,
    FakeResolver,
    fetch_error,
    literal_url,
)

# --- Addresses that are refused, before any connection ------------------------------


@pytest.mark.parametrize("address", BLOCKED_ADDRESSES)
@pytest.mark.parametrize("allow_loopback", [False, True])
def test_refuses_blocked_literal_addresses(fetch_connections, address, allow_loopback):
    error = fetch_error(literal_url(address), allow_loopback=allow_loopback)
    assert isinstance(error, FetchRefused)
    assert fetch_connections == []


@pytest.mark.parametrize("address", LOOPBACK_ADDRESSES)
def test_refuses_loopback_literals_by_default(fetch_connections, address):
    assert fetch_error(literal_url(address)).code == "refused"
    assert fetch_connections == []


@pytest.mark.parametrize(
    "url",
    [
        "http://0xa000001/",  # 10.0.0.1
        "http://012.0.0.1/",
        "http://167772161/",
        "http://10.1/",
        "http://0xA9.0xFE.0xA9.0xFE/latest/meta-data/",  # 169.254.169.254
        "http://3232235777/",  # 192.168.1.1
        "http://0300.0250.0.1/",
        "http://10.0.0.1./",
        "http://[::ffff:7f00:1]/",
        "http://[0:0:0:0:0:ffff:a00:1]/",
        "http://[fe80::1%25eth0]/",
        "http://[::1%25lo]/",
    ],
)
def test_refuses_private_addresses_in_any_spelling(fetch_connections, url):
    assert fetch_error(url, allow_loopback=True).code == "refused"
    assert fetch_connections == []


@pytest.mark.parametrize(
    "address", [*BLOCKED_ADDRESSES, (PUBLIC, "10.0.0.1"), (PUBLIC, "fd00::1"), ("::1", "10.0.0.1")]
)
def test_refuses_names_that_resolve_to_blocked_addresses(fetch_connections, address):
    resolver = FakeResolver(images_test=[address])
    error = fetch_error("http://images.test/x.jpg", allow_loopback=True, resolver=resolver)
    assert error.code == "refused"
    assert resolver.calls == ["images.test"]
    assert fetch_connections == []


def test_refuses_a_name_with_a_loopback_and_a_private_address_even_in_loopback_mode(fetch_connections):
    resolver = FakeResolver(images_test=[("127.0.0.1", "192.168.1.20")])
    assert fetch_error("http://images.test/", allow_loopback=True, resolver=resolver).code == "refused"
    assert fetch_connections == []


@pytest.mark.parametrize(
    "url",
    [
        "http://user:secret@127.0.0.1/a.png",
        "http://user@example.com/a.png",
        "http://@example.com/",
        "http://example.com\\@127.0.0.1/",
        "https://a:b@example.com/",
    ],
)
def test_refuses_user_information(fetch_connections, url):
    assert fetch_error(url, allow_loopback=True).code == "refused"
    assert fetch_connections == []


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "ftp://example.com/a.png",
        "gopher://127.0.0.1:6379/_FLUSHALL",
        "javascript:alert(1)",
        "data:image/png;base64,iVBORw0KGgo=",
        "//example.com/a.png",
        "example.com/a.png",
        "dict://127.0.0.1:11211/",
        "",
        "http://",
        "http://exa mple.com/",
        "http://example.com/a\r\nX-Injected: 1",
        "http://%31%32%37.0.0.1/",
        "http://[::1/",
    ],
)
def test_refuses_other_schemes_and_broken_urls(fetch_connections, url):
    assert fetch_error(url, allow_loopback=True).code == "refused"
    assert fetch_connections == []


@pytest.mark.parametrize("port", [22, 25, 6379, 8080, 0])
def test_refuses_other_ports_without_looking_up_the_name(fetch_connections, port):
    assert fetch_error(f"http://example.com:{port}/a.png").code == "refused"
    assert fetch_connections == []


def test_refuses_other_ports_of_public_addresses_in_loopback_mode(fetch_connections):
    resolver = FakeResolver(example_com=[PUBLIC])
    assert fetch_error("http://example.com:8080/", allow_loopback=True, resolver=resolver).code == "refused"
    assert fetch_connections == []


def test_high_ports_need_every_address_to_be_loopback(fetch_connections):
    resolver = FakeResolver(images_test=[("127.0.0.1", PUBLIC)])
    assert fetch_error("http://images.test:8080/", allow_loopback=True, resolver=resolver).code == "refused"
    assert fetch_connections == []


def test_international_names_are_looked_up_in_punycode(image_server):
    resolver = FakeResolver(**{"xn--bcher-kva.test": ["127.0.0.1"]})
    body = image_server.add_image("/a.png", "astronaut.png")
    url = image_server.url("/a.png", host="bücher.test")
    assert fetch_image(url, allow_loopback=True, resolver=resolver).data == body
    assert resolver.calls == ["xn--bcher-kva.test"]
    assert image_server.request_headers["/a.png"]["Host"] == f"xn--bcher-kva.test:{image_server.port}"


def test_refuses_ports_out_of_range():
    assert fetch_error("http://example.com:65536/").code == "refused"


def test_address_rule():
    for address in ["8.8.8.8", "1.1.1.1", "2606:4700::1111", "2a00:1450:4001::200e", "2002:808:808::"]:
        assert is_public_address(ipaddress.ip_address(address)), address
    for address in BLOCKED_ADDRESSES + LOOPBACK_ADDRESSES:
        assert not is_public_address(ipaddress.ip_address(address)), address
    assert is_loopback_address(ipaddress.ip_address("127.255.0.1"))
    assert not is_loopback_address(ipaddress.ip_address("::ffff:127.0.0.1"))
