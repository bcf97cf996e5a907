#!/usr/bin/env python3
"""Prompt sizes per agent target on the fixture recordings, and on a pathological page.

Each fixture goes through the real extractor and the local analyser, with the real browser's
snapshots of two small test pages; the pathological case adds a 20,000-item ARIA tree and 5,000
console errors. Prints characters and estimated tokens (chars/4) per format at the default budget.

    .venv/bin/python scripts/bench_prompts.py [--fixtures DIR]
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

from make_golden_evidence import RECORDINGS, evidence_for, snapshot_pages  # noqa: E402

from function.models import AGENT_TARGETS  # noqa: E402
from function.prompts import DEFAULT_TOKEN_BUDGET, Evidence, estimate_tokens, render  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fixtures", type=Path, default=RECORDINGS)
    args = parser.parse_args()
    inspection = snapshot_pages(["/", "/broken"])
    huge = copy.deepcopy(inspection)
    huge["snapshots"][0]["ariaTree"] = "- main:\n  - list:\n" + "\n".join(
        f'    - listitem:\n      - link "Product {i}"' for i in range(20_000))
    huge["snapshots"][0]["consoleErrors"] = [f"Error {i}: " + "x" * 200 for i in range(5000)]
    print(f"budget {DEFAULT_TOKEN_BUDGET} tokens")
    print(f"{'recording':42} {'frames':>6} " + " ".join(f"{t:>18}" for t in AGENT_TARGETS))
    videos = sorted(p for p in args.fixtures.iterdir() if p.suffix in {".webm", ".mp4", ".mkv"})
    cases = [(v.name, v, inspection) for v in videos] + [("quick + pathological page", videos[-1], huge)]
    for name, video, pages in cases:
        evidence = Evidence.model_validate(evidence_for(video, pages))
        sizes = []
        for target in AGENT_TARGETS:
            prompt = render(target, evidence)
            sizes.append(f"{len(prompt):>7} ch {estimate_tokens(prompt):>5} tk")
        print(f"{name:42} {len(evidence.frames):>6} " + " ".join(f"{s:>18}" for s in sizes))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
