"""Screen recordings of the test app with known actions: a real Chromium, a drawn pointer, a steady clock.

A scripted flow drives the page through Playwright (real mouse and keyboard events) and
records what the viewport shows, ten frames a second, with an arrow pointer drawn where
the mouse is — a tab capture, as a browser extension makes one. Time is the recording's
own (frame n is at n × 100 ms), so the video does not depend on how fast the machine is,
and the frames are written as Motion-JPEG in Matroska, an encode that gives the same
bytes every time. Each action is logged with its time and the words that name it, in
the shape of ``fixtures/recordings/actions.json``.
"""

from __future__ import annotations

import http.server
import os
import shutil
import threading
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import cv2
import numpy as np

APP = Path(__file__).resolve().parent / "app"
FPS = 10
FRAME_MS = 1000 // FPS
ARROW = np.array([[0, 0], [0, 17], [4, 13], [7, 20], [10, 19], [7, 12], [12, 12]], np.int32)


def chromium_path() -> str:
    return os.environ.get("SCOPE_CHROMIUM_PATH") or shutil.which("chromium") or "/usr/bin/chromium"


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


class AppServer:
    """The test app's files on 127.0.0.1."""

    def __init__(self, root: Path = APP) -> None:
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(_Quiet, directory=str(root)))
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class Action:
    """One thing the user did, as ``actions.json`` states it."""

    t_ms: int
    actions: list[str]
    targets: list[str]
    label: str
    end_ms: int | None = None

    def to_json(self) -> dict[str, Any]:
        out = {"t_ms": self.t_ms, "actions": self.actions, "targets": self.targets, "label": self.label}
        if self.end_ms is not None:
            out["end_ms"] = self.end_ms
        return out


@dataclass
class Recorder:
    """Drives ``page`` and keeps what it shows; ``save`` writes the video."""

    page: Any  # playwright.sync_api.Page
    frames: list[np.ndarray] = field(default_factory=list)
    log: list[Action] = field(default_factory=list)
    x: float = 40.0
    y: float = 600.0

    @property
    def now_ms(self) -> int:
        return len(self.frames) * FRAME_MS

    def snap(self, count: int = 1) -> None:
        """``count`` frames of the screen as it is now, with the pointer on top."""
        shot = self.page.screenshot(type="png")
        image = cv2.imdecode(np.frombuffer(shot, np.uint8), cv2.IMREAD_COLOR)
        arrow = ARROW + np.array([round(self.x), round(self.y)], np.int32)
        cv2.fillPoly(image, [arrow], (0, 0, 0))
        cv2.polylines(image, [arrow], True, (255, 255, 255), 1)
        self.frames.extend([image] * count)

    def idle(self, seconds: float) -> None:
        self.snap(max(1, round(seconds * FPS)))

    def move_to(self, x: float, y: float, steps: int = 4) -> None:
        """Glide to (x, y) over ``steps`` frames, as a hand does."""
        start_x, start_y = self.x, self.y
        for n in range(1, steps + 1):
            self.x = start_x + (x - start_x) * n / steps
            self.y = start_y + (y - start_y) * n / steps
            self.page.mouse.move(self.x, self.y)
            self.snap()

    def centre_of(self, selector: str) -> tuple[float, float]:
        box = self.page.locator(selector).bounding_box()
        assert box is not None, selector
        return box["x"] + min(box["width"] / 2, 40), box["y"] + box["height"] / 2

    def click(self, selector: str, targets: list[str], label: str) -> None:
        x, y = self.centre_of(selector)
        started = self.now_ms
        self.move_to(x, y)
        self.snap(2)  # the hand settles before it presses
        self.page.mouse.click(x, y)
        self.log.append(Action(started, ["click", "navigate"], targets, label))
        self.idle(1.5)

    def hover(self, selector: str, targets: list[str], label: str) -> None:
        x, y = self.centre_of(selector)
        started = self.now_ms
        self.move_to(x, y)
        self.log.append(Action(started, ["hover"], targets, label))
        self.idle(1.5)

    def type(self, text: str, targets: list[str], label: str) -> None:
        started = self.now_ms
        for char in text:
            self.page.keyboard.type(char)
            self.snap()
        self.log.append(Action(started, ["type"], targets, label, end_ms=self.now_ms))
        self.idle(0.6)

    def press(self, key: str, label: str) -> None:
        started = self.now_ms
        self.page.keyboard.press(key)
        self.log.append(Action(started, ["key"], [key.lower()], label))
        self.idle(1.5)

    def save(self, path: Path) -> Path:
        """The frames as Motion-JPEG in Matroska (``video/x-matroska``), 10 frames a second."""
        height, width = self.frames[0].shape[:2]
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), FPS, (width, height))
        assert writer.isOpened(), path
        for image in self.frames:
            writer.write(image)
        writer.release()
        return path


def record_console_flow(app_url: str, path: Path, size: tuple[int, int] = (1280, 720)) -> list[Action]:
    """The flow the end-to-end test checks: the sidebar menu, the alerts dropdown, a search, a link."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), headless=True,
                                             args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                                                   "--disable-component-update", "--no-first-run"])
        try:
            page = browser.new_page(viewport={"width": size[0], "height": size[1]})
            page.goto(app_url + "index.html")
            recorder = Recorder(page)
            recorder.idle(1.0)
            recorder.click("#components", ["components"], "open the Components menu in the sidebar")
            recorder.move_to(700, 650, steps=3)
            recorder.idle(0.6)
            recorder.click("#alerts", ["alerts"], "open the Alerts dropdown")
            recorder.click("#search", ["search"], "click into the search box")
            recorder.type("invoice 1042", ["invoice 1042"], "type a search")
            recorder.press("Enter", "run the search")
            recorder.click("#open-dialog", ["delete account"], "open the Delete account dialog")
            recorder.idle(1.0)
            recorder.save(path)
            return recorder.log
        finally:
            browser.close()
