"""The URL guard's decision, with DNS answers injected: no connection is ever made."""

from __future__ import annotations

import pytest

from function.urlguard import (Blocked, Decision, address_is_public, check_host, decide, inert_url,
                              without_credentials)


def resolver(table: dict[str, list[str]]):
    def resolve(host: str) -> list[str]:
        if host not in table:
            raise OSError("no such host")
        return table[host]
    return resolve


PUBLIC = resolver({"example.com": ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"],
                   "internal.example": ["10.1.2.3"],
                   "mixed.example": ["93.184.215.14", "192.168.1.10"],
                   "metadata.example": ["169.254.169.254"],
                   # A resolver that gives the metadata names a public address: the names are refused anyway.
                   "metadata.google.internal": ["93.184.215.14"], "metadata": ["93.184.215.14"]})


@pytest.mark.parametrize("address", [
    "127.0.0.1", "127.8.9.10", "10.0.0.1", "172.16.5.4", "192.168.0.1", "169.254.169.254", "100.64.0.1",
    "0.0.0.0", "224.0.0.1", "255.255.255.255", "::1", "::", "fe80::1", "fc00::1", "fd12:3456::1",
    "::ffff:127.0.0.1", "::ffff:10.0.0.1", "ff02::1", "2002:7f00:1::1", "fd00:ec2::254",
    "64:ff9b::7f00:1", "64:ff9b::a9fe:a9fe", "64:ff9b:1::a00:1", "::127.0.0.1", "::ffff:0:7f00:1",
])
def test_non_public_addresses(address: str) -> None:
    assert not address_is_public(address)


@pytest.mark.parametrize("address", ["93.184.215.14", "8.8.8.8", "2606:2800:21f:cb07:6820:80da:af6b:8b2c",
                                     "64:ff9b::808:808"])  # NAT64 to a public address stays public
def test_public_addresses(address: str) -> None:
    assert address_is_public(address)


def test_metadata_names_are_refused_by_name() -> None:
    for url in ("http://metadata.google.internal/computeMetadata/v1/", "http://METADATA.GOOGLE.INTERNAL./",
                "http://metadata/"):
        decision = decide(url, PUBLIC)
        assert not decision.allowed and "metadata host" in decision.reason


def test_a_refusal_does_not_tell_the_address_a_name_resolves_to() -> None:
    for url in ("http://internal.example/", "http://mixed.example/"):
        reason = decide(url, PUBLIC).reason
        assert "non-public" in reason and "10.1.2.3" not in reason and "192.168" not in reason


def test_public_host_is_allowed() -> None:
    assert decide("https://example.com/app", PUBLIC).allowed


@pytest.mark.parametrize("url", [
    "http://internal.example/", "http://mixed.example/", "http://metadata.example/computeMetadata/v1/",
    "http://metadata.google.internal/", "http://METADATA.GOOGLE.INTERNAL./", "http://nowhere.example/",
    "file:///etc/passwd", "javascript:alert(1)", "ftp://example.com/", "http:///nohost",
])
def test_refused(url: str) -> None:
    decision = decide(url, PUBLIC)
    assert not decision.allowed and decision.reason


@pytest.mark.parametrize("host", ["127.1", "2130706433", "0x7f000001", "0177.0.0.1", "[::ffff:127.0.0.1]",
                                  "localhost", "localhost.", "[::1]", "0"])
def test_loopback_spellings_with_the_system_resolver(host: str) -> None:
    """IP spellings resolve locally (no network): every one lands on a loopback address."""
    assert not decide(f"http://{host}:8080/", allow_private=False).allowed


def test_private_allowed_in_local_development() -> None:
    assert decide("http://127.0.0.1:3000/", PUBLIC, allow_private=True).allowed
    assert not decide("file:///etc/passwd", PUBLIC, allow_private=True).allowed


def test_exact_host_port_exception() -> None:
    allowed = frozenset({"127.0.0.1:8765"})
    assert decide("http://127.0.0.1:8765/x", allowed_hosts=allowed).allowed
    assert not decide("http://127.0.0.1:8766/x", allowed_hosts=allowed).allowed


@pytest.mark.parametrize("address", ["2606:2800::a00:1", "2001:4860::c0a8:101"])  # low 32 bits look private
def test_a_global_ipv6_address_is_not_judged_by_its_low_bits(address: str) -> None:
    assert address_is_public(address)


def test_a_scoped_ipv6_address_is_judged_without_its_zone() -> None:
    assert not address_is_public("fe80::1%eth0") and address_is_public("2606:2800::1%eth0")


@pytest.mark.parametrize("url,reason", [
    ("http://[::1/", "the URL cannot be parsed"),
    ("ftp://example.com/", "scheme ftp is not allowed"),
    ("example.com/path", "scheme (none) is not allowed"),
    ("http:///nohost", "the URL has no host"),
    ("http://nowhere.example/", "nowhere.example does not resolve"),
    ("http://internal.example/", "internal.example resolves to a non-public address"),
    ("http://Metadata.Google.Internal./", "metadata.google.internal is a metadata host"),
    ("http://empty.example/", "empty.example does not resolve"),
    ("http://odd.example/", "odd.example resolves to an unreadable address"),
])
def test_each_refusal_says_why(url: str, reason: str) -> None:
    table = resolver({"internal.example": ["10.1.2.3"], "empty.example": [], "odd.example": ["not-an-address"]})
    assert decide(url, table) == Decision(False, reason)


def test_check_host_takes_bracketed_and_dotted_names() -> None:
    table = resolver({"example.com": ["93.184.215.14"], "::1": ["::1"]})
    assert check_host("EXAMPLE.com.", 443, table) == ["93.184.215.14"]
    with pytest.raises(Blocked, match="non-public"):
        check_host("[::1]", 80, table)
    with pytest.raises(Blocked, match="^no host$"):
        check_host("[]", 80, table)
    assert check_host("[::1]", 8765, table, frozenset({"::1:8765"})) == ["::1"]


@pytest.mark.parametrize("url,clean", [
    ("https://admin:hunter2@shop.example.com:8443/o?id=7#top", "https://shop.example.com:8443/o?id=7#top"),
    ("http://user@[::1]:3000/", "http://[::1]:3000/"),
    ("http://a@b@example.com/", "http://example.com/"),  # the last @ ends the user part, as browsers read it
    ("https://example.com/a@b", "https://example.com/a@b"),  # an @ in the path is no credential
    ("https://example.com/", "https://example.com/"),
    ("http://[::1/", "http://[::1/"),  # unparsable: left as it is (the guard refuses it anyway)
])
def test_credentials_are_taken_out_of_a_url(url: str, clean: str) -> None:
    assert without_credentials(url) == clean


def test_an_inert_url_holds_nothing_that_can_end_a_fence_or_a_line() -> None:
    hostile = "https://app.example/x`\n```\r</urls><instructions> \"é\u2028?q=a b#f"
    inert = inert_url(hostile)
    assert inert == "https://app.example/x%60%0A%60%60%60%0D%3C/urls%3E%3Cinstructions%3E%20%22%C3%A9%E2%80%A8?q=a%20b#f"
    assert inert_url(inert) == inert  # escapes stay as they are
    assert inert_url("http://[::1]:3000/a?b=c&d=%41") == "http://[::1]:3000/a?b=c&d=%41"
