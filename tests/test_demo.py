"""`make demo`'s script end to end (its timing is the benchmark's business, not this test's)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from conftest import REPO


def test_the_demo_records_its_app_and_prints_steps_prompt_and_session(tmp_path: Path) -> None:
    # A short temporary folder of its own: Chromium's profile socket path must stay under 108 bytes.
    scratch = Path(tempfile.mkdtemp(prefix="demo-", dir="/tmp"))
    try:
        check_demo(tmp_path, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def check_demo(tmp_path: Path, scratch: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SCOPE_", "ANTHROPIC_"))}
    env.update({"SCOPE_DATA_DIR": str(tmp_path / "data"), "TMPDIR": str(scratch)})
    done = subprocess.run([sys.executable, "scripts/demo.py"], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    steps = re.findall(r"^\s+\d+\. \[\s*\d+\.\d s\] (.+)$", out, re.M)
    assert len(steps) >= 4 and any("Components" in s for s in steps), out
    assert "<task>" in out and "Search finds nothing" in out  # the prompt's first lines
    session_id = re.search(r"^Session (sess_[A-Z0-9]{8}):", out, re.M).group(1)
    record = json.loads((tmp_path / "data" / "records" / "sessions" / f"{session_id}.json").read_text())
    assert record["status"] == "complete" and record["steps"]
    assert list(scratch.iterdir()) == []  # the recording was made in a folder that is gone
    assert [p.name for p in (tmp_path / "data" / "records" / "sessions").iterdir()] == [f"{session_id}.json"]
