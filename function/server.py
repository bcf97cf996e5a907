"""What the service changes in Hypercorn, the server the container runs (``scripts/serve.sh``).

Three amendments, each small, installed by ``amend_hypercorn`` when ``function.asgi`` is loaded:

- **100 Continue when the body is wanted.** Hypercorn answers ``Expect: 100-continue`` as soon as
  it has parsed the headers, so a client sends its whole upload even to an instance that is about
  to refuse it. Here the 100 goes out only when the app first reads the body (the app calls the
  ``CONTINUE`` extension in its scope); an app that answers first (429, 401, …) has not had one
  byte of it sent.
- **An HTTP/2 request answered before its body ends is reset, and the connection lives on.** Shortly after the whole response
  has been sent, a stream the client still sends on is reset with NO_ERROR (RFC 9113 §8.1), which
  tells it to stop sending the rest without an error; without it a client sends its whole upload
  for nothing. What it sends meanwhile is dropped: Hypercorn would fail on it and close the
  connection with every other stream on it.
- **hyperframe's frame text.** h2 formats every frame it receives for a trace log, and hyperframe
  writes a DATA frame's whole payload as hex to show its first ten bytes: a third of an upload's
  time over HTTP/2. The same text is made from those ten bytes.
"""

from __future__ import annotations

import asyncio
import binascii
from typing import Any, Awaitable, Callable

import h2.errors
import h2.events
import h2.exceptions
import h11
import hyperframe.frame
import hypercorn.protocol
from hypercorn.protocol.h2 import H2Protocol
from hypercorn.protocol.h11 import H11Protocol

CONTINUE = "scope.continue"  # scope["extensions"][CONTINUE]: awaitable, sends 100 Continue if the client waits
SendContinue = Callable[[], Awaitable[None]]
RESET_AFTER_S = 0.25  # how long an answered HTTP/2 request may still send before its stream is reset


def amend_hypercorn() -> None:
    """Install the amendments; protocols are made per connection, so this holds for every later one."""
    hypercorn.protocol.H11Protocol = ContinueWhenRead  # type: ignore[misc]
    hypercorn.protocol.H2Protocol = ResetAfterAnswer  # type: ignore[misc]
    hyperframe.frame._raw_data_repr = _raw_data_repr


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
    """HTTP/2 that resets (NO_ERROR) a stream whose response has ended while its request has not.

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

    async def _handle_events(self, events: list[h2.events.Event]) -> None:
        """Hypercorn's handling, except for the rest of a body whose stream was answered and closed:
        Hypercorn would fail on it and drop the connection; here it is dropped and its flow-control
        credit given back. One event at a time, so a stream opened earlier in the batch is known."""
        for event in events:
            if isinstance(event, h2.events.DataReceived) and event.stream_id not in self.streams:
                self.connection.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            else:
                await super()._handle_events([event])
        await self._flush()

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


def _raw_data_repr(data: bytes | None) -> str:
    """hyperframe's text for a frame's bytes (the hex of the first ten, then "..."), from those ten."""
    if not data:
        return "None"
    shown = binascii.hexlify(bytes(data[:11])).decode("ascii")
    return "<hex:" + (shown[:20] + "..." if len(shown) > 20 else shown) + ">"

