"""The service for Cloud Run: the same functions-framework app, served over HTTP/2 cleartext.

Cloud Run refuses HTTP/1 request bodies over 32 MiB; with HTTP/2 end to end there is no such
cap, so the container serves h2c with Hypercorn (``scripts/serve.sh``, which ``make run`` uses
too). Hypercorn's own WSGI wrapper would buffer a whole upload in memory, so the Flask app is
adapted to ASGI with a2wsgi, whose ``wsgi.input`` streams the body as it arrives.

A streamed body is read on one of a2wsgi's request threads, and a client that declares a body and
never sends it (or sends a byte now and then) would hold that thread for ever: ``BodyReader``
cuts off a body that stalls or crawls, and the reader sees ``BodyStalled`` (408).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Awaitable, Callable

import functions_framework
from a2wsgi import WSGIMiddleware

from . import config
from .server import CONTINUE, SendContinue, amend_hypercorn
from .upload import BodyStalled

Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[dict[str, Any], Receive, Send], Awaitable[None]]

BODY_GRACE_S = 10.0  # the first seconds of a body are not held to the minimum rate (slow starts)
REQUEST_THREADS = 16
PREFETCH = 4 * 1024 * 1024  # body bytes read ahead of the app
HANDOVER = 256 * 1024  # the app's read waits for this much (or the end of the body) ...
HANDOVER_WAIT_S = 0.05  # ... for at most this long, then takes what has come


class BodyReader:
    """Each request's body, read ahead of the app and handed over in large pieces, and held to a pace.

    a2wsgi hands the body to the WSGI thread one ASGI message at a time, each a round trip between
    threads; over HTTP/2 a message is one DATA frame (16 KiB from most clients), so a large upload
    made thousands of them. Here a task reads up to ``PREFETCH`` bytes ahead, from the app's first
    read on (a request refused before its body is read reads none of it), and each of the app's
    reads takes everything that has arrived.

    The body must keep arriving, or the read fails with ``BodyStalled`` (408): at most ``idle_s``
    between two pieces (per request, so one HTTP/2 connection's streams are each held to it) and,
    after a grace period, at least ``min_rate`` bytes a second on average.
    """

    def __init__(self, app: ASGIApp, idle_s: float, min_rate: int) -> None:
        self.app, self.idle_s, self.min_rate = app, idle_s, min_rate

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body = _ReadAhead(receive, self.idle_s, self.min_rate, scope.get("extensions", {}).get(CONTINUE))
        try:
            await self.app(scope, body.receive, send)
        finally:
            body.close()


class _ReadAhead:
    """One request's body: a reader task fills ``pending``; ``receive`` empties it.

    ``arrived`` is set when ``pending`` stops being empty, reaches ``HANDOVER``, or the body ends
    or fails: not at every piece, which would wake ``receive`` as often as before.
    """

    def __init__(self, receive: Receive, idle_s: float, min_rate: int, send_continue: SendContinue | None) -> None:
        self.source, self.idle_s, self.min_rate = receive, idle_s, min_rate
        self.send_continue = send_continue  # the client may be waiting for 100 Continue before its body
        self.loop = asyncio.get_running_loop()
        self.started = self.loop.time()
        self.pending = bytearray()
        self.ended = False  # the last piece of the body has arrived
        self.handed_over = False  # ... and the app has been told so
        self.failure: BaseException | None = None
        self.disconnected = False
        self.arrived = asyncio.Event()  # something for ``receive`` to hand over
        self.room = asyncio.Event()  # ``pending`` has room for more
        self.room.set()
        self.reader: asyncio.Task[None] | None = None
        self.last_piece_at = self.started
        self.paused = False  # waiting for room, not for the client
        self.stalled = False  # the watchdog stopped the reader
        self.watchdog: asyncio.TimerHandle | None = None

    async def receive(self) -> Message:
        if self.handed_over:
            return await self.source()  # after the body: only http.disconnect is left to come
        if self.reader is None:
            if self.send_continue is not None:
                await self.send_continue()
            self.reader = asyncio.ensure_future(self._read())
        handover_by = self.loop.time() + HANDOVER_WAIT_S
        while not (self.ended or self.failure or self.disconnected or len(self.pending) >= HANDOVER):
            self.arrived.clear()
            if not self.pending:
                await self.arrived.wait()
                continue
            try:  # a piece worth a round trip to the app's thread, or what came in a moment
                async with asyncio.timeout_at(handover_by):
                    await self.arrived.wait()
            except TimeoutError:
                break
        if self.failure is not None:
            raise self.failure
        if self.disconnected and not self.pending:
            return {"type": "http.disconnect"}
        data = bytes(self.pending)
        self.pending.clear()
        self.room.set()
        self.handed_over = self.ended
        return {"type": "http.request", "body": data, "more_body": not self.ended}

    async def _read(self) -> None:
        received = 0
        self.last_piece_at = self.loop.time()
        self.watchdog = self.loop.call_at(self.last_piece_at + self.idle_s, self._watch)
        try:
            while True:
                if not self.room.is_set():
                    self.paused = True  # the app is behind: the client is not to blame for this wait
                    await self.room.wait()
                    self.paused, self.last_piece_at = False, self.loop.time()
                message = await self.source()
                self.last_piece_at = self.loop.time()
                if message["type"] == "http.disconnect":
                    self.disconnected = True
                    return
                piece = message.get("body", b"")
                received += len(piece)
                first = not self.pending
                self.pending += piece
                if not message.get("more_body"):
                    self.ended = True
                    return
                elapsed = self.last_piece_at - self.started
                if elapsed > BODY_GRACE_S and received < self.min_rate * elapsed:
                    raise BodyStalled(f"the request body arrives too slowly ({received / elapsed / 1024:.1f} "
                                      f"KiB/s; at least {self.min_rate / 1024:g} KiB/s)")
                if len(self.pending) >= PREFETCH:
                    self.room.clear()
                if first or len(self.pending) >= HANDOVER:
                    self.arrived.set()
        except BodyStalled as exc:
            self.failure = exc
        except asyncio.CancelledError:
            if not self.stalled:
                raise
            self.failure = BodyStalled(f"the request body stalled: nothing arrived for {self.idle_s:g} s")
        finally:
            self.watchdog.cancel()
            self.arrived.set()

    def _watch(self) -> None:
        """Stop the reader when nothing has arrived for ``idle_s``; else look again when that could be.

        One timer per request, not one per piece: a piece only notes when it came."""
        due = self.last_piece_at + self.idle_s
        if self.paused or self.loop.time() < due:
            self.watchdog = self.loop.call_at(max(due, self.loop.time() + 0.01), self._watch)
        elif self.reader is not None:
            self.stalled = True
            self.reader.cancel()

    def close(self) -> None:
        if self.reader is not None and not self.reader.done():
            self.reader.cancel()


_wsgi = functions_framework.create_app(target="scope", source=str(Path(__file__).resolve().parent / "main.py"))


def _streamed(environ: dict, start_response):  # noqa: ANN202 - a WSGI callable
    # The body ends where the stream ends (HTTP/2 need not send Content-Length): tell Werkzeug so.
    environ["wsgi.input_terminated"] = True
    return _wsgi(environ, start_response)


amend_hypercorn()
_settings = config.load()
app = BodyReader(WSGIMiddleware(_streamed, workers=REQUEST_THREADS), _settings.body_idle_s, _settings.body_min_rate)
