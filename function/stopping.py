"""Waiting on work another thread does, only for as long as the request that wants it goes on.

A request's lanes wait on futures: a page in the browser, a batch at Claude. When the request ends
early (its deadline passed, its video does not decode) its ``stop`` event is set, and each of these
waits ends within ``POLL_S`` instead of at the work's own timeout, so that what has not begun yet
is dropped and what is under way is closed.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future
from concurrent.futures import wait as futures_wait
from typing import TypeVar

T = TypeVar("T")

POLL_S = 0.2  # how often a wait looks whether its request gave up


class Stopped(TimeoutError):
    """The request gave up while this waited (a TimeoutError: to the caller, its time ran out)."""


def result(future: Future[T], timeout: float | None = None, stop: threading.Event | None = None) -> T:
    """``future.result(timeout)``, or ``Stopped`` soon after ``stop`` is set."""
    ends = None if timeout is None else time.monotonic() + timeout
    while True:
        left = None if ends is None else max(0.0, ends - time.monotonic())
        wait = left if stop is None else (POLL_S if left is None else min(POLL_S, left))
        done, _ = futures_wait([future], wait)
        if done:
            return future.result()
        if stop is not None and stop.is_set():
            raise Stopped("the request gave up")
        if ends is not None and time.monotonic() >= ends:
            raise TimeoutError(f"no result within {timeout:.1f} s")
