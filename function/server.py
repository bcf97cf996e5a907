"""What the service changes in Hypercorn, the server the container runs (``scripts/serve.sh``).

Five amendments, each small, installed by ``amend_hypercorn`` when ``function.asgi`` is loaded:

- **100 Continue when the body is wanted.** Hypercorn answers ``Expect: 100-continue`` as soon as
  it has parsed the headers, so a client sends its whole upload even to an instance that is about
  to refuse it. Here the 100 goes out only when the app first reads the body (the app calls the
  ``CONTINUE`` extension in its scope); an app that answers first (429, 401, …) has not had one
  byte of it sent.
- **An HTTP/2 request answered before its body ends is reset, and the connection lives on.** Shortly after the whole response
  has been sent, a stream the client still sends on is reset with NO_ERROR (RFC 9113 §8.1), which
  tells it to stop sending the rest without an error; without it a client sends its whole upload
  for nothing. What it sends meanwhile is dropped: Hypercorn would fail on it and close the
  connection with every other stream on it. A client that stops on its own when it reads the answer
  ends its request short of its Content-Length; once the answer has begun, that is not taken for a
  protocol error of the connection either (h2 would close it).
- **An HTTP/2 upload's DATA in reads, not frames.** Hypercorn hands each 16 KiB DATA frame to the
  app as a chunk of its own, acknowledges it and flushes: what one read of the socket brings for a
  stream goes on as one chunk, acknowledged once.
- **HTTP/2 receive windows of 4 MiB once the body is wanted.** Hypercorn keeps h2's 64 KiB
  windows, so an uploading client may have 64 KiB in flight: it stops for each acknowledgement,
  and the server handles the upload in small reads, each costing an iteration of the loop, a chunk
  and an acknowledgement. The connection's window is ``RECEIVE_WINDOW`` from the start; a stream's
  grows to it when the app starts reading its body (the ``CONTINUE`` extension, as over HTTP/1.1),
  so an upload refused before it is read still has about 64 KiB sent. Memory is still bounded by
  what the app has not read yet (Hypercorn's app queue, the body's read-ahead): a slow app stops
  the connection's reads, and TCP stops the client.
- **A DATA frame's text.** h2 formats every frame it receives for a trace log, and hyperframe
  writes a DATA frame's whole payload as hex to show its first ten bytes: a third of an upload's
  time over HTTP/2. A DATA frame's text gives its size instead.
"""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable

import h2.errors
import h2.events
import h2.exceptions
import h11
import hyperframe.frame
import hypercorn.protocol
from hypercorn.protocol.events import Body, Response
from hypercorn.protocol.events import Event as StreamEvent
from hypercorn.protocol.h2 import H2Protocol
from hypercorn.protocol.h11 import H11Protocol

CONTINUE = "scope.continue"  # scope["extensions"][CONTINUE]: awaitable, the body is wanted (100 Continue; an HTTP/2 window)
SendContinue = Callable[[], Awaitable[None]]
RESET_AFTER_S = 0.25  # how long an answered HTTP/2 request may still send before its stream is reset
RECEIVE_WINDOW = 4 << 20  # bytes an HTTP/2 client may send, per stream and per connection, before it is acknowledged


def amend_hypercorn() -> None:
    """Install the amendments; protocols are made per connection, so this holds for every later one."""
    hypercorn.protocol.H11Protocol = ContinueWhenRead  # type: ignore[misc]
    hypercorn.protocol.H2Protocol = ResetAfterAnswer  # type: ignore[misc]
    hyperframe.frame.DataFrame.__repr__ = _data_frame_repr  # type: ignore[method-assign]


class _HiddenContinue(h11.Connection):
    """h11's connection, not owning up to a client waiting for 100 Continue until ``body_wanted``.

    Hypercorn sends the 100 whenever h11 says the client is waiting; h11's own state is untouched.
    """

    body_wanted = False

    @property
    def they_are_waiting_for_100_continue(self) -> bool:
        return self.body_wanted and super().they_are_waiting_for_100_continue


class ContinueWhenRead(H11Protocol):
    """HTTP/1.1 with 100 Continue sent when the app reads the body, not when the headers are read."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.connection = _HiddenContinue(h11.SERVER, max_incomplete_event_size=self.config.h11_max_incomplete_size)

    async def _create_stream(self, request: h11.Request) -> None:
        if isinstance(self.connection, _HiddenContinue):
            self.connection.body_wanted = False  # a new request on a kept-alive connection
        await super()._create_stream(request)
        scope = getattr(self.stream, "scope", None)
        if scope is not None:
            scope["extensions"][CONTINUE] = self._send_continue

    async def _send_continue(self) -> None:
        connection = self.connection
        if not isinstance(connection, _HiddenContinue) or connection.body_wanted:
            return
        connection.body_wanted = True
        if connection.they_are_waiting_for_100_continue and connection.our_state is h11.SEND_RESPONSE:
            await self._send_h11_event(h11.InformationalResponse(
                status_code=100, headers=self.config.response_headers("h11")))


class ResetAfterAnswer(H2Protocol):
    """HTTP/2 that resets (NO_ERROR) a stream whose response has ended while its request has not,
    hands on DATA a read at a time, and opens ``RECEIVE_WINDOW`` to a client whose body is wanted.

    The reset waits ``RESET_AFTER_S``: a client that stops sending once it reads the answer (curl,
    browsers on an error status) has closed the stream by then, and some clients (curl 7.88) fail a
    request whose stream is reset while they are still reading its answer.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        end_stream = self.connection.end_stream

        def end_then_reset(stream_id: int) -> None:
            end_stream(stream_id)
            if not self._closed_stream(stream_id):  # the client is still sending its request
                self.task_group.spawn(self._reset_later, stream_id)

        self.connection.end_stream = end_then_reset  # type: ignore[method-assign]
        initiate_connection = self.connection.initiate_connection  # an upgrade from HTTP/1.1 calls it too

        def initiate_then_open() -> None:
            initiate_connection()
            connection = self.connection
            connection.increment_flow_control_window(RECEIVE_WINDOW - connection.inbound_flow_control_window)

        self.connection.initiate_connection = initiate_then_open  # type: ignore[method-assign]

    async def _create_stream(self, request: h2.events.RequestReceived) -> None:
        await super()._create_stream(request)
        scope = getattr(self.streams.get(request.stream_id), "scope", None)
        if scope is not None:
            scope["extensions"][CONTINUE] = self._body_wanted(request.stream_id)

    def _body_wanted(self, stream_id: int) -> SendContinue:
        """What the app calls when it starts reading the body: the stream's window grows from h2's
        64 KiB to ``RECEIVE_WINDOW`` (once). A request answered without its body being read (a 429)
        has had about 64 KiB of it sent, not 4 MiB."""
        opened = False

        async def open_window() -> None:
            nonlocal opened
            if opened:
                return
            opened = True
            try:
                increment = RECEIVE_WINDOW - self.connection.remote_flow_control_window(stream_id)
                if increment > 0:
                    self.connection.increment_flow_control_window(increment, stream_id)
            except h2.exceptions.ProtocolError:
                return  # the stream is closed, or its body has all come
            await self._flush()

        return open_window

    async def stream_send(self, event: StreamEvent) -> None:
        """Hypercorn's, except that an answer begun while the request is still coming says that the
        rest of its body is not wanted: a client that stops when it reads the answer ends its request
        short of its Content-Length (curl does), and h2 would take that for a protocol error of the
        whole connection, and close it with every other stream on it."""
        if isinstance(event, Response) and not self._closed_stream(event.stream_id):
            self.connection.streams[event.stream_id]._expected_content_length = None
        await super().stream_send(event)

    async def _handle_events(self, events: list[h2.events.Event]) -> None:
        """Hypercorn's handling, except for DATA. What one read of the socket brought for a stream
        (several 16 KiB frames) goes to it as one body chunk, acknowledged once: Hypercorn's way, a
        chunk, an acknowledgement and a flush per frame, is most of what an h2c upload costs. The
        rest of a body whose stream was answered and closed is dropped and its credit given back
        (Hypercorn would fail on it and drop the connection). Other events go one at a time, in
        order, after the data before them, so a stream opened earlier in the batch is known."""
        arrived: dict[int, tuple[list[bytes], int]] = {}  # stream → its data so far, its flow-controlled size
        for event in events:
            if isinstance(event, h2.events.DataReceived):
                chunks, size = arrived.get(event.stream_id, ([], 0))
                chunks.append(event.data)
                arrived[event.stream_id] = (chunks, size + event.flow_controlled_length)
                continue
            await self._deliver(arrived)
            await super()._handle_events([event])
        await self._deliver(arrived)
        await self._flush()

    async def _deliver(self, arrived: dict[int, tuple[list[bytes], int]]) -> None:
        for stream_id, (chunks, size) in arrived.items():
            stream = self.streams.get(stream_id)
            if stream is not None:
                await stream.handle(Body(stream_id=stream_id, data=b"".join(chunks)))
            self.connection.acknowledge_received_data(size, stream_id)
        arrived.clear()

    def _closed_stream(self, stream_id: int) -> bool:
        stream = self.connection.streams.get(stream_id)
        return stream is None or stream.closed

    async def _reset_later(self, stream_id: int) -> None:
        await asyncio.sleep(RESET_AFTER_S)
        if self.closed or self._closed_stream(stream_id):
            return
        try:
            self.connection.reset_stream(stream_id, h2.errors.ErrorCodes.NO_ERROR)
        except h2.exceptions.ProtocolError:
            return  # closed in the meantime
        await self._flush()


def _data_frame_repr(frame: hyperframe.frame.DataFrame) -> str:
    """A DATA frame's text, which h2 makes for every frame it receives (for a log line nobody
    reads): its stream, flags and size, not its bytes."""
    return f"DataFrame(stream_id={frame.stream_id}, flags={sorted(frame.flags)}): {len(frame.data)} bytes"
