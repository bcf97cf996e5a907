"""The browser lane with the real headless Chromium against pages served on 127.0.0.1."""

from __future__ import annotations

import logging

import os
import signal
import threading
import select
import socket
import time
from typing import Iterator
from urllib.parse import quote

import pytest

from conftest import PageServer
from function.aria import BrowserSettings, Inspector, count_roles
from function.models import trim_lines
from function.prompts import trim_aria


@pytest.fixture(scope="module")
def inspector() -> Iterator[Inspector]:
    browser = Inspector(BrowserSettings(allow_private=True, page_timeout_s=5))
    yield browser
    browser.close()


def test_form_page_snapshot(inspector: Inspector, pages: PageServer) -> None:
    result = inspector.inspect([pages.url + "/"])
    snap = result.snapshots[0]
    assert snap.success and snap.http_status == 200 and snap.title == "Todo app"
    assert snap.screenshot.startswith(b"\x89PNG")
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


@pytest.fixture(scope="module")
def guarded(pages: PageServer) -> Iterator[Inspector]:
    """Private addresses refused, except exactly the test page server's host:port."""
    browser = Inspector(BrowserSettings(allow_private=False, page_timeout_s=5,
                                        allowed_hosts=frozenset({f"127.0.0.1:{pages.port}"})))
    yield browser
    browser.close()


@pytest.fixture
def canary() -> Iterator[PageServer]:
    """A server at a loopback address that must never be reached."""
    server = PageServer()
    yield server
    server.close()


def test_a_blocked_address_is_not_opened(guarded: Inspector, canary: PageServer) -> None:
    snap = guarded.inspect([canary.url + "/"]).snapshots[0]
    assert not snap.success and "blocked" in snap.error and "non-public" in snap.error
    assert canary.hits == []


@pytest.mark.parametrize("spelling", ["127.1", "2130706433", "0x7f000001", "[::ffff:127.0.0.1]", "localhost."])
def test_blocked_spellings(guarded: Inspector, canary: PageServer, spelling: str) -> None:
    snap = guarded.inspect([f"http://{spelling}:{canary.port}/"]).snapshots[0]
    assert not snap.success and canary.hits == []


def test_a_redirect_to_a_blocked_address_is_stopped(guarded: Inspector, pages: PageServer,
                                                     canary: PageServer) -> None:
    hidden = quote(f"http://localhost:{canary.port}/admin", safe="")
    snap = guarded.inspect([f"{pages.url}/redirect-to-url?u={hidden}"]).snapshots[0]
    assert not snap.success and "blocked" in snap.error
    assert any("/admin blocked:" in r for r in snap.failed_requests)
    assert canary.hits == []


def test_sub_requests_to_blocked_addresses_are_stopped(guarded: Inspector, pages: PageServer,
                                                       canary: PageServer) -> None:
    target = quote(f"http://127.0.0.1:{canary.port}", safe="")
    snap = guarded.inspect([f"{pages.url}/embed?u={target}"]).snapshots[0]
    assert snap.success and snap.title == "Embeds"
    assert {r.split()[1].rsplit("/", 1)[1] for r in snap.failed_requests if "blocked:" in r} == {"pixel.png", "api"}
    assert canary.hits == []


def test_the_allowed_host_works_through_the_guard(guarded: Inspector, pages: PageServer) -> None:
    snap = guarded.inspect([pages.url + "/chain/1"]).snapshots[0]
    assert snap.success and snap.final_url == pages.url + "/about" and snap.title == "About"


def test_a_page_that_never_finishes_loading(guarded: Inspector, pages: PageServer) -> None:
    started = time.monotonic()
    snap = guarded.inspect([pages.url + "/hanging"]).snapshots[0]
    assert not snap.success and "Timeout" in snap.error
    assert time.monotonic() - started < 15  # the per-page timeout holds


def test_a_huge_page(inspector: Inspector, pages: PageServer) -> None:
    snap = inspector.inspect([pages.url + "/huge"]).snapshots[0]
    assert snap.success and snap.counts.links == 5000 and snap.counts.buttons == 1
    assert snap.screenshot.startswith(b"\x89PNG")
    trimmed, dropped = trim_aria(snap.aria_tree, 60)
    assert 'button "Buy"' in trimmed and 'heading "Catalogue"' in trimmed and dropped > 5000


def test_a_dead_browser_is_started_again(pages: PageServer) -> None:
    browser = Inspector(BrowserSettings(allow_private=True))
    try:
        assert browser.inspect([pages.url + "/"]).snapshots[0].success
        browser._run(browser._browser.close(), 10)  # the browser goes away under the service
        assert browser.inspect([pages.url + "/about"]).snapshots[0].title == "About"
    finally:
        browser.close()


def test_each_request_gets_a_fresh_context(inspector: Inspector, pages: PageServer) -> None:
    """Cookies and storage a page left behind are gone for the next request (another owner's, perhaps)."""
    first = inspector.inspect([pages.url + "/memory"])
    second = inspector.inspect([pages.url + "/memory"])
    assert first.snapshots[0].title == "Fresh" and second.snapshots[0].title == "Fresh"


def test_counts_and_trimming() -> None:
    yaml = '- heading "A" [level=1]\n- list:\n  - listitem:\n    - link "x"\n  - button "b"\n- img "logo"'
    counts = count_roles(yaml)
    assert (counts.headings, counts.links, counts.buttons, counts.images, counts.total) == (1, 1, 1, 1, 6)
    text, cut = trim_lines("a\nbb\nccc\n", 5)
    assert (text, cut) == ("a\nbb", True)
    assert trim_lines("abc", 10) == ("abc", False)


def _descendants(root: int) -> list[int]:
    """Processes below ``root`` (read from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    ppid = int(stat.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    found, queue = [], [root]
    while queue:
        for child in children.get(queue.pop(), []):
            found.append(child)
            queue.append(child)
    return found


def test_chromium_crashing_mid_request(pages: PageServer) -> None:
    browser = Inspector(BrowserSettings(allow_private=True, page_timeout_s=10))
    try:
        assert browser.inspect([pages.url + "/"]).snapshots[0].success
        result: dict = {}
        worker = threading.Thread(target=lambda: result.update(i=browser.inspect([pages.url + "/slow?d=2.003"])))
        worker.start()
        deadline = time.monotonic() + 30
        while "/slow?d=2.003" not in pages.hits:  # the browser is waiting on the slow page: kill it now
            assert time.monotonic() < deadline
            time.sleep(0.05)
        killed = 0
        for pid in _descendants(os.getpid()):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as cmd:
                    if b"chrom" in cmd.read().split(b"\0")[0]:
                        os.kill(pid, signal.SIGKILL)
                        killed += 1
            except OSError:
                pass
        worker.join(60)
        assert killed, "the browser processes were found and killed"
        assert result["i"].snapshots[0].title == "Slow"  # a new browser, and the request tried once more
        assert browser.inspect([pages.url + "/about"]).snapshots[0].title == "About"  # and the next one too
    finally:
        browser.close()


def test_webrtc_does_not_go_around_the_guard(guarded: Inspector, pages: PageServer) -> None:
    """A page's STUN/TURN traffic is UDP, which the guard proxy never sees: Chromium must not send it."""
    stun = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    stun.bind(("127.0.0.1", 0))
    try:
        target = quote(f"stun:127.0.0.1:{stun.getsockname()[1]}", safe="")
        snap = guarded.inspect([f"{pages.url}/webrtc?u={target}"]).snapshots[0]
        assert snap.success and snap.title == "WebRTC"
        readable, _, _ = select.select([stun], [], [], 2.0)
        assert readable == [], "a STUN request reached a loopback address around the guard"
    finally:
        stun.close()


def test_the_proxy_logs_no_path_or_query_and_tells_no_address(guarded: Inspector, pages: PageServer,
                                                             canary: PageServer,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    """A blocked URL's path and query may carry secrets; the refusal a page can read names no address."""
    caplog.set_level(logging.INFO, logger="scope.egress")
    hidden = quote(f"http://localhost:{canary.port}/reset?token=s3cret-token", safe="")
    snap = guarded.inspect([f"{pages.url}/redirect-to-url?u={hidden}"]).snapshots[0]
    assert not snap.success and canary.hits == []
    blocked = [r.getMessage() for r in caplog.records if r.name == "scope.egress"]
    assert any(f"localhost:{canary.port}" in line and "non-public" in line for line in blocked), blocked
    assert "s3cret" not in caplog.text and "/reset" not in caplog.text
    assert "127.0.0.1" not in snap.error


def test_the_browser_holds_none_of_the_services_secrets(pages: PageServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """Chromium runs pages from the internet: its processes' environment carries no key, secret or credential."""
    secrets = {"SCOPE_API_KEYS": "alice:key-very-secret", "SCOPE_SIGNING_SECRET": "signing-very-secret",
               "ANTHROPIC_API_KEY": "sk-ant-very-secret", "GOOGLE_APPLICATION_CREDENTIALS": "/creds/very-secret.json"}
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    browser = Inspector(BrowserSettings(allow_private=True, page_timeout_s=10))
    try:
        assert browser.inspect([pages.url + "/about"]).snapshots[0].success
        environments = []
        for pid in _descendants(os.getpid()):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as cmd, open(f"/proc/{pid}/environ", "rb") as env:
                    if b"chrom" in cmd.read().split(b"\0")[0]:
                        environments.append(env.read())
            except OSError:
                pass
    finally:
        browser.close()
    # (Chromium's helpers write their title over their environment; the browser process keeps its own.)
    assert any(b"PATH=" in environment for environment in environments), "the browser's processes were found"
    for environment in environments:
        for name, value in secrets.items():
            assert name.encode() not in environment and value.encode() not in environment


def test_playwrights_headless_shell_alone_counts_as_its_browser(tmp_path: Path) -> None:
    """The image installs only the headless shell: the service must launch it, not look for a system Chromium."""
    from types import SimpleNamespace

    from function.aria import _playwright_browser_present

    full = tmp_path / "ms-playwright" / "chromium-1200" / "chrome-linux" / "chrome"
    registry = SimpleNamespace(chromium=SimpleNamespace(executable_path=str(full)))
    assert _playwright_browser_present(registry) is False  # nothing installed: the system's Chromium
    for shell in ("chromium_headless_shell-1200/chrome-linux/headless_shell",
                  "chromium_headless_shell-1201/chrome-headless-shell-linux64/chrome-headless-shell"):
        path = tmp_path / "ms-playwright" / shell
        path.parent.mkdir(parents=True)
        path.write_bytes(b"")
        assert _playwright_browser_present(registry) is True
        path.unlink()
    full.parent.mkdir(parents=True)
    full.write_bytes(b"")
    assert _playwright_browser_present(registry) is True


@pytest.mark.skipif(os.geteuid() != 0, reason="Chromium refuses its sandbox to root only; elsewhere it depends "
                    "on the kernel's user namespaces")
def test_without_a_usable_sandbox_the_browser_says_so_and_still_works(pages: PageServer,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    """The service first asks for Chromium's sandbox; as root (here) Chromium refuses it, and the
    browser runs without, once, with a warning and a label that says it."""
    browser = Inspector(BrowserSettings(allow_private=True, page_timeout_s=5))
    try:
        with caplog.at_level(logging.WARNING, logger="scope.aria"):
            first = browser.inspect([pages.url + "/"])
            second = browser.inspect([pages.url + "/about"])
        assert first.snapshots[0].success and second.snapshots[0].success
        assert browser.sandboxed is False and first.browser.endswith(", no sandbox")
        warnings = [r for r in caplog.records if "sandbox is not available" in r.getMessage()]
        assert len(warnings) == 1  # found out once per process, not per launch
    finally:
        browser.close()


def test_a_page_closed_while_it_still_opens_leaves_nothing_open(inspector: Inspector, pages: PageServer) -> None:
    """The live page for grounding is given up (the request failed or ran out of time) while it is
    still loading: its browser context is closed all the same, although the page, once loaded,
    would have been placed in the recording (the frame is a screenshot of it) and kept open."""
    shown = inspector.inspect([pages.url + "/slow?d=0"]).snapshots[0]  # the browser is up, and the page's look
    assert shown.success and shown.screenshot
    browser = inspector._browser
    assert browser is not None and browser.contexts == []
    path = f"/slow?d=3.{time.monotonic_ns() % 1000:03d}"
    locator = inspector.locator(pages.url + path, shown.screenshot)
    deadline = time.monotonic() + 20
    while path not in pages.hits:  # the page is loading: its context exists
        assert time.monotonic() < deadline, "the page was never asked for"
        time.sleep(0.02)
    assert len(browser.contexts) == 1
    locator.close()
    while browser.contexts:
        assert time.monotonic() < deadline, "the context of a page given up while opening is still open"
        time.sleep(0.05)
    assert locator.hits([]) == []


def test_an_inspection_stops_when_its_request_gives_up(inspector: Inspector, pages: PageServer) -> None:
    """The request's ``stop`` is set while the page still loads: the caller gets TimeoutError at once
    (not the page's own timeout, nor a failed snapshot later) and the page's context is closed."""
    assert inspector.inspect([pages.url + "/slow?d=0"]).snapshots[0].success  # the browser is up
    browser = inspector._browser
    path = f"/slow?d=30.{time.monotonic_ns() % 1000:03d}"  # far beyond the page timeout of 5 s
    stop = threading.Event()
    outcome: dict[str, object] = {}

    def inspect() -> None:
        try:
            outcome["result"] = inspector.inspect([pages.url + path], stop=stop)
        except TimeoutError as exc:
            outcome["error"] = exc

    worker = threading.Thread(target=inspect)
    worker.start()
    deadline = time.monotonic() + 20
    while path not in pages.hits:
        assert time.monotonic() < deadline, "the page was never asked for"
        time.sleep(0.02)
    stop.set()
    worker.join(20)
    assert not worker.is_alive() and isinstance(outcome.get("error"), TimeoutError), outcome
    while browser.contexts:
        assert time.monotonic() < deadline, "the context of the stopped inspection is still open"
        time.sleep(0.05)


def test_what_is_made_for_a_caller_that_gave_up_is_closed_once_made() -> None:
    """``aria.made``: a browser context still being created when the request gives up is closed as
    soon as it exists, and one made in time is handed over untouched."""
    import asyncio

    from function.aria import made

    class Resource:
        def __init__(self) -> None:
            self.closed = 0

        async def close(self) -> None:
            self.closed += 1

    created: list[Resource] = []

    async def scenario() -> Resource:
        gate = asyncio.Event()

        async def make() -> Resource:
            await gate.wait()
            created.append(Resource())
            return created[-1]

        given_up = asyncio.ensure_future(made(make(), lambda r: r.close()))
        await asyncio.sleep(0.01)  # still being made
        given_up.cancel()
        with pytest.raises(asyncio.CancelledError):
            await given_up
        assert created == []
        gate.set()  # now it is made, for nobody
        for _ in range(100):
            await asyncio.sleep(0.001)
        return await made(make(), lambda r: r.close())

    in_time = asyncio.run(scenario())
    assert [r.closed for r in created] == [1, 0] and created[1] is in_time


def test_inspect_tells_how_many_of_its_pages_steps_are_done(inspector: Inspector, pages: PageServer) -> None:
    """Four steps a page (loaded, settled, ARIA snapshot, screenshot), told as they are taken; a page
    that fails counts as done all the same, so the count always ends at the whole."""
    told: list[tuple[int, int]] = []
    inspection = inspector.inspect([pages.url + "/", "http://127.0.0.1:9/"], on_step=lambda d, of: told.append((d, of)))
    assert [s.success for s in inspection.snapshots] == [True, False]
    assert told == [(n, 8) for n in range(1, 9)]
