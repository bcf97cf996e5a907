"""The provider-neutral part of vision: batching, fallback and merging, while the frames still come.

A provider reads a batch of key frames (with what was measured of each: pointer,
changed region, the live page's element under the pointer) and returns a ``Reading``; its
``Batcher`` groups a recording's frames into batches as they arrive. ``VisionStream`` takes the
frames as the video lane settles them, sends each batch to the provider as soon as it is complete
(several at once when the provider allows), lets the fallback provider read any batch the main one
failed on (with a warning), and at the end merges the readings into one ``VisionResult`` in time
order. ``Vision.analyze`` is the same for a list of frames already at hand.
"""

from __future__ import annotations

import contextvars
import queue
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

import cv2
import numpy as np

from .. import stopping
from ..models import FrameAnalysis, FrameHint, KeyFrame, Step, VisionResult
from ..urlguard import inert_url, without_credentials
from .ocr import toolbar_height


class ProviderFailed(RuntimeError):
    """The provider could not read a batch (after its own retries); the reason is safe to show."""


@dataclass
class Batch:
    """Frames read in one go, what was measured of each, and whatever the provider prepared (encoded images)."""

    frames: list[KeyFrame]
    payload: Any = None
    hints: list[FrameHint | None] = field(default_factory=list)  # one per frame when given


@dataclass
class Reading:
    """What a provider made of one batch: one analysis per frame, in order, and what spans the frames."""

    analyses: list[FrameAnalysis]
    steps: list[Step] = field(default_factory=list)  # the user's actions as the provider saw them
    observed_problem: str = ""
    urls_seen: list[str] = field(default_factory=list)
    input_tokens: int = 0
    output_tokens: int = 0
    requests: int = 0  # calls to a remote service it took


class Batcher(Protocol):
    """A provider's grouping of one recording's frames into batches, fed in time order as they come.

    It may start work on a frame as soon as it has it (encoding, OCR), so that reading a batch
    later is quick, and tell its ``FrameSink`` what that work found before the batch is read."""

    def add(self, frame: KeyFrame) -> list[Batch]: ...  # the batches this frame completed

    def rest(self) -> list[Batch]: ...  # what is left once the last frame is in


class FrameSink(Protocol):
    """What a batcher may tell early, from any thread: a URL read off the screen, a frame whose reading is done."""

    def url_seen(self, url: str) -> None: ...

    def frame_done(self, frame: KeyFrame) -> None: ...


class StreamEvents:
    """What a ``VisionStream`` tells as it goes, from its own threads; each does nothing unless overridden."""

    def started(self) -> None:
        """The provider got the recording's first frame."""

    def url_seen(self, url: str) -> None:
        """A URL read off the screen (made safe), each once, as soon as it is read."""

    def frames_read(self, done: int, handed: int) -> None:
        """``done`` of the ``handed`` frames so far are read."""


class Provider(Protocol):
    name: str  # e.g. ``anthropic:<model>`` or the local analyser's name
    label: str  # how a warning names it: "Claude vision", "the local analyser"
    max_in_flight: int  # batches read at once
    uses_hints: bool  # whether ``read`` looks at the batch's hints (worth waiting for them)

    def batcher(self, sink: FrameSink) -> Batcher: ...

    def read(self, batch: Batch) -> Reading: ...


HintSource = Callable[[list[KeyFrame]], list[FrameHint | None]]  # a batch's frames → what was measured of each


class Analyser(Protocol):
    """What the pipeline needs of vision."""

    provider: str

    def open(self, hints_for: HintSource | None = None, events: StreamEvents | None = None) -> VisionStream: ...

    def analyze(self, frames: list[KeyFrame], hints: list[FrameHint] | None = None) -> VisionResult: ...


class Vision:
    """Key frames → analyses through ``provider``; ``fallback`` reads any batch it fails on."""

    def __init__(self, provider: Provider, fallback: Provider | None = None) -> None:
        self.main = provider
        self.fallback = fallback
        self.provider = provider.name

    def open(self, hints_for: HintSource | None = None, events: StreamEvents | None = None) -> VisionStream:
        """A stream to add one recording's frames to as they come; ``hints_for`` is asked, just before a
        batch is read, for what was measured of its frames (only when the provider uses that), and
        ``events`` is told how the reading goes."""
        return VisionStream(self, hints_for, events)

    def analyze(self, frames: list[KeyFrame], hints: list[FrameHint] | None = None) -> VisionResult:
        """Read every frame; ``hints`` (one per frame, same order) is what was measured of each."""
        by_index = {frame.index: hint for frame, hint in zip(frames, hints or [])}
        stream = self.open(lambda batch: [by_index.get(frame.index) for frame in batch])
        for frame in frames:
            stream.add(frame)
        return stream.finish()

    def read(self, batch: Batch) -> tuple[Reading, str | None]:
        """The main provider's reading of ``batch``, or the fallback's and why the main one failed."""
        try:
            return self.main.read(batch), None
        except ProviderFailed as exc:
            if self.fallback is None:
                raise
            return self.fallback.read(Batch(batch.frames, hints=batch.hints)), str(exc)


class VisionStream:
    """One recording's frames, read while more still come: each batch goes out as soon as it is complete.

    ``add`` never waits (it is called from the video lane's encoding thread); a feeder thread hands
    the frames to the provider's batcher, and complete batches are read on a pool of
    ``max_in_flight``. ``finish`` sends what is left and merges everything; ``abandon`` drops it all.
    Its threads run in the caller's context (log lines keep the request's id). It is the batcher's
    ``FrameSink``: what the batcher finds early, and each batch's reading, reach ``events`` once each.
    """

    def __init__(self, vision: Vision, hints_for: HintSource | None = None,
                 events: StreamEvents | None = None) -> None:
        self.vision = vision
        self.hints_for = hints_for if vision.main.uses_hints else None
        self.events = events or StreamEvents()
        self._context = contextvars.copy_context()
        self.frames: list[KeyFrame] = []
        self.reads: list[Future[tuple[Reading, str | None]]] = []
        self._began = False  # the provider got its first frame: ``events.started`` was told
        self._told = threading.Lock()
        self._urls: set[str] = set()
        self._done: set[int] = set()  # indexes of the frames read
        self._batcher = vision.main.batcher(self)
        self._incoming: queue.SimpleQueue[KeyFrame | None] = queue.SimpleQueue()
        self._pool = ThreadPoolExecutor(max_workers=max(1, vision.main.max_in_flight), thread_name_prefix="vision")
        self._failure: BaseException | None = None
        self._abandoned = False
        self._feeder = threading.Thread(target=self._context.copy().run, args=(self._feed,), name="vision-feed",
                                        daemon=True)
        self._feeder.start()

    @property
    def wants_hints(self) -> bool:
        """Whether batches ask ``hints_for`` before they are read."""
        return self.hints_for is not None

    def add(self, frame: KeyFrame) -> None:
        self._incoming.put(frame)

    def url_seen(self, url: str) -> None:
        safe = _as_url(url)
        with self._told:
            if safe in self._urls:
                return
            self._urls.add(safe)
        self._context.copy().run(self.events.url_seen, safe)  # a batcher may tell from a thread of its own

    def frame_done(self, frame: KeyFrame) -> None:
        with self._told:
            if frame.index in self._done:
                return
            self._done.add(frame.index)
            done, handed = len(self._done), len(self.frames)
        self._context.copy().run(self.events.frames_read, done, handed)

    def finish(self, stop: threading.Event | None = None) -> VisionResult:
        """Read what is left, wait for every batch and merge the readings (the frames in the order added).

        Once ``stop`` is set (the request gave up), ``stopping.Stopped``: batches not yet sent are dropped."""
        self._incoming.put(None)
        self._feeder.join()
        try:
            if self._failure is not None:
                raise self._failure
            outcomes = [stopping.result(read, None, stop) for read in self.reads]
        finally:
            self._pool.shutdown(wait=False, cancel_futures=True)
        return _merged(self.vision, self.frames, outcomes)

    def abandon(self) -> None:
        """Stop: batches not yet read are dropped (the lane failed or ran out of time)."""
        self._abandoned = True
        self._incoming.put(None)
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _feed(self) -> None:
        try:
            while (frame := self._incoming.get()) is not None:
                if not self._began:
                    self._began = True
                    self.events.started()
                with self._told:
                    self.frames.append(frame)
                    done, handed = len(self._done), len(self.frames)
                self.events.frames_read(done, handed)
                for batch in self._batcher.add(frame):
                    self._send(batch)
            if not self._abandoned:
                for batch in self._batcher.rest():
                    self._send(batch)
        except BaseException as exc:  # noqa: BLE001 - raised again by ``finish``
            self._failure = exc

    def _send(self, batch: Batch) -> None:
        if not self._abandoned:
            self.reads.append(self._pool.submit(self._context.copy().run, self._read, batch))

    def _read(self, batch: Batch) -> tuple[Reading, str | None]:
        if self.hints_for is not None:
            batch.hints = self.hints_for(batch.frames)
        reading, failure = self.vision.read(batch)
        for url in reading.urls_seen:
            self.url_seen(url)
        for frame in batch.frames:
            self.frame_done(frame)
        return reading, failure


def batched(provider: Provider, frames: list[KeyFrame]) -> list[Batch]:
    """The batches ``provider`` makes of ``frames``."""
    batcher = provider.batcher(Unheard())
    return [batch for frame in frames for batch in batcher.add(frame)] + batcher.rest()


class Unheard:
    """A sink for what a batcher tells early, when nobody listens."""

    def url_seen(self, url: str) -> None:
        pass

    def frame_done(self, frame: KeyFrame) -> None:
        pass


def _merged(vision: Vision, frames: list[KeyFrame], outcomes: list[tuple[Reading, str | None]]) -> VisionResult:
    """The readings of a recording's batches as one result: in time order, URLs made safe, failures told."""
    result = VisionResult(analyses=[], provider=vision.provider)
    problems: list[str] = []
    failures: list[str] = []
    for reading, failure in outcomes:
        result.analyses.extend(reading.analyses)
        result.requests += 1 if failure else reading.requests
        if failure:
            failures.append(failure)
            continue
        result.steps.extend(reading.steps)
        if reading.observed_problem.strip():
            problems.append(reading.observed_problem.strip())
        result.urls_seen.extend(reading.urls_seen)
        result.input_tokens += reading.input_tokens
        result.output_tokens += reading.output_tokens
    if failures and vision.fallback is not None:
        result.warnings.append(
            f"{vision.main.label} failed for {len(failures)} of {len(outcomes)} request(s) "
            f"({failures[0]}); {vision.fallback.label} stood in for those frames")
    for analysis in result.analyses:  # a URL read off the screen keeps no credentials and nothing raw
        analysis.url = _as_url(analysis.url) if analysis.url else analysis.url
    for step in result.steps:
        step.value = _as_url(step.value) if step.action == "navigate" and step.value else step.value
    result.urls_seen = [_as_url(url) for url in result.urls_seen]
    result.steps.sort(key=lambda s: s.timestamp)
    result.observed_problem = " ".join(dict.fromkeys(problems))
    result.urls_seen = list(dict.fromkeys(result.urls_seen))
    rows = browser_rows(frames[0]) if frames else None
    for analysis in result.analyses:
        analysis.browser_rows = rows
    return result


def browser_rows(first: KeyFrame) -> int | None:
    """How tall the browser's own rows (tabs, address bar) are in a window capture; None in a tab capture."""
    if not first.png:
        return None
    image = cv2.imdecode(np.frombuffer(first.png, np.uint8), cv2.IMREAD_GRAYSCALE)
    return None if image is None else toolbar_height(image)


def _as_url(read: str) -> str:
    """A URL as read off the screen, made safe to open, store and print."""
    return inert_url(without_credentials(read))
