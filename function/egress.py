"""The browser's only way out: a forward proxy on 127.0.0.1 that checks every connection.

Checking the seed URL is not enough: a page can redirect, or load sub-resources, anywhere —
loopback, the private network, the metadata server — and Playwright's request routing does not
see redirects. So Chromium is started with this proxy for everything (loopback included), and
the proxy resolves each host itself, refuses non-public addresses (``urlguard.check_host``), and
connects to the very address it checked (no second DNS answer can point elsewhere). A refused
HTTP request gets a 403 carrying ``X-Scope-Blocked``; a refused HTTPS tunnel fails to open.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Callable
from urllib.parse import urlsplit

from .urlguard import Blocked

log = logging.getLogger("scope.egress")

BLOCKED_HEADER = "X-Scope-Blocked"
MAX_HEAD_BYTES = 64 * 1024
CONNECT_TIMEOUT_S = 10.0

Checker = Callable[[str, int], list[str]]  # host, port → addresses to use, or raises Blocked


class GuardProxy:
    def __init__(self, check: Checker) -> None:
        self.check = check
        self.port = 0
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0, limit=MAX_HEAD_BYTES)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None

    async def _refuse(self, writer: asyncio.StreamWriter, reason: str, status: str = "403 Forbidden") -> None:
        body = f"Blocked by Claude Scope: {reason}\n".encode()
        reason_header = reason.encode("ascii", "replace").decode()
        # CORS-readable, so that a refused fetch() shows up as this answer rather than as a CORS error.
        writer.write(f"HTTP/1.1 {status}\r\n{BLOCKED_HEADER}: {reason_header}\r\nContent-Type: text/plain\r\n"
                     f"Access-Control-Allow-Origin: *\r\nAccess-Control-Expose-Headers: {BLOCKED_HEADER}\r\n"
                     f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
        with contextlib.suppress(Exception):
            await writer.drain()
        writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError:  # no end of the head within MAX_HEAD_BYTES
            await self._refuse(writer, "request head too large", "431 Request Header Fields Too Large")
            return
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()
            return
        lines = head.decode("latin-1").split("\r\n")
        try:
            method, target, version = lines[0].split(" ", 2)
        except ValueError:
            await self._refuse(writer, "malformed request", "400 Bad Request")
            return
        if method == "CONNECT":
            host, _, port_text = target.rpartition(":")
            if not host or not port_text.isdigit():  # no port given: HTTPS's
                host, port_text = target, "443"
            port = int(port_text)
            forward = b""
        else:
            parts = urlsplit(target)
            if parts.scheme != "http" or not parts.hostname:
                await self._refuse(writer, f"{parts.scheme or 'this'} requests are not proxied", "400 Bad Request")
                return
            host, port = parts.hostname, parts.port or 80
            path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            headers = [line for line in lines[1:] if line and not line.lower().startswith(
                ("proxy-connection:", "proxy-authorization:", "connection:", "keep-alive:"))]
            forward = (f"{method} {path} {version}\r\n" + "\r\n".join(headers + ["Connection: close"])
                       + "\r\n\r\n").encode("latin-1")
        try:
            addresses = await asyncio.to_thread(self.check, host, port)
        except Blocked as exc:
            log.info("blocked %s %s:%s: %s", method, host, port, exc)  # never the path or query: they may hold secrets
            await self._refuse(writer, str(exc))
            return
        try:
            upstream_reader, upstream_writer = await asyncio.wait_for(
                asyncio.open_connection(addresses[0], port), CONNECT_TIMEOUT_S)
        except (OSError, asyncio.TimeoutError):
            await self._refuse(writer, f"cannot connect to {host}:{port}", "502 Bad Gateway")
            return
        if method == "CONNECT":
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        else:
            upstream_writer.write(forward)
        await asyncio.gather(_pipe(reader, upstream_writer), _pipe(upstream_reader, writer))


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    try:
        while data := await source.read(65536):
            sink.write(data)
            await sink.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        with contextlib.suppress(Exception):
            sink.close()
