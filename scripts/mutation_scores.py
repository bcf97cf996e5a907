"""Mutation scores per module from the last ``make mutation`` run (mutmut's results), for docs/BENCHMARKS.md.

    .venv/bin/python scripts/mutation_scores.py

A mutant counts as caught when a test failed (killed) or hung (timeout); "no tests" mutants
(code no selected test runs) count against the score.
"""

from __future__ import annotations

import collections
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def main() -> int:
    listing = subprocess.run([str(Path(sys.executable).parent / "mutmut"), "results", "--all", "true"], cwd=REPO,
                             capture_output=True, text=True, check=True).stdout
    counts: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for line in listing.splitlines():
        name, _, status = line.strip().rpartition(": ")
        if name.startswith("function."):
            counts[name.split(".")[1]][status] += 1
    print("| module | mutants | killed | timeout | survived | no tests | score |")
    print("|---|---|---|---|---|---|---|")
    for module, found in sorted(counts.items()):
        total = sum(found.values())
        caught = found["killed"] + found["timeout"]
        print(f"| `{module}` | {total} | {found['killed']} | {found['timeout']} | {found['survived']} "
              f"| {found['no tests']} | {caught / total:.0%} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
