#!/usr/bin/env python3
"""Key-frame extraction, side by side: quality on the fixture recordings, speed on a large one.

For every fixture recording it runs, on the same file:
  ours        function.frames.extract (frame images encoded, as the service does)
  uniform-1fps one frame a second (PyAV decode of every frame, every 1000 ms kept)
  scenedetect PySceneDetect ContentDetector with its defaults (pip: scenedetect-headless)
  ffmpeg      `ffmpeg -i FILE -f null -`, decode only (the floor)
and scores each frame list with the fixtures' score.py (F1, recall, false positives, FPs inside
no-change stretches). Then the speed case: a ~93 MB, 62 s, 1920x1080 30 fps H.264 recording
(generated from a fixture with ffmpeg unless --big is given), ffmpeg decode-only and our extractor
alternately --repeat times in fresh processes; it prints the medians, the ratio and peak RSS, and
the CPU seconds of each (all threads; a shared machine's load moves wall time far more than CPU).

    .venv/bin/python scripts/bench_frames.py [--fixtures DIR] [--big FILE] [--repeat 3]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from function import frames  # noqa: E402

DEFAULT_FIXTURES = REPO / "tests" / "fixtures" / "recordings"


def load_scorer(fixtures: Path):
    spec = importlib.util.spec_from_file_location("score", fixtures / "score.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.score


def timed(fn):
    started = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - started


def ours(path: Path) -> list[float]:
    key_frames, _, _ = frames.extract(path, encode_images=True)
    return [f.timestamp for f in key_frames]


def uniform(path: Path) -> list[float]:
    out, next_ms = [], 0
    for item in frames.decode(path):
        if item.ms >= next_ms:
            out.append(item.ms)
            next_ms += 1000
    return out


def scenedetect(path: Path) -> list[float]:
    from scenedetect import ContentDetector, detect

    scenes = detect(str(path), ContentDetector())
    return [0.0] + [start.get_seconds() * 1000 for start, _ in scenes[1:]]


def ffmpeg_decode(path: Path) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-f", "null", "-"], check=True)


def cpu_seconds(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def ffmpeg_decode_cpu(path: Path) -> float:
    """CPU seconds (user + system, all threads) of one decode-only run."""
    before = cpu_seconds(resource.RUSAGE_CHILDREN)
    ffmpeg_decode(path)
    return cpu_seconds(resource.RUSAGE_CHILDREN) - before


def quality(fixtures: Path) -> list[dict]:
    score = load_scorer(fixtures)
    rows = []
    videos = sorted(p for p in fixtures.iterdir() if p.suffix in {".webm", ".mp4", ".mkv"})
    for video in videos:
        truth = json.loads(video.with_suffix(".json").read_text())
        _, floor = timed(lambda: ffmpeg_decode(video))
        for name, method in (("ours", ours), ("uniform-1fps", uniform), ("scenedetect", scenedetect)):
            found, seconds = timed(lambda: method(video))
            result, _, _ = score(truth, sorted(found))
            rows.append({"video": video.name, "method": name, "f1": result["f1"], "recall": result["recall"],
                         "fp": result["fp"], "fpNoChange": result["fp_in_nochange"], "frames": len(found),
                         "seconds": round(seconds, 2), "vsDecode": round(seconds / floor, 2)})
        rows.append({"video": video.name, "method": "ffmpeg-decode", "seconds": round(floor, 2), "vsDecode": 1.0})
    return rows


def make_big(source: Path, target: Path) -> None:
    """A 62 s 1080p30 H.264 file of ~93 MB: the fixture looped, light sensor-like noise, 12 Mb/s."""
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-stream_loop", "2", "-i", str(source), "-t", "62",
                    "-vf", "noise=alls=6:allf=t", "-c:v", "libx264", "-preset", "ultrafast", "-b:v", "12M",
                    "-maxrate", "12M", "-bufsize", "12M", "-pix_fmt", "yuv420p", str(target)], check=True)


def one(path: str) -> None:
    """Child mode: extract once, print wall time and CPU seconds (in process, imports excluded) and peak RSS."""
    cpu_before = cpu_seconds(resource.RUSAGE_SELF)
    key_frames, seconds = timed(lambda: frames.extract(path, encode_images=True)[0])
    cpu = cpu_seconds(resource.RUSAGE_SELF) - cpu_before
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "cpuS": cpu, "rssMb": rss_mb, "frames": len(key_frames)}))


def speed(big: Path, repeat: int) -> dict:
    decode_times, our_times, decode_cpu, our_cpu, rss = [], [], [], [], []
    for _ in range(repeat):
        cpu, floor = timed(lambda: ffmpeg_decode_cpu(big))
        decode_times.append(floor)
        decode_cpu.append(cpu)
        out = subprocess.run([sys.executable, __file__, "--one", str(big)], capture_output=True, text=True,
                             check=True, env={**os.environ, "PYTHONPATH": str(REPO)})
        child = json.loads(out.stdout)
        our_times.append(child["seconds"])
        our_cpu.append(child["cpuS"])
        rss.append(child["rssMb"])
    decode_s, ours_s = statistics.median(decode_times), statistics.median(our_times)
    return {"file": big.name, "megabytes": round(big.stat().st_size / 1e6, 1), "repeat": repeat,
            "ffmpegDecodeS": round(decode_s, 2), "oursS": round(ours_s, 2), "ratio": round(ours_s / decode_s, 2),
            "ffmpegCpuS": round(statistics.median(decode_cpu), 2), "oursCpuS": round(statistics.median(our_cpu), 2),
            "cpuRatio": round(statistics.median(our_cpu) / statistics.median(decode_cpu), 2),
            "peakRssMb": round(max(rss)), "frames": child["frames"],
            "allDecodeS": [round(t, 2) for t in decode_times], "allOursS": [round(t, 2) for t in our_times]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fixtures", type=Path, default=DEFAULT_FIXTURES)
    parser.add_argument("--big", type=Path, help="the large recording for the speed case (generated if missing)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        one(args.one)
        return 0
    if not args.skip_quality:
        rows = quality(args.fixtures)
        print(f"{'video':42} {'method':14} {'F1':>6} {'recall':>6} {'FP':>4} {'FPnc':>4} {'frames':>6} {'s':>6} {'x decode':>8}")
        for r in rows:
            print(f"{r['video']:42} {r['method']:14} {r.get('f1', ''):>6} {r.get('recall', ''):>6} {r.get('fp', ''):>4} "
                  f"{r.get('fpNoChange', ''):>4} {r.get('frames', ''):>6} {r['seconds']:>6} {r['vsDecode']:>8}")
        for method in ("ours", "uniform-1fps", "scenedetect"):
            mine = [r for r in rows if r["method"] == method]
            print(f"mean {method:14} F1 {statistics.mean(r['f1'] for r in mine):.3f}  "
                  f"recall {statistics.mean(r['recall'] for r in mine):.3f}  FP {sum(r['fp'] for r in mine)}  "
                  f"FP in no-change {sum(r['fpNoChange'] for r in mine)}  x decode {statistics.mean(r['vsDecode'] for r in mine):.2f}")
    big = args.big or Path("/tmp/scope-bench-big.mp4")
    if not big.exists():
        make_big(args.fixtures / "todomvc_hires_1920_h264.mp4", big)
    print(json.dumps(speed(big, args.repeat)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
