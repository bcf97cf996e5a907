"""The server's own parts, without a socket: the body reader between Hypercorn and the app, and the
amendments to Hypercorn (the end-to-end behaviour is in test_slow_clients.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import hyperframe.frame
import pytest

from function.asgi import BodyReader
from function.server import CONTINUE, _data_frame_repr
from function.upload import BodyStalled

PIECE = 16 * 1024


def run_app(pieces: list[bytes], *, gap_s: float = 0.0, idle_s: float = 5.0,
            send_continue: Any = None, read: bool = True) -> tuple[list[dict], int]:
    """Pass ``pieces`` (as Hypercorn does, one message each) through a ``BodyReader`` to an app that
    reads the whole body (or none of it). The messages the app got, and how many the reader took."""
    taken = 0
    got: list[dict] = []

    async def source() -> dict:
        nonlocal taken
        if gap_s:
            await asyncio.sleep(gap_s)
        taken += 1
        if taken <= len(pieces):
            return {"type": "http.request", "body": pieces[taken - 1], "more_body": taken < len(pieces)}
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def app(scope: dict, receive: Any, send: Any) -> None:
        await asyncio.sleep(0.05)  # the pieces arrive while the app is busy elsewhere
        while read:
            message = await receive()
            got.append(message)
            if not message.get("more_body"):
                break

    async def main() -> None:
        scope = {"type": "http", "extensions": {CONTINUE: send_continue} if send_continue else {}}
        await BodyReader(app, idle_s, 0)(scope, source, lambda message: asyncio.sleep(0))

    asyncio.run(main())
    return got, taken


def test_the_app_gets_the_body_whole_in_few_large_pieces() -> None:
    pieces = [bytes([i % 256]) * PIECE for i in range(200)]
    got, _ = run_app(pieces)
    assert b"".join(m["body"] for m in got) == b"".join(pieces)
    assert [m["more_body"] for m in got][-1] is False
    assert len(got) <= 20, len(got)  # 200 messages in, at most one per 256 KiB out (and a few more)


def test_a_slow_body_is_handed_over_as_it_comes() -> None:
    """A body that trickles is not held back waiting for a large piece."""
    got, _ = run_app([b"a", b"b", b"c"], gap_s=0.2)
    assert [m["body"] for m in got] == [b"a", b"b", b"c"]


def test_nothing_is_read_before_the_app_asks() -> None:
    _, taken = run_app([b"x" * PIECE] * 10, read=False)
    assert taken == 0


def test_the_first_read_sends_100_continue_first() -> None:
    calls: list[str] = []

    async def send_continue() -> None:
        calls.append("continue")

    got, _ = run_app([b"x", b"y"], send_continue=send_continue)
    assert calls == ["continue"] and b"".join(m["body"] for m in got) == b"xy"


def test_a_body_that_stops_coming_fails_the_read() -> None:
    async def app(scope: dict, receive: Any, send: Any) -> None:
        await receive()
        with pytest.raises(BodyStalled):
            await receive()

    async def source() -> dict:
        if not hasattr(source, "once"):
            source.once = True  # type: ignore[attr-defined]
            return {"type": "http.request", "body": b"x", "more_body": True}
        await asyncio.sleep(3600)
        return {}

    asyncio.run(BodyReader(app, 0.3, 0)({"type": "http", "extensions": {}}, source, lambda m: asyncio.sleep(0)))


def test_a_data_frames_text_gives_its_size_not_its_bytes() -> None:
    frame = hyperframe.frame.DataFrame(3, b"\xab" * 16384, flags=["END_STREAM"])
    assert repr(frame) == "DataFrame(stream_id=3, flags=['END_STREAM']): 16384 bytes"
    assert hyperframe.frame.DataFrame.__repr__ is _data_frame_repr  # installed (function.asgi amends on import)
