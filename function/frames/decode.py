"""Video file → decoded frames, each with its time: PyAV (FFmpeg), read sequentially.

Browser-recorded webm cannot seek and has no duration, so frames are read in order
and each one's time is taken from its own timestamp. The configured limits are
checked before the first frame is decoded and on every decoded frame: the header's
size is only a claim, so the decoder itself is told the pixel limit (FFmpeg's
``max_pixels``: a larger frame is never allocated). A recording whose frames change
size (a resized window, a tab capture) is read at its first size.

Frames are read in order, but not all are decoded: in a stream with B-frames, a frame no other
frame refers to is skipped unless the sampler will take it (``grid_ms``), as FFmpeg's
``skip_frame`` allows; the frames that are decoded are bit for bit the same.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import av
import cv2
import numpy as np


# Pixels the decoder may hold in the frames it works on at once (one frame per thread): eight 1080p
# frames. The analysis beside the decoder takes the GIL and a core in bursts, and the decoder goes on
# only while frames are asked for: eight in flight keep both cores of a small instance busy through
# those bursts, where FFmpeg's own count (one more than the cores) lets them idle — 3-4 % less time
# on 1080p (docs/BENCHMARKS.md). Each thread holds frames of its own, so larger frames get fewer:
# 4K keeps FFmpeg's count (eight 4K frames in flight cost two pipelines 0.33 GiB more).
PIXELS_IN_FLIGHT = 8 * 1920 * 1080
MAX_DECODER_THREADS = 8


def decoder_threads(width: int, height: int) -> int:
    """Frame threads for a video of this size: FFmpeg's own count, or more while they fit PIXELS_IN_FLIGHT."""
    cores = os.cpu_count() or 1
    ffmpeg_own = min(16, cores + 1) if cores > 1 else 1
    if width * height <= 0:
        return ffmpeg_own  # the header does not say: no more frames than FFmpeg would hold
    return max(ffmpeg_own, min(MAX_DECODER_THREADS, PIXELS_IN_FLIGHT // (width * height)))


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
    size: tuple[int, int] | None = None  # (width, height) to scale to: the video's first size, when this differs
    read: int = 0  # frames of the stream read so far, decoded or skipped (the decoder runs a few ahead)

    def gray(self) -> np.ndarray:
        """The luma plane, read in place where the pixel format has one (no colour conversion)."""
        frame = self.frame
        if frame.format.name in _LUMA_FIRST:
            plane = frame.planes[0]
            luma = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)[:, : plane.width]
        else:
            luma = frame.to_ndarray(format="gray")
        return self._sized(_rotate(luma, frame.rotation))

    def bgr(self) -> np.ndarray:
        return self._sized(_rotate(self.frame.to_ndarray(format="bgr24"), self.frame.rotation))

    def _sized(self, image: np.ndarray) -> np.ndarray:
        if self.size is None:
            return image
        width, height = self.size
        if self.frame.rotation and round(self.frame.rotation / 90) % 2:
            width, height = height, width
        return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)


@dataclass
class Probe:
    width: int
    height: int
    duration_ms: int  # 0 when the container does not say (browser-recorded webm)
    frame_count: int  # 0 when unknown
    reorders: bool = False  # frames are stored out of display order (B-frames): some are referred to by none


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
        stream.codec_context.options = {"max_pixels": str(limits.max_pixels)}  # whatever the header says
        width, height = stream.codec_context.width, stream.codec_context.height
        _check_size(width, height, limits)
        stream.codec_context.thread_count = decoder_threads(width, height)
        duration_ms = 0
        if stream.duration and stream.time_base:
            duration_ms = int(stream.duration * stream.time_base * 1000)
        elif container.duration:
            duration_ms = int(container.duration / 1000)
        if duration_ms > limits.max_seconds * 1000:
            raise VideoError(f"the video lasts {duration_ms / 1000:.0f} s, "
                             f"above the limit of {limits.max_seconds:.0f} s")
        reorders = bool(stream.codec_context.has_b_frames)
        return container, stream, Probe(width, height, duration_ms, int(stream.frames or 0), reorders)
    except BaseException:
        container.close()
        raise


def _check_size(width: int, height: int, limits: Limits) -> None:
    if width * height > limits.max_pixels:
        raise VideoError(f"the video is {width}x{height}, above the limit of {limits.max_pixels} pixels")


def probe(path: str | Path, limits: Limits = Limits()) -> Probe:
    """What the container says, after the limit checks; nothing is decoded."""
    container, _, info = _open(path, limits)
    container.close()
    return info


def decode(path: str | Path, limits: Limits = Limits(), warnings: list[str] | None = None,
           grid_ms: float | None = None) -> Iterator[DecodedFrame]:
    """Every frame in order, with its time from the stream; stops cleanly at a corrupt tail.

    With ``grid_ms``, in a stream with B-frames, a frame no other frame refers to is decoded only
    when it may be the first at or after a multiple of ``grid_ms`` (the one a sampler on that grid
    takes): the others are never needed, and skipping them saves a third or more of the decoding.
    """
    container, stream, info = _open(path, limits)
    warnings = [] if warnings is None else warnings
    start = stream.start_time or 0
    time_base = float(stream.time_base) if stream.time_base else 0.0
    fallback_ms = 1000.0 / float(stream.average_rate or 30)
    grid = grid_ms if info.reorders and time_base > 0 else None  # skipping works only where frames have times
    codec = stream.codec_context
    last_ms = -1
    count = read = 0
    first_size: tuple[int, int] | None = None
    try:
        for packet in container.demux(stream):
            if packet.size:
                read += 1
                if grid is not None:
                    codec.skip_frame = "DEFAULT" if _on_grid(packet, start, time_base, grid) else "NONREF"
            for frame in packet.decode():
                _check_size(frame.width, frame.height, limits)
                first_size = first_size or (frame.width, frame.height)
                resized = (frame.width, frame.height) != first_size
                if resized and not any(w.startswith("the frames change size") for w in warnings):
                    warnings.append(f"the frames change size at {max(last_ms, 0) / 1000:.1f} s ({first_size[0]}x"
                                    f"{first_size[1]} to {frame.width}x{frame.height}); they were scaled to the first")
                if frame.pts is not None and time_base:
                    ms = int(round((frame.pts - start) * time_base * 1000))
                else:
                    ms = int(last_ms + fallback_ms)
                ms = max(ms, last_ms + 1 if count else 0)
                if ms > limits.max_seconds * 1000:
                    raise VideoError(f"the video lasts more than the limit of {limits.max_seconds:.0f} s")
                last_ms = ms
                count += 1
                yield DecodedFrame(ms, frame, first_size if resized else None, read)
    except av.FFmpegError as exc:
        _check_size(stream.codec_context.width, stream.codec_context.height, limits)  # refused as too large
        if count == 0:
            raise VideoError(f"no frame of the video could be decoded ({type(exc).__name__})") from None
        warnings.append(f"the video is corrupt after {last_ms / 1000:.1f} s ({type(exc).__name__}); "
                        "the frames before it were used")
    finally:
        container.close()


def _on_grid(packet: Any, start: int, time_base: float, grid_ms: float) -> bool:
    """Is this packet's frame the first at or after a multiple of ``grid_ms`` (to the millisecond, as the
    sampler takes it)? That is, does a multiple fall within one frame's duration before it (its own: the
    frame before is as long at a constant rate)? A frame without a time or duration is decoded."""
    if packet.pts is None or not packet.duration:
        return True
    ms = (packet.pts - start) * time_base * 1000
    duration_ms = packet.duration * time_base * 1000
    return (ms + 1) % grid_ms < duration_ms + 0.5
