#!/usr/bin/env python3
"""The whole pipeline against decoding alone, side by side on one large recording.

On a ~93 MB, 62 s, 1920x1080 H.264 recording (``scripts/bench_frames.py`` makes it; --big names
another), alternating in fresh processes, --repeat times each:
  ffmpeg    `ffmpeg -i FILE -f null -`: decode only (the floor)
  extract   function.frames.extract: decode and detect (the video lane's own work)
  local     pipeline.run with the local analyser, the seed page served on 127.0.0.1
  claude    pipeline.run with Claude vision against a fake Messages API answering after --latency s
Prints the medians, the ratios the issue asks for, and each pipeline's phases (start–end, ms after
the request began): with streaming, vision begins while extraction still runs, and the request
ends soon after the last key frame (about one batch's latency for Claude).

    .venv/bin/python scripts/bench_pipeline.py [--big FILE] [--repeat 3] [--latency 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

CASES = ("ffmpeg", "extract", "local", "claude")


def child(case: str, big: Path, latency: float) -> dict:
    """One run of ``case`` in this process: its wall time, and the pipeline's phases."""
    from conftest import PageServer
    from fake_anthropic import FakeAnthropic
    from function import frames, pipeline
    from function.aria import BrowserSettings, Inspector
    from function.config import Config
    from function.models import RecordingRequest
    from function.vision import ClaudeProvider, ClaudeSettings, LocalProvider, Vision

    if case == "extract":
        started = time.perf_counter()
        key_frames = frames.extract(big)[0]
        return {"seconds": time.perf_counter() - started, "frames": len(key_frames)}
    pages = PageServer()
    fake = FakeAnthropic(latency_s=latency) if case == "claude" else None
    browser = Inspector(BrowserSettings(allow_private=True, page_timeout_s=10))
    try:
        provider = (ClaudeProvider(ClaudeSettings("sk-bench", "claude-bench", fake.url, max_retries=0))
                    if fake is not None else LocalProvider())
        lanes = pipeline.Lanes(Config(allow_private_urls=True), Vision(provider), browser)
        request = RecordingRequest(big, big.stat().st_size, "video/mp4", "bench", pages.url + "/", "",
                                   "CLAUDE_CODE", None, "bench")
        browser.inspect([pages.url + "/"])  # the browser started, as on a warm instance
        started = time.perf_counter()
        evidence = pipeline.run(request, lanes)
        seconds = time.perf_counter() - started
        last_batch = ([round((t - started) * 1000) for t in max(fake.timings)] if fake is not None and fake.timings
                      else None)  # the last request to the Messages API: began, read, answered (ms)
        return {"seconds": seconds, "frames": len(evidence.video.key_frames), "spans": evidence.spans,
                "requests": len(fake.requests) if fake is not None else 0, "lastBatch": last_batch}
    finally:
        browser.close()
        pages.close()
        if fake is not None:
            fake.close()


def run_case(case: str, big: Path, latency: float) -> dict:
    if case == "ffmpeg":
        started = time.perf_counter()
        subprocess.run(["ffmpeg", "-v", "error", "-threads", "0", "-i", str(big), "-f", "null", "-"], check=True)
        return {"seconds": time.perf_counter() - started}
    out = subprocess.run([sys.executable, __file__, "--child", case, "--big", str(big), "--latency", str(latency)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--big", type=Path, default=Path("/tmp/scope-bench-big.mp4"))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--latency", type=float, default=2.0)
    parser.add_argument("--child", choices=CASES)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.big, args.latency)))
        return 0
    if not args.big.exists():
        subprocess.run([sys.executable, str(REPO / "scripts" / "bench_frames.py"), "--big", str(args.big),
                        "--repeat", "1"], check=True, stdout=subprocess.DEVNULL)
    runs: dict[str, list[dict]] = {case: [] for case in CASES}
    for _ in range(args.repeat):
        for case in CASES:
            runs[case].append(run_case(case, args.big, args.latency))
    median = {case: statistics.median(r["seconds"] for r in runs[case]) for case in CASES}
    print(f"{args.big.name}: {args.big.stat().st_size / 1e6:.1f} MB, {args.repeat} alternating runs each")
    for case in CASES:
        print(f"  {case:8} median {median[case]:6.2f} s  runs {[round(r['seconds'], 2) for r in runs[case]]}")
    print(f"  local / extract = {median['local'] / median['extract']:.2f}   (goal ≤ 1.5)")
    print(f"  local / ffmpeg  = {median['local'] / median['ffmpeg']:.2f}   (goal ≤ 2.5)")
    print(f"  extract / ffmpeg = {median['extract'] / median['ffmpeg']:.2f}")
    for case in ("local", "claude"):
        last = runs[case][-1]
        spans = "  ".join(f"{name} {a}–{b}" for name, (a, b) in sorted(last["spans"].items(), key=lambda kv: kv[1]))
        print(f"  {case} phases (ms, last run): {spans}")
    tails = [r["seconds"] * 1000 - r["spans"]["extract"][1] for r in runs["claude"]]
    print(f"  claude: the request ended {statistics.median(tails) / 1000:.2f} s after the last key frame "
          f"(median; one batch's latency is {args.latency:g} s); {runs['claude'][-1]['requests']} requests")
    split = [(r["lastBatch"][0] - r["spans"]["extract"][1], r["lastBatch"][1] - r["lastBatch"][0],
              r["lastBatch"][2] - r["lastBatch"][1], r["seconds"] * 1000 - r["lastBatch"][2]) for r in runs["claude"]]
    names = ("last key frame to the last batch's request", "its body read", "latency and answer",
             "answer to the request's end")
    print("  claude, that tail split (ms, median): " + ", ".join(
        f"{name} {statistics.median(part[i] for part in split):.0f}" for i, name in enumerate(names)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
