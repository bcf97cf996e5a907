"""Where the MCP server gets sessions: a running service over HTTP, or the embedded local store.

Both answer with the same typed ``Session`` and raise ``SourceError`` with the contract's
message, so the tools do not know which one they talk to.
"""

from __future__ import annotations

import dataclasses
import os
import stat
from pathlib import Path
from typing import Any, Protocol

import requests

from .. import config as config_module
from ..auth import ANONYMOUS, frame_path
from ..config import MAX_VIDEO_BYTES
from ..models import AgentTarget, ProcessingResponse, Session
from ..upload import SNIFF_BYTES, UploadError, local_request, sniff_video

HTTP_TIMEOUT_S = 600  # a recording's processing is synchronous and may take minutes


class SourceError(RuntimeError):
    """What went wrong, in words an agent can act on (the contract's ``message``)."""


class Source(Protocol):
    def sessions(self, limit: int) -> list[Session]: ...

    def session(self, session_id: str) -> Session: ...

    def frame_png(self, session: Session, frame_id: str) -> bytes: ...

    def process(self, video: Path, seed_url: str, title: str, notes: str, agent_target: AgentTarget) -> Session: ...

    def close(self) -> None: ...


def checked_video(path: str) -> Path:
    """``path`` if it names a regular file whose bytes are a webm, mp4 or mkv video within the size limit."""
    video = Path(path).expanduser()
    try:
        info = video.stat()
    except OSError:
        raise SourceError(f"{path} does not exist") from None
    if not stat.S_ISREG(info.st_mode):
        raise SourceError(f"{path} is not a regular file")
    if info.st_size == 0 or info.st_size > MAX_VIDEO_BYTES:
        raise SourceError(f"{path} is empty or larger than {MAX_VIDEO_BYTES} bytes")
    with open(video, "rb") as handle:
        if sniff_video(handle.read(SNIFF_BYTES)) is None:
            raise SourceError(f"{path} is not a webm, mp4 or mkv video")
    return video


class LocalSource:
    """The embedded store, as ``make run`` and the CLI use it (a local tool: private URLs allowed)."""

    def __init__(self) -> None:
        from ..app import build

        settings = dataclasses.replace(config_module.load(), allow_private_urls=True)
        self.service = build(settings)
        self.records = self.service.records

    def sessions(self, limit: int) -> list[Session]:
        return self.records.list(ANONYMOUS, limit, None)[0]

    def close(self) -> None:
        self.service.lanes.browser.close()

    def session(self, session_id: str) -> Session:
        found = self.records.sessions.get(ANONYMOUS, session_id)
        if found is None:
            raise SourceError(f"session {session_id} not found")
        return found

    def frame_png(self, session: Session, frame_id: str) -> bytes:
        from ..storage import ObjectNotFound

        try:
            return self.records.frame_image(session.id, frame_id)
        except ObjectNotFound:
            raise SourceError(f"frame {frame_id} of session {session.id} has no image") from None

    def process(self, video: Path, seed_url: str, title: str, notes: str, agent_target: AgentTarget) -> Session:
        from ..frames import VideoError
        from ..pipeline import PipelineTimeout, UrlNotAllowed

        try:
            return self.service.process(local_request(video, title, seed_url, notes, agent_target, ANONYMOUS))
        except UploadError as exc:
            raise SourceError(exc.message) from None
        except (OSError, UrlNotAllowed, VideoError, PipelineTimeout) as exc:
            raise SourceError(str(exc)) from None


class HttpSource:
    """A running Claude Scope service: ``SCOPE_API_URL``, with ``SCOPE_API_KEY`` when it has auth."""

    def __init__(self, base_url: str, api_key: str | None) -> None:
        self.base_url = base_url.rstrip("/")
        self.http = requests.Session()
        if api_key:
            self.http.headers["Authorization"] = f"Bearer {api_key}"

    def _call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        try:
            response = self.http.request(method, self.base_url + path, timeout=HTTP_TIMEOUT_S, **kwargs)
        except requests.RequestException as exc:
            raise SourceError(f"the service at {self.base_url} cannot be reached ({type(exc).__name__})") from None
        if response.status_code >= 400:
            try:
                message = response.json()["message"]
            except (ValueError, KeyError, TypeError):
                message = f"HTTP {response.status_code}"
            raise SourceError(f"{message} (HTTP {response.status_code})")
        return response

    @staticmethod
    def _session(body: dict[str, Any]) -> Session:
        served = {k: v for k, v in body.items() if k != "inspectionJson"}
        return Session.model_validate({**served, "ownerId": ""})  # the service keeps the owner to itself

    def sessions(self, limit: int) -> list[Session]:
        return [self._session(s) for s in self._call("GET", "/sessions", params={"limit": limit}).json()]

    def close(self) -> None:
        self.http.close()

    def session(self, session_id: str) -> Session:
        return self._session(self._call("GET", f"/sessions/{requests.utils.quote(session_id, safe='')}").json())

    def frame_png(self, session: Session, frame_id: str) -> bytes:
        frame = next((f for f in session.frames if f.id == frame_id), None)
        url = frame.thumbnail_url if frame is not None else frame_path(session.id, frame_id)
        return self._call("GET", url).content

    def process(self, video: Path, seed_url: str, title: str, notes: str, agent_target: AgentTarget) -> Session:
        with open(video, "rb") as handle:
            body = self._call("POST", "/recordings", files={"file": (video.name, handle, "application/octet-stream")},
                              data={"title": title, "seedUrl": seed_url, "notes": notes,
                                    "agentTarget": agent_target}).json()
        response = ProcessingResponse.model_validate(body)
        return self.session(response.session_id)


def open_source(environ: dict[str, str] | None = None) -> Source:
    """The service named by ``SCOPE_API_URL``, else the local store."""
    environ = dict(os.environ) if environ is None else environ
    url = environ.get("SCOPE_API_URL", "").strip()
    if url:
        return HttpSource(url, environ.get("SCOPE_API_KEY", "").strip() or None)
    return LocalSource()
