"""Video file → key frames: one frame per meaningful UI change, by SSIM differencing.

How a change is found, per sample (``SAMPLE_FPS`` a second, on a downscaled grayscale copy):

1. *Locate*: pixels that differ from the last kept frame by more than codec noise
   (``DIFF_LEVEL``) are grouped into regions.
2. *Judge*: each region is compared with SSIM against the same region of the last kept
   frame, as it is and slightly blurred; a region whose structure is unchanged in either
   (``REGION_SSIM``) is noise — a quality jump at a codec key frame, a colour drift, ringing.
3. *Explain away the pointer and the caret*: the mouse pointer is tracked from sample to
   sample (a pointer-sized region that moves on from where the pointer was); a change that
   lies on the pointer's trail is the pointer, not the UI. A thin, short region is a
   blinking caret. What remains is a UI change — however small, such as a delete button
   appearing on hover far from the pointer.
4. *Settle*: the change is captured once the screen has held still for ``SETTLE_MS`` (so
   the frame shows the finished state), or after ``MAX_SETTLE_MS`` if it never settles
   (typing, scrolling): a long burst gives one frame per ``MAX_SETTLE_MS``.

Decoding is PyAV (FFmpeg), read sequentially (browser-recorded webm cannot seek and has no
duration), each frame's time taken from its own timestamp. Analysis reads the luma plane in
place; only kept frames are converted to colour, and their PNGs are encoded off the decode loop.

Run alone: ``python -m function.frames VIDEO`` prints the kept frames as JSON.
"""

from __future__ import annotations

import json
import math
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import av
import cv2
import numpy as np

from .models import KeyFrame, Region, VideoInfo, to_json

# Thresholds. Each is a property of screens, pointers and codecs, not of one recording.
SAMPLE_FPS = 10.0  # a UI state lasts at least ~100 ms; 10 samples a second see every one
ANALYSIS_MAX_EDGE = 960  # px: frames are halved until their long edge fits (halving is cheap and exact)
DIFF_LEVEL = 20  # gray levels (of 255): below this a difference is codec noise or dithering
GROUP_PX = 4  # analysis px: differences this close belong to one region (the letters of a word)
REGION_SSIM = 0.92  # a region this similar in structure to the reference is noise, not a change
POINTER_BOX = (36, 44)  # screen px: a region that fits here may be the pointer (arrow, hand, I-beam)
CARET_MAX = (8, 72)  # screen px: a vertical line this thin (with codec blur) and short is a text caret
SPECK_PX = 4  # screen px: a difference this small in both directions is a codec speck
TRAIL_MARGIN = 6  # screen px around each tracked pointer position
POINTER_REACH = 400  # screen px the pointer can travel between two samples (4000 px/s)
SETTLE_MS = 300  # the screen must hold still this long before a change is captured
MAX_SETTLE_MS = 2500  # a change that never settles (typing, scrolling) is captured this often
BLANK_STD = 3.0  # gray-level spread below which a frame is blank (a recorder's black first frame)

_C1 = (0.01 * 255) ** 2
_C2 = (0.03 * 255) ** 2


class VideoError(ValueError):
    """The video cannot be decoded or breaks a configured limit."""


@dataclass(frozen=True)
class Limits:
    max_seconds: float = 15 * 60
    max_pixels: int = 3840 * 2160
    max_frames: int = 60


@dataclass(frozen=True)
class Box:
    """A region in analysis pixels."""

    x: int
    y: int
    w: int
    h: int

    def grown(self, by: int) -> "Box":
        return Box(self.x - by, self.y - by, self.w + 2 * by, self.h + 2 * by)

    def overlaps(self, other: "Box") -> bool:
        return (self.x < other.x + other.w and other.x < self.x + self.w
                and self.y < other.y + other.h and other.y < self.y + self.h)


def ssim_map(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-pixel SSIM of two grayscale images (Gaussian window σ=1.5, as Wang et al.)."""
    a = a.astype(np.float32)
    b = b.astype(np.float32)

    def blur(img: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(img, (11, 11), 1.5)

    mu_a, mu_b = blur(a), blur(b)
    mu_aa, mu_bb, mu_ab = mu_a * mu_a, mu_b * mu_b, mu_a * mu_b
    var_a = blur(a * a) - mu_aa
    var_b = blur(b * b) - mu_bb
    cov = blur(a * b) - mu_ab
    return ((2 * mu_ab + _C1) * (2 * cov + _C2)) / ((mu_aa + mu_bb + _C1) * (var_a + var_b + _C2))


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    return float(ssim_map(a, b).mean())


def changed_boxes(reference: np.ndarray, current: np.ndarray) -> list[Box]:
    """Regions where ``current`` differs from ``reference`` in structure, not just in noise."""
    diff = cv2.absdiff(reference, current)
    _, mask = cv2.threshold(diff, DIFF_LEVEL, 1, cv2.THRESH_BINARY)
    if cv2.countNonZero(mask) == 0:
        return []
    # A changed pixel with no changed neighbour is sensor or codec noise: a stroke, a line, a
    # glyph always changes pixels in touch with each other.
    neighbours = cv2.boxFilter(mask, -1, (3, 3), normalize=False)
    mask = cv2.bitwise_and(mask, (neighbours >= 2).view(np.uint8))
    if cv2.countNonZero(mask) == 0:
        return []
    # Group on a 1/GROUP_PX grid (a cell is on if any pixel in it changed): neighbouring cells
    # join into one region, and labelling the small grid is cheap.
    cells = cv2.dilate(mask, np.ones((GROUP_PX, GROUP_PX), np.uint8))[::GROUP_PX, ::GROUP_PX]
    count, _, stats, _ = cv2.connectedComponentsWithStats(np.ascontiguousarray(cells), connectivity=8)
    height, width = current.shape
    boxes = []
    for cx, cy, cw, ch, _ in stats[1:count]:
        x0, y0 = max(0, cx * GROUP_PX - GROUP_PX), max(0, cy * GROUP_PX - GROUP_PX)
        x1, y1 = min(width, (cx + cw) * GROUP_PX + GROUP_PX), min(height, (cy + ch) * GROUP_PX + GROUP_PX)
        bx, by, bw, bh = cv2.boundingRect(mask[y0:y1, x0:x1])  # the exact extent inside the cells
        if bw <= 2 and bh <= 2:
            continue  # a speck at any scale (see SPECK_PX): not worth judging
        box = Box(x0 + bx, y0 + by, bw, bh)
        # Judge the region with SSIM on a crop with room for the SSIM window.
        sx0, sy0 = max(0, box.x - 6), max(0, box.y - 6)
        sx1, sy1 = min(width, box.x + box.w + 6), min(height, box.y + box.h + 6)
        before, after = reference[sy0:sy1, sx0:sx1], current[sy0:sy1, sx0:sx1]
        # A structural change survives a slight blur; codec artefacts (blocks, ringing, the
        # quality pulse after a key frame at low bitrates) are fine detail and do not.
        if ssim(before, after) < REGION_SSIM and ssim(cv2.GaussianBlur(before, (5, 5), 1.2),
                                                      cv2.GaussianBlur(after, (5, 5), 1.2)) < REGION_SSIM:
            boxes.append(box)
    return boxes


@dataclass
class _Classifier:
    """Sizes in analysis pixels for the thresholds given in screen pixels."""

    scale: float

    def native(self, box: Box) -> tuple[float, float]:
        return box.w / self.scale, box.h / self.scale

    def pointer_sized(self, box: Box, factor: float = 1.0) -> bool:
        w, h = self.native(box)
        return w <= POINTER_BOX[0] * factor and h <= POINTER_BOX[1] * factor

    def caret(self, box: Box) -> bool:
        """A blinking caret (a tall thin line), or a speck too small to be any UI element."""
        w, h = self.native(box)
        line = w <= CARET_MAX[0] and 3 * w <= h <= CARET_MAX[1]
        return line or (w <= SPECK_PX and h <= SPECK_PX)

    def distance(self, a: Box, b: Box) -> float:
        """Screen px between the centres of two regions."""
        dx = (a.x + a.w / 2) - (b.x + b.w / 2)
        dy = (a.y + a.h / 2) - (b.y + b.h / 2)
        return math.hypot(dx, dy) / self.scale


@dataclass
class _PointerTracker:
    """Where the mouse pointer has been since the last kept frame.

    A moving pointer leaves two pointer-sized differences between consecutive samples:
    where it was (a place already known as the pointer's, or where a small thing moved
    in the previous sample) and where it is now (the nearest new small region). A small
    region appearing away from the pointer is a UI change, such as a delete button shown
    on hover at the far end of a row.
    """

    classify: _Classifier
    trail: list[Box] = field(default_factory=list)  # pointer positions since the last kept frame
    last: list[Box] = field(default_factory=list)  # the pointer's regions in the latest sample that moved
    moving: list[Box] = field(default_factory=list)  # small regions that moved in the previous sample

    def _margin(self) -> int:
        return max(1, round(TRAIL_MARGIN * self.classify.scale))

    def update(self, motion: list[Box]) -> list[Box]:
        """Feed one sample's motion regions; return those that are neither pointer nor caret."""
        margin = self._margin()
        # A slow move merges the old and new positions into one region up to twice the pointer's size.
        small = [b for b in motion if self.classify.pointer_sized(b, 2.0) and not self.classify.caret(b)]
        # The pointer is one object: it departs from (at most) one place. Look where it was last
        # seen first, then anywhere on its trail, then where a small thing moved a sample ago.
        departures: list[Box] = []
        for known in (self.last, self.trail, self.moving):
            grown = [k.grown(margin) for k in known]
            departures = [b for b in small if any(b.overlaps(k) for k in grown)]
            if departures:
                break
        self.moving = small
        if len(departures) > 2:  # many small changes at once (a re-render, a codec key frame)
            anchor = self.last[-1] if self.last else departures[0]
            departures = sorted(departures, key=lambda b: self.classify.distance(b, anchor))[:2]
        arrivals = [b for b in small if b not in departures and self.classify.pointer_sized(b)]
        pointer = list(departures)
        # One pointer-sized departure means the pointer went somewhere new: the nearest small
        # arrival. Two departures, or one merged region, already hold both ends of the move.
        if arrivals and len(departures) == 1 and self.classify.pointer_sized(departures[0]):
            nearest = min(arrivals, key=lambda b: self.classify.distance(b, departures[0]))
            if self.classify.distance(nearest, departures[0]) <= POINTER_REACH:
                pointer.append(nearest)
        elif len(motion) == 2 == len(arrivals) and self.classify.distance(*arrivals) <= POINTER_REACH:
            pointer = arrivals  # nothing else moved: a lone pair is the pointer, found (again)
        if pointer:
            self.trail.extend(pointer)
            self.last = pointer
        return [b for b in motion if b not in pointer and not self.classify.caret(b)]

    def explains(self, box: Box) -> bool:
        """Is this difference against the kept frame only the pointer's (or a caret's)?"""
        if self.classify.caret(box):
            return True
        if not self.classify.pointer_sized(box, 2.0):
            return False  # bigger than the pointer, even one that moved a little: the UI changed
        margin = self._margin()
        return any(box.overlaps(t.grown(margin)) for t in self.trail + self.last)

    def rebase(self) -> None:
        """A frame was kept: the trail restarts at the pointer's current place."""
        self.trail = list(self.last)


def _scale_box(box: Box, scale: float, width: int, height: int) -> Region:
    x = max(0, math.floor(box.x / scale))
    y = max(0, math.floor(box.y / scale))
    return Region(x, y, min(width - x, math.ceil(box.w / scale)), min(height - y, math.ceil(box.h / scale)))


def _union(boxes: list[Box]) -> Box:
    x0 = min(b.x for b in boxes)
    y0 = min(b.y for b in boxes)
    x1 = max(b.x + b.w for b in boxes)
    y1 = max(b.y + b.h for b in boxes)
    return Box(x0, y0, x1 - x0, y1 - y0)


# Screen content: the "up" filter and run-length matching compress it as well as the default
# adaptive filters (often better) at a third of the time.
_PNG_PARAMS = [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_UP,
               cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE]


def _encode_png(image: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", image, _PNG_PARAMS)
    if not ok:
        raise VideoError("could not encode a frame image")
    return buf.tobytes()


# --------------------------------------------------------------------------- decoding

_LUMA_FIRST = {"yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p", "nv12", "nv21", "gray",
               "yuv410p", "yuv411p", "yuv440p"}


def _rotate(image: np.ndarray, rotation: int) -> np.ndarray:
    """Apply the stream's display rotation (degrees counter-clockwise), as a player would."""
    turns = (round(rotation / 90) % 4) if rotation else 0
    return np.ascontiguousarray(np.rot90(image, turns)) if turns else image


@dataclass
class DecodedFrame:
    """One decoded frame: its time and the way to its pixels."""

    ms: int
    frame: Any  # av.VideoFrame; converted to colour only if it is kept

    def gray(self) -> np.ndarray:
        """The luma plane, read in place where the pixel format has one (no colour conversion)."""
        frame = self.frame
        if frame.format.name in _LUMA_FIRST:
            plane = frame.planes[0]
            luma = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)[:, : plane.width]
        else:
            luma = frame.to_ndarray(format="gray")
        return _rotate(luma, frame.rotation)

    def bgr(self) -> np.ndarray:
        return _rotate(self.frame.to_ndarray(format="bgr24"), self.frame.rotation)


@dataclass
class Probe:
    width: int
    height: int
    duration_ms: int  # 0 when the container does not say (browser-recorded webm)
    frame_count: int  # 0 when unknown


def _open(path: str | Path, limits: Limits) -> tuple[Any, Any, Probe]:
    """Open the container and check the configured limits before any frame is decoded."""
    try:
        container = av.open(str(path), metadata_errors="ignore")
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise VideoError(f"the video could not be opened ({type(exc).__name__})") from None
    try:
        if not container.streams.video:
            raise VideoError("the file holds no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"  # frame and slice threads, as ffmpeg itself decodes
        width, height = stream.codec_context.width, stream.codec_context.height
        if width * height > limits.max_pixels:
            raise VideoError(f"the video is {width}x{height}, above the limit of {limits.max_pixels} pixels")
        duration_ms = 0
        if stream.duration and stream.time_base:
            duration_ms = int(stream.duration * stream.time_base * 1000)
        elif container.duration:
            duration_ms = int(container.duration / 1000)
        if duration_ms > limits.max_seconds * 1000:
            raise VideoError(f"the video lasts {duration_ms / 1000:.0f} s, "
                             f"above the limit of {limits.max_seconds:.0f} s")
        return container, stream, Probe(width, height, duration_ms, int(stream.frames or 0))
    except BaseException:
        container.close()
        raise


def probe(path: str | Path, limits: Limits = Limits()) -> Probe:
    """What the container says, after the limit checks; nothing is decoded."""
    container, _, info = _open(path, limits)
    container.close()
    return info


def decode(path: str | Path, limits: Limits = Limits(), warnings: list[str] | None = None) -> Iterator[DecodedFrame]:
    """Every frame in order, with its time from the stream; stops cleanly at a corrupt tail."""
    container, stream, _ = _open(path, limits)
    warnings = [] if warnings is None else warnings
    start = stream.start_time or 0
    fallback_ms = 1000.0 / float(stream.average_rate or 30)
    last_ms = -1
    count = 0
    try:
        for frame in container.decode(stream):
            if frame.pts is not None and stream.time_base:
                ms = int(round(float((frame.pts - start) * stream.time_base) * 1000))
            else:
                ms = int(last_ms + fallback_ms)
            ms = max(ms, last_ms + 1 if count else 0)
            if ms > limits.max_seconds * 1000:
                raise VideoError(f"the video lasts more than the limit of {limits.max_seconds:.0f} s")
            last_ms = ms
            count += 1
            yield DecodedFrame(ms, frame)
    except av.FFmpegError as exc:
        if count == 0:
            raise VideoError(f"no frame of the video could be decoded ({type(exc).__name__})") from None
        warnings.append(f"the video is corrupt after {last_ms / 1000:.1f} s ({type(exc).__name__}); "
                        "the frames before it were used")
    finally:
        container.close()


# --------------------------------------------------------------------------- extraction


class _Extractor:
    """The state of one pass over a video."""

    def __init__(self, limits: Limits, encode_images: bool) -> None:
        self.limits = limits
        self.kept: list[KeyFrame] = []
        self.encodes: list[Future[bytes]] = []
        self.pool = ThreadPoolExecutor(max_workers=1) if encode_images else None
        self.width = self.height = 0
        self.scale = 1.0
        self.tracker: _PointerTracker | None = None
        self.reference: np.ndarray | None = None  # analysis copy of the last kept frame
        self.reference_blank = False
        self.previous: np.ndarray | None = None
        self.pending_since: int | None = None  # when an uncaptured UI change was first seen
        self.still_since = 0  # when the screen last moved (pointer and caret aside)
        self.candidate: tuple[DecodedFrame, np.ndarray] | None = None
        self.last_changes: list[Box] | None = None  # changes against the reference at the last sample

    def analysis_copy(self, item: DecodedFrame) -> np.ndarray:
        """Grayscale, halved (pixel-area averaging) until the long edge is at most ANALYSIS_MAX_EDGE."""
        gray = item.gray()
        if not self.width:
            self.height, self.width = gray.shape[:2]
            halvings = 0
            while max(self.width, self.height) / 2**halvings > ANALYSIS_MAX_EDGE:
                halvings += 1
            self.scale = 1 / 2**halvings
            self.tracker = _PointerTracker(_Classifier(self.scale))
        while gray.shape[1] > self.width * self.scale + 1:
            height, width = gray.shape[:2]
            even = gray[: height - height % 2, : width - width % 2]
            gray = cv2.resize(even, (width // 2, height // 2), interpolation=cv2.INTER_AREA)
        return np.ascontiguousarray(gray)

    def keep(self, item: DecodedFrame, small: np.ndarray, boxes: list[Box], replace: bool = False) -> None:
        first = self.reference is None or replace
        score = 1.0 if first else min(1.0, max(0.0, 1.0 - ssim(self.reference, small)))
        region = _scale_box(_union(boxes), self.scale, self.width, self.height) if boxes else None
        frame = KeyFrame(0 if replace else len(self.kept), item.ms, round(score, 4), region, self.width, self.height)
        job = self.pool.submit(_encode_png, item.bgr()) if self.pool is not None else None
        if replace:
            self.kept[0] = frame
            if job is not None:
                self.encodes[0] = job
        else:
            self.kept.append(frame)
            if job is not None:
                self.encodes.append(job)
        self.reference = small
        self.reference_blank = float(small.std()) < BLANK_STD
        self.pending_since = None
        self.candidate = None
        self.last_changes = None
        assert self.tracker is not None
        self.tracker.rebase()

    def changes(self, small: np.ndarray) -> list[Box]:
        """UI changes against the last kept frame: differences the pointer and caret do not explain."""
        assert self.tracker is not None and self.reference is not None
        return [b for b in changed_boxes(self.reference, small) if not self.tracker.explains(b)]

    def sample(self, item: DecodedFrame) -> None:
        small = self.analysis_copy(item)
        if self.reference is None or self.previous is None:
            self.keep(item, small, [])
            self.previous = small
            return
        assert self.tracker is not None
        moved = changed_boxes(self.previous, small)
        motion = self.tracker.update(moved)
        self.previous = small
        if motion:
            self.still_since = item.ms
        if self.reference_blank and len(self.kept) == 1 and float(small.std()) >= BLANK_STD:
            # The recorder's blank first frame: the first real screen takes its place.
            self.keep(item, small, [], replace=True)
            return
        if moved or self.last_changes is None:
            self.last_changes = self.changes(small)
        changes = self.last_changes  # nothing moved since the last sample: the same answer
        if changes and self.pending_since is None:
            self.pending_since = item.ms
        if self.pending_since is None:
            return
        self.candidate = (item, small)
        if item.ms - self.still_since >= SETTLE_MS or item.ms - self.pending_since >= MAX_SETTLE_MS:
            if changes:
                self.keep(item, small, changes)
            else:
                self.pending_since = None  # it went back to how it was: nothing to capture
                self.candidate = None

    def finish(self) -> None:
        """At the end of the stream, a change that was still settling is captured as it stands."""
        if self.candidate is not None and len(self.kept) < self.limits.max_frames:
            item, small = self.candidate
            changes = self.changes(small)
            if changes:
                self.keep(item, small, changes)

    def close(self, encode: bool) -> None:
        if self.pool is None:
            return
        try:
            if encode:
                for frame, job in zip(self.kept, self.encodes):
                    frame.png = job.result()
        finally:
            self.pool.shutdown(wait=True)


class Cancelled(RuntimeError):
    """The caller gave up (its deadline passed): decoding stopped."""


def extract(
    path: str | Path, limits: Limits = Limits(), encode_images: bool = True,
    cancelled: Callable[[], bool] | None = None,
) -> tuple[list[KeyFrame], VideoInfo, list[str]]:
    """Decode ``path`` and return its key frames, what the decoder saw, and warnings.

    ``cancelled`` is asked every second of video; when it says yes, decoding stops (``Cancelled``).
    """
    info = probe(path, limits)
    state = _Extractor(limits, encode_images)
    warnings: list[str] = []
    interval = 1000.0 / SAMPLE_FPS
    next_sample = 0.0
    last_ms = 0
    decoded = 0
    ok = False
    try:
        for item in decode(path, limits, warnings):
            decoded += 1
            if cancelled is not None and item.ms // 1000 != last_ms // 1000 and cancelled():
                raise Cancelled("stopped: the request's deadline passed")
            last_ms = item.ms
            if item.ms + 1 < next_sample:
                continue
            next_sample = item.ms + interval
            state.sample(item)
            if len(state.kept) >= limits.max_frames:
                warnings.append(f"stopped at the limit of {limits.max_frames} key frames")
                break
        else:
            state.finish()
        if not state.kept:
            raise VideoError("no frame of the video could be decoded")
        short_of_count = info.frame_count and decoded < 0.9 * info.frame_count
        short_of_duration = info.duration_ms and last_ms < 0.9 * info.duration_ms - 1000
        if (short_of_count or short_of_duration) and not warnings:
            warnings.append(f"the video ends early: frames up to {last_ms / 1000:.1f} s of "
                            f"{info.duration_ms / 1000:.1f} s decoded; the rest is corrupt or missing")
        ok = True
    finally:
        state.close(encode=ok and encode_images)
    return state.kept, VideoInfo(state.width, state.height, info.duration_ms, last_ms, decoded), warnings


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m function.frames VIDEO", file=sys.stderr)
        return 2
    try:
        frames, info, warnings = extract(args[0], encode_images=False)
    except VideoError as exc:
        print(json.dumps({"error": str(exc)}), file=sys.stderr)
        return 1
    print(json.dumps({"video": to_json(info), "warnings": warnings, "frames": [to_json(f) for f in frames]}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
