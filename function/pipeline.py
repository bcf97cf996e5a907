"""One recording, one way through: both lanes at once, then the prompt, then storage.

The video lane (frames → vision) and the browser lane (aria) run concurrently
under one deadline; their results, the title and the notes become the prompt.
Objects are stored before the session record that points to them, and a
failure after the first write removes what was written.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit, urlunsplit

from . import frames as frames_lane
from .config import Config
from .models import (
    Frame,
    Inspection,
    KeyFrame,
    LaneTimings,
    Session,
    Snapshot,
    VideoInfo,
    VisionResult,
    new_id,
    now_rfc3339,
    to_json,
)
from .aria import trim_lines
from .prompts import Evidence, render
from .sessions import SessionStore
from .storage import BlobStore
from .urlguard import Resolver, decide, system_resolver
from .vision import Analyser, diff_elements

log = logging.getLogger("scope.pipeline")

EXTENSIONS = {"video/webm": "webm", "video/mp4": "mp4", "video/x-matroska": "mkv"}
RECORD_ARIA_CHARS = 30_000  # per snapshot in the session record (a Firestore document holds 1 MiB)


class UrlNotAllowed(ValueError):
    pass


class PipelineTimeout(TimeoutError):
    pass


class Browser(Protocol):
    def inspect(self, urls: list[str], timeout_s: float | None = None) -> Inspection: ...


@dataclass
class RecordingRequest:
    """A validated upload: the video is on local disk, the fields obey the contract."""

    video_path: Path
    file_size: int
    mime_type: str
    title: str
    seed_url: str
    notes: str
    agent_target: str
    client_duration_ms: int | None
    owner_id: str


@dataclass
class Deps:
    config: Config
    store: BlobStore
    sessions: SessionStore
    analyser: Analyser
    browser: Browser
    resolver: Resolver = system_resolver


@dataclass
class VideoLaneResult:
    key_frames: list[KeyFrame]
    info: VideoInfo
    vision: VisionResult
    warnings: list[str]
    video_ms: int
    vision_ms: int


def frame_path(session_id: str, frame_id: str) -> str:
    return f"/sessions/{session_id}/frames/{frame_id}"


def check_seed_url(url: str, deps: Deps) -> None:
    decision = decide(url, deps.resolver, deps.config.allow_private_urls, deps.config.allowed_hosts)
    if not decision.allowed:
        raise UrlNotAllowed(f"seedUrl is not allowed: {decision.reason}")


def video_lane(path: Path, config: Config, analyser: Analyser, stop: threading.Event | None = None) -> VideoLaneResult:
    started = time.monotonic()
    limits = frames_lane.Limits(config.max_video_seconds, config.max_video_pixels, config.max_frames)
    key_frames, info, warnings = frames_lane.extract(path, limits, cancelled=stop.is_set if stop else None)
    decoded = time.monotonic()
    vision = analyser.analyze(key_frames)
    done = time.monotonic()
    return VideoLaneResult(
        key_frames, info, vision, warnings + vision.warnings, int((decoded - started) * 1000), int((done - decoded) * 1000)
    )


def build_frames(session_id: str, video: VideoLaneResult) -> list[Frame]:
    """API frames from key frames and their analyses, with element diffs against the previous frame."""
    created = now_rfc3339()
    out: list[Frame] = []
    previous_elements = []
    previous_url = None
    for key, analysis in zip(video.key_frames, video.vision.analyses):
        frame_id = new_id("frm_")
        aria_tree, summary = diff_elements(previous_elements, analysis.elements)
        previous_elements = analysis.elements
        url = analysis.url or previous_url
        previous_url = url
        out.append(
            Frame(
                id=frame_id,
                session_id=session_id,
                timestamp=key.timestamp,
                url=url,
                thumbnail_url=frame_path(session_id, frame_id),
                diff_summary=summary,
                aria_tree=aria_tree,
                created_at=created,
                change_score=key.change_score,
                changed_region=key.changed_region,
                analysis={
                    "description": analysis.description,
                    "visibleText": analysis.visible_text,
                    "anomalies": analysis.anomalies,
                    "provider": analysis.provider,
                    "uiState": analysis.ui_state,
                },
            )
        )
    return out


def more_urls(seed_url: str, seen: list[str], cap: int) -> list[str]:
    """URLs the recording showed, on the seed's origin, new, at most ``cap - 1`` (the seed comes first).

    A browser's address bar hides the scheme, so a URL read from it takes the seed's.
    """
    seed = urlsplit(seed_url)
    default_port = 443 if seed.scheme == "https" else 80
    out: list[str] = []
    for url in seen:
        try:
            parts = urlsplit(url)
            same = parts.hostname == seed.hostname and (parts.port or default_port) == (seed.port or default_port)
        except ValueError:
            continue
        candidate = urlunsplit((seed.scheme, parts.netloc, parts.path or "/", parts.query, parts.fragment))
        if same and candidate != seed_url and candidate not in out:
            out.append(candidate)
    return out[: max(0, cap - 1)]


def merge(first: Inspection, more: Inspection) -> Inspection:
    return Inspection(first.urls_inspected + more.urls_inspected, first.duration_ms + more.duration_ms,
                      first.browser, first.snapshots + more.snapshots)


def _page_warnings(inspection: Inspection) -> list[str]:
    return [f"page {s.url} could not be inspected: {s.error}" for s in inspection.snapshots if not s.success]


def run(request: RecordingRequest, deps: Deps) -> Session:
    """Process one recording end to end and return the stored, complete session."""
    started = time.monotonic()
    config = deps.config
    check_seed_url(request.seed_url, deps)
    deadline = started + config.deadline_s
    session_id = new_id("sess_")
    pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix=f"lane-{session_id}")
    stop = threading.Event()  # set when the deadline passes: the lanes stop their work
    try:
        video_future = pool.submit(video_lane, request.video_path, config, deps.analyser, stop)
        browser_future = pool.submit(deps.browser.inspect, [request.seed_url], config.deadline_s)
        try:
            video = video_future.result(timeout=max(0.0, deadline - time.monotonic()))
            inspection = browser_future.result(timeout=max(0.0, deadline - time.monotonic()))
            extra = [u for u in more_urls(request.seed_url, video.vision.urls_seen, config.max_urls)
                     if decide(u, deps.resolver, config.allow_private_urls, config.allowed_hosts).allowed]
            if extra:  # pages the recording visited, seen once the video lane has read it
                more = pool.submit(deps.browser.inspect, extra, max(0.0, deadline - time.monotonic()))
                inspection = merge(inspection, more.result(timeout=max(0.0, deadline - time.monotonic())))
        except (FutureTimeout, frames_lane.Cancelled) as exc:
            stop.set()
            raise PipelineTimeout(f"processing passed its deadline of {config.deadline_s:.0f} s") from exc
    finally:
        pool.shutdown(wait=False, cancel_futures=True)

    frames = build_frames(session_id, video)
    duration_ms = video.info.container_duration_ms or request.client_duration_ms or video.info.last_frame_ms
    now = now_rfc3339()
    session = Session(
        id=session_id,
        owner_id=request.owner_id,
        title=request.title,
        seed_url=request.seed_url,
        notes=request.notes,
        status="complete",
        duration=round(duration_ms / 1000),
        frame_count=len(frames),
        urls=list(inspection.urls_inspected),
        url_count=len(inspection.urls_inspected),
        agent_target=request.agent_target,
        created_at=now,
        updated_at=now,
        file_size=request.file_size,
        mime_type=request.mime_type,
        frames=frames,
        inspection=inspection,
        flow=video.vision.flow,
        observed_problem=video.vision.observed_problem,
        warnings=video.warnings + _page_warnings(inspection),
        vision_provider=video.vision.provider,
        vision_input_tokens=video.vision.input_tokens,
        vision_output_tokens=video.vision.output_tokens,
        vision_requests=video.vision.requests,
        vision_cost_usd=round((video.vision.input_tokens * config.vision_price_in
                               + video.vision.output_tokens * config.vision_price_out) / 1e6, 6),
    )
    prompt_started = time.monotonic()
    session.prompt = render(request.agent_target, Evidence.of(session), config.prompt_tokens)
    store_started = time.monotonic()
    prefix = f"sessions/{session_id}/"
    try:
        session.objects = save_objects(session, request, video.key_frames, inspection.snapshots, deps.store)
        trim_for_record(inspection)
        finished = time.monotonic()
        session.timings = LaneTimings(
            video_ms=video.video_ms,
            vision_ms=video.vision_ms,
            browser_ms=inspection.duration_ms,
            prompt_ms=int((store_started - prompt_started) * 1000),
            store_ms=int((finished - store_started) * 1000),
        )
        session.processing_time = int((finished - started) * 1000)
        deps.sessions.put(session)
    except BaseException:
        _remove_objects(deps.store, prefix)
        raise
    log.info("recording processed", extra={"fields": {
        "sessionId": session_id, "processingMs": session.processing_time, "lanes": to_json(session.timings),
        "frames": len(frames)}})
    return session


def save_objects(session: Session, request: RecordingRequest, key_frames: list[KeyFrame],
                 snapshots: list[Snapshot], store: BlobStore) -> list[str]:
    """Write every object of the session (video, frame images, snapshots, prompt); return their keys."""
    prefix = f"sessions/{session.id}/"
    keys = [f"{prefix}video.{EXTENSIONS[request.mime_type]}"]
    store.put_file(keys[0], request.video_path, request.mime_type)
    for frame, key_frame in zip(session.frames, key_frames):
        keys.append(f"{prefix}frames/{frame.id}.png")
        store.put_bytes(keys[-1], key_frame.png, "image/png")
    for n, snap in enumerate(snapshots):
        keys.append(f"{prefix}snapshots/{n}.yaml")
        store.put_bytes(keys[-1], snap.aria_tree.encode(), "application/yaml")
        if snap.screenshot:
            keys.append(f"{prefix}screenshots/{n}.png")
            store.put_bytes(keys[-1], snap.screenshot, "image/png")
    keys.append(f"{prefix}prompt.md")
    store.put_bytes(keys[-1], session.prompt.encode(), "text/markdown")
    return keys


def trim_for_record(inspection: Inspection) -> None:
    """The record keeps each ARIA snapshot up to RECORD_ARIA_CHARS; the whole one is an object in storage."""
    for snap in inspection.snapshots:
        snap.aria_tree, cut = trim_lines(snap.aria_tree, RECORD_ARIA_CHARS)
        snap.aria_tree_truncated = snap.aria_tree_truncated or cut


def _remove_objects(store: BlobStore, prefix: str) -> None:
    try:
        store.delete_prefix(prefix)
    except Exception:  # noqa: BLE001 - the original failure is the one to report
        log.exception("could not remove the objects under %s", prefix)
