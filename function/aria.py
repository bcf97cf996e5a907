"""URLs → ARIA snapshots, with a real headless Chromium driven by Playwright.

One browser per process, started on first use and reused; every request gets a
fresh browser context, so nothing (cookies, storage) leaks between requests.
Playwright's async API runs on a private event loop in its own thread, which
lets any request thread call ``Inspector.inspect`` and lets one request's
pages load concurrently.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import re
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable, Coroutine, Mapping, TypeVar
from urllib.parse import urlsplit

import cv2
import numpy as np

from . import stopping
from .egress import BLOCKED_HEADER, GuardProxy
from .models import Counts, Inspection, PageHit, PointerProbe, Snapshot, trim_lines
from .urlguard import Resolver, check_host, system_resolver

log = logging.getLogger("scope.aria")
T = TypeVar("T")


class BrowserDied(RuntimeError):
    """Chromium crashed or was killed while pages were open."""


class PageBlocked(RuntimeError):
    """The page's own URL, or a redirect of it, points where the browser may not go."""


class _NotGrounded(Exception):
    """The page did not load, was blocked, or is not to be found in the frame: no hits from it."""


CHROMIUM_ARGS = [
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--disable-dev-shm-usage",
]
NETWORK_QUIET_WAIT_S = 3.0  # after "load", wait at most this long for the network to go quiet
MAX_ARIA_CHARS = 5_000_000  # a safety cap only: the snapshot is stored whole, the prompt trims it
MAX_PAGES_IN_FLIGHT = 4
STEPS_PER_PAGE = 4  # loaded, settled, ARIA snapshot, screenshot: what ``inspect`` reports progress in
MAX_SCREENSHOT_HEIGHT = 8000  # px: a full-page screenshot of an endless page stops here

_ROLE_LINE = re.compile(r"^\s*- (?:\"|')?([a-z]+)")
_INPUT_ROLES = {"textbox", "checkbox", "radio", "combobox", "searchbox", "spinbutton", "slider", "switch", "listbox"}


@dataclass
class BrowserSettings:
    executable_path: str | None = None  # None: Playwright's own browser, else Debian's chromium
    page_timeout_s: float = 15.0
    allow_private: bool = False
    allowed_hosts: frozenset[str] = frozenset()  # exact host:port exceptions to the guard
    resolver: Resolver = field(default=system_resolver)


def count_roles(aria_yaml: str) -> Counts:
    """Count the snapshot's nodes by kind, from Playwright's YAML (``- role "name"`` lines)."""
    counts = Counts()
    for line in aria_yaml.splitlines():
        match = _ROLE_LINE.match(line)
        if not match:
            continue
        role = match.group(1)
        counts.total += 1
        if role == "button":
            counts.buttons += 1
        elif role in _INPUT_ROLES:
            counts.inputs += 1
        elif role == "link":
            counts.links += 1
        elif role == "heading":
            counts.headings += 1
        elif role == "img":
            counts.images += 1
    return counts


# --------------------------------------------------------------------------- the page inside the video


@dataclass(frozen=True)
class Placement:
    """Where the page's viewport stands in the video: video px = page px × scale + offset."""

    dx: int
    dy: int
    scale: float
    score: float

    def to_page(self, x: int, y: int) -> tuple[float, float]:
        return (x - self.dx) / self.scale, (y - self.dy) / self.scale


PLACEMENT_SCALES = (1.0, 0.5, 0.75, 2 / 3, 1.25, 1.5, 2.0)  # a kiosk capture may be scaled (HiDPI, a smaller window)
MIN_PLACEMENT_SCORE = 0.6
MIN_AGREEMENT = 0.8  # share of the placed page's content pixels within AGREE_LEVEL of the frame's
AGREE_LEVEL = 24  # gray levels: codec noise and a drawn pointer stay under this


def place(page: np.ndarray, frame: np.ndarray) -> Placement | None:
    """Find the page (a viewport screenshot, grayscale) inside the video frame (grayscale).

    A tab capture is the viewport itself; a window capture adds the browser's toolbar above it;
    a kiosk capture may be scaled. A band of the page's upper half (where the page's own layout
    sits, the part least likely to differ) is matched at a few scales; the best match places it.
    """
    candidates: list[tuple[Placement, np.ndarray]] = []
    for scale in PLACEMENT_SCALES:
        width, height = round(page.shape[1] * scale), round(page.shape[0] * scale)
        if width > frame.shape[1] or height < 40:
            continue
        scaled = cv2.resize(page, (width, height), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        top, bottom = int(height * 0.05), int(height * 0.45)
        left, right = int(width * 0.05), int(width * 0.95)
        band = scaled[top:bottom, left:right]
        if band.shape[0] > frame.shape[0] or band.shape[1] > frame.shape[1] or float(band.std()) < 2.0:
            continue
        result = cv2.matchTemplate(frame, band, cv2.TM_CCOEFF_NORMED)
        _, score, _, (x, y) = cv2.minMaxLoc(result)
        if score >= MIN_PLACEMENT_SCORE:
            candidates.append((Placement(x - left, y - top, scale, float(score)), scaled))
    # A sparse page's band can match blank areas anywhere: the whole page, where it lands, must agree.
    for placement, scaled in sorted(candidates, key=lambda c: -c[0].score):
        if _agreement(scaled, frame, placement) >= MIN_AGREEMENT:
            return placement
    return None


def _agreement(scaled: np.ndarray, frame: np.ndarray, at: Placement) -> float:
    """The share of the placed page's pixels that look as the frame does there (the overlap only)."""
    x0, y0 = max(0, at.dx), max(0, at.dy)
    x1 = min(frame.shape[1], at.dx + scaled.shape[1])
    y1 = min(frame.shape[0], at.dy + scaled.shape[0])
    if x1 - x0 < 40 or y1 - y0 < 40:
        return 0.0
    page_part = scaled[y0 - at.dy:y1 - at.dy, x0 - at.dx:x1 - at.dx]
    frame_part = frame[y0:y1, x0:x1]
    # Judged where the page has something to show (edges: text, borders, controls), not on its
    # background, which agrees with any empty stretch of the frame.
    edges = cv2.morphologyEx(page_part, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)) >= AGREE_LEVEL
    if int(edges.sum()) < 50:
        return 0.0
    return float(np.mean(cv2.absdiff(page_part, frame_part)[edges] < AGREE_LEVEL))


# What the page has at a point: the nearest element a person would name, its role, accessible name
# and a selector. A small subset of the accessible-name computation: labels, ARIA, alt, title, text.
_HIT_TEST_JS = r"""(points) => points.map(([x, y]) => {
  const hit = document.elementFromPoint(x, y);
  if (!hit) return null;
  const actionable = 'a[href],button,input,select,textarea,summary,label,[role],[onclick],[tabindex],' +
                     'li,td,th,h1,h2,h3,h4,h5,h6,option';
  const el = hit.closest(actionable) || hit;
  const tag = el.tagName.toLowerCase();
  const type = (el.getAttribute('type') || 'text').toLowerCase();
  const implicit = {a: 'link', button: 'button', select: 'combobox', textarea: 'textbox', summary: 'button',
                    li: 'listitem', td: 'cell', th: 'columnheader', option: 'option', label: 'label',
                    h1: 'heading', h2: 'heading', h3: 'heading', h4: 'heading', h5: 'heading', h6: 'heading'};
  let role = el.getAttribute('role') || implicit[tag] || tag;
  if (tag === 'input') role = {checkbox: 'checkbox', radio: 'radio', search: 'searchbox', range: 'slider',
                               button: 'button', submit: 'button', reset: 'button'}[type] || 'textbox';
  const text = (node) => (node ? (node.innerText || node.textContent || '') : '').replace(/\s+/g, ' ').trim();
  let name = el.getAttribute('aria-label') || '';
  if (!name && el.getAttribute('aria-labelledby')) {
    name = el.getAttribute('aria-labelledby').split(/\s+/).map((id) => text(document.getElementById(id))).join(' ');
  }
  if (!name && el.labels && el.labels.length) name = text(el.labels[0]);
  if (!name) name = el.getAttribute('alt') || el.getAttribute('title') || el.getAttribute('placeholder') || '';
  if (!name && !['input', 'select', 'textarea'].includes(tag)) name = text(el);
  if (!name) { const row = el.closest('li,tr,label'); if (row && row !== el) name = text(row); }
  const path = [];
  for (let node = el; node && node.nodeType === 1 && path.length < 4; node = node.parentElement) {
    if (node.id) { path.unshift('#' + CSS.escape(node.id)); break; }
    let part = node.tagName.toLowerCase();
    const same = node.parentElement ? [...node.parentElement.children].filter((c) => c.tagName === node.tagName) : [];
    if (same.length > 1) part += ':nth-of-type(' + (same.indexOf(node) + 1) + ')';
    path.unshift(part);
  }
  return {role: role, name: name.slice(0, 120), selector: path.join(' > ')};
})"""


BROWSER_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "FONTCONFIG_PATH", "FONTCONFIG_FILE",
               "XDG_CACHE_HOME", "XDG_CONFIG_HOME")


def browser_environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """What Chromium is started with: the few variables it needs, never the service's own.

    The browser runs pages from the internet; API keys, the signing secret, the Anthropic key
    and cloud credentials stay in the service's process.
    """
    environ = os.environ if environ is None else environ
    return {name: environ[name] for name in BROWSER_ENV if name in environ}


class Inspector:
    """Owns the browser; ``inspect`` is safe to call from any thread."""

    def __init__(self, settings: BrowserSettings) -> None:
        self.settings = settings
        self._guard = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._owner_pid = 0
        self._playwright: Any = None
        self._browser: Any = None
        self._proxy: GuardProxy | None = None
        self._launch_lock: asyncio.Lock | None = None
        self.sandboxed: bool | None = None  # None until the first launch has found out

    def _event_loop(self) -> asyncio.AbstractEventLoop:
        """The browser's loop thread, started on first use in this process.

        Lazy because the web server imports the app and then forks its workers: a
        thread started before the fork would not exist in the worker.
        """
        with self._guard:
            if self._loop is None or self._owner_pid != os.getpid():
                self._loop = asyncio.new_event_loop()
                self._thread = threading.Thread(target=self._loop.run_forever, name="browser-loop", daemon=True)
                self._thread.start()
                self._owner_pid = os.getpid()
                self._playwright = self._browser = self._proxy = None
                self._launch_lock = asyncio.Lock()
            return self._loop

    def _run(self, coro: Coroutine[Any, Any, Any], timeout: float | None,
             stop: threading.Event | None = None) -> Any:
        """Run ``coro`` on the browser's loop; TimeoutError after ``timeout`` or, sooner, once ``stop`` is set."""
        future = asyncio.run_coroutine_threadsafe(coro, self._event_loop())
        try:
            return stopping.result(future, timeout, stop)
        except TimeoutError:
            future.cancel()  # the pages close (the context's ``finally``) instead of running on
            raise

    def inspect(self, urls: list[str], timeout_s: float | None = None,
                on_step: StepListener | None = None, stop: threading.Event | None = None) -> Inspection:
        """Open each URL in a fresh context and snapshot it; never raises for a page's failure.

        ``on_step`` is told, from the browser's thread, how many of the pages' steps are done (each
        page: loaded, settled, its ARIA snapshot, its screenshot; a failed page's rest count as done).
        Once ``stop`` is set (the request gave up), the pages close and TimeoutError is raised."""
        return self._run(self._inspect(urls, on_step), timeout_s, stop)

    def locate(self, url: str, frame_png: bytes, probes: list[PointerProbe],
               timeout_s: float | None = None) -> list[PageHit]:
        """What the live page at ``url`` has under each probe of the recording; [] when it cannot be placed.

        The page is opened at the video's size, found inside the first frame (``place``), and each
        point hit-tested. A page that will not load, or that the recording does not show, gives no hits.
        """
        if not probes:
            return []
        with contextlib.closing(self.locator(url, frame_png)) as page:
            return page.hits(probes, timeout_s)

    def locator(self, url: str, frame_png: bytes) -> PageLocator:
        """The live page at ``url``, opening (and being placed in ``frame_png``) from now on, for probes
        that come later: the recording can go on decoding while the page loads."""
        frame = cv2.imdecode(np.frombuffer(frame_png, np.uint8), cv2.IMREAD_GRAYSCALE) if frame_png else None
        if frame is None:
            return PageLocator(self, None)
        return PageLocator(self, asyncio.run_coroutine_threadsafe(self._open_placed(url, frame), self._event_loop()))

    def close(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None or self._owner_pid != os.getpid():
            return
        try:
            self._run(self._shutdown(), 10)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(5)
            self._loop = self._thread = None

    async def _shutdown(self) -> None:
        if self._browser is not None:
            await self._browser.close()
        if self._playwright is not None:
            await self._playwright.stop()
        if self._proxy is not None:
            await self._proxy.close()
        self._browser = self._playwright = self._proxy = None

    async def _ensure_browser(self) -> Any:
        assert self._launch_lock is not None
        async with self._launch_lock:
            if self._browser is not None and self._browser.is_connected():
                return self._browser
            from playwright.async_api import async_playwright

            if self._playwright is None:
                self._playwright = await async_playwright().start()
            executable = self.settings.executable_path
            if executable is None and not _playwright_browser_present(self._playwright):
                executable = shutil.which("chromium") or "/usr/bin/chromium"
            args = list(CHROMIUM_ARGS)
            if not self.settings.allow_private:
                # Every connection, loopback included, goes through the guard proxy.
                if self._proxy is None:
                    settings = self.settings
                    self._proxy = GuardProxy(lambda host, port: check_host(host, port, settings.resolver,
                                                                           settings.allowed_hosts))
                    await self._proxy.start()
                args += [f"--proxy-server=http://127.0.0.1:{self._proxy.port}", "--proxy-bypass-list=<-loopback>",
                         # WebRTC's STUN/TURN is UDP, which no HTTP proxy carries: without this a page
                         # reaches any address (loopback, the metadata server) around the guard.
                         "--webrtc-ip-handling-policy=disable_non_proxied_udp", "--force-webrtc-ip-handling-policy"]
            options = {"executable_path": executable, "args": args, "headless": True, "env": browser_environment()}
            if self.sandboxed is not False:
                # Chromium's own sandbox where the platform allows it (user namespaces, not root):
                # a renderer exploit then stays inside it. Elsewhere the browser runs without.
                try:
                    self._browser = await self._playwright.chromium.launch(chromium_sandbox=True, **options)
                    self.sandboxed = True
                    return self._browser
                except Exception as exc:  # noqa: BLE001 - Chromium refuses to start without a usable sandbox
                    reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
                    log.warning("Chromium's sandbox is not available here (%s); the browser runs without it", reason)
                    self.sandboxed = False
            self._browser = await self._playwright.chromium.launch(chromium_sandbox=False, **options)
            return self._browser

    async def _inspect(self, urls: list[str], on_step: StepListener | None = None) -> Inspection:
        """Inspect with the shared browser; if it has died, start a new one and try once more."""
        try:
            return await self._inspect_once(urls, on_step)
        except Exception as exc:  # noqa: BLE001 - only a dead browser is retried
            if self._browser is not None and self._browser.is_connected():
                raise
            log.warning("the browser died (%s); starting a new one", type(exc).__name__)
            self._browser = None
            return await self._inspect_once(urls, on_step)

    async def _open_placed(self, url: str, frame: np.ndarray) -> tuple[Any, Any, Placement] | None:
        """A context with ``url`` open at the video's size and where it sits in ``frame``; None (and
        nothing left open) when the page will not load or the frame does not show it."""
        browser = await self._ensure_browser()
        height, width = frame.shape[:2]
        context = await made(browser.new_context(viewport={"width": width, "height": height}, accept_downloads=False,
                                                 service_workers="block"), lambda made_context: made_context.close())
        try:
            await context.route("**/*", self._guard_route)
            page = await context.new_page()
            page.on("dialog", lambda dialog: asyncio.ensure_future(dialog.dismiss()))
            try:
                response = await page.goto(url, wait_until="load", timeout=self.settings.page_timeout_s * 1000)
                if response is not None and response.headers.get(BLOCKED_HEADER.lower()):
                    raise _NotGrounded
                with contextlib.suppress(Exception):  # a busy network is not a failure
                    await page.wait_for_load_state("networkidle", timeout=NETWORK_QUIET_WAIT_S * 1000)
                shot = await page.screenshot(type="png", timeout=self.settings.page_timeout_s * 1000)
            except _NotGrounded:
                raise
            except Exception as exc:  # noqa: BLE001 - a page that will not load grounds nothing
                log.info("could not open %s to ground the steps: %s", url, type(exc).__name__)
                raise _NotGrounded from None
            placement = place(cv2.imdecode(np.frombuffer(shot, np.uint8), cv2.IMREAD_GRAYSCALE), frame)
            if placement is None:
                raise _NotGrounded
            return context, page, placement
        except BaseException as exc:  # cancelled included: nothing stays open
            with contextlib.suppress(Exception):
                await context.close()
            if isinstance(exc, _NotGrounded):
                return None
            raise

    @staticmethod
    async def _hit_test(page: Any, placement: Placement, probes: list[PointerProbe]) -> list[PageHit]:
        points = [placement.to_page(p.x, p.y) for p in probes]
        found = await page.evaluate(_HIT_TEST_JS, [[x, y] for x, y in points])
        return [PageHit(p.frame_index, p.x, p.y, str(f["role"]), str(f["name"]), str(f["selector"]) or None)
                for p, f in zip(probes, found) if isinstance(f, dict) and f.get("role")]

    async def _inspect_once(self, urls: list[str], on_step: StepListener | None = None) -> Inspection:
        started = time.monotonic()
        browser = await self._ensure_browser()
        context = await browser.new_context(
            viewport={"width": 1280, "height": 720}, accept_downloads=False, service_workers="block"
        )
        try:
            await context.route("**/*", self._guard_route)
            gate = asyncio.Semaphore(MAX_PAGES_IN_FLIGHT)
            steps = _Steps(STEPS_PER_PAGE * len(urls), on_step)

            async def one(url: str) -> Snapshot:
                async with gate:
                    return await self._snapshot(context, url, steps.tick)

            snapshots = list(await asyncio.gather(*(one(u) for u in urls)))
        finally:
            with contextlib.suppress(Exception):  # a dead browser cannot close its contexts
                await context.close()
        if not browser.is_connected():
            raise BrowserDied("the browser went away during the request")
        return Inspection(
            urls_inspected=list(urls),
            duration_ms=int((time.monotonic() - started) * 1000),
            browser=f"chromium {browser.version}" + ("" if self.sandboxed else ", no sandbox"),
            snapshots=snapshots,
        )

    async def _guard_route(self, route: Any) -> None:
        """Only web schemes leave the page; where they may go is the guard proxy's decision."""
        if urlsplit(route.request.url).scheme in {"http", "https", "data", "blob"}:
            await route.continue_()
        else:
            await route.abort("blockedbyclient")

    async def _snapshot(self, context: Any, url: str, tick: Callable[[], None]) -> Snapshot:
        """``url`` opened in ``context`` and read; ``tick`` is called once per step (``STEPS_PER_PAGE``)."""
        ticked = 0

        def step() -> None:
            nonlocal ticked
            ticked += 1
            tick()

        page = await context.new_page()
        console_errors: list[str] = []
        failed: list[str] = []
        page.on("console", lambda msg: console_errors.append(msg.text) if msg.type == "error" else None)
        page.on("pageerror", lambda exc: console_errors.append(f"uncaught: {exc}"))
        page.on("requestfailed", lambda req: failed.append(f"{req.method} {req.url} {req.failure or 'failed'}"))
        def on_response(response: Any) -> None:
            blocked = response.headers.get(BLOCKED_HEADER.lower())
            if blocked:
                failed.append(f"{response.request.method} {response.url} blocked: {blocked}")
            elif response.status >= 400:
                failed.append(f"{response.request.method} {response.url} {response.status}")

        page.on("response", on_response)
        page.on("dialog", lambda dialog: asyncio.ensure_future(dialog.dismiss()))
        page.on("popup", lambda popup: asyncio.ensure_future(popup.close()))
        started = time.monotonic()
        timeout_ms = self.settings.page_timeout_s * 1000
        try:
            response = await page.goto(url, wait_until="load", timeout=timeout_ms)
            blocked = response.headers.get(BLOCKED_HEADER.lower()) if response else None
            if blocked:
                raise PageBlocked(f"the page led to a blocked address: {blocked}")
            step()
            try:
                await page.wait_for_load_state("networkidle", timeout=NETWORK_QUIET_WAIT_S * 1000)
            except Exception:  # noqa: BLE001 - a busy network is not a failure; the page has loaded
                pass
            step()
            full_aria = await page.aria_snapshot(timeout=timeout_ms)
            step()
            aria, truncated = trim_lines(full_aria, MAX_ARIA_CHARS)
            height = await page.evaluate("document.documentElement.scrollHeight")
            clip = None if height <= MAX_SCREENSHOT_HEIGHT else {
                "x": 0, "y": 0, "width": page.viewport_size["width"], "height": MAX_SCREENSHOT_HEIGHT}
            screenshot = await page.screenshot(full_page=True, type="png", clip=clip, timeout=timeout_ms)
            step()
            snapshot = Snapshot(
                url=url,
                success=True,
                counts=count_roles(full_aria),
                aria_tree=aria,
                aria_tree_truncated=truncated,
                final_url=page.url,
                http_status=response.status if response else None,
                title=await page.title(),
                screenshot=screenshot,
            )
        except Exception as exc:  # noqa: BLE001 - any page failure becomes the snapshot's error
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            snapshot = Snapshot(url=url, success=False, error=message, final_url=page.url or None)
        finally:
            snapshot_time = int((time.monotonic() - started) * 1000)
            for _ in range(STEPS_PER_PAGE - ticked):  # a failed page is done all the same
                step()
            await page.close()
        snapshot.load_time_ms = snapshot_time
        snapshot.console_errors = console_errors
        snapshot.failed_requests = failed
        return snapshot


class PageLocator:
    """One live page, opened once and placed inside the recording's first frame, hit-tested as probes
    come. ``hits`` may be called from any thread, any number of times; ``close`` closes the page."""

    def __init__(self, inspector: Inspector, opening: concurrent.futures.Future[Any] | None) -> None:
        self.inspector, self.opening = inspector, opening

    def hits(self, probes: list[PointerProbe], timeout_s: float | None = None) -> list[PageHit]:
        """The element under each probe; [] when the page did not load or is not in the recording."""
        if not probes or self.opening is None:
            return []
        started = time.monotonic()
        try:
            opened = self.opening.result(timeout_s)
        except concurrent.futures.TimeoutError:
            raise TimeoutError(f"the page did not open within {timeout_s:g} s") from None
        if opened is None:
            return []
        _, page, placement = opened
        left = None if timeout_s is None else max(0.1, timeout_s - (time.monotonic() - started))
        return self.inspector._run(self.inspector._hit_test(page, placement, probes), left)

    def close(self) -> None:
        if self.opening is None:
            return
        if self.opening.cancel():  # still opening: its own cleanup closes the context
            return
        with contextlib.suppress(Exception):
            opened = self.opening.result()
            if opened is not None:
                self.inspector._run(opened[0].close(), 10)


StepListener = Callable[[int, int], None]  # steps done, of how many


class _Steps:
    """The steps of one inspection, counted as its pages take them (on the browser's thread)."""

    def __init__(self, total: int, listener: StepListener | None) -> None:
        self.total, self.listener, self.done = total, listener, 0

    def tick(self) -> None:
        self.done += 1
        if self.listener is not None:
            self.listener(self.done, self.total)


async def made(making: Coroutine[Any, Any, T], close: Callable[[T], Awaitable[object]]) -> T:
    """What ``making`` makes; if the caller is cancelled before it is made, it is closed once it is:
    a browser context asked for by a request that gave up meanwhile is not left open."""
    task = asyncio.ensure_future(making)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        def close_when_made(done: asyncio.Future[T]) -> None:
            if not done.cancelled() and done.exception() is None:
                asyncio.ensure_future(close(done.result()))

        task.add_done_callback(close_when_made)
        raise


def _playwright_browser_present(playwright: Any) -> bool:
    """Is Playwright's own Chromium installed, or must we use the system's? The container image holds
    only its headless shell (what a headless launch runs), not the full browser."""
    try:
        full = Path(playwright.chromium.executable_path)
    except Exception:  # noqa: BLE001 - no browser registry at all
        return False
    if full.exists():
        return True
    registry = full.parents[2] if len(full.parents) > 2 else None  # .../ms-playwright/chromium-N/chrome-linux/chrome
    return registry is not None and any(registry.glob("chromium_headless_shell-*/*/*headless*shell"))
