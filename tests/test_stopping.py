"""``stopping.result``: a wait on another thread's work that ends when its request gives up."""

from __future__ import annotations

import threading
from concurrent.futures import Future

import pytest

from function import stopping


def test_the_result_or_the_works_own_error_comes_back() -> None:
    done: Future[int] = Future()
    done.set_result(7)
    assert stopping.result(done, 1.0, threading.Event()) == 7
    failed: Future[int] = Future()
    failed.set_exception(TimeoutError("the page's own timeout"))
    with pytest.raises(TimeoutError, match="the page's own timeout"):  # raised once, not taken for the wait's
        stopping.result(failed, None, threading.Event())


def test_a_wait_ends_when_its_request_gives_up() -> None:
    pending: Future[int] = Future()
    stop = threading.Event()
    threading.Timer(0.3, stop.set).start()
    with pytest.raises(stopping.Stopped):
        stopping.result(pending, None, stop)  # no timeout of its own: only ``stop`` ends it
    assert not pending.done()


def test_a_wait_without_stop_ends_at_its_timeout() -> None:
    with pytest.raises(TimeoutError) as raised:
        stopping.result(Future(), 0.05)
    assert not isinstance(raised.value, stopping.Stopped)
