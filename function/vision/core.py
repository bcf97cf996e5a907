"""The provider-neutral part of vision: batching, fallback and merging.

A provider reads a batch of key frames (with what was measured of each: pointer,
changed region, the live page's element under the pointer) and returns a ``Reading``; ``Vision`` runs
the provider's batches (several at once when the provider allows), lets the
fallback provider read any batch the main one failed on (with a warning), and
merges the readings into one ``VisionResult`` in time order.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

import cv2
import numpy as np

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


class Provider(Protocol):
    name: str  # e.g. ``anthropic:<model>`` or the local analyser's name
    label: str  # how a warning names it: "Claude vision", "the local analyser"
    max_in_flight: int  # batches read at once

    def batches(self, frames: list[KeyFrame]) -> list[Batch]: ...

    def read(self, batch: Batch) -> Reading: ...


class Analyser(Protocol):
    """What the pipeline needs of vision."""

    provider: str

    def analyze(self, frames: list[KeyFrame], hints: list[FrameHint] | None = None) -> VisionResult: ...


class Vision:
    """Key frames → analyses through ``provider``; ``fallback`` reads any batch it fails on."""

    def __init__(self, provider: Provider, fallback: Provider | None = None) -> None:
        self.main = provider
        self.fallback = fallback
        self.provider = provider.name

    def _read(self, batch: Batch) -> tuple[Reading, str | None]:
        try:
            return self.main.read(batch), None
        except ProviderFailed as exc:
            if self.fallback is None:
                raise
            return self.fallback.read(Batch(batch.frames, hints=batch.hints)), str(exc)

    def analyze(self, frames: list[KeyFrame], hints: list[FrameHint] | None = None) -> VisionResult:
        """Read every frame; ``hints`` (one per frame, same order) is what was measured of each."""
        batches = self.main.batches(frames) if frames else []
        by_index = {frame.index: hint for frame, hint in zip(frames, hints or [])}
        for batch in batches:
            batch.hints = [by_index.get(frame.index) for frame in batch.frames]
        with ThreadPoolExecutor(max_workers=max(1, self.main.max_in_flight)) as pool:
            outcomes = list(pool.map(self._read, batches))
        result = VisionResult(analyses=[], provider=self.provider)
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
        if failures and self.fallback is not None:
            result.warnings.append(
                f"{self.main.label} failed for {len(failures)} of {len(batches)} request(s) "
                f"({failures[0]}); {self.fallback.label} stood in for those frames")
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
