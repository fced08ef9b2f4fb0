import ipaddress

import pytest

from optout import fetch
from tests.servers import ImageServer


@pytest.fixture
def image_server():
    """A started loopback ``ImageServer`` (see tests/servers.py)."""
    with ImageServer() as server:
        yield server


@pytest.fixture(autouse=True)
def fetch_connections(monkeypatch):
    """Every connection the fetcher opens, as (address, port); anything but loopback fails the test.

    Tests never send traffic off this machine: a refused address must be refused
    before connecting, and if a bug ever let one through, this stops it first.
    """
    opened: list[tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int]] = []
    real_open_socket = fetch._open_socket

    def guarded_open_socket(address, port, timeout):
        opened.append((address, port))
        if not address.is_loopback:
            raise AssertionError(f"the fetcher tried to connect to {address}")
        return real_open_socket(address, port, timeout)

    monkeypatch.setattr(fetch, "_open_socket", guarded_open_socket)
    return opened
