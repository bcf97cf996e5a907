#!/usr/bin/env python3
"""The browser lane's time: a local page cold (first request, browser start) and warm, and five
URLs one request at a time against one request inspecting them concurrently.

    .venv/bin/python scripts/bench_browser.py [--repeat 5]
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

from conftest import PageServer  # noqa: E402
from function.aria import BrowserSettings, Inspector  # noqa: E402


def timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    pages = PageServer()
    urls = [pages.url + p for p in ("/", "/about", "/broken", "/error500", "/redirect-to/about")]
    for guarded in (False, True):
        settings = BrowserSettings(allow_private=not guarded,
                                   allowed_hosts=frozenset({f"127.0.0.1:{pages.port}"}) if guarded else frozenset())
        cold, warm, sequential, concurrent = [], [], [], []
        for _ in range(args.repeat):
            browser = Inspector(settings)
            try:
                cold.append(timed(lambda: browser.inspect(urls[:1])))
                warm.append(timed(lambda: browser.inspect(urls[:1])))
                sequential.append(timed(lambda: [browser.inspect([u]) for u in urls]))
                concurrent.append(timed(lambda: browser.inspect(urls)))
            finally:
                browser.close()
        mode = "through the guard proxy" if guarded else "direct (SCOPE_ALLOW_PRIVATE_URLS=1)"
        print(f"{mode}, median of {args.repeat}:")
        print(f"  one page, cold (browser start + page): {statistics.median(cold):.2f} s")
        print(f"  one page, warm:                        {statistics.median(warm):.2f} s")
        print(f"  5 URLs, one request each:              {statistics.median(sequential):.2f} s")
        print(f"  5 URLs, one request (concurrent):      {statistics.median(concurrent):.2f} s "
              f"({statistics.median(sequential) / statistics.median(concurrent):.1f}x)")
    pages.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
