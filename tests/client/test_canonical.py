import hashlib

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from optout.client.canonical import BadURL, _canonical_slow, canonical_url, parse_ipv4, url_sha256

# Every case of the documented list (Safe Browsing v4, "URLs and Hashing",
# Canonicalization), in its order. The \x01\x80 case is about bytes, so it is
# given as bytes: in text, U+0080 is two UTF-8 bytes.
SAFE_BROWSING_CASES = [
    ("http://host/%25%32%35", "http://host/%25"),
    ("http://host/%25%32%35%25%32%35", "http://host/%25%25"),
    ("http://host/%2525252525252525", "http://host/%25"),
    ("http://host/asdf%25%32%35asd", "http://host/asdf%25asd"),
    ("http://host/%%%25%32%35asd%%", "http://host/%25%25%25asd%25%25"),
    ("http://www.google.com/", "http://www.google.com/"),
    (
        "http://%31%36%38%2e%31%38%38%2e%39%39%2e%32%36/%2E%73%65%63%75%72%65/%77%77%77%2E%65%62%61%79%2E%63%6F%6D/",
        "http://168.188.99.26/.secure/www.ebay.com/",
    ),
    (
        "http://195.127.0.11/uploads/%20%20%20%20/.verify/.eBaysecure=updateuserdataxplimnbqmn-xplmvalidateinfoswqpcmlx=hgplmcx/",
        "http://195.127.0.11/uploads/%20%20%20%20/.verify/.eBaysecure=updateuserdataxplimnbqmn-xplmvalidateinfoswqpcmlx=hgplmcx/",
    ),
    (
        "http://host%23.com/%257Ea%2521b%2540c%2523d%2524e%25f%255E00%252611%252A22%252833%252944_55%252B",
        "http://host%23.com/~a!b@c%23d$e%25f^00&11*22(33)44_55+",
    ),
    ("http://3279880203/blah", "http://195.127.0.11/blah"),
    ("http://www.google.com/blah/..", "http://www.google.com/"),
    ("www.google.com/", "http://www.google.com/"),
    ("www.google.com", "http://www.google.com/"),
    ("http://www.evil.com/blah#frag", "http://www.evil.com/blah"),
    ("http://www.GOOgle.com/", "http://www.google.com/"),
    ("http://www.google.com.../", "http://www.google.com/"),
    ("http://www.google.com/foo\tbar\rbaz\n2", "http://www.google.com/foobarbaz2"),
    ("http://www.google.com/q?", "http://www.google.com/q?"),
    ("http://www.google.com/q?r?", "http://www.google.com/q?r?"),
    ("http://www.google.com/q?r?s", "http://www.google.com/q?r?s"),
    ("http://evil.com/foo#bar#baz", "http://evil.com/foo"),
    ("http://evil.com/foo;", "http://evil.com/foo;"),
    ("http://evil.com/foo?bar;", "http://evil.com/foo?bar;"),
    (b"http://\x01\x80.com/", "http://%01%80.com/"),
    ("http://notrailingslash.com", "http://notrailingslash.com/"),
    ("http://www.gotaport.com:1234/", "http://www.gotaport.com/"),
    ("  http://www.google.com/  ", "http://www.google.com/"),
    ("http:// leadingspace.com/", "http://%20leadingspace.com/"),
    ("http://%20leadingspace.com/", "http://%20leadingspace.com/"),
    ("%20leadingspace.com/", "http://%20leadingspace.com/"),
    ("https://www.securesite.com/", "https://www.securesite.com/"),
    ("http://host.com/ab%23cd", "http://host.com/ab%23cd"),
    ("http://host.com//twoslashes?more//slashes", "http://host.com/twoslashes?more//slashes"),
]

# Our own decisions and the rules the documented list does not exercise.
MORE_CASES = [
    # IPv4 in every form inet_aton accepts.
    ("http://0x7f.1/", "http://127.0.0.1/"),
    ("http://0177.0.0.1/", "http://127.0.0.1/"),
    ("http://0x7F000001/", "http://127.0.0.1/"),
    ("http://10.1/", "http://10.0.0.1/"),
    ("http://192.168.257/", "http://192.168.1.1/"),
    ("http://1.2.3.4.5/", "http://1.2.3.4.5/"),  # five parts: a name, not an address
    ("http://256.1.1.1/", "http://256.1.1.1/"),  # out of range: a name
    ("http://08.1.1.1/", "http://08.1.1.1/"),  # not octal: a name
    # IPv6 (the current Safe Browsing reference).
    ("http://[2001:0DB8:0000::1]/x", "http://[2001:db8::1]/x"),
    ("http://[2001:db8::1]:8080/x", "http://[2001:db8::1]/x"),
    ("http://[::ffff:1.2.3.4]/", "http://1.2.3.4/"),
    ("http://[64:ff9b::1.2.3.4]/", "http://1.2.3.4/"),
    # Scheme, user information, port, host.
    ("HTTPS://Example.COM/A", "https://example.com/A"),
    ("ftp://example.com/x", "ftp://example.com/x"),
    ("http://user:secret@example.com/x", "http://example.com/x"),
    ("http://example.com:/x", "http://example.com/x"),
    ("example.com:8080/x.jpg", "http://example.com/x.jpg"),
    ("http://bücher.de/ü", "http://xn--bcher-kva.de/%C3%BC"),
    ("http://B%C3%9CCHER.de/", "http://xn--bcher-kva.de/"),
    # Paths and queries.
    ("http://example.com/a/./b/../c", "http://example.com/a/c"),
    ("http://example.com/a/b/..", "http://example.com/a/"),
    ("http://example.com/..", "http://example.com/"),
    ("http://example.com/a//../b", "http://example.com/a/b"),
    ("http://example.com/%2E%2E/%2e/x", "http://example.com/x"),
    ("http://example.com/a b?c d", "http://example.com/a%20b?c%20d"),
    ("http://example.com?x", "http://example.com/?x"),
    ("http://example.com/a%3Fb", "http://example.com/a?b"),
    ("http://example.com/%2541", "http://example.com/A"),
    ("http://example.com/%00%7f", "http://example.com/%00%7F"),
    ("https://example.com/images/abc123.jpg?w=512", "https://example.com/images/abc123.jpg?w=512"),
]


@pytest.mark.parametrize(("url", "expected"), SAFE_BROWSING_CASES)
def test_documented_safe_browsing_cases(url, expected):
    assert canonical_url(url) == expected


@pytest.mark.parametrize(("url", "expected"), MORE_CASES)
def test_more_cases(url, expected):
    assert canonical_url(url) == expected


@pytest.mark.parametrize(
    "url",
    [
        "",
        "   ",
        "http:///x",
        "http://.../",
        "//example.com/x",
        "http://example.com:80x/",
        "mailto:someone",
        "javascript:alert(1)",
        "data:image/png;base64,iVBORw0KGgo=",
        "http://[1.2.3.4]/",
        "http://[::1/",
        "http://[fe80::1%25eth0]/",
        "http://\ud800.com/",
        None,
        42,
    ],
)
def test_rejects_what_cannot_be_a_url(url):
    with pytest.raises(BadURL):
        canonical_url(url)


def test_url_sha256_hashes_the_canonical_form():
    expected = hashlib.sha256(b"http://www.google.com/").hexdigest()
    assert url_sha256("www.GOOGLE.com") == expected
    assert url_sha256("http://www.google.com/#top") == expected
    assert url_sha256("http://www.google.com/x") != expected


@pytest.mark.parametrize(
    ("host", "expected"),
    [("127.0.0.1", "127.0.0.1"), ("2130706433", "127.0.0.1"), ("0x7f.0.0.1", "127.0.0.1"), ("0", "0.0.0.0")],
)
def test_parse_ipv4_reads_inet_aton_forms(host, expected):
    assert str(parse_ipv4(host)) == expected


@pytest.mark.parametrize("host", ["example.com", "1.2.3.4.5", "4294967296", "1.2.65536", "09", "", "1..2"])
def test_parse_ipv4_refuses_names(host):
    assert parse_ipv4(host) is None


# URL-shaped text: pieces that hit every rule, fast path and slow path alike.
_host = st.one_of(
    st.from_regex(r"[a-z0-9-]{1,8}(\.[a-z0-9-]{1,8}){0,3}", fullmatch=True),
    st.from_regex(r"[A-Za-z0-9.%-]{1,12}", fullmatch=True),
    st.sampled_from(["127.0.0.1", "0x7f.1", "[::1]", "[::ffff:1.2.3.4]", "bücher.de", "a..b.", "user@host"]),
    st.sampled_from(["Example.COM", "IMG.\u212aelvin.example", "1.2.3.COM", "0X7F.A", "CDN-1.Example.Net."]),
    st.sampled_from([".[", "a\uff1fb", "\uff45\uff58\uff0e\uff43\uff4f", "a\uff0fb.c", "x\uff20y"]),
)
_path = st.text(alphabet="/.abcAZ09%25#?&=;~ \t+@:ü\\", max_size=24)
_url = st.builds(
    lambda scheme, host, port, path: f"{scheme}{host}{port}{path}",
    st.sampled_from(["http://", "https://", "HTTP://", "HttpS://", "", "ftp://"]),
    _host,
    st.sampled_from(["", ":80", ":", ":8080"]),
    _path,
)


@settings(max_examples=400, deadline=None)
@given(_url)
@example("https://example.com/images/abc123.jpg?w=512")
@example("http://example.com:8080")
def test_fast_path_agrees_with_the_full_algorithm(url):
    try:
        slow = _canonical_slow(url.encode("utf-8"))
    except BadURL:
        with pytest.raises(BadURL):
            canonical_url(url)
        return
    assert canonical_url(url) == slow


@settings(max_examples=400, deadline=None)
@given(st.one_of(_url, st.text(max_size=40)))
def test_canonical_form_is_a_fixed_point(url):
    try:
        once = canonical_url(url)
    except BadURL:
        return
    assert once.isascii()
    assert canonical_url(once) == once


def test_a_non_ascii_host_with_a_percent_sign_is_a_fixed_point():
    # Found by the property above: Punycode kept the "%" and made "%14", an escape, out of it.
    once = canonical_url("http://%1\u20444/")
    assert canonical_url(once) == once == "http://%251%E2%81%844/"


@pytest.mark.parametrize(
    ("url", "canonical"),
    [
        # Found by the property above: Nameprep folds "？" to "?", which would end the host when read again.
        ("\uff1f", "http://%EF%BC%9F/"),
        ("http://a\uff05b/", "http://a%EF%BC%85b/"),
        ("http://\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45\uff0e\uff43\uff4f\uff4d/", "http://example.com/"),
    ],
)
def test_a_name_is_converted_by_idna_only_when_it_reads_back_the_same(url, canonical):
    assert canonical_url(url) == canonical
    assert canonical_url(canonical) == canonical


@pytest.mark.parametrize("url", [".[", "http://a[b/", "http://x]/", "http://..[/"])
def test_a_bracket_outside_an_ipv6_literal_is_refused(url):
    # Found by the property above: ".[" became "http://[/", which then read as a broken IPv6 literal.
    with pytest.raises(BadURL, match="bracket"):
        canonical_url(url)


def test_deep_escape_nesting_is_linear():
    url = "http://example.com/%" + "25" * 50_000 + "41"
    assert canonical_url(url) == "http://example.com/A"


def test_accepts_str_subclasses_and_bytes():
    class Text(str):
        pass

    assert canonical_url(Text("https://example.com/a.jpg")) == "https://example.com/a.jpg"
    assert canonical_url(Text("HTTP://Example.com")) == "http://example.com/"
    assert canonical_url(b"HTTP://Example.com/%41") == "http://example.com/A"
