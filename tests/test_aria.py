"""The browser lane with the real headless Chromium against pages served on 127.0.0.1."""

from __future__ import annotations

from typing import Iterator

import pytest

from conftest import PageServer
from function.aria import BrowserSettings, Inspector, count_roles, trim_lines


@pytest.fixture(scope="module")
def inspector() -> Iterator[Inspector]:
    browser = Inspector(BrowserSettings(allow_private=True, page_timeout_s=5))
    yield browser
    browser.close()


def test_form_page_snapshot(inspector: Inspector, pages: PageServer) -> None:
    result = inspector.inspect([pages.url + "/"])
    snap = result.snapshots[0]
    assert snap.success and snap.http_status == 200 and snap.title == "Todo app"
    assert 'textbox "New todo"' in snap.aria_tree and 'button "Add"' in snap.aria_tree
    assert (snap.counts.buttons, snap.counts.inputs, snap.counts.links, snap.counts.headings) == (1, 1, 1, 1)
    assert snap.final_url == pages.url + "/"
    assert result.browser.startswith("chromium ") and result.urls_inspected == [pages.url + "/"]


def test_errors_of_the_page_are_collected(inspector: Inspector, pages: PageServer) -> None:
    snap = inspector.inspect([pages.url + "/broken"]).snapshots[0]
    assert snap.success
    assert "boom from page" in snap.console_errors
    assert any("uncaught later" in e for e in snap.console_errors)
    assert any(r.endswith("/missing-api 404") for r in snap.failed_requests)


def test_500_page_and_redirect(inspector: Inspector, pages: PageServer) -> None:
    broken, moved = inspector.inspect([pages.url + "/error500", pages.url + "/redirect-to/about"]).snapshots
    assert broken.success and broken.http_status == 500
    assert moved.http_status == 200 and moved.final_url == pages.url + "/about" and moved.title == "About"


def test_a_page_that_does_not_load_is_a_failed_snapshot(pages: PageServer) -> None:
    browser = Inspector(BrowserSettings(allow_private=True, page_timeout_s=1))
    try:
        snap = browser.inspect(["http://127.0.0.1:9/"]).snapshots[0]
        assert not snap.success and snap.error
        slow = browser.inspect([pages.url + "/slow"]).snapshots[0]
        assert not slow.success and "Timeout" in slow.error
    finally:
        browser.close()


def test_blocked_addresses_are_not_opened_when_private_is_disallowed(pages: PageServer) -> None:
    browser = Inspector(BrowserSettings(allow_private=False, page_timeout_s=5))
    try:
        snap = browser.inspect([pages.url + "/"]).snapshots[0]
        assert not snap.success and "BLOCKED_BY_CLIENT" in snap.error
    finally:
        browser.close()


def test_each_request_gets_a_fresh_context(inspector: Inspector, pages: PageServer) -> None:
    first = inspector.inspect([pages.url + "/"])
    second = inspector.inspect([pages.url + "/about"])
    assert first.snapshots[0].success and second.snapshots[0].success


def test_counts_and_trimming() -> None:
    yaml = '- heading "A" [level=1]\n- list:\n  - listitem:\n    - link "x"\n  - button "b"\n- img "logo"'
    counts = count_roles(yaml)
    assert (counts.headings, counts.links, counts.buttons, counts.images, counts.total) == (1, 1, 1, 1, 6)
    text, cut = trim_lines("a\nbb\nccc\n", 5)
    assert (text, cut) == ("a\nbb", True)
    assert trim_lines("abc", 10) == ("abc", False)
