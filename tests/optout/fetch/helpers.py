"""What the fetcher tests share: addresses that must be refused, a fake resolver, and a helper
that expects a refusal without any name lookup."""

import socket

import pytest

from optout.fetch import FetchError, fetch_image

PUBLIC = "93.184.215.14"  # never contacted: every test that uses it expects a refusal first

# Refused even when loopback is allowed.
BLOCKED_ADDRESSES = [
    "0.0.0.0",
    "0.1.2.3",
    "10.0.0.1",
    "10.255.255.255",
    "100.64.0.1",  # CGNAT
    "100.127.255.254",
    "169.254.169.254",  # cloud metadata
    "172.16.0.1",
    "172.31.255.255",
    "192.0.0.8",
    "192.0.2.1",  # documentation
    "192.168.0.1",
    "198.18.0.1",  # benchmarking
    "198.51.100.7",
    "203.0.113.9",
    "224.0.0.1",  # multicast
    "239.255.255.250",
    "240.0.0.1",  # reserved
    "255.255.255.255",
    "::",
    "::ffff:127.0.0.1",  # IPv4-mapped
    "::ffff:10.0.0.1",
    "::ffff:8.8.8.8",  # mapped forms are refused even when public
    "::127.0.0.1",  # IPv4-compatible
    "::ffff:0:a00:1",  # IPv4-translated
    "64:ff9b::a00:1",  # NAT64
    "64:ff9b::808:808",
    "64:ff9b:1::1",
    "2002:a00:1::",  # 6to4 of 10.0.0.1
    "2002:7f00:1::",  # 6to4 of 127.0.0.1
    "2001:0:4136:e378:8000:63bf:3fff:fdd2",  # Teredo
    "2001:db8::1",  # documentation
    "fec0::1",  # site-local
    "fc00::1",  # unique local
    "fd12:3456:789a::1",
    "fe80::1",  # link-local
    "ff02::1",  # multicast
    "ff0e::1",
    "100::1",  # discard
]
LOOPBACK_ADDRESSES = ["127.0.0.1", "127.8.9.10", "::1"]


def literal_url(address: str, path: str = "/x.jpg") -> str:
    return f"http://[{address}]{path}" if ":" in address else f"http://{address}{path}"


class FakeResolver:
    """Answers like getaddrinfo from a fixed table; each call pops the next answer for that name."""

    def __init__(self, **answers):
        self.answers = {name.replace("_", "."): list(addresses) for name, addresses in answers.items()}
        self.calls: list[str] = []

    def __call__(self, host, port, *args, **kwargs):
        self.calls.append(host)
        addresses = self.answers.get(host)
        if not addresses:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        answer = addresses.pop(0) if len(addresses) > 1 else addresses[0]
        return [
            (socket.AF_INET6, socket.SOCK_STREAM, 6, "", (a, port, 0, 0))
            if ":" in a
            else (socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
            for a in (answer if isinstance(answer, tuple) else (answer,))
        ]


def no_lookup(*args, **kwargs):
    raise AssertionError("the fetcher resolved a name it should not have")


def fetch_error(url, **kwargs) -> FetchError:
    kwargs.setdefault("resolver", no_lookup)
    with pytest.raises(FetchError) as info:
        fetch_image(url, **kwargs)
    assert info.value.message  # something to show the requester
    return info.value
