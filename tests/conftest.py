"""Shared fixtures: fixture recordings, generated videos, a local page server, the real service."""

from __future__ import annotations

import http.server
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Iterator

import cv2
import numpy as np
import pytest
import requests

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

RECORDINGS = Path(os.environ.get("SCOPE_FIXTURES", REPO.parent / "shared" / "fixtures" / "recordings"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def recordings() -> Path:
    if not RECORDINGS.is_dir():
        pytest.fail(f"fixture recordings not found at {RECORDINGS} (set SCOPE_FIXTURES)")
    return RECORDINGS


# --------------------------------------------------------------------------- generated videos


def write_video(path: Path, frames: list[np.ndarray], fps: int = 10) -> Path:
    """Write BGR frames with OpenCV; the container follows the suffix (.webm VP8, .mp4, .mkv)."""
    fourcc = {".webm": "VP80", ".mp4": "mp4v", ".mkv": "MJPG"}[path.suffix]
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (width, height))
    assert writer.isOpened(), f"cannot write {path}"
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path


def ui_frames(changes_at_s: list[float], seconds: float = 4.0, fps: int = 10,
              size: tuple[int, int] = (640, 360)) -> list[np.ndarray]:
    """A plain 'app' screen; at each time in ``changes_at_s`` a new block of text appears."""
    width, height = size
    frames = []
    for n in range(int(seconds * fps)):
        t = n / fps
        img = np.full((height, width, 3), 245, np.uint8)
        cv2.rectangle(img, (0, 0), (width, 40), (60, 60, 160), -1)
        cv2.putText(img, "Demo app", (10, 28), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (255, 255, 255), 2)
        for i, at in enumerate(changes_at_s):
            if t >= at:
                y = 80 + i * 50
                cv2.rectangle(img, (20, y - 30), (width - 20, y + 12), (200, 220, 200), -1)
                cv2.putText(img, f"Item number {i + 1} added", (30, y), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (0, 0, 0), 2)
        frames.append(img)
    return frames


@pytest.fixture(scope="session")
def small_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 s, 640x360 webm with changes at 1.0 s and 2.5 s."""
    return write_video(tmp_path_factory.mktemp("videos") / "small.webm", ui_frames([1.0, 2.5]))


# --------------------------------------------------------------------------- pages


PAGES = {
    "/": (200, "<!doctype html><html><head><title>Todo app</title></head><body><h1>Todos</h1>"
               "<form><label>New todo <input name=todo></label><button>Add</button></form>"
               "<a href='/about'>About</a></body></html>"),
    "/about": (200, "<!doctype html><title>About</title><h1>About</h1>"),
    "/broken": (200, "<!doctype html><title>Broken</title><h1>Broken</h1>"
                     "<script>console.error('boom from page'); fetch('/missing-api');"
                     "setTimeout(() => { throw new Error('uncaught later') }, 0)</script>"),
    "/error500": (500, "<!doctype html><title>Server error</title><h1>Internal Server Error</h1>"),
}


class PageServer:
    def __init__(self) -> None:
        pages = PAGES

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                path = self.path.split("?")[0]
                if path == "/slow":
                    query = self.path.partition("?")[2]
                    time.sleep(float(query[2:]) if query.startswith("d=") else 4.0)
                    status, body = 200, "<title>Slow</title><h1>Slow page</h1>"
                elif path.startswith("/redirect-to/"):
                    self.send_response(302)
                    self.send_header("Location", path[len("/redirect-to"):])
                    self.end_headers()
                    return
                else:
                    status, body = pages.get(path, (404, "<title>Not found</title><h1>Not found</h1>"))
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_port
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="session")
def pages() -> Iterator[PageServer]:
    server = PageServer()
    yield server
    server.close()


# --------------------------------------------------------------------------- the service


class RunningService:
    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.data_dir = root / "data"
        self.tmp_dir = root / "tmp"
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = root / "service.log"
        full_env = {k: v for k, v in os.environ.items() if not k.startswith(("SCOPE_", "ANTHROPIC_"))}
        full_env.update({"PORT": str(self.port), "SCOPE_DATA_DIR": str(self.data_dir), "TMPDIR": str(self.tmp_dir),
                         "PYTHONUNBUFFERED": "1"})
        full_env.update(env)
        self.log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            [str(Path(sys.executable).parent / "functions-framework"), "--source", str(REPO / "function" / "main.py"),
             "--target", "scope", "--host", "127.0.0.1", "--port", str(self.port)],
            cwd=REPO, env=full_env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"service exited: {self.log_path.read_text()}")
            try:
                requests.get(self.url + "/health", timeout=1)  # any answer: it listens (health may say 503)
                return
            except requests.ConnectionError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError("service did not start")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.log.close()

    def stored_sessions(self) -> list[Path]:
        folder = self.data_dir / "objects" / "sessions"
        return sorted(folder.iterdir()) if folder.is_dir() else []

    def records(self) -> list[Path]:
        folder = self.data_dir / "records" / "sessions"
        return sorted(folder.glob("*.json")) if folder.is_dir() else []

    def temp_files(self) -> list[Path]:
        return sorted(self.tmp_dir.glob("scope-upload-*"))


@pytest.fixture(scope="module")
def start_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., RunningService]]:
    started: list[RunningService] = []

    def start(**env: str) -> RunningService:
        service = RunningService(tmp_path_factory.mktemp("service"), env)
        started.append(service)
        return service

    yield start
    for service in started:
        service.stop()


def upload(service_url: str, video: Path, route: str = "/recordings", headers: dict | None = None,
           **fields: str) -> requests.Response:
    data = {"title": "Todo is not saved", "notes": "Typing a todo and pressing Enter does nothing."}
    data.update(fields)
    data = {k: v for k, v in data.items() if v is not None}
    with open(video, "rb") as fh:
        return requests.post(service_url + route, files={"file": (video.name, fh, "application/octet-stream")},
                             data=data, headers=headers or {}, timeout=300)
