#!/usr/bin/env python3
"""The vision step, side by side: Claude requests sequential vs batched, and OCR per 1080p frame.

Claude: 40 key frames (1920x1080, from a fixture recording) against a local fake Messages API
that answers each request after a fixed latency (--latency, default 2 s), through the real
anthropic SDK: one frame per request one at a time, against our batching (8 frames a request,
4 requests in flight). OCR: Tesseract on whole 1080p frames and on changed regions only.

    .venv/bin/python scripts/bench_vision.py [--latency 2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

import cv2  # noqa: E402

from conftest import RECORDINGS  # noqa: E402
from fake_anthropic import FakeAnthropic  # noqa: E402
from function import frames  # noqa: E402
from function.models import KeyFrame  # noqa: E402
from function.vision import ClaudeProvider, ClaudeSettings, LocalProvider, Vision, ocr  # noqa: E402


def forty_frames() -> list[KeyFrame]:
    out = []
    for item in frames.decode(RECORDINGS / "todomvc_hires_1920_h264.mp4"):
        if item.ms >= len(out) * 600 and len(out) < 40:
            png = cv2.imencode(".png", item.bgr())[1].tobytes()
            out.append(KeyFrame(len(out), item.ms, 0.1, None, 1920, 1080, png))
    return out


def claude_case(key_frames: list[KeyFrame], latency: float, batch: int, in_flight: int) -> dict:
    fake = FakeAnthropic(latency_s=latency)
    try:
        analyser = Vision(ClaudeProvider(ClaudeSettings("sk-bench", "claude-bench", fake.url, batch_size=batch,
                                                        max_in_flight=in_flight, max_retries=0)))
        started = time.perf_counter()
        result = analyser.analyze(key_frames)
        seconds = time.perf_counter() - started
        assert not result.warnings, result.warnings
        return {"requests": len(fake.requests), "seconds": round(seconds, 2),
                "largest request MB": round(max(sum(len(b["source"]["data"]) for b in r["messages"][0]["content"]
                                                    if b["type"] == "image") for r in fake.requests) / 1e6, 2)}
    finally:
        fake.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=2.0)
    args = parser.parse_args()
    key_frames = forty_frames()
    sequential = claude_case(key_frames, args.latency, batch=1, in_flight=1)
    batched = claude_case(key_frames, args.latency, batch=8, in_flight=4)
    print(f"Claude, {len(key_frames)} frames, {args.latency:.1f} s per request:")
    print(f"  sequential (1 frame/request, 1 in flight): {sequential}")
    print(f"  batched    (8 frames/request, 4 in flight): {batched}")
    print(f"  speed-up: {sequential['seconds'] / batched['seconds']:.1f}x, "
          f"requests {sequential['requests']} -> {batched['requests']}")

    images = [cv2.imdecode(__import__("numpy").frombuffer(f.png, "uint8"), cv2.IMREAD_GRAYSCALE)
              for f in key_frames[::8]]
    full = []
    for image in images:
        started = time.perf_counter()
        ocr.read_lines(image)
        full.append(time.perf_counter() - started)
    region = []
    for image in images:
        started = time.perf_counter()
        ocr.read_lines(image[300:400, 500:1400])
        region.append(time.perf_counter() - started)
    print(f"OCR, 1920x1080 frame, whole: median {statistics.median(full):.2f} s; "
          f"a 900x100 changed region: median {statistics.median(region):.2f} s ({len(images)} frames)")
    started = time.perf_counter()
    source = frames.extract(RECORDINGS / "todomvc_hires_1920_h264.mp4")[0]
    Vision(LocalProvider()).analyze(source)
    print(f"Local analyser on the 1080p fixture's {len(source)} key frames (2 workers): "
          f"{time.perf_counter() - started:.2f} s including extraction")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
