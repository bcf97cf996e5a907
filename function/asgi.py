"""The service for Cloud Run: the same functions-framework app, served over HTTP/2 cleartext.

Cloud Run refuses HTTP/1 request bodies over 32 MiB; with HTTP/2 end to end there is no such
cap, so the container serves h2c with Hypercorn (``scripts/serve.sh``, which ``make run`` uses
too). Hypercorn's own WSGI wrapper would buffer a whole upload in memory, so the Flask app is
adapted to ASGI with a2wsgi, whose ``wsgi.input`` streams the body as it arrives.

A streamed body is read on one of a2wsgi's request threads, and a client that declares a body and
never sends it (or sends a byte now and then) would hold that thread for ever: ``BodyDeadline``
cuts off a body that stalls or crawls, and the reader sees ``BodyStalled`` (408).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Awaitable, Callable

import functions_framework
from a2wsgi import WSGIMiddleware

from . import config
from .upload import BodyStalled

Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[dict[str, Any], Receive, Send], Awaitable[None]]

BODY_GRACE_S = 10.0  # the first seconds of a body are not held to the minimum rate (slow starts)
REQUEST_THREADS = 16


class BodyDeadline:
    """Each request's body keeps arriving, or its read fails: at most ``idle_s`` between two pieces
    (per request, so one HTTP/2 connection's streams are each held to it) and, after a grace period,
    at least ``min_rate`` bytes a second on average."""

    def __init__(self, app: ASGIApp, idle_s: float, min_rate: int) -> None:
        self.app, self.idle_s, self.min_rate = app, idle_s, min_rate

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        started = loop.time()
        received = 0

        async def bounded() -> Message:
            nonlocal received
            try:
                message = await asyncio.wait_for(receive(), self.idle_s)
            except asyncio.TimeoutError:
                raise BodyStalled(f"the request body stalled: nothing arrived for {self.idle_s:g} s") from None
            received += len(message.get("body", b""))
            elapsed = loop.time() - started
            if message.get("more_body") and elapsed > BODY_GRACE_S and received < self.min_rate * elapsed:
                raise BodyStalled(f"the request body arrives too slowly ({received / elapsed / 1024:.1f} KiB/s; "
                                  f"at least {self.min_rate / 1024:g} KiB/s)")
            return message

        await self.app(scope, bounded, send)


_wsgi = functions_framework.create_app(target="scope", source=str(Path(__file__).resolve().parent / "main.py"))


def _streamed(environ: dict, start_response):  # noqa: ANN202 - a WSGI callable
    # The body ends where the stream ends (HTTP/2 need not send Content-Length): tell Werkzeug so.
    environ["wsgi.input_terminated"] = True
    return _wsgi(environ, start_response)


_settings = config.load()
app = BodyDeadline(WSGIMiddleware(_streamed, workers=REQUEST_THREADS), _settings.body_idle_s, _settings.body_min_rate)
