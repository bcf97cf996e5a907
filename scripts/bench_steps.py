"""How many of the user's actions the steps name, per dev recording, without an API key.

    .venv/bin/python scripts/bench_steps.py [--show]

Each recording goes through the video lane as the service runs it (key frames, the local
analyser) and the step inference; ``tests/fixtures/recordings/score_actions.py`` scores the
steps against ``actions.json`` (its docstring gives the rule). No live page is available for
these recordings (the app is not in the repository), so no step is grounded here.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from function import frames, steps  # noqa: E402
from function.vision import LocalProvider, Vision  # noqa: E402

RECORDINGS = REPO / "tests" / "fixtures" / "recordings"


def scorer():  # noqa: ANN201 - the fixture's own module
    spec = importlib.util.spec_from_file_location("score_actions", RECORDINGS / "score_actions.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def steps_of(video: Path) -> list[dict]:
    key_frames, _, _ = frames.extract(video)
    vision = Vision(LocalProvider()).analyze(key_frames)
    return [s.to_json() for s in steps.infer(key_frames, vision.analyses)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--show", action="store_true", help="print every step and every missed action")
    parser.add_argument("videos", nargs="*", help="file names in tests/fixtures/recordings (default: all)")
    args = parser.parse_args()
    score = scorer()
    names = args.videos or [n for n in score.GT if not n.startswith("_")]
    total_named = total = 0
    print("| recording | actions | steps | named | kind only | named rate | seconds |")
    print("|---|---|---|---|---|---|---|")
    for name in names:
        started = time.perf_counter()
        found = steps_of(RECORDINGS / name)
        result = score.score(name, {"steps": found})
        total_named += result["named"]
        total += result["actions"]
        print(f"| {name} | {result['actions']} | {result['steps']} | {result['named']} | {result['kind_only']} "
              f"| {result['named_rate']:.0%} | {time.perf_counter() - started:.1f} |")
        if args.show:
            for step in found:
                print(f"    {step['timestamp']:>6} {step['action']:<8} {json.dumps(step.get('target'))} "
                      f"{step.get('value')!r} — {step['description']}")
            for row in result["rows"]:
                if not row["named"]:
                    print(f"    missed: {row['label']} (kind {'seen' if row['kind'] else 'not seen'})")
    print(f"\nall recordings: {total_named} of {total} actions named ({total_named / max(total, 1):.0%})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
