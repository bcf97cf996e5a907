"""One recording, both lanes at once, under one deadline; typed evidence out.

The video lane (frames → vision) and the browser lane (aria) run concurrently.
Once the video lane has read the recording, the same-origin pages it showed the
user visiting are inspected too, and the user's steps are inferred from both.
Nothing here stores anything: ``records`` turns the evidence into a session.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol, TypeVar
from urllib.parse import urlsplit, urlunsplit

from . import frames as frames_lane
from . import steps as steps_inference
from .config import Config
from .models import Inspection, PageHit, PointerProbe, RecordingEvidence, RecordingRequest, VideoEvidence
from .urlguard import Resolver, decide, system_resolver
from .vision import Analyser

log = logging.getLogger("scope.pipeline")
T = TypeVar("T")


class UrlNotAllowed(ValueError):
    pass


class PipelineTimeout(TimeoutError):
    pass


class Browser(Protocol):
    def inspect(self, urls: list[str], timeout_s: float | None = None) -> Inspection: ...

    def locate(self, url: str, frame_png: bytes, probes: list[PointerProbe],
               timeout_s: float | None = None) -> list[PageHit]: ...

    def close(self) -> None: ...


@dataclass
class Lanes:
    """What the pipeline runs with: the configuration, the analyser and the browser."""

    config: Config
    analyser: Analyser
    browser: Browser
    resolver: Resolver = system_resolver


def check_seed_url(url: str, lanes: Lanes) -> None:
    decision = decide(url, lanes.resolver, lanes.config.allow_private_urls, lanes.config.allowed_hosts)
    if not decision.allowed:
        raise UrlNotAllowed(f"seedUrl is not allowed: {decision.reason}")


def video_lane(path: Path, config: Config, analyser: Analyser, stop: threading.Event | None = None) -> VideoEvidence:
    started = time.monotonic()
    limits = frames_lane.Limits(config.max_video_seconds, config.max_video_pixels, config.max_frames)
    key_frames, info, warnings = frames_lane.extract(path, limits, cancelled=stop.is_set if stop else None)
    decoded = time.monotonic()
    vision = analyser.analyze(key_frames)
    done = time.monotonic()
    return VideoEvidence(key_frames, info, vision, warnings + vision.warnings,
                         int((decoded - started) * 1000), int((done - decoded) * 1000))


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
    return Inspection(urls_inspected=first.urls_inspected + more.urls_inspected,
                      duration_ms=first.duration_ms + more.duration_ms, browser=first.browser,
                      snapshots=first.snapshots + more.snapshots)


def run(request: RecordingRequest, lanes: Lanes) -> RecordingEvidence:
    """Run both lanes on one recording; ``UrlNotAllowed``, ``VideoError`` or ``PipelineTimeout`` when it cannot."""
    started = time.monotonic()
    config = lanes.config
    check_seed_url(request.seed_url, lanes)
    deadline = started + config.deadline_s

    def left() -> float:
        return max(0.0, deadline - time.monotonic())

    spans: dict[str, tuple[int, int]] = {}

    def timed(name: str, fn: Callable[..., T], *args: object) -> T:
        """Run a lane and keep when it ran, so its overlap with the other lane can be seen."""
        begun = time.monotonic()
        try:
            return fn(*args)
        finally:
            spans[name] = (int((begun - started) * 1000), int((time.monotonic() - started) * 1000))

    pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="lane")
    stop = threading.Event()  # set when the deadline passes: the lanes stop their work
    try:
        video_future = pool.submit(timed, "video", video_lane, request.video_path, config, lanes.analyser, stop)
        browser_future = pool.submit(timed, "browser", lanes.browser.inspect, [request.seed_url], config.deadline_s)
        try:
            video = video_future.result(timeout=left())
            inspection = browser_future.result(timeout=left())
            extra = [u for u in more_urls(request.seed_url, video.vision.urls_seen, config.max_urls)
                     if decide(u, lanes.resolver, config.allow_private_urls, config.allowed_hosts).allowed]
            if extra:  # pages the recording visited, seen once the video lane has read it
                more = pool.submit(lanes.browser.inspect, extra, left())
                inspection = merge(inspection, more.result(timeout=left()))
        except (FutureTimeout, frames_lane.Cancelled) as exc:
            stop.set()
            raise PipelineTimeout(f"processing passed its deadline of {config.deadline_s:.0f} s") from exc
        hits, problems = timed("grounding", ground, video, inspection, lanes, pool, left)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    steps = steps_inference.merge_flow(steps_inference.infer(video.key_frames, video.vision.analyses, hits),
                                       video.vision.flow, video.vision.provider)
    return RecordingEvidence(video, inspection, started, steps, hits, problems, spans)


def ground(video: VideoEvidence, inspection: Inspection, lanes: Lanes, pool: ThreadPoolExecutor,
           left: Callable[[], float]) -> tuple[list[PageHit], list[str]]:
    """Look up, on each inspected page, what is under the pointer where the recording shows it acting.

    Each page is placed inside the first key frame that shows it (the seed: the first frame). The
    steps are named from the screen where this fails, so a failure is a warning, not an error.
    """
    probes = steps_inference.pointer_probes(video.key_frames)
    opened = [s.url for s in inspection.snapshots if s.success]
    if not probes or not opened or not video.key_frames:
        return [], []
    urls = [a.url for a in video.vision.analyses]
    by_page: dict[str, tuple[int, list[PointerProbe]]] = {}
    for probe in probes:
        url = urls[probe.frame_index] if urls[probe.frame_index] in opened else opened[0]
        first = next((n for n, u in enumerate(urls) if u == url), 0) if url != opened[0] else 0
        by_page.setdefault(url, (first, []))[1].append(probe)
    hits: list[PageHit] = []
    problems: list[str] = []
    budget = lanes.config.page_timeout_s * 2
    for url, (first, page_probes) in by_page.items():
        job = pool.submit(lanes.browser.locate, url, video.key_frames[first].png, page_probes, min(left(), budget))
        try:
            hits += job.result(timeout=min(left(), budget) + 1)
        except Exception as exc:  # noqa: BLE001 - grounding is an improvement, never a reason to fail
            problems.append(f"the steps on {url} could not be checked against the live page ({type(exc).__name__}); "
                            "they are named from the screen")
    return hits, problems
