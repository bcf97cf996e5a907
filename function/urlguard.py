"""Where the server's browser may go: a pure decision over a URL and its DNS answers.

The browser runs on our network with our credentials nearby (the metadata
server), so user-given URLs must not reach loopback, private, link-local,
shared or metadata addresses unless the operator allows it (local development).
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from typing import Callable, Iterable
from urllib.parse import quote, urlsplit, urlunsplit

Resolver = Callable[[str], Iterable[str]]

# IPv6 prefixes whose last 32 bits are an IPv4 address the packet reaches (RFC 6052, 4291, 2765).
EMBEDS_IPV4 = tuple(ipaddress.ip_network(n) for n in ("64:ff9b::/96", "64:ff9b:1::/48", "::/96", "::ffff:0:0:0/96"))
BLOCKED_HOSTNAMES = {"metadata.google.internal", "metadata", "metadata.goog"}


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str = ""


def system_resolver(host: str) -> list[str]:
    """Every address the system resolver gives for ``host`` (IP spellings like ``127.1`` included)."""
    infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    return sorted({info[4][0] for info in infos})


def address_is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return address_is_public(str(ip.ipv4_mapped))
        if any(ip in net for net in EMBEDS_IPV4):  # NAT64, IPv4-compatible, IPv4-translated: the IPv4 inside decides
            return address_is_public(str(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)))
        if ip.sixtofour is not None and not address_is_public(str(ip.sixtofour)):
            return False
    return ip.is_global and not ip.is_multicast


class Blocked(ValueError):
    """The host may not be reached; the message says why."""


def check_host(host: str, port: int, resolve: Resolver = system_resolver,
               allowed_hosts: frozenset[str] = frozenset()) -> list[str]:
    """The addresses to connect to for ``host:port``, all of them public, or ``Blocked``.

    Callers connect to these very addresses, so a second DNS answer cannot point elsewhere.
    """
    host = host.strip("[]").rstrip(".").lower()
    if not host:
        raise Blocked("no host")
    allowed = f"{host}:{port}" in allowed_hosts
    if host in BLOCKED_HOSTNAMES and not allowed:
        raise Blocked(f"{host} is a metadata host")
    try:
        addresses = list(resolve(host))
    except (OSError, UnicodeError):
        raise Blocked(f"{host} does not resolve") from None
    if not addresses:
        raise Blocked(f"{host} does not resolve")
    if allowed:
        return addresses
    for address in addresses:
        try:
            public = address_is_public(address)
        except ValueError:
            raise Blocked(f"{host} resolves to an unreadable address") from None
        if not public:
            raise Blocked(f"{host} resolves to a non-public address")  # which one is not told: no oracle
    return addresses


URL_CHARACTERS = "-._~:/?#[]@!$&'()*+,;=%"  # RFC 3986's unreserved and reserved characters, and escapes


def inert_url(url: str) -> str:
    """``url`` with every character a URL may not hold raw percent-encoded (spaces, line breaks, quotes,
    backticks, angle brackets, non-ASCII): printed anywhere, it cannot end a fence, open a tag or a line."""
    return quote(url, safe=URL_CHARACTERS)


def without_credentials(url: str) -> str:
    """``url`` without a ``user:password@`` part (a URL read off a screen is neither opened nor shown with one)."""
    try:
        parts = urlsplit(url)
        if "@" not in parts.netloc:
            return url
        host = parts.netloc.rpartition("@")[2]
    except ValueError:
        return url
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


def decide(url: str, resolve: Resolver = system_resolver, allow_private: bool = False,
           allowed_hosts: frozenset[str] = frozenset()) -> Decision:
    """May the browser open ``url``? ``allowed_hosts`` lists exact ``host:port`` exceptions."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return Decision(False, "the URL cannot be parsed")
    if parts.scheme not in {"http", "https"}:
        return Decision(False, f"scheme {parts.scheme or '(none)'} is not allowed")
    host = (parts.hostname or "").rstrip(".").lower()
    if not host:
        return Decision(False, "the URL has no host")
    if allow_private:
        return Decision(True)
    try:
        check_host(host, port or (443 if parts.scheme == "https" else 80), resolve, allowed_hosts)
    except Blocked as exc:
        return Decision(False, str(exc))
    return Decision(True)
