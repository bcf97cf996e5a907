#!/usr/bin/env python3
"""Uploads over HTTP/1.1 and over h2c, side by side: how long the server takes to read a large body.

Starts ``scripts/serve.sh`` (Hypercorn, as the container runs it) on 127.0.0.1 and sends the same
~90 MB multipart upload with curl, alternating ``--http1.1`` and ``--http2-prior-knowledge``,
--repeat times each. The upload has a webm header and no title, so the service reads the whole
body and answers 400 MISSING_FIELD without running the pipeline: the time is the body's transfer
and parsing alone. Prints each run, the medians and the h2c / HTTP/1.1 ratio, and for each
protocol the CPU seconds the server and curl spent per upload: over HTTP/2 curl is busy for most
of the transfer itself, so the wall time is the slower of two processes, only one of them ours.

Then the refusal: an instance with one slot, held by a slow upload, is sent the same body over
HTTP/1.1 with ``Expect: 100-continue``, without it, and over h2c; each answer (429) is timed and
the bytes curl sent are counted.

    .venv/bin/python scripts/bench_uploads.py [--megabytes 90] [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parent.parent
WEBM = REPO / "tests" / "fixtures" / "recordings" / "todomvc_basic_1280_vp9.webm"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    """User and system CPU of ``pid`` and its descendants (Hypercorn's worker is a child), from /proc."""
    ticks = os.sysconf("SC_CLK_TCK")
    total, pending = 0.0, [pid]
    while pending:
        current = pending.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rpartition(")")[2].split()
            total += (int(fields[11]) + int(fields[12])) / ticks
            for task in Path(f"/proc/{current}/task").iterdir():
                pending += [int(child) for child in (task / "children").read_text().split()]
        except FileNotFoundError:
            continue
    return total


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def upload_seconds(url: str, body: Path, protocol: str) -> float:
    out = subprocess.run(["curl", "-sS", "-o", "/dev/null", protocol, "-F", f"file=@{body}", f"{url}/recordings",
                          "-w", "%{http_code} %{time_total}"], capture_output=True, text=True, check=True, timeout=300)
    status, seconds = out.stdout.split()
    if status != "400":
        raise RuntimeError(f"expected 400 MISSING_FIELD after the whole body, got {status}")
    return float(seconds)


def refusal(url: str, body: Path, *protocol: str) -> tuple[str, float, int]:
    out = subprocess.run(["curl", "-sS", "-o", "/dev/null", *protocol, "-F", f"file=@{body}", "-F", "title=t",
                          "-F", "seedUrl=http://127.0.0.1:9/", f"{url}/recordings",
                          "-w", "%{http_code} %{time_total} %{size_upload}"],
                         capture_output=True, text=True, check=True, timeout=300)
    status, seconds, sent = out.stdout.split()
    return status, float(seconds), int(float(sent))


def serve(folder: Path, **env: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    environ = {**os.environ, "PORT": str(port), "HOST": "127.0.0.1", "SCOPE_DATA_DIR": str(folder / "data"),
               "VIRTUAL_ENV": str(Path(sys.executable).parent.parent),
               "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}", **env}
    server = subprocess.Popen([str(REPO / "scripts" / "serve.sh")], env=environ, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            requests.get(url + "/health", timeout=5)
            break
        except requests.ConnectionError:
            time.sleep(0.2)
    return server, url


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=int, default=90)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        body = Path(folder) / "upload.webm"
        with open(body, "wb") as out:
            out.write(WEBM.read_bytes()[:64])  # sniffed as webm: the body is read to its end
            out.write(os.urandom(args.megabytes * 1_000_000))
        server, url = serve(Path(folder))
        try:
            times: dict[str, list[float]] = {"--http1.1": [], "--http2-prior-knowledge": []}
            server_cpu: dict[str, list[float]] = {protocol: [] for protocol in times}
            curl_cpu: dict[str, list[float]] = {protocol: [] for protocol in times}
            for _ in range(args.repeat):
                for protocol, runs in times.items():
                    server_before, curl_before = cpu_seconds(server.pid), children_cpu()
                    runs.append(upload_seconds(url, body, protocol))
                    server_cpu[protocol].append(cpu_seconds(server.pid) - server_before)
                    curl_cpu[protocol].append(children_cpu() - curl_before)
        finally:
            os.killpg(server.pid, 15)
            server.wait(20)
        server, url = serve(Path(folder), SCOPE_MAX_INFLIGHT="1")
        holder = subprocess.Popen(["curl", "-sS", "-o", "/dev/null", "--limit-rate", "200k", "-F", f"file=@{body}",
                                   "-F", "title=t", f"{url}/recordings"], start_new_session=True)
        try:
            time.sleep(1)  # the holder has the one slot, and is still sending
            refusals = {name: refusal(url, body, *protocol) for name, protocol in (
                ("HTTP/1.1, Expect: 100-continue", ("--http1.1",)),
                ("HTTP/1.1, no Expect", ("--http1.1", "-H", "Expect:")),
                ("h2c", ("--http2-prior-knowledge",)))}
        finally:
            os.killpg(holder.pid, 15)
            os.killpg(server.pid, 15)
            server.wait(20)
    h1, h2 = (statistics.median(times[p]) for p in ("--http1.1", "--http2-prior-knowledge"))
    print(f"{args.megabytes} MB upload, {args.repeat} alternating runs each")
    print(f"  HTTP/1.1  median {h1:.2f} s  runs {[round(t, 2) for t in times['--http1.1']]}")
    print(f"  h2c       median {h2:.2f} s  runs {[round(t, 2) for t in times['--http2-prior-knowledge']]}")
    print(f"  h2c / HTTP/1.1 = {h2 / h1:.2f}")
    cpu = {p: (statistics.median(server_cpu[p]), statistics.median(curl_cpu[p])) for p in times}
    for name, protocol in (("HTTP/1.1", "--http1.1"), ("h2c", "--http2-prior-knowledge")):
        print(f"  {name:9} CPU per upload (median): server {cpu[protocol][0]:.2f} s, curl {cpu[protocol][1]:.2f} s")
    print(f"  server CPU, h2c / HTTP/1.1 = {cpu['--http2-prior-knowledge'][0] / cpu['--http1.1'][0]:.2f}")
    print(f"{args.megabytes} MB upload to a full instance")
    for name, (status, seconds, sent) in refusals.items():
        print(f"  {name:32} {status} after {seconds * 1000:.0f} ms, {sent / 1024:.0f} KiB of the body sent")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
