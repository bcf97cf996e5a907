"""`make demo`: Claude Scope on a recording it makes itself, with nothing but the repository.

It serves the project's own small web app (``tests/app``), records a scripted flow in it with a
visible pointer (the recorder the tests use: a real Chromium, ten frames a second), runs the
recording through the pipeline as the CLI does (the embedded default: local store, local
analyser unless ``ANTHROPIC_API_KEY`` is set), and prints the steps, the start of the prompt and
where the session is. The recording is made in a temporary folder that is removed; what is left
is the session in the local store (``SCOPE_DATA_DIR``, ``.scope-data`` by default).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))  # the recorder and the app live with the tests that use them

from recorder import AppServer, record_console_flow  # noqa: E402

TITLE = "Search finds nothing"
NOTES = "Searching for an invoice number should list the order; the results stay empty."
PROMPT_LINES = 24


def main() -> int:
    app = AppServer()
    try:
        with tempfile.TemporaryDirectory(prefix="scope-demo-") as folder:
            video = Path(folder) / "demo.mkv"
            print(f"1. The demo app is served at {app.url}index.html; recording a flow in it …", flush=True)
            actions = record_console_flow(app.url, video)
            print(f"   {len(actions)} actions recorded ({video.stat().st_size // 1024} KiB, Motion-JPEG).", flush=True)
            print("2. Running the pipeline on it (python -m function.cli --json) …", flush=True)
            done = subprocess.run(
                [sys.executable, "-m", "function.cli", str(video), "--title", TITLE, "--url", app.url + "index.html",
                 "--notes", NOTES, "--json"], cwd=REPO, capture_output=True, text=True, timeout=600)
            if done.returncode != 0:
                print(done.stderr, file=sys.stderr)
                return done.returncode
    finally:
        app.close()
    response = json.loads(done.stdout)
    print(f"\nSteps ({len(response['steps'])}):")
    for step in response["steps"]:
        print(f"  {step['index']:>2}. [{step['timestamp'] / 1000:4.1f} s] {step['description']}  ({step['source']})")
    print(f"\nThe prompt ({response['agentTarget']}), its first {PROMPT_LINES} lines:\n")
    print("\n".join("    " + line for line in response["prompt"].splitlines()[:PROMPT_LINES]))
    print(f"\nSession {response['sessionId']}: {len(response['frames'])} key frames, "
          f"pages inspected: {', '.join(response['urlsInspected'])}")
    print(f"It is in the local store; with `make run`, see it at "
          f"http://127.0.0.1:8080/sessions/{response['sessionId']} (the frames under .../frames/<id>).")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
