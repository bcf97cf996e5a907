"""Decoded frames → key frames: one frame per meaningful UI change.

Per sample (``SAMPLE_FPS`` a second, on a downscaled grayscale copy): the regions that
changed against the last kept frame are located and judged (``regions``); the change
rules explain away the pointer, the caret and codec specks (``rules``); what remains is
a UI change — however small, such as a delete button appearing on hover far from the
pointer. The change is captured once the screen has held still for ``SETTLE_MS`` (so the
frame shows the finished state), or after ``MAX_SETTLE_MS`` if it never settles (typing,
scrolling): a long burst gives one frame per ``MAX_SETTLE_MS``.

Analysis reads the luma plane in place, on a thread of its own so decoding goes on meanwhile;
only kept frames are converted to colour, and their PNGs are encoded off both threads. In a
stream with B-frames the samples fall on a fixed grid (multiples of 100 ms), so the decoder
knows which frames no sample needs and skips those no other frame refers to.
"""

from __future__ import annotations

import contextvars
import functools
import math
import queue
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Sequence

import cv2
import numpy as np

from ..images import encode_png
from ..models import KeyFrame, PointerAt, Region, VideoInfo
from .decode import DecodedFrame, Limits, VideoError, decode, probe
from .regions import Box, changed_boxes, ssim, union, vertical_shift
from .rules import DEFAULT_RULES, CaretRule, ChangeRule, PointerRule, RuleFactory

SAMPLE_FPS = 10.0  # a UI state lasts at least ~100 ms; 10 samples a second see every one
ANALYSIS_MAX_EDGE = 960  # px: frames are halved until their long edge fits (halving is cheap and exact)
SETTLE_MS = 300  # the screen must hold still this long before a change is captured
MAX_SETTLE_MS = 2500  # a change that never settles (typing, scrolling) is captured this often
SCROLL_REGION = 0.6  # of the frame's height: a region this tall that shifted once is a scroll, not a row removed
BLANK_STD = 3.0  # gray-level spread below which a frame is blank (a recorder's black first frame)
QUEUED_SAMPLES = 4  # decoded samples waiting for analysis at most (each holds a decoded frame)


def _scale_box(box: Box, scale: float, width: int, height: int) -> Region:
    x = max(0, math.floor(box.x / scale))
    y = max(0, math.floor(box.y / scale))
    return Region(x=x, y=y, width=min(width - x, math.ceil(box.w / scale)), height=min(height - y, math.ceil(box.h / scale)))


def _encode_png(image: np.ndarray) -> bytes:
    try:
        return encode_png(image)
    except ValueError:
        raise VideoError("could not encode a frame image") from None


class _Extractor:
    """The state of one pass over a video."""

    def __init__(self, limits: Limits, encode_images: bool, rules: Sequence[RuleFactory] = DEFAULT_RULES,
                 on_frame: Callable[[KeyFrame], None] | None = None) -> None:
        self.limits = limits
        self.rule_factories = rules
        self.rules: list[ChangeRule] = []
        self.kept: list[KeyFrame] = []
        self.encodes: list[Future[bytes]] = []
        self.on_frame = on_frame
        self.released = 0  # key frames handed to ``on_frame`` (or about to be, once encoded)
        self.pool = ThreadPoolExecutor(max_workers=1) if encode_images else None
        self.width = self.height = 0
        self.scale = 1.0
        self.reference: np.ndarray | None = None  # analysis copy of the last kept frame
        self.reference_blank = False
        self.previous: np.ndarray | None = None
        self.pending_since: int | None = None  # when an uncaptured UI change was first seen
        self.still_since = 0  # when the screen last moved (pointer and caret aside)
        self.candidate: tuple[DecodedFrame, np.ndarray] | None = None
        self.last_changes: list[Box] | None = None  # changes against the reference at the last sample
        self.pointer: PointerRule | None = None
        self.caret: CaretRule | None = None
        self.pointer_moved_at = 0  # when the pointer last moved
        self.path: list[PointerAt] = []  # the pointer's moves since the last kept frame
        self.caret_seen: tuple[Region, int] | None = None  # the last blinking caret and when
        self.scrolled = 0  # vertical content shift summed over the samples since the last kept frame
        self.pending: list[tuple[int, list[Box], PointerAt | None, int]] = []  # per sample while a change settles
        self.scroll_samples = 0  # samples that shifted

    def analysis_copy(self, item: DecodedFrame) -> np.ndarray:
        """Grayscale, halved (pixel-area averaging) until the long edge is at most ANALYSIS_MAX_EDGE."""
        gray = item.gray()
        if not self.width:
            self.height, self.width = gray.shape[:2]
            halvings = 0
            while max(self.width, self.height) / 2**halvings > ANALYSIS_MAX_EDGE:
                halvings += 1
            self.scale = 1 / 2**halvings
            self.rules = [make(self.scale) for make in self.rule_factories]
            self.pointer = next((r for r in self.rules if isinstance(r, PointerRule)), None)
            self.caret = next((r for r in self.rules if isinstance(r, CaretRule)), None)
        while gray.shape[1] > self.width * self.scale + 1:
            height, width = gray.shape[:2]
            even = gray[: height - height % 2, : width - width % 2]
            # At exactly half, bilinear is each 2×2 block's mean, as INTER_AREA's, and faster.
            gray = cv2.resize(even, (width // 2, height // 2), interpolation=cv2.INTER_LINEAR)
        return np.ascontiguousarray(gray)

    def keep(self, item: DecodedFrame, small: np.ndarray, boxes: list[Box], replace: bool = False) -> None:
        first = self.reference is None or replace
        score = 1.0 if first else min(1.0, max(0.0, 1.0 - ssim(self.reference, small)))
        region = _scale_box(union(boxes), self.scale, self.width, self.height) if boxes else None
        frame = KeyFrame(0 if replace else len(self.kept), item.ms, round(score, 4), region, self.width, self.height)
        if boxes and self.reference is not None and not replace:
            frame.started, frame.pointer, frame.pointer_still_ms = self._onset(union(boxes), item.ms)
            frame.pointer_path = self.path
            if self.caret_seen is not None:
                frame.caret, frame.caret_ms = self.caret_seen
            tall = union(boxes).h >= SCROLL_REGION * small.shape[0]
            if self.scroll_samples >= 2 or (self.scroll_samples and tall):
                frame.scroll_dy = round(self.scrolled / self.scale)
        else:
            frame.started = item.ms
        self.path = []
        self.pending = []
        self.scrolled, self.scroll_samples = 0, 0
        if not replace:
            self.release(len(self.kept))  # the frames before this one are settled (the first can no longer be replaced)
        job = self.pool.submit(_encode_png, item.bgr()) if self.pool is not None else None
        if replace:
            self.kept[0] = frame
            if job is not None:
                self.encodes[0] = job
        else:
            self.kept.append(frame)
            if job is not None:
                self.encodes.append(job)
            if frame.index > 0:
                self.release(len(self.kept))
        self.reference = small
        self.reference_blank = float(small.std()) < BLANK_STD
        self.pending_since = None
        self.candidate = None
        self.last_changes = None
        for rule in self.rules:
            rule.rebase()

    def changes(self, small: np.ndarray) -> list[Box]:
        """UI changes against the last kept frame: differences no rule explains."""
        assert self.reference is not None
        return [b for b in changed_boxes(self.reference, small) if not any(r.explains(b) for r in self.rules)]

    def sample(self, item: DecodedFrame) -> None:
        small = self.analysis_copy(item)
        if self.reference is None or self.previous is None:
            self.keep(item, small, [])
            self.previous = small
            return
        moved = changed_boxes(self.previous, small)
        if moved:
            self._follow_scroll(self.previous, small, union(moved))
        motion = moved
        for rule in self.rules:
            motion = rule.observe(motion)
        if any(rule.revised for rule in self.rules):
            self.last_changes = None  # a difference explained before may be a change now: judge again
        self.previous = small
        if motion:
            self.still_since = item.ms
        self._follow_pointer_and_caret(item.ms, moved)
        if self.reference_blank and len(self.kept) == 1 and float(small.std()) >= BLANK_STD:
            # The recorder's blank first frame: the first real screen takes its place.
            self.keep(item, small, [], replace=True)
            return
        if moved or self.last_changes is None:
            self.last_changes = self.changes(small)
        changes = self.last_changes  # nothing moved since the last sample: the same answer
        if changes and self.pending_since is None:
            self.pending_since = item.ms
        if self.pending_since is not None:
            here = self._pointer_at(item.ms)
            still = 0 if here is None or self.pointer is None or self.pointer.moved else item.ms - self.pointer_moved_at
            self.pending.append((item.ms, changes, here, still))
        if self.pending_since is None:
            return
        self.candidate = (item, small)
        if item.ms - self.still_since >= SETTLE_MS or item.ms - self.pending_since >= MAX_SETTLE_MS:
            if changes:
                self.keep(item, small, changes)
            else:
                self.pending_since = None  # it went back to how it was: nothing to capture
                self.pending = []
                self.candidate = None

    def _pointer_at(self, ms: int) -> PointerAt | None:
        """The pointer's hotspot now (the tip of an arrow: near the top left of its region), in video px."""
        if self.pointer is None or self.pointer.position is None:
            return None
        return self._hotspot(self.pointer.position, ms)

    def _hotspot(self, box: Box, ms: int, left: bool = False) -> PointerAt:
        x = min(self.width - 1, math.floor(box.x / self.scale) + 2)
        y = min(self.height - 1, math.floor(box.y / self.scale) + 2)
        return PointerAt(ms, x, y, left)

    def _onset(self, kept: Box, ms: int) -> tuple[int, PointerAt | None, int]:
        """When the kept change first showed, and the pointer then: the earliest sample from which on
        a change overlapping the kept one was there in every sample (a passing blip before it is not its start)."""
        onset = (ms, self._pointer_at(ms), 0)
        for sample_ms, boxes, here, still in reversed(self.pending):
            if not any(b.overlaps(kept) for b in boxes):
                break
            onset = (sample_ms, here, still)
        return onset

    def _follow_scroll(self, previous: np.ndarray, small: np.ndarray, moved: Box) -> None:
        """Scrolling shifts a tall part of the screen a little each sample: sum the shifts."""
        if moved.h >= SCROLL_REGION / 2 * small.shape[0]:
            shift = vertical_shift(previous, small, moved)
            if shift:
                self.scrolled += shift
                self.scroll_samples += 1

    def _follow_pointer_and_caret(self, ms: int, moved: list[Box]) -> None:
        if self.pointer is not None and self.pointer.moved:
            self.pointer_moved_at = ms
            if self.pointer.left_from is not None:
                self.path.append(self._hotspot(self.pointer.left_from, ms - 1, left=True))
            here = self._pointer_at(ms)
            if here is not None:
                self.path.append(here)
        if self.caret is not None:
            blinks = [b for b in moved if self.caret.explains(b)]
            if blinks:
                self.caret_seen = (_scale_box(blinks[-1], self.scale, self.width, self.height), ms)

    def finish(self) -> None:
        """At the end of the stream, a change that was still settling is captured as it stands."""
        if self.candidate is not None and len(self.kept) < self.limits.max_frames:
            item, small = self.candidate
            changes = self.changes(small)
            if changes:
                self.keep(item, small, changes)

    def release(self, upto: int) -> None:
        """Hand the kept frames before ``upto`` to ``on_frame``, each once its image is encoded.

        The callbacks run in the one encoding thread, in the order the frames were kept (a frame's
        callback runs before the next frame's image is encoded), so ``on_frame`` sees them in order
        while decoding goes on."""
        if self.on_frame is None or self.pool is None:
            return
        for frame, job in zip(self.kept[self.released:upto], self.encodes[self.released:upto]):
            job.add_done_callback(functools.partial(self._hand_over, frame))
        self.released = max(self.released, upto)

    def _hand_over(self, frame: KeyFrame, job: Future[bytes]) -> None:
        if job.exception() is None and self.on_frame is not None:
            frame.png = job.result()
            self.on_frame(frame)

    def close(self, encode: bool) -> None:
        if self.pool is None:
            return
        try:
            if encode:
                self.release(len(self.kept))
                for frame, job in zip(self.kept, self.encodes):
                    frame.png = job.result()
        finally:
            self.pool.shutdown(wait=True)


class _Analysis:
    """The samples, analysed on a thread of their own: while one is judged, the decoding loop goes on
    feeding the decoder's threads instead of leaving them idle (the GIL is released while FFmpeg,
    OpenCV and NumPy work). At most ``QUEUED_SAMPLES`` wait, so memory stays bounded."""

    def __init__(self, state: _Extractor, max_frames: int) -> None:
        self.state, self.max_frames = state, max_frames
        self.queue: queue.Queue[DecodedFrame | None] = queue.Queue(maxsize=QUEUED_SAMPLES)
        self.done = threading.Event()  # no more samples are wanted: the key-frame limit, or a failure
        self.full = False
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=contextvars.copy_context().run, args=(self._run,),
                                       name="key-frames", daemon=True)
        self.thread.start()

    def put(self, item: DecodedFrame) -> None:
        self.queue.put(item)

    def close(self, abandon: bool = False) -> None:
        """Wait until every sample is analysed (or, with ``abandon``, only for the one being analysed);
        raise what the analysis raised."""
        if not self.thread.is_alive():
            return
        if abandon:
            self.done.set()
        self.queue.put(None)
        self.thread.join()
        if self.error is not None and not abandon:
            raise self.error

    def _run(self) -> None:
        while (item := self.queue.get()) is not None:
            if self.done.is_set():
                continue  # drained: the decoding loop stops at its next sample
            try:
                self.state.sample(item)
            except BaseException as exc:  # noqa: BLE001 - raised again by ``close``, in the caller's thread
                self.error = exc
                self.done.set()
                continue
            if len(self.state.kept) >= self.max_frames:
                self.full = True
                self.done.set()


class Cancelled(RuntimeError):
    """The caller gave up (its deadline passed): decoding stopped."""


def extract(
    path: str | Path, limits: Limits = Limits(), encode_images: bool = True,
    cancelled: Callable[[], bool] | None = None, on_frame: Callable[[KeyFrame], None] | None = None,
    on_position: Callable[[int, int], None] | None = None,
) -> tuple[list[KeyFrame], VideoInfo, list[str]]:
    """Decode ``path`` and return its key frames, what the decoder saw, and warnings.

    ``cancelled`` is asked every second of video; when it says yes, decoding stops (``Cancelled``).
    ``on_position`` is told, every second of video, how far decoding is and how long the video is (ms).
    ``on_frame`` is handed each key frame, image included, as soon as it can no longer change (in
    order, from another thread, while decoding goes on): the next lanes need not wait for the end of
    the video. The first frame waits for the second, since a recorder's blank first frame is replaced;
    every call has returned when ``extract`` does.
    """
    info = probe(path, limits)
    # A stream with B-frames is sampled on a fixed grid (multiples of the interval): the decoder then
    # skips the frames no sample and no other frame needs. Others are sampled an interval after the last.
    on_grid = info.reorders
    state = _Extractor(limits, encode_images, on_frame=on_frame)
    analysis = _Analysis(state, limits.max_frames)
    warnings: list[str] = []
    interval = 1000.0 / SAMPLE_FPS
    next_sample = 0.0
    last_ms = 0
    read = 0
    ok = False
    try:
        for item in decode(path, limits, warnings, interval if on_grid else None):
            read = item.read
            if item.ms // 1000 != last_ms // 1000:
                if cancelled is not None and cancelled():
                    raise Cancelled("stopped: the request's deadline passed")
                if on_position is not None:
                    on_position(item.ms, info.duration_ms)
            last_ms = item.ms
            if item.ms + 1 < next_sample:
                continue
            next_sample = (math.floor((item.ms + 1) / interval) + 1) * interval if on_grid else item.ms + interval
            analysis.put(item)
            if analysis.done.is_set():
                break
        analysis.close()
        if analysis.full:
            warnings.append(f"stopped at the limit of {limits.max_frames} key frames")
        else:
            state.finish()
        if not state.kept:
            raise VideoError("no frame of the video could be decoded")
        short_of_count = info.frame_count and read < 0.9 * info.frame_count
        short_of_duration = info.duration_ms and last_ms < 0.9 * info.duration_ms - 1000
        if (short_of_count or short_of_duration) and not warnings:
            warnings.append(f"the video ends early: frames up to {last_ms / 1000:.1f} s of "
                            f"{info.duration_ms / 1000:.1f} s decoded; the rest is corrupt or missing")
        ok = True
    finally:
        analysis.close(abandon=not ok)
        state.close(encode=ok and encode_images)
    return state.kept, VideoInfo(state.width, state.height, info.duration_ms, last_ms, read), warnings
