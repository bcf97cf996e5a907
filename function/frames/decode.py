"""Video file → decoded frames, each with its time: PyAV (FFmpeg), read sequentially.

Browser-recorded webm cannot seek and has no duration, so frames are read in order
and each one's time is taken from its own timestamp. The configured limits are
checked before the first frame is decoded and while decoding.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import av
import numpy as np


class VideoError(ValueError):
    """The video cannot be decoded or breaks a configured limit."""


@dataclass(frozen=True)
class Limits:
    max_seconds: float = 15 * 60
    max_pixels: int = 3840 * 2160
    max_frames: int = 60


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
