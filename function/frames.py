"""Video file → key frames: one frame per meaningful UI change, by SSIM differencing.

The decoder runs sequentially (browser-recorded webm cannot seek and has no
duration) and samples the stream at ``SAMPLE_FPS``. Each sample is compared on
a downscaled grayscale copy with the last *kept* frame; changes smaller than
a mouse pointer are ignored, and a change is captured only once the screen has
settled, so the kept frame shows the finished state.

Run alone: ``python -m function.frames VIDEO`` prints the kept frames as JSON.
"""

from __future__ import annotations

import json
import math
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .models import KeyFrame, Region, VideoInfo, to_json

# Thresholds. Each is a property of screens and people, not of one file.
SAMPLE_FPS = 10.0  # UI changes last ≥ 100 ms; 10 samples/s catch them all
ANALYSIS_LONG_EDGE = 640  # px of the grayscale copy SSIM runs on
LOCAL_SSIM_CHANGED = 0.80  # an SSIM-map pixel below this counts as changed
POINTER_BOX = (32, 40)  # screen px: a change that fits in this box is a pointer or a caret, not UI
SSIM_SPREAD = 8  # analysis px the 11-px SSIM window adds around a change
SETTLE_MS = 300  # the screen must hold still this long before a change is captured
MAX_SETTLE_MS = 2500  # a change that never settles (typing, animation) is captured anyway

_C1 = (0.01 * 255) ** 2
_C2 = (0.03 * 255) ** 2


class VideoError(ValueError):
    """The video cannot be decoded or breaks a configured limit."""


@dataclass(frozen=True)
class Limits:
    max_seconds: float = 15 * 60
    max_pixels: int = 3840 * 2160
    max_frames: int = 60


def ssim_map(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-pixel SSIM of two grayscale images (Gaussian window σ=1.5, as Wang et al.)."""
    a = a.astype(np.float32)
    b = b.astype(np.float32)
    blur = lambda img: cv2.GaussianBlur(img, (11, 11), 1.5)  # noqa: E731
    mu_a, mu_b = blur(a), blur(b)
    mu_aa, mu_bb, mu_ab = mu_a * mu_a, mu_b * mu_b, mu_a * mu_b
    var_a = blur(a * a) - mu_aa
    var_b = blur(b * b) - mu_bb
    cov = blur(a * b) - mu_ab
    return ((2 * mu_ab + _C1) * (2 * cov + _C2)) / ((mu_aa + mu_bb + _C1) * (var_a + var_b + _C2))


def changed_region(smap: np.ndarray, scale: float = 1.0) -> tuple[Region | None, float]:
    """Bounding box (analysis pixels) of the changes bigger than a pointer, and their area fraction.

    ``scale`` is analysis px per screen px: the pointer keeps its size in screen pixels
    whatever the video's resolution, so the noise box is converted with it.
    """
    mask = (smap < LOCAL_SSIM_CHANGED).astype(np.uint8)
    if not mask.any():
        return None, 0.0
    count, _, stats, _ = cv2.connectedComponentsWithStats(
        cv2.dilate(mask, np.ones((5, 5), np.uint8)), connectivity=8
    )
    total = mask.size

    def bigger_than_pointer(stat: np.ndarray) -> bool:
        width = (stat[cv2.CC_STAT_WIDTH] - SSIM_SPREAD) / scale
        height = (stat[cv2.CC_STAT_HEIGHT] - SSIM_SPREAD) / scale
        return width > POINTER_BOX[0] or height > POINTER_BOX[1]

    boxes = [s for s in stats[1:count] if bigger_than_pointer(s)]
    if not boxes:
        return None, 0.0
    x0 = min(s[0] for s in boxes)
    y0 = min(s[1] for s in boxes)
    x1 = max(s[0] + s[2] for s in boxes)
    y1 = max(s[1] + s[3] for s in boxes)
    area = sum(int(s[cv2.CC_STAT_AREA]) for s in boxes) / total
    return Region(int(x0), int(y0), int(x1 - x0), int(y1 - y0)), area


def _scale_region(region: Region, factor: float, width: int, height: int) -> Region:
    x = max(0, math.floor(region.x * factor))
    y = max(0, math.floor(region.y * factor))
    return Region(
        x, y, min(width - x, math.ceil(region.width * factor)), min(height - y, math.ceil(region.height * factor))
    )


def _encode_png(image: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, 3])
    if not ok:
        raise VideoError("could not encode a frame image")
    return buf.tobytes()


def probe(path: str | Path, limits: Limits = Limits()) -> tuple[cv2.VideoCapture, int]:
    """Open the video and check the configured limits before any heavy decoding.

    Returns the capture and the container's duration in ms (0 when it does not say).
    """
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise VideoError("the video could not be opened")
    width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
    height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
    if width * height > limits.max_pixels:
        capture.release()
        raise VideoError(f"the video is {width}x{height}, above the limit of {limits.max_pixels} pixels")
    fps = capture.get(cv2.CAP_PROP_FPS)
    count = capture.get(cv2.CAP_PROP_FRAME_COUNT)
    duration_ms = int(count / fps * 1000) if 0 < fps <= 240 and 0 < count < 1e9 else 0
    if duration_ms > limits.max_seconds * 1000:
        capture.release()
        raise VideoError(f"the video lasts {duration_ms / 1000:.0f} s, above the limit of {limits.max_seconds:.0f} s")
    return capture, duration_ms


def extract(
    path: str | Path, limits: Limits = Limits(), encode_images: bool = True
) -> tuple[list[KeyFrame], VideoInfo, list[str]]:
    """Decode ``path`` and return its key frames, what the decoder saw, and warnings."""
    capture, container_ms = probe(path, limits)
    warnings: list[str] = []
    kept: list[KeyFrame] = []
    encodes: list[Future[bytes]] = []
    pool = ThreadPoolExecutor(max_workers=2) if encode_images else None
    width = height = 0
    scale = 1.0
    last_kept: np.ndarray | None = None
    previous: np.ndarray | None = None
    pending_since: int | None = None  # ms at which an uncaptured change was first seen
    stable_since = 0
    last_sample_ms = -1e9
    last_ms = 0
    decoded = 0
    candidate: tuple[int, np.ndarray, np.ndarray] | None = None  # (ms, full image, small gray)

    def keep(ms: int, image: np.ndarray, small: np.ndarray) -> None:
        nonlocal last_kept
        if last_kept is None:
            score, region = 1.0, None
        else:
            smap = ssim_map(last_kept, small)
            score = float(min(1.0, max(0.0, 1.0 - smap.mean())))
            box, _ = changed_region(smap, scale)
            region = _scale_region(box, 1 / scale, width, height) if box else None
        kept.append(KeyFrame(len(kept), ms, round(score, 4), region, width, height))
        if pool is not None:
            encodes.append(pool.submit(_encode_png, image))
        last_kept = small

    try:
        while True:
            if not capture.grab():
                break
            decoded += 1
            ms = int(round(capture.get(cv2.CAP_PROP_POS_MSEC)))
            last_ms = max(last_ms, ms)
            if ms - last_sample_ms < 1000.0 / SAMPLE_FPS - 1 and last_kept is not None:
                continue
            ok, image = capture.retrieve()
            if not ok or image is None:
                continue
            last_sample_ms = ms
            if not width:
                height, width = image.shape[:2]
                scale = min(1.0, ANALYSIS_LONG_EDGE / max(width, height))
            gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
            small = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else gray
            if last_kept is None:
                keep(ms, image, small)
                previous = small
                continue
            moving = previous is not None and changed_region(ssim_map(previous, small), scale)[0] is not None
            previous = small
            if moving:
                stable_since = ms
            if pending_since is None:
                if changed_region(ssim_map(last_kept, small), scale)[0] is not None:
                    pending_since = ms
                    stable_since = ms
            if pending_since is not None:
                candidate = (ms, image, small)
                settled = ms - stable_since >= SETTLE_MS
                if settled or ms - pending_since >= MAX_SETTLE_MS:
                    if changed_region(ssim_map(last_kept, small), scale)[0] is not None:
                        keep(ms, image, small)
                    pending_since = None
                    candidate = None
            if len(kept) >= limits.max_frames:
                warnings.append(f"stopped at the limit of {limits.max_frames} key frames")
                break
        if candidate is not None and len(kept) < limits.max_frames:
            keep(*candidate)
        if decoded == 0:
            raise VideoError("no frame of the video could be decoded")
        if last_ms > limits.max_seconds * 1000:
            raise VideoError(f"the video lasts more than the limit of {limits.max_seconds:.0f} s")
        if encode_images:
            for frame, job in zip(kept, encodes):
                frame.png = job.result()
    finally:
        capture.release()
        if pool is not None:
            pool.shutdown(wait=True)
    return kept, VideoInfo(width, height, container_ms, last_ms, decoded), warnings


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
