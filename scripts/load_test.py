#!/usr/bin/env python3
"""Load test: concurrent uploads of a fixture recording against a local instance, with `hey`.

Starts the service (functions-framework, as `make run` does) and a page for the browser lane on
127.0.0.1, sends --concurrency uploads at a time for --seconds, and reports throughput, latency
percentiles and answers by status (hey's own figures), the service's peak memory, and what is
left afterwards: temporary upload files, Chromium renderer processes (open pages), open file
descriptors. Needs Debian's `hey` (installed if missing).

    .venv/bin/python scripts/load_test.py [--concurrency 4] [--seconds 60] [--video FILE] [--inflight 2]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from conftest import RECORDINGS, PageServer, RunningService  # noqa: E402


def tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    found, queue = [root], [root]
    while queue:
        for child in children.get(queue.pop(), []):
            found.append(child)
            queue.append(child)
    return found


def memory_mb(pids: list[int], temp_files: list[Path]) -> tuple[float, float]:
    """(RSS, PSS + upload files) of the processes, in MB. RSS counts memory the browser's processes share
    once per process; PSS shares it out. Cloud Run's limit also counts files in /tmp (memory there)."""
    rss = pss = 0
    for pid in pids:
        try:
            rss += int(re.search(r"VmRSS:\s+(\d+)", Path(f"/proc/{pid}/status").read_text()).group(1))
            pss += int(re.search(r"Pss:\s+(\d+)", Path(f"/proc/{pid}/smaps_rollup").read_text()).group(1))
        except (OSError, AttributeError):
            pass
    files = 0
    for path in temp_files:
        try:
            files += path.stat().st_size
        except OSError:
            pass
    return rss / 1024, pss / 1024 + files / 2**20


def census(root: int) -> dict[str, int]:
    pids = tree(root)
    renderers = fds = 0
    for pid in pids:
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
            if b"--type=renderer" in cmd:
                renderers += 1
            if b"functions-framework" in cmd or b"gunicorn" in cmd:
                fds += len(os.listdir(f"/proc/{pid}/fd"))
        except OSError:
            pass
    return {"renderers": renderers, "serviceFds": fds, "processes": len(pids)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--video", type=Path, default=RECORDINGS / "todomvc_quick_1280_h264.mkv")
    parser.add_argument("--inflight", type=int, default=2, help="the instance's SCOPE_MAX_INFLIGHT")
    args = parser.parse_args()
    if not shutil.which("hey"):
        subprocess.run(["apt-get", "install", "-y", "-qq", "hey"], check=True)
    pages = PageServer()
    root = Path(tempfile.mkdtemp(prefix="scope-load-"))
    service = RunningService(root, {"SCOPE_ALLOW_PRIVATE_URLS": "1", "SCOPE_MAX_INFLIGHT": str(args.inflight)})
    boundary = "scopeloadtest"
    body = root / "body.bin"
    with body.open("wb") as out:
        for name, value in (("title", "Load test"), ("seedUrl", pages.url + "/")):
            out.write(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
        out.write(f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="v.mkv"\r\n\r\n'.encode())
        out.write(args.video.read_bytes())
        out.write(f"\r\n--{boundary}--\r\n".encode())
    try:
        import requests

        requests.post(f"{service.url}/recordings", data=body.read_bytes(), timeout=120,
                      headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})  # warm the browser
        before = census(service.process.pid)
        idle = memory_mb(tree(service.process.pid), [])
        peak = [0.0, 0.0]
        running = [True]

        def sample() -> None:
            while running[0]:
                rss, charged = memory_mb(tree(service.process.pid), service.temp_files())
                peak[0], peak[1] = max(peak[0], rss), max(peak[1], charged)
                time.sleep(0.25)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        out = subprocess.run(["hey", "-z", f"{args.seconds}s", "-c", str(args.concurrency), "-m", "POST", "-t", "300",
                              "-T", f"multipart/form-data; boundary={boundary}", "-D", str(body),
                              f"{service.url}/recordings"], capture_output=True, text=True, check=True)
        running[0] = False
        sampler.join()
        time.sleep(2)
        after = census(service.process.pid)
        report = out.stdout
        statuses = dict(re.findall(r"\[(\d{3})\]\s+(\d+) responses", report))
        print(f"{args.concurrency} concurrent uploads of {args.video.name} ({args.video.stat().st_size / 1e6:.2f} MB) "
              f"for {args.seconds} s, SCOPE_MAX_INFLIGHT={args.inflight}:")
        # (hey prints 0 for percentiles it has too few samples for)
        for label, pattern in (("requests/s", r"Requests/sec:\s+([\d.]+)"), ("p50 s", r"\s50% in ([\d.]+) secs"),
                               ("p90 s", r"\s90% in ([\d.]+) secs"), ("p95 s", r"\s95% in ([\d.]+) secs"),
                               ("slowest s", r"Slowest:\s+([\d.]+)")):
            match = re.search(pattern, report)
            print(f"  {label:11} {match.group(1) if match else '?'}")
        print(f"  answers     {statuses}")
        print(f"  peak RSS    {peak[0]:.0f} MB (service, browser and all their processes; idle {idle[0]:.0f})")
        print(f"  peak PSS    {peak[1]:.0f} MB (the same, shared pages shared out, plus upload files in /tmp; "
              f"idle {idle[1]:.0f})")
        print(f"  before/after: {before} / {after}")
        print(f"  temp files left: {len(service.temp_files())}")
        print("--- hey ---\n" + report)
    finally:
        service.stop()
        pages.close()
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
