"""The egress proxy on its own: raw HTTP through it to a page server on 127.0.0.1, with the host
check injected (the browser's use of it is tested in ``test_aria``)."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from typing import Iterator

import pytest

from conftest import PageServer
from function.egress import BLOCKED_HEADER, MAX_HEAD_BYTES, GuardProxy
from function.urlguard import Blocked


class Proxy:
    """A GuardProxy on an event loop of its own; ``allowed`` names the hosts the check lets through."""

    def __init__(self, allowed: dict[str, str]) -> None:
        self.checked: list[tuple[str, int]] = []

        def check(host: str, port: int) -> list[str]:
            self.checked.append((host, port))
            if host not in allowed:
                raise Blocked(f"{host} resolves to a non-public address")
            return [allowed[host]]

        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        self.proxy = GuardProxy(check)
        self.port = asyncio.run_coroutine_threadsafe(self.proxy.start(), self.loop).result(10)

    def send(self, data: bytes) -> bytes:
        """Send ``data`` to the proxy; everything it answers until it closes."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as sock:
            sock.sendall(data)
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        return answer

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.proxy.close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)


@pytest.fixture
def proxy(pages: PageServer) -> Iterator[Proxy]:
    # "site.example" is the page server; anything else is refused by the check.
    running = Proxy({"site.example": "127.0.0.1"})
    yield running
    running.close()


def test_an_allowed_request_goes_to_the_checked_address(proxy: Proxy, pages: PageServer) -> None:
    before = len(pages.hits)
    answer = proxy.send(f"GET http://site.example:{pages.port}/about?x=1 HTTP/1.1\r\nHost: site.example\r\n"
                        "Proxy-Authorization: Basic c2VjcmV0\r\nProxy-Connection: keep-alive\r\n\r\n".encode())
    assert answer.startswith(b"HTTP/1.0 200") or answer.startswith(b"HTTP/1.1 200"), answer[:100]
    assert b"<title>About</title>" in answer
    assert pages.hits[before:] == ["/about?x=1"]  # the path and query, made origin-form
    assert proxy.checked == [("site.example", pages.port)]


def test_a_refused_host_gets_a_403_that_names_no_address(proxy: Proxy, pages: PageServer) -> None:
    before = len(pages.hits)
    answer = proxy.send(f"GET http://internal.example:{pages.port}/admin HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 403") and f"{BLOCKED_HEADER}: ".encode() in head
    assert b"non-public" in body and b"127.0.0.1" not in answer
    assert pages.hits[before:] == []


def test_a_refused_tunnel_never_opens(proxy: Proxy) -> None:
    answer = proxy.send(b"CONNECT internal.example:443 HTTP/1.1\r\nHost: internal.example:443\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 403") and b"Connection established" not in answer
    assert proxy.checked == [("internal.example", 443)]


def test_an_allowed_tunnel_opens(proxy: Proxy, pages: PageServer) -> None:
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
        sock.sendall(f"CONNECT site.example:{pages.port} HTTP/1.1\r\n\r\n".encode())
        assert sock.recv(1024).startswith(b"HTTP/1.1 200 Connection established")
        sock.sendall(b"GET /about HTTP/1.1\r\nHost: site.example\r\nConnection: close\r\n\r\n")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert b"<title>About</title>" in answer


@pytest.mark.parametrize("request_bytes,status", [
    (b"NONSENSE\r\n\r\n", b"400"),
    (b"GET ftp://site.example/file HTTP/1.1\r\n\r\n", b"400"),
    (b"GET /relative HTTP/1.1\r\nHost: site.example\r\n\r\n", b"400"),
])
def test_what_is_not_a_proxied_http_request_is_refused(proxy: Proxy, request_bytes: bytes, status: bytes) -> None:
    assert proxy.send(request_bytes).startswith(b"HTTP/1.1 " + status)
    assert proxy.checked == []  # refused before any host was looked up


def test_a_huge_request_head_is_refused(proxy: Proxy) -> None:
    padding = b"X-Pad: " + b"a" * MAX_HEAD_BYTES + b"\r\n"
    answer = proxy.send(b"GET http://site.example/ HTTP/1.1\r\n" + padding + b"\r\n")
    assert answer.startswith(b"HTTP/1.1 431")
    assert proxy.checked == []


def test_an_unreachable_allowed_host_is_a_502() -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there now
    proxy = Proxy({"gone.example": "127.0.0.1"})
    try:
        answer = proxy.send(f"GET http://gone.example:{port}/ HTTP/1.1\r\n\r\n".encode())
    finally:
        proxy.close()
    assert answer.startswith(b"HTTP/1.1 502") and b"gone.example" in answer


class Recorder:
    """A server on 127.0.0.1 that keeps the raw request head it got and answers 200."""

    def __init__(self) -> None:
        self.heads: list[bytes] = []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                head = b""
                while b"\r\n\r\n" not in head and (chunk := conn.recv(65536)):
                    head += chunk
                self.heads.append(head)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")

    def close(self) -> None:
        self.sock.close()


def test_the_forwarded_request_is_origin_form_without_the_proxys_headers() -> None:
    upstream = Recorder()
    proxy = Proxy({"site.example": "127.0.0.1"})
    try:
        answer = proxy.send(f"GET http://site.example:{upstream.port}/about HTTP/1.1\r\nHost: site.example\r\n"
                            "Proxy-Authorization: Basic c2VjcmV0\r\nProxy-Connection: keep-alive\r\n"
                            "Connection: keep-alive\r\nKeep-Alive: 300\r\nX-Kept: yes\r\n\r\n".encode())
    finally:
        proxy.close()
        upstream.close()
    assert answer.endswith(b"ok")
    lines = upstream.heads[0].decode().split("\r\n")
    assert lines[0] == "GET /about HTTP/1.1"  # no query added, no absolute URL
    assert sorted(line.split(":")[0].lower() for line in lines[1:] if line) == ["connection", "host", "x-kept"]
    assert "Connection: close" in lines


@pytest.mark.parametrize("request_line,checked", [
    ("GET http://nothere.example/x HTTP/1.1", ("nothere.example", 80)),
    ("GET http://nothere.example:8080/x HTTP/1.1", ("nothere.example", 8080)),
    ("CONNECT nothere.example HTTP/1.1", ("nothere.example", 443)),
    ("CONNECT [::1]:8443 HTTP/1.1", ("[::1]", 8443)),
])
def test_the_host_and_port_checked_are_the_ones_asked_for(proxy: Proxy, request_line: str,
                                                         checked: tuple[str, int]) -> None:
    assert proxy.send(f"{request_line}\r\n\r\n".encode()).startswith(b"HTTP/1.1 403")
    assert proxy.checked == [checked]


def test_a_refusal_for_an_international_name_is_still_a_valid_answer(proxy: Proxy) -> None:
    answer = proxy.send("GET http://bücher.example/ HTTP/1.1\r\n\r\n".encode())
    head = answer.split(b"\r\n\r\n")[0].decode("ascii")  # the header line holds ASCII only
    assert head.startswith("HTTP/1.1 403") and f"{BLOCKED_HEADER}: b??cher.example" in head  # UTF-8's two bytes


def test_a_refusal_is_logged_with_host_and_port_only(proxy: Proxy, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="scope.egress")
    proxy.send(b"GET http://nothere.example:8080/reset?token=s3cret HTTP/1.1\r\n\r\n")
    assert [r.getMessage() for r in caplog.records if r.name == "scope.egress"] == [
        "blocked GET nothere.example:8080: nothere.example resolves to a non-public address"]
