"""Slow and stalling clients against the production entry (``scripts/serve.sh``, which ``make run`` uses):
bodies that never come, come a byte at a time, or hide in many HTTP/2 streams must not stop the
service from answering everyone else."""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Iterator

import h2.config
import h2.connection
import h2.errors
import h2.events
import pytest
import requests

from conftest import PageServer, serve_sh, upload
from function.server import RECEIVE_WINDOW

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


def keep_sending_over_h2(url: str, stop_when_answered: bool = False) -> tuple[int, int, int | None, int]:
    """POST a 90 MB body on one HTTP/2 stream, sending whatever flow control allows until the server
    resets the stream; then GET /health on the same connection. The answer's status, the bytes sent,
    the reset's error code and the second request's status. ``stop_when_answered``: as curl does,
    end the request (short of its Content-Length) as soon as the answer comes, and ask at once."""
    sock = connect(url)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    conn.send_headers(1, [(":method", "POST"), (":path", "/recordings"), (":scheme", "http"), (":authority", "x"),
                          ("content-type", "multipart/form-data; boundary=b"), ("content-length", str(90 << 20))])
    sock.sendall(conn.data_to_send())
    sock.settimeout(0.01)
    status, sent, reset, then = 0, 0, None, 0
    piece = b"\x00" * 16384
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not then:
        if reset is None and sent < 90 << 20 and conn.local_flow_control_window(1) >= len(piece):
            conn.send_data(1, piece)
            sent += len(piece)
        sock.sendall(conn.data_to_send())
        try:
            data = sock.recv(65536)
        except TimeoutError:
            continue
        assert data, "the server closed the connection"
        for event in conn.receive_data(data):
            if isinstance(event, h2.events.ResponseReceived):
                code = int(dict(event.headers)[b":status"])
                if event.stream_id == 1:
                    status = code
                    if stop_when_answered:
                        conn.end_stream(1)
                        reset = 0  # nothing more to send on it
                        conn.send_headers(3, [(":method", "GET"), (":path", "/health"), (":scheme", "http"),
                                              (":authority", "x")], end_stream=True)
                else:
                    then = code
            elif isinstance(event, h2.events.StreamReset) and event.stream_id == 1 and not stop_when_answered:
                reset = event.error_code
                conn.send_headers(3, [(":method", "GET"), (":path", "/health"), (":scheme", "http"),
                                      (":authority", "x")], end_stream=True)
    sock.close()
    return status, sent, reset, then


def test_an_http2_client_may_send_4_mib_before_it_is_acknowledged(served: str) -> None:
    """The connection's window is ``RECEIVE_WINDOW`` from the start, and a stream's grows to it when
    the app reads its body (h2's default, 64 KiB, makes an uploading client stop for every
    acknowledgement): a client sends that much at once, then the rest as acknowledged, and gets its
    answer on a connection that stays usable. An upgrade from HTTP/1.1 still works."""
    head = (b'--b\r\nContent-Disposition: form-data; name="file"; filename="v.webm"\r\n'
            b"Content-Type: video/webm\r\n\r\n\x1a\x45\xdf\xa3")
    body = head + b"\x00" * (2 * RECEIVE_WINDOW) + b"\r\n--b--\r\n"
    sock = connect(served)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    conn.send_headers(1, [(":method", "POST"), (":path", "/recordings"), (":scheme", "http"), (":authority", "x"),
                          ("content-type", "multipart/form-data; boundary=b"), ("content-length", str(len(body)))])
    sock.sendall(conn.data_to_send())
    deadline = time.monotonic() + 20
    while conn.local_flow_control_window(1) < RECEIVE_WINDOW:  # the app reads: the stream's window grows
        assert time.monotonic() < deadline, conn.local_flow_control_window(1)
        data = sock.recv(65536)
        assert data, "the server closed the connection"
        conn.receive_data(data)
        sock.sendall(conn.data_to_send())
    assert conn.local_flow_control_window(1) == RECEIVE_WINDOW
    sent = 0
    while sent < RECEIVE_WINDOW:  # all of it before reading anything from the server
        piece = body[sent:sent + conn.max_outbound_frame_size]
        conn.send_data(1, piece)
        sent += len(piece)
    sock.sendall(conn.data_to_send())
    status, answer_body = 0, b""
    ended = False
    while not ended:
        window = conn.local_flow_control_window(1)
        while sent < len(body) and window:
            piece = body[sent:sent + min(window, conn.max_outbound_frame_size)]
            conn.send_data(1, piece, end_stream=sent + len(piece) == len(body))
            sent += len(piece)
            window = conn.local_flow_control_window(1)
        sock.sendall(conn.data_to_send())
        data = sock.recv(65536)
        assert data, "the server closed the connection"
        for event in conn.receive_data(data):
            assert not isinstance(event, (h2.events.StreamReset, h2.events.ConnectionTerminated)), event
            if isinstance(event, h2.events.ResponseReceived):
                status = int(dict(event.headers)[b":status"])
            elif isinstance(event, h2.events.DataReceived):
                answer_body += event.data
                conn.acknowledge_received_data(event.flow_controlled_length, 1)
            elif isinstance(event, h2.events.StreamEnded):
                ended = True
        sock.sendall(conn.data_to_send())
    sock.close()
    assert sent == len(body)
    assert status == 400 and json.loads(answer_body)["code"] == "MISSING_FIELD", (status, answer_body)
    upgraded = subprocess.run(["curl", "-sS", "--http2", f"{served}/health", "-o", "/dev/null",
                               "-w", "%{http_code} %{http_version}"], capture_output=True, text=True, timeout=30)
    assert upgraded.stdout == "200 2", upgraded.stdout + upgraded.stderr


@pytest.fixture(scope="module")
def full(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An instance that runs one recording at a time."""
    with serve_sh(tmp_path_factory.mktemp("full"), SCOPE_MAX_INFLIGHT="1") as url:
        yield url


def test_a_full_instance_refuses_an_upload_before_its_body(full: str, small_video: Path, pages: PageServer,
                                                           tmp_path: Path) -> None:
    """90 MB to an instance at its limit: 429 with Retry-After, and the client stops long before the
    end of its file. With ``Expect: 100-continue`` not one byte of the body is sent (the 100 would
    only come once the service reads the body); without it, the connection is closed after at most
    1 MiB is read; over HTTP/2 the stream is reset with NO_ERROR once the answer is complete."""
    big = tmp_path / "big.webm"
    with open(big, "wb") as out:
        out.write(b"\x1a\x45\xdf\xa3" + b"\x00" * (90 * 1024 * 1024))
    path = f"/slow?d=20.{uuid.uuid4().int % 10**6:06d}"
    def hold() -> None:  # the slot's holder; the server may be stopped before it is answered
        try:
            upload(full, small_video, seedUrl=pages.url + path)
        except requests.RequestException:
            pass

    holder = threading.Thread(target=hold, daemon=True)
    holder.start()
    deadline = time.monotonic() + 60
    while path not in pages.hits:  # the one slot is taken
        assert time.monotonic() < deadline
        time.sleep(0.05)

    def curl(*extra: str) -> tuple[str, int, str]:
        out = subprocess.run(["curl", "-sS", *extra, "-F", f"file=@{big}", "-F", "title=t", "-F",
                              f"seedUrl={pages.url}/", f"{full}/recordings", "-D", "-", "-o", "/dev/null",
                              "-w", "\n%{http_code} %{size_upload}"], capture_output=True, text=True, timeout=120)
        head, _, tail = out.stdout.rpartition("\n")
        status, sent = tail.split()
        return status, int(float(sent)), head.lower() + out.stderr

    status, sent, head = curl("--http1.1", "--expect100-timeout", "60")  # curl asks for 100 Continue
    assert status == "429" and "retry-after:" in head and sent == 0, (status, sent, head)
    status, sent, head = curl("--http1.1", "-H", "Expect:")  # no 100-continue: the body comes at once
    assert status == "429" and "retry-after:" in head and "connection: close" in head
    assert sent < 32 * 1024 * 1024, sent  # socket buffers' worth, not the 90 MB
    status, sent, head = curl("--http2-prior-knowledge")  # curl stops sending once it reads the 429
    assert status == "429" and "retry-after:" in head, (status, head)
    # The stream's window stays at h2's 64 KiB until the app reads the body (it would be 4 MiB at
    # once otherwise); what the server acknowledged of it before the answer may add a little.
    assert sent < 1024 * 1024, sent
    status, sent, reset, then = keep_sending_over_h2(full)  # a client that would send all 90 MB
    assert status == 429 and reset == h2.errors.ErrorCodes.NO_ERROR and sent < 32 * 1024 * 1024, (status, reset, sent)
    assert then == 200  # the same connection serves the next request
    status, sent, _, then = keep_sending_over_h2(full, stop_when_answered=True)  # what curl does
    assert status == 429 and then == 200  # a request ended short after its answer: the connection lives on
    assert requests.get(full + "/health", timeout=10).status_code == 200


def read_head(sock: socket.socket, data: bytes = b"") -> tuple[bytes, bytes]:
    """The next response head on ``sock`` (status line and headers) and what came after it."""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"the server closed the connection after {data!r}"
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


def test_each_request_on_a_kept_alive_connection_gets_its_100_continue_only_when_read(
        tmp_path_factory: pytest.TempPathFactory) -> None:
    """Two uploads with ``Expect: 100-continue`` on one HTTP/1.1 connection: the first is read (its
    100 comes, then its answer); the second is refused unread, so no 100 may come for it at all."""
    with serve_sh(tmp_path_factory.mktemp("keepalive"), SCOPE_API_KEYS="alice:key-alice") as url:
        sock = connect(url)
        body = b'--b\r\nContent-Disposition: form-data; name="notes"\r\n\r\nno title\r\n--b--\r\n'

        def headers(key: str, length: int) -> bytes:
            return (f"POST /recordings HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n"
                    f"Content-Type: multipart/form-data; boundary=b\r\nContent-Length: {length}\r\n"
                    "Expect: 100-continue\r\n\r\n").encode()

        sock.sendall(headers("key-alice", len(body)))
        head, rest = read_head(sock)
        assert head.startswith(b"HTTP/1.1 100"), head  # read: the body is wanted
        sock.sendall(body)
        head, rest = read_head(sock, rest)
        assert head.startswith(b"HTTP/1.1 400"), head  # read to its end: no title
        length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:")))
        while len(rest) < length:
            rest += sock.recv(65536)
        assert b"MISSING_FIELD" in rest[:length]
        sock.sendall(headers("wrong-key", 90 << 20))  # the same connection, a body never sent
        head, _ = read_head(sock, rest[length:])
        assert head.startswith(b"HTTP/1.1 401"), head  # no 100 Continue before it
        sock.close()
