"""One recording, both lanes at once, under one deadline; typed evidence out.

The video lane and the browser lane (aria) run concurrently. The video lane streams: each key
frame goes on, as soon as the decoder has settled it, to vision (a batch is read as soon as it is
complete) and, where vision uses it, to the live page for the element under the pointer; decoding
goes on meanwhile. Each same-origin page the recording shows the user visiting is opened by the
browser lane as soon as vision reads its URL, and the user's steps are inferred from both.
Nothing here stores anything: ``records`` turns the evidence into a session.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures import wait as futures_wait
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol, TypeVar
from urllib.parse import urlsplit, urlunsplit

from . import frames as frames_lane
from . import logs
from . import steps as steps_inference
from .config import Config
from .models import (FrameHint, Inspection, KeyFrame, PageHit, PointerProbe, ProcessingPhase, RecordingEvidence,
                     RecordingRequest, VideoEvidence, VideoInfo)
from .urlguard import Resolver, decide, system_resolver
from .vision import Analyser, StreamEvents, VisionStream

log = logging.getLogger("scope.pipeline")
T = TypeVar("T")

# When a request ends early (a bad video, its deadline), its lanes are told to stop (pages close,
# batches not yet sent to vision are dropped) and are waited for this long at most: the answer does
# not leave work running behind it.
LANE_STOP_S = 5.0


class UrlNotAllowed(ValueError):
    pass


class PipelineTimeout(TimeoutError):
    pass


class Locator(Protocol):
    """A live page opened once, hit-tested as the recording's probes come (``aria.PageLocator``)."""

    def hits(self, probes: list[PointerProbe], timeout_s: float | None = None) -> list[PageHit]: ...

    def close(self) -> None: ...


class Browser(Protocol):
    def inspect(self, urls: list[str], timeout_s: float | None = None,
                on_step: Callable[[int, int], None] | None = None,
                stop: threading.Event | None = None) -> Inspection: ...

    def locate(self, url: str, frame_png: bytes, probes: list[PointerProbe],
               timeout_s: float | None = None) -> list[PageHit]: ...

    def locator(self, url: str, frame_png: bytes) -> Locator: ...

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


def extract(path: Path, config: Config, stop: threading.Event | None = None,
            on_frame: Callable[[KeyFrame], None] | None = None) -> tuple[list[KeyFrame], VideoInfo, list[str]]:
    limits = frames_lane.Limits(config.max_video_seconds, config.max_video_pixels, config.max_frames)
    return frames_lane.extract(path, limits, cancelled=stop.is_set if stop else None, on_frame=on_frame,
                               on_position=_log_position)


def _log_position(ms: int, duration_ms: int) -> None:
    """How far decoding is (a line per second of video): the CLI draws its bar from it."""
    logs.progress(log, "extract", ms, duration_ms, "ms")


def later_page(seed_url: str, url: str) -> str | None:
    """``url`` as a page to open after the seed: on the seed's origin and not the seed itself, else None.

    A browser's address bar hides the scheme, so a URL read from it takes the seed's.
    """
    seed = urlsplit(seed_url)
    default_port = 443 if seed.scheme == "https" else 80
    try:
        parts = urlsplit(url)
        same = parts.hostname == seed.hostname and (parts.port or default_port) == (seed.port or default_port)
    except ValueError:
        return None
    candidate = urlunsplit((seed.scheme, parts.netloc, parts.path or "/", parts.query, parts.fragment))
    return candidate if same and candidate != seed_url else None


def more_urls(seed_url: str, seen: list[str], cap: int) -> list[str]:
    """URLs the recording showed, on the seed's origin, new, at most ``cap - 1`` (the seed comes first)."""
    pages = [page for url in seen if (page := later_page(seed_url, url)) is not None]
    return list(dict.fromkeys(pages))[: max(0, cap - 1)]


def merge(first: Inspection, more: Inspection) -> Inspection:
    return Inspection(urls_inspected=first.urls_inspected + more.urls_inspected,
                      duration_ms=first.duration_ms + more.duration_ms, browser=first.browser,
                      snapshots=first.snapshots + more.snapshots)


Progress = Callable[[ProcessingPhase], None]  # told when processing reaches a phase (lanes' threads call it)


def run(request: RecordingRequest, lanes: Lanes, progress: Progress | None = None) -> RecordingEvidence:
    """Run both lanes on one recording; ``UrlNotAllowed``, ``VideoError`` or ``PipelineTimeout`` when it cannot.

    The video lane extracts the key frames, looks up on the live seed page what is under the pointer
    in each (while the browser lane is still inspecting it), and has vision read the frames with that
    context. Each page the recording goes on to visit is inspected as soon as vision reads its URL,
    and the pointer is looked up on those pages once vision is done.
    """
    started = time.monotonic()
    config = lanes.config
    check_seed_url(request.seed_url, lanes)
    deadline = started + config.deadline_s

    def left() -> float:
        return max(0.0, deadline - time.monotonic())

    spans: dict[str, tuple[int, int]] = {}

    def timed(name: str, fn: Callable[..., T], *args: object) -> T:
        """Run a phase, keep when it ran (so the lanes' overlap can be seen) and log its start and end."""
        with logs.phase_span(log, name) as span:
            try:
                return fn(*args)
            finally:
                spans[name] = (int((span.began - started) * 1000), int((time.monotonic() - started) * 1000))

    def submit(fn: Callable[..., T], *args: object) -> Future[T]:
        """Run ``fn`` on the pool with this request's context (its log lines keep the request id)."""
        return pool.submit(contextvars.copy_context().run, fn, *args)

    def video_lane() -> tuple[VideoEvidence, list[PointerProbe], list[PageHit], list[str]]:
        grounding = Grounding(lanes, request.seed_url, left)
        events = VisionEvents(later)
        stream = lanes.analyser.open(grounding.hints_for, events)
        feed = Feed(stream, grounding)
        try:
            if progress is not None:
                progress("decoding")
            key_frames, info, warnings = timed("extract", extract, request.video_path, config, stop, feed.add)
            feed.finish()
            if progress is not None:
                progress("reading frames")
            # Batches that wait for hints look up their own frames, so the rest waits until all are out;
            # otherwise vision does not wait for the live page, and it is looked up meanwhile.
            looked_up = (None if stream.wants_hints else
                         aside.submit(contextvars.copy_context().run, timed, "grounding", grounding.rest))
            vision = stream.finish(stop)
            read_at = time.monotonic()
            if events.span is not None:
                events.span.end()
            began_at = events.span.began if events.span is not None else read_at
            spans["vision"] = (int((began_at - started) * 1000), int((read_at - started) * 1000))
            hits, problems = (timed("grounding", grounding.rest) if looked_up is None
                              else looked_up.result(timeout=left()))
        except BaseException:
            stream.abandon()
            if events.span is not None:  # begun, never read to its end (or ended already: nothing more)
                events.span.end(failed=True)
            raise
        finally:
            grounding.close()
        spans["video"] = (spans["extract"][0], spans["vision"][1])
        return (VideoEvidence(key_frames, info, vision, warnings + vision.warnings, _length(spans["extract"]),
                              _length(spans["vision"])), grounding.probes(), hits, problems)

    pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="lane")
    aside = ThreadPoolExecutor(max_workers=1, thread_name_prefix="grounding")
    stop = threading.Event()  # set when the request ends, however it ends: work still under way stops
    later = LaterPages(lanes, request.seed_url, left, stop)
    lanes_started: list[Future] = []
    try:
        video_future = submit(video_lane)
        browser_future = submit(timed, "browser", lanes.browser.inspect, [request.seed_url], config.deadline_s,
                                _told_progress("browser", "steps"), stop)
        lanes_started += [video_future, browser_future]
        try:
            video, probes, hits, problems = video_future.result(timeout=left())
            if progress is not None:
                progress("inspecting pages")
            inspection = browser_future.result(timeout=left())
            more = later.collect(more_urls(request.seed_url, video.vision.urls_seen, config.max_urls))
            if more is not None:  # pages the recording visited, most opened while it was still read
                inspection = merge(inspection, more)
                if later.span is not None:  # (it is: ``more`` came from pages opened)
                    spans["later pages"] = (int((later.span.began - started) * 1000),
                                            int((later.span.ended - started) * 1000))
        except (FutureTimeout, frames_lane.Cancelled) as exc:
            raise PipelineTimeout(f"processing passed its deadline of {config.deadline_s:.0f} s") from exc
        hits, later_problems = relocate(video, probes, inspection, hits, request.seed_url, lanes, left)
    finally:
        stop.set()
        futures_wait(lanes_started, timeout=LANE_STOP_S)  # a failed request's lanes end before its answer
        pool.shutdown(wait=False, cancel_futures=True)
        aside.shutdown(wait=False, cancel_futures=True)
        later.close()
    if not any(s.success for s in inspection.snapshots if s.url == request.seed_url):
        problems = []  # the seed page's failure is already a warning of its own
    steps = steps_inference.merge_steps(steps_inference.infer(video.key_frames, video.vision.analyses, hits),
                                        video.vision.steps)
    return RecordingEvidence(video, inspection, started, steps, hits, problems + later_problems, spans)


def _length(span: tuple[int, int]) -> int:
    return span[1] - span[0]


def _told_progress(phase: str, unit: str) -> Callable[[int, int], None]:
    """How far ``phase`` is, told from another thread (the browser's), logged under this request's id."""
    context = contextvars.copy_context()
    return lambda done, of: context.copy().run(logs.progress, log, phase, done, of, unit)


class VisionEvents(StreamEvents):
    """What the vision stream tells, turned into the vision phase's log lines; each URL it reads is a
    later page to open."""

    def __init__(self, later: LaterPages) -> None:
        self.later = later
        self.span: logs.Span | None = None  # the vision phase, once the first frame is handed to it

    def started(self) -> None:
        self.span = logs.Span.start(log, "vision")

    def url_seen(self, url: str) -> None:
        self.later.open(url)

    def frames_read(self, done: int, handed: int) -> None:
        logs.progress(log, "vision", done, handed, "frames")


class LaterPages:
    """The pages the recording goes on to visit, each opened by the browser lane as soon as vision
    reads its URL, while the video is still decoded and read: at most ``max_urls - 1`` of them early.

    ``collect`` takes the final list (read from the whole recording), opens what is not open yet,
    and merges the inspections in that list's order; a page opened early for a URL not on it is left
    out, so the evidence does not depend on the order in which frames were read.
    """

    def __init__(self, lanes: Lanes, seed_url: str, left: Callable[[], float], stop: threading.Event) -> None:
        self.lanes, self.seed_url, self.left, self.stop = lanes, seed_url, left, stop
        self.cap = max(0, lanes.config.max_urls - 1)
        self.span: logs.Span | None = None  # the phase, from the first page opened until all are in
        self._context = contextvars.copy_context()  # ``open`` is called on vision's threads
        self._pool = ThreadPoolExecutor(max_workers=max(1, self.cap), thread_name_prefix="pages")
        self._pages: dict[str, Future[Inspection | None]] = {}
        self._finished = 0
        self._closed = False
        self._lock = threading.Lock()

    def open(self, url: str, early: bool = True) -> Future[Inspection | None] | None:
        """Start inspecting ``url`` as a later page (unless it is none, is open, or the early cap is reached)."""
        page = later_page(self.seed_url, url)
        with self._lock:
            if page is None or self._closed:  # (vision may still tell a URL after the request gave up)
                return None
            if page in self._pages or (early and len(self._pages) >= self.cap):
                return self._pages.get(page)
            if not self._pages:
                self.span = self._context.copy().run(logs.Span.start, log, "later pages")
            self._pages[page] = self._pool.submit(self._context.copy().run, self._inspect, page)
            return self._pages[page]

    def collect(self, urls: list[str]) -> Inspection | None:
        """The inspection of ``urls`` (later pages, in order), or None when there are none the lane may open."""
        opened = [page for url in urls if (page := self.open(url, early=False)) is not None]
        inspections = [inspection for page in opened if (inspection := page.result(timeout=self.left())) is not None]
        if self.span is not None:
            self.span.end()
        if not inspections:
            return None
        first, *rest = inspections
        for inspection in rest:
            first = merge(first, inspection)
        return first

    def close(self) -> None:
        """No more pages; if some were opened and the request failed before ``collect``, the phase
        ends here, as a failure."""
        with self._lock:
            self._closed = True
        self._pool.shutdown(wait=False, cancel_futures=True)
        futures_wait(list(self._pages.values()), timeout=LANE_STOP_S)  # under way: closing, as ``stop`` is set
        if self.span is not None:
            self.span.end(failed=True)  # (nothing when ``collect`` ended it)

    def _inspect(self, url: str) -> Inspection | None:
        config = self.lanes.config
        if not decide(url, self.lanes.resolver, config.allow_private_urls, config.allowed_hosts).allowed:
            return None
        try:
            return self.lanes.browser.inspect([url], self.left(), stop=self.stop)
        finally:
            with self._lock:
                self._finished += 1
                finished, pages = self._finished, len(self._pages)
            logs.progress(log, "later pages", finished, pages, "pages")


class Feed:
    """The extractor's settled frames, to the grounding at once and to vision one behind: a frame's
    pointer probe needs the frame after it."""

    def __init__(self, stream: VisionStream, grounding: Grounding) -> None:
        self.stream, self.grounding = stream, grounding

    def add(self, frame: KeyFrame) -> None:
        self.grounding.add(frame)
        if len(self.grounding.frames) >= 2:
            self.stream.add(self.grounding.frames[-2])

    def finish(self) -> None:
        if self.grounding.frames:
            self.stream.add(self.grounding.frames[-1])


class Grounding:
    """What the live seed page has under the pointer, for frames as vision reads them.

    The page starts opening (and is placed in the recording) as soon as the first frame is settled,
    while the video decodes; probes are then hit-tested on it. A provider that uses hints asks for
    each batch's (``hints_for``, on vision's threads): its probes are looked up then. ``rest`` looks
    up what no batch asked for, and gives every hit and problem; ``close`` closes the page.
    """

    def __init__(self, lanes: Lanes, url: str, left: Callable[[], float]) -> None:
        self.lanes, self.url, self.left = lanes, url, left
        self.frames: list[KeyFrame] = []  # every settled frame so far, in order
        self.page: Locator | None = None
        self.looked_up: set[int] = set()  # frame indexes whose probes were looked up
        self.hits: list[PageHit] = []
        self.problems: list[str] = []
        self._lock = threading.Lock()

    def add(self, frame: KeyFrame) -> None:
        self.frames.append(frame)
        if len(self.frames) == 1:
            self.page = self.lanes.browser.locator(self.url, frame.png)

    def probes(self, frames: list[KeyFrame] | None = None) -> list[PointerProbe]:
        """The probes of ``frames`` (all so far when None); each needs the frame after it, where there is one."""
        indexes = [f.index for f in frames] if frames is not None else range(len(self.frames))
        return [p for i in indexes if (p := steps_inference.pointer_probe(self.frames, i)) is not None]

    def hints_for(self, batch: list[KeyFrame]) -> list[FrameHint | None]:
        by_frame = {hit.frame_index: hit for hit in self._look_up(self.probes(batch))}
        return [FrameHint.of(frame, by_frame.get(frame.index)) for frame in batch]

    def rest(self) -> tuple[list[PageHit], list[str]]:
        self._look_up([p for p in self.probes() if p.frame_index not in self.looked_up])
        with self._lock:
            return sorted(self.hits, key=lambda h: h.frame_index), list(dict.fromkeys(self.problems))

    def close(self) -> None:
        if self.page is not None:
            self.page.close()

    def _look_up(self, probes: list[PointerProbe]) -> list[PageHit]:
        if not probes or self.page is None:
            return []
        try:
            hits = self.page.hits(probes, min(self.left(), self.lanes.config.page_timeout_s * 2))
            problems = []
        except Exception as exc:  # noqa: BLE001 - grounding is an improvement, never a reason to fail
            hits, problems = [], [_not_grounded(self.url, exc)]
        with self._lock:
            self.looked_up.update(p.frame_index for p in probes)
            self.hits += hits
            self.problems += problems
        return hits


def _not_grounded(url: str, exc: Exception) -> str:
    return (f"the steps on {url} could not be checked against the live page ({type(exc).__name__}); "
            "they are named from the screen")


def locate(lanes: Lanes, url: str, key_frames: list[KeyFrame], probes: list[PointerProbe],
           left: Callable[[], float], first: int = 0) -> tuple[list[PageHit], list[str]]:
    """What the live page at ``url`` has under the pointer at each probe, the page placed in frame ``first``.

    The steps are named from the screen where this fails, so a failure is a warning, not an error.
    """
    if not probes or not key_frames:
        return [], []
    budget = min(left(), lanes.config.page_timeout_s * 2)
    try:
        return lanes.browser.locate(url, key_frames[first].png, probes, budget), []
    except Exception as exc:  # noqa: BLE001 - grounding is an improvement, never a reason to fail
        return [], [_not_grounded(url, exc)]


def relocate(video: VideoEvidence, probes: list[PointerProbe], inspection: Inspection, hits: list[PageHit],
             seed_url: str, lanes: Lanes, left: Callable[[], float]) -> tuple[list[PageHit], list[str]]:
    """The seed page's hits, with those of frames that show another inspected page looked up on that page."""
    urls = [a.url for a in video.vision.analyses]
    opened = {s.url for s in inspection.snapshots if s.success} - {seed_url}
    by_page: dict[str, list[PointerProbe]] = {}
    for probe in probes:
        if urls[probe.frame_index] in opened:
            by_page.setdefault(urls[probe.frame_index], []).append(probe)
    problems: list[str] = []
    for url, page_probes in by_page.items():
        first = urls.index(url)
        found, failed = locate(lanes, url, video.key_frames, page_probes, left, first)
        moved = {p.frame_index for p in page_probes}
        hits = [hit for hit in hits if hit.frame_index not in moved] + found
        problems += failed
    return hits, problems
