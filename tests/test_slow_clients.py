"""Slow and stalling clients against the production entry (``scripts/serve.sh``, which ``make run`` uses):
bodies that never come, come a byte at a time, or hide in many HTTP/2 streams must not stop the
service from answering everyone else."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Iterator

import h2.config
import h2.connection
import h2.events
import pytest
import requests

from conftest import serve_sh

ATTACKERS = 24  # more than the server's request threads
IDLE_S = 2  # the served instance's SCOPE_BODY_IDLE_S


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with serve_sh(tmp_path_factory.mktemp("slow"), SCOPE_BODY_IDLE_S=str(IDLE_S)) as url:
        yield url


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def connect(url: str) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port_of(url)), timeout=30)


def declare_body(url: str, method: str, path: str, length: int, content_type: str = "application/json") -> socket.socket:
    """A request whose headers promise ``length`` bytes of body, none of which is sent."""
    sock = connect(url)
    sock.sendall(f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\n"
                 f"Content-Length: {length}\r\n\r\n".encode())
    return sock


def answer(sock: socket.socket) -> tuple[int, dict]:
    """The status and JSON body of the answer on ``sock`` (read until the server closes it)."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body) if body.startswith(b"{") else {}


def still_served(url: str) -> None:
    """Another client is answered while the attack is on (the timeout fails the test if it is not)."""
    response = requests.get(url + "/health", timeout=IDLE_S * 4)
    assert response.status_code == 200 and response.json()["status"] == "ok"


def test_bodies_that_never_come_are_cut_off(served: str) -> None:
    attackers = [declare_body(served, "POST", "/sessions", 10_000) for _ in range(ATTACKERS)]
    try:
        still_served(served)
        outcomes = [answer(sock) for sock in attackers]
    finally:
        for sock in attackers:
            sock.close()
    assert {status for status, _ in outcomes} == {408}
    assert outcomes[0][1]["code"] == "REQUEST_TIMEOUT" and "stalled" in outcomes[0][1]["message"]
    still_served(served)


def test_a_body_declared_on_a_get_is_never_waited_for(served: str) -> None:
    attackers = [declare_body(served, "GET", "/health", 10) for _ in range(ATTACKERS)]
    try:
        still_served(served)
        outcomes = [answer(sock) for sock in attackers]  # answered at once, and the connection closed
    finally:
        for sock in attackers:
            sock.close()
    assert {status for status, _ in outcomes} == {200} and all(body["status"] == "ok" for _, body in outcomes)


def test_an_upload_that_crawls_is_cut_off(served: str) -> None:
    """A byte now and then keeps a body from stalling, but not above the minimum rate."""
    sock = declare_body(served, "POST", "/recordings", 50_000_000, "multipart/form-data; boundary=b")
    try:
        refused = None
        for _ in range(60):  # about 15 s: past the grace period
            try:
                sock.sendall(b"-")
            except OSError:  # the server has answered and closed: read what it said
                break
            time.sleep(0.25)
            sock.settimeout(0.01)
            try:
                if sock.recv(1, socket.MSG_PEEK):
                    break
            except (BlockingIOError, socket.timeout):
                pass
        sock.settimeout(30)
        refused = answer(sock)
    finally:
        sock.close()
    assert refused is not None and refused[0] == 408 and "too slowly" in refused[1]["message"]


def test_many_http2_streams_that_send_no_body(served: str) -> None:
    """One HTTP/2 connection, many streams that each promise a body: each is held to the deadline."""
    sock = connect(served)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    streams = []
    for _ in range(ATTACKERS):
        stream = conn.get_next_available_stream_id()
        conn.send_headers(stream, [(":method", "POST"), (":path", "/sessions"), (":scheme", "http"),
                                   (":authority", "x"), ("content-type", "application/json"),
                                   ("content-length", "10000")])
        streams.append(stream)
    sock.sendall(conn.data_to_send())
    try:
        still_served(served)
        statuses: dict[int, int] = {}
        while len(statuses) < len(streams):
            data = sock.recv(65536)
            assert data, f"the connection closed with {len(statuses)} of {len(streams)} streams answered"
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived):
                    statuses[event.stream_id] = int(dict(event.headers)[b":status"])
            sock.sendall(conn.data_to_send())
    finally:
        sock.close()
    assert set(statuses.values()) == {408}


def test_a_huge_request_line_is_refused_without_costing_the_server(served: str) -> None:
    """An 8 MB request line is not read to its end: the server stops at its header limit (16 KiB)."""
    sock = connect(served)
    try:
        sock.sendall(b"GET /sessions?" + b"a" * 65536)  # no end of line yet: the server decides early
        sock.settimeout(IDLE_S * 4)
        answered = b""
        try:
            while chunk := sock.recv(65536):
                answered += chunk
        except ConnectionResetError:
            pass
    finally:
        sock.close()
    assert answered.startswith(b"HTTP/1.1 431 "), answered[:200]
    still_served(served)
