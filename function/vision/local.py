"""The local provider: Tesseract reads each frame — the whole first frame, then only what changed.

It keeps a model of the text on screen, so each frame says which text appeared and
which disappeared where; the text lines are the frame's elements (role ``text``), and
a browser's address bar, when the recording shows one, gives the frame's URL. The
model runs across the whole sequence, so all frames are one batch; the OCR of each frame
starts as soon as the frame comes (``_OcrAhead``), so most of it is done when the batch is read,
and a URL in the address bar is told as soon as its crop is read (the browser lane opens it then).
"""

from __future__ import annotations

import os
import re
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Iterable

import cv2
import numpy as np

from ..models import AriaNode, FrameAnalysis, KeyFrame, Region, TextBox, Word
from . import ocr
from .core import Batch, FrameSink, Reading, Unheard

LOCAL_PROVIDER = "local:tesseract-ocr"
OCR_MARGIN = 24  # px around a changed region, so words cut by its edge are read whole
MAX_TEXT_ELEMENTS = 80
LINE_BAND_PX = 60  # a changed region this short lies within one line of text
_ERROR_TEXT = re.compile(r"\b(error|failed|failure|exception|invalid|denied|unable|cannot|can't|not found|"
                         r"went wrong|timed? ?out|unavailable|forbidden|unauthori[sz]ed|crash)", re.I)


def _where(frame: KeyFrame) -> str:
    region = frame.changed_region
    if region is None:
        return "the whole screen"
    return (f"{region.place_in(frame.width, frame.height).replace(' ', '-')} of the screen "
            f"({region.width}x{region.height} px at {region.x},{region.y})")


def _quote(texts: list[str], limit: int = 4) -> str:
    shown = ", ".join(f"\u201c{t[:60]}\u201d" for t in texts[:limit])
    return shown + (f" and {len(texts) - limit} more" if len(texts) > limit else "")


def _boxes_overlap(a: ocr.TextLine, b: ocr.TextLine) -> bool:
    return a.x < b.x + b.width and b.x < a.x + a.width and a.y < b.y + b.height and b.y < a.y + a.height


def _overlaps(line: ocr.TextLine, region: Region, margin: int) -> bool:
    return (line.x < region.x + region.width + margin and region.x - margin < line.x + line.width
            and line.y < region.y + region.height + margin and region.y - margin < line.y + line.height)


Crop = tuple[int, int, int, int]  # x, y, width, height


@dataclass
class _Read:
    """What the OCR made (or is making) of a recording's frames: per frame, per kind of crop."""

    toolbar_px: int | None
    lines: list[dict[str, Future[list[ocr.TextLine]]]]


def _toolbar_kind(kinds: Iterable[str]) -> str | None:
    """Which of a frame's crops holds the browser's address bar, if the frame's reading has one."""
    kinds = set(kinds)
    return "toolbar" if "toolbar" in kinds else "screen" if "screen" in kinds else None


class _OcrAhead:
    """All frames in one batch, and each frame's OCR started on the shared pool as the frame comes;
    the sink hears of each frame once its crops are read, and of the URL its address bar shows."""

    def __init__(self, provider: LocalProvider, sink: FrameSink) -> None:
        self.provider = provider
        self.sink = sink
        self.frames: list[KeyFrame] = []
        self.read = _Read(None, [])

    def add(self, frame: KeyFrame) -> list[Batch]:
        image = cv2.imdecode(np.frombuffer(frame.png, np.uint8), cv2.IMREAD_GRAYSCALE) if frame.png else None
        first = not self.frames
        if first and image is not None:  # the browser's own rows, if the recording shows them: found once
            self.read.toolbar_px = ocr.toolbar_height(image)
        pool = self.provider.pool()
        crops = {kind: pool.submit(_read_crop, image, box)
                 for kind, box in self.provider.crops(frame, first, self.read.toolbar_px)}
        self.read.lines.append(crops)
        self.frames.append(frame)
        toolbar_px, toolbar = self.read.toolbar_px, _toolbar_kind(crops)

        def told(_: Future[list[ocr.TextLine]]) -> None:  # on an OCR thread, once per crop read
            if not all(crop.done() for crop in crops.values()):
                return
            address = crops[toolbar] if toolbar is not None and toolbar_px is not None else None
            if address is not None and address.exception() is None and address.result():
                found = ocr.address_bar_url(address.result(), toolbar_px, self.provider.default_scheme)
                if found:
                    self.sink.url_seen(found)
            self.sink.frame_done(frame)  # told again by a later crop's callback: the sink tells once

        for crop in crops.values():
            crop.add_done_callback(told)
        return []

    def rest(self) -> list[Batch]:
        return [Batch(self.frames, self.read)] if self.frames else []


def _read_crop(image: np.ndarray | None, box: Crop) -> list[ocr.TextLine]:
    x, y, w, h = box
    return [] if image is None else ocr.read_lines(image[y:y + h, x:x + w], (x, y))


class LocalProvider:
    """Offline vision: no network, no key."""

    name = LOCAL_PROVIDER
    label = "the local analyser"
    max_in_flight = 1  # one batch; the OCR calls inside it use every core
    uses_hints = False

    def __init__(self, workers: int | None = None, default_scheme: str = "http") -> None:
        self.workers = workers or max(1, os.cpu_count() or 1)
        self.default_scheme = default_scheme
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()

    def pool(self) -> ThreadPoolExecutor:
        """The OCR workers, shared by every recording in flight (made on first use)."""
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="ocr")
            return self._pool

    def batcher(self, sink: FrameSink) -> _OcrAhead:
        return _OcrAhead(self, sink)

    def crops(self, frame: KeyFrame, first: bool, toolbar_px: int | None) -> list[tuple[str, Crop]]:
        """The crops to read: (kind, (x, y, width, height))."""
        region = frame.changed_region
        if first or region is None:
            return [("screen", (0, 0, frame.width, frame.height))]
        x0, y0 = max(0, region.x - OCR_MARGIN), max(0, region.y - OCR_MARGIN)
        x1 = min(frame.width, region.x + region.width + OCR_MARGIN)
        y1 = min(frame.height, region.y + region.height + OCR_MARGIN)
        jobs = [("region", (x0, y0, x1 - x0, y1 - y0))]
        if region.height <= LINE_BAND_PX:  # a change within one line (typing): read the whole line too
            jobs.append(("line", (0, y0, frame.width, y1 - y0)))
        if toolbar_px is not None and y0 < toolbar_px:
            jobs.append(("toolbar", (0, 0, frame.width, toolbar_px)))
        return jobs

    def read(self, batch: Batch) -> Reading:
        frames = batch.frames
        read = batch.payload
        if not isinstance(read, _Read):  # a batch made elsewhere (standing in for another provider)
            ahead = self.batcher(Unheard())
            for frame in frames:
                ahead.add(frame)
            read = ahead.read
        toolbar_px = read.toolbar_px
        read_by_frame = [{kind: lines.result() for kind, lines in crops.items()} for crops in read.lines]

        analyses: list[FrameAnalysis] = []
        screen: list[ocr.TextLine] = []
        url: str | None = None
        urls_seen: list[str] = []
        for n, (frame, reads) in enumerate(zip(frames, read_by_frame)):
            before = [line.text for line in screen]
            if "screen" in reads:
                screen = reads["screen"]
                fresh = screen
            else:
                region = frame.changed_region
                # A one-line change is read along the whole line too: that read wins where it has the
                # text (typing changes a line beyond the region's crop, which holds only the last letters),
                # the region's own read fills in where the line's read found nothing.
                band = reads.get("line", [])
                own = [line for line in reads["region"] if not any(_boxes_overlap(line, other) for other in band)]
                kept = [line for line in screen if not _overlaps(line, region, 4)
                        and not any(_boxes_overlap(line, other) for other in band)]
                fresh = band + own
                screen = sorted(kept + fresh, key=lambda line: (line.y, line.x))
            toolbar = _toolbar_kind(reads)
            toolbar_lines = reads[toolbar] if toolbar is not None else []
            found = (ocr.address_bar_url(toolbar_lines, toolbar_px, self.default_scheme)
                     if toolbar_lines and toolbar_px is not None else None)
            if found:
                url = found
                if found not in urls_seen:
                    urls_seen.append(found)
            now = [line.text for line in screen]
            appeared = [t for t in now if t not in before]
            gone = [t for t in before if t not in now]
            if n == 0:
                description = "The starting screen" + (f", showing {_quote(now, 5)}." if now else ".")
            else:
                description = f"At {frame.timestamp / 1000:.1f} s {_where(frame)} changed"
                if appeared:
                    description += f"; text appeared: {_quote(appeared)}"
                if gone:
                    description += f"; text no longer read: {_quote(gone)}"
                description += "." if appeared or gone else " (no readable text changed)."
            anomalies = [f"on-screen text: {line.text}" for line in fresh if _ERROR_TEXT.search(line.text)]
            analyses.append(FrameAnalysis(
                description=description,
                visible_text="\n".join(line.text for line in fresh)[:2000],
                anomalies=anomalies,
                provider=self.name,
                elements=[AriaNode(role="text", name=t) for t in dict.fromkeys(now)][:MAX_TEXT_ELEMENTS],
                url=url,
                screen_text=[TextBox(text=line.text, region=Region(x=line.x, y=line.y, width=line.width,
                                                                   height=line.height),
                                     words=[Word(text=t, x=x, width=w) for t, x, w in line.words])
                             for line in screen],
            ))
        return Reading(analyses, urls_seen=urls_seen)  # the user's steps are inferred from these (``steps``)
